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

mod experiment;
mod features;
#[allow(dead_code)]
#[path = "../../../pipeline/src/eval/ranking.rs"]
mod metrics;
mod tables;

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use experiment::Experiment;
use metrics::RankingMetrics;
use ranking::{Ranker, RankerConfig};
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
    let data = Experiment::load(&args.data, args.frozen)?;
    println!(
        "{} fit, {} validation, {} test impressions; {} items, {} tokens, {} user fields; loaded in {:.1} s",
        data.fit.len(),
        data.valid.len(),
        data.test.len(),
        data.schema.n_items,
        data.schema.n_tokens,
        data.schema.user_cardinalities.len(),
        start.elapsed().as_secs_f64()
    );
    let mut table = vec![(
        "video-CTR order (training days)".to_string(),
        data.metrics(&data.ctr_scores),
    )];
    if args.feature_orders {
        for (k, name) in data.schema.continuous.iter().enumerate() {
            let scores: Vec<f32> = data
                .test
                .iter()
                .map(|e| {
                    if e.continuous[k].is_nan() {
                        f32::NEG_INFINITY
                    } else {
                        e.continuous[k]
                    }
                })
                .collect();
            table.push((format!("feature {name}"), data.metrics(&scores)));
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
        let (ranker, report) = Ranker::train(
            data.schema.clone(),
            config,
            &data.fit,
            &data.valid,
            &mut |e| {
                eprintln!(
                    "  {name}: epoch {:>2} train {:.5} valid {:.5} ({:.1} s)",
                    e.epoch,
                    e.train_loss,
                    e.valid_loss.unwrap_or(f64::NAN),
                    e.seconds
                )
            },
        )?;
        let m = data.metrics(&ranker.score(&data.test)?);
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
