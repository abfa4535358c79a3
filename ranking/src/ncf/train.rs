//! Training NCF models: mini-batches of ratings (squared error, the epoch chosen by validation
//! RMSE) or of observed pairs with sampled negatives (log loss, the epoch chosen by validation
//! HR@10), row-sparse embedding updates, Adam on the tower and output weights.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use nn::bag::RowGrads;
use nn::layers::EmbeddingTable;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::portable::TouchedRows;
use nn::rating::{LabelledPairs, RatingModel, Ratings};
use nn::rng::Rng;
use nn::trainer::{
    self, Better, EpochReport, Fit, Schedule, ShuffledBatches, StepLoss, TrainReport,
};

use super::{Implicit, Ncf, NcfKind};
use crate::error::{RankingError, Result};

/// What a model trains on.
#[derive(Clone, Copy)]
pub(super) enum Data<'a> {
    /// Training and validation ratings.
    Ratings(&'a Ratings, &'a Ratings),
    /// Observed pairs, negatives drawn from the rest.
    Implicit(&'a Implicit<'a>),
    /// Labelled, weighted impressions (training and validation).
    Labelled(&'a LabelledPairs, &'a LabelledPairs),
}

/// Trains `model` from its current weights, keeping the epoch with the best validation figure;
/// on `model.config.compute`'s device, returning the model in host memory.
pub(super) fn fit(
    model: Ncf,
    data: Data,
    progress: impl FnMut(&EpochReport),
) -> Result<(Ncf, TrainReport)> {
    let config = model.config.clone();
    let compute = config.compute.clone();
    let model = model.on_device(&compute.device())?;
    let implicit = !matches!(data, Data::Ratings(..));
    let learning_rate = config.learning_rate_for(model.kind, implicit);
    let params = AdamWParams {
        lr: learning_rate,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let sparse = vec![
        (model.users.var().clone(), model.users.width()),
        (model.items.var().clone(), model.items.width()),
    ];
    // MF keeps h at ones: it is not a parameter.
    let h_gmf = model.h_gmf.iter().filter(|_| model.kind != NcfKind::Mf);
    let mut dense: Vec<Var> = h_gmf.chain(&model.h_mlp).cloned().collect();
    for l in &model.tower {
        dense.push(Var::from_tensor(l.weight())?);
        if let Some(b) = l.bias() {
            dense.push(Var::from_tensor(b)?);
        }
    }
    let positives = match data {
        Data::Ratings(train, _) => train.len(),
        Data::Implicit(d) => d.seen.iter().map(Vec::len).sum(),
        Data::Labelled(train, _) => train.len(),
    };
    // The weighted loss is scaled by 1 / (batch x mean weight), as the YouTube ranker's.
    let mean_weight = match data {
        Data::Labelled(train, _) => {
            let sum: f64 = train.weights.iter().map(|&w| f64::from(w)).sum();
            (sum / train.len().max(1) as f64).max(f64::MIN_POSITIVE)
        }
        _ => 1.0,
    };
    let pairs: Vec<(u32, u32)> = match data {
        Data::Ratings(..) | Data::Labelled(..) => Vec::new(),
        Data::Implicit(d) => d
            .seen
            .iter()
            .enumerate()
            .flat_map(|(u, items)| items.iter().map(move |&i| (u as u32, i)))
            .collect(),
    };
    let mut run = Run {
        optimizer: InPlaceAdamW::for_compute(&compute, dense, sparse, params)?,
        fused: compute.is_fused_cpu(),
        user_grads: RowGrads::new(model.users.rows(), model.users.width()),
        item_grads: RowGrads::new(model.items.rows(), model.items.width()),
        rng: Rng::new(config.seed ^ 0x0C_F0A1),
        batches: ShuffledBatches::new(positives, config.batch_size),
        l2: config.l2_for(model.kind, implicit),
        mean_weight,
        model,
        data,
        pairs,
    };
    let schedule = Schedule {
        epochs: config.epochs,
        patience: config.patience,
        learning_rate,
        final_lr_fraction: 1.0,
    };
    // HR@10 on implicit feedback; RMSE or the weighted log loss otherwise.
    let better = match data {
        Data::Implicit(_) => Better::Higher,
        Data::Ratings(..) | Data::Labelled(..) => Better::Lower,
    };
    let report = trainer::train(&mut run, &schedule, better, progress)?;
    Ok((run.model.on_device(&Device::Cpu)?, report))
}

/// One training run.
struct Run<'a> {
    model: Ncf,
    data: Data<'a>,
    /// Implicit feedback: every observed (user, item) pair.
    pairs: Vec<(u32, u32)>,
    l2: f64,
    /// Mean weight of the labelled training pairs (1 otherwise).
    mean_weight: f64,
    optimizer: InPlaceAdamW,
    /// Fused CPU kernels, or candle ops on the model's device.
    fused: bool,
    user_grads: RowGrads,
    item_grads: RowGrads,
    rng: Rng,
    batches: ShuffledBatches,
}

