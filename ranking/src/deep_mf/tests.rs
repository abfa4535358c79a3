//! Unit tests of the parent module.

use super::*;
use nn::rating::rmse;

/// Ratings that depend on side features only: each user has a gender token (0 or 1) and an
/// age token (2..6, noise), each item one to three genres of 0..6; r = 3 + 1 when the user
/// has gender 0 and the item genre 0, 3 - 1 when gender 1 and genre 0, 3 otherwise, plus
/// N(0, 0.1²). Every user rates 2 items for training and 2 for validation, too few for the
/// id embeddings to learn a user's taste.
fn by_features(users: usize, items: usize) -> (SideFeatures, Ratings, Ratings) {
    let mut rng = Rng::new(5);
    let user_tokens: Vec<Vec<u32>> = (0..users)
        .map(|_| vec![rng.below(2) as u32, 2 + rng.below(4) as u32])
        .collect();
    let item_tokens: Vec<Vec<u32>> = (0..items)
        .map(|_| {
            let mut g: Vec<u32> = (0..1 + rng.below(3)).map(|_| rng.below(6) as u32).collect();
            g.sort_unstable();
            g.dedup();
            g
        })
        .collect();
    let (mut train, mut valid) = (Ratings::default(), Ratings::default());
    for (u, ut) in user_tokens.iter().enumerate() {
        for k in 0..4 {
            let i = rng.below(items);
            let sign = if ut[0] == 0 { 1.0 } else { -1.0 };
            let effect = if item_tokens[i].contains(&0) {
                sign
            } else {
                0.0
            };
            let part = if k < 2 { &mut train } else { &mut valid };
            part.users.push(u as u32);
            part.items.push(i as u32);
            part.values.push(3.0 + effect + 0.1 * rng.normal() as f32);
        }
    }
    let features = SideFeatures {
        user_tokens,
        user_vocab: 6,
        item_tokens,
        item_vocab: 6,
    };
    (features, train, valid)
}

fn small() -> DeepMfConfig {
    DeepMfConfig {
        dim: 8,
        feature_dim: 4,
        layers: vec![16, 8],
        l2: 0.001,
        batch_size: 32,
        epochs: 30,
        patience: 0,
        learning_rate: 0.01,
        ..DeepMfConfig::default()
    }
}

fn mean_rmse(train: &Ratings, valid: &Ratings) -> f64 {
    rmse(&vec![train.mean() as f32; valid.len()], &valid.values)
}

#[test]
fn a_fresh_model_predicts_the_bias_baseline() {
    let model = DeepMf::new(&small(), 5, 6, None, 3.5).unwrap();
    let (users, items): (Vec<u32>, Vec<u32>) =
        (0..5).flat_map(|u| (0..6).map(move |i| (u, i))).unzip();
    let got = model.predict(&users, &items).unwrap();
    let p: Vec<Vec<f32>> = model.users.var().as_tensor().to_vec2().unwrap();
    let q: Vec<Vec<f32>> = model.items.var().as_tensor().to_vec2().unwrap();
    for ((&u, &i), g) in users.iter().zip(&items).zip(&got) {
        let baseline = 3.5 + p[u as usize][8] + q[i as usize][8];
        assert!((g - baseline).abs() < 1e-6, "({u}, {i}): {g} vs {baseline}");
    }
}

#[test]
fn learns_low_rank_ratings_far_below_the_mean() {
    let (train, valid) = crate::testdata::low_rank_ratings(60, 50, 0.5, 11);
    let mean = mean_rmse(&train, &valid);
    let (model, report) = DeepMf::train(&small(), 60, 50, None, &train, &valid, |_| {}).unwrap();
    let fitted = report.best_validation.unwrap();
    eprintln!("deep_mf: {fitted} vs mean {mean}");
    assert!(fitted < 0.35 * mean, "{fitted} vs mean {mean}");
    assert_eq!(model.uses_features(), (false, false));
    assert_eq!(model.kind(), KIND);
    // The kept epoch's weights are the model's.
    let again = model.validation_rmse(&valid).unwrap().unwrap();
    assert!((again - fitted).abs() < 1e-6);
}

