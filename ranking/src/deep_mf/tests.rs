//! Unit tests of the parent module on ratings, and of its GPU code path.

use super::*;
use nn::rating::rmse;

/// Ratings that depend on side features only: each user has a gender token (0 or 1) and an
/// age token (2..6, noise), each item one to three genres of 0..6; r = 3 + 1 when the user
/// has gender 0 and the item genre 0, 3 - 1 when gender 1 and genre 0, 3 otherwise, plus
/// N(0, 0.1²). Every user rates 2 items for training and 2 for validation, too few for the
/// id embeddings to learn a user's taste.
pub(super) fn by_features(users: usize, items: usize) -> (SideFeatures, Ratings, Ratings) {
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

pub(super) fn small() -> DeepMfConfig {
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
pub(super) fn impressions(users: usize, items: usize, seed: u64) -> (LabelledPairs, LabelledPairs) {
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

/// The GPU code path (candle ops, what `device = "cuda:N"` runs, here on the CPU) trains the
/// same deep MF as the fused kernels from the same seed, with side features and dropout: the
/// rating model on ratings and the ranker on labelled pairs. The model comes back in host
/// memory with the same weights file, and the device's scoring gives the same predictions.
#[test]
fn candle_ops_train_the_fused_kernels_deep_mf() {
    let fused = DeepMfConfig {
        epochs: 3,
        dropout: 0.2,
        ..small()
    };
    let candle = DeepMfConfig {
        compute: nn::Compute::Candle(Device::Cpu),
        ..fused.clone()
    };
    let close = |a: &[f32], b: &[f32]| {
        let scale = 1.0 + a.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4 * scale)
    };
    let (features, ratings, rated_valid) = by_features(30, 24);
    let (pairs, pairs_valid) = impressions(30, 24, 9);
    let (users, items): (Vec<u32>, Vec<u32>) =
        (0..30).flat_map(|u| (0..24).map(move |i| (u, i))).unzip();
    for labelled in [false, true] {
        let fit = |c: &DeepMfConfig| {
            let f = Some(&features);
            let trained = match labelled {
                false => DeepMf::train(c, 30, 24, f, &ratings, &rated_valid, |_| {}),
                true => DeepMf::train_labelled(c, 30, 24, f, &pairs, &pairs_valid, |_| {}),
            };
            trained.unwrap().0
        };
        let (a, b) = (fit(&fused), fit(&candle));
        assert!(b.users.var().as_tensor().device().is_cpu(), "host memory");
        let (pa, pb) = (
            a.predict(&users, &items).unwrap(),
            b.predict(&users, &items).unwrap(),
        );
        assert!(
            close(&pa, &pb),
            "{labelled}: {:?} vs {:?}",
            &pa[..3],
            &pb[..3]
        );
        let (wa, wb) = (a.weights().unwrap(), b.weights().unwrap());
        let mut names: Vec<&String> = wa.keys().collect();
        names.sort();
        for name in names {
            let t = &wb[name];
            assert_eq!((t.dims(), t.dtype()), (wa[name].dims(), wa[name].dtype()));
        }
        // Training moved the model off its start (h = 0: the bias baseline).
        let h = wb["h"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(h.iter().any(|x| x.abs() > 1e-3), "{labelled}: h {h:?}");
        let fresh = DeepMf::new(&fused, 30, 24, Some(&features), b.offset()).unwrap();
        let start = fresh.predict(&users, &items).unwrap();
        assert!(!close(&start, &pb), "{labelled}: the model did not train");
        // Scoring in candle ops (the model on a GPU) equals the fused gathers.
        let device = b.predict_rows(&users, &items, false).unwrap();
        assert!(close(&pb, &device.to_vec1::<f32>().unwrap()));
    }
}
