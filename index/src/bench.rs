//! Benchmark: build time, memory, and recall/speed of HNSW against exact search.
//!
//! [`run`] works on any vectors (the pipeline passes real item and user vectors);
//! [`generate_items`] / [`generate_queries`] make seeded clustered data with varied norms.

use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};
use crate::exact::exact_batch;
use crate::hnsw::{HnswConfig, HnswIndex};
use crate::search::split_batch;
use crate::topk::Scored;
use crate::vectors::ItemVectors;

mod data;
mod report;

pub use data::{generate_items, generate_queries, DataConfig};

/// What to measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BenchConfig {
    /// Answer size (recall@k is measured at this k).
    pub k: usize,
    /// Beam widths to sweep.
    pub ef_sweep: Vec<usize>,

    /// Excluded items per query in the "seen items" runs (0: skip those runs).
    pub exclude_per_query: usize,
    /// Queries timed one by one on a single thread (latency, 1-thread q/s); 0: all.
    pub timed_queries: usize,
    /// Queries used to time exact search on one thread (it is slow on big catalogues).
    pub exact_timed_queries: usize,
    /// The index configuration.
    pub hnsw: HnswConfig,
    /// Seed for the exclusion sampling.
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            k: 100,
            ef_sweep: vec![64, 100, 128, 200, 300, 400],

            exclude_per_query: 100,
            timed_queries: 0,
            exact_timed_queries: 100,
            hnsw: HnswConfig::default(),
            seed: 7,
        }
    }
}

/// Speed of one search method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Speed {
    /// Queries per second, one query at a time on one thread.
    pub qps_one_thread: f64,
    /// Queries per second of a batch on all threads.
    pub qps_all_threads: f64,
    /// Median latency of one query (ms).
    pub p50_ms: f64,
    /// 99th percentile latency of one query (ms).
    pub p99_ms: f64,
}

/// One beam width of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Beam width.
    pub ef: usize,

    /// Mean recall@k against exact search.
    pub recall: f64,
    /// Lowest recall@k of a query.
    pub recall_min: f64,
    /// Speed (latency on one thread).
    pub speed: Speed,
    /// Mean recall@k with `exclude_per_query` items excluded (against exact with the same exclusion).
    pub recall_excluded: Option<f64>,
    /// Queries per second on all threads with the exclusion.
    pub qps_excluded_all_threads: Option<f64>,
    /// Queries whose graph answer fell short and were completed by exact search.
    pub exact_fallbacks: usize,
    /// Mean number of items scored per query (work done, independent of machine load).
    pub scored_per_query: f64,
}

/// Everything measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Items indexed.
    pub items: usize,
    /// Vector dimension.
    pub dim: usize,
    /// Queries.
    pub queries: usize,
    /// Threads of the rayon pool.
    pub threads: usize,
    /// The configuration.
    pub config: BenchConfig,
    /// Build wall time (s).
    pub build_seconds: f64,
    /// Build CPU time over all threads (s; from /proc, assumes 100 ticks/s), None off Linux.
    pub build_cpu_seconds: Option<f64>,
    /// Items inserted per second.
    pub inserts_per_second: f64,
    /// Graph layers.
    pub layers: usize,
    /// Raw vector bytes (items x dim x 4).
    pub vector_bytes: u64,
    /// Memory the index holds (vectors, ids, biases, links), bytes.
    pub index_bytes: u64,
    /// `(index_bytes - vector_bytes) / items`.
    pub index_bytes_per_item_beyond_vectors: f64,
    /// Process peak resident memory (VmHWM) after the build, bytes; None off Linux.
    pub peak_rss_bytes: Option<u64>,
    /// Resident memory just before the build, bytes.
    pub rss_before_build_bytes: Option<u64>,
    /// `(peak - before) / items`: extra memory the build needed per item (vectors were already resident).
    pub build_peak_bytes_per_item: Option<f64>,
    /// Exact search speed (latency: one query spread over all threads).
    pub exact: Speed,
    /// The ef sweep.
    pub sweep: Vec<SweepPoint>,
}

/// CPU time (user + system) of this process in seconds, from /proc/self/stat (Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Reads a `Vm*` line of /proc/self/status in bytes.
fn proc_status(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let i = ((sorted_ms.len() - 1) as f64 * p).round() as usize;
    sorted_ms[i.min(sorted_ms.len() - 1)]
}

/// Times `f` on each query one by one in a single-thread pool: (q/s, p50 ms, p99 ms).
fn time_one_by_one<F>(queries: &[&[f32]], f: F) -> Result<(f64, f64, f64)>
where
    F: Fn(usize, &[f32]) + Sync,
{
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| IndexError::InvalidInput(format!("thread pool: {e}")))?;
    let mut lat: Vec<f64> = pool.install(|| {
        queries
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let t = Instant::now();
                f(i, q);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect()
    });
    let total: f64 = lat.iter().sum();
    lat.sort_by(f64::total_cmp);
    Ok((
        queries.len() as f64 / (total / 1e3).max(1e-12),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    ))
}

