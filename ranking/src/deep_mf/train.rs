//! Training deep MF: mini-batches of ratings (squared error, the epoch chosen by validation
//! RMSE) or of labelled, weighted pairs (weighted logistic loss, the epoch chosen by the
//! validation weighted log loss), row-sparse updates of the id and token embedding tables, Adam
//! on the tower and output weights.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use nn::bag::{with_f32_data, RowGrads};
use nn::loss::weighted_bce_sum;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::rating::{LabelledPairs, RatingModel, Ratings};
use nn::rng::Rng;
use nn::trainer::{
    self, Better, EpochReport, Fit, Schedule, ShuffledBatches, StepLoss, TrainReport,
};

use super::DeepMf;
use crate::error::{RankingError, Result};

/// What a model trains on: (training, validation) examples.
#[derive(Clone, Copy)]
pub(super) enum Data<'a> {
    /// Ratings: squared error, validation RMSE.
    Ratings(&'a Ratings, &'a Ratings),
    /// Labelled, weighted pairs: weighted logistic loss, validation weighted log loss.
    Labelled(&'a LabelledPairs, &'a LabelledPairs),
}

impl Data<'_> {
    /// Number of training examples.
    fn len(&self) -> usize {
        match self {
            Data::Ratings(train, _) => train.len(),
            Data::Labelled(train, _) => train.len(),
        }
    }
}

/// Trains `model` from its current weights, keeping the epoch with the lowest validation
/// figure (RMSE on ratings, weighted log loss on labelled pairs).
pub(super) fn fit(
    model: DeepMf,
    data: Data,
    progress: impl FnMut(&EpochReport),
) -> Result<(DeepMf, TrainReport)> {
    let config = model.config.clone();
    // The weighted loss is scaled by 1 / (batch x mean weight), as the YouTube ranker's.
    let mean_weight = match data {
        Data::Ratings(..) => 1.0,
        Data::Labelled(train, _) => {
            let sum: f64 = train.weights.iter().map(|&w| f64::from(w)).sum();
            (sum / train.len().max(1) as f64).max(f64::MIN_POSITIVE)
        }
    };
    let params = AdamWParams {
        lr: config.learning_rate,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    // Sparse tables: 0 users, 1 items, then the token tables present, in that order.
    let mut sparse = vec![
        (model.users.var().clone(), model.users.width()),
        (model.items.var().clone(), model.items.width()),
    ];
    let mut token_grads = [None, None];
    for (slot, side) in [&model.user_tokens, &model.item_tokens]
        .into_iter()
        .enumerate()
    {
        if let Some(t) = side {
            let table = &t.table;
            token_grads[slot] = Some((sparse.len(), RowGrads::new(table.rows(), table.width())));
            sparse.push((table.var().clone(), table.width()));
        }
    }
    let mut dense = vec![model.h.clone()];
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
        token_grads,
        rng: Rng::new(config.seed ^ 0x00DE_E93F),
        batches: ShuffledBatches::new(data.len(), config.batch_size),
        model,
        data,
        mean_weight,
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
    model: DeepMf,
    data: Data<'a>,
    /// Mean weight of the labelled training pairs (1 on ratings).
    mean_weight: f64,
    optimizer: InPlaceAdamW,
    user_grads: RowGrads,
    item_grads: RowGrads,
    /// (sparse table index, gradient) of the user and of the item token table.
    token_grads: [Option<(usize, RowGrads)>; 2],
    rng: Rng,
    batches: ShuffledBatches,
}

impl Fit for Run<'_> {
    type Error = RankingError;
    type Snapshot = HashMap<String, Tensor>;

    fn examples_per_epoch(&self) -> usize {
        self.data.len()
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
        let ids = |v: &[u32]| -> Vec<u32> { batch.iter().map(|&k| v[k]).collect() };
        let pick = |v: &[f32]| -> Vec<f32> { batch.iter().map(|&k| v[k]).collect() };
        // Targets, and weights on labelled pairs.
        let (users, items, targets, weights) = match self.data {
            Data::Ratings(t, _) => (ids(&t.users), ids(&t.items), pick(&t.values), None),
            Data::Labelled(t, _) => (
                ids(&t.users),
                ids(&t.items),
                pick(&t.labels),
                Some(pick(&t.weights)),
            ),
        };
        let model = &self.model;
        let pu = model.users.gather(&users)?;
        let qi = model.items.gather(&items)?;
        let mut sides = [None, None];
        for (slot, (side, ids)) in [(&model.user_tokens, &users), (&model.item_tokens, &items)]
            .into_iter()
            .enumerate()
        {
            if let Some(t) = side {
                let bags = t.bags(ids);
                sides[slot] = Some((t.gather(&bags)?, bags));
            }
        }
        let tokens = [0, 1].map(|s| sides[s].as_ref().map(|(leaf, _)| leaf.as_tensor()));
        let pred = model.forward(pu.as_tensor(), qi.as_tensor(), tokens, Some(&mut self.rng))?;
        let n = users.len() as f64;
        let target = Tensor::from_vec(targets, users.len(), &Device::Cpu)?;
        // The summed data loss, its scale in the step's loss, and the sum's weight.
        let (data_loss, scale, weight) = match &weights {
            None => ((pred - target)?.sqr()?.sum_all()?, 1.0 / n, n),
            Some(w) => (
                weighted_bce_sum(
                    &pred,
                    &target,
                    &Tensor::from_slice(w, w.len(), &Device::Cpu)?,
                )?,
                1.0 / (n * self.mean_weight),
                w.iter().map(|&w| f64::from(w)).sum(),
            ),
        };
        let reg = (pu.as_tensor().sqr()?.sum_all()? + qi.as_tensor().sqr()?.sum_all()?)?;
        let loss = (data_loss.affine(scale, 0.0)? + (reg * (model.config.l2 / n))?)?;
        let summed = f64::from(data_loss.to_scalar::<f32>()?);
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
        for (side, grads) in sides.iter().zip(self.token_grads.iter_mut()) {
            let (Some((leaf, bags)), Some((table, grads))) = (side, grads) else {
                continue;
            };
            let Some(g) = store.get(leaf.as_tensor()) else {
                continue;
            };
            let width = grads.width();
            with_f32_data(&g.contiguous()?, |g| grads.scatter(g, 0, width, bags))?;
            let (rows, gv) = grads.take_sorted();
            self.optimizer.step_rows(*table, &rows, &gv)?;
        }
        Ok(StepLoss {
            sum: summed,
            weight,
        })
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        match self.data {
            Data::Ratings(_, valid) => self.model.validation_rmse(valid),
            Data::Labelled(_, valid) if valid.is_empty() => Ok(None),
            Data::Labelled(_, valid) => {
                let logits = self.model.predict(&valid.users, &valid.items)?;
                Ok(Some(valid.weighted_log_loss(&logits)))
            }
        }
    }

    fn snapshot(&self) -> Result<Self::Snapshot> {
        Ok(nn::vars::snapshot(&self.model.varmap)?)
    }

    fn restore(&mut self, snapshot: Self::Snapshot) -> Result<()> {
        Ok(nn::vars::restore(&self.model.varmap, &snapshot)?)
    }
}
