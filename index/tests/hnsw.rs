//! HNSW: recall floors against exact search, and the exclusion guarantee.

mod common;

use index::{
    recall_at_k, Builder, ExactIndex, Exclude, GraphMetric, HnswConfig, HnswIndex, Index,
    ItemVectors,
};

const K: usize = 100;

fn mean_recall(hnsw: &HnswIndex, exact: &ExactIndex, queries: &[f32], ef: usize) -> f64 {
    let approx = hnsw.search_batch(queries, K, ef, &[]).unwrap();
    let truth = exact.search_batch(queries, K, &[]).unwrap();
    approx
        .iter()
        .zip(&truth)
        .map(|(a, t)| recall_at_k(a, t, K))
        .sum::<f64>()
        / truth.len() as f64
}

/// The graph these tests measure: the Möbius metric with m 16, the best on the synthetic
/// clustered items of `common::data` (norms 0.5..2, biases). The default (angular, m 32) is
/// tuned for trained model vectors and reaches recall@100 0.94 at ef 100 on these items; the
/// crate README has both comparisons.
fn clustered() -> HnswConfig {
    HnswConfig {
        metric: GraphMetric::Mobius,
        m: 16,
        ..HnswConfig::default()
    }
}

fn build(items: &ItemVectors, config: &HnswConfig) -> HnswIndex {
    HnswIndex::build(items.clone(), config, &|_, _| {}).unwrap()
}

#[test]
fn native_graph_recall_floors() {
    let (items, queries) = common::data(10_000, 200);
    let exact = ExactIndex::new(items.clone()).unwrap();
    let hnsw = build(&items, &clustered());
    let r100 = mean_recall(&hnsw, &exact, &queries, 100);
    let r200 = mean_recall(&hnsw, &exact, &queries, 200);
    eprintln!("native recall@100: ef 100 {r100:.4}, ef 200 {r200:.4}");
    assert!(r100 >= 0.98, "recall@100 at ef 100 = {r100}");
    assert!(r200 >= 0.995, "recall@100 at ef 200 = {r200}");
}

#[test]
fn f32_walk_matches_int8_walk_recall() {
    let (items, queries) = common::data(10_000, 200);
    let exact = ExactIndex::new(items.clone()).unwrap();
    let mut hnsw = build(&items, &clustered());
    let int8 = mean_recall(&hnsw, &exact, &queries, 100);
    hnsw.set_int8_walk(false);
    let f32_walk = mean_recall(&hnsw, &exact, &queries, 100);
    eprintln!("recall@100 at ef 100: int8 walk {int8:.4}, f32 walk {f32_walk:.4}");
    assert!(f32_walk >= 0.98, "f32 walk recall {f32_walk}");
    assert!((int8 - f32_walk).abs() < 0.01);
}

#[test]
fn hnsw_rs_graph_recall_floor() {
    let (items, queries) = common::data(5_000, 100);
    let exact = ExactIndex::new(items.clone()).unwrap();
    let config = HnswConfig {
        builder: Builder::HnswRs,
        ef_construction: 100,
        ..clustered()
    };
    let hnsw = build(&items, &config);
    let r = mean_recall(&hnsw, &exact, &queries, 100);
    eprintln!("hnsw_rs recall@100: ef 100 {r:.4}");
    assert!(r >= 0.97, "recall@100 at ef 100 = {r}");
}

#[test]
fn exclusions_never_shrink_the_answer() {
    let (items, queries) = common::data(10_000, 40);
    let exact = ExactIndex::new(items.clone()).unwrap();
    let hnsw = build(&items, &clustered());
    for q in queries.chunks_exact(items.dim) {
        // a user who has seen 300 of the items this query scores highest
        let seen: Vec<i64> = exact
            .search(q, 300, Exclude::Nothing)
            .unwrap()
            .iter()
            .map(|h| h.item_id)
            .collect();
        let hits = hnsw.search(q, K, 64, &seen).unwrap();
        common::assert_valid_answer(&items, q, &hits, K, &seen);
        let truth = exact.search(q, K, &seen).unwrap();
        common::assert_valid_answer(&items, q, &truth, K, &seen);
        assert!(recall_at_k(&hits, &truth, K) >= 0.8);
    }
}

