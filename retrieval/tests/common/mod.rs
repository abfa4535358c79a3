//! Small synthetic data sets shared by the integration tests.

#![allow(dead_code)]

use index::{HnswConfig, Index, ItemVectors};
use nn::rng::Rng;
use nn::Retriever;
use retrieval::{
    Catalog, EpochReport, Example, Mf, MfConfig, TrainReport, TrainingSet, UserFeatures, UserQuery,
    ValidationCase, WatchHistories, YoutubeDnn, YoutubeDnnConfig,
};

/// Trains the YouTube network on plain inputs (no warm start).
pub fn fit(
    cfg: &YoutubeDnnConfig,
    catalog: &Catalog,
    histories: &WatchHistories,
    examples: &[Example],
    user_features: Option<&UserFeatures>,
    validation: &[ValidationCase],
    progress: impl FnMut(&EpochReport),
) -> retrieval::Result<(YoutubeDnn, TrainReport)> {
    let data = TrainingSet {
        catalog,
        histories,
        examples,
        user_features,
        validation,
    };
    YoutubeDnn::train(cfg, &data, None, progress)
}

/// A sequence problem: item `i` is followed by `next[i]`, a fixed random permutation, with
/// probability `follow`, otherwise by a random item. Returns histories (all but the last two
/// watches), examples over them, validation and test cases (second-to-last and last watch).
pub struct SequenceData {
    pub catalog: Catalog,
    pub train: WatchHistories,
    pub examples: Vec<Example>,
    pub validation: Vec<ValidationCase>,
    pub test: Vec<ValidationCase>,
}

pub fn sequence_data(
    items: usize,
    users: usize,
    len: usize,
    follow: f64,
    seed: u64,
) -> SequenceData {
    let mut rng = Rng::new(seed);
    let mut next: Vec<u32> = (0..items as u32).collect();
    rng.shuffle(&mut next);
    let mut sequences = Vec::new();
    let (mut validation, mut test) = (Vec::new(), Vec::new());
    for u in 0..users {
        let mut seq = vec![rng.below(items) as u32];
        while seq.len() < len {
            let last = *seq.last().unwrap_or(&0);
            let item = if rng.uniform() < follow {
                next[last as usize]
            } else {
                rng.below(items) as u32
            };
            seq.push(item);
        }
        let train: Vec<(u32, i64)> = seq[..len - 2]
            .iter()
            .enumerate()
            .map(|(k, &i)| (i, 1_000_000 + 3600 * k as i64))
            .collect();
        let hist: Vec<u32> = seq[..len - 2].to_vec();
        validation.push(ValidationCase {
            user: u as u32,
            history: hist.clone(),
            target: seq[len - 2],
            exclude: vec![],
        });
        test.push(ValidationCase {
            user: u as u32,
            history: seq[..len - 1].to_vec(),
            target: seq[len - 1],
            exclude: vec![],
        });
        sequences.push(train);
    }
    let train = WatchHistories::from_sequences(&sequences);
    let examples = (0..users)
        .flat_map(|u| {
            (1..len - 2).map(move |p| Example {
                user: u as u32,
                pos: p as u32,
            })
        })
        .collect();
    let catalog = Catalog {
        num_items: items,
        item_tokens: (0..items).map(|i| vec![(i % 3) as u32]).collect(),
        num_tokens: 3,

        ..Default::default()
    };
    SequenceData {
        catalog,
        train,
        examples,
        validation,
        test,
    }
}

/// A small, fast configuration.
pub fn tiny_config() -> YoutubeDnnConfig {
    YoutubeDnnConfig {
        dim: 16,
        item_embedding_dim: 16,
        token_embedding_dim: 4,
        user_embedding_dim: 4,
        hidden: vec![32],
        max_history: 10,
        recent_window: 2,
        batch_size: 64,
        epochs: 4,
        patience: 0,
        learning_rate: 0.01,
        final_lr_fraction: 1.0,
        dropout: 0.0,
        history_dropout: 0.0,
        num_negatives: 32,
        ..YoutubeDnnConfig::default()
    }
}

