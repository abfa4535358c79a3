//! Mult-VAE, the variational autoencoder of Liang, Krishnan, Hoffman and Jebara, "Variational
//! Autoencoders for Collaborative Filtering" (WWW 2018): the user's row x_u, normalised to unit
//! length and dropped out (p = 0.5), goes through a tanh encoder to a Gaussian latent
//! q(z_u | x_u) = N(mu_u, diag sigma_u^2) (section 2.2), z_u = mu_u + eps sigma_u (the
//! reparameterisation trick), then a tanh decoder to logits over the catalogue f_theta(z_u);
//! the loss is the annealed negative ELBO of eq. 6, `-sum_j x_uj log softmax(f(z_u))_j +
//! beta KL(q(z_u | x_u) || N(0, I))` with beta growing linearly from 0 to `beta_cap`
//! (section 2.2.2; the paper's 0.2). Shape [I -> 600 -> 200 -> 600 -> I] as in section 4.3.
//!
//! Serving uses the mean (z_u = mu_u, no dropout): u = the decoder's last hidden layer, v_j
//! and b_j = the output layer's row and bias; softmax is monotone, so the index's top-K by
//! u . v_j + b_j is the model's. Training and serving are in [`crate::autoencoder`].

use serde::{Deserialize, Serialize};

use crate::autoencoder::{
    Activation, AutoencoderSettings, InputScale, Objective, Shape, Spec, Training,
};

/// Registry name.
pub const KIND: &str = "mult_vae";

/// Mult-VAE's settings (`[retrieval.mult_vae]`); the defaults are the paper's where it gives
/// them (section 4.3: 600-200 encoder, dropout 0.5, beta up to 0.2, Adam 1e-3); batches of 100
/// users rather than 500, so that a small data set gets enough steps (ml-100k: validation
/// HR@10 0.1686 against 0.1368).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MultVaeConfig {
    /// Width of the encoder's and the decoder's hidden layer (and of the user vector).
    pub hidden: usize,
    /// Width of the latent z.
    pub latent: usize,
    /// Input dropout probability.
    pub input_dropout: f64,
    /// Largest KL weight beta.
    pub beta_cap: f64,
    /// Steps over which beta would grow from 0 to 1 (it stops at `beta_cap`).
    pub anneal_steps: usize,
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

impl Default for MultVaeConfig {
    fn default() -> Self {
        Self {
            hidden: 600,
            latent: 200,
            input_dropout: 0.5,
            beta_cap: 0.2,
            anneal_steps: 2000,
            batch_size: 100,
            epochs: 200,
            patience: 30,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            seed: 42,
        }
    }
}

impl AutoencoderSettings for MultVaeConfig {
    fn spec(&self) -> Spec {
        Spec {
            kind: KIND,
            shape: Shape {
                encoder: vec![self.hidden],
                latent: Some(self.latent),
                decoder: vec![self.hidden],
                activation: Activation::Tanh,
                user_node: false,
                input: InputScale::UnitNorm,
            },
            training: Training {
                objective: Objective::Multinomial {
                    beta_cap: self.beta_cap,
                    anneal_steps: self.anneal_steps,
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
