//! Choosing the HNSW search beam width for a recall target: the smallest `ef` whose mean
//! recall@k against exact search, on queries the caller holds out (the validation users), reaches
//! the target. The graph's recall at a given `ef` depends on the catalogue and the model, so a
//! fixed default serves one night at 0.99 and the next at 0.94; measuring it on the night's own
//! queries holds the served quality instead.

use crate::{ExactIndex, Exclude, HnswIndex, Result};
use serde::Serialize;

/// What [`HnswIndex::choose_ef`] measured and chose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EfChoice {
    /// The chosen beam width (now the index's default).
    pub ef: usize,
    /// Mean recall@k at `ef` on the tuning queries.
    pub recall: f64,
    /// Whether `recall` reached the target (otherwise `ef` is the largest tried).
    pub reached: bool,
    /// The recall target.
    pub target: f64,
    /// Every (ef, recall) tried, in order.
    pub tried: Vec<(usize, f64)>,
}

/// Beam widths tried: `k`, then about 1.25x each step, up to `max_ef`.
fn ladder(k: usize, max_ef: usize) -> Vec<usize> {
    let mut out = vec![k.max(1)];
    while let Some(&last) = out.last() {
        let next = (last + last / 4).max(last + 1);
        if last >= max_ef {
            break;
        }
        out.push(next.min(max_ef));
    }
    out
}

impl HnswIndex {
    /// Sets the beam width used by searches that pass `ef = 0` (saved with the index).
    pub fn set_ef_search_default(&mut self, ef: usize) {
        self.config.ef_search_default = ef.max(1);
    }

    /// Finds the smallest beam width (from `k`, about 1.25x per step, up to `max_ef`) whose
    /// mean recall@`k` against exact search on `queries` (row-major, with their exclusions)
    /// reaches `target`, makes it the index's default, and reports the measurements. When no
    /// width reaches it, the largest tried is kept and `reached` is false.
    pub fn choose_ef(
        &mut self,
        queries: &[f32],
        exclude: &[Exclude<'_>],
        k: usize,
        target: f64,
        max_ef: usize,
    ) -> Result<EfChoice> {
        let exact = ExactIndex::new(self.items())?.search_batch(queries, k, exclude)?;
        let mut tried = Vec::new();
        let mut chosen = None;
        for ef in ladder(k, max_ef.max(k)) {
            let found = self.search_batch(queries, k, ef, exclude)?;
            let recall = found
                .iter()
                .zip(&exact)
                .map(|(a, b)| crate::recall_at_k(a, b, k))
                .sum::<f64>()
                / found.len().max(1) as f64;
            tried.push((ef, recall));
            if recall >= target {
                chosen = Some((ef, recall, true));
                break;
            }
        }
        let (ef, recall, reached) = chosen.unwrap_or_else(|| {
            let &(ef, recall) = tried.last().unwrap_or(&(k, 0.0));
            (ef, recall, false)
        });
        self.set_ef_search_default(ef);
        Ok(EfChoice {
            ef,
            recall,
            reached,
            target,
            tried,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HnswConfig, ItemVectors};

    #[test]
    fn the_ladder_starts_at_k_and_ends_at_the_cap() {
        assert_eq!(ladder(100, 200), vec![100, 125, 156, 195, 200]);
        assert_eq!(ladder(10, 10), vec![10]);
    }

    #[test]
    fn the_chosen_width_reaches_the_target_and_becomes_the_default() {
        // 3,000 random 16-d items, a deliberately sparse graph (m = 4, small ef_construction)
        // so that small beams miss neighbours.
        let (n, dim) = (3_000usize, 16usize);
        let mut state = 0x1234_5678u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let data: Vec<f32> = (0..n * dim).map(|_| next()).collect();
        let bias: Vec<f32> = (0..n).map(|_| 0.1 * next()).collect();
        let items = ItemVectors::new((0..n as i64).collect(), dim, data, bias).unwrap();
        let cfg = HnswConfig {
            m: 4,
            ef_construction: 16,
            exact_below: 0,
            ..HnswConfig::default()
        };
        let mut index = HnswIndex::build(items, &cfg, &|_, _| {}).unwrap();
        let queries: Vec<f32> = (0..200 * dim).map(|_| next()).collect();
        let none: Vec<Exclude> = Vec::new();
        let choice = index.choose_ef(&queries, &none, 10, 0.99, 3_000).unwrap();
        assert!(choice.reached, "{choice:?}");
        assert!(choice.recall >= 0.99);
        assert_eq!(index.config().ef_search_default, choice.ef);
        // Every width tried before the chosen one missed the target.
        for &(ef, r) in &choice.tried[..choice.tried.len() - 1] {
            assert!(ef < choice.ef && r < 0.99, "{choice:?}");
        }
        // An unreachable target keeps the largest width tried.
        let capped = index.choose_ef(&queries, &none, 10, 1.01, 40).unwrap();
        assert!(!capped.reached);
        assert_eq!(capped.ef, 40);
        assert_eq!(index.config().ef_search_default, 40);
    }
}
