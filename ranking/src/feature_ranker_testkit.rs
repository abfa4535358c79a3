//! What the cross rankers' tests share: a world where only a feature cross predicts the
//! label, AUC, and the checks every cross ranker must pass.

use super::*;
use crate::registry::RankingModel;
use nn::rng::Rng;
use nn::Ranker;

/// The schema of [`xor_world`]: 8 items, 2 tokens, one binary user field, one continuous
/// feature (noise), 6 users.
pub fn xor_schema() -> FeatureSchema {
    FeatureSchema {
        n_users: 6,
        n_items: 8,
        n_tokens: 2,
        user_cardinalities: vec![2],
        continuous: vec!["noise".into()],
    }
}

/// Impressions whose label depends only on whether the user's field equals the item's
/// parity: watched with probability 0.7 when it does, 0.1 when not (watch time 10 s). Every
/// field alone is independent of the label (P = 0.4 for each value), so a model without
/// crosses can do no better than the base rate. Recent watches and a missing value now and
/// then exercise the rest of the input.
pub fn xor_world(seed: u64, count: usize) -> Vec<RankingExample> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let (a, i) = (rng.below(2) as u32, rng.below(8) as u32);
            let p = if a == i % 2 { 0.7 } else { 0.1 };
            let label = rng.uniform() < p;
            let noise = if rng.below(10) == 0 {
                f32::NAN
            } else {
                rng.uniform() as f32
            };
            RankingExample {
                user: Some(rng.below(6) as u32),
                item: Some(i),
                recent_watches: vec![rng.below(8) as u32],
                item_tokens: vec![i % 2],
                recent_tokens: vec![rng.below(2) as u32],
                user_categorical: vec![Some(a)],
                continuous: vec![noise],
                label,
                watch_time: if label { 10.0 } else { 0.0 },
                labels: Vec::new(),
            }
        })
        .collect()
}

/// Area under the ROC curve of `scores` for `labels` (ties count half).
pub fn auc(labels: &[bool], scores: &[f32]) -> f64 {
    let (mut pairs, mut right) = (0f64, 0f64);
    for (p, &sp) in labels.iter().zip(scores) {
        for (n, &sn) in labels.iter().zip(scores) {
            if *p && !*n {
                pairs += 1.0;
                right += if sp > sn {
                    1.0
                } else if sp == sn {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    right / pairs.max(1.0)
}

/// Trains `config` on the XOR world and checks that the model learnt the cross (validation
/// AUC well above chance, weighted loss well below the base rate's), that scoring matches
/// the training network, and that a save and a load through the registry give identical
/// logits. Returns the validation AUC.
pub fn learns_the_cross_and_round_trips<H: CrossHead>(config: &H::Config) -> f64 {
    let (train, valid) = (xor_world(1, 3000), xor_world(2, 600));
    let (ranker, report) = CrossRanker::<H>::train_with(
        &nn::Compute::FusedCpu,
        config,
        xor_schema(),
        false,
        &train,
        &valid,
        &mut |_| {},
    )
    .expect("trains");
    let logits = ranker.logits(&valid).expect("logits");
    let labels: Vec<bool> = valid.iter().map(|e| e.label).collect();
    let auc = auc(&labels, &logits);
    // The base rate's weighted loss: the constant logit log(sum w+ / sum w-).
    let (pos, neg) = valid.iter().fold((0f64, 0f64), |(p, n), e| {
        if e.label {
            (p + f64::from(e.watch_time), n)
        } else {
            (p, n + 1.0)
        }
    });
    let prior = log_loss_of(&valid, &vec![(pos / neg).ln() as f32; valid.len()], false);
    let fitted = report.best_validation.expect("validation");
    eprintln!(
        "{}: AUC {auc:.3}, weighted loss {fitted:.4}, base rate {prior:.4}",
        H::KIND
    );
    // The Bayes AUC of this world is 0.8125; without the cross it is 0.5.
    assert!(auc > 0.75, "{}: AUC {auc}", H::KIND);
    assert!(fitted < 0.85 * prior, "{}: {fitted} vs {prior}", H::KIND);
    let own = ranker.weighted_log_loss(&valid, false).expect("loss");
    assert!((own - fitted).abs() < 1e-6);
    // The scoring path (rows assembled in Rust) matches the training input (candle bags).
    let reference = ranker.training_net_logits(&valid).expect("reference");
    for (a, b) in logits.iter().zip(&reference) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
    // Saved and loaded through the registry: identical logits, also out of vocabulary.
    let dir =
        std::env::temp_dir().join(format!("recpipe-cross-{}-{}", H::KIND, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    ranker.save(&dir).expect("save");
    let loaded = crate::registry::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let loaded = loaded.expect("load");
    assert_eq!(loaded.kind(), H::KIND);
    let mut probe = valid[..50].to_vec();
    probe[0].item = None;
    probe[1].user_categorical = vec![None];
    probe[2].recent_watches.clear();
    assert_eq!(
        loaded.logits(&probe).expect("loaded"),
        ranker.logits(&probe).expect("trained")
    );
    assert_eq!(loaded.config_json(), ranker.config_json());
    auc
}
