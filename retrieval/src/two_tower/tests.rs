//! Unit tests: the item table is the item tower on each item's features (zero id part for
//! items added after training), `add_items` and save/load round trips, learning of
//! feature-only items, warm start, config validation.

use candle_core::{Device, Tensor};
use nn::rng::Rng;
use nn::{Catalog, Example, Retriever, TrainingSet, UserQuery, ValidationCase, WatchHistories};

use super::*;
use crate::warm::WarmStart;

/// A clustered world: item i belongs to cluster i % k and carries token c (its cluster) and
/// token k + i % 2 (noise); users of cluster u % k watch their cluster's items 90% of the
/// time. Durations and ages are known for most items, missing for some.
pub(super) struct World {
    pub(super) catalog: Catalog,
    histories: WatchHistories,
    examples: Vec<Example>,
    pub(super) validation: Vec<ValidationCase>,
    k: usize,
}

impl World {
    pub(super) fn new(items: usize, users: usize, len: usize, k: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let pick = |c: usize, rng: &mut Rng| {
            let c = if rng.uniform() < 0.9 { c } else { rng.below(k) };
            (c + k * rng.below(items / k)) as u32
        };
        let mut sequences = Vec::new();
        let mut validation = Vec::new();
        for u in 0..users {
            let seq: Vec<u32> = (0..len).map(|_| pick(u % k, &mut rng)).collect();
            let timed = seq[..len - 1]
                .iter()
                .enumerate()
                .map(|(t, &i)| (i, 1_000 + 60 * t as i64))
                .collect();
            sequences.push(timed);
            validation.push(ValidationCase {
                user: u as u32,
                history: seq[..len - 1].to_vec(),
                target: seq[len - 1],
                exclude: Vec::new(),
            });
        }
        let examples = (0..users as u32)
            .flat_map(|user| (1..len as u32 - 1).map(move |pos| Example { user, pos }))
            .collect();
        Self {
            catalog: clustered_catalog(0, items, k),
            histories: WatchHistories::from_sequences(&sequences),
            examples,
            validation,
            k,
        }
    }

    pub(super) fn data(&self) -> TrainingSet<'_> {
        TrainingSet {
            catalog: &self.catalog,
            histories: &self.histories,
            examples: &self.examples,
            user_features: None,
            validation: &self.validation,
        }
    }
}

/// Items `first..first + count` of the clustered world's catalogue (see [`World`]).
fn clustered_catalog(first: usize, count: usize, k: usize) -> Catalog {
    let ids = first..first + count;
    Catalog {
        num_items: count,
        item_tokens: ids
            .clone()
            .map(|i| vec![(i % k) as u32, (k + i % 2) as u32])
            .collect(),
        num_tokens: k + 2,
        duration_seconds: ids
            .clone()
            .map(|i| (i % 7 != 3).then_some(30.0 * (1 + i % 11) as f32))
            .collect(),
        age_days: ids
            .map(|i| (i % 5 != 1).then_some((i % 13) as f32))
            .collect(),
        reference_time: None,
    }
}

pub(super) fn small() -> TwoTowerConfig {
    TwoTowerConfig {
        dim: 8,
        id_embedding_dim: 8,
        token_embedding_dim: 4,
        item_hidden: vec![16],
        user_hidden: vec![16],
        max_history: 10,
        recent_window: 3,
        num_negatives: 16,
        batch_size: 32,
        epochs: 1,
        patience: 0,
        learning_rate: 5e-3,
        final_lr_fraction: 1.0,
        ..TwoTowerConfig::default()
    }
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
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

/// (mean, std) of log1p over the known values, computed here independently of the model.
fn stats(values: &[Option<f32>]) -> (f32, f32) {
    let logs: Vec<f64> = values
        .iter()
        .flatten()
        .map(|&x| (x as f64 + 1.0).ln())
        .collect();
    let n = logs.len() as f64;
    let mean = logs.iter().sum::<f64>() / n;
    let var = logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, var.sqrt() as f32)
}

/// The age bucket of an age in days, written out: half-octaves of 1 + days, 0 = unknown.
fn bucket_by_hand(age: Option<f32>) -> usize {
    match age {
        None => 0,
        Some(a) => {
            let mut k = 0;
            while k < 24 && 2f64.powf((k + 1) as f64 / 2.0) <= 1.0 + a as f64 {
                k += 1;
            }
            1 + k
        }
    }
}

#[test]
fn age_buckets_are_half_octaves() {
    for (age, want) in [
        (None, 0),
        (Some(0.0), 1),
        (Some(0.41), 1),
        (Some(0.42), 2),
        (Some(1.2), 3),
        (Some(2.0), 4),
        (Some(6.0), 6),
        (Some(30.0), 10),
        (Some(1e6), 25),
        (Some(-3.0), 1),
    ] {
        assert_eq!(age_bucket(age) as usize, want, "{age:?}");
        assert_eq!(bucket_by_hand(age), want, "{age:?}");
    }
}

