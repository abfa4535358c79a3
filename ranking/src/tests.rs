//! Behaviour tests of training, scoring and persistence on small hand-made data.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::{FeatureSchema, RankerConfig, RankingError, RankingExample, YoutubeRanker};

/// Item 0: watched 1 time in 20, for 20 s (E[T] = 1 s per impression, weighted odds
/// 1 / 0.95); item 1: watched 1 time in 10, for 5 s (E[T] = 0.5 s, odds 0.5 / 0.9).
/// The unit-weight odds order them the other way: 1/19 < 1/9.
fn toy_examples(copies: usize) -> Vec<RankingExample> {
    let mut examples = Vec::new();
    for _ in 0..copies {
        for i in 0..20 {
            examples.push(RankingExample {
                user: None,
                item: Some(0),
                label: i == 0,
                watch_time: 20.0,
                ..Default::default()
            });
        }
        for i in 0..10 {
            examples.push(RankingExample {
                user: None,
                item: Some(1),
                label: i == 0,
                watch_time: 5.0,
                ..Default::default()
            });
        }
    }
    examples
}

fn toy_schema() -> FeatureSchema {
    FeatureSchema {
        n_users: 0,
        n_items: 2,
        ..Default::default()
    }
}

fn toy_config(unit_weights: bool) -> RankerConfig {
    RankerConfig {
        item_dim: 4,
        token_dim: 0,
        user_dim: 0,
        hidden: vec![8],
        epochs: 300,
        batch_size: 1200,
        learning_rate: 0.05,
        weight_decay: 0.0,
        patience: 0,
        unit_weights,
        ..Default::default()
    }
}

fn item_scores(ranker: &YoutubeRanker) -> Vec<f32> {
    let probe = [0, 1].map(|i| RankingExample {
        user: None,
        item: Some(i),
        ..Default::default()
    });
    ranker.score(&probe).unwrap_or_default()
}

#[test]
fn weights_move_the_optimum_to_expected_watch_time() -> Result<(), RankingError> {
    // Full-batch steps: the optimum, not the noise of small weighted batches, is under test.
    let data = toy_examples(40);
    let (weighted, _) =
        YoutubeRanker::train(toy_schema(), toy_config(false), &data, &[], &mut |_| {})?;
    let scores = item_scores(&weighted);
    // e^logit converges to the weighted odds E[T] / (1 - P): 1.053 and 0.556.
    assert!(
        (scores[0] - 1.0 / 0.95).abs() < 0.01,
        "item 0 scored {}",
        scores[0]
    );
    assert!(
        (scores[1] - 0.5 / 0.9).abs() < 0.01,
        "item 1 scored {}",
        scores[1]
    );
    // Within 10% of the expected watch time itself when P(watch) is small.
    assert!((scores[0] / 1.0 - 1.0).abs() < 0.1 && (scores[1] / 0.5 - 1.0).abs() < 0.15);

    let (unit, _) = YoutubeRanker::train(toy_schema(), toy_config(true), &data, &[], &mut |_| {})?;
    let odds = item_scores(&unit);
    assert!(
        (odds[0] - 1.0 / 19.0).abs() < 0.002 && (odds[1] - 1.0 / 9.0).abs() < 0.002,
        "{odds:?}"
    );
    assert!(scores[0] > scores[1] && odds[0] < odds[1]);
    Ok(())
}

#[test]
fn training_is_reproducible_and_early_stopping_keeps_the_best_epoch() -> Result<(), RankingError> {
    let data = toy_examples(10);
    let config = RankerConfig {
        epochs: 6,
        patience: 2,
        ..toy_config(false)
    };
    let mut epochs_seen = 0;
    let (a, report) = YoutubeRanker::train(
        toy_schema(),
        config.clone(),
        &data,
        &data[..60],
        &mut |_| epochs_seen += 1,
    )?;
    let (b, _) = YoutubeRanker::train(toy_schema(), config, &data, &data[..60], &mut |_| {})?;
    assert_eq!(item_scores(&a), item_scores(&b));
    assert_eq!(epochs_seen, report.epochs.len());
    let best = report
        .epochs
        .iter()
        .filter_map(|e| e.validation)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(report.best_validation, Some(best));
    assert!((a.weighted_log_loss(&data[..60], false)? - best).abs() < 1e-6);
    Ok(())
}

