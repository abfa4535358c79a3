//! Unit tests of the parent module on labelled pairs (the ranker) and saved weights.

use super::tests::{by_features, impressions, small};
use super::*;

/// Mean logit over all pairs of users and items for which `group(u, i)` holds.
fn mean_logit(model: &DeepMf, users: u32, items: u32, group: impl Fn(u32, u32) -> bool) -> f64 {
    let (us, is): (Vec<u32>, Vec<u32>) = (0..users)
        .flat_map(|u| (0..items).map(move |i| (u, i)))
        .filter(|&(u, i)| group(u, i))
        .unzip();
    let logits = model.predict(&us, &is).unwrap();
    logits.iter().map(|&z| f64::from(z)).sum::<f64>() / logits.len() as f64
}

/// Settings for the labelled tests: an MLP over id embeddings finds a user x item interaction
/// only after some epochs (the validation loss first rises as the biases fit noise), so no
/// early stopping (the best epoch is still kept), and embeddings started at std 0.2: from
/// 0.05 the tower stays in its near-linear start on data this small in about half the seeds.
fn labelled_config() -> DeepMfConfig {
    DeepMfConfig {
        epochs: 25,
        patience: 0,
        init_std: 0.2,
        l2: 0.01,
        learning_rate: 0.005,
        ..small()
    }
}

#[test]
fn labelled_pairs_learn_the_hidden_taste() {
    let (train, valid) = impressions(90, 60, 3);
    let (model, report) =
        DeepMf::train_labelled(&labelled_config(), 90, 60, None, &train, &valid, |_| {}).unwrap();
    // The offset is the prior log-odds of the weighted labels.
    let mass = |label: f32| -> f64 {
        let pairs = train.labels.iter().zip(&train.weights);
        pairs
            .filter(|&(&y, _)| y == label)
            .map(|(_, &w)| f64::from(w))
            .sum()
    };
    let (pos, neg) = (mass(1.0), mass(0.0));
    assert!((f64::from(model.offset()) - (pos / neg).ln()).abs() < 1e-5);
    let prior = valid.weighted_log_loss(&vec![model.offset(); valid.len()]);
    let fitted = report.best_validation.unwrap();
    let again = valid.weighted_log_loss(&model.predict(&valid.users, &valid.items).unwrap());
    assert!((again - fitted).abs() < 1e-6, "{again} vs {fitted}");
    let same = mean_logit(&model, 90, 60, |u, i| u % 3 == i % 3);
    let other = mean_logit(&model, 90, 60, |u, i| u % 3 != i % 3);
    eprintln!("labelled: loss {fitted} vs prior {prior}; logits {same} in-group, {other} out");
    // Truth: odds 0.8 x 10 / 0.2 = 40 in-group (logit 3.7), 0.1 x 10 / 0.9 = 1.1 out (0.1).
    assert!(fitted < 0.85 * prior, "{fitted} vs prior {prior}");
    assert!(same - other > 2.0, "{same} vs {other}");
}

/// Every user shown every item with probability 0.7 (80/20 split), watched with probability
/// 0.5 whatever the item; a watched even item weighs 30 (seconds), a watched odd item 3 (both
/// 1 with `unit`), an unwatched impression 1.
fn long_and_short(
    users: usize,
    items: usize,
    unit: bool,
    seed: u64,
) -> (LabelledPairs, LabelledPairs) {
    let mut rng = Rng::new(seed);
    let (mut train, mut valid) = (LabelledPairs::default(), LabelledPairs::default());
    for u in 0..users {
        for i in 0..items {
            if rng.uniform() >= 0.7 {
                continue;
            }
            let watched = rng.uniform() < 0.5;
            let weight = match (watched, unit, i % 2 == 0) {
                (false, _, _) | (true, true, _) => 1.0,
                (true, false, true) => 30.0,
                (true, false, false) => 3.0,
            };
            let part = if rng.uniform() < 0.8 {
                &mut train
            } else {
                &mut valid
            };
            part.users.push(u as u32);
            part.items.push(i as u32);
            part.labels.push(f32::from(u8::from(watched)));
            part.weights.push(weight);
        }
    }
    (train, valid)
}

#[test]
fn watch_time_weights_rank_long_watches_higher() {
    let gap = |unit: bool| {
        let (train, valid) = long_and_short(50, 30, unit, 17);
        let (model, _) =
            DeepMf::train_labelled(&labelled_config(), 50, 30, None, &train, &valid, |_| {})
                .unwrap();
        let long = mean_logit(&model, 50, 30, |_, i| i % 2 == 0);
        let short = mean_logit(&model, 50, 30, |_, i| i % 2 == 1);
        (long, short)
    };
    let (long, short) = gap(false);
    let (even, odd) = gap(true);
    eprintln!("weighted: {long} vs {short}; unit: {even} vs {odd}");
    // Truth: odds 30 vs 3 (logits 3.4 vs 1.1, gap 2.3) weighted; 1 vs 1 (gap 0) unweighted.
    assert!(long - short > 1.5, "{long} vs {short}");
    assert!((even - odd).abs() < 0.3, "{even} vs {odd}");
}

