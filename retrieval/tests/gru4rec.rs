//! GRU4Rec on a world where order matters (`common::ordered_world`): it learns the order
//! (validation HR@10 far above an order-free MF on the same data), the HNSW index's top 10 is
//! the model's own full forward top 10, a saved model loads with identical user vectors, and
//! the registry trains it by name.

mod common;

use common::{check, mf_validation_hit_rate, ordered_world};
use nn::Retriever;
use retrieval::gru4rec::{Gru4Rec, Gru4RecConfig};
use retrieval::{RetrievalSettings, TrainingSet, UserQuery};

/// The model's own full forward: the outputs of the history's window padded to `max_len`
/// (another padding than serving's), the last one scored against every item row in plain
/// Rust: `F . E_i + b_i`.
fn full_forward_scores(model: &Gru4Rec, history: &[u32]) -> Vec<f32> {
    let f = model
        .position_outputs(history, model.config().max_len)
        .unwrap();
    let last = f.last().cloned().unwrap_or_else(|| vec![0.0; model.dim()]);
    let table = model.item_table().to_vec2::<f32>().unwrap();
    table
        .iter()
        .map(|row| last.iter().zip(row).map(|(a, b)| a * b).sum::<f32>() + row[last.len()])
        .collect()
}

#[test]
fn gru4rec_learns_order_and_the_index_serves_it_exactly() {
    let (catalog, histories, examples, validation) = ordered_world();
    let data = TrainingSet {
        catalog: &catalog,
        histories: &histories,
        examples: &examples,
        user_features: None,
        validation: &validation,
    };
    let cfg = Gru4RecConfig {
        dim: 32,
        hidden: 48,
        max_len: 24,
        batch_size: 32,
        epochs: 40,
        patience: 5,
        learning_rate: 5e-3,
        dropout: 0.1,
        ..Gru4RecConfig::default()
    };
    let (model, report) = Gru4Rec::train(&cfg, &data, None, |_| {}).unwrap();
    let hr = report.best_validation.unwrap();
    let mf_hr = mf_validation_hit_rate(&data);
    eprintln!(
        "ordered world validation HR@10: gru4rec {hr:.4} (epoch {}), mf {mf_hr:.4}, chance {:.4}",
        report.best_epoch,
        10.0 / 376.0
    );
    assert!(hr > 0.8, "GRU4Rec validation HR@10 {hr}");
    assert!(hr > 2.0 * mf_hr, "GRU4Rec {hr} vs MF {mf_hr}");

    // Serving equals exact: the index's top 10 is the top 10 of the model's full forward.
    check(&model, &histories, "gru4rec", |q, _| {
        full_forward_scores(&model, q.history)
    });

    // Save and load through the registry: identical user vectors and item table.
    let dir = std::env::temp_dir().join(format!("gru4rec-it-{}", std::process::id()));
    model.save(&dir).unwrap();
    let loaded = retrieval::load(&dir).unwrap();
    assert_eq!(loaded.kind(), "gru4rec");
    let queries: Vec<UserQuery> = validation.iter().map(|c| c.query(None)).collect();
    assert_eq!(
        model.user_vectors(&queries).unwrap(),
        loaded.user_vectors(&queries).unwrap()
    );
    assert_eq!(
        model.item_vectors().unwrap(),
        loaded.item_vectors().unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_registry_knows_gru4rec_and_its_section() {
    assert!(retrieval::MODELS.contains(&"gru4rec"));
    let settings: RetrievalSettings = serde_json::from_str(
        r#"{"model": "gru4rec", "gru4rec": {"hidden": 32, "layers": 2, "epochs": 1}}"#,
    )
    .unwrap();
    assert!(settings.validate().is_ok());
    assert_eq!(settings.epochs(), 1);
    assert_eq!(settings.chosen_config()["layers"], 2);
    let bad: RetrievalSettings =
        serde_json::from_str(r#"{"model": "gru4rec", "gru4rec": {"layers": 0}}"#).unwrap();
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("[retrieval.gru4rec] layers"), "{err}");
    let unknown: Result<RetrievalSettings, _> =
        serde_json::from_str(r#"{"model": "gru4rec", "gru4rec": {"units": 3}}"#);
    assert!(unknown.is_err());
}
