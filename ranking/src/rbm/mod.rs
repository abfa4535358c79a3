//! RBM-CF, the restricted Boltzmann machine for collaborative filtering of Salakhutdinov, Mnih
//! and Hinton, "Restricted Boltzmann Machines for Collaborative Filtering" (ICML 2007).
//!
//! Each user is one RBM whose visible units are the items they rated, each a K-way softmax over
//! the rating levels (v_i^k = 1 when the rating is level k), with F binary hidden units; the
//! weights W_i^{kj}, visible biases b_i^k and hidden biases b_j are shared by all users
//! (section 2). The conditionals are eq. 1,
//! `p(v_i^k = 1 | h) = exp(b_i^k + sum_j h_j W_i^{kj}) / sum_l exp(b_i^l + sum_j h_j W_i^{lj})`,
//! and eq. 2, `p(h_j = 1 | V) = sigmoid(b_j + sum_{i rated} sum_k v_i^k W_i^{kj})`. Training
//! follows the contrastive-divergence gradient of eq. 6, `dW_i^{kj} = eps (<v_i^k h_j>_data -
//! <v_i^k h_j>_T)`, with T Gibbs steps that grow as training goes on (CD-1 first, then
//! `cd_steps`, section 2.2), momentum and weight decay, over mini-batches of users. Missing
//! ratings are simply absent units (no softmax, no gradient).
//!
//! Prediction (section 2.3, the mean-field version): p^_j = p(h_j = 1 | V_u) from the user's
//! fitted ratings, then p(v_q^k = 1 | p^) by eq. 1 and r^_uq = sum_k level_k p(v_q^k = 1 | p^),
//! the expected rating under the visible softmax.
//!
//! Training computes where [`nn::Compute`] says: the loop over users below on the CPU, or one
//! block of tensors per batch in candle ops on a GPU ([`device`]), with the same random draws;
//! the trained model is in host memory either way, where it predicts.

mod device;
mod train;

use nn::rating::{RatingModel, Ratings};
use nn::rng::Rng;
use nn::trainer::{self, Better, EpochReport, Schedule, ShuffledBatches, TrainReport};
use nn::Compute;
use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};

/// Registry name.
pub const KIND: &str = "rbm";
/// Most distinct rating values the softmax units take.
pub const MAX_LEVELS: usize = 20;

/// RBM-CF's settings (`[rating.rbm]`): the paper's 100 hidden units, momentum 0.9, weight
/// decay 0.001 and CD-T with T growing from 1; learning rate 0.01 chosen on ml-100k's
/// validation RMSE (0.9451, against 0.9490 at 0.05 and 0.9574 at 0.1; 50 or 200 hidden units
/// 0.9477 / 0.9459).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RbmConfig {
    /// Hidden units F.
    pub hidden: usize,
    /// Learning rate eps of eq. 6 (per user, averaged over a batch).
    pub learning_rate: f64,
    /// Momentum of the updates.
    pub momentum: f64,
    /// Weight decay of W.
    pub weight_decay: f64,
    /// Users per step.
    pub batch_size: usize,
    /// Maximum passes over the users.
    pub epochs: usize,
    /// Stop after this many epochs without a lower validation RMSE (0 = never).
    pub patience: usize,
    /// Gibbs steps T of each stage of training, from CD-1 on.
    pub cd_steps: Vec<usize>,
    /// Epochs per stage of `cd_steps` (the last stage lasts to the end).
    pub cd_stage_epochs: usize,
    /// Standard deviation of the initial weights.
    pub init_std: f64,
    /// Seed of the initialisation, the shuffles and the Gibbs sampling.
    pub seed: u64,
}

impl Default for RbmConfig {
    fn default() -> Self {
        Self {
            hidden: 100,
            learning_rate: 0.01,
            momentum: 0.9,
            weight_decay: 0.001,
            batch_size: 50,
            epochs: 100,
            patience: 10,
            cd_steps: vec![1, 3, 5, 9],
            cd_stage_epochs: 10,
            init_std: 0.01,
            seed: 42,
        }
    }
}

