use super::*;
use crate::feature_ranker::testkit;
use crate::registry::RankerSettings;
use nn::rng::Rng;

/// The XOR world with two labels: `long_view` at a constant rate of 0.3 (independent of every
/// feature) and `is_like` = watched and a coin flip.
fn labelled(seed: u64, count: usize) -> Vec<RankingExample> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    testkit::xor_world(seed, count)
        .into_iter()
        .map(|mut e| {
            let long_view = f32::from(u8::from(rng.uniform() < 0.3));
            let like = f32::from(u8::from(e.label && rng.uniform() < 0.5));
            e.labels = vec![long_view, like];
            e
        })
        .collect()
}

fn small(experts: usize) -> MultitaskConfig {
    MultitaskConfig {
        item_dim: 8,
        token_dim: 4,
        user_dim: 4,
        bottom: vec![32],
        experts,
        expert_hidden: vec![16],
        tower: vec![8],
        epochs: 12,
        batch_size: 128,
        learning_rate: 1e-2,
        patience: 0,
        ..MultitaskConfig::default()
    }
}

fn settings(config: MultitaskConfig, labels: &[&str]) -> RankerSettings {
    RankerSettings {
        model: KIND.into(),
        multitask: config,
        labels: labels.iter().map(|s| s.to_string()).collect(),
        ..RankerSettings::default()
    }
}

fn train(
    s: &RankerSettings,
    train: &[RankingExample],
    valid: &[RankingExample],
) -> (Box<crate::DynRanker>, f64) {
    let (r, report) = s
        .train(testkit::xor_schema(), train, valid, &mut |_| {})
        .expect("trains");
    (r, report.best_validation.expect("validation"))
}

#[test]
fn a_constant_rate_head_learns_its_rate_and_the_model_round_trips() {
    for experts in [0, 3] {
        let (fit, valid) = (labelled(1, 3000), labelled(2, 600));
        let s = settings(small(experts), &["long_view", "is_like"]);
        let (ranker, _) = train(&s, &fit, &valid);
        assert_eq!(ranker.task_names(), ["watch", "long_view", "is_like"]);
        let logits = ranker.task_logits(&valid).expect("task logits");
        let mean = |t: usize| {
            logits[t]
                .iter()
                .map(|&z| 1.0 / (1.0 + (-f64::from(z)).exp()))
                .sum::<f64>()
                / valid.len() as f64
        };
        let spread = logits[1].iter().fold(0f32, |m, &z| m.max(z))
            - logits[1].iter().fold(0f32, |m, &z| m.min(z));
        eprintln!(
            "experts {experts}: long_view mean {:.3}, spread {spread:.3}",
            mean(1)
        );
        assert!((mean(1) - 0.3).abs() < 0.03, "long_view rate {}", mean(1));
        // The like head ranks watched impressions above the others.
        let watched: Vec<bool> = valid.iter().map(|e| e.label).collect();
        let like_auc = testkit::auc(&watched, &logits[2]);
        assert!(like_auc > 0.7, "like head AUC on watches {like_auc}");
        // The serving logit is the watch head's by default.
        assert_eq!(ranker.logits(&valid).expect("logits"), logits[0]);
        let dir = std::env::temp_dir().join(format!(
            "recpipe-multitask-{experts}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        ranker.save(&dir).expect("save");
        let loaded = crate::registry::load(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let loaded = loaded.expect("load");
        assert_eq!(loaded.kind(), KIND);
        assert_eq!(loaded.task_logits(&valid).expect("loaded"), logits);
    }
}

#[test]
fn a_zero_weight_head_leaves_the_other_heads_unchanged() {
    for experts in [0, 2] {
        let (fit, valid) = (labelled(3, 1500), labelled(4, 300));
        // With the like head at weight 0 ...
        let mut zero = small(experts);
        zero.epochs = 4;
        zero.loss_weights.insert("is_like".into(), 0.0);
        let (with_head, loss_with) = train(
            &settings(zero.clone(), &["long_view", "is_like"]),
            &fit,
            &valid,
        );
        // ... and without the like column at all.
        let drop = |examples: &[RankingExample]| -> Vec<RankingExample> {
            examples
                .iter()
                .map(|e| RankingExample {
                    labels: e.labels[..1].to_vec(),
                    ..e.clone()
                })
                .collect()
        };
        let (without, loss_without) =
            train(&settings(zero, &["long_view"]), &drop(&fit), &drop(&valid));
        assert_eq!(without.task_names(), ["watch", "long_view"]);
        let a = with_head.task_logits(&valid).expect("with");
        let b = without.task_logits(&drop(&valid)).expect("without");
        assert_eq!(a[..2], b[..], "experts {experts}");
        assert_eq!(loss_with.to_bits(), loss_without.to_bits());
        // A positive weight does change them (the shared bottom learns from the like head).
        let mut half = small(experts);
        half.epochs = 4;
        half.loss_weights.insert("is_like".into(), 0.5);
        let (other, _) = train(&settings(half, &["long_view", "is_like"]), &fit, &valid);
        assert_ne!(other.task_logits(&valid).expect("other")[0], a[0]);
    }
}

#[test]
fn mmoe_without_labels_learns_the_cross_and_round_trips() {
    let config = MultitaskConfig {
        epochs: 20,
        learning_rate: 3e-3,
        ..small(4)
    };
    let auc = testkit::learns_the_cross_and_round_trips::<MultitaskHead>(&config);
    assert!(auc > 0.75);
}

#[test]
fn bad_labels_and_keys_are_one_line_errors() {
    let mut fit = labelled(5, 200);
    fit[7].labels[1] = 2.0;
    let s = settings(small(0), &["long_view", "is_like"]);
    let err = s
        .train(testkit::xor_schema(), &fit, &[], &mut |_| {})
        .err()
        .expect("fails")
        .to_string();
    assert!(err.contains("is_like = 2") && err.contains('7'), "{err}");
    let mut c = small(0);
    c.loss_weights.insert("is_lik".into(), 1.0);
    let err = c.validate().expect_err("typo").to_string();
    assert!(
        err.contains("[ranking.multitask] loss_weights") && !err.contains('\n'),
        "{err}"
    );
}
