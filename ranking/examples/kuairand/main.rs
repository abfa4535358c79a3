//! KuaiRand-Pure watch-time ranking experiment (EVAL.md section 3): reads the CSV files
//! directly, builds causal features, trains the watch-time-weighted ranker and its unit-weight
//! ablation, and prints the metrics beside the video-CTR order.
//!
//! `cargo run --release -p ranking --example kuairand -- [--data DIR] [--epochs N] [--seed S]
//!  [--lr X] [--hidden 256,128,64] [--dims ITEM,TOKEN,USER] [--frozen] [--feature-orders]`
//!
//! `--feature-orders` adds the order of each raw continuous feature to the table.
//! On a machine shared with other work, `RAYON_NUM_THREADS=1` trains faster (candle's
//! thread barriers spin while a descheduled worker catches up).
//!
//! Train on days <= 20220502 (the last of them, 20220502, is the early-stopping slice), test on
//! 20220503..05. `--frozen` stops every counter at the end of the training days.

mod features;
#[allow(dead_code)]
#[path = "../../../pipeline/src/eval/ranking.rs"]
mod metrics;
mod tables;

use std::collections::HashMap;
use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use features::{build_examples, continuous_names, FeatureConfig, Impressions, SideInfo};
use metrics::{ranking_metrics, RankingMetrics, ScoredImpression};
use ranking::{FeatureSchema, Ranker, RankerConfig, RankingExample};
use tables::{read_log, read_users, read_videos, Log};

const LAST_TRAIN_DAY: i64 = 20220502;
const VALID_DAY: i64 = 20220502;
/// Published figures (EVAL.md, issue 5) the ranker must beat.
const LIGHTGBM_LOSS: f64 = 0.382;

struct Args {
    data: PathBuf,
    config: RankerConfig,
    frozen: bool,
    feature_orders: bool,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/kuairand-pure"),
        config: RankerConfig::default(),
        frozen: false,
        feature_orders: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => args.data = PathBuf::from(value()?),
            "--epochs" => args.config.epochs = value()?.parse()?,
            "--seed" => args.config.seed = value()?.parse()?,
            "--lr" => args.config.learning_rate = value()?.parse()?,
            "--dims" => {
                let dims: Vec<usize> = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
                if let [item, token, user] = dims[..] {
                    (
                        args.config.item_dim,
                        args.config.token_dim,
                        args.config.user_dim,
                    ) = (item, token, user);
                }
            }
            "--hidden" => {
                args.config.hidden = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--frozen" => args.frozen = true,
            "--feature-orders" => args.feature_orders = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(args)
}

/// Page rows of the test impressions scored by `scores`.
fn rows(log: &Log, test: &[usize], scores: &[f32]) -> Vec<ScoredImpression> {
    test.iter()
        .zip(scores)
        .map(|(&i, &score)| ScoredImpression {
            user: log.user_id[i],
            day: log.date[i],
            score,
            clicked: log.clicked[i],
            watch_time: log.watch_time[i],
        })
        .collect()
}

fn print_row(name: &str, m: &RankingMetrics) {
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.4}"));
    println!(
        "| {name:<32} | {:>8} | {:>6} | {:>6} | {:>6} |",
        f(m.weighted_user_loss),
        f(m.gauc),
        f(m.xauc),
        f(m.watch_time_at_10)
    );
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let start = Instant::now();
    let log = read_log(&args.data.join("log_standard_4_25_to_5_05_pure.csv"))?;
    let videos = read_videos(&args.data.join("video_features_basic_pure.csv"))?;
    let users = read_users(&args.data.join("user_features_pure.csv"))?;
    let n = log.user_id.len();
    let train_idx: Vec<usize> = (0..n).filter(|&i| log.date[i] <= LAST_TRAIN_DAY).collect();
    let test_idx: Vec<usize> = (0..n).filter(|&i| log.date[i] > LAST_TRAIN_DAY).collect();

