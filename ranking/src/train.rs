//! Weighted logistic regression training (Covington et al. 2016, section 4.2): a watched
//! impression weighs its watch time in seconds, an unwatched one weighs 1, so that the learned
//! odds e^logit approximate the expected watch time. AdamW, seeded, early stopping on a
//! validation slice by the same weighted loss.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Optimizer, ParamsAdamW, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::batch::Batch;
use crate::config::RankerConfig;
use crate::error::{RankingError, Result};
use crate::example::{FeatureSchema, RankingExample};
use crate::model::{seeded_init, RankingNet, Tables, ITEM_TABLE, TOKEN_TABLE, USER_TABLE};
use crate::quantiles::ContinuousEncoder;
use crate::ranker::Ranker;
use crate::rng::SplitMix64;
use crate::sparse::{self, SparseEmbedding};

/// What one epoch did, passed to the progress callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Weighted log loss over the epoch's training batches (sum w * loss / sum w).
    pub train_loss: f64,
    /// Weighted log loss on the validation examples after the epoch (`None` without any).
    pub valid_loss: Option<f64>,
    /// The epoch whose weights are kept so far.
    pub best_epoch: usize,
    /// Wall time of the epoch including validation, in seconds.
    pub seconds: f64,
}

/// The whole training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// One entry per epoch run.
    pub epochs: Vec<EpochReport>,
    /// The epoch whose weights the ranker holds (the last one without validation examples).
    pub best_epoch: usize,
    /// Validation loss of the kept weights.
    pub best_valid_loss: Option<f64>,
}

/// The training weight of an example.
pub fn example_weight(example: &RankingExample, unit_weights: bool) -> f32 {
    if example.label && !unit_weights {
        example.watch_time
    } else {
        1.0
    }
}

/// log(1 + e^z) - y z, computed stably.
fn logistic_loss(logit: f64, label: f64) -> f64 {
    logit.max(0.0) - logit * label + (-logit.abs()).exp().ln_1p()
}

/// Sum over the batch of w * (log(1 + e^z) - y z).
fn weighted_loss_sum(logits: &Tensor, labels: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let softplus_tail = logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    let loss = ((logits.relu()? - (logits * labels)?)? + softplus_tail)?;
    Ok((loss * weights)?.sum_all()?)
}

impl Ranker {
    /// Trains a ranker on `train`, keeping the weights of the epoch with the lowest weighted
    /// loss on `valid` (the caller's hold-out slice, normally the last day(s) of the training
    /// period; empty = train `config.epochs` epochs and keep the last). Calls `progress` after
    /// every epoch. Quantiles are fitted on `train`. An example that does not fit the schema
    /// is reported by its position in `train` followed by `valid`.
    ///
    /// The tower trains with candle's AdamW; the embedding tables with a lazy AdamW that
    /// updates only the rows a batch uses, so that a step's cost does not grow with the
    /// vocabularies.
    pub fn train(
        schema: FeatureSchema,
        config: RankerConfig,
        train: &[RankingExample],
        valid: &[RankingExample],
        progress: &mut dyn FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        config.validate()?;
        schema.validate()?;
        if train.is_empty() {
            return Err(RankingError::NoTrainingData);
        }
        for (index, example) in train.iter().chain(valid).enumerate() {
            schema.check(index, example)?;
            if example.label && !(example.watch_time.is_finite() && example.watch_time >= 0.0) {
                return Err(RankingError::InvalidExample {
                    index,
                    reason: format!("watched with watch time {}", example.watch_time),
                });
            }
        }
        let device = Device::Cpu;
        let encoder = ContinuousEncoder::fit(train, schema.continuous.len(), config.n_quantiles);
        let weights: Vec<f32> = train
            .iter()
            .map(|e| example_weight(e, config.unit_weights))
            .collect();
        let (mut positive, mut negative) = (0f64, 0f64);
        for (example, &w) in train.iter().zip(&weights) {
            *(if example.label {
                &mut positive
            } else {
                &mut negative
            }) += f64::from(w);
        }
        let prior = if positive > 0.0 && negative > 0.0 {
            (positive / negative).ln() as f32
        } else {
            0.0
        };
        let mean_weight = ((positive + negative) / train.len() as f64).max(f64::MIN_POSITIVE);

        let mut rng = SplitMix64::new(config.seed);
        let varmap = VarMap::new();
        let net = RankingNet::new(
            VarBuilder::from_varmap(&varmap, DType::F32, &device),
            &schema,
            &config,
        )?;
        seeded_init(&varmap, &mut rng, prior, &device)?;
        let tables = SparseTables {
            items: SparseEmbedding::new(schema.n_items, config.item_dim, &mut rng),
            tokens: SparseEmbedding::new(schema.n_tokens, config.token_dim, &mut rng),
            users: SparseEmbedding::new(schema.user_rows(), config.user_dim, &mut rng),
        };
        let adam = sparse::AdamW {
            lr: config.learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: config.weight_decay,
        };
        let params = ParamsAdamW {
            lr: adam.lr,
            beta1: adam.beta1,
            beta2: adam.beta2,
            eps: adam.eps,
            weight_decay: adam.weight_decay,
        };
        let optimizer = candle_nn::AdamW::new(varmap.all_vars(), params)?;
        let mut stepper = Stepper {
            net,
            tables,
            optimizer,
            adam,
            step: 0,
            device: device.clone(),
            continuous_width: encoder.width(),
        };

        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut report = TrainReport {
            epochs: Vec::new(),
            best_epoch: 0,
            best_valid_loss: None,
        };
        let mut best_weights = current_weights(&varmap, &stepper.tables, &device)?;
        let mut epochs_without_gain = 0;
        for epoch in 1..=config.epochs {
            let start = Instant::now();
            rng.shuffle(&mut order);
            let (mut loss_sum, mut weight_sum) = (0f64, 0f64);
            for chunk in order.chunks(config.batch_size) {
                let batch = Batch::build(&schema, &encoder, chunk.iter().map(|&i| &train[i]));
                let chunk_weights: Vec<f32> = chunk.iter().map(|&i| weights[i]).collect();
                let scale = 1.0 / (chunk.len() as f64 * mean_weight);
                let step_loss = stepper.step(batch, &chunk_weights, scale)?;
                loss_sum += step_loss;
                weight_sum += chunk_weights.iter().map(|&w| f64::from(w)).sum::<f64>();
            }
            let weights_now = current_weights(&varmap, &stepper.tables, &device)?;
            let valid_loss = if valid.is_empty() {
                None
            } else {
                let ranker = Ranker::from_weights(
                    config.clone(),
                    schema.clone(),
                    encoder.clone(),
                    weights_now.clone(),
                    &device,
                )?;
                Some(ranker.weighted_log_loss(valid, config.unit_weights)?)
            };
            let improved = match (valid_loss, report.best_valid_loss) {
                (None, _) => true,
                (Some(_), None) => true,
                (Some(v), Some(best)) => v < best,
            };
            if improved {
                report.best_epoch = epoch;
                report.best_valid_loss = valid_loss;
                best_weights = weights_now;
                epochs_without_gain = 0;
            } else {
                epochs_without_gain += 1;
            }
            let epoch_report = EpochReport {
                epoch,
                train_loss: loss_sum / weight_sum.max(f64::MIN_POSITIVE),
                valid_loss,
                best_epoch: report.best_epoch,
                seconds: start.elapsed().as_secs_f64(),
            };
            progress(&epoch_report);
            report.epochs.push(epoch_report);
            if config.patience > 0 && epochs_without_gain >= config.patience {
                break;
            }
        }
        let ranker = Ranker::from_weights(config, schema, encoder, best_weights, &device)?;
        Ok((ranker, report))
    }

