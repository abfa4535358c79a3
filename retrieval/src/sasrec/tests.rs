//! Unit tests: causality, padding invariance, save/load, validation, the sampled path.

use super::*;
use candle_core::{Device, Tensor};
use nn::{Catalog, Example, TrainingSet, ValidationCase, WatchHistories};
use nn::{Retriever, UserQuery};

fn small() -> SasRecConfig {
    SasRecConfig {
        dim: 16,
        heads: 2,
        blocks: 2,
        max_len: 20,
        init_std: 0.3,
        ..SasRecConfig::default()
    }
}

fn user_vector(model: &SasRec, history: &[u32]) -> Vec<f32> {
    model
        .user_vectors(&[UserQuery::from_history(history)])
        .unwrap()
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "{what}: max difference {worst}");
}

#[test]
fn outputs_never_see_the_future() {
    let model = SasRec::untrained(&small(), 50).unwrap();
    let history = [3u32, 7, 1, 9];
    let longer = [3u32, 7, 1, 9, 12, 5, 30];
    let outputs = model.position_outputs(&longer, longer.len()).unwrap();
    assert_eq!(outputs.len(), longer.len());
    // Every prefix's user vector is the longer sequence's output at the prefix's last slot.
    for k in 1..=longer.len() {
        let u = user_vector(&model, &longer[..k]);
        assert_close(&u, &outputs[k - 1], &format!("prefix {k}"));
    }
    assert_close(
        &user_vector(&model, &history),
        &outputs[history.len() - 1],
        "history",
    );
    // And the outputs do depend on the history (the check is not vacuous).
    let other = user_vector(&model, &[3, 7, 2, 9]);
    assert!(outputs[3]
        .iter()
        .zip(&other)
        .any(|(x, y)| (x - y).abs() > 1e-3));
}

#[test]
fn padding_never_changes_an_output() {
    let model = SasRec::untrained(&small(), 50).unwrap();
    let history = [3u32, 7, 1, 9, 22];
    let tight = model.position_outputs(&history, 5).unwrap();
    for padded in [10, 20, 40] {
        let padded_out = model.position_outputs(&history, padded).unwrap();
        for (k, (a, b)) in tight.iter().zip(&padded_out).enumerate() {
            assert_close(a, b, &format!("padded to {padded}, slot {k}"));
        }
    }
    // In a batch with a longer history (more padding for the short one): same vector.
    let alone = user_vector(&model, &history);
    let long: Vec<u32> = (10..30).collect();
    let both = model
        .user_vectors(&[
            UserQuery::from_history(&long),
            UserQuery::from_history(&history),
        ])
        .unwrap();
    assert_close(&alone, &both[16..], "batched with a longer history");
    // Padding slots read item 0's row; changing it changes nothing for a history without it.
    let table = model.network.items.var();
    let mut w = table.as_tensor().to_vec2::<f32>().unwrap();
    w[0].iter_mut().for_each(|x| *x = 100.0);
    table.set(&Tensor::new(w, &Device::Cpu).unwrap()).unwrap();
    assert_close(&alone, &user_vector(&model, &history), "item 0 changed");
}

#[test]
fn long_histories_use_their_last_max_len_items_and_empty_ones_give_zero() {
    let model = SasRec::untrained(&small(), 50).unwrap();
    let long: Vec<u32> = (0..45).collect();
    assert_close(
        &user_vector(&model, &long),
        &user_vector(&model, &long[25..]),
        "last 20",
    );
    assert!(user_vector(&model, &[]).iter().all(|&x| x == 0.0));
    assert!(model
        .user_vectors(&[UserQuery::from_history(&[50])])
        .is_err());
}

#[test]
fn save_load_round_trip_gives_identical_vectors() {
    let model = SasRec::untrained(&small(), 50).unwrap();
    let dir = std::env::temp_dir().join(format!("sasrec-unit-{}", std::process::id()));
    model.save(&dir).unwrap();
    let loaded = crate::load(&dir).unwrap();
    assert_eq!(loaded.kind(), KIND);
    let h = [4u32, 8, 15, 16, 23, 42];
    let q = [UserQuery::from_history(&h)];
    assert_eq!(
        model.user_vectors(&q).unwrap(),
        loaded.user_vectors(&q).unwrap()
    );
    assert_eq!(
        model.item_vectors().unwrap(),
        loaded.item_vectors().unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn validate_refuses_heads_that_do_not_divide_dim() {
    let cfg = SasRecConfig {
        dim: 10,
        heads: 3,
        ..SasRecConfig::default()
    };
    let err = cfg.validate().unwrap_err().to_string();
    assert!(
        err.contains("[retrieval.sasrec]") && err.contains("heads"),
        "{err}"
    );
    assert!(SasRecConfig::default().validate().is_ok());
    let bad_dropout = SasRecConfig {
        dropout: 1.0,
        ..SasRecConfig::default()
    };
    assert!(bad_dropout.validate().is_err());
    let parsed: std::result::Result<SasRecConfig, _> = serde_json::from_str(r#"{"dims": 3}"#);
    assert!(parsed.is_err());
}

#[test]
fn the_sampled_softmax_path_trains_the_item_rows_sparsely() {
    // Item i is followed by i + 1 (mod 30); 40 users of 12 watches.
    let items = 30u32;
    let sequences: Vec<Vec<(u32, i64)>> = (0..40u32)
        .map(|u| (0..12).map(|k| ((u + k) % items, k as i64)).collect())
        .collect();
    let histories = WatchHistories::from_sequences(&sequences);
    let examples: Vec<Example> = (0..40u32)
        .flat_map(|user| (1..12u32).map(move |pos| Example { user, pos }))
        .collect();
    let validation: Vec<ValidationCase> = (0..40u32)
        .map(|u| {
            let h = histories.user_items(u as usize).to_vec();
            ValidationCase {
                user: u,
                target: (u + 12) % items,
                exclude: h.clone(),
                history: h,
            }
        })
        .collect();
    let catalog = Catalog::without_tokens(items as usize);
    let data = TrainingSet {
        catalog: &catalog,
        histories: &histories,
        examples: &examples,
        user_features: None,
        validation: &validation,
    };
    let cfg = SasRecConfig {
        dim: 16,
        max_len: 8,
        full_softmax_max_items: 0,
        num_negatives: 16,
        batch_size: 16,
        epochs: 30,
        patience: 0,
        learning_rate: 1e-2,
        dropout: 0.1,
        ..SasRecConfig::default()
    };
    let (model, report) = SasRec::train(&cfg, &data, None, |_| {}).unwrap();
    let first = report.epochs[0].loss;
    let last = report.epochs.last().unwrap().loss;
    let hr = report.best_validation.unwrap();
    assert!(last < first, "loss {first} -> {last}");
    assert!(hr > 0.5, "sampled-softmax validation HR@10 {hr}");
    assert!(model.user_vectors(&[validation[0].query(None)]).is_ok());
}
