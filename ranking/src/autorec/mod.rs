//! AutoRec for ratings, Sedhain, Menon, Sanner and Xie, "AutoRec: Autoencoders Meet
//! Collaborative Filtering" (WWW 2015). I-AutoRec reconstructs an item's vector of observed
//! ratings over the users, r^(i) in R^m; U-AutoRec a user's vector over the items. Eq. 1:
//! h(r; theta) = f(W g(V r + mu) + b) with g = sigmoid, f = identity; unobserved entries of r
//! are 0 in the input. Eq. 2, the objective: `sum_i |r^(i) - h(r^(i))|^2_O + lambda/2 (|W|^2 +
//! |V|^2)`, where |.|_O counts **observed ratings only**: a missing entry is neither input
//! signal nor error, so its output gets exactly zero gradient. Training takes mini-batches of
//! rows with Adam on the per-row mean of eq. 2 (`lambda / (2 n)` per weight for n rows), the
//! epoch chosen by validation RMSE. The prediction for (u, i) reads entry u of h(r^(i))
//! (I-AutoRec) or entry i of h(r^(u)) (U-AutoRec), eq. 3.
//!
//! `unobserved_in_loss = true` is the ablation: the same network with missing = 0 in the loss.

use std::collections::HashMap;

use candle_core::{Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap};
use nn::init::SeededVarMap;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::rating::{RatingModel, Ratings};
use nn::rng::Rng;
use nn::trainer::{
    self, Better, EpochReport, Fit, Schedule, ShuffledBatches, StepLoss, TrainReport,
};
use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};

/// Registry name of I-AutoRec (rows are items).
pub const KIND_ITEM: &str = "autorec_i";
/// Registry name of U-AutoRec (rows are users).
pub const KIND_USER: &str = "autorec_u";

/// Which vectors are reconstructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// I-AutoRec: each item's ratings by all users.
    Item,
    /// U-AutoRec: each user's ratings of all items.
    User,
}

impl Side {
    /// The registry name.
    pub fn kind(self) -> &'static str {
        match self {
            Side::Item => KIND_ITEM,
            Side::User => KIND_USER,
        }
    }
}

/// AutoRec's settings (`[rating.autorec_i]`, `[rating.autorec_u]`): the paper's 500 hidden
/// units; lambda = 300 and batches of 256 rows chosen on I-AutoRec's validation RMSE on
/// ml-100k (0.8888, against 0.8913 for lambda 100 and 0.8983 for 30; batches of 32 rows
/// overfitted within 6 epochs whatever lambda).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoRecConfig {
    /// Hidden units k.
    pub hidden: usize,
    /// lambda of eq. 2.
    pub l2: f64,
    /// The ablation: count every entry in the loss, missing ones as 0.
    pub unobserved_in_loss: bool,
    /// Rows (items or users) per step.
    pub batch_size: usize,
    /// Maximum passes over the rows.
    pub epochs: usize,
    /// Stop after this many epochs without a lower validation RMSE (0 = never).
    pub patience: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Seed of the initialisation and the shuffles.
    pub seed: u64,
}

impl Default for AutoRecConfig {
    fn default() -> Self {
        Self {
            hidden: 500,
            l2: 300.0,
            unobserved_in_loss: false,
            batch_size: 256,
            epochs: 200,
            patience: 10,
            learning_rate: 1e-3,
            seed: 42,
        }
    }
}

impl AutoRecConfig {
    /// Rejects settings that cannot train; `kind` names the section.
    pub fn validate(&self, kind: &str) -> Result<()> {
        let bad = |m: &str| Err(RankingError::InvalidConfig(format!("[rating.{kind}] {m}")));
        if self.hidden == 0 || self.batch_size == 0 {
            return bad("hidden and batch_size must be positive");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate must be finite and positive");
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return bad("l2 must be finite and >= 0");
        }
        Ok(())
    }
}

/// Observed ratings by row (an item's for I-AutoRec, a user's for U-AutoRec): (column, rating).
#[derive(Debug, Clone, Default)]
struct Rows {
    offsets: Vec<usize>,
    entries: Vec<(u32, f32)>,
}