#[test]
fn side_features_learn_what_sparse_ids_cannot() {
    let (features, train, valid) = by_features(400, 60);
    let mean = mean_rmse(&train, &valid);
    let cfg = DeepMfConfig {
        l2: 0.05,
        ..small()
    };
    let run = |cfg: &DeepMfConfig| {
        let (model, report) =
            DeepMf::train(cfg, 400, 60, Some(&features), &train, &valid, |_| {}).unwrap();
        (model, report.best_validation.unwrap())
    };
    let (with, with_rmse) = run(&cfg);
    let (without, ids_rmse) = run(&DeepMfConfig {
        use_features: false,
        ..cfg.clone()
    });
    eprintln!("features {with_rmse}, ids only {ids_rmse}, mean {mean}");
    assert_eq!(with.uses_features(), (true, true));
    assert_eq!(without.uses_features(), (false, false));
    // The noise floor is 0.1 and the mean predictor 0.60: the tokens explain the ratings
    // (0.15), two ratings per user leave the ids far from it (0.45).
    assert!(with_rmse < 0.25, "{with_rmse}");
    assert!(ids_rmse > 0.35, "{ids_rmse} vs mean {mean}");
    assert!(with_rmse < 0.5 * ids_rmse, "{with_rmse} vs {ids_rmse}");
}

#[test]
fn refuses_bad_ids_features_and_settings() {
    let (features, train, valid) = by_features(20, 10);
    let cfg = DeepMfConfig {
        epochs: 1,
        ..small()
    };
    let (model, _) = DeepMf::train(&cfg, 20, 10, Some(&features), &train, &valid, |_| {}).unwrap();
    assert!(model.predict(&[20], &[0]).is_err());
    assert!(model.predict(&[0], &[10]).is_err());
    assert!(model.predict(&[0, 1], &[0]).is_err());
    assert_eq!(model.predict(&[19], &[9]).unwrap().len(), 1);

    // One user's token list missing; a token outside its vocabulary.
    let mut short = features.clone();
    short.user_tokens.pop();
    let train_with = |f: &SideFeatures, c: &DeepMfConfig| {
        DeepMf::train(c, 20, 10, Some(f), &train, &valid, |_| {}).map(|_| ())
    };
    assert!(train_with(&short, &cfg).is_err());
    let mut outside = features.clone();
    outside.item_tokens[0].push(6);
    assert!(train_with(&outside, &cfg).is_err());
    // Features that are not used are not read.
    let ids_only = DeepMfConfig {
        use_features: false,
        ..cfg.clone()
    };
    assert!(train_with(&short, &ids_only).is_ok());

    for bad in [
        DeepMfConfig {
            dim: 0,
            ..cfg.clone()
        },
        DeepMfConfig {
            feature_dim: 0,
            ..cfg.clone()
        },
        DeepMfConfig {
            layers: vec![],
            ..cfg.clone()
        },
        DeepMfConfig {
            layers: vec![8, 0],
            ..cfg.clone()
        },
        DeepMfConfig {
            dropout: 1.0,
            ..cfg.clone()
        },
        DeepMfConfig {
            learning_rate: 0.0,
            ..cfg.clone()
        },
        DeepMfConfig {
            l2: -1.0,
            ..cfg.clone()
        },
    ] {
        let err = train_with(&features, &bad).unwrap_err().to_string();
        assert!(err.contains("[deep_mf]"), "{err}");
    }
    let empty = Ratings::default();
    assert!(DeepMf::train(&cfg, 20, 10, None, &empty, &valid, |_| {}).is_err());
}

#[test]
fn the_same_seed_gives_the_same_model() {
    let (features, train, valid) = by_features(50, 20);
    let cfg = DeepMfConfig {
        epochs: 3,
        dropout: 0.2,
        ..small()
    };
    let predict = |cfg: &DeepMfConfig| {
        let (m, _) = DeepMf::train(cfg, 50, 20, Some(&features), &train, &valid, |_| {}).unwrap();
        m.predict(&valid.users, &valid.items).unwrap()
    };
    let a = predict(&cfg);
    assert_eq!(a, predict(&cfg));
    let other = predict(&DeepMfConfig { seed: 7, ..cfg });
    assert!(a.iter().zip(&other).any(|(x, y)| (x - y).abs() > 1e-4));
}

/// Impressions of `users` x `items` (each pair shown with probability 0.7, 80/20 split):
/// users and items fall into 3 taste groups (`id % 3`); a user watches an item of the same
/// group with probability 0.8, another with 0.1; a watched impression weighs its watch time,
/// uniform in [5, 15) seconds, an unwatched one 1.
fn impressions(users: usize, items: usize, seed: u64) -> (LabelledPairs, LabelledPairs) {
    let mut rng = Rng::new(seed);
    let (mut train, mut valid) = (LabelledPairs::default(), LabelledPairs::default());
    for u in 0..users {
        for i in 0..items {
            if rng.uniform() >= 0.7 {
                continue;
            }
            let p = if u % 3 == i % 3 { 0.8 } else { 0.1 };
            let watched = rng.uniform() < p;
            let weight = if watched {
                5.0 + 10.0 * rng.uniform() as f32
            } else {
                1.0
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
