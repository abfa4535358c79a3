//! CFGAN, Chae, Kang, Kim and Lee, "CFGAN: A Generic Collaborative Filtering Framework based on
//! Generative Adversarial Networks" (CIKM 2018), user-based, with zero-reconstruction and
//! partial masking (the paper's CFGAN_ZP, section 3.3).
//!
//! The generator G maps a user's condition vector c_u (their binary watch row; no noise z, as
//! in the authors' code) through a sigmoid layer to a real-valued purchase vector r^_u (linear
//! output). The discriminator D sees a vector and the condition, `D([r, c_u])` (a sigmoid MLP
//! to one logit), and learns to tell the real row r_u from the generated one masked by
//! `e_u + k_u`: e_u keeps the watched items (the paper's key point, section 3.2: without it G
//! trivially outputs all ones), k_u adds `pm_ratio` of the unwatched items, drawn afresh each
//! step, whose generated values D also sees (partial masking, eq. 8). The losses (eq. 9):
//!
//! - D: `-log D(r_u | c_u) - log(1 - D(r^_u . (e_u + k_u) | c_u))`;
//! - G: `-log D(r^_u . (e_u + k_u) | c_u) + alpha sum_{j in N_u^ZR} r^_uj^2`, the second term
//!   pulling a `zr_ratio` sample N_u^ZR of unwatched items towards 0 (zero reconstruction).
//!
//! Each step updates D `d_steps` times and then G `g_steps` times on one batch of users. Only G
//! is kept: u = its hidden layer, v_j and b_j = its output layer's row and bias, so the index
//! serves r^_u (the output is linear). Served through [`crate::autoencoder`] like the others.

use std::collections::HashMap;

use candle_core::{Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap};
use nn::init::SeededVarMap;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::rng::Rng;
use nn::trainer::{self, Better, Fit, Schedule, ShuffledBatches, StepLoss};
use nn::{Compute, EpochReport, Retriever, TrainReport, TrainingSet};
use serde::{Deserialize, Serialize};

use crate::autoencoder::{
    unwatched_sample, Activation, Autoencoder, AutoencoderSettings, InputScale, Objective, Shape,
    Spec, Training, Updater, UserRows,
};
use crate::error::{Result, RetrievalError};
use crate::warm::WarmStart;

/// Registry name.
pub const KIND: &str = "cfgan";

/// CFGAN's settings (`[retrieval.cfgan]`): the authors' ML100K choices (hidden 400 for G and
/// 125 for D, Adam 1e-4, alpha 0.03, 70% of the unwatched items for ZR and for PM, 4 G and
/// 2 D updates per round) where they apply to a user-based model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CfganConfig {
    /// Width of G's hidden layer (and of the user vector).
    pub hidden: usize,
    /// Width of D's hidden layer.
    pub discriminator_hidden: usize,
    /// Weight alpha of the zero-reconstruction term.
    pub zr_alpha: f64,
    /// Fraction of each user's unwatched items pulled to 0 (ZR).
    pub zr_ratio: f64,
    /// Fraction of each user's unwatched items shown to D (PM).
    pub pm_ratio: f64,
    /// D updates per step.
    pub d_steps: usize,
    /// G updates per step.
    pub g_steps: usize,
    /// Users per step.
    pub batch_size: usize,
    /// Maximum passes over the users.
    pub epochs: usize,
    /// Stop after this many epochs without a better validation HR@10 (0 = never).
    pub patience: usize,
    /// Adam learning rate of G.
    pub learning_rate: f64,
    /// Adam learning rate of D.
    pub discriminator_learning_rate: f64,
    /// Decoupled weight decay of G and D.
    pub weight_decay: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for CfganConfig {
    fn default() -> Self {
        Self {
            hidden: 400,
            discriminator_hidden: 125,
            zr_alpha: 0.03,
            zr_ratio: 0.7,
            pm_ratio: 0.7,
            d_steps: 2,
            g_steps: 4,
            batch_size: 32,
            epochs: 100,
            patience: 10,
            learning_rate: 1e-4,
            discriminator_learning_rate: 1e-4,
            weight_decay: 0.0,
            seed: 42,
        }
    }
}

