//! Weighted logistic regression training (Covington et al. 2016, section 4.2): a watched
//! impression weighs its watch time in seconds, an unwatched one weighs 1, so that the learned
//! odds e^logit approximate the expected watch time. AdamW, seeded, early stopping on a
//! validation slice by the same weighted loss.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::batch::Batch;
use crate::config::RankerConfig;
use crate::error::{RankingError, Result};
use crate::example::{FeatureSchema, RankingExample};
use crate::model::{seeded_init, RankingNet};
use crate::quantiles::ContinuousEncoder;
use crate::ranker::{Ranker, SCORE_BATCH};
use crate::rng::SplitMix64;

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
    /// every epoch. Quantiles are fitted on `train`.
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

        let varmap = VarMap::new();
        let net = RankingNet::new(
            VarBuilder::from_varmap(&varmap, DType::F32, &device),
            &schema,
            &config,
        )?;
        seeded_init(&varmap, config.seed, prior, &device)?;
        let params = ParamsAdamW {
            lr: config.learning_rate,
            weight_decay: config.weight_decay,
            ..ParamsAdamW::default()
        };
        let mut optimizer = AdamW::new(varmap.all_vars(), params)?;
        let trainer = Trainer {
            schema: &schema,
            encoder: &encoder,
            net: &net,
            device: &device,
        };

        let mut rng = SplitMix64::new(config.seed ^ 0x5EED_0F5A_FF1E);
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut report = TrainReport {
            epochs: Vec::new(),
            best_epoch: 0,
            best_valid_loss: None,
        };
        let mut best_weights = snapshot(&varmap)?;
        let mut epochs_without_gain = 0;
        for epoch in 1..=config.epochs {
            let start = Instant::now();
            rng.shuffle(&mut order);
            let (mut loss_sum, mut weight_sum) = (0f64, 0f64);
            for chunk in order.chunks(config.batch_size) {
                let batch = Batch::build(&schema, &encoder, chunk.iter().map(|&i| &train[i]));
                let chunk_weights: Vec<f32> = chunk.iter().map(|&i| weights[i]).collect();
                let sum = trainer.loss_sum(&batch, &chunk_weights)?;
                let scale = 1.0 / (chunk.len() as f64 * mean_weight);
                optimizer.backward_step(&sum.affine(scale, 0.0)?)?;
                loss_sum += f64::from(sum.to_scalar::<f32>()?);
                weight_sum += chunk_weights.iter().map(|&w| f64::from(w)).sum::<f64>();
            }
            let valid_loss = if valid.is_empty() {
                None
            } else {
                Some(trainer.weighted_log_loss(valid, config.unit_weights)?)
            };
            let improved = match (valid_loss, report.best_valid_loss) {
                (None, _) => true,
                (Some(_), None) => true,
                (Some(v), Some(best)) => v < best,
            };
            if improved {
                report.best_epoch = epoch;
                report.best_valid_loss = valid_loss;
                best_weights = snapshot(&varmap)?;
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

/// Copies of the current variable values, detached from the graph.
fn snapshot(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| RankingError::InvalidConfig("variable map lock poisoned".into()))?;
    data.iter()
        .map(|(name, var)| Ok((name.clone(), var.as_tensor().detach().copy()?)))
        .collect()
}

/// What a training step and a validation pass need.
struct Trainer<'a> {
    schema: &'a FeatureSchema,
    encoder: &'a ContinuousEncoder,
    net: &'a RankingNet,
    device: &'a Device,
}

impl Trainer<'_> {
    /// Sum of w * logistic loss over `batch` (a scalar tensor, differentiable).
    fn loss_sum(&self, batch: &Batch, weights: &[f32]) -> Result<Tensor> {
        let tensors = batch.to_tensors(self.device, self.encoder.width())?;
        let logits = self.net.forward(&tensors)?;
        let labels = Tensor::from_slice(batch.labels(), batch.len(), self.device)?;
        let weights = Tensor::from_slice(weights, batch.len(), self.device)?;
        weighted_loss_sum(&logits, &labels, &weights)
    }

    /// sum w * loss / sum w over `examples` (checked against the schema).
    fn weighted_log_loss(&self, examples: &[RankingExample], unit_weights: bool) -> Result<f64> {
        let mut logits = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(SCORE_BATCH) {
            let batch = Batch::build(self.schema, self.encoder, chunk.iter());
            let tensors = batch.to_tensors(self.device, self.encoder.width())?;
            logits.extend(self.net.forward(&tensors)?.to_vec1::<f32>()?);
        }
        Ok(log_loss_of(examples, &logits, unit_weights))
    }
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
