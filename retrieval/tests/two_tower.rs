//! The two-tower model end to end on `common::sequence_data` with user features: the
//! registry trains it by name, it learns (validation HR@10 well above chance), the user
//! features reach the user vector, the HNSW index's top 10 is the model's exact top 10 before
//! and after items are added from their features, and a saved model (with its added items)
//! loads with identical item and user vectors.

mod common;

use common::{check, sequence_data};
use nn::Retriever;
use retrieval::two_tower::{TwoTower, TwoTowerConfig};
use retrieval::{Catalog, RetrievalSettings, TrainingSet, UserFeatures, UserQuery};

const USERS: usize = 150;
const ITEMS: usize = 200;

fn features() -> UserFeatures {
    UserFeatures {
        cardinalities: vec![3],
        categorical: (0..USERS as u32).map(|u| vec![u % 3]).collect(),
        num_numeric: 1,
        numeric: (0..USERS).map(|u| vec![(u % 5) as f32 / 4.0]).collect(),
    }
}

#[test]
fn two_tower_learns_uses_user_features_and_the_index_serves_it_exactly() {
    let d = sequence_data(ITEMS, USERS, 20, 0.8, 7);
    let features = features();
    let data = TrainingSet {
        catalog: &d.catalog,
        histories: &d.train,
        examples: &d.examples,
        user_features: Some(&features),
        validation: &d.validation,
    };
    let cfg = TwoTowerConfig {
        dim: 32,
        id_embedding_dim: 32,
        token_embedding_dim: 4,
        item_hidden: vec![64],
        user_hidden: vec![64],
        batch_size: 64,
        num_negatives: 64,
        epochs: 15,
        patience: 4,
        learning_rate: 5e-3,
        ..TwoTowerConfig::default()
    };
    let (mut model, report) = TwoTower::train(&cfg, &data, None, |_| {}).unwrap();
    let hr = report.best_validation.unwrap();
    let chance = 10.0 / ITEMS as f64;
    eprintln!(
        "sequence world validation HR@10: two_tower {hr:.4} (epoch {}), chance {chance:.4}",
        report.best_epoch
    );
    assert!(hr > 3.0 * chance, "two_tower validation HR@10 {hr}");

    // The user features reach the user vector; values outside them are errors.
    let history = d.train.user_items(0);
    let with = |categorical: &'static [u32]| UserQuery {
        categorical,
        numeric: &[0.5],
        ..UserQuery::from_history(history)
    };
    let a = model.user_vectors(&[with(&[0])]).unwrap();
    let b = model.user_vectors(&[with(&[2])]).unwrap();
    assert_ne!(a, b);
    assert!(model.user_vectors(&[with(&[3])]).is_err());

    // Serving equals exact, before and after adding items from their features.
    let exact = |m: &TwoTower, q: UserQuery| m.score_all(&[q]).unwrap();
    check(&model, &d.train, "two_tower", |q, _| exact(&model, q));
    let added = Catalog {
        num_items: 6,
        item_tokens: (0..6).map(|i| vec![i % 3]).collect(),
        num_tokens: 3,
        ..Catalog::default()
    };
    model.add_items(&added).unwrap();
    assert_eq!(model.num_items(), ITEMS + 6);
    check(&model, &d.train, "two_tower + added", |q, _| {
        exact(&model, q)
    });

    // Save and load through the registry: identical user vectors and item table.
    let dir = std::env::temp_dir().join(format!("two-tower-it-{}", std::process::id()));
    model.save(&dir).unwrap();
    let loaded = retrieval::load(&dir).unwrap();
    assert_eq!(
        (loaded.kind(), loaded.num_items()),
        ("two_tower", ITEMS + 6)
    );
    let queries: Vec<UserQuery> = d
        .validation
        .iter()
        .map(|c| c.query(Some(&features)))
        .collect();
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
fn the_registry_trains_two_tower_by_name() {
    let d = sequence_data(60, 30, 10, 0.8, 3);
    let data = TrainingSet {
        catalog: &d.catalog,
        histories: &d.train,
        examples: &d.examples,
        user_features: None,
        validation: &d.validation,
    };
    let settings: RetrievalSettings = serde_json::from_str(
        r#"{"model": "two_tower", "two_tower": {"dim": 8, "item_hidden": [], "epochs": 2}}"#,
    )
    .unwrap();
    let (model, report) = settings.train(&data, None, |_| {}).unwrap();
    assert_eq!(
        (model.kind(), model.num_items(), model.dim()),
        ("two_tower", 60, 8)
    );
    assert_eq!(report.epochs.len(), 2);
    assert_eq!(model.item_table().dims(), [60, 9]);
}
