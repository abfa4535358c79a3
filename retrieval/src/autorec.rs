//! U-AutoRec on implicit data, after Sedhain, Menon, Sanner and Xie, "AutoRec: Autoencoders
//! Meet Collaborative Filtering" (WWW 2015): the reconstruction of eq. 1,
//! h(r; theta) = f(W g(V r + mu) + b), with g = sigmoid and f = identity, r = the user's binary
//! watch row. On implicit data every entry is known (watched = 1, not watched = 0), so the
//! squared error of eq. 2 runs over the whole row rather than over observed ratings only (the
//! rating model `ranking::autorec` keeps eq. 2's mask), plus weight decay.
//!
//! u = g(V r + mu), the hidden layer; v_j and b_j = row j of W and b_j: the output is linear,
//! so the index's top-K by u . v_j + b_j is the model's. Training and serving are in
//! [`crate::autoencoder`].

use serde::{Deserialize, Serialize};

use crate::autoencoder::{
    Activation, AutoencoderSettings, InputScale, Objective, Shape, Spec, Training,
};

/// Registry name.
pub const KIND: &str = "autorec_u";

/// U-AutoRec's settings (`[retrieval.autorec_u]`): the paper's 500 sigmoid hidden units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoRecConfig {
    /// Width of the hidden layer (and of the user vector).
    pub hidden: usize,
    /// Input dropout probability (0: the paper's plain autoencoder).
    pub input_dropout: f64,
    /// Users per step.
    pub batch_size: usize,
    /// Maximum passes over the users.
    pub epochs: usize,
    /// Stop after this many epochs without a better validation HR@10 (0 = never).
    pub patience: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for AutoRecConfig {
    fn default() -> Self {
        Self {
            hidden: 500,
            input_dropout: 0.0,
            batch_size: 64,
            epochs: 100,
            patience: 10,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            seed: 42,
        }
    }
}

impl AutoencoderSettings for AutoRecConfig {
    fn spec(&self) -> Spec {
        Spec {
            kind: KIND,
            shape: Shape {
                encoder: vec![self.hidden],
                latent: None,
                decoder: Vec::new(),
                activation: Activation::Sigmoid,
                user_node: false,
                input: InputScale::Binary,
            },
            training: Training {
                objective: Objective::SquaredError,
                input_dropout: self.input_dropout,
                batch_size: self.batch_size,
                epochs: self.epochs,
                patience: self.patience,
                learning_rate: self.learning_rate,
                weight_decay: self.weight_decay,
                seed: self.seed,
            },
        }
    }
}
