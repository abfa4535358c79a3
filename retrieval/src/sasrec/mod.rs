//! SASRec, the self-attentive sequential recommender of Kang and McAuley, "Self-Attentive
//! Sequential Recommendation" (ICDM 2018), as a candidate generator.
//!
//! - Input (section III-A, eq. 2): the last `max_len` watches, left-padded; each real slot
//!   is `E_i * sqrt(d) + P_k` (the item embedding scaled by sqrt(d), as the authors' code
//!   does, plus a learned position embedding). Positions count from the first real item of
//!   the window, and padding slots are zeroed and masked out of every attention, so the
//!   amount of padding never changes an output.
//! - `blocks` self-attention blocks (eq. 3-6) with `heads` heads, each
//!   `x + Dropout(SA(LN(x)))` then `x + Dropout(FFN(LN(x)))` (the pre-LN form of the paper's
//!   `g(x) = x + Dropout(g(LayerNorm(x)))`), with a final layer norm as in the authors' code.
//!   SA is eq. 3-4 (no output projection), causal: slot t sees only slots <= t; FFN is eq. 5
//!   (ReLU, two linear layers).
//! - Prediction (eq. 7, with the shared item embedding of section III-D):
//!   `r_{i,t} = F_t . E_i + b_i`, with a learned item bias b_i. The user vector is the last
//!   slot's output F_t and the item table is `[E_i | b_i]`, so the index serves the score
//!   exactly. The model has no per-user parameter: any history (a new user's too) gets a
//!   vector.
//! - Training: per user, the training sequence cut into windows of at most `max_len` inputs
//!   (the last window ends at the last training target, earlier windows cover the earlier
//!   targets); every slot whose next item is a training example predicts it, with the
//!   catalogue softmax (full softmax on small catalogues, sampled softmax with logQ
//!   correction above) instead of the paper's one-negative binary loss.
//!
//! The windows, serving, saving and training are the shared sequence model's
//! ([`crate::sequence`]); this module holds the settings and the network.

mod config;
pub mod network;

use candle_nn::VarBuilder;

pub use config::SasRecConfig;
use network::Network;

use crate::error::Result;
use crate::sequence::{SequenceConfig, SequenceRetriever, SequenceTraining};

/// Registry name.
pub const KIND: &str = "sasrec";

/// A trained SASRec model (see the module doc).
pub type SasRec = SequenceRetriever<SasRecConfig>;

impl SequenceConfig for SasRecConfig {
    const KIND: &'static str = KIND;
    type Network = Network;

    fn validate(&self) -> Result<()> {
        SasRecConfig::validate(self)
    }

    fn training(&self) -> SequenceTraining {
        SequenceTraining {
            dim: self.dim,
            max_len: self.max_len,
            dropout: self.dropout,
            full_softmax_max_items: self.full_softmax_max_items,
            num_negatives: self.num_negatives,
            sampling_power: self.sampling_power,
            batch_size: self.batch_size,
            epochs: self.epochs,
            patience: self.patience,
            learning_rate: self.learning_rate,
            final_lr_fraction: self.final_lr_fraction,
            weight_decay: self.weight_decay,
            seed: self.seed,
        }
    }

    fn network(&self, vb: VarBuilder, num_items: usize) -> Result<Network> {
        Network::new(vb, self, num_items)
    }
}

#[cfg(test)]
mod tests;
