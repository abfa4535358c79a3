//! Matrix factorisation as a network: it learns users' tastes, a training user is served by
//! their own row and a new history by the fold-in, scores are u . v + b, and the model
//! survives a save / load through the registry.

use nn::rng::Rng;
use retrieval::{
    Catalog, Example, Mf, MfConfig, Retriever, TrainingSet, UserQuery, ValidationCase,
    WatchHistories,
};

/// Users in `clusters` taste groups; item i belongs to group i % clusters; each user watches
/// `len` distinct random items of their group. Returns histories (all but the last two),
/// examples, validation and test cases.
struct Clusters {
    catalog: Catalog,
    histories: WatchHistories,
    examples: Vec<Example>,
    validation: Vec<ValidationCase>,
    test: Vec<ValidationCase>,
}

fn clusters(items: usize, users: usize, clusters: usize, len: usize, seed: u64) -> Clusters {
    let mut rng = Rng::new(seed);
    let (mut sequences, mut validation, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..users {
        let group = u % clusters;
        let mut own: Vec<u32> = (0..items as u32)
            .filter(|i| *i as usize % clusters == group)
            .collect();
        rng.shuffle(&mut own);
        let seq = &own[..len];
        let train: Vec<(u32, i64)> = seq[..len - 2]
            .iter()
            .enumerate()
            .map(|(k, &i)| (i, 1_000 + k as i64))
            .collect();
        validation.push(ValidationCase {
            user: u as u32,
            history: seq[..len - 2].to_vec(),
            target: seq[len - 2],
            exclude: seq[..len - 2].to_vec(),
        });
        test.push(ValidationCase {
            user: u as u32,
            history: seq[..len - 1].to_vec(),
            target: seq[len - 1],
            exclude: seq[..len - 1].to_vec(),
        });
        sequences.push(train);
    }
    let examples = (0..users as u32)
        .flat_map(|user| (0..len as u32 - 2).map(move |pos| Example { user, pos }))
        .collect();
    Clusters {
        catalog: Catalog::without_tokens(items),
        histories: WatchHistories::from_sequences(&sequences),
        examples,
        validation,
        test,
    }
}

fn config() -> MfConfig {
    MfConfig {
        dim: 8,
        batch_size: 64,
        epochs: 15,
        patience: 0,
        learning_rate: 0.05,
        ..MfConfig::default()
    }
}

fn train(cfg: &MfConfig, d: &Clusters) -> Mf {
    let data = TrainingSet {
        catalog: &d.catalog,
        histories: &d.histories,
        examples: &d.examples,
        user_features: None,
        validation: &d.validation,
    };
    Mf::train(cfg, &data, None, |_| {}).expect("train").0
}

#[test]
fn learns_taste_groups_and_folds_in_new_histories() {
    // 4 groups of 50 items: a random guess hits the top 10 with probability 10/190.
    let d = clusters(200, 120, 4, 12, 1);
    let model = train(&config(), &d);
    let hr10 = model
        .evaluate(&d.test, None, &[10])
        .expect("eval")
        .hit_rate(0);
    assert!(hr10 > 0.15, "test HR@10 {hr10}");

    // A history the model never saw, all from group 3: its top 10 come from group 3.
    let history: Vec<u32> = (0..200u32).filter(|i| i % 4 == 3).take(6).collect();
    let scores = model
        .score_all(&[UserQuery::from_history(&history)])
        .expect("score");
    let mut order: Vec<usize> = (0..200)
        .filter(|i| !history.contains(&(*i as u32)))
        .collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let in_group = order[..10].iter().filter(|&&i| i % 4 == 3).count();
    assert!(
        in_group >= 8,
        "fold-in top 10 has {in_group} items of the group"
    );
}

#[test]
fn training_users_are_served_by_their_row_and_scores_are_dot_products_plus_bias() {
    let d = clusters(60, 30, 3, 8, 2);
    let model = train(
        &MfConfig {
            epochs: 2,
            ..config()
        },
        &d,
    );
    let dim = model.dim();
    // A known user's vector does not depend on the history given with it.
    let a = model
        .user_vectors(&[UserQuery {
            user: Some(5),
            ..UserQuery::from_history(&[1])
        }])
        .expect("u");
    let b = model
        .user_vectors(&[UserQuery {
            user: Some(5),
            ..UserQuery::from_history(&[2, 3])
        }])
        .expect("u");
    assert_eq!(a, b);
    // An index-free exact score equals u . v_j + b_j from the exported vectors.
    let (v, bias) = model.item_vectors().expect("items");
    let s = model.score_vectors(&a).expect("scores");
    for j in [0usize, 17, 59] {
        let dot: f32 = (0..dim).map(|k| a[k] * v[j * dim + k]).sum::<f32>() + bias[j];
        assert!((s[j] - dot).abs() < 1e-4, "item {j}: {} vs {dot}", s[j]);
    }
    // Items outside the catalogue are an error, not a panic.
    assert!(model
        .user_vectors(&[UserQuery::from_history(&[60])])
        .is_err());
}

#[test]
fn save_and_load_through_the_registry_keep_every_vector() {
    let d = clusters(40, 20, 2, 8, 3);
    let model = train(
        &MfConfig {
            epochs: 1,
            ..config()
        },
        &d,
    );
    let dir = std::env::temp_dir().join(format!("recpipe-mf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    model.save(&dir).expect("save");
    let loaded = retrieval::load(&dir).expect("load");
    assert_eq!(loaded.kind(), "mf");
    assert_eq!(
        loaded.item_vectors().expect("v"),
        model.item_vectors().expect("v")
    );
    let queries = [
        UserQuery {
            user: Some(3),
            ..UserQuery::from_history(&[])
        },
        UserQuery::from_history(&[0, 2, 4]),
    ];
    assert_eq!(
        loaded.user_vectors(&queries).expect("u"),
        model.user_vectors(&queries).expect("u")
    );
    // A folder naming a model this build does not know is a clear error.
    let json = std::fs::read_to_string(dir.join(retrieval::CONFIG_FILE)).expect("json");
    std::fs::write(
        dir.join(retrieval::CONFIG_FILE),
        json.replace("\"model\": \"mf\"", "\"model\": \"sasrec2\""),
    )
    .expect("write");
    let err = retrieval::load(&dir)
        .err()
        .expect("unknown kind")
        .to_string();
    assert!(
        err.contains("sasrec2") && err.contains("youtube_dnn, mf"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
