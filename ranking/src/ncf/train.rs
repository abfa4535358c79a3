//! Training NCF models: mini-batches of ratings, row-sparse embedding updates, Adam on the
//! tower and output weights, the epoch chosen by validation RMSE.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use nn::bag::RowGrads;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::rating::{RatingModel, Ratings};
use nn::rng::Rng;
use nn::trainer::{
    self, Better, EpochReport, Fit, Schedule, ShuffledBatches, StepLoss, TrainReport,
};

use super::Ncf;
use crate::error::{RankingError, Result};

/// Trains `model` from its current weights, keeping the epoch with the lowest validation RMSE.
pub(super) fn fit(
    model: Ncf,
    train: &Ratings,
    valid: &Ratings,
    progress: impl FnMut(&EpochReport),
) -> Result<(Ncf, TrainReport)> {
    let config = model.config.clone();
    let params = AdamWParams {
        lr: config.learning_rate,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let sparse = vec![
        (model.users.var().clone(), model.users.width()),
        (model.items.var().clone(), model.items.width()),
    ];
    let mut dense: Vec<Var> = model.h_gmf.iter().chain(&model.h_mlp).cloned().collect();
    for l in &model.tower {
        dense.push(Var::from_tensor(l.weight())?);
        if let Some(b) = l.bias() {
            dense.push(Var::from_tensor(b)?);
        }
    }
    let mut run = Run {
        optimizer: InPlaceAdamW::new(dense, sparse, params),
        user_grads: RowGrads::new(model.users.rows(), model.users.width()),
        item_grads: RowGrads::new(model.items.rows(), model.items.width()),
        rng: Rng::new(config.seed ^ 0x0C_F0A1),
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

/// One training run.
struct Run<'a> {
    model: Ncf,
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
        let batch = self.batches.batch(step);
        let users: Vec<u32> = batch.iter().map(|&k| self.train.users[k]).collect();
        let items: Vec<u32> = batch.iter().map(|&k| self.train.items[k]).collect();
        let targets: Vec<f32> = batch.iter().map(|&k| self.train.values[k]).collect();
        let pu = self.model.users.gather(&users)?;
        let qi = self.model.items.gather(&items)?;
        let pred = self.model.forward(pu.as_tensor(), qi.as_tensor())?;
        let target = Tensor::from_vec(targets, batch.len(), &Device::Cpu)?;
        let sq = (pred - target)?.sqr()?;
        let reg = ((pu.as_tensor().sqr()?.sum_all()? + qi.as_tensor().sqr()?.sum_all()?)?
            * self.model.config.l2)?;
        let n = batch.len() as f64;
        let loss = ((sq.sum_all()? + reg)? / n)?;
        let squared_error = f64::from(sq.sum_all()?.to_scalar::<f32>()?);
        let store = loss.backward()?;
        self.optimizer.set_learning_rate(lr);
        self.optimizer.begin_step();
        self.optimizer.step_dense(&store)?;
        for (table, (var, ids, grads)) in [
            (pu, &users, &mut self.user_grads),
            (qi, &items, &mut self.item_grads),
        ]
        .into_iter()
        .enumerate()
        {
            let Some(g) = store.get(var.as_tensor()) else {
                continue;
            };
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
