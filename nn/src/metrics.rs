//! Ranking metrics of EVAL.md §1.

/// Number of non-excluded items scoring strictly higher than `target` (EVAL.md §1).
///
/// The target is never excluded; duplicates in `excluded` count once; ids outside `scores`
/// are ignored. A NaN score never counts as higher. When `target` is outside `scores` or its
/// score is NaN, the result is the number of other non-excluded items (the worst rank).
pub fn target_rank(scores: &[f32], target: u32, excluded: &[u32]) -> usize {
    let t = target as usize;
    let n = scores.len();
    let mut ex: Vec<u32> = excluded
        .iter()
        .copied()
        .filter(|&e| e != target && (e as usize) < n)
        .collect();
    ex.sort_unstable();
    ex.dedup();
    let Some(&ts) = scores.get(t) else {
        return n - ex.len();
    };
    if ts.is_nan() {
        return n - 1 - ex.len();
    }
    let higher = scores.iter().filter(|&&s| s > ts).count();
    let excluded_higher = ex.iter().filter(|&&e| scores[e as usize] > ts).count();
    higher - excluded_higher
}

/// Hit rate and NDCG at several cut-offs, accumulated over users.
#[derive(Debug, Clone, PartialEq)]
pub struct RankMetrics {
    /// The cut-offs K.
    pub cutoffs: Vec<usize>,
    /// Sum of HR@K per cut-off.
    pub hits: Vec<f64>,
    /// Sum of NDCG@K per cut-off.
    pub ndcg: Vec<f64>,
    /// Number of users added.
    pub users: usize,
}

impl RankMetrics {
    /// Empty accumulators for the given cut-offs.
    pub fn new(cutoffs: &[usize]) -> Self {
        Self {
            cutoffs: cutoffs.to_vec(),
            hits: vec![0.0; cutoffs.len()],
            ndcg: vec![0.0; cutoffs.len()],
            users: 0,
        }
    }

    /// Adds one user's target rank.
    pub fn add(&mut self, rank: usize) {
        self.users += 1;
        for (i, &k) in self.cutoffs.iter().enumerate() {
            if rank < k {
                self.hits[i] += 1.0;
                self.ndcg[i] += 1.0 / ((rank + 2) as f64).log2();
            }
        }
    }

    /// Mean HR@K of the i-th cut-off (0 when no user).
    pub fn hit_rate(&self, i: usize) -> f64 {
        self.hits
            .get(i)
            .map_or(0.0, |h| h / self.users.max(1) as f64)
    }

    /// Mean NDCG@K of the i-th cut-off (0 when no user).
    pub fn ndcg_at(&self, i: usize) -> f64 {
        self.ndcg
            .get(i)
            .map_or(0.0, |h| h / self.users.max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcg_of_rank_zero_and_two() {
        let mut m = RankMetrics::new(&[1, 10]);
        m.add(0);
        m.add(2);
        assert_eq!(m.hit_rate(0), 0.5);
        assert_eq!(m.hit_rate(1), 1.0);
        assert!((m.ndcg_at(1) - (1.0 + 0.5) / 2.0).abs() < 1e-12);
    }
}