    // Item vocabulary: videos shown on training days, in order of first appearance.
    let mut item_index: HashMap<i64, u32> = HashMap::new();
    for &i in &train_idx {
        let next = item_index.len() as u32;
        item_index.entry(log.item_id[i]).or_insert(next);
    }
    let timestamp: Vec<i64> = log.time_ms.iter().map(|t| t.div_euclid(1000)).collect();
    let freeze_at = args.frozen.then(|| {
        test_idx
            .iter()
            .map(|&i| timestamp[i])
            .min()
            .unwrap_or(i64::MAX)
    });
    let examples = build_examples(
        &Impressions {
            user_id: &log.user_id,
            item_id: &log.item_id,
            timestamp: &timestamp,
            day: &log.date,
            watched: &log.clicked,
            watch_time: &log.watch_time,
            retrieval: None,
        },
        &SideInfo {
            item_index: &item_index,
            item_tokens: &videos.tokens,
            duration: &videos.duration,
            published: &videos.published,
            user_categorical: &users.values,
            n_user_fields: users.cardinalities.len(),
        },
        &FeatureConfig {
            recent: 20,
            smoothing: 20.0,
            freeze_at,
        },
    );
    let pick = |keep: &dyn Fn(i64) -> bool| -> Vec<RankingExample> {
        (0..n)
            .filter(|&i| keep(log.date[i]))
            .map(|i| examples[i].clone())
            .collect()
    };
    let fit = pick(&|d| d < VALID_DAY);
    let valid = pick(&|d| d == VALID_DAY);
    let test = pick(&|d| d > LAST_TRAIN_DAY);
    let schema = FeatureSchema {
        n_items: item_index.len(),
        n_tokens: videos.n_tokens,
        user_cardinalities: users.cardinalities.clone(),
        continuous: continuous_names(false),
    };
    println!(
        "{n} impressions ({} fit, {} validation, {} test), {} items, {} tokens, {} user fields; loaded in {:.1} s",
        fit.len(),
        valid.len(),
        test.len(),
        schema.n_items,
        schema.n_tokens,
        schema.user_cardinalities.len(),
        start.elapsed().as_secs_f64()
    );

    // Video-CTR order: click rate of each video on the training days (unseen videos: 0).
    let mut ctr: HashMap<i64, (f64, f64)> = HashMap::new();
    for &i in &train_idx {
        let e = ctr.entry(log.item_id[i]).or_default();
        e.0 += f64::from(u8::from(log.clicked[i]));
        e.1 += 1.0;
    }
    let ctr_scores: Vec<f32> = test_idx
        .iter()
        .map(|&i| {
            ctr.get(&log.item_id[i])
                .map_or(0.0, |(c, s)| (c / s) as f32)
        })
        .collect();
    let mut table = vec![(
        "video-CTR order (training days)".to_string(),
        ranking_metrics(&rows(&log, &test_idx, &ctr_scores)),
    )];
    if args.feature_orders {
        for (k, name) in schema.continuous.iter().enumerate() {
            let scores: Vec<f32> = test
                .iter()
                .map(|e| {
                    if e.continuous[k].is_nan() {
                        f32::NEG_INFINITY
                    } else {
                        e.continuous[k]
                    }
                })
                .collect();
            table.push((
                format!("feature {name}"),
                ranking_metrics(&rows(&log, &test_idx, &scores)),
            ));
        }
    }

    for unit_weights in [false, true] {
        let config = RankerConfig {
            unit_weights,
            ..args.config.clone()
        };
        let name = if unit_weights {
            "ranker, unit weights (ablation)"
        } else {
            "ranker, watch-time weighted"
        };
        let started = Instant::now();
        let (ranker, report) = Ranker::train(schema.clone(), config, &fit, &valid, &mut |e| {
            eprintln!(
                "  {name}: epoch {:>2} train {:.5} valid {:.5} ({:.1} s)",
                e.epoch,
                e.train_loss,
                e.valid_loss.unwrap_or(f64::NAN),
                e.seconds
            )
        })?;
        let scores = ranker.score(&test)?;
        let m = ranking_metrics(&rows(&log, &test_idx, &scores));
        eprintln!(
            "  {name}: best epoch {} of {}, trained in {:.1} s",
            report.best_epoch,
            report.epochs.len(),
            started.elapsed().as_secs_f64()
        );
        table.push((name.to_string(), m));
    }
    println!(
        "\nTest days 20220503..05 ({} pages, {} pos-neg pairs){}",
        table[0].1.pages,
        table[0].1.pairs,
        if args.frozen {
            ", counters frozen at the end of training"
        } else {
            ""
        }
    );
    println!(
        "| {:<32} | {:>8} | {:>6} | {:>6} | {:>6} |",
        "order", "w. loss", "GAUC", "XAUC", "WT@10"
    );
    println!("|{:-<34}|{:->10}|{:->8}|{:->8}|{:->8}|", "", "", "", "", "");
    for (name, m) in &table {
        print_row(name, m);
    }
    println!("LightGBM baseline (issue 5): weighted loss {LIGHTGBM_LOSS}");
    Ok(())
}
