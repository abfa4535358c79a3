//! Scratch: exact-search speed (temporary).
use index::bench::{generate_items, generate_queries, DataConfig};
use index::{ExactIndex, Exclude};
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let nq: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let cfg = DataConfig {
        clusters: n / 100,
        ..DataConfig::default()
    };
    let items = generate_items(n, &cfg);
    let queries = generate_queries(nq, &cfg);
    let index = ExactIndex::new(items).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let r = index.search_batch(&queries, 100, &[]).unwrap();
        let s = t.elapsed().as_secs_f64();
        println!(
            "batch {nq} q: {:.1} q/s, {:.1} GFLOP/s ({} hits)",
            nq as f64 / s,
            nq as f64 * n as f64 * 128.0 / s / 1e9,
            r[0].len()
        );
    }
    let t = Instant::now();
    for q in queries.chunks_exact(64).take(50) {
        let _ = index.search(q, 100, Exclude::Nothing).unwrap();
    }
    let s = t.elapsed().as_secs_f64();
    println!("single: {:.1} q/s", 50.0 / s);
}