/// Asserts, for the first 40 users, that the index's top 10 for the model's user vector is the
/// top 10 of `own(query, user)`, the model's own full-catalogue output (seen items excluded).
pub fn check<R: Retriever>(
    model: &R,
    histories: &WatchHistories,
    label: &str,
    own: impl Fn(UserQuery, u32) -> Vec<f32>,
) where
    R::Error: std::fmt::Debug,
{
    let (v, b) = model.item_vectors().unwrap();
    let n = model.num_items();
    let ids: Vec<i64> = (0..n as i64).collect();
    let vectors = ItemVectors::new(ids, model.dim(), v, b).unwrap();
    let config = HnswConfig {
        exact_below: 0,
        ..HnswConfig::default()
    };
    let index = Index::build(vectors, &config, &|_, _| {}).unwrap();
    for user in 0..40u32 {
        let history = histories.user_items(user as usize);
        let query = UserQuery {
            user: Some(user),
            ..UserQuery::from_history(history)
        };
        let u = model.user_vectors(&[query]).unwrap();
        let served: Vec<u32> = index
            .search(&u, 10, 200, history)
            .unwrap()
            .iter()
            .map(|h| h.index)
            .collect();
        let out = own(query, user);
        let mut exact: Vec<u32> = (0..n as u32).filter(|i| !history.contains(i)).collect();
        exact.sort_by(|&a, &b| out[b as usize].total_cmp(&out[a as usize]).then(a.cmp(&b)));
        exact.truncate(10);
        assert_eq!(served, exact, "{label} user {user}");
    }
}

/// 240 users in 4 taste groups over 400 items. Each group's 100 items form a fixed
/// (shuffled) cycle, `next[i]` being the item after i. A user's watch follows the previous
/// one on the cycle with probability 1/2, otherwise it is a random item of the group (of the
/// whole catalogue with probability 1/10). The first 24 watches train; the validation target
/// is always `next[last watch]`. The set of watches does not tell which of the ~12 items
/// whose successor is unseen came last; the order does.
pub fn ordered_world() -> (Catalog, WatchHistories, Vec<Example>, Vec<ValidationCase>) {
    let mut state = 11u64;
    let mut rand = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let items = 400u64;
    let mut next = vec![0u32; items as usize];
    for g in 0..4u64 {
        let mut c: Vec<u32> = (0..100).map(|k| (g * 100 + k) as u32).collect();
        for i in (1..c.len()).rev() {
            c.swap(i, rand(i as u64 + 1) as usize);
        }
        for k in 0..100 {
            next[c[k] as usize] = c[(k + 1) % 100];
        }
    }
    let mut sequences = Vec::new();
    let mut validation = Vec::new();
    for u in 0..240u64 {
        let group = u % 4;
        let random_item = |rand: &mut dyn FnMut(u64) -> u64| match rand(10) {
            0 => rand(items) as u32,
            _ => (group * 100 + rand(100)) as u32,
        };
        let seq = loop {
            let mut seq: Vec<u32> = vec![random_item(&mut rand)];
            while seq.len() < 24 {
                let last = seq[seq.len() - 1];
                let item = match rand(2) {
                    0 => next[last as usize],
                    _ => random_item(&mut rand),
                };
                if !seq.contains(&item) {
                    seq.push(item);
                }
            }
            let target = next[seq[23] as usize];
            if !seq.contains(&target) {
                seq.push(target);
                break seq;
            }
        };
        validation.push(ValidationCase {
            user: u as u32,
            history: seq[..24].to_vec(),
            target: seq[24],
            exclude: seq[..24].to_vec(),
        });
        sequences.push(
            seq[..24]
                .iter()
                .enumerate()
                .map(|(k, &i)| (i, k as i64))
                .collect::<Vec<_>>(),
        );
    }
    let histories = WatchHistories::from_sequences(&sequences);
    let examples = (0..240u32)
        .flat_map(|user| (1..24u32).map(move |pos| Example { user, pos }))
        .collect();
    (
        Catalog::without_tokens(items as usize),
        histories,
        examples,
        validation,
    )
}

/// Best validation HR@10 of an order-free MF (dim 32) on `data`: the baseline the sequence
/// models are compared with on [`ordered_world`].
pub fn mf_validation_hit_rate(data: &TrainingSet) -> f64 {
    let mf_cfg = MfConfig {
        dim: 32,
        epochs: 40,
        patience: 5,
        batch_size: 256,
        learning_rate: 1e-2,
        ..MfConfig::default()
    };
    let (_, mf_report) = Mf::train(&mf_cfg, data, None, |_| {}).unwrap();
    mf_report.best_validation.unwrap()
}
