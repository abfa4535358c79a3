//! Trains the retrieval model on MovieLens with EVAL.md §1's split and prints HR/NDCG.
//!
//! ```text
//! cargo run --release -p retrieval --example movielens -- ml-100k [key=value ...]
//! ```
//! `ml-100k` or `ml-latest-small` (read from ../shared/data); `key=value` sets a field of
//! `RetrievalConfig` (value as JSON, e.g. `hidden=[256,128]`) or one of this example's own
//! options: `max_per_user=N` (examples per user, most recent first; 0 = all), `min_pos=P`
//! (first target position; 0 lets the empty history predict the first watch),
//! `data_dir=PATH`. `CANDLE_NUM_THREADS` defaults to 1 (see `main`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use retrieval::{
    Catalog, Example, RankMetrics, RetrievalConfig, RetrievalModel, ValidationCase, WatchHistories,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type AnyResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// (user, item, timestamp) events with the data set's own ids, plus item id -> genre names.
struct RawData {
    events: Vec<(u64, u64, i64)>,
    genres: HashMap<u64, Vec<String>>,
}

fn read_ml100k(dir: &Path) -> AnyResult<RawData> {
    let text = std::fs::read_to_string(dir.join("u.data"))?;
    let mut events = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 4 {
            return Err(format!("bad u.data line: {line}").into());
        }
        events.push((f[0].parse()?, f[1].parse()?, f[3].trim().parse()?));
    }
    let genre_names = std::fs::read(dir.join("u.genre"))?;
    let names: Vec<String> = genre_names
        .split(|&b| b == b'\n')
        .filter_map(|l| l.split(|&b| b == b'|').next())
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let mut genres = HashMap::new();
    for line in std::fs::read(dir.join("u.item"))?.split(|&b| b == b'\n') {
        let f: Vec<&[u8]> = line.split(|&b| b == b'|').collect();
        if f.len() < 6 {
            continue;
        }
        let id: u64 = std::str::from_utf8(f[0])?.parse()?;
        let flags = &f[f.len() - names.len().min(f.len())..];
        let g = flags
            .iter()
            .zip(&names)
            .filter(|(flag, _)| flag.first() == Some(&b'1'))
            .map(|(_, n)| n.clone())
            .collect();
        genres.insert(id, g);
    }
    Ok(RawData { events, genres })
}

fn read_ml_latest(dir: &Path) -> AnyResult<RawData> {
    let text = std::fs::read_to_string(dir.join("ratings.csv"))?;
    let mut events = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 4 {
            return Err(format!("bad ratings.csv line: {line}").into());
        }
        events.push((f[0].parse()?, f[1].parse()?, f[3].trim().parse()?));
    }
    let mut genres = HashMap::new();
    for line in std::fs::read_to_string(dir.join("movies.csv"))?
        .lines()
        .skip(1)
    {
        let (Some((id, _)), Some((_, g))) = (line.split_once(','), line.rsplit_once(',')) else {
            continue;
        };
        let g = g.trim().split('|').filter(|s| *s != "(no genres listed)");
        genres.insert(id.parse()?, g.map(str::to_string).collect());
    }
    Ok(RawData { events, genres })
}

/// EVAL.md §1 split with dense indices.
struct Split {
    catalog: Catalog,
    train: WatchHistories,
    validation: Vec<ValidationCase>,
    test: Vec<ValidationCase>,
}

fn split(raw: RawData) -> Split {
    let mut by_user: HashMap<u64, Vec<(i64, u64)>> = HashMap::new();
    for &(u, i, t) in &raw.events {
        by_user.entry(u).or_default().push((t, i));
    }
    let mut users: Vec<u64> = by_user
        .keys()
        .copied()
        .filter(|u| by_user[u].len() >= 3)
        .collect();
    users.sort_unstable();
    let mut item_ids: Vec<u64> = users
        .iter()
        .flat_map(|u| by_user[u].iter().map(|e| e.1))
        .collect();
    item_ids.sort_unstable();
    item_ids.dedup();
    let index: HashMap<u64, u32> = item_ids
        .iter()
        .enumerate()
        .map(|(k, &i)| (i, k as u32))
        .collect();
    let mut token_index: HashMap<String, u32> = HashMap::new();
    let item_tokens: Vec<Vec<u32>> = item_ids
        .iter()
        .map(|i| {
            let names = raw.genres.get(i).cloned().unwrap_or_default();
            names
                .into_iter()
                .map(|n| {
                    let next = token_index.len() as u32;
                    *token_index.entry(n).or_insert(next)
                })
                .collect()
        })
        .collect();
    let mut sequences = Vec::new();
    let (mut validation, mut test) = (Vec::new(), Vec::new());
    for (k, u) in users.iter().enumerate() {
        let mut ev = by_user[u].clone();
        ev.sort_unstable();
        let seq: Vec<(u32, i64)> = ev.iter().map(|&(t, i)| (index[&i], t)).collect();
        let n = seq.len();
        let train: Vec<(u32, i64)> = seq[..n - 2].to_vec();
        let hist: Vec<u32> = train.iter().map(|e| e.0).collect();
        let mut exclude = hist.clone();
        exclude.sort_unstable();
        exclude.dedup();
        validation.push(ValidationCase {
            user: k as u32,
            history: hist.clone(),
            target: seq[n - 2].0,
            exclude: exclude.clone(),
        });
        let mut hist_test = hist;
        hist_test.push(seq[n - 2].0);
        exclude.push(seq[n - 2].0);
        test.push(ValidationCase {
            user: k as u32,
            history: hist_test,
            target: seq[n - 1].0,
            exclude,
        });
        sequences.push(train);
    }
    let catalog = Catalog {
        num_items: item_ids.len(),
        item_tokens,
        num_tokens: token_index.len(),
    };
    Split {
        catalog,
        train: WatchHistories::from_sequences(&sequences),
        validation,
        test,
    }
}

