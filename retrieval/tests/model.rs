//! Behaviour of the trained model: learnability, user vectors, persistence, reproducibility.

mod common;

use common::{sequence_data, tiny_config};
use retrieval::youtube_dnn::network::{FeatureSource, TowerInputs};
use retrieval::{
    Catalog, Example, Retriever, UserFeatures, UserQuery, WatchHistories, YoutubeDnn,
    YoutubeDnnConfig,
};

fn train(cfg: &YoutubeDnnConfig, data: &common::SequenceData) -> YoutubeDnn {
    let (model, _) = common::fit(
        cfg,
        &data.catalog,
        &data.train,
        &data.examples,
        None,
        &data.validation,
        |_| {},
    )
    .unwrap();
    model
}

#[test]
fn learns_a_next_item_rule_with_full_softmax() {
    let data = sequence_data(60, 300, 30, 0.9, 1);
    let model = train(&tiny_config(), &data);
    let hr10 = model.evaluate(&data.test, None, &[10]).unwrap().hit_rate(0);
    // Random guessing gives 10/60 = 0.17; always following the rule gives about 0.9.
    assert!(hr10 > 0.6, "test HR@10 {hr10}");
}

#[test]
fn learns_a_next_item_rule_with_sampled_softmax() {
    let data = sequence_data(200, 400, 30, 0.9, 2);
    let cfg = YoutubeDnnConfig {
        full_softmax_max_items: 0,
        num_negatives: 64,
        epochs: 6,
        dropout: 0.1,
        history_dropout: 0.1,
        ..tiny_config()
    };
    let (model, _) = common::fit(
        &cfg,
        &data.catalog,
        &data.train,
        &data.examples,
        None,
        &data.validation,
        |_| {},
    )
    .unwrap();
    assert!(
        data.catalog.num_items > cfg.full_softmax_max_items,
        "sampled softmax"
    );
    let hr10 = model.evaluate(&data.test, None, &[10]).unwrap().hit_rate(0);
    // Random guessing gives 10/200 = 0.05.
    assert!(hr10 > 0.5, "test HR@10 {hr10}");
}

#[test]
fn keeps_the_best_epoch_and_reports_every_epoch() {
    let data = sequence_data(40, 100, 20, 0.8, 3);
    let cfg = YoutubeDnnConfig {
        epochs: 3,
        ..tiny_config()
    };
    let mut seen = Vec::new();
    let (model, report) = common::fit(
        &cfg,
        &data.catalog,
        &data.train,
        &data.examples,
        None,
        &data.validation,
        |r| seen.push(r.clone()),
    )
    .unwrap();
    assert_eq!(seen, report.epochs);
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|r| r.loss.is_finite() && r.examples_per_second > 0.0));
    let best = report.best_validation.unwrap();
    let max = seen.iter().filter_map(|r| r.validation).fold(0.0, f64::max);
    assert_eq!(best, max);
    assert_eq!(seen[report.best_epoch - 1].validation, Some(best));
    let now = model
        .evaluate(&data.validation, None, &[10])
        .unwrap()
        .hit_rate(0);
    assert_eq!(now, best, "the kept weights are the best epoch's");
}

