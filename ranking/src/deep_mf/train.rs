//! Training deep MF: mini-batches of ratings (squared error, the epoch chosen by validation
//! RMSE) or of labelled, weighted pairs (weighted logistic loss, the epoch chosen by the
//! validation weighted log loss), row-sparse updates of the id and token embedding tables, Adam
//! on the tower and output weights.
//!
//! With the fused CPU kernels a batch's id rows are gathered one per example and its token
//! bags summed straight from the tables' storage; with candle ops (any device) each table's
//! distinct rows the batch reads are copied into a compact leaf, read per example with
//! `index_select` (the token bags with [`bag_sum`]), so that the leaf's gradient is the table's
//! row-sparse gradient, which the sparse AdamW applies on the device. The batches and the
//! dropout masks are drawn on the host from the same generator either way.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use nn::bag::{with_f32_data, Bags, RowGrads};
use nn::layers::EmbeddingTable;
use nn::loss::weighted_bce_sum;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::portable::{bag_sum, TouchedRows};
use nn::rating::{LabelledPairs, RatingModel, Ratings};
use nn::rng::Rng;
use nn::trainer::{
    self, Better, EpochReport, Fit, Schedule, ShuffledBatches, StepLoss, TrainReport,
};

use super::{DeepMf, Tokens};
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
/// figure (RMSE on ratings, weighted log loss on labelled pairs); on `model.config.compute`'s
/// device, returning the model in host memory.
pub(super) fn fit(
    model: DeepMf,
    data: Data,
    progress: impl FnMut(&EpochReport),
) -> Result<(DeepMf, TrainReport)> {
    let config = model.config.clone();
    let compute = config.compute.clone();
    let model = model.on_device(&compute.device())?;
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
        optimizer: InPlaceAdamW::for_compute(&compute, dense, sparse, params)?,
        fused: compute.is_fused_cpu(),
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
    Ok((run.model.on_device(&Device::Cpu)?, report))
}