impl RbmConfig {
    /// Rejects settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(RankingError::InvalidConfig(format!("[rating.{KIND}] {m}")));
        if self.hidden == 0 || self.batch_size == 0 || self.cd_stage_epochs == 0 {
            return bad("hidden, batch_size and cd_stage_epochs must be positive");
        }
        if self.cd_steps.is_empty() || self.cd_steps.contains(&0) {
            return bad("cd_steps must list positive step counts");
        }
        let finite = |x: f64| x.is_finite() && x >= 0.0;
        let ok = finite(self.learning_rate)
            && self.learning_rate > 0.0
            && finite(self.weight_decay)
            && finite(self.init_std)
            && (0.0..1.0).contains(&self.momentum);
        if !ok {
            return bad("learning_rate must be positive, weight_decay and init_std >= 0, momentum in [0, 1)");
        }
        Ok(())
    }

    /// T of epoch `epoch` (from 1).
    fn gibbs_steps(&self, epoch: usize) -> usize {
        let stage = (epoch.saturating_sub(1) / self.cd_stage_epochs).min(self.cd_steps.len() - 1);
        self.cd_steps[stage]
    }
}

/// The shared parameters.
#[derive(Debug, Clone, PartialEq)]
struct Params {
    /// `(items * levels) x hidden`: row `i * levels + k` is W_i^{k.}.
    w: Vec<f32>,
    /// `items * levels` visible biases b_i^k.
    b: Vec<f32>,
    /// `hidden` biases b_j.
    c: Vec<f32>,
}