impl Run<'_> {
    /// Users, items, targets and weights of step `step`: the batch's ratings or labelled
    /// pairs, or its observed pairs (target 1) each followed by `negatives` unobserved items of
    /// the same user (target 0), all weighing 1.
    fn examples(&mut self, step: usize) -> (Vec<u32>, Vec<u32>, Vec<f32>, Vec<f32>) {
        let batch = self.batches.batch(step);
        match self.data {
            Data::Ratings(train, _) => (
                batch.iter().map(|&k| train.users[k]).collect(),
                batch.iter().map(|&k| train.items[k]).collect(),
                batch.iter().map(|&k| train.values[k]).collect(),
                vec![1.0; batch.len()],
            ),
            Data::Labelled(train, _) => (
                batch.iter().map(|&k| train.users[k]).collect(),
                batch.iter().map(|&k| train.items[k]).collect(),
                batch.iter().map(|&k| train.labels[k]).collect(),
                batch.iter().map(|&k| train.weights[k]).collect(),
            ),
            Data::Implicit(d) => {
                let per = 1 + self.model.config.negatives;
                let mut out = (
                    Vec::with_capacity(batch.len() * per),
                    Vec::with_capacity(batch.len() * per),
                    Vec::with_capacity(batch.len() * per),
                );
                for &k in batch {
                    let (u, i) = self.pairs[k];
                    out.0.push(u);
                    out.1.push(i);
                    out.2.push(1.0);
                    let seen = &d.seen[u as usize];
                    for _ in 1..per {
                        // Uniform over the unobserved items (validation keeps at least one).
                        let j = loop {
                            let j = self.rng.below(d.num_items) as u32;
                            if seen.binary_search(&j).is_err() {
                                break j;
                            }
                        };
                        out.0.push(u);
                        out.1.push(j);
                        out.2.push(0.0);
                    }
                }
                let ones = vec![1.0; out.0.len()];
                (out.0, out.1, out.2, ones)
            }
        }
    }
}

