//! Inserting items into a built index: recall as good as a fresh build, exact answers,
//! rejected ids, save/load after insertion.

mod common;

use std::fs;

use index::{
    recall_at_k, ExactIndex, Exclude, GraphMetric, HnswConfig, HnswIndex, Index, IndexError,
    ItemVectors, LoadOptions,
};

const N: usize = 5_000;
const K: usize = 10;

/// Items `lo..hi` of `items` (ids kept).
fn slice(items: &ItemVectors, lo: usize, hi: usize) -> ItemVectors {
    ItemVectors {
        ids: items.ids[lo..hi].to_vec(),
        dim: items.dim,
        data: items.data[lo * items.dim..hi * items.dim].to_vec(),
        bias: items.bias[lo..hi].to_vec(),
    }
}

/// The Möbius graph with m 16: the best on the synthetic clustered items of `common::data`
/// (the default, angular with m 32, is tuned for trained model vectors; see the crate README).
fn build(items: ItemVectors) -> HnswIndex {
    let config = HnswConfig {
        metric: GraphMetric::Mobius,
        m: 16,
        ..HnswConfig::default()
    };
    HnswIndex::build(items, &config, &|_, _| {}).unwrap()
}

/// Mean recall@K of `hnsw` at beam `ef` against exact answers over `all`.
fn recall(hnsw: &HnswIndex, exact: &ExactIndex, queries: &[f32], ef: usize) -> f64 {
    let approx = hnsw.search_batch(queries, K, ef, &[]).unwrap();
    let truth = exact.search_batch(queries, K, &[]).unwrap();
    let sum: f64 = approx
        .iter()
        .zip(&truth)
        .map(|(a, t)| recall_at_k(a, t, K))
        .sum();
    sum / truth.len() as f64
}