#[test]
fn saved_weights_rebuild_the_same_model() {
    let (features, ratings, rated_valid) = by_features(30, 24);
    let (train, valid) = impressions(30, 24, 9);
    let cfg = DeepMfConfig {
        epochs: 2,
        dropout: 0.2,
        ..small()
    };
    let (model, _) =
        DeepMf::train_labelled(&cfg, 30, 24, Some(&features), &train, &valid, |_| {}).unwrap();
    assert_eq!(model.features().as_ref(), Some(&features));
    let weights = model.weights().unwrap();
    assert!(weights.contains_key("user_tokens.weight") && weights.contains_key("h"));
    let load = |w: &HashMap<String, Tensor>, f: Option<&SideFeatures>| {
        DeepMf::from_weights(&cfg, 30, 24, f, model.offset(), w)
    };
    let copy = load(&weights, model.features().as_ref()).unwrap();
    assert_eq!(copy.offset(), model.offset());
    let (users, items): (Vec<u32>, Vec<u32>) =
        (0..30).flat_map(|u| (0..24).map(move |i| (u, i))).unzip();
    assert_eq!(
        copy.predict(&users, &items).unwrap(),
        model.predict(&users, &items).unwrap()
    );

    // A missing weight, a weight of another shape, weights the model does not have.
    let mut missing = weights.clone();
    missing.remove("tower.1.bias");
    let err = load(&missing, Some(&features)).err().unwrap().to_string();
    assert!(err.contains("tower.1.bias"), "{err}");
    let mut reshaped = weights.clone();
    reshaped.insert(
        "h".into(),
        Tensor::zeros((1, 9), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = load(&reshaped, Some(&features)).err().unwrap().to_string();
    assert!(err.contains("'h'"), "{err}");
    let err = load(&weights, None).err().unwrap().to_string();
    assert!(err.contains("tokens.weight"), "{err}");

    // Without features the model reads none.
    let ids_only = DeepMfConfig {
        use_features: false,
        ..cfg.clone()
    };
    let (plain, _) =
        DeepMf::train_labelled(&ids_only, 30, 24, Some(&features), &train, &valid, |_| {}).unwrap();
    assert_eq!(plain.features(), None);
    let copy = DeepMf::from_weights(
        &ids_only,
        30,
        24,
        None,
        plain.offset(),
        &plain.weights().unwrap(),
    );
    assert_eq!(
        copy.unwrap().predict(&users, &items).unwrap(),
        plain.predict(&users, &items).unwrap()
    );

    // A rating model's offset is mu.
    let (rated, _) = DeepMf::train(
        &cfg,
        30,
        24,
        Some(&features),
        &ratings,
        &rated_valid,
        |_| {},
    )
    .unwrap();
    assert!((rated.offset() - ratings.mean() as f32).abs() < 1e-6);
    let copy = DeepMf::from_weights(
        &cfg,
        30,
        24,
        Some(&features),
        rated.offset(),
        &rated.weights().unwrap(),
    )
    .unwrap();
    assert_eq!(
        copy.predict(&users, &items).unwrap(),
        rated.predict(&users, &items).unwrap()
    );
}

#[test]
fn train_labelled_refuses_bad_labels_weights_and_no_data() {
    let (train, valid) = impressions(12, 9, 4);
    let cfg = DeepMfConfig {
        epochs: 1,
        ..small()
    };
    let run = |t: &LabelledPairs, v: &LabelledPairs| {
        DeepMf::train_labelled(&cfg, 12, 9, None, t, v, |_| {}).map(|_| ())
    };
    assert!(run(&train, &valid).is_ok());
    let mut label = train.clone();
    label.labels[0] = 2.0;
    assert!(run(&label, &valid)
        .unwrap_err()
        .to_string()
        .contains("label"));
    let mut weight = valid.clone();
    weight.weights[0] = -1.0;
    assert!(run(&train, &weight)
        .unwrap_err()
        .to_string()
        .contains("weight"));
    let mut outside = train.clone();
    outside.items[0] = 9;
    assert!(run(&outside, &valid).is_err());
    assert!(matches!(
        run(&LabelledPairs::default(), &valid),
        Err(RankingError::NoTrainingData)
    ));
}