/// The item tower's output for one item built by hand: `[id row or zeros, token mean,
/// duration z, missing, age z, missing]` through the tower, plus the age bias of the item's age bucket on
/// the bias output.
fn tower_by_hand(
    model: &TwoTower,
    train: &Catalog,
    item: &Catalog,
    k: usize,
    with_id: Option<usize>,
) -> Vec<f32> {
    let net = model.network();
    let ids = rows(net.ids.var().as_tensor());
    let tokens = rows(net.tokens.as_ref().unwrap().var().as_tensor());
    let mut x = match with_id {
        Some(j) => ids[j].clone(),
        None => vec![0.0; ids[0].len()],
    };
    let toks = &item.item_tokens[k];
    let mut mean = vec![0f32; tokens[0].len()];
    for &t in toks {
        for (m, v) in mean.iter_mut().zip(&tokens[t as usize]) {
            *m += v / toks.len() as f32;
        }
    }
    x.extend(mean);
    for (all, value) in [
        (&train.duration_seconds, item.duration_seconds[k]),
        (&train.age_days, item.age_days[k]),
    ] {
        let (m, s) = stats(all);
        match value {
            Some(v) => x.extend([((v as f64 + 1.0).ln() as f32 - m) / s, 0.0]),
            None => x.extend([0.0, 1.0]),
        }
    }
    let input = Tensor::from_vec(x.clone(), (1, x.len()), &Device::Cpu).unwrap();
    let mut out: Vec<f32> = net
        .item_tower
        .forward(&input)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let age_bias: Vec<f32> = net.age_bias.as_ref().unwrap().to_vec1().unwrap();
    let last = out.len() - 1;
    out[last] += age_bias[bucket_by_hand(item.age_days[k])];
    out
}

#[test]
fn the_item_table_is_the_item_tower_on_each_items_features() {
    let w = World::new(30, 24, 12, 3, 1);
    let (model, _) = TwoTower::train(&small(), &w.data(), None, |_| {}).unwrap();
    let table = rows(model.item_table());
    assert_eq!(table.len(), 30);
    assert_eq!(table[0].len(), 9);
    for (j, row) in table.iter().enumerate() {
        let want = tower_by_hand(&model, &w.catalog, &w.catalog, j, Some(j));
        assert_close(row, &want, &format!("item {j}"));
    }
    // An item index at or above the trained items has a zero id part.
    let mut m = model;
    m.add_items(&clustered_catalog(30, 1, 3)).unwrap();
    let row = rows(&m.item_table().narrow(0, 30, 1).unwrap()).remove(0);
    let want = tower_by_hand(&m, &w.catalog, &clustered_catalog(30, 1, 3), 0, None);
    assert_close(&row, &want, "added item 30");
    let with_id = tower_by_hand(&m, &w.catalog, &clustered_catalog(30, 1, 3), 0, Some(0));
    assert!(row.iter().zip(&with_id).any(|(a, b)| (a - b).abs() > 1e-4));
}

#[test]
fn added_items_get_feature_rows_and_survive_save_and_load() {
    let w = World::new(30, 24, 12, 3, 2);
    let (mut model, _) = TwoTower::train(&small(), &w.data(), None, |_| {}).unwrap();
    let before = rows(model.item_table());
    let added = clustered_catalog(30, 4, 3);
    model.add_items(&added).unwrap();
    assert_eq!(model.num_items(), 34);
    let table = rows(model.item_table());
    assert_eq!(table.len(), 34);
    assert_eq!(&table[..30], &before[..], "known rows unchanged");
    for k in 0..4 {
        let want = tower_by_hand(&model, &w.catalog, &added, k, None);
        assert_close(&table[30 + k], &want, &format!("added item {}", 30 + k));
    }
    // Item vectors and user vectors, also of histories holding the added items.
    let histories: [&[u32]; 3] = [&[0, 3, 6], &[31, 2, 33], &[]];
    let queries: Vec<UserQuery> = histories
        .iter()
        .map(|h| UserQuery::from_history(h))
        .collect();
    let users = model.user_vectors(&queries).unwrap();
    let dir = std::env::temp_dir().join(format!("two-tower-unit-{}", std::process::id()));
    model.save(&dir).unwrap();
    let loaded = crate::registry::load(&dir).unwrap();
    assert_eq!((loaded.kind(), loaded.num_items()), ("two_tower", 34));
    assert_eq!(
        rows(loaded.item_table()),
        table,
        "item table reproduced exactly"
    );
    assert_eq!(
        loaded.user_vectors(&queries).unwrap(),
        users,
        "user vectors exactly"
    );
    // The loaded model keeps adding items from the saved features.
    let mut loaded = TwoTower::load(&dir).unwrap();
    loaded.add_items(&clustered_catalog(34, 1, 3)).unwrap();
    let mut again = model;
    again.add_items(&clustered_catalog(34, 1, 3)).unwrap();
    assert_eq!(rows(loaded.item_table()), rows(again.item_table()));
    std::fs::remove_dir_all(&dir).ok();
    // Bad additions are errors, and leave the model as it was.
    let bad = Catalog {
        item_tokens: vec![vec![99]],
        ..clustered_catalog(35, 1, 3)
    };
    assert!(loaded.add_items(&bad).is_err());
    let short = Catalog {
        age_days: vec![],
        duration_seconds: vec![Some(1.0), Some(2.0)],
        ..clustered_catalog(35, 1, 3)
    };
    assert!(loaded.add_items(&short).is_err());
    assert_eq!(loaded.num_items(), 35);
    // Without durations or ages in the addition, they count as missing.
    loaded
        .add_items(&Catalog {
            num_items: 1,
            item_tokens: vec![vec![0]],
            num_tokens: 5,
            ..Catalog::default()
        })
        .unwrap();
    assert_eq!(loaded.item_table().dims(), [36, 9]);
}