impl Rows {
    fn new(ratings: &Ratings, side: Side, rows: usize) -> Self {
        let (row_of, col_of) = match side {
            Side::Item => (&ratings.items, &ratings.users),
            Side::User => (&ratings.users, &ratings.items),
        };
        let mut counts = vec![0usize; rows + 1];
        row_of.iter().for_each(|&r| counts[r as usize + 1] += 1);
        for k in 1..counts.len() {
            counts[k] += counts[k - 1];
        }
        let offsets = counts.clone();
        let mut entries = vec![(0u32, 0f32); ratings.len()];
        for ((&r, &c), &v) in row_of.iter().zip(col_of).zip(&ratings.values) {
            let slot = &mut counts[r as usize];
            entries[*slot] = (c, v);
            *slot += 1;
        }
        Self { offsets, entries }
    }

    fn row(&self, r: usize) -> &[(u32, f32)] {
        &self.entries[self.offsets[r]..self.offsets[r + 1]]
    }

    /// Dense `rows.len() x cols` ratings (0 where unobserved) and the observed mask.
    fn dense(&self, rows: &[u32], cols: usize) -> Result<(Tensor, Tensor)> {
        let mut x = vec![0f32; rows.len() * cols];
        let mut m = vec![0f32; rows.len() * cols];
        for (k, &r) in rows.iter().enumerate() {
            for &(c, v) in self.row(r as usize) {
                x[k * cols + c as usize] = v;
                m[k * cols + c as usize] = 1.0;
            }
        }
        let shape = (rows.len(), cols);
        Ok((
            Tensor::from_vec(x, shape, &Device::Cpu)?,
            Tensor::from_vec(m, shape, &Device::Cpu)?,
        ))
    }
}

/// The reconstruction error of eq. 2 for a batch, per row: `sum_k sum_j m_kj (h_kj - r_kj)^2 /
/// rows`. `mask` is 1 on observed entries (or everywhere, for the ablation); an entry with
/// mask 0 contributes nothing, so its output's gradient is exactly zero.
pub fn reconstruction_loss(output: &Tensor, ratings: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let rows = output.dim(0)?.max(1) as f64;
    Ok((((output - ratings)?.sqr()? * mask)?.sum_all()? / rows)?)
}

/// A trained AutoRec.
pub struct AutoRec {
    side: Side,
    config: AutoRecConfig,
    varmap: VarMap,
    encoder: Linear,
    decoder: Linear,
    /// The fitted ratings, by row: the inputs at prediction time.
    inputs: Rows,
    rows: usize,
    cols: usize,
}

impl AutoRec {
    /// Trains on `train` (indices below `num_users` / `num_items`), keeping the epoch with the
    /// lowest RMSE on `valid`.
    pub fn train(
        side: Side,
        config: &AutoRecConfig,
        num_users: usize,
        num_items: usize,
        train: &Ratings,
        valid: &Ratings,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        config.validate(side.kind())?;
        train.validate(num_users, num_items)?;
        valid.validate(num_users, num_items)?;
        if train.is_empty() {
            return Err(RankingError::NoTrainingData);
        }
        let (rows, cols) = match side {
            Side::Item => (num_items, num_users),
            Side::User => (num_users, num_items),
        };
        let varmap = VarMap::new();
        let vb = SeededVarMap::new(varmap.clone(), config.seed).into_var_builder(&Device::Cpu);
        let model = Self {
            encoder: linear(vb.pp("encoder"), cols, config.hidden)?,
            decoder: linear(vb.pp("decoder"), config.hidden, cols)?,
            inputs: Rows::new(train, side, rows),
            side,
            config: config.clone(),
            varmap,
            rows,
            cols,
        };
        let params = AdamWParams {
            lr: config.learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let trained: Vec<u32> = (0..rows as u32)
            .filter(|&r| !model.inputs.row(r as usize).is_empty())
            .collect();
        let mut run = Run {
            optimizer: InPlaceAdamW::new(model.varmap.all_vars(), Vec::new(), params),
            rng: Rng::new(config.seed ^ 0xA0_7E0C),
            batches: ShuffledBatches::new(trained.len(), config.batch_size),
            trained,
            model,
            valid,
        };
        let schedule = Schedule {
            epochs: config.epochs,
            patience: config.patience,
            learning_rate: config.learning_rate,
            final_lr_fraction: 1.0,
        };
        let report = trainer::train(&mut run, &schedule, Better::Lower, progress)?;
        Ok((run.model, report))
    }

    /// h(r) for the given rows' fitted ratings: `rows.len() x cols`.
    fn reconstruct(&self, input: &Tensor) -> Result<Tensor> {
        let hidden = self.encoder.forward(input)?;
        let hidden = candle_nn::ops::sigmoid(&hidden)?;
        Ok(self.decoder.forward(&hidden)?)
    }

    /// The configuration the model was trained with.
    pub fn config(&self) -> &AutoRecConfig {
        &self.config
    }
}

/// A linear layer with Glorot-normal weights and zero bias.
fn linear(vb: VarBuilder, input: usize, output: usize) -> Result<Linear> {
    let std = (2.0 / (input + output).max(1) as f64).sqrt();
    let w = vb.get_with_hints(
        (output, input),
        "weight",
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: std,
        },
    )?;
    let b = vb.get_with_hints(output, "bias", candle_nn::Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

/// Rows reconstructed per forward pass at prediction time.
const PREDICT_ROWS: usize = 256;

impl RatingModel for AutoRec {
    type Error = RankingError;

    fn kind(&self) -> &'static str {
        self.side.kind()
    }

    fn predict(&self, users: &[u32], items: &[u32]) -> Result<Vec<f32>> {
        let (row_of, col_of) = match self.side {
            Side::Item => (items, users),
            Side::User => (users, items),
        };
        if users.len() != items.len()
            || row_of.iter().any(|&r| r as usize >= self.rows)
            || col_of.iter().any(|&c| c as usize >= self.cols)
        {
            return Err(RankingError::InvalidConfig(
                "rating pairs outside the trained users and items".into(),
            ));
        }
        // Reconstruct each needed row once.
        let mut needed: Vec<u32> = row_of.to_vec();
        needed.sort_unstable();
        needed.dedup();
        let mut slot: HashMap<u32, usize> = HashMap::with_capacity(needed.len());
        let mut outputs = Vec::with_capacity(needed.len() * self.cols);
        for chunk in needed.chunks(PREDICT_ROWS) {
            let (input, _) = self.inputs.dense(chunk, self.cols)?;
            let out = self.reconstruct(&input)?.flatten_all()?.to_vec1::<f32>()?;
            for &r in chunk {
                slot.insert(r, slot.len());
            }
            outputs.extend(out);
        }
        Ok(row_of
            .iter()
            .zip(col_of)
            .map(|(r, &c)| outputs[slot[r] * self.cols + c as usize])
            .collect())
    }
}

/// One training run: an epoch is one pass over the rows with at least one rating.
struct Run<'a> {
    model: AutoRec,
    valid: &'a Ratings,
    trained: Vec<u32>,
    optimizer: InPlaceAdamW,
    rng: Rng,
    batches: ShuffledBatches,
}

