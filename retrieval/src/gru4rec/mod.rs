//! GRU4Rec, the recurrent recommender of Hidasi, Karatzoglou, Baltrunas and Tikk,
//! "Session-based Recommendations with Recurrent Neural Networks" (ICLR 2016), as a
//! candidate generator.
//!
//! - Input: the last `max_len` watches, left-padded; each real step reads the item's
//!   embedding E_i (the paper's embedding-layer variant of the one-hot input).
//! - `layers` stacked GRU layers of `hidden` units (Cho et al. 2014, "Learning Phrase
//!   Representations using RNN Encoder-Decoder for Statistical Machine Translation", in the
//!   form the paper writes it):
//!   `z_t = sigmoid(W_z x_t + U_z h_{t-1})`, `r_t = sigmoid(W_r x_t + U_r h_{t-1})`,
//!   `c_t = tanh(W x_t + U (r_t * h_{t-1}))`, `h_t = (1 - z_t) h_{t-1} + z_t c_t`, with biases
//!   and `h_0 = 0` ([`network::GruLayer`]). A padding step leaves the state unchanged
//!   (`h_t = h_{t-1}` where the mask is 0), so with left padding the state before the first
//!   real item is exactly the initial one and padding never changes an output.
//! - Output: the last layer's state after each step, projected to `dim` by a linear layer when
//!   `hidden != dim`; dropout on the embeddings and on every layer's output while training.
//!   The user vector is the output after the last real item. The score of item i is
//!   `F_t . E_i + b_i`: the output layer is the item embedding itself (tied, the
//!   "constrained embedding" of the authors' later code) plus a learned bias, and the item
//!   table `[E_i | b_i]` is what the index serves, so serving is exact. No per-user
//!   parameter: any history (a new user's too) gets a vector.
//! - Training, a choice the issue leaves open: padded sequences instead of the paper's
//!   session-parallel mini-batches, and the shared catalogue softmax instead of its
//!   BPR / TOP1 ranking losses. Each user's training sequence is cut into windows of at most
//!   `max_len` inputs and every slot whose next item is a training example predicts it with
//!   the full softmax on catalogues up to `full_softmax_max_items` items, or the sampled
//!   softmax with shared, popularity-drawn negatives and the logQ correction above
//!   ([`nn::softmax::CatalogueSoftmax`]); AdamW; early stopping on validation HR@10.
//!
//! The windows, serving, saving, warm start and training loop are the shared sequence
//! model's ([`crate::sequence`], as for [`crate::sasrec`]); this module holds the settings and
//! the network.

mod config;
pub mod network;

use candle_nn::VarBuilder;

pub use config::Gru4RecConfig;
use network::Network;

use crate::error::Result;
use crate::sequence::{SequenceConfig, SequenceRetriever, SequenceTraining};

/// Registry name.
pub const KIND: &str = "gru4rec";

/// A trained GRU4Rec model (see the module doc).
pub type Gru4Rec = SequenceRetriever<Gru4RecConfig>;

impl SequenceConfig for Gru4RecConfig {
    const KIND: &'static str = KIND;
    type Network = Network;

    fn validate(&self) -> Result<()> {
        Gru4RecConfig::validate(self)
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