#[test]
fn items_added_from_features_score_higher_for_their_clusters_users() {
    let k = 4;
    let w = World::new(80, 120, 20, k, 3);
    let cfg = TwoTowerConfig {
        dim: 16,
        id_embedding_dim: 16,
        token_embedding_dim: 8,
        item_hidden: vec![32],
        user_hidden: vec![32],
        epochs: 8,
        ..small()
    };
    let (trained, report) = TwoTower::train(&cfg, &w.data(), None, |_| {}).unwrap();
    let untrained = TwoTower::train(
        &TwoTowerConfig { epochs: 0, ..cfg },
        &w.data(),
        None,
        |_| {},
    )
    .unwrap()
    .0;
    let (pair_rate, top_rate) = cold_rates(trained, &w);
    let (pair_before, top_before) = cold_rates(untrained, &w);
    eprintln!(
        "two_tower cold items: own-cluster beats other-cluster in {pair_rate:.3} of pairs \
         ({pair_before:.3} untrained), top new item in own cluster for {top_rate:.3} of users \
         ({top_before:.3} untrained, chance {:.2}); validation HR@10 {:?}",
        1.0 / w.k as f64,
        report.best_validation,
    );
    assert!(pair_rate > 0.9, "pair rate {pair_rate}");
    assert!(top_rate > 0.9, "top rate {top_rate}");
    assert!(
        pair_before < 0.8 && top_before < 0.8,
        "{pair_before} {top_before}"
    );
}

/// After adding 4 items per cluster from their features: the share of (own-cluster,
/// other-cluster) new item pairs a user scores in the right order, and the share of users
/// whose best new item is of their cluster.
fn cold_rates(mut model: TwoTower, w: &World) -> (f64, f64) {
    let (k, known) = (w.k, w.catalog.num_items);
    model
        .add_items(&clustered_catalog(known, 4 * k, k))
        .unwrap();
    let queries: Vec<UserQuery> = w
        .validation
        .iter()
        .map(|c| UserQuery::from_history(&c.history))
        .collect();
    let scores = model.score_all(&queries).unwrap();
    let n = model.num_items();
    let cluster = |j: usize| (known + j) % k;
    let (mut wins, mut pairs, mut top_own) = (0usize, 0usize, 0usize);
    for (u, s) in scores.chunks(n).enumerate() {
        let own = u % k;
        let new = &s[known..];
        for a in (0..new.len()).filter(|&a| cluster(a) == own) {
            for b in (0..new.len()).filter(|&b| cluster(b) != own) {
                pairs += 1;
                wins += usize::from(new[a] > new[b]);
            }
        }
        let best = (0..new.len()).max_by(|&a, &b| new[a].total_cmp(&new[b]));
        top_own += usize::from(best.map(cluster) == Some(own));
    }
    let users = w.validation.len() as f64;
    (wins as f64 / pairs as f64, top_own as f64 / users)
}

