//! `recpipe bench`: speed measurements on real artifacts.
//!
//! - `bench index`: the index benchmark (build, memory, recall@100 and queries/s for an ef sweep,
//!   exact search beside it) on vectors read from `item_vectors.parquet`, with the users'
//!   vectors from `user_vectors.parquet` as queries.
//! - `bench query`: latency of "candidates for this user" on a published version, one thread,
//!   retrieval alone and retrieval plus re-ranking.

use crate::data::read_vectors;
use crate::error::{Error, Result};
use crate::progress::bar;
use crate::serving::LiveModel;
use index::bench::{run, BenchConfig};
use index::ItemVectors;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Runs the index benchmark on Parquet vectors; `queries` caps the number of query vectors.
pub fn bench_index(
    items_path: &Path,
    queries_path: &Path,
    max_queries: usize,
    cfg: &BenchConfig,
) -> Result<index::bench::BenchReport> {
    let items = read_vectors(items_path, "item_id")?;
    let users = read_vectors(queries_path, "user_id")?;
    if users.dim != items.dim {
        return Err(Error::Input(format!(
            "{}: dimension {} differs from {}'s {}",
            queries_path.display(),
            users.dim,
            items_path.display(),
            items.dim
        )));
    }
    let n_q = users.ids.len().min(max_queries.max(1));
    let queries = &users.data[..n_q * users.dim];
    let bias = if items.bias.is_empty() {
        vec![0.0; items.ids.len()]
    } else {
        items.bias
    };
    let iv = ItemVectors::new(items.ids, items.dim, items.data, bias)
        .map_err(|e| Error::input(items_path, e))?;
    let pb = bar(iv.ids.len() as u64, "index");
    let report = run(cfg, iv, queries, &|d, _| pb.set_position(d as u64))
        .map_err(Error::index("index bench"))?;
    pb.finish_and_clear();
    Ok(report)
}

/// Latency percentiles of one kind of query.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Queries timed.
    pub queries: usize,
    /// Median (ms).
    pub p50_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// Mean (ms).
    pub mean_ms: f64,
}

fn latency(mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    Latency {
        queries: ms.len(),
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
    }
}

/// Query latency on one thread: `k` candidates for `n` users, retrieval alone and (when the
/// version has a ranker) retrieval plus re-ranking of `rerank_k` candidates.
pub fn bench_query(
    live: &LiveModel,
    n: usize,
    k: usize,
    rerank_k: usize,
) -> Result<serde_json::Value> {
    let users = live.users();
    if users.is_empty() {
        return Err(Error::Input(
            "bench query: the data has no user with a history".into(),
        ));
    }
    let step = (users.len() / n.max(1)).max(1);
    let picked: Vec<i64> = users.iter().step_by(step).take(n).copied().collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::Other(e.to_string()))?;
    pool.install(|| {
        let mut times = Vec::new();
        for &u in &picked {
            let t = Instant::now();
            live.recommend(Some(u), &[], k, None)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let retrieval = latency(times);
        let mut out = serde_json::json!({
            "version": live.version,
            "items": live.num_items(),
            "k": k,
            "retrieval": retrieval,
        });
        if live.has_ranker() {
            let mut times = Vec::new();
            for &u in &picked {
                let t = Instant::now();
                live.recommend_ranked(Some(u), &[], rerank_k, None, true)?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            out["retrieval_and_rerank"] =
                serde_json::to_value(latency(times)).map_err(|e| Error::Other(e.to_string()))?;
            out["rerank_k"] = rerank_k.into();
        }
        Ok(out)
    })
}