impl AutoencoderSettings for CfganConfig {
    /// The generator's checks, and D's and the masks' settings.
    fn validate(&self) -> Result<()> {
        self.spec().validate()?;
        let bad = |m: &str| {
            Err(RetrievalError::InvalidConfig(format!(
                "[retrieval.{KIND}] {m}"
            )))
        };
        if self.discriminator_hidden == 0 || self.d_steps == 0 || self.g_steps == 0 {
            return bad("discriminator_hidden, d_steps and g_steps must be positive");
        }
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        if !unit(self.zr_ratio) || !unit(self.pm_ratio) {
            return bad("zr_ratio and pm_ratio must be in [0, 1]");
        }
        let ok = self.zr_alpha.is_finite()
            && self.zr_alpha >= 0.0
            && self.discriminator_learning_rate.is_finite()
            && self.discriminator_learning_rate > 0.0;
        if !ok {
            return bad("zr_alpha must be >= 0 and discriminator_learning_rate positive");
        }
        Ok(())
    }

    /// The generator these settings describe.
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
                objective: Objective::Adversarial,
                input_dropout: 0.0,
                batch_size: self.batch_size,
                epochs: self.epochs,
                patience: self.patience,
                learning_rate: self.learning_rate,
                weight_decay: self.weight_decay,
                seed: self.seed,
            },
        }
    }

    /// Trains CFGAN on `data` against its discriminator, computing as `compute` says; returns
    /// the generator, in host memory.
    fn train_with(
        &self,
        compute: &Compute,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Autoencoder, TrainReport)> {
        self.validate()?;
        let generator = Autoencoder::untrained(
            &self.spec(),
            serde_json::to_value(self)?,
            data,
            warm,
            &compute.device(),
        )?;
        let mut run = Run::new(self, generator, data, compute)?;
        let schedule = Schedule {
            epochs: self.epochs,
            patience: self.patience,
            learning_rate: self.learning_rate,
            final_lr_fraction: 1.0,
        };
        let report = trainer::train(&mut run, &schedule, Better::Higher, progress)?;
        Ok((run.generator.into_cpu()?, report))
    }
}

/// The discriminator: `[r, c]` (2 x items) -> sigmoid layer -> one logit. Training-only.
struct Discriminator {
    varmap: VarMap,
    hidden: Linear,
    output: Linear,
}

impl Discriminator {
    fn new(items: usize, width: usize, seed: u64, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = SeededVarMap::new(varmap.clone(), seed).into_var_builder(device);
        let layer = |vb: VarBuilder, i: usize, o: usize| -> Result<Linear> {
            let std = (2.0 / (i + o) as f64).sqrt();
            let init = candle_nn::Init::Randn {
                mean: 0.0,
                stdev: std,
            };
            let w = vb.get_with_hints((o, i), "weight", init)?;
            let b = vb.get_with_hints(o, "bias", candle_nn::Init::Const(0.0))?;
            Ok(Linear::new(w, Some(b)))
        };
        Ok(Self {
            hidden: layer(vb.pp("hidden"), 2 * items, width)?,
            output: layer(vb.pp("output"), width, 1)?,
            varmap,
        })
    }

    /// Logits of D([r, c]).
    fn forward(&self, r: &Tensor, c: &Tensor) -> Result<Tensor> {
        let x = Tensor::cat(&[r, c], 1)?;
        let h = candle_nn::ops::sigmoid(&self.hidden.forward(&x)?)?;
        Ok(self.output.forward(&h)?)
    }
}

/// `log(1 + e^z)`, mean over the batch (the logistic loss of label 0 on logit z).
fn mean_softplus(z: &Tensor) -> Result<Tensor> {
    let zero = z.zeros_like()?;
    let w = z.ones_like()?;
    let n = z.elem_count().max(1) as f64;
    Ok((nn::loss::weighted_bce_sum(z, &zero, &w)? / n)?)
}

/// One training run.
struct Run<'a> {
    generator: Autoencoder,
    config: CfganConfig,
    data: TrainingSet<'a>,
    rows: UserRows,
    discriminator: Discriminator,
    d_optimizer: InPlaceAdamW,
    g_updater: Updater,
    rng: Rng,
    batches: ShuffledBatches,
    /// Fused CPU kernels, or candle ops on `device`.
    fused: bool,
    device: Device,
}

impl<'a> Run<'a> {
    fn new(
        config: &CfganConfig,
        generator: Autoencoder,
        data: &TrainingSet<'a>,
        compute: &Compute,
    ) -> Result<Self> {
        let rows = UserRows::new(data);
        let device = compute.device();
        let discriminator = Discriminator::new(
            generator.num_items(),
            config.discriminator_hidden,
            config.seed ^ 0xD15C,
            &device,
        )?;
        let params = AdamWParams {
            lr: config.discriminator_learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: config.weight_decay,
        };
        Ok(Self {
            d_optimizer: InPlaceAdamW::for_compute(
                compute,
                discriminator.varmap.all_vars(),
                Vec::new(),
                params,
            )?,
            g_updater: Updater::new(
                &generator,
                config.learning_rate,
                config.weight_decay,
                compute,
            )?,
            fused: compute.is_fused_cpu(),
            device,
            rng: Rng::new(config.seed ^ 0xCF_6A4E),
            batches: ShuffledBatches::new(rows.users.len(), config.batch_size),
            discriminator,
            rows,
            generator,
            config: config.clone(),
            data: *data,
        })
    }

