//! Deep MF's settings.

use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};

/// Deep MF's settings (`[rating.deep_mf]`). On ml-100k (random 72k / 8k / 20k split of
/// fit / validation / test ratings, user tokens gender, age bucket and occupation, item tokens
/// genres) these defaults (NCF's lambda 0.3 and learning rate 2e-3) gave validation RMSE 0.927
/// (test 0.932); lambda 0.1 / 0.5 / 1, learning rate 1e-3 / 5e-3, dropout 0.1 / 0.2, dim 16 and
/// feature_dim 4 / 16 were within 0.01 and none lower on validation. Without the features it was
/// 0.937-0.940 over three seeds (with them 0.927-0.931).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepMfConfig {
    /// Width of the user and item id embeddings.
    pub dim: usize,
    /// Width of the side-feature token embeddings.
    pub feature_dim: usize,
    /// Widths of the hidden ReLU layers.
    pub layers: Vec<usize>,
    /// Probability of zeroing each hidden activation while training (0 = none).
    pub dropout: f64,
    /// Feed the user and item side features (when the data has them).
    pub use_features: bool,
    /// lambda of the L2 penalty on the id embeddings and biases of each rating (or pair).
    pub l2: f64,
    /// Ratings (or labelled pairs) per step.
    pub batch_size: usize,
    /// Maximum passes over the ratings.
    pub epochs: usize,
    /// Stop after this many epochs without a lower validation RMSE (weighted log loss on
    /// labelled pairs; 0 = never).
    pub patience: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Standard deviation of the initial embeddings and biases.
    pub init_std: f64,
    /// Seed of the initialisation, the shuffles and the dropout masks.
    pub seed: u64,
    /// Where training computes: not a key of the sections; the registries set it from
    /// `[train] device` (see [`nn::Compute`]).
    #[serde(skip)]
    pub compute: nn::Compute,
}

impl Default for DeepMfConfig {
    fn default() -> Self {
        Self {
            dim: 32,
            feature_dim: 8,
            layers: vec![64, 32, 16],
            dropout: 0.0,
            use_features: true,
            l2: 0.3,
            batch_size: 256,
            epochs: 40,
            patience: 3,
            learning_rate: 2e-3,
            init_std: 0.05,
            seed: 42,
            compute: nn::Compute::FusedCpu,
        }
    }
}

impl DeepMfConfig {
    /// Rejects settings that cannot train; `section` (`rating.deep_mf`, `ranking.deep_mf`)
    /// names the settings in the error.
    pub fn validate(&self, section: &str) -> Result<()> {
        let bad = |m: &str| Err(RankingError::InvalidConfig(format!("[{section}] {m}")));
        if self.dim == 0 || self.feature_dim == 0 || self.batch_size == 0 {
            return bad("dim, feature_dim and batch_size must be positive");
        }
        if self.layers.is_empty() || self.layers.contains(&0) {
            return bad("layers needs at least one positive width");
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return bad("dropout must be in [0, 1)");
        }
        let ok = self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.init_std.is_finite()
            && self.init_std > 0.0
            && self.l2.is_finite()
            && self.l2 >= 0.0;
        if !ok {
            return bad("learning_rate and init_std must be positive, l2 >= 0");
        }
        Ok(())
    }
}
