//! Training of any sequence model: per-user windows of the training sequence, a softmax loss
//! at every slot whose next item is a training example, Adam, early stopping on validation
//! HR@10; with the fused CPU kernels or in candle ops on a GPU ([`nn::Compute`]).

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use nn::bag::RowGrads;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::portable::{merge_row_gradients, TouchedRows};
use nn::rng::Rng;
use nn::softmax::CatalogueSoftmax;
use nn::trainer::{self, Better, Fit, Schedule, ShuffledBatches, StepLoss, TrainReport};
use nn::{Compute, Retriever, TrainingSet};

use super::{SequenceConfig, SequenceNetwork, SequenceRetriever, SequenceTraining, Windows, ITEMS};
use crate::error::{invalid, Result, RetrievalError};
use crate::warm::WarmStart;

/// One training sequence: the inputs are positions `start..end` of the user's history, and
/// each listed target position t (start < t <= end) is predicted by the slot of item t - 1.
#[derive(Debug, Clone, PartialEq)]
struct TrainWindow {
    user: u32,
    start: usize,
    end: usize,
    targets: Vec<usize>,
}

/// Cuts each user's example positions into windows of at most `max_len` inputs, from the
/// last target backwards (position 0, with nothing before it, is skipped).
fn train_windows(data: &TrainingSet, max_len: usize) -> Vec<TrainWindow> {
    let mut per_user: Vec<Vec<usize>> = vec![Vec::new(); data.histories.num_users()];
    for e in data.examples.iter().filter(|e| e.pos > 0) {
        per_user[e.user as usize].push(e.pos as usize);
    }
    let mut out = Vec::new();
    for (user, mut pos) in per_user.into_iter().enumerate() {
        pos.sort_unstable();
        pos.dedup();
        while let Some(&end) = pos.last() {
            let start = end.saturating_sub(max_len);
            let first = pos.partition_point(|&t| t <= start);
            out.push(TrainWindow {
                user: user as u32,
                start,
                end,
                targets: pos.split_off(first),
            });
        }
    }
    out
}

impl<C: SequenceConfig> SequenceRetriever<C> {
    /// Trains on `data` (early stopping on validation HR@10), from `warm`'s weights when
    /// given: known items keep their rows of the item table, new items start fresh, every
    /// other tensor is copied when its shape is unchanged.
    pub fn train(
        config: &C,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(Self, TrainReport)> {
        Self::train_with(&Compute::FusedCpu, config, data, warm, progress)
    }

    /// [`Self::train`] computing as `compute` says (a GPU: [`Compute::Candle`]); the model
    /// returned is in host memory whichever device trained it.
    pub fn train_with(
        compute: &Compute,
        config: &C,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(Self, TrainReport)> {
        config.validate()?;
        data.validate()?;
        let model = Self::build(
            config,
            VarMap::new(),
            data.catalog.num_items,
            &compute.device(),
        )?;
        if let Some(w) = warm {
            nn::vars::warm_start(&model.varmap, &w.weights, |name| {
                name.starts_with("items.").then_some(w.items.as_slice())
            })?;
        }
        let t = config.training();
        let mut run = Run::new(model, data, t.clone(), compute)?;
        let schedule = Schedule {
            epochs: t.epochs,
            patience: t.patience,
            learning_rate: t.learning_rate,
            final_lr_fraction: t.final_lr_fraction,
        };
        let report = trainer::train(&mut run, &schedule, Better::Higher, progress)?;
        Ok((run.model.into_cpu()?, report))
    }
}

/// One training run.
struct Run<'a, C: SequenceConfig> {
    model: SequenceRetriever<C>,
    settings: SequenceTraining,
    data: TrainingSet<'a>,
    windows: Vec<TrainWindow>,
    targets: usize,
    softmax: CatalogueSoftmax,
    optimizer: InPlaceAdamW,
    /// Row gradients of the item table (sampled softmax only).
    item_grads: RowGrads,
    rng: Rng,
    batches: ShuffledBatches,
    /// Fused CPU kernels, or candle ops on the model's device.
    fused: bool,
}

impl<'a, C: SequenceConfig> Run<'a, C> {
    fn new(
        model: SequenceRetriever<C>,
        data: &TrainingSet<'a>,
        cfg: SequenceTraining,
        compute: &Compute,
    ) -> Result<Self> {
        let items = model.network.items();
        let softmax = CatalogueSoftmax::new(
            &data.item_counts(),
            items,
            cfg.full_softmax_max_items,
            cfg.sampling_power,
            cfg.num_negatives,
        )?
        .with_compute(compute);
        let dense: Vec<Var> = {
            let vars = model
                .varmap
                .data()
                .lock()
                .map_err(|_| invalid("variable map lock poisoned"))?;
            let mut names: Vec<&String> = vars
                .keys()
                .filter(|k| softmax.is_full() || k.as_str() != ITEMS)
                .collect();
            names.sort();
            names.into_iter().map(|k| vars[k].clone()).collect()
        };
        let sparse = if softmax.is_full() {
            Vec::new()
        } else {
            vec![(items.var().clone(), items.width())]
        };
        let params = AdamWParams {
            lr: cfg.learning_rate,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: cfg.weight_decay,
        };
        let windows = train_windows(data, cfg.max_len);
        if windows.is_empty() {
            return Err(invalid("no training example has a watch before it"));
        }
        Ok(Self {
            targets: windows.iter().map(|w| w.targets.len()).sum(),
            batches: ShuffledBatches::new(windows.len(), cfg.batch_size),
            windows,
            item_grads: RowGrads::new(items.rows(), items.width()),
            optimizer: InPlaceAdamW::for_compute(compute, dense, sparse, params)?,
            fused: compute.is_fused_cpu(),
            rng: Rng::new(cfg.seed ^ 0x5A5_2EC0),
            data: *data,
            softmax,
            settings: cfg,
            model,
        })
    }
}

impl<C: SequenceConfig> Fit for Run<'_, C> {
    type Error = RetrievalError;
    type Snapshot = HashMap<String, Tensor>;