#[test]
fn warm_start_keeps_known_items_id_rows_and_new_items_start_from_features() {
    let w = World::new(30, 24, 12, 3, 4);
    let (old, _) = TwoTower::train(&small(), &w.data(), None, |_| {}).unwrap();
    // The new catalogue: the old items in reverse order, then two new ones.
    let mut catalog = clustered_catalog(0, 32, 3);
    catalog.item_tokens[..30].reverse();
    catalog.duration_seconds[..30].reverse();
    catalog.age_days[..30].reverse();
    // Unknown durations and ages keep the fitted statistics those of the old catalogue.
    catalog.duration_seconds[30..].fill(None);
    catalog.age_days[30..].fill(None);
    let map: Vec<Option<u32>> = (0..32).map(|r| (r < 30).then(|| 29 - r as u32)).collect();
    let warm = WarmStart {
        weights: old.weights().unwrap(),
        items: map.clone(),
        tokens: (0..5).map(Some).collect(),
        users: Vec::new(),
    };
    let data = TrainingSet {
        catalog: &catalog,
        ..w.data()
    };
    let new =
        TwoTower::warm_started(&small(), &data, Some(&warm), &candle_core::Device::Cpu).unwrap();
    let (old_ids, new_ids) = (
        rows(old.network().ids.var().as_tensor()),
        rows(new.network().ids.var().as_tensor()),
    );
    assert_eq!(new_ids.len(), 32);
    for (r, prev) in map.iter().enumerate() {
        match prev {
            Some(p) => assert_eq!(new_ids[r], old_ids[*p as usize], "row {r}"),
            None => assert!(new_ids[r].iter().all(|&x| x == 0.0), "new item {r}"),
        }
    }
    let towers = |m: &TwoTower| rows(m.network().item_tower.layers().next().unwrap().weight());
    assert_eq!(towers(&new), towers(&old));
    // Same weights, same features: a known item's row moves with it.
    let (old_t, new_t) = (rows(old.item_table()), rows(new.item_table()));
    assert_close(&new_t[0], &old_t[29], "item 29 -> 0");
}

#[test]
fn logq_corrections_count_both_kinds_of_negatives_and_hits_are_masked() {
    // Targets' shares p = (1/2, 1/4, 1/4, 0); draws from (count + 1)^1 over counts
    // (0, 1, 3, 0): q = (1/8, 2/8, 4/8, 1/8), S = 2 draws; B = 3 rows.
    let sampler = nn::softmax::NegativeSampler::new(&[0, 1, 3, 0], 1.0, 2).unwrap();
    let share = [0.5, 0.25, 0.25, 0.0];
    let targets = [0, 1, 0];
    let columns = [0, 1, 0, 0, 3]; // the targets, then the negatives 0 and 3
    let (adjust, hits) = train::corrections(Some(&sampler), &share, &targets, &columns);
    // E[n_0] = 3/2 + 2/8, E[n_1] = 3/4 + 4/8, E[n_3] = 0 + 2/8.
    let want: Vec<f32> = [1.75f64, 1.25, 1.75, 1.75, 0.25]
        .iter()
        .map(|e| -e.ln() as f32)
        .collect();
    assert_close(&adjust, &want, "logQ");
    // Row 0 (item 0) meets its item again in columns 2 and 3, row 2 in columns 0 and 3; the
    // own column is never masked.
    let mut hits = hits;
    hits.sort();
    assert_eq!(hits, vec![(0, 2), (0, 3), (2, 0), (2, 3)]);
    // In-batch only: the correction is -log(B p_j).
    let (adjust, _) = train::corrections(None, &share, &targets, &columns[..3]);
    assert_close(
        &adjust,
        &[-(1.5f32.ln()), -(0.75f32.ln()), -(1.5f32.ln())],
        "in-batch",
    );
}

#[test]
fn config_errors_are_one_line_naming_the_key() {
    assert!(TwoTowerConfig::default().validate().is_ok());
    let cases = [
        (
            TwoTowerConfig {
                id_dropout: 1.0,
                ..TwoTowerConfig::default()
            },
            "id_dropout must be in [0, 1), not 1",
        ),
        (
            TwoTowerConfig {
                dim: 0,
                ..TwoTowerConfig::default()
            },
            "dim must be positive",
        ),
        (
            TwoTowerConfig {
                temperature: 0.0,
                ..TwoTowerConfig::default()
            },
            "temperature must be finite and positive, not 0",
        ),
        (
            TwoTowerConfig {
                item_hidden: vec![8, 0],
                ..TwoTowerConfig::default()
            },
            "item_hidden widths must be positive, not [8, 0]",
        ),
    ];
    for (cfg, want) in cases {
        let err = cfg.validate().unwrap_err().to_string();
        assert_eq!(err, format!("invalid config: [retrieval.two_tower] {want}"));
        assert!(!err.contains('\n'));
    }
    let settings: crate::RetrievalSettings =
        serde_json::from_str(r#"{"model": "two_tower", "two_tower": {"dim": 32, "epochs": 3}}"#)
            .unwrap();
    assert!(settings.validate().is_ok());
    assert_eq!(settings.epochs(), 3);
    assert_eq!(settings.chosen_config()["dim"], 32);
    assert!(crate::MODELS.contains(&KIND));
    let unknown: std::result::Result<crate::RetrievalSettings, _> =
        serde_json::from_str(r#"{"model": "two_tower", "two_tower": {"towers": 3}}"#);
    assert!(unknown.is_err());
}