    /// The masks of `users`: `e_u + k_u` (watched plus partially masked unwatched items) and
    /// the zero-reconstruction sample, both `users x items`.
    fn masks(&mut self, users: &[u32]) -> Result<(Tensor, Tensor)> {
        let n = self.generator.num_items();
        let mut pm = self.rows.dense(users, n)?;
        let mut zr = vec![0f32; users.len() * n];
        for (k, &u) in users.iter().enumerate() {
            let row = &self.rows.rows[u as usize];
            let free = (n - row.len()) as f64;
            let count = |ratio: f64| (ratio * free).floor() as usize;
            for j in unwatched_sample(row, n, count(self.config.pm_ratio), &mut self.rng) {
                pm[k * n + j as usize] = 1.0;
            }
            for j in unwatched_sample(row, n, count(self.config.zr_ratio), &mut self.rng) {
                zr[k * n + j as usize] = 1.0;
            }
        }
        let shape = (users.len(), n);
        Ok((
            Tensor::from_vec(pm, shape, &self.device)?,
            Tensor::from_vec(zr, shape, &self.device)?,
        ))
    }
}

impl Fit for Run<'_> {
    type Error = RetrievalError;
    type Snapshot = HashMap<String, Tensor>;

    fn examples_per_epoch(&self) -> usize {
        self.rows.users.len()
    }

    fn steps_per_epoch(&self) -> usize {
        self.batches.steps()
    }

    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        self.batches.shuffle(&mut self.rng);
        Ok(())
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepLoss> {
        let users: Vec<u32> = self
            .batches
            .batch(step)
            .iter()
            .map(|&i| self.rows.users[i])
            .collect();
        let n = self.generator.num_items();
        let real = Tensor::from_vec(self.rows.dense(&users, n)?, (users.len(), n), &self.device)?;
        let bags = self
            .rows
            .corrupted(&self.generator, &users, 0.0, &mut self.rng);
        let (mask, zr) = self.masks(&users)?;
        let d_lr = lr * self.config.discriminator_learning_rate / self.config.learning_rate;
        let mut d_loss = 0.0;
        for _ in 0..self.config.d_steps {
            let fake = self
                .generator
                .forward_train(&bags, &users, &mut self.rng, self.fused)?;
            let fake = (fake.logits.detach() * &mask)?;
            let d = &self.discriminator;
            // -log D(real) - log(1 - D(fake)) = softplus(-z_real) + softplus(z_fake).
            let loss = (mean_softplus(&d.forward(&real, &real)?.neg()?)?
                + mean_softplus(&d.forward(&fake, &real)?)?)?;
            d_loss = f64::from(loss.to_scalar::<f32>()?);
            let store = loss.backward()?;
            self.d_optimizer.set_learning_rate(d_lr);
            self.d_optimizer.begin_step();
            self.d_optimizer.step_dense(&store)?;
        }
        for _ in 0..self.config.g_steps {
            let forward = self
                .generator
                .forward_train(&bags, &users, &mut self.rng, self.fused)?;
            let fake = (&forward.logits * &mask)?;
            let adversarial = mean_softplus(&self.discriminator.forward(&fake, &real)?.neg()?)?;
            let zero_reconstruction =
                ((forward.logits.sqr()? * &zr)?.sum_all()? / users.len().max(1) as f64)?;
            let loss = (adversarial + (zero_reconstruction * self.config.zr_alpha)?)?;
            let store = loss.backward()?;
            self.g_updater.step(&store, &forward, &bags, &users, lr)?;
        }
        Ok(StepLoss {
            sum: d_loss * users.len() as f64,
            weight: users.len() as f64,
        })
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.generator
            .validation_hit_rate(self.data.validation, None)
    }

    fn snapshot(&self) -> Result<Self::Snapshot> {
        Ok(nn::vars::snapshot(self.generator.varmap())?)
    }

    fn restore(&mut self, snapshot: Self::Snapshot) -> Result<()> {
        Ok(nn::vars::restore(self.generator.varmap(), &snapshot)?)
    }
}
