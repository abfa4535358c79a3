//! SASRec's settings (`[retrieval.sasrec]`).

use serde::{Deserialize, Serialize};

use crate::error::{Result, RetrievalError};

/// SASRec's settings (`[retrieval.sasrec]`). The defaults are the paper's architecture (d = 64,
/// two blocks, one head, n = 50) with dropout 0.5 (the paper's choice for sparse data) and
/// learning rate 2e-3, chosen on ml-100k's validation HR@10.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SasRecConfig {
    /// Hidden dimension d (item embeddings, attention, user vector).
    pub dim: usize,
    /// Number of self-attention blocks.
    pub blocks: usize,
    /// Attention heads per block (`dim` must be a multiple of it).
    pub heads: usize,
    /// Longest history the model reads (the last `max_len` watches).
    pub max_len: usize,
    /// Dropout on the embeddings, the attention output and the feed-forward network.
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
    /// Standard deviation of the initial item and position embeddings.
    pub init_std: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for SasRecConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            blocks: 2,
            heads: 1,
            max_len: 50,
            dropout: 0.5,
            full_softmax_max_items: 20_000,
            num_negatives: 2048,
            sampling_power: 0.75,
            batch_size: 128,
            epochs: 100,
            patience: 8,
            learning_rate: 2e-3,
            final_lr_fraction: 1.0,
            weight_decay: 0.0,
            init_std: 0.05,
            seed: 42,
        }
    }
}

impl SasRecConfig {
    /// Rejects configurations that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| {
            Err(RetrievalError::InvalidConfig(format!(
                "[retrieval.sasrec] {m}"
            )))
        };
        if self.dim == 0
            || self.heads == 0
            || self.max_len == 0
            || self.batch_size == 0
            || self.num_negatives == 0
        {
            return bad("dim, heads, max_len, batch_size and num_negatives must be positive");
        }
        if !self.dim.is_multiple_of(self.heads) {
            return bad(&format!(
                "dim ({}) must be a multiple of heads ({})",
                self.dim, self.heads
            ));
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return bad("dropout must be in [0, 1)");
        }
        let finite_pos = |x: f64| x.is_finite() && x > 0.0;
        if !finite_pos(self.learning_rate) || !finite_pos(self.init_std) {
            return bad("learning_rate and init_std must be finite and positive");
        }
        let finite_nonneg = |x: f64| x.is_finite() && x >= 0.0;
        if ![
            self.weight_decay,
            self.final_lr_fraction,
            self.sampling_power,
        ]
        .into_iter()
        .all(finite_nonneg)
        {
            return bad(
                "weight_decay, final_lr_fraction and sampling_power must be finite and >= 0",
            );
        }
        Ok(())
    }
}
