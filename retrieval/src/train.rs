//! Training: batches of rolled-back examples, sampled or full softmax, in-place AdamW,
//! early stopping on validation HR@10.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Tensor, Var};

use crate::bag::{with_f32_data, RowGrads};
use crate::config::RetrievalConfig;
use crate::data::{Catalog, Example, UserFeatures, ValidationCase, WatchHistories};
use crate::error::{invalid, Result, RetrievalError};
use crate::model::RetrievalModel;
use crate::network::{FeatureSource, ItemTokens, TowerInputs, Vocabulary};
use crate::optim::{AdamWParams, InPlaceAdamW};
use crate::rng::Rng;
use crate::softmax::{full_softmax_loss, sampled_softmax_loss, NegativeSampler};

const SECONDS_PER_DAY: f64 = 86_400.0;

/// What one epoch did; handed to the progress callback.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub loss: f64,
    /// Validation HR@10 after the epoch (None without validation cases).
    pub validation_hr10: Option<f64>,
    /// Training throughput (validation time excluded).
    pub examples_per_second: f64,
}

/// Summary of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Every epoch run.
    pub epochs: Vec<EpochReport>,
    /// The epoch whose weights the model keeps (the last when there is no validation).
    pub best_epoch: usize,
    /// Validation HR@10 of the kept epoch.
    pub best_validation_hr10: Option<f64>,
    /// Whether the full softmax was used (otherwise the sampled one).
    pub full_softmax: bool,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
}

/// Sparse gradients of the embedding tables, in the optimiser's sparse-table order.
struct TableGrads {
    items: RowGrads,
    tokens: Option<RowGrads>,
    user: Vec<RowGrads>,
    softmax: Option<RowGrads>,
}

fn validate_inputs(
    catalog: &Catalog,
    histories: &WatchHistories,
    examples: &[Example],
    features: Option<&UserFeatures>,
    validation: &[ValidationCase],
) -> Result<()> {
    catalog.validate()?;
    histories.validate(catalog.num_items)?;
    let users = histories.num_users();
    if let Some(f) = features {
        f.validate(users)?;
    }
    if examples.is_empty() {
        return Err(invalid("no training examples"));
    }
    for e in examples {
        if e.user as usize >= users || e.pos as usize >= histories.user_items(e.user as usize).len()
        {
            return Err(invalid(format!(
                "example (user {}, pos {}) is outside the histories",
                e.user, e.pos
            )));
        }
    }
    for c in validation {
        let in_catalog = |i: &u32| (*i as usize) < catalog.num_items;
        if !in_catalog(&c.target) || !c.history.iter().all(in_catalog) {
            return Err(invalid(
                "a validation case names an item outside the catalogue",
            ));
        }
        if features.is_some() && c.user as usize >= users {
            return Err(invalid("a validation case names an unknown user"));
        }
    }
    Ok(())
}

/// Copies of every variable, to return to the best epoch.
fn snapshot(model: &RetrievalModel) -> Result<HashMap<String, Tensor>> {
    let data = model
        .varmap
        .data()
        .lock()
        .map_err(|_| invalid("lock poisoned"))?;
    data.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?)))
        .collect()
}

fn restore(model: &RetrievalModel, snap: &HashMap<String, Tensor>) -> Result<()> {
    let data = model
        .varmap
        .data()
        .lock()
        .map_err(|_| invalid("lock poisoned"))?;
    for (k, v) in data.iter() {
        if let Some(t) = snap.get(k) {
            v.set(t)?;
        }
    }
    Ok(())
}

impl RetrievalModel {
    /// Trains a model on `examples` (see [`Example`]), selecting the epoch with the best
    /// validation HR@10 and stopping after `cfg.patience` epochs without improvement.
    pub fn train(
        cfg: &RetrievalConfig,
        catalog: &Catalog,
        histories: &WatchHistories,
        examples: &[Example],
        user_features: Option<&UserFeatures>,
        validation: &[ValidationCase],
        progress: impl FnMut(&EpochReport),
    ) -> Result<(RetrievalModel, TrainReport)> {
        Self::train_warm(
            cfg,
            catalog,
            histories,
            examples,
            user_features,
            validation,
            None,
            progress,
        )
    }

