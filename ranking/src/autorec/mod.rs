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
//!
//! Training computes where `config.compute` says: with [`nn::Compute::Candle`] (a GPU) the
//! network, its AdamW, the objective and validation scoring run on the device, a batch's rows
//! built there from their observed ratings alone; the trained model comes back in host memory.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap};
use nn::init::SeededVarMap;
use nn::rating::{RatingModel, Ratings};
use nn::trainer::{EpochReport, TrainReport};
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
    /// Where training computes: not a key of the sections; the registries set it from
    /// `[train] device` (see [`nn::Compute`]).
    #[serde(skip)]
    pub compute: nn::Compute,
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
            compute: nn::Compute::FusedCpu,
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

    /// Dense `rows.len() x cols` ratings (0 where unobserved) and the observed mask, built in
    /// host memory (`fused`) or on `device` from the observed entries alone.
    fn dense_for(
        &self,
        rows: &[u32],
        cols: usize,
        fused: bool,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        if fused {
            self.dense(rows, cols)
        } else {
            self.dense_on(rows, cols, device)
        }
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

    /// [`Self::dense`] built on `device`: only the observed entries (position, rating) cross
    /// to it, and are added into zeros there. A pair rated twice keeps its last rating, as in
    /// [`Self::dense`].
    fn dense_on(&self, rows: &[u32], cols: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let (shape, size) = ((rows.len(), cols), rows.len() * cols);
        if u32::try_from(size).is_err() {
            return Err(RankingError::InvalidConfig(format!(
                "a batch of {} rows x {cols} columns is too large; lower batch_size",
                rows.len()
            )));
        }
        let mut at: Vec<(u32, f32)> = Vec::new();
        for (k, &r) in rows.iter().enumerate() {
            let row = self.row(r as usize);
            at.extend(row.iter().map(|&(c, v)| ((k * cols) as u32 + c, v)));
        }
        // Stable: a position's ratings stay in input order, and the last one is kept.
        at.sort_by_key(|&(p, _)| p);
        let last = |k: usize| at.get(k + 1).is_none_or(|next| next.0 != at[k].0);
        let kept: Vec<(u32, f32)> = (0..at.len()).filter(|&k| last(k)).map(|k| at[k]).collect();
        let zeros = Tensor::zeros(size, DType::F32, device)?;
        if kept.is_empty() {
            return Ok((zeros.reshape(shape)?, zeros.reshape(shape)?));
        }
        let n = kept.len();
        let (idx, values): (Vec<u32>, Vec<f32>) = kept.into_iter().unzip();
        let idx = Tensor::from_vec(idx, n, device)?;
        let values = Tensor::from_vec(values, n, device)?;
        let ones = Tensor::ones(n, DType::F32, device)?;
        Ok((
            zeros.index_add(&idx, &values, 0)?.reshape(shape)?,
            zeros.index_add(&idx, &ones, 0)?.reshape(shape)?,
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
        // Built where it trains (the initial weights are drawn on the host either way).
        let compute = config.compute.clone();
        let inputs = Rows::new(train, side, rows);
        let model = Self::new_on(side, config, inputs, (rows, cols), &compute.device())?;
        train::fit(model, valid, progress)
    }

    /// A fresh model on `device` reconstructing `inputs` (`rows x cols`): Glorot-normal
    /// weights, zero biases.
    fn new_on(
        side: Side,
        config: &AutoRecConfig,
        inputs: Rows,
        (rows, cols): (usize, usize),
        device: &Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = SeededVarMap::new(varmap.clone(), config.seed).into_var_builder(device);
        Ok(Self {
            encoder: linear(vb.pp("encoder"), cols, config.hidden)?,
            decoder: linear(vb.pp("decoder"), config.hidden, cols)?,
            inputs,
            side,
            config: config.clone(),
            varmap,
            rows,
            cols,
        })
    }

    /// This model with its weights on `device` (itself when they are there already).
    fn on_device(self, device: &Device) -> Result<Self> {
        if self.encoder.weight().device().same_device(device) {
            return Ok(self);
        }
        let weights = nn::vars::snapshot(&self.varmap)?;
        let sizes = (self.rows, self.cols);
        let moved = Self::new_on(self.side, &self.config, self.inputs, sizes, device)?;
        nn::vars::restore(&moved.varmap, &weights)?;
        Ok(moved)
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
        let fused = self.encoder.weight().device().is_cpu();
        self.predict_pairs(row_of, col_of, fused)
    }
}

impl AutoRec {
    /// Entry `col_of[k]` of h(r) of row `row_of[k]` for each k (pairs inside the model),
    /// reconstructing each needed row once: in host memory (`fused`), or on the weights' device
    /// with only the predictions read back.
    fn predict_pairs(&self, row_of: &[u32], col_of: &[u32], fused: bool) -> Result<Vec<f32>> {
        let device = self.encoder.weight().device();
        let mut needed: Vec<u32> = row_of.to_vec();
        needed.sort_unstable();
        needed.dedup();
        // The pairs by row, so that each chunk of rows owns a run of them.
        let mut order: Vec<usize> = (0..row_of.len()).collect();
        order.sort_by_key(|&k| row_of[k]);
        let mut out = vec![0f32; row_of.len()];
        let mut next = 0;
        for chunk in needed.chunks(PREDICT_ROWS) {
            let Some(&last) = chunk.last() else {
                continue;
            };
            let run = order[next..].partition_point(|&k| row_of[k] <= last);
            let pairs = &order[next..next + run];
            next += run;
            // Each pair's position in the chunk's `chunk.len() x cols` output.
            let at: Vec<usize> = pairs
                .iter()
                .map(|&k| {
                    let slot = chunk.partition_point(|&r| r < row_of[k]);
                    slot * self.cols + col_of[k] as usize
                })
                .collect();
            let (input, _) = self.inputs.dense_for(chunk, self.cols, fused, device)?;
            let output = self.reconstruct(&input)?.flatten_all()?;
            let values = if fused {
                let output = output.to_vec1::<f32>()?;
                at.iter().map(|&p| output[p]).collect()
            } else {
                // dense_on checked that a chunk's positions fit u32.
                let at: Vec<u32> = at.iter().map(|&p| p as u32).collect();
                let at = Tensor::from_vec(at, pairs.len(), device)?;
                output.index_select(&at, 0)?.to_vec1::<f32>()?
            };
            for (&k, v) in pairs.iter().zip(values) {
                out[k] = v;
            }
        }
        Ok(out)
    }
}

mod train;

#[cfg(test)]
mod tests;
