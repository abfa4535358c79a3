//! `recpipe bench scale`: the nightly job on a generated world of a size given on the command
//! line, measured end to end, so that a user can size their own machine: generate the world
//! with one day more than asked, hold that last day back, `build-index` (every stage's wall time
//! and peak memory), query latency (retrieve 100; retrieve and re-rank 500), `candidates --all
//! -k 100` throughput, then append the held-back day and run the warm-started `build-index`.

use crate::config::Config;
use crate::data::events::write_events_rows;
use crate::data::read_events;
use crate::error::{Error, Result};
use crate::generate::{generate, WorldConfig};
use crate::progress::peak_rss_mib;
use crate::serving::LiveModel;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `bench scale` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// The world: users, items, days (the last one appended before the second build).
    pub world: serde_json::Value,
    /// Seconds to generate it.
    pub generate_seconds: f64,
    /// Events of the first build / of the second (after the appended day).
    pub events: [usize; 2],
    /// The first build's summary: seconds, stages, figures (from its manifest).
    pub build: serde_json::Value,
    /// Query latency on the published version (`bench query`: 1,000 users, k = 100, re-rank
    /// 500).
    pub query: serde_json::Value,
    /// `candidates --all -k 100`: users, seconds, users/s.
    pub candidates: serde_json::Value,
    /// The warm-started build after the appended day: seconds and whether it warm-started.
    pub warm_build: serde_json::Value,
    /// The process's peak resident memory at the end (MiB; each stage's is in `build`).
    pub peak_rss_mib: Option<f64>,
}

fn copy_table(from: &Path, to: &Path, name: &str) -> Result<()> {
    let (a, b) = (from.join(name), to.join(name));
    if a.is_file() {
        std::fs::copy(&a, &b).map_err(|e| Error::io(&b, e))?;
    }
    Ok(())
}

fn build_summary(m: &crate::artifacts::Manifest, seconds: f64) -> serde_json::Value {
    serde_json::json!({
        "seconds": seconds,
        "version": m.version,
        "stages": m.metrics["stages"],
        "test_exact_hr10": m.metrics["test_exact"]["hr"][0],
        "test_served_hr10": m.metrics["index"]["test_served"]["hr"][0],
        "recall_at_100": m.metrics["index"]["recall_at_100"],
        "search_ef": m.metrics["index"]["search_ef"],
        "evaluation": m.inputs["evaluation"],
        "warm_start_from": m.inputs["warm_start_from"],
    })
}

/// Runs the sequence on a world of `world.users` users, `world.items` items and `world.days`
/// days (plus one appended) in `dir` (created; its `data*` and `artifacts` are replaced).
pub fn bench_scale(world: &WorldConfig, dir: &Path, config: &Config) -> Result<ScaleReport> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let full: PathBuf = dir.join("data-full");
    let first: PathBuf = dir.join("data");
    let art: PathBuf = dir.join("artifacts");
    for p in [&full, &first, &art] {
        if p.exists() {
            std::fs::remove_dir_all(p).map_err(|e| Error::io(p, e))?;
        }
    }
    crate::progress::stage("generate");
    let t = Instant::now();
    let grown = WorldConfig {
        days: world.days + 1,
        ..world.clone()
    };
    generate(&grown, &full, &|_, _| {})?;
    let generate_seconds = t.elapsed().as_secs_f64();
    let all = read_events(
        &full.join("events.parquet"),
        crate::dataset::USED_EXTRA_COLUMNS,
    )?;
    // The appended day starts where the first `world.days` simulated days end. (The newest
    // timestamp is no guide: a page started late on the last day runs past midnight.)
    let last_day = crate::generate::WORLD_START + world.days as i64 * 86_400;
    let held: Vec<usize> = (0..all.len())
        .filter(|&i| all.timestamp[i] < last_day)
        .collect();
    std::fs::create_dir_all(&first).map_err(|e| Error::io(&first, e))?;
    write_events_rows(&first.join("events.parquet"), &all, held.iter().copied())?.commit()?;
    copy_table(&full, &first, "items.parquet")?;
    copy_table(&full, &first, "users.parquet")?;
    let events = [held.len(), all.len()];
    drop((all, held));

    let t = Instant::now();
    let m = crate::stages::build::build_index(&first, &art, config, true)?;
    let build = build_summary(&m, t.elapsed().as_secs_f64());

    crate::progress::stage("bench_query");
    let live = LiveModel::load(&art, Some(&first))?;
    let query = crate::bench::bench_query(&live, 1_000, 100, 500)?;
    crate::progress::stage("candidates");
    let users = live.users();
    let t = Instant::now();
    let rows =
        crate::batch::write_candidates(&live, &users, 100, None, &dir.join("candidates.parquet"))?;
    let secs = t.elapsed().as_secs_f64();
    let candidates = serde_json::json!({
        "users": users.len(),
        "rows": rows,
        "seconds": secs,
        "users_per_second": users.len() as f64 / secs.max(1e-9),
    });
    drop(live);

    let t = Instant::now();
    let m2 = crate::stages::build::build_index(&full, &art, config, true)?;
    let warm_build = build_summary(&m2, t.elapsed().as_secs_f64());
    Ok(ScaleReport {
        world: serde_json::json!({
            "users": world.users,
            "items": world.items,
            "days": world.days,
            "appended_days": 1,
            "seed": world.seed,
        }),
        generate_seconds,
        events,
        build,
        query,
        candidates,
        warm_build,
        peak_rss_mib: peak_rss_mib(),
    })
}
