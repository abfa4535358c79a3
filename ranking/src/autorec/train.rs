//! Training AutoRec: mini-batches of rows (items or users) with at least one rating, the
//! masked reconstruction error of eq. 2 plus the weights' penalty, Adam on every weight, the
//! epoch with the lowest validation RMSE kept.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::rating::{RatingModel, Ratings};
use nn::rng::Rng;
use nn::trainer::{
    self, Better, EpochReport, Fit, Schedule, ShuffledBatches, StepLoss, TrainReport,
};

use super::{reconstruction_loss, AutoRec};
use crate::error::{RankingError, Result};

/// Trains `model` (built on `model.config.compute`'s device) from its current weights, keeping
/// the epoch with the lowest RMSE on `valid`; returns the model in host memory.
pub(super) fn fit(
    model: AutoRec,
    valid: &Ratings,
    progress: impl FnMut(&EpochReport),
) -> Result<(AutoRec, TrainReport)> {
    let config = model.config.clone();
    let compute = config.compute.clone();
    let params = AdamWParams {
        lr: config.learning_rate,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let trained: Vec<u32> = (0..model.rows as u32)
        .filter(|&r| !model.inputs.row(r as usize).is_empty())
        .collect();
    let mut run = Run {
        optimizer: InPlaceAdamW::for_compute(
            &compute,
            model.varmap.all_vars(),
            Vec::new(),
            params,
        )?,
        fused: compute.is_fused_cpu(),
        rng: Rng::new(config.seed ^ 0xA0_7E0C),
        batches: ShuffledBatches::new(trained.len(), config.batch_size),
        trained,
        model,
        valid,
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

/// One training run: an epoch is one pass over the rows with at least one rating.
struct Run<'a> {
    model: AutoRec,
    valid: &'a Ratings,
    trained: Vec<u32>,
    optimizer: InPlaceAdamW,
    /// Fused CPU kernels, or candle ops on the model's device.
    fused: bool,
    rng: Rng,
    batches: ShuffledBatches,
}

impl Fit for Run<'_> {
    type Error = RankingError;
    type Snapshot = HashMap<String, Tensor>;

    fn examples_per_epoch(&self) -> usize {
        self.trained.len()
    }

    fn steps_per_epoch(&self) -> usize {
        self.batches.steps()
    }

    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        self.batches.shuffle(&mut self.rng);
        Ok(())
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepLoss> {
        let m = &self.model;
        let rows: Vec<u32> = self
            .batches
            .batch(step)
            .iter()
            .map(|&k| self.trained[k])
            .collect();
        let device = m.encoder.weight().device();
        let (input, observed) = m.inputs.dense_for(&rows, m.cols, self.fused, device)?;
        let mask = match m.config.unobserved_in_loss {
            true => observed.ones_like()?,
            false => observed.clone(),
        };
        let output = m.reconstruct(&input)?;
        let error = reconstruction_loss(&output, &input, &mask)?;
        // lambda / 2 (|W|^2 + |V|^2), divided by the number of rows like the error term.
        let weights =
            (m.encoder.weight().sqr()?.sum_all()? + m.decoder.weight().sqr()?.sum_all()?)?;
        let reg = (weights * (m.config.l2 / (2.0 * m.rows.max(1) as f64)))?;
        let loss = (&error + reg)?;
        // Reported: squared error of the observed entries, per observed rating.
        let observed_error = ((output - &input)?.sqr()? * &observed)?.sum_all()?;
        let count = f64::from(observed.sum_all()?.to_scalar::<f32>()?);
        let store = loss.backward()?;
        self.optimizer.set_learning_rate(lr);
        self.optimizer.begin_step();
        self.optimizer.step_dense(&store)?;
        Ok(StepLoss {
            sum: f64::from(observed_error.to_scalar::<f32>()?),
            weight: count.max(1.0),
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
