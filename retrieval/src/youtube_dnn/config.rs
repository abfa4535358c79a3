//! Training and network configuration.

use serde::{Deserialize, Serialize};

use crate::error::{Result, RetrievalError};

/// Everything that shapes the retrieval network and its training.
///
/// Missing fields in a serialised config take their default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct YoutubeDnnConfig {
    /// Dimension d of the user and item vectors.
    pub dim: usize,
    /// Width of the watched-item embeddings that are averaged into the history feature.
    pub item_embedding_dim: usize,
    /// Width of the token (genre, category, tag) embeddings.
    pub token_embedding_dim: usize,
    /// Width of each categorical user feature's embedding.
    pub user_embedding_dim: usize,
    /// Widths of the ReLU layers of the tower; empty = one linear layer (the paper's depth 0).
    pub hidden: Vec<usize>,
    /// Number of most recent watches the model sees.
    pub max_history: usize,
    /// Width of a second, order-aware history mean over the last `recent_window` watches
    /// (0 turns the feature off).
    pub recent_window: usize,
    /// Feed the mean of the watched items' token embeddings (the paper's search-token bag).
    pub use_tokens: bool,
    /// Feed the example age (days before the end of the training data; 0 at serving).
    pub use_age: bool,
    /// Feed the user features when they are given.
    pub use_user_features: bool,
    /// Training only: probability of leaving each watch out of the history mean.
    pub history_dropout: f32,
    /// Training only: dropout probability on the inputs of every tower layer.
    pub dropout: f32,
    /// Use the full softmax when the catalogue has at most this many items.
    pub full_softmax_max_items: usize,
    /// Negatives per batch for the sampled softmax (shared by the batch).
    pub num_negatives: usize,
    /// Negatives are drawn with probability proportional to (count + 1)^sampling_power.
    pub sampling_power: f64,
    /// Examples per training step.
    pub batch_size: usize,
    /// Maximum number of passes over the examples.
    pub epochs: usize,
    /// Stop after this many epochs without matching or beating the best validation HR@10
    /// (0 = never stop early). Of epochs tied on HR@10 the later one is kept.
    pub patience: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Final learning rate as a fraction of `learning_rate` (linear decay over `epochs`; 1 = constant).
    pub final_lr_fraction: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW beta1.
    pub beta1: f64,
    /// AdamW beta2.
    pub beta2: f64,
    /// AdamW epsilon.
    pub eps: f64,
    /// Standard deviation of the initial embeddings.
    pub init_std: f64,
    /// Seed of every random choice (initialisation, shuffling, negatives).
    pub seed: u64,
}

impl Default for YoutubeDnnConfig {
    fn default() -> Self {
        Self {
            dim: 128,
            item_embedding_dim: 128,
            token_embedding_dim: 16,
            user_embedding_dim: 8,
            hidden: vec![512],
            max_history: 50,
            recent_window: 5,
            use_tokens: true,
            use_age: true,
            use_user_features: true,
            history_dropout: 0.2,
            dropout: 0.5,
            full_softmax_max_items: 20_000,
            num_negatives: 2048,
            sampling_power: 0.75,
            batch_size: 512,
            epochs: 20,
            patience: 5,
            learning_rate: 4e-3,
            final_lr_fraction: 0.1,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            init_std: 0.05,
            seed: 42,
        }
    }
}

impl YoutubeDnnConfig {
    /// Rejects configurations that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(RetrievalError::InvalidConfig(msg.to_string()));
        if self.dim == 0 || self.item_embedding_dim == 0 {
            return bad("dim and item_embedding_dim must be positive");
        }
        if self.use_tokens && self.token_embedding_dim == 0 {
            return bad("token_embedding_dim must be positive when use_tokens is on");
        }
        if self.use_user_features && self.user_embedding_dim == 0 {
            return bad("user_embedding_dim must be positive when use_user_features is on");
        }
        if self.hidden.contains(&0) {
            return bad("tower layer widths must be positive");
        }
        if self.max_history == 0 {
            return bad("max_history must be positive");
        }
        let probability = |p: f32| p.is_finite() && (0.0..1.0).contains(&p);
        if !probability(self.history_dropout) || !probability(self.dropout) {
            return bad("history_dropout and dropout must be in [0, 1)");
        }
        if self.batch_size == 0 {
            return bad("batch_size must be positive");
        }
        if self.num_negatives == 0 {
            return bad("num_negatives must be positive");
        }
        if !(self.sampling_power.is_finite() && self.sampling_power >= 0.0) {
            return bad("sampling_power must be finite and >= 0");
        }
        let positive = [self.learning_rate, self.beta1, self.beta2, self.eps];
        if positive.iter().any(|x| !(x.is_finite() && *x >= 0.0)) || self.learning_rate == 0.0 {
            return bad("learning_rate, beta1, beta2 and eps must be finite and positive");
        }
        if self.beta1 >= 1.0 || self.beta2 >= 1.0 {
            return bad("beta1 and beta2 must be below 1");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay must be finite and >= 0");
        }
        if !(self.final_lr_fraction.is_finite() && self.final_lr_fraction >= 0.0) {
            return bad("final_lr_fraction must be finite and >= 0");
        }
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return bad("init_std must be finite and positive");
        }
        Ok(())
    }
}