    /// [`RetrievalModel::train`] starting from a previous model's weights when `warm` is given
    /// (see [`crate::warm`]).
    #[allow(clippy::too_many_arguments)]
    pub fn train_warm(
        cfg: &RetrievalConfig,
        catalog: &Catalog,
        histories: &WatchHistories,
        examples: &[Example],
        user_features: Option<&UserFeatures>,
        validation: &[ValidationCase],
        warm: Option<&crate::warm::WarmStart>,
        mut progress: impl FnMut(&EpochReport),
    ) -> Result<(RetrievalModel, TrainReport)> {
        let started = Instant::now();
        cfg.validate()?;
        validate_inputs(catalog, histories, examples, user_features, validation)?;
        let features = user_features.filter(|_| cfg.use_user_features);
        let vocab = Vocabulary {
            num_items: catalog.num_items,
            num_tokens: catalog.num_tokens,
            user_cardinalities: features.map_or(Vec::new(), |f| f.cardinalities.clone()),
            num_numeric: features.map_or(0, |f| f.num_numeric),
        };
        let tokens = ItemTokens::from_lists(&catalog.item_tokens)?;
        let model = RetrievalModel::init(cfg, vocab, tokens)?;
        if let Some(w) = warm {
            crate::warm::apply(&model, w)?;
        }
        let net = &model.network;
        let full = catalog.num_items <= cfg.full_softmax_max_items;

        let mut counts = vec![0u64; catalog.num_items];
        histories
            .items
            .iter()
            .for_each(|&i| counts[i as usize] += 1);
        let sampler = NegativeSampler::new(&counts, cfg.sampling_power, cfg.num_negatives)
            .ok_or_else(|| invalid("cannot build the negative sampler"))?;

        // Example ages, normalised to [0, 1] by the oldest example.
        let end = histories.times.iter().copied().max().unwrap_or(0);
        let age_days = |e: &Example| {
            let t = histories.times[histories.offsets[e.user as usize] + e.pos as usize];
            ((end - t).max(0) as f64 / SECONDS_PER_DAY) as f32
        };
        let max_age = examples
            .iter()
            .map(age_days)
            .fold(0.0f32, f32::max)
            .max(1e-6);

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
            let data = model
                .varmap
                .data()
                .lock()
                .map_err(|_| invalid("lock poisoned"))?;
            let mut names: Vec<&String> = data.keys().filter(|k| k.starts_with("tower.")).collect();
            names.sort();
            dense.extend(names.into_iter().map(|k| data[k].clone()));
        }
        if full {
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
        let mut optimizer = InPlaceAdamW::new(dense, sparse_tables, params);
        let mut grads = TableGrads {
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
            softmax: (!full).then(|| RowGrads::new(net.softmax.rows(), net.softmax.width())),
        };

        let mut rng = Rng::new(cfg.seed ^ 0x5EED_0FBA_7C4E_5EED);
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let steps_per_epoch = examples.len().div_ceil(cfg.batch_size);
        let total_steps = (steps_per_epoch * cfg.epochs).max(1);
        let mut step = 0usize;
        let mut reports = Vec::new();
        let mut best: Option<(usize, f64, HashMap<String, Tensor>)> = None;
        for epoch in 1..=cfg.epochs {
            let epoch_start = Instant::now();
            rng.shuffle(&mut order);
            let mut loss_sum = 0.0;
            for batch in order.chunks(cfg.batch_size) {
                let frac = step as f64 / total_steps as f64;
                optimizer.set_learning_rate(
                    cfg.learning_rate * (1.0 - (1.0 - cfg.final_lr_fraction) * frac),
                );
                step += 1;
                let batch: Vec<&Example> = batch.iter().map(|&i| &examples[i]).collect();
                let sources = batch.iter().map(|e| {
                    let seq = histories.user_items(e.user as usize);
                    let pos = e.pos as usize;
                    let user = e.user as usize;
                    FeatureSource {
                        history: &seq[pos.saturating_sub(cfg.max_history)..pos],
                        categorical: features.map_or(&[], |f| f.categorical_of(user)),
                        numeric: features.map_or(&[], |f| f.numeric_of(user)),
                        age: age_days(e) / max_age,
                    }
                });
                let inputs = TowerInputs::build_with_dropout(
                    &net.layout,
                    cfg.recent_window,
                    &model.item_tokens,
                    sources,
                    Some((cfg.history_dropout, &mut rng)),
                );
                let targets: Vec<u32> = batch
                    .iter()
                    .map(|e| histories.user_items(e.user as usize)[e.pos as usize])
                    .collect();
                let loss = model.train_step(
                    &inputs,
                    &targets,
                    &sampler,
                    &mut rng,
                    &mut optimizer,
                    &mut grads,
                )?;
                if !loss.is_finite() {
                    return Err(RetrievalError::Diverged(format!(
                        "loss {loss} at epoch {epoch} (try a lower learning_rate)"
                    )));
                }
                loss_sum += loss;
            }
            let seconds = epoch_start.elapsed().as_secs_f64();
            let hr10 = if validation.is_empty() {
                None
            } else {
                Some(model.evaluate(validation, features, &[10])?.hit_rate(0))
            };
            let report = EpochReport {
                epoch,
                loss: loss_sum / steps_per_epoch as f64,
                validation_hr10: hr10,
                examples_per_second: examples.len() as f64 / seconds.max(1e-9),
            };
            progress(&report);
            reports.push(report);
            if let Some(h) = hr10 {
                if best.as_ref().is_none_or(|(_, b, _)| h >= *b) {
                    best = Some((epoch, h, snapshot(&model)?));
                } else if cfg.patience > 0
                    && best
                        .as_ref()
                        .is_some_and(|(e, _, _)| epoch - e >= cfg.patience)
                {
                    break;
                }
            }
        }
        let (best_epoch, best_hr10) = match &best {
            Some((e, h, snap)) => {
                restore(&model, snap)?;
                (*e, Some(*h))
            }
            None => (reports.len(), None),
        };
        let report = TrainReport {
            epochs: reports,
            best_epoch,
            best_validation_hr10: best_hr10,
            full_softmax: full,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((model, report))
    }

    /// One forward/backward/update on a batch; returns the batch loss.
    fn train_step(
        &self,
        inputs: &TowerInputs,
        targets: &[u32],
        sampler: &NegativeSampler,
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
        let (loss, sampled) = match &grads.softmax {
            None => (full_softmax_loss(&u, &net.softmax, targets)?, None),
            Some(_) => {
                let negatives = sampler.sample(rng);
                let (loss, rows) = sampled_softmax_loss(
                    &u,
                    &net.softmax,
                    targets,
                    &negatives,
                    sampler,
                    &self.device,
                )?;
                (loss, Some(rows))
            }
        };
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
        if let (Some(sg), Some(sampled)) = (grads.softmax.as_mut(), sampled) {
            table += 1;
            let g = store
                .get(sampled.leaf.as_tensor())
                .ok_or_else(|| invalid("no gradient reached the softmax rows"))?
                .contiguous()?;
            let width = sg.width();
            with_f32_data(&g, |g| {
                for (row, &id) in g.chunks(width).zip(&sampled.ids) {
                    sg.add(id, 1.0, row);
                }
            })?;
            let (rows, gv) = sg.take_sorted();
            optimizer.step_rows(table, &rows, &gv)?;
        }
        Ok(loss_value)
    }
}
