//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use index::bench::{generate_items, generate_queries, DataConfig};
use index::{Hit, ItemVectors};

/// Seeded clustered items and queries (dim 32, norms 0.5..2, bias std 0.1).
pub fn data(n: usize, queries: usize) -> (ItemVectors, Vec<f32>) {
    let cfg = DataConfig {
        dim: 32,
        clusters: (n / 100).max(4),
        seed: 11,
        ..DataConfig::default()
    };
    (generate_items(n, &cfg), generate_queries(queries, &cfg))
}

/// A fresh path under the system temp folder (not created).
pub fn temp_path(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("index-test-{}-{tag}-{n}", std::process::id()))
}

/// Exact score recomputed in f64.
pub fn score64(items: &ItemVectors, query: &[f32], i: usize) -> f64 {
    let row = items.row(i);
    row.iter()
        .zip(query)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum::<f64>()
        + f64::from(items.bias[i])
}

/// Asserts `hits` has `k` items, none of `excluded`, best first, with correct scores.
pub fn assert_valid_answer(
    items: &ItemVectors,
    query: &[f32],
    hits: &[Hit],
    k: usize,
    excluded: &[i64],
) {
    assert_eq!(hits.len(), k, "answer size");
    for w in hits.windows(2) {
        assert!(w[0].score >= w[1].score, "answer not ordered by score");
    }
    let mut ids: Vec<i64> = hits.iter().map(|h| h.item_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), hits.len(), "duplicate items in answer");
    for h in hits {
        assert!(
            !excluded.contains(&h.item_id),
            "excluded item {} returned",
            h.item_id
        );
        assert_eq!(items.ids[h.index as usize], h.item_id);
        let exact = score64(items, query, h.index as usize);
        assert!(
            (f64::from(h.score) - exact).abs() < 1e-4,
            "score {} vs exact {exact}",
            h.score
        );
    }
}