impl Fit for Run<'_> {
    type Error = RankingError;
    type Snapshot = HashMap<String, Tensor>;

    fn examples_per_epoch(&self) -> usize {
        self.trained.len()
    }

    fn steps_per_epoch(&self) -> usize {
        self.batches.steps()
    }

    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        self.batches.shuffle(&mut self.rng);
        Ok(())
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepLoss> {
        let m = &self.model;
        let rows: Vec<u32> = self
            .batches
            .batch(step)
            .iter()
            .map(|&k| self.trained[k])
            .collect();
        let (input, observed) = m.inputs.dense(&rows, m.cols)?;
        let mask = match m.config.unobserved_in_loss {
            true => observed.ones_like()?,
            false => observed.clone(),
        };
        let output = m.reconstruct(&input)?;
        let error = reconstruction_loss(&output, &input, &mask)?;
        // lambda / 2 (|W|^2 + |V|^2), divided by the number of rows like the error term.
        let weights =
            (m.encoder.weight().sqr()?.sum_all()? + m.decoder.weight().sqr()?.sum_all()?)?;
        let reg = (weights * (m.config.l2 / (2.0 * m.rows.max(1) as f64)))?;
        let loss = (&error + reg)?;
        // Reported: squared error of the observed entries, per observed rating.
        let observed_error = ((output - &input)?.sqr()? * &observed)?.sum_all()?;
        let count = f64::from(observed.sum_all()?.to_scalar::<f32>()?);
        let store = loss.backward()?;
        self.optimizer.set_learning_rate(lr);
        self.optimizer.begin_step();
        self.optimizer.step_dense(&store)?;
        Ok(StepLoss {
            sum: f64::from(observed_error.to_scalar::<f32>()?),
            weight: count.max(1.0),
        })
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.model.validation_rmse(self.valid)
    }

    fn snapshot(&self) -> Result<Self::Snapshot> {
        Ok(nn::vars::snapshot(&self.model.varmap)?)
    }

    fn restore(&mut self, snapshot: Self::Snapshot) -> Result<()> {
        Ok(nn::vars::restore(&self.model.varmap, &snapshot)?)
    }
}

#[cfg(test)]
mod tests;
