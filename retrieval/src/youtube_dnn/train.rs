//! Training: batches of rolled-back examples, sampled or full softmax, in-place AdamW, run by
//! the shared trainer with early stopping on validation HR@10; with the fused CPU kernels or
//! in candle ops on a GPU ([`nn::Compute`]), the same batches and random draws either way.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use nn::bag::{with_f32_data, RowGrads};
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::rng::Rng;
use nn::softmax::CatalogueSoftmax;
use nn::trainer::{self, Better, Fit, Schedule, ShuffledBatches, StepLoss, TrainReport};
use nn::{Compute, Example, Retriever, TrainingSet, UserFeatures};

use super::config::YoutubeDnnConfig;
use super::network::{FeatureSource, ItemTokens, TowerInputs, Vocabulary};
use super::YoutubeDnn;
use crate::error::{invalid, Result, RetrievalError};
use crate::warm::WarmStart;

const SECONDS_PER_DAY: f64 = 86_400.0;

/// Sparse gradients of the embedding tables, in the optimiser's sparse-table order.
struct TableGrads {
    items: RowGrads,
    tokens: Option<RowGrads>,
    user: Vec<RowGrads>,
}

/// One training run's state: the model, its optimiser and the example order.
struct Run<'a> {
    model: YoutubeDnn,
    data: TrainingSet<'a>,
    features: Option<&'a UserFeatures>,
    softmax: CatalogueSoftmax,
    optimizer: InPlaceAdamW,
    grads: TableGrads,
    rng: Rng,
    batches: ShuffledBatches,
    /// Normalised age of each example.
    ages: Vec<f32>,
    /// Fused CPU kernels, or candle ops on the model's device.
    compute: Compute,
}

