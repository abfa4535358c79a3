//! Matrix factorisation as a network for ratings, the biased MF of Koren, Bell and Volinsky,
//! "Matrix Factorization Techniques for Recommender Systems" (IEEE Computer 2009), eq. 4:
//! r^_ui = mu + b_u + b_i + p_u . q_i, trained on observed ratings only with the regularised
//! squared error of eq. 5, (r_ui - r^_ui)^2 + lambda (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2),
//! averaged over a batch. User and item ids are embedding lookups (one-hot inputs) with
//! row-sparse updates; the epoch is chosen by validation RMSE. It is the biased-MF baseline of
//! EVAL.md section 4.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use nn::bag::{with_f32_data, RowGrads};
use nn::init::SeededVarMap;
use nn::layers::EmbeddingTable;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::rating::{RatingModel, Ratings};
use nn::rng::Rng;
use nn::trainer::{
    self, Better, EpochReport, Fit, Schedule, ShuffledBatches, StepLoss, TrainReport,
};
use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};

/// Registry name.
pub const KIND: &str = "mf";

/// Biased MF's settings (`[rating.mf]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MfRatingConfig {
    /// Dimension of p_u and q_i.
    pub dim: usize,
    /// lambda of eq. 5.
    pub l2: f64,
    /// Ratings per step.
    pub batch_size: usize,
    /// Maximum passes over the ratings.
    pub epochs: usize,
    /// Stop after this many epochs without a lower validation RMSE (0 = never).
    pub patience: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Standard deviation of the initial factors and biases.
    pub init_std: f64,
    /// Seed of the initialisation and the shuffles.
    pub seed: u64,
}

impl Default for MfRatingConfig {
    fn default() -> Self {
        Self {
            dim: 32,
            l2: 0.1,
            batch_size: 256,
            epochs: 40,
            patience: 3,
            learning_rate: 5e-3,
            init_std: 0.05,
            seed: 42,
        }
    }
}

impl MfRatingConfig {
    /// Rejects settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(RankingError::InvalidConfig(format!("[rating.mf] {m}")));
        if self.dim == 0 || self.batch_size == 0 {
            return bad("dim and batch_size must be positive");
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.learning_rate) || !positive(self.init_std) {
            return bad("learning_rate and init_std must be finite and positive");
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return bad("l2 must be finite and >= 0");
        }
        Ok(())
    }
}

/// A trained biased MF rating model. Row j of each table is `[factors, bias]`.
pub struct MfRating {
    config: MfRatingConfig,
    varmap: VarMap,
    users: EmbeddingTable,
    items: EmbeddingTable,
    mean: f32,
}