/// Builds on the first `N` items of `N + m`, inserts the rest; also returns all items.
fn built_then_inserted(m: usize) -> (HnswIndex, ItemVectors, Vec<f32>) {
    let (all, queries) = common::data(N + m, 200);
    let mut hnsw = build(slice(&all, 0, N));
    let before = hnsw.bias_transform();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    hnsw.insert(slice(&all, N, N + m), &|done, total| {
        assert!(done <= total && total == m);
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert!(calls.into_inner() >= 1);
    assert_eq!(hnsw.len(), N + m);
    assert_eq!(hnsw.items(), all);
    // the graph metric keeps the build's bias transform
    assert_eq!(hnsw.bias_transform(), before);
    (hnsw, all, queries)
}

#[test]
fn recall_after_insertion_matches_a_fresh_build() {
    for m in [500, 1] {
        let (inserted, all, queries) = built_then_inserted(m);
        let fresh = build(all.clone());
        let exact = ExactIndex::new(all.clone()).unwrap();
        // the new items' own vectors as queries too (their neighbourhoods are the new links)
        let own = slice(&all, N, N + m).data;
        for ef in [10, 16, 64] {
            let (ri, rf) = (
                recall(&inserted, &exact, &queries, ef),
                recall(&fresh, &exact, &queries, ef),
            );
            let (oi, of) = (
                recall(&inserted, &exact, &own, ef),
                recall(&fresh, &exact, &own, ef),
            );
            eprintln!("m {m} ef {ef}: recall@{K} inserted {ri:.4} fresh {rf:.4}; new items' own queries inserted {oi:.4} fresh {of:.4}");
            assert!(ri >= rf - 0.02, "m {m} ef {ef}: {ri} vs fresh {rf}");
            assert!(oi >= of - 0.02, "m {m} ef {ef}: own {oi} vs fresh {of}");
            if ef == 64 {
                assert!(ri >= 0.97 && oi >= 0.97, "m {m}: {ri} {oi}");
            }
        }
    }
}

#[test]
fn an_inserted_item_that_scores_highest_comes_first() {
    let (mut hnsw, mut all, _) = built_then_inserted(500);
    let exact = ExactIndex::new(all.clone()).unwrap();
    let mut checked = 0;
    for j in N..N + 500 {
        let q = all.row(j).to_vec();
        let truth = exact.search(&q, 1, Exclude::Nothing).unwrap();
        if truth[0].item_id == all.ids[j] {
            checked += 1;
            let hits = hnsw.search(&q, K, 0, Exclude::Nothing).unwrap();
            assert_eq!(hits[0].item_id, all.ids[j]);
            assert_eq!(hits[0].score, truth[0].score);
        }
    }
    assert!(
        checked >= 50,
        "only {checked} new items are their own best match"
    );
    // one item far outside the coded range (re-quantizes the walk codes): found first
    let mut v = vec![0.1f32; all.dim];
    v[3] = 6.0;
    let spike = ItemVectors::new(vec![1_000_000], all.dim, v.clone(), vec![0.5]).unwrap();
    hnsw.insert(spike, &|_, _| {}).unwrap();
    all.ids.push(1_000_000);
    all.data.extend_from_slice(&v);
    all.bias.push(0.5);
    let hits = hnsw.search(&v, K, 0, Exclude::Nothing).unwrap();
    common::assert_valid_answer(&all, &v, &hits, K, &[]);
    assert_eq!(hits[0].item_id, 1_000_000);
    // ... and still left out when excluded, with K items returned
    let hits = hnsw.search(&v, K, 0, &[1_000_000i64][..]).unwrap();
    common::assert_valid_answer(&all, &v, &hits, K, &[1_000_000]);
}

#[test]
fn known_or_repeated_ids_are_refused_and_change_nothing() {
    let (all, queries) = common::data(N + 3, 20);
    for exact in [false, true] {
        let mut index = if exact {
            Index::Exact(ExactIndex::new(slice(&all, 0, N)).unwrap())
        } else {
            Index::Hnsw(build(slice(&all, 0, N)))
        };
        let before = index.search_batch(&queries, K, 0, &[]).unwrap();
        let mut known = slice(&all, N, N + 3);
        known.ids[1] = 17;
        let mut repeated = slice(&all, N, N + 3);
        repeated.ids[2] = repeated.ids[0];
        let mut wrong_dim = slice(&all, N, N + 3);
        wrong_dim.dim = 16;
        let cases = [
            (known, "17".to_string()),
            (repeated, format!("{}", N)),
            (wrong_dim, "dimension".to_string()),
        ];
        for (items, named) in cases {
            match index.insert(items, &|_, _| {}) {
                Err(IndexError::InvalidInput(msg)) => {
                    assert!(msg.contains(&named), "{msg:?} should name {named}")
                }
                other => panic!("expected InvalidInput, got {:?}", other.err()),
            }
            assert_eq!(index.len(), N);
            assert_eq!(index.items(), slice(&all, 0, N));
            assert_eq!(index.search_batch(&queries, K, 0, &[]).unwrap(), before);
        }
        // the same items with fresh ids go in
        index.insert(slice(&all, N, N + 3), &|_, _| {}).unwrap();
        assert_eq!(index.len(), N + 3);
        assert!(index.insert(slice(&all, N, N + 1), &|_, _| {}).is_err());
    }
}

#[test]
fn save_and_load_after_insertion_give_identical_answers() {
    let (hnsw, all, queries) = built_then_inserted(500);
    let bias = hnsw.bias_transform();
    let index = Index::Hnsw(hnsw);
    let seen: Vec<i64> = (N as i64..N as i64 + 40).chain(0..10).collect();
    let excl: Vec<Exclude> = (0..200).map(|_| Exclude::Ids(&seen)).collect();
    let expected = index.search_batch(&queries, 50, 80, &excl).unwrap();
    let dir = common::temp_path("insert-save");
    index.save(&dir).unwrap();
    assert_eq!(Index::read_manifest(&dir).unwrap().graph_bias, Some(bias));
    for mmap in [false, true] {
        let opts = LoadOptions {
            verify_checksums: true,
            mmap_vectors: mmap,
        };
        let mut loaded = Index::load(&dir, &opts).unwrap();
        assert_eq!(
            loaded.search_batch(&queries, 50, 80, &excl).unwrap(),
            expected
        );
        assert_eq!(loaded.items(), all);
        if let Index::Hnsw(h) = &loaded {
            assert_eq!(h.bias_transform(), bias);
        }
        // a loaded (and possibly mapped) index takes further items
        let extra = ItemVectors::new(vec![-5], all.dim, all.row(0).to_vec(), vec![0.0]).unwrap();
        loaded.insert(extra, &|_, _| {}).unwrap();
        assert_eq!(loaded.len(), N + 501);
        let q = &queries[..all.dim];
        let hits = loaded.search(q, 5, 0, Exclude::Nothing).unwrap();
        assert_eq!(hits.len(), 5);
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn exact_index_insertion_equals_exact_search_over_everything() {
    let (all, queries) = common::data(2_000 + 300, 30);
    let mut index =
        Index::build(slice(&all, 0, 2_000), &HnswConfig::default(), &|_, _| {}).unwrap();
    assert!(matches!(index, Index::Exact(_)));
    index.insert(slice(&all, 2_000, 2_300), &|_, _| {}).unwrap();
    let reference = ExactIndex::new(all.clone()).unwrap();
    let seen: Vec<i64> = (2_000..2_100).collect();
    for q in queries.chunks_exact(all.dim) {
        let hits = index.search(q, 20, 0, &seen[..]).unwrap();
        assert_eq!(hits, reference.search(q, 20, &seen[..]).unwrap());
        common::assert_valid_answer(&all, q, &hits, 20, &seen);
    }
    // the HNSW index answers exactly when every item is asked for
    let mut hnsw = build(slice(&all, 0, 2_000));
    hnsw.insert(slice(&all, 2_000, 2_300), &|_, _| {}).unwrap();
    let q = &queries[..all.dim];
    let everything = hnsw.search(q, 2_300, 0, Exclude::Nothing).unwrap();
    assert_eq!(
        everything,
        reference.search(q, 2_300, Exclude::Nothing).unwrap()
    );
}

#[test]
fn an_empty_index_takes_items_and_an_empty_batch_is_a_no_op() {
    let (all, queries) = common::data(600, 5);
    let mut hnsw = build(slice(&all, 0, 0));
    hnsw.insert(slice(&all, 0, 0), &|_, _| {}).unwrap();
    assert!(hnsw.is_empty());
    hnsw.insert(slice(&all, 0, 300), &|_, _| {}).unwrap();
    hnsw.insert(slice(&all, 300, 600), &|_, _| {}).unwrap();
    let exact = ExactIndex::new(all.clone()).unwrap();
    for q in queries.chunks_exact(all.dim) {
        let hits = hnsw.search(q, K, 100, Exclude::Nothing).unwrap();
        common::assert_valid_answer(&all, q, &hits, K, &[]);
        assert!(recall_at_k(&hits, &exact.search(q, K, Exclude::Nothing).unwrap(), K) >= 0.9);
    }
}

#[test]
fn an_hnsw_rs_graph_takes_inserted_items() {
    let (all, queries) = common::data(3_300, 100);
    let config = HnswConfig {
        builder: index::Builder::HnswRs,
        ef_construction: 100,
        ..HnswConfig::default()
    };
    let mut hnsw = HnswIndex::build(slice(&all, 0, 3_000), &config, &|_, _| {}).unwrap();
    hnsw.insert(slice(&all, 3_000, 3_300), &|_, _| {}).unwrap();
    let exact = ExactIndex::new(all.clone()).unwrap();
    let own = slice(&all, 3_000, 3_300).data;
    let (r, o) = (
        recall(&hnsw, &exact, &queries, 64),
        recall(&hnsw, &exact, &own, 64),
    );
    eprintln!("hnsw_rs graph + 300 inserted: recall@{K} {r:.4}, new items' own queries {o:.4}");
    assert!(r >= 0.97 && o >= 0.97, "{r} {o}");
}
