//! EVAL.md section 5, the NCF protocol (He et al. 2017, section 4.1): each user's leave-last-out
//! test item is ranked among 99 items the user never interacted with, drawn uniformly with a
//! fixed seed; HR@10 and NDCG@10. Only for setting a figure beside work that used it: section 1
//! (the full catalogue) is the project's own measure.

use nn::rng::Rng;
use nn::{target_rank, RankMetrics, UserFeatures, UserQuery, ValidationCase};
use rayon::prelude::*;
use retrieval::DynRetriever;
use serde::Serialize;

use crate::error::Result;
use crate::stages::retrieval::model_err;

/// Seed of the sampled items (EVAL.md's "fixed seed").
pub const SEED: u64 = 42;
/// Sampled items per user.
pub const NEGATIVES: usize = 99;
/// Scores held at once (16M floats).
const CHUNK_SCORES: usize = 1 << 24;

/// What the protocol measured.
#[derive(Debug, Clone, Serialize)]
pub struct NcfFigures {
    /// Users evaluated.
    pub users: usize,
    /// HR@10 among the target and its 99 sampled items.
    pub hr10: f64,
    /// NDCG@10 likewise.
    pub ndcg10: f64,
}

/// `count` distinct items of `0..num_items` outside `seen` (sorted, unique), drawn uniformly
/// by `rng`, sorted; all of them when fewer exist.
pub fn sample_unseen(seen: &[u32], num_items: usize, count: usize, rng: &mut Rng) -> Vec<u32> {
    let free = num_items.saturating_sub(seen.len());
    if count >= free {
        return (0..num_items as u32)
            .filter(|i| seen.binary_search(i).is_err())
            .collect();
    }
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let j = rng.below(num_items) as u32;
        if seen.binary_search(&j).is_err() && !out.contains(&j) {
            out.push(j);
        }
    }
    out.sort_unstable();
    out
}

/// Rank of the target (0 = first) among itself and `sampled`, from full-catalogue `scores`:
/// the number of sampled items scoring strictly higher (EVAL.md section 1's tie rule).
pub fn sampled_rank(scores: &[f32], target: u32, sampled: &[u32]) -> usize {
    let mut sub = Vec::with_capacity(sampled.len() + 1);
    sub.push(scores.get(target as usize).copied().unwrap_or(f32::NAN));
    sub.extend(
        sampled
            .iter()
            .map(|&j| scores.get(j as usize).copied().unwrap_or(f32::NAN)),
    );
    target_rank(&sub, 0, &[])
}

/// The protocol over the test `cases` (history = every earlier interaction, target = the last).
pub fn evaluate_ncf(
    model: &DynRetriever,
    cases: &[ValidationCase],
    features: Option<&UserFeatures>,
) -> Result<NcfFigures> {
    let n = model.num_items();
    let mut rng = Rng::new(SEED);
    let sampled: Vec<Vec<u32>> = cases
        .iter()
        .map(|c| {
            let mut seen = c.history.clone();
            seen.push(c.target);
            seen.sort_unstable();
            seen.dedup();
            sample_unseen(&seen, n, NEGATIVES, &mut rng)
        })
        .collect();
    let mut metrics = RankMetrics::new(&[10]);
    let chunk = (CHUNK_SCORES / n.max(1)).clamp(1, 256);
    for (cases, sampled) in cases.chunks(chunk).zip(sampled.chunks(chunk)) {
        let queries: Vec<UserQuery> = cases.iter().map(|c| c.query(features)).collect();
        let scores = model.score_all(&queries).map_err(model_err)?;
        let ranks: Vec<usize> = scores
            .par_chunks(n)
            .zip(cases.par_iter().zip(sampled.par_iter()))
            .map(|(s, (c, neg))| sampled_rank(s, c.target, neg))
            .collect();
        ranks.into_iter().for_each(|r| metrics.add(r));
    }
    Ok(NcfFigures {
        users: metrics.users,
        hr10: metrics.hit_rate(0),
        ndcg10: metrics.ndcg_at(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_seeded_unseen_and_leaves_the_target_out() {
        let seen = vec![0, 3, 7, 150];
        let draw = |seed| sample_unseen(&seen, 200, NEGATIVES, &mut Rng::new(seed));
        let a = draw(SEED);
        assert_eq!(a, draw(SEED));
        assert_ne!(a, draw(SEED + 1));
        assert_eq!(a.len(), 99);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "distinct and sorted");
        assert!(a.iter().all(|j| !seen.contains(j) && *j < 200));
        // A catalogue with fewer unseen items than asked for gives them all.
        assert_eq!(
            sample_unseen(&seen, 6, 99, &mut Rng::new(1)),
            vec![1, 2, 4, 5]
        );
    }

    #[test]
    fn rank_and_metrics_on_a_hand_case() {
        // Target 2 scores 0.5; of the sampled items 4, 5, 6 and 9, two score higher and one ties.
        let scores = [0.9, 0.8, 0.5, 0.1, 0.7, 0.6, 0.5, 0.0, 0.0, 0.2];
        assert_eq!(sampled_rank(&scores, 2, &[4, 5, 6, 9]), 2);
        let mut m = RankMetrics::new(&[10]);
        m.add(2);
        m.add(12);
        assert!((m.hit_rate(0) - 0.5).abs() < 1e-12);
        assert!((m.ndcg_at(0) - 0.5 / 4f64.log2()).abs() < 1e-12);
    }
}
