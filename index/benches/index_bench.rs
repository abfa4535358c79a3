//! `cargo bench -p index`: HNSW vs exact search on seeded clustered vectors.
//!
//! Environment (all optional): `INDEX_BENCH_ITEMS` (comma list, default `100000`),
//! `INDEX_BENCH_QUERIES` (1000), `INDEX_BENCH_DIM` (64), `INDEX_BENCH_EF` (comma list),
//! `INDEX_BENCH_M`, `INDEX_BENCH_EFC`, `INDEX_BENCH_METRIC` (inner_product, angular, ...),
//! `INDEX_BENCH_EXCLUDE` (100), `INDEX_BENCH_NORMS` (`0.5,2`), `INDEX_BENCH_BIAS` (0.1),
//! `INDEX_BENCH_SPREAD` (0.6), `INDEX_BENCH_CLUSTERS` (default items / 100), `INDEX_BENCH_BUILDER` (native, hnsw_rs), `INDEX_BENCH_OUT`
//! (folder for JSON reports, default the workspace's `target/index-bench/`).

use std::time::Instant;

use index::bench::{generate_items, generate_queries, run, BenchConfig, DataConfig};

fn env_list(key: &str) -> Option<Vec<usize>> {
    let v = std::env::var(key).ok()?;
    let list: Vec<usize> = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    (!list.is_empty()).then_some(list)
}

fn env_one(key: &str) -> Option<usize> {
    env_list(key).and_then(|l| l.first().copied())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes = env_list("INDEX_BENCH_ITEMS").unwrap_or_else(|| vec![100_000]);
    let n_queries = env_one("INDEX_BENCH_QUERIES").unwrap_or(1_000);
    let mut data = DataConfig::default();
    if let Some(d) = env_one("INDEX_BENCH_DIM") {
        data.dim = d;
    }
    if let Ok(v) = std::env::var("INDEX_BENCH_NORMS") {
        let r: Vec<f64> = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
        if let [lo, hi] = r[..] {
            (data.min_norm, data.max_norm) = (lo, hi);
        }
    }
    if let Some(b) = std::env::var("INDEX_BENCH_BIAS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        data.bias_std = b;
    }
    if let Some(s) = std::env::var("INDEX_BENCH_SPREAD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        data.spread = s;
    }
    let mut cfg = BenchConfig::default();
    if let Some(ef) = env_list("INDEX_BENCH_EF") {
        cfg.ef_sweep = ef;
    }
    if let Some(m) = env_one("INDEX_BENCH_M") {
        cfg.hnsw.m = m;
    }
    if let Some(efc) = env_one("INDEX_BENCH_EFC") {
        cfg.hnsw.ef_construction = efc;
    }
    if let Some(x) = env_one("INDEX_BENCH_EXCLUDE") {
        cfg.exclude_per_query = x;
    }
    if let Ok(metric) = std::env::var("INDEX_BENCH_METRIC") {
        cfg.hnsw.metric = serde_json::from_str(&format!("\"{metric}\""))?;
    }
    if let Some(s) = std::env::var("INDEX_BENCH_BIAS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        cfg.hnsw.bias_scale = Some(s);
    }
    if let Ok(b) = std::env::var("INDEX_BENCH_BUILDER") {
        cfg.hnsw.builder = serde_json::from_str(&format!("\"{b}\""))?;
    }
    // default: 100 items per cluster (harder as the catalogue grows: a query's top 100 then
    // spans many clusters); INDEX_BENCH_CLUSTERS fixes the count instead
    let clusters = env_one("INDEX_BENCH_CLUSTERS");
    let out_dir = std::env::var("INDEX_BENCH_OUT")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/index-bench").into());
    for n in sizes {
        data.clusters = clusters.unwrap_or((n / 100).max(10));
        let items = generate_items(n, &data);
        let queries = generate_queries(n_queries, &data);
        let t = Instant::now();
        let progress = |done: usize, total: usize| {
            if done == total || done % (total / 10).max(1) < 20_000.min(total / 100 + 1) {
                eprintln!(
                    "  build {done}/{total} ({:.0} s)",
                    t.elapsed().as_secs_f64()
                );
            }
        };
        let report = run(&cfg, items, &queries, &progress)?;
        println!(
            "data: {} clusters, spread {}, norms {}..{}, bias std {}, seed {}",
            data.clusters, data.spread, data.min_norm, data.max_norm, data.bias_std, data.seed
        );
        println!("{report}");
        let path = format!("{out_dir}/index_bench_{n}_c{}.json", data.clusters);
        std::fs::create_dir_all(&out_dir)?;
        let json = serde_json::json!({ "data": data, "report": report });
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
        println!("report written to {path}\n");
    }
    Ok(())
}