impl MfRating {
    /// Trains on `train` (indices below `num_users` / `num_items`), keeping the epoch with the
    /// lowest RMSE on `valid`.
    pub fn train(
        config: &MfRatingConfig,
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
        let varmap = VarMap::new();
        let vb = SeededVarMap::new(varmap.clone(), config.seed).into_var_builder(&Device::Cpu);
        let w = config.dim + 1;
        let model = Self {
            users: EmbeddingTable::new(vb.pp("users"), num_users, w, config.init_std)?,
            items: EmbeddingTable::new(vb.pp("items"), num_items, w, config.init_std)?,
            config: config.clone(),
            varmap,
            mean: train.mean() as f32,
        };
        let params = AdamWParams {
            lr: config.learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let sparse = vec![
            (model.users.var().clone(), w),
            (model.items.var().clone(), w),
        ];
        let mut run = Run {
            optimizer: InPlaceAdamW::new(Vec::new(), sparse, params),
            user_grads: RowGrads::new(num_users, w),
            item_grads: RowGrads::new(num_items, w),
            rng: Rng::new(config.seed ^ 0xA7_0EC0),
            batches: ShuffledBatches::new(train.len(), config.batch_size),
            model,
            train,
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

    /// The training mean mu.
    pub fn mean(&self) -> f32 {
        self.mean
    }

    /// r^ for one pair from the tables' rows.
    fn predict_rows(&self, u: &[f32], i: &[f32]) -> f32 {
        let d = self.config.dim;
        let dot: f32 = u[..d].iter().zip(&i[..d]).map(|(a, b)| a * b).sum();
        self.mean + u[d] + i[d] + dot
    }
}

impl RatingModel for MfRating {
    type Error = RankingError;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn predict(&self, users: &[u32], items: &[u32]) -> Result<Vec<f32>> {
        let w = self.config.dim + 1;
        let (nu, ni) = (self.users.rows(), self.items.rows());
        if users.len() != items.len()
            || users.iter().any(|&u| u as usize >= nu)
            || items.iter().any(|&i| i as usize >= ni)
        {
            return Err(RankingError::InvalidConfig(
                "rating pairs outside the trained users and items".into(),
            ));
        }
        let out = with_f32_data(self.users.var().as_tensor(), |p| {
            with_f32_data(self.items.var().as_tensor(), |q| {
                users
                    .iter()
                    .zip(items)
                    .map(|(&u, &i)| {
                        let (u, i) = (u as usize, i as usize);
                        self.predict_rows(&p[u * w..(u + 1) * w], &q[i * w..(i + 1) * w])
                    })
                    .collect::<Vec<f32>>()
            })
        })??;
        Ok(out)
    }
}

/// One training run.
struct Run<'a> {
    model: MfRating,
    train: &'a Ratings,
    valid: &'a Ratings,
    optimizer: InPlaceAdamW,
    user_grads: RowGrads,
    item_grads: RowGrads,
    rng: Rng,
    batches: ShuffledBatches,
}

impl Fit for Run<'_> {
    type Error = RankingError;
    type Snapshot = HashMap<String, Tensor>;

    fn examples_per_epoch(&self) -> usize {
        self.train.len()
    }

    fn steps_per_epoch(&self) -> usize {
        self.batches.steps()
    }

    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        self.batches.shuffle(&mut self.rng);
        Ok(())
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepLoss> {
        let cfg = &self.model.config;
        let d = cfg.dim;
        let batch = self.batches.batch(step);
        let users: Vec<u32> = batch.iter().map(|&k| self.train.users[k]).collect();
        let items: Vec<u32> = batch.iter().map(|&k| self.train.items[k]).collect();
        let targets: Vec<f32> = batch
            .iter()
            .map(|&k| self.train.values[k] - self.model.mean)
            .collect();
        let pu = self.model.users.gather(&users)?;
        let qi = self.model.items.gather(&items)?;
        let (p, q) = (pu.as_tensor(), qi.as_tensor());
        let dot = (p.narrow(1, 0, d)? * q.narrow(1, 0, d)?)?.sum(1)?;
        let pred = ((dot + p.narrow(1, d, 1)?.squeeze(1)?)? + q.narrow(1, d, 1)?.squeeze(1)?)?;
        let target = Tensor::from_vec(targets, batch.len(), &Device::Cpu)?;
        let sq = (pred - target)?.sqr()?;
        let reg = ((p.sqr()?.sum(1)? + q.sqr()?.sum(1)?)? * cfg.l2)?;
        let n = batch.len() as f64;
        let loss = ((sq.sum_all()? + reg.sum_all()?)? / n)?;
        let squared_error = f64::from(sq.sum_all()?.to_scalar::<f32>()?);
        let store = loss.backward()?;
        self.optimizer.set_learning_rate(lr);
        self.optimizer.begin_step();
        for (table, (var, ids, grads)) in [
            (pu, &users, &mut self.user_grads),
            (qi, &items, &mut self.item_grads),
        ]
        .into_iter()
        .enumerate()
        {
            let g = store.get(var.as_tensor()).ok_or_else(|| {
                RankingError::InvalidConfig("no gradient reached the factors".into())
            })?;
            grads.add_rows(ids, g)?;
            let (rows, gv) = grads.take_sorted();
            self.optimizer.step_rows(table, &rows, &gv)?;
        }
        Ok(StepLoss {
            sum: squared_error,
            weight: n,
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
mod tests {
    use super::*;
    use nn::rating::rmse;

    /// Ratings from hidden rank-2 tastes plus user and item biases: r = 3 + a_u + c_i + x_u . y_i.
    fn synthetic(users: usize, items: usize, seed: u64) -> (Ratings, Ratings) {
        let mut rng = Rng::new(seed);
        let x: Vec<[f32; 2]> = (0..users)
            .map(|_| [rng.normal() as f32, rng.normal() as f32])
            .collect();
        let y: Vec<[f32; 2]> = (0..items)
            .map(|_| [rng.normal() as f32, rng.normal() as f32])
            .collect();
        let a: Vec<f32> = (0..users).map(|_| 0.5 * rng.normal() as f32).collect();
        let c: Vec<f32> = (0..items).map(|_| 0.5 * rng.normal() as f32).collect();
        let (mut train, mut valid) = (Ratings::default(), Ratings::default());
        for u in 0..users {
            for i in 0..items {
                if rng.uniform() < 0.5 {
                    let r = 3.0 + a[u] + c[i] + x[u][0] * y[i][0] + x[u][1] * y[i][1];
                    let part = if rng.uniform() < 0.8 {
                        &mut train
                    } else {
                        &mut valid
                    };
                    part.users.push(u as u32);
                    part.items.push(i as u32);
                    part.values.push(r);
                }
            }
        }
        (train, valid)
    }

    #[test]
    fn learns_low_rank_ratings_far_below_the_mean_baseline() {
        let (train, valid) = synthetic(60, 50, 3);
        let cfg = MfRatingConfig {
            dim: 4,
            l2: 0.001,
            batch_size: 64,
            epochs: 60,
            patience: 0,
            learning_rate: 0.03,
            ..MfRatingConfig::default()
        };
        let (model, report) = MfRating::train(&cfg, 60, 50, &train, &valid, |_| {}).unwrap();
        let mean = vec![model.mean(); valid.len()];
        let baseline = rmse(&mean, &valid.values);
        let fitted = report.best_validation.unwrap();
        assert!(fitted < 0.5 * baseline, "MF {fitted} vs mean {baseline}");
        // Prediction reads mu + b_u + b_i + p_u . q_i for any pair, and refuses unknown ids.
        assert_eq!(model.predict(&[0, 59], &[0, 49]).unwrap().len(), 2);
        assert!(model.predict(&[60], &[0]).is_err());
    }
}