#[test]
fn save_and_load_round_trip() -> Result<(), RankingError> {
    let schema = FeatureSchema {
        n_users: 0,
        n_items: 3,
        n_tokens: 2,
        user_cardinalities: vec![2],
        continuous: vec!["age".into()],
    };
    let data: Vec<RankingExample> = (0..60)
        .map(|i| RankingExample {
            user: None,
            item: Some(i % 3),
            recent_watches: vec![(i + 1) % 3],
            item_tokens: vec![i % 2],
            recent_tokens: vec![0, 1],
            user_categorical: vec![Some(i % 2)],
            continuous: vec![if i % 7 == 0 { f32::NAN } else { i as f32 }],
            label: i % 4 == 0,
            watch_time: i as f32,
            labels: Vec::new(),
        })
        .collect();
    let config = RankerConfig {
        epochs: 2,
        hidden: vec![8, 4],
        ..Default::default()
    };
    let (ranker, _) =
        YoutubeRanker::train(schema.clone(), config.clone(), &data, &[], &mut |_| {})?;
    let dir = std::env::temp_dir().join(format!("ranking-roundtrip-{}", std::process::id()));
    ranker.save(&dir)?;
    let loaded = YoutubeRanker::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let loaded = loaded?;
    assert_eq!(loaded.config(), &config);
    assert_eq!(loaded.schema(), &schema);
    assert_eq!(loaded.quantiles(), ranker.quantiles());
    assert_eq!(loaded.score(&data)?, ranker.score(&data)?);
    assert!(matches!(
        YoutubeRanker::load(&dir),
        Err(RankingError::Io { .. })
    ));
    Ok(())
}

#[test]
fn out_of_vocabulary_ids_get_the_zero_embedding() -> Result<(), RankingError> {
    let schema = FeatureSchema {
        n_users: 0,
        n_items: 3,
        n_tokens: 1,
        user_cardinalities: vec![2],
        continuous: vec![],
    };
    let config = RankerConfig {
        item_dim: 2,
        token_dim: 2,
        user_dim: 2,
        hidden: vec![4],
        ..Default::default()
    };
    let device = Device::Cpu;
    let tensor = |values: &[f32], rows: usize, cols: usize| {
        Tensor::from_slice(values, (rows, cols), &device)
    };
    // Item row 0 and user row 1 are zero; the other rows are not.
    let weights = HashMap::from([
        (
            "items.table".to_string(),
            tensor(&[0.0, 0.0, 1.0, -1.0, 0.5, 2.0], 3, 2)?,
        ),
        ("tokens.table".to_string(), tensor(&[0.3, -0.2], 1, 2)?),
        (
            "users.table".to_string(),
            tensor(&[0.7, 0.1, 0.0, 0.0], 2, 2)?,
        ),
        (
            "tower.hidden.0.weight".to_string(),
            tensor(
                &(0..40)
                    .map(|i| (i % 7) as f32 * 0.1 - 0.3)
                    .collect::<Vec<_>>(),
                4,
                10,
            )?,
        ),
        (
            "tower.hidden.0.bias".to_string(),
            tensor(&[0.1; 4], 1, 4)?.squeeze(0)?,
        ),
        (
            "tower.output.weight".to_string(),
            tensor(&[1.0, -0.5, 0.25, 2.0], 1, 4)?,
        ),
        (
            "tower.output.bias".to_string(),
            tensor(&[0.0], 1, 1)?.squeeze(0)?,
        ),
    ]);
    let ranker = YoutubeRanker::from_weights(config, schema, Default::default(), weights, &device)?;
    let base = RankingExample {
        user: None,
        item: Some(0),
        recent_watches: vec![0],
        user_categorical: vec![Some(1)],
        ..Default::default()
    };
    let oov = RankingExample {
        user: None,
        item: None,
        recent_watches: vec![],
        user_categorical: vec![None],
        ..Default::default()
    };
    let known = RankingExample {
        user: None,
        item: Some(2),
        ..base.clone()
    };
    let logits = ranker.logits(&[base, oov, known])?;
    assert_eq!(logits[0], logits[1]);
    assert_ne!(logits[0], logits[2]);
    Ok(())
}

#[test]
fn examples_outside_the_schema_are_errors() -> Result<(), RankingError> {
    let (ranker, _) = YoutubeRanker::train(
        toy_schema(),
        RankerConfig {
            epochs: 1,
            ..toy_config(false)
        },
        &toy_examples(1),
        &[],
        &mut |_| {},
    )?;
    let bad_item = RankingExample {
        user: None,
        item: Some(2),
        ..Default::default()
    };
    assert!(matches!(
        ranker.score(&[bad_item]),
        Err(RankingError::InvalidExample { index: 0, .. })
    ));
    let bad_continuous = RankingExample {
        continuous: vec![1.0],
        ..Default::default()
    };
    assert!(matches!(
        ranker.score(&[Default::default(), bad_continuous]),
        Err(RankingError::InvalidExample { index: 1, .. })
    ));
    let empty: Vec<RankingExample> = Vec::new();
    assert!(matches!(
        YoutubeRanker::train(toy_schema(), toy_config(false), &empty, &[], &mut |_| {}),
        Err(RankingError::NoTrainingData)
    ));
    Ok(())
}