fn print_metrics(name: &str, m: &RankMetrics) {
    println!(
        "{name}: HR@10 {:.4} HR@50 {:.4} HR@100 {:.4} | NDCG@10 {:.4} NDCG@50 {:.4} NDCG@100 {:.4} ({} users)",
        m.hit_rate(0), m.hit_rate(1), m.hit_rate(2), m.ndcg_at(0), m.ndcg_at(1), m.ndcg_at(2), m.users
    );
}

fn main() -> AnyResult<()> {
    // candle's element-wise thread pool spins while it waits; on 2 shared cores it made
    // training about 3x slower. Matmuls and this crate's kernels still use every core.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dataset = args.first().cloned().unwrap_or_else(|| "ml-100k".into());
    let mut cfg = serde_json::to_value(RetrievalConfig::default())?;
    let (mut max_per_user, mut min_pos) = (0usize, 1usize);
    let mut data_dir = PathBuf::from("../shared/data");
    for arg in &args[1.min(args.len())..] {
        let (k, v) = arg
            .split_once('=')
            .ok_or(format!("expected key=value, got {arg}"))?;
        match k {
            "max_per_user" => max_per_user = v.parse()?,
            "min_pos" => min_pos = v.parse()?,
            "data_dir" => data_dir = PathBuf::from(v),
            _ => {
                let value = serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.into()));
                cfg[k] = value;
            }
        }
    }
    let cfg: RetrievalConfig = serde_json::from_value(cfg)?;
    let dir = data_dir.join(&dataset);
    let raw = match dataset.as_str() {
        "ml-100k" => read_ml100k(&dir)?,
        "ml-latest-small" => read_ml_latest(&dir)?,
        other => return Err(format!("unknown data set {other}").into()),
    };
    let data = split(raw);
    let mut examples = Vec::new();
    for u in 0..data.train.num_users() {
        let len = data.train.user_items(u).len();
        let first = min_pos.min(len);
        let take = if max_per_user == 0 {
            len - first
        } else {
            max_per_user.min(len - first)
        };
        examples.extend((len - take..len).map(|pos| Example {
            user: u as u32,
            pos: pos as u32,
        }));
    }
    println!(
        "{dataset}: {} users, {} items, {} tokens, {} training events, {} examples",
        data.train.num_users(),
        data.catalog.num_items,
        data.catalog.num_tokens,
        data.train.items.len(),
        examples.len()
    );
    println!("config: {}", serde_json::to_string(&cfg)?);
    let start = Instant::now();
    let (model, report) = RetrievalModel::train(
        &cfg,
        &data.catalog,
        &data.train,
        &examples,
        None,
        &data.validation,
        |r| {
            println!(
                "epoch {:>2} loss {:.4} val HR@10 {:.4} {:.0} ex/s",
                r.epoch,
                r.loss,
                r.validation_hr10.unwrap_or(f64::NAN),
                r.examples_per_second
            )
        },
    )?;
    println!(
        "trained in {:.1}s, best epoch {} (full softmax: {})",
        start.elapsed().as_secs_f64(),
        report.best_epoch,
        report.full_softmax
    );
    let cutoffs = [10, 50, 100];
    print_metrics(
        "validation",
        &model.evaluate(&data.validation, None, &cutoffs)?,
    );
    print_metrics("test", &model.evaluate(&data.test, None, &cutoffs)?);
    Ok(())
}
