//! NCF on implicit feedback (the paper's log loss over observed pairs and sampled negatives)
//! and on labelled impressions (the ranking stage's watch-time-weighted log loss), and the
//! full-catalogue scoring both are measured by.

use nn::data::ValidationCase;
use nn::rating::{LabelledPairs, RatingModel};
use nn::trainer::{EpochReport, TrainReport};

use super::{train, Ncf, NcfConfig, NcfKind};
use crate::error::{RankingError, Result};

/// Implicit feedback for NCF's log loss.
#[derive(Debug, Clone, Copy)]
pub struct Implicit<'a> {
    /// Items each training user interacted with, sorted and unique (user index = position).
    pub seen: &'a [Vec<u32>],
    /// Catalogue size.
    pub num_items: usize,
    /// Held-out next interactions of training users, for choosing the epoch (HR@10).
    pub validation: &'a [ValidationCase],
}

impl Implicit<'_> {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(RankingError::InvalidConfig(m));
        for (u, items) in self.seen.iter().enumerate() {
            if items.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("user {u}: seen items are not sorted and unique"));
            }
            if items.last().is_some_and(|&i| i as usize >= self.num_items) {
                return bad(format!("user {u}: an item is outside the catalogue"));
            }
            if items.len() >= self.num_items {
                return bad(format!(
                    "user {u} has seen every item: no negatives to sample"
                ));
            }
        }
        let users = self.seen.len();
        if let Some(c) = self
            .validation
            .iter()
            .find(|c| c.user as usize >= users || c.target as usize >= self.num_items)
        {
            return bad(format!(
                "validation case of user {} is outside the training users or items",
                c.user
            ));
        }
        if self.seen.iter().all(Vec::is_empty) {
            return Err(RankingError::NoTrainingData);
        }
        Ok(())
    }
}

/// Pairs scored at once when scoring whole catalogues.
const SCORE_PAIRS: usize = 1 << 16;

impl Ncf {
    /// An untrained model for implicit feedback (the starting point of
    /// [`Ncf::fit_implicit`]; a caller may warm-start its [`Ncf::varmap`] first).
    pub fn fresh_implicit(
        kind: NcfKind,
        config: &NcfConfig,
        num_users: usize,
        num_items: usize,
    ) -> Result<Self> {
        config.validate(kind.name())?;
        Ok(Self::new(kind, config, num_users, num_items, 0.0)?.with_objective(true))
    }

    /// Trains `kind` on implicit feedback with the log loss and sampled negatives (see the
    /// module doc); NeuMF with `pretrain` trains GMF and MLP the same way first.
    pub fn train_implicit(
        kind: NcfKind,
        config: &NcfConfig,
        data: &Implicit,
        mut progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        let (users, items) = (data.seen.len(), data.num_items);
        let model = if kind == NcfKind::NeuMf && config.pretrain {
            let fresh = |k| Self::fresh_implicit(k, config, users, items);
            let (gmf, _) = fresh(NcfKind::Gmf)?.fit_implicit(data, &mut progress)?;
            let (mlp, _) = fresh(NcfKind::Mlp)?.fit_implicit(data, &mut progress)?;
            Self::fuse(&gmf, &mlp, config.alpha)?
        } else {
            Self::fresh_implicit(kind, config, users, items)?
        };
        model.fit_implicit(data, progress)
    }

    /// Trains `kind` on labelled impressions with the watch-time-weighted logistic loss
    /// (Covington et al. 2016, section 4.2), the loss of recpipe's rankers: the output is a
    /// logit whose odds estimate the expected watch time; the fixed offset is the prior
    /// log-odds of the weighted labels, and the epoch is chosen by the weighted log loss on
    /// `valid` (none when it is empty). NeuMF with `pretrain` trains GMF and MLP the same way
    /// first. Learning rate and lambda default as on implicit feedback.
    pub fn train_labelled(
        kind: NcfKind,
        config: &NcfConfig,
        num_users: usize,
        num_items: usize,
        train: &LabelledPairs,
        valid: &LabelledPairs,
        mut progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        config.validate(kind.name())?;
        train.validate(num_users, num_items)?;
        valid.validate(num_users, num_items)?;
        if train.is_empty() {
            return Err(RankingError::NoTrainingData);
        }
        let prior = train.prior_log_odds();
        let fresh = |k| -> Result<Self> {
            Ok(Self::new(k, config, num_users, num_items, prior)?.with_objective(true))
        };
        let data = train::Data::Labelled(train, valid);
        let model = if kind == NcfKind::NeuMf && config.pretrain {
            let (gmf, _) = train::fit(fresh(NcfKind::Gmf)?, data, &mut progress)?;
            let (mlp, _) = train::fit(fresh(NcfKind::Mlp)?, data, &mut progress)?;
            Self::fuse(&gmf, &mlp, config.alpha)?
        } else {
            fresh(kind)?
        };
        train::fit(model, data, progress)
    }

    /// The fixed offset added to every output: mu on ratings, the prior log-odds on labelled
    /// impressions, 0 on implicit feedback.
    pub fn offset(&self) -> f32 {
        self.mean
    }

    /// Trains this model further on implicit feedback from its current weights.
    pub fn fit_implicit(
        self,
        data: &Implicit,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        data.validate()?;
        if data.seen.len() != self.users.rows() || data.num_items != self.items.rows() {
            return Err(RankingError::InvalidConfig(
                "implicit data and model differ in users or items".into(),
            ));
        }
        train::fit(
            self.with_objective(true),
            train::Data::Implicit(data),
            progress,
        )
    }

    /// Logits (implicit feedback) or ratings of every item for each of `users`
    /// (`users.len() x items`, row-major).
    pub fn score_catalogue(&self, users: &[u32]) -> Result<Vec<f32>> {
        let n = self.items.rows();
        let per_chunk = (SCORE_PAIRS / n.max(1)).max(1);
        let mut out = Vec::with_capacity(users.len() * n);
        let all: Vec<u32> = (0..n as u32).collect();
        for chunk in users.chunks(per_chunk) {
            let us: Vec<u32> = chunk
                .iter()
                .flat_map(|&u| std::iter::repeat_n(u, n))
                .collect();
            let is: Vec<u32> = chunk.iter().flat_map(|_| all.iter().copied()).collect();
            out.extend(self.predict(&us, &is)?);
        }
        Ok(out)
    }

    /// Full-catalogue HR@10 over held-out cases (EVAL.md section 1's rank rule).
    pub fn hit_rate_at_10(&self, cases: &[ValidationCase]) -> Result<Option<f64>> {
        if cases.is_empty() {
            return Ok(None);
        }
        let n = self.items.rows();
        let mut metrics = nn::RankMetrics::new(&[10]);
        let per_chunk = (SCORE_PAIRS / n.max(1)).max(1);
        for chunk in cases.chunks(per_chunk) {
            let users: Vec<u32> = chunk.iter().map(|c| c.user).collect();
            let scores = self.score_catalogue(&users)?;
            for (c, s) in chunk.iter().zip(scores.chunks(n)) {
                metrics.add(nn::target_rank(s, c.target, &c.exclude));
            }
        }
        Ok(Some(metrics.hit_rate(0)))
    }
}
