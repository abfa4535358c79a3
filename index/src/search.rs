//! What searches return, query checks and the recall measure.

use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};
use crate::topk::Scored;
use crate::vectors::Catalogue;

/// One answer: an item and its exact score `u . v + b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The item's id.
    pub item_id: i64,
    /// The item's position in the catalogue (row of the vectors the index was built from).
    pub index: u32,
    /// The exact score `u . v + b`.
    pub score: f32,
}

/// Items to leave out of one query's answer.
#[derive(Debug, Clone, Copy, Default)]
pub enum Exclude<'a> {
    /// Leave nothing out.
    #[default]
    Nothing,
    /// Item ids (unknown ids are ignored).
    Ids(&'a [i64]),
    /// Dense indices, the rows of the vectors the index was built from (out-of-range ones are ignored).
    Indices(&'a [u32]),
}

impl<'a> From<&'a [i64]> for Exclude<'a> {
    fn from(ids: &'a [i64]) -> Self {
        Exclude::Ids(ids)
    }
}

impl<'a> From<&'a Vec<i64>> for Exclude<'a> {
    fn from(ids: &'a Vec<i64>) -> Self {
        Exclude::Ids(ids)
    }
}

impl<'a> From<&'a [u32]> for Exclude<'a> {
    fn from(indices: &'a [u32]) -> Self {
        Exclude::Indices(indices)
    }
}

impl<'a> From<&'a Vec<u32>> for Exclude<'a> {
    fn from(indices: &'a Vec<u32>) -> Self {
        Exclude::Indices(indices)
    }
}

impl Exclude<'_> {
    /// Sorted, deduplicated dense indices of the catalogue to leave out.
    pub(crate) fn resolve(&self, cat: &Catalogue) -> Vec<u32> {
        match self {
            Exclude::Nothing => Vec::new(),
            Exclude::Ids(ids) => cat.dense_set(ids),
            Exclude::Indices(idx) => crate::vectors::dense_set_checked(idx, cat.len()),
        }
    }
}

/// Checks a query's length and values.
pub(crate) fn check_query(cat: &Catalogue, query: &[f32]) -> Result<()> {
    if query.len() != cat.dim {
        return Err(IndexError::DimensionMismatch {
            expected: cat.dim,
            got: query.len(),
        });
    }
    if query.iter().any(|x| !x.is_finite()) {
        return Err(IndexError::InvalidInput(
            "query has a non-finite value".into(),
        ));
    }
    Ok(())
}

/// Splits a row-major batch into queries, checking each.
pub(crate) fn split_batch<'q>(cat: &Catalogue, queries: &'q [f32]) -> Result<Vec<&'q [f32]>> {
    if !queries.len().is_multiple_of(cat.dim) {
        return Err(IndexError::InvalidInput(format!(
            "batch of {} floats is not a whole number of queries of dimension {}",
            queries.len(),
            cat.dim
        )));
    }
    let rows: Vec<&[f32]> = queries.chunks_exact(cat.dim).collect();
    for row in &rows {
        check_query(cat, row)?;
    }
    Ok(rows)
}

/// Resolves one exclusion per query (`exclude` empty = none for all, else one per query).
pub(crate) fn resolve_batch(
    cat: &Catalogue,
    n_queries: usize,
    exclude: &[Exclude<'_>],
) -> Result<Vec<Vec<u32>>> {
    if exclude.is_empty() {
        return Ok(vec![Vec::new(); n_queries]);
    }
    if exclude.len() != n_queries {
        return Err(IndexError::InvalidInput(format!(
            "{} exclusion lists for {n_queries} queries",
            exclude.len()
        )));
    }
    Ok(exclude.iter().map(|e| e.resolve(cat)).collect())
}

/// Turns scored dense indices into hits.
pub(crate) fn to_hits(cat: &Catalogue, scored: Vec<Scored>) -> Vec<Hit> {
    scored
        .into_iter()
        .map(|s| Hit {
            item_id: cat.ids[s.idx as usize],
            index: s.idx,
            score: s.score,
        })
        .collect()
}

/// recall@k = |approx top-k ∩ exact top-k| / k, comparing item ids (EVAL.md section 2).
/// `k` is capped at `exact.len()`; 1.0 when there is nothing to find.
pub fn recall_at_k(approx: &[Hit], exact: &[Hit], k: usize) -> f64 {
    let k = k.min(exact.len());
    if k == 0 {
        return 1.0;
    }
    let mut truth: Vec<i64> = exact[..k].iter().map(|h| h.item_id).collect();
    truth.sort_unstable();
    let found = approx
        .iter()
        .take(k)
        .filter(|h| truth.binary_search(&h.item_id).is_ok())
        .count();
    found as f64 / k as f64
}