    fn examples_per_epoch(&self) -> usize {
        self.targets
    }

    fn steps_per_epoch(&self) -> usize {
        self.batches.steps()
    }

    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        self.batches.shuffle(&mut self.rng);
        Ok(())
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepLoss> {
        let h = self.data.histories;
        let batch: Vec<&TrainWindow> = self
            .batches
            .batch(step)
            .iter()
            .map(|&i| &self.windows[i])
            .collect();
        let len = batch.iter().map(|w| w.end - w.start).max().unwrap_or(1);
        let seqs = batch
            .iter()
            .map(|w| &h.user_items(w.user as usize)[w.start..w.end]);
        let windows = Windows::new(seqs, len);
        let mut slots = Vec::new();
        let mut targets = Vec::new();
        for (r, w) in batch.iter().enumerate() {
            let seq = h.user_items(w.user as usize);
            let first = r * len + len - (w.end - w.start);
            for &t in &w.targets {
                slots.push((first + t - 1 - w.start) as u32);
                targets.push(seq[t]);
            }
        }
        let net = &self.model.network;
        let d = self.settings.dim;
        let full = self.softmax.is_full();
        // Sampled mode: the batch's input rows as a leaf, whose gradient goes to those rows.
        let (leaf, unique) = if full {
            (None, Vec::new())
        } else {
            let mut unique: Vec<u32> = windows
                .ids
                .iter()
                .zip(&windows.mask)
                .filter(|(_, &m)| m > 0.0)
                .map(|(&i, _)| i)
                .collect();
            unique.sort_unstable();
            unique.dedup();
            let leaf = if self.fused {
                net.items().gather(&unique)?
            } else {
                TouchedRows::of(&[&unique]).leaf(net.items().var().as_tensor())?
            };
            (Some(leaf), unique)
        };
        let embeddings = match &leaf {
            None => self.model.embed_from_table(&windows)?,
            Some(leaf) => {
                // Padding slots read row 0 of the leaf; the network ignores their input.
                let local: Vec<u32> = windows
                    .ids
                    .iter()
                    .map(|i| unique.binary_search(i).unwrap_or(0) as u32)
                    .collect();
                let local = Tensor::from_vec(local, windows.ids.len(), leaf.device())?;
                leaf.as_tensor().index_select(&local, 0)?.narrow(1, 0, d)?
            }
        };
        let p = self.settings.dropout;
        let dropout = (p > 0.0).then_some((p, &mut self.rng));
        let f = net.forward(&embeddings, &windows, dropout)?;
        let slots = Tensor::from_vec(slots, targets.len(), f.device())?;
        let u = f.index_select(&slots, 0)?;
        let (loss, sampled) = self
            .softmax
            .loss(&u, net.items(), &targets, &mut self.rng)?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        let store = loss.backward()?;
        self.optimizer.set_learning_rate(lr);
        self.optimizer.begin_step();
        self.optimizer.step_dense(&store)?;
        if let (Some(leaf), false) = (&leaf, self.fused) {
            let g = store
                .get(leaf.as_tensor())
                .ok_or_else(|| invalid("no gradient reached the input embeddings"))?;
            let mut parts = vec![(unique.as_slice(), g)];
            let sampled = self.softmax.table_gradient_tensor(&store, sampled)?;
            if let Some((rows, g)) = &sampled {
                parts.push((rows.as_slice(), g));
            }
            let (rows, g) = merge_row_gradients(&parts)?;
            self.optimizer.step_rows_tensor(0, &rows, &g)?;
        } else if let Some(leaf) = leaf {
            let g = store
                .get(leaf.as_tensor())
                .ok_or_else(|| invalid("no gradient reached the input embeddings"))?;
            self.item_grads.add_rows(&unique, g)?;
            let (rows, gv) = self.softmax.table_gradient(&store, sampled)?;
            let width = self.item_grads.width();
            for (row, g) in rows.iter().zip(gv.chunks(width)) {
                self.item_grads.add(*row, 1.0, g);
            }
            let (rows, gv) = self.item_grads.take_sorted();
            self.optimizer.step_rows(0, &rows, &gv)?;
        }
        Ok(StepLoss {
            sum: value,
            weight: 1.0,
        })
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.model.validation_hit_rate(self.data.validation, None)
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
    use nn::{Catalog, Example, WatchHistories};

    #[test]
    fn windows_cover_every_target_once_with_at_most_max_len_inputs() {
        let seq: Vec<(u32, i64)> = (0..12).map(|i| (i, i as i64)).collect();
        let h = WatchHistories::from_sequences(&[seq]);
        let examples: Vec<Example> = (0..12).map(|pos| Example { user: 0, pos }).collect();
        let catalog = Catalog::without_tokens(12);
        let data = TrainingSet {
            catalog: &catalog,
            histories: &h,
            examples: &examples,
            user_features: None,
            validation: &[],
        };
        let w = train_windows(&data, 5);
        let spans: Vec<(usize, usize, Vec<usize>)> = w
            .iter()
            .map(|w| (w.start, w.end, w.targets.clone()))
            .collect();
        assert_eq!(
            spans,
            vec![
                (6, 11, vec![7, 8, 9, 10, 11]),
                (1, 6, vec![2, 3, 4, 5, 6]),
                (0, 1, vec![1]),
            ]
        );
    }
}
