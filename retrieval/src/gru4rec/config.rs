//! GRU4Rec's settings (`[retrieval.gru4rec]`).

use serde::{Deserialize, Serialize};

use crate::error::{Result, RetrievalError};

/// GRU4Rec's settings (`[retrieval.gru4rec]`). The defaults (one GRU layer of 200 units over
/// 64-dim item embeddings, projected back to 64, the last 50 watches, dropout 0.4, learning
/// rate 3e-3) were chosen on ml-100k's validation HR@10 among six runs (README,
/// "Retrieval").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gru4RecConfig {
    /// Dimension d of the item embeddings (the GRU's input) and of the user vector.
    pub dim: usize,
    /// Units of every GRU layer; the last layer's state is projected to `dim` when they
    /// differ.
    pub hidden: usize,
    /// Number of stacked GRU layers.
    pub layers: usize,
    /// Longest history the model reads (the last `max_len` watches).
    pub max_len: usize,
    /// Dropout on the item embeddings and on every layer's output.
    pub dropout: f32,
    /// Use the full softmax when the catalogue has at most this many items.
    pub full_softmax_max_items: usize,
    /// Negatives per batch for the sampled softmax (shared by the batch).
    pub num_negatives: usize,
    /// Negatives are drawn with probability proportional to (count + 1)^sampling_power.
    pub sampling_power: f64,
    /// Training windows (user sequences) per step.
    pub batch_size: usize,
    /// Maximum number of passes over the training windows.
    pub epochs: usize,
    /// Stop after this many epochs without a better validation HR@10 (0 = never).
    pub patience: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Final learning rate as a fraction of `learning_rate` (linear decay; 1 = constant).
    pub final_lr_fraction: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Standard deviation of the initial item embeddings.
    pub init_std: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for Gru4RecConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            hidden: 200,
            layers: 1,
            max_len: 50,
            dropout: 0.4,
            full_softmax_max_items: 20_000,
            num_negatives: 2048,
            sampling_power: 0.75,
            batch_size: 128,
            epochs: 100,
            patience: 8,
            learning_rate: 3e-3,
            final_lr_fraction: 1.0,
            weight_decay: 0.0,
            init_std: 0.05,
            seed: 42,
        }
    }
}

impl Gru4RecConfig {
    /// Rejects configurations that cannot train, in one line naming the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| {
            Err(RetrievalError::InvalidConfig(format!(
                "[retrieval.gru4rec] {m}"
            )))
        };
        for (key, value) in [
            ("dim", self.dim),
            ("hidden", self.hidden),
            ("layers", self.layers),
            ("max_len", self.max_len),
            ("num_negatives", self.num_negatives),
            ("batch_size", self.batch_size),
        ] {
            if value == 0 {
                return bad(format!("{key} must be positive"));
            }
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return bad(format!("dropout must be in [0, 1), not {}", self.dropout));
        }
        for (key, value) in [
            ("learning_rate", self.learning_rate),
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