#[test]
fn scoring_path_matches_the_training_network() -> Result<(), RankingError> {
    let schema = FeatureSchema {
        n_users: 0,
        n_items: 50,
        n_tokens: 7,
        user_cardinalities: vec![3, 5],
        continuous: vec!["a".into(), "b".into()],
    };
    let mut state = 11u64;
    let mut next = |m: u32| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % u64::from(m)) as u32
    };
    let mut examples = Vec::new();
    for user in 0..40 {
        let context = RankingExample {
            recent_watches: (0..user % 6).map(|_| next(50)).collect(),
            recent_tokens: (0..user % 4).map(|_| next(7)).collect(),
            user_categorical: vec![Some(next(3)), (user % 3 != 0).then(|| next(5))],
            ..Default::default()
        };
        for _ in 0..1 + user % 5 {
            examples.push(RankingExample {
                user: None,
                item: (next(10) != 0).then(|| next(50)),
                item_tokens: (0..next(3)).map(|_| next(7)).collect(),
                continuous: vec![
                    next(100) as f32,
                    if next(4) == 0 {
                        f32::NAN
                    } else {
                        next(9) as f32
                    },
                ],
                label: next(3) == 0,
                watch_time: next(60) as f32,
                ..context.clone()
            });
        }
    }
    let config = RankerConfig {
        epochs: 2,
        hidden: vec![16, 8],
        ..Default::default()
    };
    let (ranker, _) = YoutubeRanker::train(schema, config, &examples, &[], &mut |_| {})?;
    let fast = ranker.logits(&examples)?;
    let reference = ranker.training_net_logits(&examples)?;
    assert_eq!(fast.len(), examples.len());
    for (a, b) in fast.iter().zip(&reference) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
    Ok(())
}

#[test]
fn ranker_can_be_shared_across_threads_and_bad_files_are_errors() -> Result<(), RankingError> {
    fn shareable<T: Send + Sync>() {}
    shareable::<YoutubeRanker>();
    let (ranker, _) = YoutubeRanker::train(
        toy_schema(),
        RankerConfig {
            epochs: 1,
            ..toy_config(false)
        },
        &toy_examples(1),
        &[],
        &mut |_| {},
    )?;
    let dir = std::env::temp_dir().join(format!("ranking-badfiles-{}", std::process::id()));
    ranker.save(&dir)?;
    let meta = dir.join(crate::META_FILE);
    let text = std::fs::read_to_string(&meta).map_err(|source| RankingError::Io {
        path: meta.clone(),
        source,
    })?;
    let truncated =
        std::fs::write(&meta, &text[..text.len() / 2]).map(|_| YoutubeRanker::load(&dir));
    let weights = dir.join(crate::WEIGHTS_FILE);
    let garbage = std::fs::write(&meta, &text)
        .and_then(|_| std::fs::write(&weights, b"not safetensors"))
        .map(|_| YoutubeRanker::load(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(truncated, Ok(Err(RankingError::Json { .. }))));
    assert!(matches!(garbage, Ok(Err(RankingError::Candle(_)))));
    Ok(())
}

/// The GPU code path (candle ops for the network and its AdamW, what `device = "cuda:N"` runs,
/// here on the CPU) trains the same ranker as the fused kernels from the same seed.
#[test]
fn candle_ops_train_the_fused_kernels_rankers() -> Result<(), RankingError> {
    use crate::dcn_v2::{DcnV2Config, DcnV2Head};
    use crate::feature_ranker::testkit::{xor_schema, xor_world};
    use crate::feature_ranker::CrossRanker;
    use crate::registry::RankingModel;
    use nn::Compute;

    let examples = xor_world(5, 700);
    let (valid, fit) = examples.split_at(200);
    let ways = [Compute::FusedCpu, Compute::Candle(Device::Cpu)];
    let close = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-3 * (1.0 + y.abs()))
    };

    let config = RankerConfig {
        epochs: 3,
        hidden: vec![16],
        ..Default::default()
    };
    let mut logits = Vec::new();
    for compute in &ways {
        let (ranker, report) = YoutubeRanker::train_with(
            compute,
            xor_schema(),
            config.clone(),
            fit,
            valid,
            &mut |_| {},
        )?;
        assert_eq!(report.epochs.len(), 3);
        logits.push(ranker.logits(valid)?);
    }
    assert!(
        close(&logits[0], &logits[1]),
        "YouTube ranker: {:?} vs {:?}",
        &logits[0][..4],
        &logits[1][..4]
    );

    let config = DcnV2Config {
        epochs: 2,
        ..DcnV2Config::default()
    };
    let mut losses = Vec::new();
    for compute in &ways {
        let (ranker, _) = CrossRanker::<DcnV2Head>::train_with(
            compute,
            &config,
            xor_schema(),
            false,
            fit,
            valid,
            &mut |_| {},
        )?;
        losses.push(ranker.weighted_log_loss(valid, false)?);
    }
    assert!(
        (losses[0] - losses[1]).abs() < 1e-4,
        "DCN-v2 loss {losses:?}"
    );
    Ok(())
}
