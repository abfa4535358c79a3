//! Exact (brute-force) top-k by `u . v + b`: blocked and multi-threaded.
//!
//! One query is split over item ranges on all threads, four rows at a time; a batch is split
//! into groups of queries, each group sweeping the items in packed cache-sized blocks with a
//! matrix-product micro-kernel (see `panel`).

use rayon::prelude::*;

use crate::error::Result;
use crate::kernel::{dot, dot4};
use crate::panel::{pack, pack_queries, scan_packed, PANEL, QTILE};
use crate::search::{check_query, resolve_batch, split_batch, to_hits, Exclude, Hit};
use crate::topk::{contains, Scored, TopK};
use crate::vectors::{Catalogue, ItemVectors};

/// Rows per parallel task for one query.
const ROWS_PER_TASK: usize = 16_384;
/// Rows per packed block when a group of queries sweeps the catalogue (256 KB at dim 64).
const BLOCK_ROWS: usize = 64 * PANEL;
/// Queries sharing one sweep over the catalogue.
const QUERY_GROUP: usize = 40 * QTILE;

/// Scores rows `start..end` for every query of a group and offers them to its collector.
fn scan_rows(
    cat: &Catalogue,
    queries: &[&[f32]],
    excluded: &[&[u32]],
    tops: &mut [TopK],
    start: usize,
    end: usize,
) {
    let full = start + (end - start) / 4 * 4;
    let mut r = start;
    while r < full {
        let rows = [
            cat.row(r as u32),
            cat.row(r as u32 + 1),
            cat.row(r as u32 + 2),
            cat.row(r as u32 + 3),
        ];
        for ((q, top), excl) in queries.iter().zip(tops.iter_mut()).zip(excluded) {
            let dots = dot4(q, rows);
            for (j, d) in dots.into_iter().enumerate() {
                let idx = (r + j) as u32;
                let score = d + cat.bias[r + j];
                if top.may_accept(score) && !contains(excl, idx) {
                    top.push(Scored { score, idx });
                }
            }
        }
        r += 4;
    }
    for idx in full..end {
        let row = cat.row(idx as u32);
        for ((q, top), excl) in queries.iter().zip(tops.iter_mut()).zip(excluded) {
            let score = dot(q, row) + cat.bias[idx];
            if top.may_accept(score) && !contains(excl, idx as u32) {
                top.push(Scored {
                    score,
                    idx: idx as u32,
                });
            }
        }
    }
}

/// Best `k` items for one query, `excluded` (sorted dense indices) left out; best first.
pub(crate) fn exact_one(cat: &Catalogue, query: &[f32], k: usize, excluded: &[u32]) -> Vec<Scored> {
    let n = cat.len();
    if n <= ROWS_PER_TASK {
        let mut top = [TopK::new(k)];
        scan_rows(cat, &[query], &[excluded], &mut top, 0, n);
        let [top] = top;
        return top.into_sorted();
    }
    let tasks = n.div_ceil(ROWS_PER_TASK);
    (0..tasks)
        .into_par_iter()
        .map(|t| {
            let start = t * ROWS_PER_TASK;
            let end = (start + ROWS_PER_TASK).min(n);
            let mut top = [TopK::new(k)];
            scan_rows(cat, &[query], &[excluded], &mut top, start, end);
            let [top] = top;
            top
        })
        .reduce(
            || TopK::new(k),
            |mut a, b| {
                a.merge(b);
                a
            },
        )
        .into_sorted()
}

/// Best `k` items for each query (`excluded[i]` sorted dense indices for query `i`).
pub(crate) fn exact_batch(
    cat: &Catalogue,
    queries: &[&[f32]],
    k: usize,
    excluded: &[&[u32]],
) -> Vec<Vec<Scored>> {
    let threads = rayon::current_num_threads();
    if queries.len() < threads {
        return queries
            .iter()
            .zip(excluded)
            .map(|(q, e)| exact_one(cat, q, k, e))
            .collect();
    }
    let n = cat.len();
    let group = queries.len().div_ceil(threads).clamp(QTILE, QUERY_GROUP);
    queries
        .par_chunks(group)
        .zip(excluded.par_chunks(group))
        .with_max_len(1)
        .flat_map_iter(|(qs, ex)| {
            let mut tops: Vec<TopK> = qs.iter().map(|_| TopK::new(k)).collect();
            let tiles = pack_queries(qs, cat.dim);
            let mut packed = Vec::new();
            let mut start = 0;
            while start < n {
                let end = (start + BLOCK_ROWS).min(n);
                pack(cat, start, end, &mut packed);
                scan_packed(cat, &packed, start, end, &tiles, ex, &mut tops);
                start = end;
            }
            tops.into_iter()
                .zip(qs.iter())
                .map(|(top, q)| cat.rescored(q, top.into_sorted()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Exact top-k index: brute force over the catalogue. The baseline for recall, and the right
/// choice for small catalogues.
pub struct ExactIndex {
    pub(crate) cat: Catalogue,
}

impl ExactIndex {
    /// Validates `items` and takes them over (no copy).
    pub fn new(items: ItemVectors) -> Result<Self> {
        Ok(ExactIndex {
            cat: Catalogue::from_items(items)?,
        })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.cat.len()
    }

    /// True when there is no item.
    pub fn is_empty(&self) -> bool {
        self.cat.len() == 0
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.cat.dim
    }

    /// The `k` best items by `u . v + b`, best first (ties: lower index first), leaving out
    /// `exclude`. Fewer than `k` only when fewer items remain.
    pub fn search<'e>(
        &self,
        query: &[f32],
        k: usize,
        exclude: impl Into<Exclude<'e>>,
    ) -> Result<Vec<Hit>> {
        check_query(&self.cat, query)?;
        let excluded = exclude.into().resolve(&self.cat);
        Ok(to_hits(
            &self.cat,
            exact_one(&self.cat, query, k, &excluded),
        ))
    }

    /// [`ExactIndex::search`] for a row-major batch of queries; `exclude` is empty (nothing
    /// excluded) or has one entry per query.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        exclude: &[Exclude<'_>],
    ) -> Result<Vec<Vec<Hit>>> {
        let rows = split_batch(&self.cat, queries)?;
        let excluded = resolve_batch(&self.cat, rows.len(), exclude)?;
        let refs: Vec<&[u32]> = excluded.iter().map(Vec::as_slice).collect();
        Ok(exact_batch(&self.cat, &rows, k, &refs)
            .into_iter()
            .map(|s| to_hits(&self.cat, s))
            .collect())
    }

    /// A copy of the indexed vectors.
    pub fn items(&self) -> ItemVectors {
        self.cat.to_items()
    }

    /// Bytes of memory the index holds (vectors, ids, biases, lookups; mapped vectors excluded).
    pub fn heap_bytes(&self) -> usize {
        self.cat.heap_bytes()
    }
}