impl YoutubeDnn {
    /// Trains a model on `data`, selecting the epoch with the best validation HR@10 and
    /// stopping after `cfg.patience` epochs without improvement; starts from `warm`'s weights
    /// when given.
    pub fn train(
        cfg: &YoutubeDnnConfig,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(YoutubeDnn, TrainReport)> {
        Self::train_with(&Compute::FusedCpu, cfg, data, warm, progress)
    }

    /// [`Self::train`] computing as `compute` says (a GPU: [`Compute::Candle`]); the model
    /// returned is in host memory whichever device trained it.
    pub fn train_with(
        compute: &Compute,
        cfg: &YoutubeDnnConfig,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(YoutubeDnn, TrainReport)> {
        cfg.validate()?;
        data.validate()?;
        let features = data.user_features.filter(|_| cfg.use_user_features);
        let vocab = Vocabulary {
            num_items: data.catalog.num_items,
            num_tokens: data.catalog.num_tokens,
            user_cardinalities: features.map_or(Vec::new(), |f| f.cardinalities.clone()),
            num_numeric: features.map_or(0, |f| f.num_numeric),
        };
        let tokens = ItemTokens::from_lists(&data.catalog.item_tokens)?;
        let model = YoutubeDnn::init(cfg, vocab, tokens, &compute.device())?;
        if let Some(w) = warm {
            nn::vars::warm_start(&model.varmap, &w.weights, |name| {
                if name.starts_with("items.") || name.starts_with("softmax.") {
                    Some(w.items.as_slice())
                } else if name.starts_with("tokens.") {
                    Some(w.tokens.as_slice())
                } else {
                    None
                }
            })?;
        }
        let mut run = Run::new(model, data, features, compute)?;
        let schedule = Schedule {
            epochs: cfg.epochs,
            patience: cfg.patience,
            learning_rate: cfg.learning_rate,
            final_lr_fraction: cfg.final_lr_fraction,
        };
        let report = trainer::train(&mut run, &schedule, Better::Higher, progress)?;
        Ok((run.model.into_cpu()?, report))
    }
}

impl<'a> Run<'a> {
    fn new(
        model: YoutubeDnn,
        data: &TrainingSet<'a>,
        features: Option<&'a UserFeatures>,
        compute: &Compute,
    ) -> Result<Self> {
        let cfg = model.config.clone();
        let net = &model.network;
        let softmax = CatalogueSoftmax::new(
            &data.item_counts(),
            &net.softmax,
            cfg.full_softmax_max_items,
            cfg.sampling_power,
            cfg.num_negatives,
        )?
        .with_compute(compute);

        // Example ages, normalised to [0, 1] by the oldest example.
        let h = data.histories;
        let end = h.times.iter().copied().max().unwrap_or(0);
        let age_days = |e: &Example| {
            let t = h.times[h.offsets[e.user as usize] + e.pos as usize];
            ((end - t).max(0) as f64 / SECONDS_PER_DAY) as f32
        };
        let ages: Vec<f32> = data.examples.iter().map(age_days).collect();
        let max_age = ages.iter().copied().fold(0.0f32, f32::max).max(1e-6);
        let ages = ages.into_iter().map(|a| a / max_age).collect();

        let mut sparse_tables = vec![(net.items.var().clone(), net.items.width())];
        if let Some(t) = &net.tokens {
            sparse_tables.push((t.var().clone(), t.width()));
        }
        sparse_tables.extend(
            net.user_categorical
                .iter()
                .map(|t| (t.var().clone(), t.width())),
        );
        let mut dense: Vec<Var> = Vec::new();
        {
            let vars = model
                .varmap
                .data()
                .lock()
                .map_err(|_| invalid("lock poisoned"))?;
            let mut names: Vec<&String> = vars.keys().filter(|k| k.starts_with("tower.")).collect();
            names.sort();
            dense.extend(names.into_iter().map(|k| vars[k].clone()));
        }
        if softmax.is_full() {
            dense.push(net.softmax.var().clone());
        } else {
            sparse_tables.push((net.softmax.var().clone(), net.softmax.width()));
        }
        let params = AdamWParams {
            lr: cfg.learning_rate,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
        };
        let optimizer = InPlaceAdamW::for_compute(compute, dense, sparse_tables, params)?;
        let grads = TableGrads {
            items: RowGrads::new(net.items.rows(), net.items.width()),
            tokens: net
                .tokens
                .as_ref()
                .map(|t| RowGrads::new(t.rows(), t.width())),
            user: net
                .user_categorical
                .iter()
                .map(|t| RowGrads::new(t.rows(), t.width()))
                .collect(),
        };
        Ok(Self {
            rng: Rng::new(cfg.seed ^ 0x5EED_0FBA_7C4E_5EED),
            batches: ShuffledBatches::new(data.examples.len(), cfg.batch_size),
            model,
            data: *data,
            features,
            softmax,
            optimizer,
            grads,
            ages,
            compute: compute.clone(),
        })
    }
}

impl Fit for Run<'_> {
    type Error = RetrievalError;
    type Snapshot = HashMap<String, Tensor>;

    fn examples_per_epoch(&self) -> usize {
        self.data.examples.len()
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
        let batch = self.batches.batch(step);
        self.optimizer.set_learning_rate(lr);
        let data = &self.data;
        let features = self.features;
        let sources = batch.iter().map(|&i| {
            let e = &data.examples[i];
            let seq = data.histories.user_items(e.user as usize);
            let pos = e.pos as usize;
            let user = e.user as usize;
            FeatureSource {
                history: &seq[pos.saturating_sub(cfg.max_history)..pos],
                categorical: features.map_or(&[], |f| f.categorical_of(user)),
                numeric: features.map_or(&[], |f| f.numeric_of(user)),
                age: self.ages[i],
            }
        });
        let inputs = TowerInputs::build_with_dropout(
            &self.model.network.layout,
            cfg.recent_window,
            &self.model.item_tokens,
            sources,
            Some((cfg.history_dropout, &mut self.rng)),
        );
        let targets: Vec<u32> = batch
            .iter()
            .map(|&i| data.target(&data.examples[i]))
            .collect();
        let loss = if self.compute.is_fused_cpu() {
            self.model.train_step(
                &inputs,
                &targets,
                &mut self.softmax,
                &mut self.rng,
                &mut self.optimizer,
                &mut self.grads,
            )?
        } else {
            self.model.train_step_in_candle_ops(
                &inputs,
                &targets,
                &mut self.softmax,
                &mut self.rng,
                &mut self.optimizer,
            )?
        };
        Ok(StepLoss {
            sum: loss,
            weight: 1.0,
        })
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.model
            .validation_hit_rate(self.data.validation, self.features)
    }

    fn snapshot(&self) -> Result<Self::Snapshot> {
        Ok(nn::vars::snapshot(&self.model.varmap)?)
    }

    fn restore(&mut self, snapshot: Self::Snapshot) -> Result<()> {
        Ok(nn::vars::restore(&self.model.varmap, &snapshot)?)
    }
}

impl YoutubeDnn {
    /// One forward/backward/update on a batch; returns the batch loss.
    fn train_step(
        &self,
        inputs: &TowerInputs,
        targets: &[u32],
        softmax: &mut CatalogueSoftmax,
        rng: &mut Rng,
        optimizer: &mut InPlaceAdamW,
        grads: &mut TableGrads,
    ) -> Result<f64> {
        let net = &self.network;
        let layout = &net.layout;
        let stride = layout.sparse_width;
        let gathered = net.gather(inputs)?;
        let leaf = Var::from_tensor(&Tensor::from_vec(
            gathered,
            (inputs.rows, stride),
            &self.device,
        )?)?;
        let dropout = Some((self.config.dropout, &mut *rng));
        let u =
            net.user_vectors_with_dropout(leaf.as_tensor(), &inputs.dense, &self.device, dropout)?;
        let (loss, sampled) = softmax.loss(&u, &net.softmax, targets, rng)?;
        let loss_value = loss.to_scalar::<f32>()? as f64;
        let store = loss.backward()?;
        optimizer.begin_step();
        optimizer.step_dense(&store)?;

        let g = store
            .get(leaf.as_tensor())
            .ok_or_else(|| invalid("no gradient reached the embeddings"))?
            .contiguous()?;
        with_f32_data(&g, |g| {
            grads.items.scatter(g, 0, stride, &inputs.history);
            if let Some(offset) = layout.recent {
                grads.items.scatter(g, offset, stride, &inputs.recent);
            }
            if let (Some((offset, _)), Some(tg)) = (layout.tokens, grads.tokens.as_mut()) {
                tg.scatter(g, offset, stride, &inputs.tokens);
            }
            for ((ug, bags), (offset, _)) in grads
                .user
                .iter_mut()
                .zip(&inputs.user_categorical)
                .zip(&layout.user_categorical)
            {
                ug.scatter(g, *offset, stride, bags);
            }
        })?;
        let mut table = 0;
        let (rows, gv) = grads.items.take_sorted();
        optimizer.step_rows(table, &rows, &gv)?;
        if let Some(tg) = grads.tokens.as_mut() {
            table += 1;
            let (rows, gv) = tg.take_sorted();
            optimizer.step_rows(table, &rows, &gv)?;
        }
        for ug in grads.user.iter_mut() {
            table += 1;
            let (rows, gv) = ug.take_sorted();
            optimizer.step_rows(table, &rows, &gv)?;
        }
        if !softmax.is_full() {
            let (rows, gv) = softmax.table_gradient(&store, sampled)?;
            optimizer.step_rows(table + 1, &rows, &gv)?;
        }
        Ok(loss_value)
    }

