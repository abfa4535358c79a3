//! Mult-DAE, the denoising autoencoder of Liang, Krishnan, Hoffman and Jebara, "Variational
//! Autoencoders for Collaborative Filtering" (WWW 2018), section 2.3: the user's row x_u,
//! normalised to unit length and dropped out (p = 0.5), through one tanh layer
//! (shape [I -> 200 -> I], section 4.3) to logits over the catalogue, trained on the
//! multinomial log-likelihood of eq. 2, `-sum_j x_uj log softmax(f(x_u))_j`, with no latent
//! distribution (eq. 8).
//!
//! u = the hidden layer (no dropout at serving), v_j and b_j = the output layer's row and bias;
//! softmax is monotone, so the index's top-K is the model's. Training and serving are in
//! [`crate::autoencoder`].

use serde::{Deserialize, Serialize};

use crate::autoencoder::{
    Activation, AutoencoderSettings, InputScale, Objective, Shape, Spec, Training,
};

/// Registry name.
pub const KIND: &str = "mult_dae";

/// Mult-DAE's settings (`[retrieval.mult_dae]`), the paper's defaults where it gives them;
/// batches of 100 users as for Mult-VAE (the paper's 500 leave ml-latest-small's 610 users two
/// steps an epoch; ml-100k validation HR@10 0.1782 against 0.1633).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MultDaeConfig {
    /// Width of the hidden layer (and of the user vector).
    pub hidden: usize,
    /// Input dropout probability.
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

impl Default for MultDaeConfig {
    fn default() -> Self {
        Self {
            hidden: 200,
            input_dropout: 0.5,
            batch_size: 100,
            epochs: 200,
            patience: 30,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            seed: 42,
        }
    }
}

impl AutoencoderSettings for MultDaeConfig {
    fn spec(&self) -> Spec {
        Spec {
            kind: KIND,
            shape: Shape {
                encoder: vec![self.hidden],
                latent: None,
                decoder: Vec::new(),
                activation: Activation::Tanh,
                user_node: false,
                input: InputScale::UnitNorm,
            },
            training: Training {
                objective: Objective::Multinomial {
                    beta_cap: 0.0,
                    anneal_steps: 1,
                },
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