/// Sorted sample of `count` items of `pool` (seeded).
fn sample_exclusion(pool: &[Scored], count: usize, seed: u64) -> Vec<u32> {
    let mut rng = crate::rng::SplitMix::new(seed);
    let mut idx: Vec<u32> = pool.iter().map(|s| s.idx).collect();
    for i in 0..idx.len().min(count) {
        let j = i + (rng.next_u64() % (idx.len() - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(count);
    idx.sort_unstable();
    idx
}

fn mean_recall(approx: &[Vec<Scored>], exact: &[Vec<Scored>], k: usize) -> (f64, f64) {
    let recalls: Vec<f64> = approx
        .iter()
        .zip(exact)
        .map(|(a, e)| {
            let kk = k.min(e.len());
            if kk == 0 {
                return 1.0;
            }
            let mut truth: Vec<u32> = e[..kk].iter().map(|s| s.idx).collect();
            truth.sort_unstable();
            let hit = a
                .iter()
                .take(kk)
                .filter(|s| truth.binary_search(&s.idx).is_ok())
                .count();
            hit as f64 / kk as f64
        })
        .collect();
    let mean = recalls.iter().sum::<f64>() / recalls.len().max(1) as f64;
    (mean, recalls.iter().copied().fold(1.0, f64::min))
}

/// Builds an HNSW index over `items` and measures it against exact search with `queries`
/// (row-major, `items.dim` floats each). `progress(done, total)` follows the build.
pub fn run(
    config: &BenchConfig,
    items: ItemVectors,
    queries: &[f32],
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<BenchReport> {
    items.validate()?;
    let (n, dim) = (items.len(), items.dim);
    let vector_bytes = (n * dim * 4) as u64;
    // reset the peak-RSS counter (Linux >= 4.0) so VmHWM reflects the build
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = proc_status("VmRSS:");
    let t = Instant::now();
    let cpu0 = cpu_seconds();
    let index = HnswIndex::build(items, &config.hnsw, progress)?;
    let build_seconds = t.elapsed().as_secs_f64();
    let build_cpu_seconds = cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    let peak = proc_status("VmHWM:");
    let cat = &index.cat;
    let rows = split_batch(cat, queries)?;
    let k = config.k;
    let none: Vec<&[u32]> = vec![&[]; rows.len()];

    let t = Instant::now();
    let truth = exact_batch(cat, &rows, k, &none);
    let exact_all = rows.len() as f64 / t.elapsed().as_secs_f64();
    let exact_timed = &rows[..rows.len().min(config.exact_timed_queries.max(1))];
    let (exact_one_qps, _, _) = time_one_by_one(exact_timed, |_, q| {
        let _ = crate::exact::exact_one(cat, q, k, &[]);
    })?;
    let mut lat: Vec<f64> = exact_timed
        .iter()
        .map(|q| {
            let t = Instant::now();
            let _ = crate::exact::exact_one(cat, q, k, &[]);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let exact = Speed {
        qps_one_thread: exact_one_qps,
        qps_all_threads: exact_all,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    };

    let excl = config.exclude_per_query;
    let exclusions: Vec<Vec<u32>> = if excl > 0 {
        let pools = exact_batch(cat, &rows, excl * 4, &none);
        pools
            .iter()
            .enumerate()
            .map(|(i, p)| sample_exclusion(p, excl, config.seed.wrapping_add(i as u64)))
            .collect()
    } else {
        Vec::new()
    };
    let excl_refs: Vec<&[u32]> = exclusions.iter().map(Vec::as_slice).collect();
    let truth_excl = if excl > 0 {
        exact_batch(cat, &rows, k, &excl_refs)
    } else {
        Vec::new()
    };

    let timed = &rows[..if config.timed_queries == 0 {
        rows.len()
    } else {
        rows.len().min(config.timed_queries)
    }];
    let mut sweep = Vec::new();
    for &ef in &config.ef_sweep {
        let t = Instant::now();
        let found: Vec<Vec<Scored>> = rows
            .par_iter()
            .map(|q| index.search_one(q, k, ef, &[]))
            .collect();
        let qps_all = rows.len() as f64 / t.elapsed().as_secs_f64();
        let (recall, recall_min) = mean_recall(&found, &truth, k);
        let (qps_one, p50, p99) = time_one_by_one(timed, |_, q| {
            let _ = index.search_one(q, k, ef, &[]);
        })?;
        let (exact_fallbacks, scored) = rows
            .par_iter()
            .map(|q| {
                let (found, scored) = index.search_graph(q, k, ef.max(1), &[]);
                (usize::from(found.len() < k.min(n)), scored)
            })
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let mut point = SweepPoint {
            ef,
            recall,
            recall_min,
            speed: Speed {
                qps_one_thread: qps_one,
                qps_all_threads: qps_all,
                p50_ms: p50,
                p99_ms: p99,
            },
            recall_excluded: None,
            qps_excluded_all_threads: None,
            exact_fallbacks,
            scored_per_query: scored as f64 / rows.len().max(1) as f64,
        };
        if excl > 0 {
            let t = Instant::now();
            let found: Vec<Vec<Scored>> = rows
                .par_iter()
                .zip(&excl_refs)
                .map(|(q, e)| index.search_one(q, k, ef, e))
                .collect();
            point.qps_excluded_all_threads = Some(rows.len() as f64 / t.elapsed().as_secs_f64());
            point.recall_excluded = Some(mean_recall(&found, &truth_excl, k).0);
        }
        sweep.push(point);
    }
    let index_bytes = index.heap_bytes() as u64;
    Ok(BenchReport {
        items: n,
        dim,
        queries: rows.len(),
        threads: rayon::current_num_threads(),
        config: config.clone(),
        build_seconds,
        build_cpu_seconds,
        inserts_per_second: n as f64 / build_seconds.max(1e-12),
        layers: index.layers(),
        vector_bytes,
        index_bytes,
        index_bytes_per_item_beyond_vectors: (index_bytes as f64 - vector_bytes as f64)
            / n.max(1) as f64,
        peak_rss_bytes: peak,
        rss_before_build_bytes: rss_before,
        build_peak_bytes_per_item: match (peak, rss_before) {
            (Some(p), Some(b)) => Some((p as f64 - b as f64) / n.max(1) as f64),
            _ => None,
        },
        exact,
        sweep,
    })
}
