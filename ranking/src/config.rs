//! The ranker's configuration: network sizes and training settings.

use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};

/// Network and training settings. Every field has a default (`#[serde(default)]`), so a config
/// file needs to name only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RankerConfig {
    /// Width of the item embedding (shared by the candidate and the recent watches).
    pub item_dim: usize,
    /// Width of the token (category, tag) embedding.
    pub token_dim: usize,
    /// Width of each user categorical field's embedding.
    pub user_dim: usize,
    /// Widths of the ReLU layers, input side first.
    pub hidden: Vec<usize>,
    /// Quantile intervals fitted per continuous feature.
    pub n_quantiles: usize,
    /// Maximum passes over the training examples.
    pub epochs: usize,
    /// Examples per gradient step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Stop after this many epochs without a better validation loss (0 = never stop early).
    pub patience: usize,
    /// Seed of the initial weights and of the shuffles.
    pub seed: u64,
    /// Train without watch-time weights (every impression weighs 1): the ablation of Covington
    /// et al. 2016 section 4.2. The score is then e^logit = the odds of a watch.
    pub unit_weights: bool,
}

impl Default for RankerConfig {
    fn default() -> Self {
        Self {
            item_dim: 32,
            token_dim: 16,
            user_dim: 4,
            hidden: vec![256, 128, 64],
            n_quantiles: 256,
            epochs: 20,
            batch_size: 512,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            patience: 2,
            seed: 42,
            unit_weights: false,
        }
    }
}

impl RankerConfig {
    /// The embedding widths of the input x_0.
    pub(crate) fn dims(&self) -> crate::model::InputDims {
        crate::model::InputDims {
            item: self.item_dim,
            token: self.token_dim,
            user: self.user_dim,
        }
    }

    /// The training settings of the shared loop.
    pub(crate) fn fit_settings(&self) -> crate::train::FitSettings {
        crate::train::FitSettings {
            dims: self.dims(),
            n_quantiles: self.n_quantiles,
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            patience: self.patience,
            seed: self.seed,
            unit_weights: self.unit_weights,
        }
    }

    /// Rejects settings that cannot train: an empty or zero-width tower, zero batch size, a
    /// learning rate that is not a positive finite number.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: &str| Err(RankingError::InvalidConfig(reason.to_string()));
        if self.hidden.contains(&0) {
            return bad("hidden layer widths must be positive");
        }
        if self.batch_size == 0 {
            return bad("batch_size must be positive");
        }
        if self.n_quantiles == 0 {
            return bad("n_quantiles must be positive");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate must be a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay must be a non-negative number");
        }
        Ok(())
    }
}
