//! How a user-row autoencoder is described: its shape, non-linearity, input scaling and
//! objective, as each model file gives them.

use candle_core::Tensor;

use crate::error::{Result, RetrievalError};

/// The hidden layers' non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// 1 / (1 + e^-x) (AutoRec, CDAE).
    Sigmoid,
    /// tanh x (Mult-DAE, Mult-VAE).
    Tanh,
}

impl Activation {
    pub(crate) fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
            Activation::Tanh => x.tanh()?,
        })
    }
}

/// How a user's row is scaled before the first layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputScale {
    /// x_uj = 1 for each watched item (AutoRec, CDAE).
    Binary,
    /// x_u / |x_u|: each watched item 1 / sqrt(n) (Mult-DAE/VAE, Liang et al. 2018, section 2.2).
    UnitNorm,
}

/// What the output is trained to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// Squared error over the whole row, identity output: `sum_j (x_uj - o_uj)^2` (AutoRec's
    /// eq. 2 with every entry of the implicit row observed: missing = 0).
    SquaredError,
    /// Logistic loss on the watched items and `negatives` items per watched item drawn
    /// uniformly from the unwatched ones, sigmoid output (CDAE, Wu et al. 2016, eq. 5 with
    /// negative sampling, section 4.3).
    Logistic {
        /// Negatives per watched item.
        negatives: usize,
    },
    /// Multinomial log-likelihood `-sum_j x_uj log softmax(o_u)_j` (Liang et al. 2018, eq. 2);
    /// with a latent layer, plus `beta` times the KL divergence of eq. 6, beta annealed
    /// linearly from 0 by 1/`anneal_steps` per step up to `beta_cap` (section 2.2.2).
    Multinomial {
        /// Largest beta.
        beta_cap: f64,
        /// Steps for beta to grow by 1 (beta = min(beta_cap, step / anneal_steps)).
        anneal_steps: usize,
    },
    /// Identity output trained against a discriminator (CFGAN's generator, see
    /// [`crate::cfgan`]).
    Adversarial,
}

/// The network's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Widths of the encoder's layers; the first reads the user's row.
    pub encoder: Vec<usize>,
    /// Width of the Gaussian latent layer (VAE), or none.
    pub latent: Option<usize>,
    /// Widths of the decoder's hidden layers after the latent layer.
    pub decoder: Vec<usize>,
    /// Non-linearity of every hidden layer.
    pub activation: Activation,
    /// A learned per-user input node V_u added to the first layer (CDAE).
    pub user_node: bool,
    /// Scaling of the input row.
    pub input: InputScale,
}

impl Shape {
    /// Width of the user vector: the last hidden layer before the output layer.
    pub fn dim(&self) -> usize {
        self.decoder
            .last()
            .or(self.latent.as_ref())
            .or(self.encoder.last())
            .copied()
            .unwrap_or(0)
    }
}

/// How the network is trained.
#[derive(Debug, Clone, PartialEq)]
pub struct Training {
    /// The loss.
    pub objective: Objective,
    /// Probability of dropping each watched item from the input (scaled by 1 / (1 - p)).
    pub input_dropout: f64,
    /// Users per step.
    pub batch_size: usize,
    /// Maximum passes over the users.
    pub epochs: usize,
    /// Stop after this many epochs without a better validation HR@10 (0 = never).
    pub patience: usize,
    /// Adam learning rate (constant).
    pub learning_rate: f64,
    /// Decoupled weight decay (AdamW; the rows of the first layer decay when touched).
    pub weight_decay: f64,
    /// Seed of the initialisation, the shuffles, the corruption and the sampling.
    pub seed: u64,
}

/// A model's full description, as a model file gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Registry name.
    pub kind: &'static str,
    /// Network shape.
    pub shape: Shape,
    /// Training settings.
    pub training: Training,
}

impl Spec {
    /// Rejects descriptions that cannot train, naming the config section.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| {
            Err(RetrievalError::InvalidConfig(format!(
                "[retrieval.{}] {m}",
                self.kind
            )))
        };
        let (s, t) = (&self.shape, &self.training);
        let widths = s.encoder.iter().chain(&s.latent).chain(&s.decoder);
        if s.encoder.is_empty() || widths.into_iter().any(|&w| w == 0) {
            return bad("every layer width must be positive");
        }
        if t.batch_size == 0 {
            return bad("batch_size must be positive");
        }
        if !(0.0..1.0).contains(&t.input_dropout) {
            return bad("the input dropout (corruption) must be in [0, 1)");
        }
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            return bad("learning_rate must be finite and positive");
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return bad("weight_decay must be finite and >= 0");
        }
        match t.objective {
            Objective::Logistic { negatives: 0 } => bad("negatives must be positive"),
            Objective::Multinomial {
                beta_cap,
                anneal_steps,
            } if !(beta_cap.is_finite() && beta_cap >= 0.0) || anneal_steps == 0 => {
                bad("beta_cap must be finite and >= 0, anneal_steps positive")
            }
            _ => Ok(()),
        }
    }
}