/// A trained RBM-CF.
pub struct Rbm {
    config: RbmConfig,
    params: Params,
    /// The rating value of each level, ascending.
    levels: Vec<f32>,
    /// Each user's fitted ratings as (item, level), the evidence at prediction time.
    rated: Vec<Vec<(u32, u8)>>,
    items: usize,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Rbm {
    /// Trains on `train` (indices below `num_users` / `num_items`), keeping the epoch with the
    /// lowest RMSE on `valid`. The ratings must take at most [`MAX_LEVELS`] distinct values.
    pub fn train(
        config: &RbmConfig,
        num_users: usize,
        num_items: usize,
        train: &Ratings,
        valid: &Ratings,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        let compute = &Compute::FusedCpu;
        Self::train_with(
            compute, config, num_users, num_items, train, valid, progress,
        )
    }

    /// [`Self::train`] computing as `compute` says (a GPU: [`Compute::Candle`]).
    pub fn train_with(
        compute: &Compute,
        config: &RbmConfig,
        num_users: usize,
        num_items: usize,
        train: &Ratings,
        valid: &Ratings,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        config.validate()?;
        train.validate(num_users, num_items)?;
        valid.validate(num_users, num_items)?;
        if train.is_empty() {
            return Err(RankingError::NoTrainingData);
        }
        let mut levels: Vec<f32> = train.values.clone();
        levels.sort_by(f32::total_cmp);
        levels.dedup();
        if levels.len() > MAX_LEVELS {
            return Err(RankingError::InvalidConfig(format!(
                "RBM-CF needs discrete ratings: the ratings take {} distinct values (at most {MAX_LEVELS})",
                levels.len()
            )));
        }
        let k = levels.len();
        let mut rated = vec![Vec::new(); num_users];
        let mut counts = vec![1f32; num_items * k];
        for ((&u, &i), &r) in train.users.iter().zip(&train.items).zip(&train.values) {
            let level = levels.partition_point(|&l| l < r);
            rated[u as usize].push((i, level as u8));
            counts[i as usize * k + level] += 1.0;
        }
        // Visible biases start at the log of each item's level frequencies (section 2.2's
        // "log of their respective base rates"), smoothed by one count per level.
        let mut b = vec![0f32; num_items * k];
        for (bi, ci) in b.chunks_mut(k).zip(counts.chunks(k)) {
            let total: f32 = ci.iter().sum();
            bi.iter_mut()
                .zip(ci)
                .for_each(|(b, c)| *b = (c / total).ln());
        }
        let mut rng = Rng::new(config.seed);
        let f = config.hidden;
        let w: Vec<f32> = (0..num_items * k * f)
            .map(|_| (config.init_std * rng.normal()) as f32)
            .collect();
        let users: Vec<u32> = (0..num_users as u32)
            .filter(|&u| !rated[u as usize].is_empty())
            .collect();
        let model = Self {
            params: Params {
                w,
                b,
                c: vec![0.0; f],
            },
            config: config.clone(),
            levels,
            rated,
            items: num_items,
        };
        let velocity = Params {
            w: vec![0.0; model.params.w.len()],
            b: vec![0.0; model.params.b.len()],
            c: vec![0.0; f],
        };
        let on_device = match compute {
            Compute::FusedCpu => None,
            Compute::Candle(device) => Some(device::DeviceParams::new(
                &model.params,
                &model.levels,
                f,
                device,
            )?),
        };
        let mut run = train::Run {
            on_device,
            batches: ShuffledBatches::new(users.len(), config.batch_size),
            grads: velocity.clone(),
            velocity,
            users,
            rng,
            model,
            valid,
            steps: 1,
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

    fn levels(&self) -> usize {
        self.levels.len()
    }

    /// Row `(item, level)` of W.
    fn w_row(&self, item: u32, level: usize) -> &[f32] {
        let (k, f) = (self.levels(), self.config.hidden);
        let row = item as usize * k + level;
        &self.params.w[row * f..(row + 1) * f]
    }

    /// p(h = 1 | V) of eq. 2 for visible units given as (item, level, weight) (weight 1 for a
    /// one-hot v, the probability for a mean-field v).
    fn hidden_probabilities(&self, visible: impl Iterator<Item = (u32, usize, f32)>) -> Vec<f32> {
        let mut h = self.params.c.clone();
        for (i, level, v) in visible {
            h.iter_mut()
                .zip(self.w_row(i, level))
                .for_each(|(h, w)| *h += v * w);
        }
        h.iter_mut().for_each(|x| *x = sigmoid(*x));
        h
    }

    /// p(v_i = . | h) of eq. 1 for one item, into `out` (`levels` values).
    fn visible_softmax(&self, item: u32, h: &[f32], out: &mut [f32]) {
        let k = self.levels();
        for (level, o) in out.iter_mut().enumerate().take(k) {
            let dot: f32 = self
                .w_row(item, level)
                .iter()
                .zip(h)
                .map(|(w, h)| w * h)
                .sum();
            *o = self.params.b[item as usize * k + level] + dot;
        }
        let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        out.iter_mut().for_each(|o| *o = (*o - max).exp());
        let sum: f32 = out.iter().sum();
        out.iter_mut().for_each(|o| *o /= sum);
    }

    /// The expected rating of `item` under the visible softmax given hidden probabilities `h`.
    fn expected_rating(&self, item: u32, h: &[f32], scratch: &mut [f32]) -> f32 {
        self.visible_softmax(item, h, scratch);
        scratch.iter().zip(&self.levels).map(|(p, l)| p * l).sum()
    }
}

impl RatingModel for Rbm {
    type Error = RankingError;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn predict(&self, users: &[u32], items: &[u32]) -> Result<Vec<f32>> {
        if users.len() != items.len()
            || users.iter().any(|&u| u as usize >= self.rated.len())
            || items.iter().any(|&i| i as usize >= self.items)
        {
            return Err(RankingError::InvalidConfig(
                "rating pairs outside the trained users and items".into(),
            ));
        }
        let mut scratch = vec![0f32; self.levels()];
        let mut cache: Option<(u32, Vec<f32>)> = None;
        let mut out = Vec::with_capacity(users.len());
        for (&u, &i) in users.iter().zip(items) {
            if cache.as_ref().map(|(cu, _)| *cu) != Some(u) {
                let visible = self.rated[u as usize]
                    .iter()
                    .map(|&(i, l)| (i, l as usize, 1.0));
                cache = Some((u, self.hidden_probabilities(visible)));
            }
            let h = cache.as_ref().map(|(_, h)| h.as_slice()).unwrap_or(&[]);
            out.push(self.expected_rating(i, h, &mut scratch));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
