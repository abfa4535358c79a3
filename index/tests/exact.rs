//! Exact search: a hand-computed case, batch consistency and input errors.

mod common;

use index::{ExactIndex, Exclude, HnswConfig, Index, IndexError, ItemVectors};

/// Five items in 2-D; for query (1, 2) the scores are 1, 2.5, 2, 1, 6.
fn tiny() -> ItemVectors {
    ItemVectors::new(
        vec![10, 20, 30, 40, 50],
        2,
        vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, -1.0, 0.0, 2.0, 2.0],
        vec![0.0, 0.5, -1.0, 2.0, 0.0],
    )
    .unwrap()
}

fn ids(hits: &[index::Hit]) -> Vec<i64> {
    hits.iter().map(|h| h.item_id).collect()
}

#[test]
fn hand_computed_top_k_with_exclusions_and_ties() {
    let index = ExactIndex::new(tiny()).unwrap();
    let q = [1.0, 2.0];
    let hits = index.search(&q, 3, Exclude::Nothing).unwrap();
    assert_eq!(ids(&hits), vec![50, 20, 30]);
    let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
    assert_eq!(scores, vec![6.0, 2.5, 2.0]);
    assert_eq!(hits[0].index, 4);
    // the tie between 10 and 40 (score 1) goes to the lower index
    assert_eq!(
        ids(&index.search(&q, 10, Exclude::Nothing).unwrap()),
        vec![50, 20, 30, 10, 40]
    );
    assert_eq!(
        ids(&index.search(&q, 3, &vec![20i64, 99]).unwrap()),
        vec![50, 30, 10]
    );
    assert_eq!(
        ids(&index.search(&q, 3, &vec![4u32, 77]).unwrap()),
        vec![20, 30, 10]
    );
    assert_eq!(
        ids(&index.search(&q, 9, &vec![10i64, 20, 30, 40]).unwrap()),
        vec![50]
    );
    assert!(index.search(&q, 0, Exclude::Nothing).unwrap().is_empty());
}

#[test]
fn batch_matches_single_queries() {
    let index = ExactIndex::new(tiny()).unwrap();
    let queries = [1.0, 2.0, 0.0, -1.0];
    let seen = [20i64];
    let batch = index
        .search_batch(&queries, 4, &[Exclude::Nothing, Exclude::Ids(&seen)])
        .unwrap();
    assert_eq!(ids(&batch[0]), vec![50, 20, 30, 10]);
    // query (0, -1): scores 0, -0.5, -2, 2, -2; 20 excluded; tie 30/50 -> lower index
    assert_eq!(ids(&batch[1]), vec![40, 10, 30, 50]);
    assert!(matches!(
        index.search_batch(&queries, 4, &[Exclude::Nothing]),
        Err(IndexError::InvalidInput(_))
    ));
}

#[test]
fn blocked_parallel_kernel_matches_f64_brute_force() {
    // more rows than one parallel task and more queries than one group
    let (items, queries) = common::data(40_000, 70);
    let index = ExactIndex::new(items.clone()).unwrap();
    let batch = index.search_batch(&queries, 20, &[]).unwrap();
    for (qi, q) in queries.chunks_exact(items.dim).enumerate().step_by(10) {
        let mut all: Vec<(f64, usize)> = (0..items.len())
            .map(|i| (common::score64(&items, q, i), i))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        let single = index.search(q, 20, Exclude::Nothing).unwrap();
        assert_eq!(single, batch[qi]);
        common::assert_valid_answer(&items, q, &single, 20, &[]);
        // the 20th exact score bounds every returned score from below
        assert!(f64::from(single[19].score) >= all[19].0 - 1e-4);
        assert_eq!(single[0].index as usize, all[0].1);
    }
}

#[test]
fn bad_inputs_are_errors() {
    assert!(ItemVectors::new(vec![1, 1], 1, vec![0.0, 1.0], vec![0.0, 0.0]).is_err());
    assert!(ItemVectors::new(vec![1, 2], 1, vec![0.0, f32::NAN], vec![0.0, 0.0]).is_err());
    assert!(ItemVectors::new(vec![1, 2], 2, vec![0.0, 1.0], vec![0.0, 0.0]).is_err());
    assert!(ItemVectors::new(vec![1], 0, vec![], vec![0.0]).is_err());
    assert!(ItemVectors::new(vec![1], 1, vec![1.0], vec![]).is_err());
    assert!(ItemVectors::new(vec![1], 1, vec![1e30], vec![0.0]).is_err());
    let index = ExactIndex::new(tiny()).unwrap();
    assert!(matches!(
        index.search(&[1.0], 3, Exclude::Nothing),
        Err(IndexError::DimensionMismatch {
            expected: 2,
            got: 1
        })
    ));
    assert!(index
        .search(&[1.0, f32::INFINITY], 3, Exclude::Nothing)
        .is_err());
    assert!(index.search_batch(&[1.0, 2.0, 3.0], 3, &[]).is_err());
}

#[test]
fn small_catalogues_get_an_exact_index() {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let progress = |_: usize, _: usize| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let index = Index::build(tiny(), &HnswConfig::default(), &progress).unwrap();
    assert!(matches!(index, Index::Exact(_)));
    assert!(calls.into_inner() >= 1);
    assert_eq!(
        ids(&index.search(&[1.0, 2.0], 2, 0, Exclude::Nothing).unwrap()),
        vec![50, 20]
    );
}
