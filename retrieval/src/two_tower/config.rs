//! The `[retrieval.two_tower]` settings.

use serde::{Deserialize, Serialize};

use crate::error::{Result, RetrievalError};

/// Everything that shapes the two towers and their training.
///
/// Missing fields in a serialised config take their default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwoTowerConfig {
    /// Dimension d of the user and item vectors (the item tower also outputs the bias).
    pub dim: usize,
    /// Width of the item id embeddings (shared by both towers).
    pub id_embedding_dim: usize,
    /// Width of the token (genre, category, tag) embeddings (shared by both towers).
    pub token_embedding_dim: usize,
    /// Width of each categorical user feature's embedding.
    pub user_embedding_dim: usize,
    /// Widths of the item tower's ReLU layers (empty = one linear layer).
    pub item_hidden: Vec<usize>,
    /// Widths of the user tower's ReLU layers (empty = one linear layer).
    pub user_hidden: Vec<usize>,
    /// Number of most recent watches the user tower sees.
    pub max_history: usize,
    /// A second history mean over the last `recent_window` watches (0 turns it off).
    pub recent_window: usize,
    /// Feed the user features when they are given.
    pub use_user_features: bool,
    /// Training only: probability of zeroing a candidate item's id embedding, so that the
    /// feature-only path (new items) is trained (DropoutNet, Volkovs et al. 2017).
    pub id_dropout: f32,
    /// Training only: dropout probability on the inputs of every tower layer.
    pub dropout: f32,
    /// Shared negatives drawn per batch besides the in-batch ones (0 = in-batch only).
    pub num_negatives: usize,
    /// Negatives are drawn with probability proportional to (count + 1)^sampling_power.
    pub sampling_power: f64,
    /// Logits are (u . v + b) / temperature before the logQ correction.
    pub temperature: f64,
    /// Examples per training step (also the number of in-batch candidates).
    pub batch_size: usize,
    /// Maximum number of passes over the examples.
    pub epochs: usize,
    /// Stop after this many epochs without matching or beating the best validation HR@10
    /// (0 = never stop early).
    pub patience: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Final learning rate as a fraction of `learning_rate` (linear decay; 1 = constant).
    pub final_lr_fraction: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Standard deviation of the initial embeddings.
    pub init_std: f64,
    /// Seed of every random choice (initialisation, shuffling, negatives, dropout).
    pub seed: u64,
}

impl Default for TwoTowerConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            id_embedding_dim: 64,
            token_embedding_dim: 32,
            user_embedding_dim: 8,
            item_hidden: vec![256],
            user_hidden: vec![256],
            max_history: 50,
            recent_window: 5,
            use_user_features: true,
            id_dropout: 0.3,
            dropout: 0.1,
            num_negatives: 1024,
            sampling_power: 0.75,
            temperature: 1.0,
            batch_size: 512,
            epochs: 30,
            patience: 5,
            learning_rate: 2e-3,
            final_lr_fraction: 0.1,
            weight_decay: 0.0,
            init_std: 0.05,
            seed: 42,
        }
    }
}

impl TwoTowerConfig {
    /// Rejects configurations that cannot train, in one line naming the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| {
            Err(RetrievalError::InvalidConfig(format!(
                "[retrieval.two_tower] {m}"
            )))
        };
        for (key, value) in [
            ("dim", self.dim),
            ("id_embedding_dim", self.id_embedding_dim),
            ("token_embedding_dim", self.token_embedding_dim),
            ("user_embedding_dim", self.user_embedding_dim),
            ("max_history", self.max_history),
            ("batch_size", self.batch_size),
        ] {
            if value == 0 {
                return bad(format!("{key} must be positive"));
            }
        }
        for (key, widths) in [
            ("item_hidden", &self.item_hidden),
            ("user_hidden", &self.user_hidden),
        ] {
            if widths.contains(&0) {
                return bad(format!("{key} widths must be positive, not {widths:?}"));
            }
        }
        for (key, p) in [("id_dropout", self.id_dropout), ("dropout", self.dropout)] {
            if !(p.is_finite() && (0.0..1.0).contains(&p)) {
                return bad(format!("{key} must be in [0, 1), not {p}"));
            }
        }
        for (key, value) in [
            ("learning_rate", self.learning_rate),
            ("temperature", self.temperature),
            ("init_std", self.init_std),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return bad(format!("{key} must be finite and positive, not {value}"));
            }
        }
        for (key, value) in [
            ("final_lr_fraction", self.final_lr_fraction),
            ("weight_decay", self.weight_decay),
            ("sampling_power", self.sampling_power),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return bad(format!("{key} must be finite and >= 0, not {value}"));
            }
        }
        Ok(())
    }
}