#[test]
fn heavy_exclusions_fall_back_to_exact_search() {
    let (items, queries) = common::data(10_000, 3);
    let hnsw = Index::build(items.clone(), &clustered(), &|_, _| {}).unwrap();
    assert!(matches!(hnsw, Index::Hnsw(_)));
    let q = &queries[..items.dim];
    // everything but 120 items (every 50th id kept, and ids 5..20) is excluded
    let keep = |id: i64| id % 50 == 0 || (5..20).contains(&id);
    let seen: Vec<i64> = items.ids.iter().copied().filter(|&id| !keep(id)).collect();
    let kept = items.len() - seen.len();
    assert_eq!(kept, 215);
    let hits = hnsw.search(q, K, 10, &seen).unwrap();
    common::assert_valid_answer(&items, q, &hits, K, &seen);
    let all_but_three: Vec<u32> = (3..items.len() as u32).collect();
    let hits = hnsw.search(q, K, 10, &all_but_three).unwrap();
    assert_eq!(hits.iter().map(|h| h.index).collect::<Vec<_>>().len(), 3);
    common::assert_valid_answer(&items, q, &hits, 3, &[]);
}

#[test]
fn a_beam_narrower_than_k_is_widened_to_k() {
    let (items, queries) = common::data(10_000, 20);
    let hnsw = build(&items, &clustered());
    for q in queries.chunks_exact(items.dim) {
        let narrow = hnsw.search(q, K, 1, Exclude::Nothing).unwrap();
        common::assert_valid_answer(&items, q, &narrow, K, &[]);
        assert_eq!(narrow, hnsw.search(q, K, K, Exclude::Nothing).unwrap());
    }
}

#[test]
fn batch_search_equals_single_searches() {
    let (items, queries) = common::data(10_000, 16);
    let hnsw = build(&items, &clustered());
    let seen = [1i64, 2, 3];
    let excl: Vec<Exclude> = (0..16).map(|_| Exclude::Ids(&seen)).collect();
    let batch = hnsw.search_batch(&queries, 10, 50, &excl).unwrap();
    for (q, b) in queries.chunks_exact(items.dim).zip(&batch) {
        assert_eq!(&hnsw.search(q, 10, 50, Exclude::Ids(&seen)).unwrap(), b);
    }
}

#[test]
fn tiny_and_degenerate_catalogues_work_with_both_builders() {
    for builder in [Builder::Native, Builder::HnswRs] {
        let config = HnswConfig {
            builder,
            ..clustered()
        };
        for n in [1usize, 2, 5, 60] {
            let (items, queries) = common::data(n, 3);
            let exact = ExactIndex::new(items.clone()).unwrap();
            let hnsw = build(&items, &config);
            for q in queries.chunks_exact(items.dim) {
                let hits = hnsw.search(q, 10, 0, Exclude::Nothing).unwrap();
                assert_eq!(
                    hits,
                    exact.search(q, 10, Exclude::Nothing).unwrap(),
                    "{builder:?} n={n}"
                );
            }
        }
        // identical and zero vectors
        let items = ItemVectors::new(
            (0..300).collect(),
            4,
            (0..300)
                .flat_map(|i| {
                    if i % 3 == 0 {
                        [0.0; 4]
                    } else {
                        [1.0, 2.0, 0.5, -1.0]
                    }
                })
                .collect(),
            (0..300).map(|i| (i % 7) as f32 * 0.01).collect(),
        )
        .unwrap();
        let hnsw = build(&items, &config);
        let hits = hnsw
            .search(&[1.0, 1.0, 1.0, 1.0], 20, 50, Exclude::Nothing)
            .unwrap();
        common::assert_valid_answer(&items, &[1.0, 1.0, 1.0, 1.0], &hits, 20, &[]);
    }
}