impl Fit for Run<'_> {
    type Error = RankingError;
    type Snapshot = HashMap<String, Tensor>;

    fn examples_per_epoch(&self) -> usize {
        self.batches.len()
    }

    fn steps_per_epoch(&self) -> usize {
        self.batches.steps()
    }

    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        self.batches.shuffle(&mut self.rng);
        Ok(())
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepLoss> {
        let (users, items, targets, weights) = self.examples(step);
        // Fused: one leaf row per example. Candle ops: each table's distinct rows as a leaf,
        // read per example, so the leaf's gradient is the table's row-sparse gradient.
        let (leaves, rows) = if self.fused {
            let pu = self.model.users.gather(&users)?;
            let qi = self.model.items.gather(&items)?;
            let rows = (pu.as_tensor().clone(), qi.as_tensor().clone());
            ([(pu, None), (qi, None)], rows)
        } else {
            let leaf = |table: &EmbeddingTable, ids: &[u32]| -> Result<(Var, Tensor, Vec<u32>)> {
                let touched = TouchedRows::of(&[ids]);
                let leaf = touched.leaf(table.var().as_tensor())?;
                let local = &touched.local[0];
                let local = Tensor::from_slice(local, local.len(), leaf.device())?;
                let read = leaf.as_tensor().index_select(&local, 0)?;
                Ok((leaf, read, touched.rows))
            };
            let (pu, p, user_rows) = leaf(&self.model.users, &users)?;
            let (qi, q, item_rows) = leaf(&self.model.items, &items)?;
            ([(pu, Some(user_rows)), (qi, Some(item_rows))], (p, q))
        };
        let (pu, qi) = (&rows.0, &rows.1);
        let device = pu.device().clone();
        let pred = self.model.forward(pu, qi)?;
        let target = Tensor::from_vec(targets, users.len(), &device)?;
        let n = users.len() as f64;
        let total_weight: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        let data_loss = match self.data {
            Data::Ratings(..) => (pred - target)?.sqr()?.sum_all()?,
            Data::Implicit(_) | Data::Labelled(..) => {
                let w = Tensor::from_vec(weights, users.len(), &device)?;
                nn::loss::weighted_bce_sum(&pred, &target, &w)?
            }
        };
        let reg = ((pu.sqr()?.sum_all()? + qi.sqr()?.sum_all()?)? * self.l2)?;
        let loss = ((data_loss.affine(1.0 / self.mean_weight, 0.0)? + reg)? / n)?;
        let summed = f64::from(data_loss.to_scalar::<f32>()?);
        let store = loss.backward()?;
        self.optimizer.set_learning_rate(lr);
        self.optimizer.begin_step();
        self.optimizer.step_dense(&store)?;
        let [(pu, user_rows), (qi, item_rows)] = leaves;
        for (table, (var, rows, ids, grads)) in [
            (pu, user_rows, &users, &mut self.user_grads),
            (qi, item_rows, &items, &mut self.item_grads),
        ]
        .into_iter()
        .enumerate()
        {
            let Some(g) = store.get(var.as_tensor()) else {
                continue;
            };
            if let Some(rows) = rows {
                self.optimizer.step_rows_tensor(table, &rows, g)?;
                continue;
            }
            grads.add_rows(ids, g)?;
            let (rows, gv) = grads.take_sorted();
            self.optimizer.step_rows(table, &rows, &gv)?;
        }
        Ok(StepLoss {
            sum: summed,
            weight: total_weight,
        })
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        match self.data {
            Data::Ratings(_, valid) => self.model.validation_rmse(valid),
            Data::Implicit(d) => self.model.hit_rate_at_10(d.validation),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ncf::NcfConfig;

    #[test]
    fn negatives_are_unobserved_items_of_the_same_user() {
        let seen = vec![vec![0, 2, 4, 6], vec![1, 3]];
        let data = Implicit {
            seen: &seen,
            num_items: 8,
            validation: &[],
        };
        let cfg = NcfConfig {
            batch_size: 6,
            negatives: 4,
            ..NcfConfig::default()
        };
        let model = Ncf::fresh_implicit(NcfKind::Gmf, &cfg, 2, 8).unwrap();
        let pairs = vec![(0, 0), (0, 2), (0, 4), (0, 6), (1, 1), (1, 3)];
        let sparse = vec![
            (model.users.var().clone(), model.users.width()),
            (model.items.var().clone(), model.items.width()),
        ];
        let mut run = Run {
            optimizer: InPlaceAdamW::new(
                Vec::new(),
                sparse,
                AdamWParams {
                    lr: 1e-3,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.0,
                },
            ),
            fused: true,
            user_grads: RowGrads::new(2, model.users.width()),
            item_grads: RowGrads::new(8, model.items.width()),
            rng: Rng::new(1),
            batches: ShuffledBatches::new(6, 6),
            l2: 0.0,
            mean_weight: 1.0,
            model,
            data: Data::Implicit(&data),
            pairs,
        };
        let (users, items, targets, weights) = run.examples(0);
        assert!(weights.iter().all(|&w| w == 1.0));
        assert_eq!(users.len(), 6 * 5);
        assert_eq!(targets.iter().filter(|&&t| t == 1.0).count(), 6);
        for ((&u, &i), &t) in users.iter().zip(&items).zip(&targets) {
            let observed = seen[u as usize].contains(&i);
            assert_eq!(observed, t == 1.0, "user {u} item {i} target {t}");
        }
    }
}
