//! NCF's model kinds and settings.

use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};

/// Registry name of biased MF (GMF with h fixed to ones).
pub const KIND_MF: &str = "mf";
/// Registry name of GMF.
pub const KIND_GMF: &str = "gmf";
/// Registry name of the MLP.
pub const KIND_MLP: &str = "mlp";
/// Registry name of NeuMF.
pub const KIND_NEUMF: &str = "neumf";

/// Which NCF model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcfKind {
    /// Biased MF: GMF whose output weights stay at ones.
    Mf,
    /// Generalised MF.
    Gmf,
    /// The MLP over concatenated embeddings.
    Mlp,
    /// GMF and MLP fused.
    NeuMf,
}

impl NcfKind {
    /// The registry name.
    pub fn name(self) -> &'static str {
        match self {
            NcfKind::Mf => KIND_MF,
            NcfKind::Gmf => KIND_GMF,
            NcfKind::Mlp => KIND_MLP,
            NcfKind::NeuMf => KIND_NEUMF,
        }
    }

    pub(super) fn has_gmf(self) -> bool {
        self != NcfKind::Mlp
    }

    pub(super) fn has_mlp(self) -> bool {
        matches!(self, NcfKind::Mlp | NcfKind::NeuMf)
    }

    /// The kind registered as `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [NcfKind::Mf, NcfKind::Gmf, NcfKind::Mlp, NcfKind::NeuMf]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// NCF's settings (`[rating.mf]`, `[rating.gmf]`, `[rating.mlp]`, `[rating.neumf]` on ratings;
/// `[retrieval.gmf]`, `[retrieval.mlp]`, `[retrieval.neumf]` on implicit feedback;
/// `[ranking.neumf]` on labelled impressions; NeuMF's
/// pre-training runs GMF and MLP with NeuMF's own settings). On ratings, lambda 0.3 and
/// learning rate 2e-3 gave the lowest mean validation RMSE of GMF, MLP and NeuMF on ml-100k
/// among lambda 0.1 / 0.3 / 1 and learning rates 5e-3 / 2e-3 (GMF 0.9158, MLP 0.9299, NeuMF
/// 0.9147); MF, whose h stays at ones, needs less penalty: lambda 0.1 and 5e-3 (validation
/// 0.9062, against 0.9448 with GMF's values). On implicit feedback and labelled impressions
/// (`[retrieval.*]`, `[ranking.neumf]`) the paper's settings are the defaults: no penalty,
/// learning rate 1e-3, 4 negatives, batch 256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NcfConfig {
    /// GMF's predictive factors (embedding width).
    pub dim: usize,
    /// The MLP tower's widths; each MLP embedding is half the first.
    pub mlp_layers: Vec<usize>,
    /// NeuMF: the weight of GMF's output layer in the pre-trained fusion.
    pub alpha: f64,
    /// NeuMF: start from GMF and MLP trained first.
    pub pretrain: bool,
    /// lambda of the L2 penalty on the embeddings and biases of each example; unset: 0.3 on
    /// ratings (MF: 0.1), 0 on implicit feedback.
    pub l2: Option<f64>,
    /// Implicit feedback: unobserved items sampled per observed pair.
    pub negatives: usize,
    /// Ratings per step.
    pub batch_size: usize,
    /// Maximum passes over the ratings.
    pub epochs: usize,
    /// Stop after this many epochs without a lower validation RMSE (0 = never).
    pub patience: usize,
    /// Adam learning rate; unset: 2e-3 on ratings (MF: 5e-3), 1e-3 on implicit feedback.
    pub learning_rate: Option<f64>,
    /// Standard deviation of the initial embeddings and biases.
    pub init_std: f64,
    /// Seed of the initialisation and the shuffles.
    pub seed: u64,
    /// Where training computes: not a key of the sections; the registries set it from
    /// `[train] device` (see [`nn::Compute`]).
    #[serde(skip)]
    pub compute: nn::Compute,
}

impl Default for NcfConfig {
    fn default() -> Self {
        Self {
            dim: 32,
            mlp_layers: vec![64, 32, 16, 8],
            alpha: 0.5,
            pretrain: true,
            l2: None,
            negatives: 4,
            batch_size: 256,
            epochs: 40,
            patience: 3,
            learning_rate: None,
            init_std: 0.05,
            seed: 42,
            compute: nn::Compute::FusedCpu,
        }
    }
}

impl NcfConfig {
    /// Rejects settings that cannot train; `section` (`rating.gmf`, `ranking.neumf`, ...) names
    /// the settings in the error.
    pub fn validate(&self, section: &str) -> Result<()> {
        let bad = |m: &str| Err(RankingError::InvalidConfig(format!("[{section}] {m}")));
        if self.dim == 0 || self.batch_size == 0 {
            return bad("dim and batch_size must be positive");
        }
        if self.mlp_layers.len() < 2
            || self.mlp_layers.contains(&0)
            || !self.mlp_layers[0].is_multiple_of(2)
        {
            return bad("mlp_layers needs at least two positive widths, the first even");
        }
        let lr = self.learning_rate.unwrap_or(1.0);
        let ok = lr.is_finite()
            && lr > 0.0
            && self.init_std.is_finite()
            && self.init_std > 0.0
            && self.l2.is_none_or(|l2| l2.is_finite() && l2 >= 0.0)
            && (0.0..=1.0).contains(&self.alpha);
        if !ok {
            return bad("learning_rate and init_std must be positive, l2 >= 0, alpha in [0, 1]");
        }
        Ok(())
    }

    /// lambda of `kind` on ratings (`implicit` false) or implicit feedback.
    pub(super) fn l2_for(&self, kind: NcfKind, implicit: bool) -> f64 {
        self.l2.unwrap_or(match (implicit, kind) {
            (true, _) => 0.0,
            (false, NcfKind::Mf) => 0.1,
            (false, _) => 0.3,
        })
    }

    /// The learning rate of `kind` on ratings (`implicit` false) or implicit feedback.
    pub(super) fn learning_rate_for(&self, kind: NcfKind, implicit: bool) -> f64 {
        self.learning_rate.unwrap_or(match (implicit, kind) {
            (true, _) => 1e-3,
            (false, NcfKind::Mf) => 5e-3,
            (false, _) => 2e-3,
        })
    }

    /// Width of each MLP embedding.
    pub(super) fn mlp_dim(&self) -> usize {
        self.mlp_layers[0] / 2
    }
}