    /// Weighted log loss of this ranker on `examples` (weights as in training, or unit weights).
    pub fn weighted_log_loss(
        &self,
        examples: &[RankingExample],
        unit_weights: bool,
    ) -> Result<f64> {
        let logits = self.logits(examples)?;
        Ok(log_loss_of(examples, &logits, unit_weights))
    }
}

/// The embedding tables being trained.
struct SparseTables {
    items: SparseEmbedding,
    tokens: SparseEmbedding,
    users: SparseEmbedding,
}

/// Everything a gradient step changes.
struct Stepper {
    net: RankingNet,
    tables: SparseTables,
    optimizer: candle_nn::AdamW,
    adam: sparse::AdamW,
    step: i32,
    device: Device,
    continuous_width: usize,
}

impl Stepper {
    /// One AdamW step on `scale` x the weighted loss of `batch`; returns the unscaled sum of
    /// w * loss.
    fn step(&mut self, mut batch: Batch, weights: &[f32], scale: f64) -> Result<f64> {
        let device = &self.device;
        let [ids, recent] = batch.item_ids_mut();
        let items = self.tables.items.localize(&mut [ids, recent], device)?;
        let [ids, recent] = batch.token_ids_mut();
        let tokens = self.tables.tokens.localize(&mut [ids, recent], device)?;
        let users = self
            .tables
            .users
            .localize(&mut [batch.user_ids_mut()], device)?;
        let compact = Tables {
            items: items.as_tensor(),
            tokens: tokens.as_tensor(),
            users: users.as_tensor(),
        };
        let tensors = batch.to_tensors(device, self.continuous_width)?;
        let logits = self.net.forward(&compact, &tensors)?;
        let labels = Tensor::from_slice(batch.labels(), batch.len(), device)?;
        let weights = Tensor::from_slice(weights, batch.len(), device)?;
        let sum = weighted_loss_sum(&logits, &labels, &weights)?;
        let grads = sum.affine(scale, 0.0)?.backward()?;
        self.step += 1;
        self.optimizer.step(&grads)?;
        let adam = &self.adam;
        self.tables
            .items
            .update(grads.get(items.as_tensor()), self.step, adam)?;
        self.tables
            .tokens
            .update(grads.get(tokens.as_tensor()), self.step, adam)?;
        self.tables
            .users
            .update(grads.get(users.as_tensor()), self.step, adam)?;
        Ok(f64::from(sum.to_scalar::<f32>()?))
    }
}

/// Copies of the current tower variables and tables, detached from any graph.
fn current_weights(
    varmap: &VarMap,
    tables: &SparseTables,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| RankingError::InvalidConfig("variable map lock poisoned".into()))?;
    let mut weights = data
        .iter()
        .map(|(name, var)| Ok((name.clone(), var.as_tensor().detach().copy()?)))
        .collect::<Result<HashMap<_, _>>>()?;
    weights.insert(ITEM_TABLE.to_string(), tables.items.to_tensor(device)?);
    weights.insert(TOKEN_TABLE.to_string(), tables.tokens.to_tensor(device)?);
    weights.insert(USER_TABLE.to_string(), tables.users.to_tensor(device)?);
    Ok(weights)
}

/// sum w * loss / sum w of `logits` for `examples`.
fn log_loss_of(examples: &[RankingExample], logits: &[f32], unit_weights: bool) -> f64 {
    let (mut loss, mut weight) = (0f64, 0f64);
    for (example, &z) in examples.iter().zip(logits) {
        let w = f64::from(example_weight(example, unit_weights));
        loss += w * logistic_loss(f64::from(z), f64::from(u8::from(example.label)));
        weight += w;
    }
    loss / weight.max(f64::MIN_POSITIVE)
}