/// One training run.
struct Run<'a> {
    model: DeepMf,
    data: Data<'a>,
    /// Mean weight of the labelled training pairs (1 on ratings).
    mean_weight: f64,
    optimizer: InPlaceAdamW,
    /// Fused CPU kernels, or candle ops on the model's device.
    fused: bool,
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
        let (model, fused) = (&self.model, self.fused);
        let pu = read_ids(&model.users, &users, fused)?;
        let qi = read_ids(&model.items, &items, fused)?;
        let mut sides = [None, None];
        for (slot, (side, ids)) in [(&model.user_tokens, &users), (&model.item_tokens, &items)]
            .into_iter()
            .enumerate()
        {
            if let Some(t) = side {
                sides[slot] = Some(read_tokens(t, ids, fused)?);
            }
        }
        let tokens = [0, 1].map(|s| sides[s].as_ref().map(|read| &read.value));
        let (p, q) = (&pu.value, &qi.value);
        let pred = model.forward(p, q, tokens, Some(&mut self.rng))?;
        let device = p.device().clone();
        let n = users.len() as f64;
        let target = Tensor::from_vec(targets, users.len(), &device)?;
        // The summed data loss, its scale in the step's loss, and the sum's weight.
        let (data_loss, scale, weight) = match &weights {
            None => ((pred - target)?.sqr()?.sum_all()?, 1.0 / n, n),
            Some(w) => (
                weighted_bce_sum(&pred, &target, &Tensor::from_slice(w, w.len(), &device)?)?,
                1.0 / (n * self.mean_weight),
                w.iter().map(|&w| f64::from(w)).sum(),
            ),
        };
        let reg = (p.sqr()?.sum_all()? + q.sqr()?.sum_all()?)?;
        let loss = (data_loss.affine(scale, 0.0)? + (reg * (model.config.l2 / n))?)?;
        let summed = f64::from(data_loss.to_scalar::<f32>()?);
        let store = loss.backward()?;
        self.optimizer.set_learning_rate(lr);
        self.optimizer.begin_step();
        self.optimizer.step_dense(&store)?;
        for (table, (read, ids, grads)) in [
            (pu, &users, &mut self.user_grads),
            (qi, &items, &mut self.item_grads),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(g) = store.get(read.leaf.as_tensor()) {
                read.step(&mut self.optimizer, table, g, ids, grads)?;
            }
        }
        for (read, grads) in sides.iter().zip(self.token_grads.iter_mut()) {
            let (Some(read), Some((table, grads))) = (read, grads) else {
                continue;
            };
            if let Some(g) = store.get(read.leaf.as_tensor()) {
                // A token read maps to its rows by its bags, not by the batch's ids.
                read.step(&mut self.optimizer, *table, g, &[], grads)?;
            }
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

/// What a step reads of one table: `value`, one row per example, computed from the leaf
/// variable `leaf`, whose gradient reaches the table as `to_table` says.
struct Read {
    leaf: Var,
    value: Tensor,
    to_table: ToTable,
}

/// How a [`Read`]'s leaf maps onto its table's rows.
enum ToTable {
    /// Fused kernels, id rows: leaf row k is the row of the batch's k-th id.
    PerExample,
    /// Fused kernels, token bags: leaf row k is the mean of example k's bag.
    Bags(Bags),
    /// Candle ops: the leaf holds these rows of the table (ascending), so its gradient is
    /// theirs.
    Rows(Vec<u32>),
}

/// The rows `ids` of `table`: gathered one per example (fused), or the distinct rows as a
/// compact leaf read per example with `index_select` (candle ops, on the table's device).
fn read_ids(table: &EmbeddingTable, ids: &[u32], fused: bool) -> Result<Read> {
    if fused {
        let leaf = table.gather(ids)?;
        let value = leaf.as_tensor().clone();
        return Ok(Read {
            leaf,
            value,
            to_table: ToTable::PerExample,
        });
    }
    let touched = TouchedRows::of(&[ids]);
    let leaf = touched.leaf(table.var().as_tensor())?;
    let local = &touched.local[0];
    let local = Tensor::from_slice(local, local.len(), leaf.device())?;
    let value = leaf.as_tensor().index_select(&local, 0)?;
    Ok(Read {
        leaf,
        value,
        to_table: ToTable::Rows(touched.rows),
    })
}

/// The mean token embedding of each id in `ids`: the fused bag gather, or the bags' distinct
/// token rows as a compact leaf summed per example with [`bag_sum`] (candle ops).
fn read_tokens(tokens: &Tokens, ids: &[u32], fused: bool) -> Result<Read> {
    let bags = tokens.bags(ids);
    if fused {
        let leaf = tokens.gather(&bags)?;
        let value = leaf.as_tensor().clone();
        return Ok(Read {
            leaf,
            value,
            to_table: ToTable::Bags(bags),
        });
    }
    let touched = TouchedRows::of(&[&bags.ids]);
    let leaf = touched.leaf(tokens.table.var().as_tensor())?;
    let value = bag_sum(leaf.as_tensor(), &bags, &touched.local[0])?;
    Ok(Read {
        leaf,
        value,
        to_table: ToTable::Rows(touched.rows),
    })
}

impl Read {
    /// One sparse AdamW step of table `table` from the leaf's gradient `g`: on the device for
    /// candle ops; through `grads` (the fused kernels' row-sparse gradient; `ids`, the batch's
    /// ids, are read for [`ToTable::PerExample`] only) otherwise.
    fn step(
        &self,
        optimizer: &mut InPlaceAdamW,
        table: usize,
        g: &Tensor,
        ids: &[u32],
        grads: &mut RowGrads,
    ) -> Result<()> {
        match &self.to_table {
            ToTable::Rows(rows) => return Ok(optimizer.step_rows_tensor(table, rows, g)?),
            ToTable::PerExample => grads.add_rows(ids, g)?,
            ToTable::Bags(bags) => {
                let width = grads.width();
                with_f32_data(&g.contiguous()?, |g| grads.scatter(g, 0, width, bags))?;
            }
        }
        let (rows, gv) = grads.take_sorted();
        Ok(optimizer.step_rows(table, &rows, &gv)?)
    }
}