#[test]
fn history_mean_ignores_absent_watches() {
    let data = sequence_data(30, 50, 12, 0.8, 4);
    let cfg = YoutubeDnnConfig {
        epochs: 1,
        ..tiny_config()
    };
    let model = train(&cfg, &data);
    let short: &[u32] = &[3, 7];
    let long: Vec<u32> = (0..10).collect();
    // A short history batched with a long one (which a padded layout would pad it to) gives
    // the same user vector as on its own.
    let alone = model
        .user_vectors(&[UserQuery::from_history(short)])
        .unwrap();
    let batched = model
        .user_vectors(&[
            UserQuery::from_history(&long),
            UserQuery::from_history(short),
        ])
        .unwrap();
    let d = model.dim();
    for (a, b) in alone.iter().zip(&batched[d..]) {
        assert!((a - b).abs() < 1e-6, "{alone:?} vs {:?}", &batched[d..]);
    }
    // The history feature is the mean of the real watches: (E[3] + E[7]) / 2.
    let net = model.network();
    let inputs = TowerInputs::build(
        &net.layout,
        cfg.recent_window,
        &Default::default(),
        [FeatureSource {
            history: short,
            categorical: &[],
            numeric: &[],
            age: 0.0,
        }]
        .into_iter(),
    );
    let gathered = net.gather(&inputs).unwrap();
    let table = net.items.var().as_tensor().to_vec2::<f32>().unwrap();
    for k in 0..cfg.item_embedding_dim {
        let want = (table[3][k] + table[7][k]) / 2.0;
        assert!((gathered[k] - want).abs() < 1e-6);
    }
    // An empty history is not item 0 (absent watches are not zeros of the table).
    let empty = model.user_vectors(&[UserQuery::from_history(&[])]).unwrap();
    let zero = model
        .user_vectors(&[UserQuery::from_history(&[0])])
        .unwrap();
    assert_ne!(empty, zero);
    // Only the last max_history watches count.
    let mut longer = vec![5u32; 7];
    longer.extend(&long);
    let a = model
        .user_vectors(&[UserQuery::from_history(&long)])
        .unwrap();
    let b = model
        .user_vectors(&[UserQuery::from_history(&longer)])
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn scores_are_dot_products_plus_bias() {
    let data = sequence_data(30, 50, 12, 0.8, 5);
    let model = train(
        &YoutubeDnnConfig {
            epochs: 1,
            ..tiny_config()
        },
        &data,
    );
    let queries = [
        UserQuery::from_history(&[1, 2, 3]),
        UserQuery::from_history(&[4]),
    ];
    let u = model.user_vectors(&queries).unwrap();
    let (v, b) = model.item_vectors().unwrap();
    let scores = model.score_all(&queries).unwrap();
    let (d, n) = (model.dim(), model.num_items());
    assert_eq!(scores.len(), 2 * n);
    for row in 0..2 {
        for j in 0..n {
            let dot: f32 = (0..d).map(|k| u[row * d + k] * v[j * d + k]).sum::<f32>() + b[j];
            assert!((dot - scores[row * n + j]).abs() < 1e-4);
        }
    }
    assert_eq!(model.score_vectors(&u).unwrap(), scores);
}

#[test]
fn save_and_load_give_identical_vectors() {
    let data = sequence_data(30, 40, 12, 0.8, 6);
    let features = UserFeatures {
        cardinalities: vec![3, 2],
        categorical: (0..40).map(|u| vec![u % 3, u % 2]).collect(),
        num_numeric: 1,
        numeric: (0..40).map(|u| vec![u as f32 / 40.0]).collect(),
    };
    let cfg = YoutubeDnnConfig {
        epochs: 1,
        ..tiny_config()
    };
    let (model, _) = common::fit(
        &cfg,
        &data.catalog,
        &data.train,
        &data.examples,
        Some(&features),
        &data.validation,
        |_| {},
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("retrieval-roundtrip-{}", std::process::id()));
    model.save(&dir).unwrap();
    let loaded = YoutubeDnn::load(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(loaded.config(), model.config());
    assert_eq!(
        loaded.item_vectors().unwrap(),
        model.item_vectors().unwrap()
    );
    let queries = [
        UserQuery {
            history: &[1, 2, 3],
            categorical: &[2, 1],
            numeric: &[0.5],
            user: None,
        },
        UserQuery::from_history(&[4, 5]),
    ];
    assert_eq!(
        loaded.user_vectors(&queries).unwrap(),
        model.user_vectors(&queries).unwrap()
    );
    // Feature values outside the declared ones are refused, not a panic.
    let bad = UserQuery {
        history: &[1],
        categorical: &[3, 0],
        numeric: &[0.5],
        user: None,
    };
    assert!(loaded.user_vectors(&[bad]).is_err());
    assert!(YoutubeDnn::load(&dir.join("missing")).is_err());
}

#[test]
fn same_seed_same_model() {
    let data = sequence_data(40, 60, 15, 0.8, 7);
    let cfg = YoutubeDnnConfig {
        epochs: 2,
        ..tiny_config()
    };
    let a = train(&cfg, &data).item_vectors().unwrap();
    let b = train(&cfg, &data).item_vectors().unwrap();
    let c = train(&YoutubeDnnConfig { seed: 43, ..cfg }, &data)
        .item_vectors()
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn bad_inputs_are_errors() {
    let data = sequence_data(20, 10, 8, 0.8, 8);
    let cfg = tiny_config();
    let bad_example = [Example { user: 0, pos: 99 }];
    let r = common::fit(
        &cfg,
        &data.catalog,
        &data.train,
        &bad_example,
        None,
        &[],
        |_| {},
    );
    assert!(r.is_err());
    let small = Catalog::without_tokens(5);
    let r = common::fit(&cfg, &small, &data.train, &data.examples, None, &[], |_| {});
    assert!(r.is_err());
    let broken = WatchHistories {
        offsets: vec![0, 3],
        items: vec![1],
        times: vec![0],
    };
    let r = common::fit(
        &cfg,
        &data.catalog,
        &broken,
        &data.examples,
        None,
        &[],
        |_| {},
    );
    assert!(r.is_err());
    let model = train(&YoutubeDnnConfig { epochs: 1, ..cfg }, &data);
    assert!(model
        .user_vectors(&[UserQuery::from_history(&[20])])
        .is_err());
    // A model without user features ignores feature values given to it.
    let with_features = UserQuery {
        history: &[1],
        categorical: &[7],
        numeric: &[0.5, 0.5],
        user: Some(0),
    };
    assert_eq!(
        model.user_vectors(&[with_features]).unwrap(),
        model
            .user_vectors(&[UserQuery::from_history(&[1])])
            .unwrap()
    );
}

#[test]
fn the_model_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<YoutubeDnn>();
}

#[test]
fn a_diverging_run_is_an_error() {
    let data = sequence_data(20, 20, 8, 0.8, 9);
    let cfg = YoutubeDnnConfig {
        learning_rate: 1e30,
        ..tiny_config()
    };
    let r = common::fit(
        &cfg,
        &data.catalog,
        &data.train,
        &data.examples,
        None,
        &[],
        |_| {},
    );
    assert!(
        matches!(r, Err(retrieval::RetrievalError::Diverged(_))),
        "{r:?}"
    );
}