    /// [`Self::train_step`] in candle ops on the model's device: the embedding tables are read
    /// through compact leaves of the rows the batch touches, whose gradients go to the sparse
    /// AdamW without leaving the device.
    fn train_step_in_candle_ops(
        &self,
        inputs: &TowerInputs,
        targets: &[u32],
        softmax: &mut CatalogueSoftmax,
        rng: &mut Rng,
        optimizer: &mut InPlaceAdamW,
    ) -> Result<f64> {
        let net = &self.network;
        let (sparse, leaves) = net.gather_leaves(inputs)?;
        let dropout = Some((self.config.dropout, &mut *rng));
        let u = net.user_vectors_with_dropout(&sparse, &inputs.dense, &self.device, dropout)?;
        let (loss, sampled) = softmax.loss(&u, &net.softmax, targets, rng)?;
        let loss_value = loss.to_scalar::<f32>()? as f64;
        let store = loss.backward()?;
        optimizer.begin_step();
        optimizer.step_dense(&store)?;
        for (table, (touched, leaf)) in leaves.iter().enumerate() {
            if let Some(g) = store.get(leaf.as_tensor()) {
                optimizer.step_rows_tensor(table, &touched.rows, g)?;
            }
        }
        if let Some((rows, g)) = softmax.table_gradient_tensor(&store, sampled)? {
            optimizer.step_rows_tensor(leaves.len(), &rows, &g)?;
        }
        Ok(loss_value)
    }
}
