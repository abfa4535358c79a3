//! EVAL.md section 5, the NCF protocol (He et al. 2017, section 4.1): each user's leave-last-out
//! test item is ranked among 99 items the user never interacted with, drawn uniformly with a
//! fixed seed; HR@10 and NDCG@10. Only for setting a figure beside work that used it: section 1
//! (the full catalogue) is the project's own measure.

use nn::rng::Rng;
use nn::{target_rank, RankMetrics, RatingModel, UserFeatures, UserQuery, ValidationCase};
use ranking::ncf::Ncf;
use rayon::prelude::*;
use retrieval::DynRetriever;
use serde::Serialize;

use std::time::Instant;

use nn::{TrainingSet, WatchHistories};
use retrieval::RetrievalSettings;

use crate::dataset::Dataset;
use crate::error::Result;
use crate::examples::ExamplesConfig;
use crate::stages::retrieval::{model_err, retrieval_inputs, RetrievalMetrics, CUTOFFS};

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

/// Full-catalogue scores (`cases.len() x num_items`, row-major) of the cases' users.
pub type CatalogueScorer<'a> = dyn Fn(&[ValidationCase]) -> Result<Vec<f32>> + Sync + 'a;

/// A retriever's exact scores as a [`CatalogueScorer`].
pub fn retriever_scores<'a>(
    model: &'a DynRetriever,
    features: Option<&'a UserFeatures>,
) -> impl Fn(&[ValidationCase]) -> Result<Vec<f32>> + Sync + 'a {
    move |cases| {
        let queries: Vec<UserQuery> = cases.iter().map(|c| c.query(features)).collect();
        model.score_all(&queries).map_err(model_err)
    }
}

/// A pair model's scores (NCF's MLP or NeuMF, or GMF as pairs) as a [`CatalogueScorer`]:
/// every item scored for the case's training user.
pub fn pair_scores(model: &Ncf) -> impl Fn(&[ValidationCase]) -> Result<Vec<f32>> + Sync + '_ {
    move |cases| {
        let users: Vec<u32> = cases.iter().map(|c| c.user).collect();
        model
            .score_catalogue(&users)
            .map_err(|e| crate::error::Error::Other(format!("scoring {}: {e}", model.kind())))
    }
}

/// Most popular as a [`CatalogueScorer`]: every user gets each item's count of training users
/// who watched it.
pub fn popularity_scores(
    histories: &WatchHistories,
    num_items: usize,
) -> impl Fn(&[ValidationCase]) -> Result<Vec<f32>> + Sync {
    let mut counts = vec![0f32; num_items];
    for u in 0..histories.num_users() {
        let mut items = histories.user_items(u).to_vec();
        items.sort_unstable();
        items.dedup();
        items
            .into_iter()
            .filter(|&j| (j as usize) < num_items)
            .for_each(|j| counts[j as usize] += 1.0);
    }
    move |cases| Ok(cases.iter().flat_map(|_| counts.iter().copied()).collect())
}

/// EVAL.md section 1 (the full catalogue, history excluded) from any scorer.
pub fn full_catalogue(
    scores: &CatalogueScorer,
    num_items: usize,
    cases: &[ValidationCase],
    cutoffs: &[usize],
) -> Result<RankMetrics> {
    let mut metrics = RankMetrics::new(cutoffs);
    let chunk = (CHUNK_SCORES / num_items.max(1)).clamp(1, 256);
    for cases in cases.chunks(chunk) {
        let s = scores(cases)?;
        let ranks: Vec<usize> = s
            .par_chunks(num_items)
            .zip(cases.par_iter())
            .map(|(s, c)| target_rank(s, c.target, &c.exclude))
            .collect();
        ranks.into_iter().for_each(|r| metrics.add(r));
    }
    Ok(metrics)
}

/// The protocol over the test `cases` (history = every earlier interaction, target = the last).
pub fn evaluate_ncf(
    scores: &CatalogueScorer,
    num_items: usize,
    cases: &[ValidationCase],
) -> Result<NcfFigures> {
    let n = num_items;
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
        let scores = scores(cases)?;
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

/// What `evaluate --model mlp|neumf` measured: EVAL.md sections 1 and 5 for a pair model.
#[derive(Debug, Clone, Serialize)]
pub struct PairModelFigures {
    /// Registry name.
    pub model: String,
    /// Full-catalogue metrics on the validation target.
    pub validation: RetrievalMetrics,
    /// Full-catalogue metrics on the test target.
    pub test: RetrievalMetrics,
    /// Epoch kept and epochs run (of the final model; NeuMF's pre-training runs first).
    pub best_epoch: usize,
    /// See `best_epoch`.
    pub epochs: usize,
    /// Training seconds, pre-training included.
    pub train_seconds: f64,
    /// The NCF protocol on the test target, when asked for.
    pub ncf_protocol: Option<NcfFigures>,
    /// Most popular under the same protocol, when asked for.
    pub ncf_protocol_most_popular: Option<NcfFigures>,
}

/// Trains NCF's pair model `kind` (`[retrieval.<kind>]`) on the retrieval inputs of `data` and
/// measures it as a retriever would be (EVAL.md section 1) and, with `protocol`, section 5.
pub fn evaluate_pair_model(
    data: &Dataset,
    settings: &RetrievalSettings,
    examples: &ExamplesConfig,
    kind: &str,
    protocol: bool,
) -> Result<PairModelFigures> {
    let inputs = retrieval_inputs(data, examples)?;
    let set = TrainingSet {
        catalog: &inputs.catalog,
        histories: &inputs.histories,
        examples: &inputs.examples,
        user_features: inputs.features.as_ref(),
        validation: &inputs.validation,
    };
    let t = Instant::now();
    let (model, report) = settings
        .train_pair_model(kind, &set, |_| {})
        .map_err(model_err)?;
    let train_seconds = t.elapsed().as_secs_f64();
    let n = inputs.catalog.num_items;
    let scores = pair_scores(&model);
    let metrics = |cases: &[ValidationCase]| -> Result<RetrievalMetrics> {
        Ok(RetrievalMetrics::from_rank_metrics(&full_catalogue(
            &scores, n, cases, &CUTOFFS,
        )?))
    };
    Ok(PairModelFigures {
        model: kind.to_string(),
        validation: metrics(&inputs.validation)?,
        test: metrics(&inputs.test)?,
        best_epoch: report.best_epoch,
        epochs: report.epochs.len(),
        train_seconds,
        ncf_protocol: match protocol {
            true => Some(evaluate_ncf(&scores, n, &inputs.test)?),
            false => None,
        },
        ncf_protocol_most_popular: match protocol {
            true => Some(evaluate_ncf(
                &popularity_scores(&inputs.histories, n),
                n,
                &inputs.test,
            )?),
            false => None,
        },
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
    fn popularity_counts_each_user_once() {
        let histories =
            WatchHistories::from_sequences(&[vec![(0, 1), (2, 2), (2, 3)], vec![(2, 1), (1, 2)]]);
        let case = ValidationCase {
            user: 0,
            history: vec![],
            target: 1,
            exclude: vec![],
        };
        let s = popularity_scores(&histories, 4)(&[case.clone(), case]).unwrap();
        assert_eq!(s, vec![1.0, 1.0, 2.0, 0.0, 1.0, 1.0, 2.0, 0.0]);
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
