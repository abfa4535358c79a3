//! `cargo bench -p index --bench insert [-- --items N --dim D]`: inserting new items into a
//! built HNSW index (what `recpipe add-items` does) against rebuilding it.
//!
//! Builds on `N` seeded clustered items (default 1,000,000 x 64, 100 items per cluster), then
//! inserts batches of 1, 100 and 10,000 new items of the same distribution CUMULATIVELY into
//! that one index (the 100 go into the index holding N + 1 items, and so on), timing each
//! insert. After each batch it reports recall@100 of the new items' own vectors as queries
//! (up to 1,000 of them) against exact search over the whole catalogue, next to the same
//! measure for 1,000 of the originally built items, at the default beam and at 200.

use std::time::Instant;

use index::bench::{generate_items, DataConfig};
use index::{recall_at_k, ExactIndex, HnswConfig, HnswIndex, ItemVectors};

const K: usize = 100;
const BATCHES: [usize; 3] = [1, 100, 10_000];
const SAMPLE: usize = 1_000;

/// The value after `flag` on the command line (cargo adds its own `--bench`, ignored).
fn arg(flag: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let pos = args.iter().position(|a| a == flag)?;
    args.get(pos + 1)?.replace('_', "").parse().ok()
}

/// Items `lo..hi` of `items`.
fn slice(items: &ItemVectors, lo: usize, hi: usize) -> ItemVectors {
    ItemVectors {
        ids: items.ids[lo..hi].to_vec(),
        dim: items.dim,
        data: items.data[lo * items.dim..hi * items.dim].to_vec(),
        bias: items.bias[lo..hi].to_vec(),
    }
}

/// Mean recall@100 of the items at `rows` (their own vectors as queries) at beam `ef`.
fn own_recall(index: &HnswIndex, exact: &ExactIndex, rows: &[usize], ef: usize) -> f64 {
    if rows.is_empty() {
        return f64::NAN;
    }
    let items = exact.items();
    let queries: Vec<f32> = rows.iter().flat_map(|&r| items.row(r).to_vec()).collect();
    let approx = index.search_batch(&queries, K, ef, &[]);
    let truth = exact.search_batch(&queries, K, &[]);
    match (approx, truth) {
        (Ok(a), Ok(t)) => {
            a.iter()
                .zip(&t)
                .map(|(a, t)| recall_at_k(a, t, K))
                .sum::<f64>()
                / rows.len() as f64
        }
        _ => f64::NAN,
    }
}

/// Up to `SAMPLE` rows spread evenly over `lo..hi`.
fn sample(lo: usize, hi: usize) -> Vec<usize> {
    let step = (hi - lo).div_ceil(SAMPLE).max(1);
    (lo..hi).step_by(step).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = arg("--items").unwrap_or(1_000_000);
    let dim = arg("--dim").unwrap_or(64);
    let extra: usize = BATCHES.iter().sum();
    let data = DataConfig {
        dim,
        clusters: (n / 100).max(10),
        ..DataConfig::default()
    };
    let all = generate_items(n + extra, &data);
    let config = HnswConfig::default();
    println!(
        "insert bench: {n} items x {dim} ({} clusters), then +{BATCHES:?} cumulatively; m {}, ef_construction {}, {} threads",
        data.clusters,
        config.m,
        config.ef_construction,
        rayon::current_num_threads()
    );
    let t = Instant::now();
    let mut index = HnswIndex::build(slice(&all, 0, n), &config, &|_, _| {})?;
    let build_s = t.elapsed().as_secs_f64();
    println!(
        "build: {build_s:.2} s ({:.1} us/item)",
        build_s * 1e6 / n as f64
    );
    let old = sample(0, n);
    let efs = [config.ef_search_default, 200];
    let mut start = n;
    for m in BATCHES {
        let t = Instant::now();
        index.insert(slice(&all, start, start + m), &|_, _| {})?;
        let secs = t.elapsed().as_secs_f64();
        let exact = ExactIndex::new(index.items())?;
        let new = sample(start, start + m);
        let recalls: Vec<String> = efs
            .iter()
            .map(|&ef| {
                format!(
                    "ef {ef}: new {:.4}, old {:.4}",
                    own_recall(&index, &exact, &new, ef),
                    own_recall(&index, &exact, &old, ef)
                )
            })
            .collect();
        println!(
            "insert {m:>6} into {start}: {secs:.3} s ({:.1} us/item, {:.2}% of the build); recall@{K} of own-vector queries {}",
            secs * 1e6 / m as f64,
            100.0 * secs / build_s,
            recalls.join("; ")
        );
        start += m;
    }
    Ok(())
}
