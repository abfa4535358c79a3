//! CDAE, the collaborative denoising autoencoder of Wu, DuBois, Zheng and Ester,
//! "Collaborative Denoising Auto-Encoders for Top-N Recommender Systems" (WSDM 2016): the
//! user's binary row corrupted by dropout (each watched item dropped with probability q, the
//! rest scaled by 1 / (1 - q), eq. 3), plus a learned per-user input node V_u, through one
//! sigmoid hidden layer z_u = sigmoid(W^T x~_u + V_u + b) (eq. 4) to a sigmoid output over
//! items y^_uj = sigmoid(W'_j . z_u + b'_j) (eq. 5), trained with the logistic loss on the
//! watched items and `negatives` sampled unwatched items per watched item (section 4.3's
//! negative sampling) plus weight decay.
//!
//! u = z_u (V_u included for a training user; a user the model never saw uses the history part
//! only), v_j and b_j = W'_j and b'_j; sigmoid is monotone, so the index's top-K is the model's.
//! Training and serving are in [`crate::autoencoder`].

use serde::{Deserialize, Serialize};

use crate::autoencoder::{
    Activation, AutoencoderSettings, InputScale, Objective, Shape, Spec, Training,
};

/// Registry name.
pub const KIND: &str = "cdae";

/// CDAE's settings (`[retrieval.cdae]`): the paper's sigmoid mappings and corruption; 200
/// hidden units (the paper's 50 scored HR@10 0.075 against 0.172 on ml-100k's validation
/// target, with learning rate 1e-3 against 3e-3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdaeConfig {
    /// Width of the hidden layer (and of the user vector).
    pub hidden: usize,
    /// Corruption level q (input dropout probability).
    pub corruption: f64,
    /// Sampled unwatched items per watched item.
    pub negatives: usize,
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

impl Default for CdaeConfig {
    fn default() -> Self {
        Self {
            hidden: 200,
            corruption: 0.2,
            negatives: 5,
            batch_size: 64,
            epochs: 100,
            patience: 30,
            learning_rate: 3e-3,
            weight_decay: 0.0,
            seed: 42,
        }
    }
}

impl AutoencoderSettings for CdaeConfig {
    fn spec(&self) -> Spec {
        Spec {
            kind: KIND,
            shape: Shape {
                encoder: vec![self.hidden],
                latent: None,
                decoder: Vec::new(),
                activation: Activation::Sigmoid,
                user_node: true,
                input: InputScale::Binary,
            },
            training: Training {
                objective: Objective::Logistic {
                    negatives: self.negatives,
                },
                input_dropout: self.corruption,
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
