//! The one training loop every model runs: epochs, a linear learning-rate schedule, a
//! divergence check on every step, early stopping on a validation figure with a snapshot of
//! the best epoch restored at the end, and a progress callback after each epoch.
//!
//! A model supplies its own step through [`Fit`], so losses that are not a plain gradient step
//! (contrastive divergence, KL annealing, alternating generator/discriminator updates) fit too.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::error::NnError;

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Restores the enclosing deadline when a [`with_time_budget`] scope ends, also by a panic.
struct DeadlineGuard(Option<Instant>);

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.0));
    }
}

/// Runs `f` with a wall-clock budget of `seconds` (`None`: none) for the [`train`] runs it
/// makes on this thread: training stops at the first step after the budget runs out (at least
/// one step runs), that last, possibly partial, epoch is validated, and the best epoch so far
/// is kept as usual. This is how a nightly job bounds training time on a world larger than
/// its epochs were sized for, including one whose single epoch outlasts the budget.
pub fn with_time_budget<T>(seconds: Option<f64>, f: impl FnOnce() -> T) -> T {
    let deadline = seconds
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let _restore = DeadlineGuard(DEADLINE.with(|d| d.replace(deadline)));
    f()
}

fn past_deadline() -> bool {
    DEADLINE
        .with(|d| d.get())
        .is_some_and(|t| Instant::now() >= t)
}

/// Epochs, learning-rate schedule and early stopping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Maximum number of passes over the training examples.
    pub epochs: usize,
    /// Stop after this many epochs without a better validation figure (0 = never stop early).
    pub patience: usize,
    /// Learning rate of the first step.
    pub learning_rate: f64,
    /// Learning rate of the last step as a fraction of `learning_rate`, reached linearly over
    /// `epochs` (1 = constant).
    pub final_lr_fraction: f64,
}

impl Schedule {
    /// The learning rate of step `step` (from 0) of `total` steps.
    pub fn learning_rate_at(&self, step: usize, total: usize) -> f64 {
        let frac = step as f64 / total.max(1) as f64;
        self.learning_rate * (1.0 - (1.0 - self.final_lr_fraction) * frac)
    }
}

/// Which way the validation figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// A hit rate: higher is better, and of tied epochs the later one is kept (hit counts are
    /// discrete, ties are common, and the later epoch has seen more data).
    Higher,
    /// A loss: lower is better; a tie is no improvement.
    Lower,
}

/// What one step returns: its loss as `sum / weight` (a mean when `weight` is the batch size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLoss {
    /// Summed loss of the step.
    pub sum: f64,
    /// What the sum is divided by to report a mean.
    pub weight: f64,
}

/// A model being trained: the trainer calls these in order.
pub trait Fit {
    /// The model crate's error type.
    type Error: From<NnError>;
    /// A copy of the weights, to return to the best epoch.
    type Snapshot;
    /// Training examples in one epoch (for throughput).
    fn examples_per_epoch(&self) -> usize;
    /// Steps in one epoch.
    fn steps_per_epoch(&self) -> usize;
    /// Called before each epoch's steps (shuffle here).
    fn begin_epoch(&mut self, epoch: usize) -> Result<(), Self::Error>;
    /// Step `step` (0-based within the epoch) at learning rate `lr`.
    fn step(&mut self, step: usize, lr: f64) -> Result<StepLoss, Self::Error>;
    /// The validation figure after an epoch (None: no validation data).
    fn validate(&mut self) -> Result<Option<f64>, Self::Error>;
    /// Copies the current weights.
    fn snapshot(&self) -> Result<Self::Snapshot, Self::Error>;
    /// Puts back weights taken by [`Fit::snapshot`].
    fn restore(&mut self, snapshot: Self::Snapshot) -> Result<(), Self::Error>;
}

/// The examples of an epoch in a seeded random order, cut into batches: what a [`Fit`] step
/// over a list of examples reads.
#[derive(Debug, Clone)]
pub struct ShuffledBatches {
    order: Vec<usize>,
    batch_size: usize,
}

impl ShuffledBatches {
    /// Batches of `batch_size` (at least 1) over examples `0..examples`.
    pub fn new(examples: usize, batch_size: usize) -> Self {
        Self {
            order: (0..examples).collect(),
            batch_size: batch_size.max(1),
        }
    }

    /// Number of batches in an epoch.
    pub fn steps(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// A new order for the next epoch.
    pub fn shuffle(&mut self, rng: &mut crate::rng::Rng) {
        rng.shuffle(&mut self.order);
    }

    /// The example indices of batch `step` (empty past the last one).
    pub fn batch(&self, step: usize) -> &[usize] {
        let start = (step * self.batch_size).min(self.order.len());
        let end = (start + self.batch_size).min(self.order.len());
        &self.order[start..end]
    }
}

/// What one epoch did; handed to the progress callback.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub loss: f64,
    /// Validation figure after the epoch (None without validation data).
    pub validation: Option<f64>,
    /// The best epoch so far.
    pub best_epoch: usize,
    /// Seconds of training in this epoch (validation excluded).
    pub seconds: f64,
    /// Training throughput.
    pub examples_per_second: f64,
}

/// Summary of a training run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainReport {
    /// Every epoch run.
    pub epochs: Vec<EpochReport>,
    /// The epoch whose weights the model keeps (the last when there is no validation).
    pub best_epoch: usize,
    /// Validation figure of the kept epoch.
    pub best_validation: Option<f64>,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
    /// Whether the run stopped because its time budget ran out ([`with_time_budget`]).
    pub stopped_by_time_budget: bool,
}

/// Runs `fit` for `schedule`, keeping the epoch with the best validation figure.
pub fn train<F: Fit>(
    fit: &mut F,
    schedule: &Schedule,
    better: Better,
    mut progress: impl FnMut(&EpochReport),
) -> Result<TrainReport, F::Error> {
    let started = Instant::now();
    let steps = fit.steps_per_epoch();
    let total_steps = (steps * schedule.epochs).max(1);
    let mut report = TrainReport::default();
    let mut best: Option<(usize, f64, F::Snapshot)> = None;
    let mut global_step = 0usize;
    for epoch in 1..=schedule.epochs {
        let epoch_start = Instant::now();
        fit.begin_epoch(epoch)?;
        let (mut sum, mut weight) = (0f64, 0f64);
        let mut done = 0usize;
        for step in 0..steps {
            if global_step > 0 && past_deadline() {
                report.stopped_by_time_budget = true;
                break;
            }
            done += 1;
            let lr = schedule.learning_rate_at(global_step, total_steps);
            global_step += 1;
            let loss = fit.step(step, lr)?;
            if !loss.sum.is_finite() {
                return Err(NnError::Diverged(format!(
                    "loss {} at epoch {epoch} (try a lower learning_rate)",
                    loss.sum / loss.weight
                ))
                .into());
            }
            sum += loss.sum;
            weight += loss.weight;
        }
        let seconds = epoch_start.elapsed().as_secs_f64();
        let validation = fit.validate()?;
        let improved = match (validation, &best) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(v), Some((_, b, _))) => match better {
                Better::Higher => v >= *b,
                Better::Lower => v < *b,
            },
        };
        if improved {
            if let Some(v) = validation {
                best = Some((epoch, v, fit.snapshot()?));
            }
        }
        let best_epoch = best.as_ref().map_or(epoch, |(e, _, _)| *e);
        let epoch_report = EpochReport {
            epoch,
            loss: sum / weight.max(f64::MIN_POSITIVE),
            validation,
            best_epoch,
            seconds,
            examples_per_second: fit.examples_per_epoch() as f64 * done as f64
                / steps.max(1) as f64
                / seconds.max(1e-9),
        };
        progress(&epoch_report);
        report.epochs.push(epoch_report);
        if report.stopped_by_time_budget
            || schedule.patience > 0 && epoch - best_epoch >= schedule.patience
        {
            break;
        }
        if epoch < schedule.epochs && past_deadline() {
            report.stopped_by_time_budget = true;
            break;
        }
    }
    match best {
        Some((epoch, value, snapshot)) => {
            fit.restore(snapshot)?;
            report.best_epoch = epoch;
            report.best_validation = Some(value);
        }
        None => report.best_epoch = report.epochs.len(),
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake model whose "weights" are the epoch count and whose validation follows a script.
    struct Scripted {
        weights: usize,
        script: Vec<Option<f64>>,
        lrs: Vec<f64>,
        nan_at: Option<usize>,
    }

    impl Fit for Scripted {
        type Error = NnError;
        type Snapshot = usize;
        fn examples_per_epoch(&self) -> usize {
            10
        }
        fn steps_per_epoch(&self) -> usize {
            2
        }
        fn begin_epoch(&mut self, _: usize) -> Result<(), NnError> {
            self.weights += 1;
            Ok(())
        }
        fn step(&mut self, _: usize, lr: f64) -> Result<StepLoss, NnError> {
            self.lrs.push(lr);
            let sum = if self.nan_at == Some(self.weights) {
                f64::NAN
            } else {
                1.0
            };
            Ok(StepLoss { sum, weight: 1.0 })
        }
        fn validate(&mut self) -> Result<Option<f64>, NnError> {
            Ok(self.script[self.weights - 1])
        }
        fn snapshot(&self) -> Result<usize, NnError> {
            Ok(self.weights)
        }
        fn restore(&mut self, s: usize) -> Result<(), NnError> {
            self.weights = s;
            Ok(())
        }
    }

    fn run(script: Vec<Option<f64>>, better: Better, patience: usize) -> (Scripted, TrainReport) {
        let mut fit = Scripted {
            weights: 0,
            script,
            lrs: Vec::new(),
            nan_at: None,
        };
        let schedule = Schedule {
            epochs: 6,
            patience,
            learning_rate: 1.0,
            final_lr_fraction: 0.5,
        };
        let report = train(&mut fit, &schedule, better, |_| {}).unwrap();
        (fit, report)
    }

    fn script() -> Vec<Option<f64>> {
        vec![
            Some(0.5),
            Some(0.9),
            Some(0.7),
            Some(0.6),
            Some(0.6),
            Some(0.6),
        ]
    }

    #[test]
    fn a_spent_time_budget_stops_at_the_next_step_and_keeps_the_best() {
        let (fit, report) = with_time_budget(Some(0.0), || run(script(), Better::Higher, 0));
        assert_eq!(report.epochs.len(), 1);
        assert!(report.stopped_by_time_budget);
        assert_eq!((report.best_epoch, fit.weights), (1, 1));
        // One step of the epoch's two ran, and that partial epoch was validated.
        assert_eq!(fit.lrs.len(), 1);
        assert_eq!(report.best_validation, Some(0.5));
        // Outside the scope there is no budget again.
        let (_, report) = run(script(), Better::Higher, 0);
        assert_eq!(report.epochs.len(), 6);
        assert!(!report.stopped_by_time_budget);
        // A generous budget changes nothing.
        let (_, report) = with_time_budget(Some(3600.0), || run(script(), Better::Higher, 0));
        assert_eq!((report.epochs.len(), report.best_epoch), (6, 2));
    }

    #[test]
    fn keeps_and_restores_the_best_epoch_and_stops_on_patience() {
        let script = [0.1, 0.3, 0.2, 0.25, 0.1, 0.9].map(Some).to_vec();
        let (fit, report) = run(script, Better::Higher, 2);
        // Best at epoch 2; epochs 3 and 4 do not beat it: stop after 4, weights of epoch 2.
        assert_eq!(report.epochs.len(), 4);
        assert_eq!((report.best_epoch, report.best_validation), (2, Some(0.3)));
        assert_eq!(fit.weights, 2);
        assert_eq!(report.epochs[3].best_epoch, 2);
    }

    #[test]
    fn ties_keep_the_later_epoch_when_higher_is_better_but_not_for_losses() {
        let script = [0.5, 0.5, 0.4, 0.4, 0.4, 0.4].map(Some).to_vec();
        assert_eq!(run(script.clone(), Better::Higher, 0).1.best_epoch, 2);
        // Lower is better: 0.4 at epoch 3 wins; the ties after it do not move it.
        assert_eq!(run(script, Better::Lower, 0).1.best_epoch, 3);
    }

    #[test]
    fn without_validation_the_last_epoch_is_kept_and_the_schedule_decays_linearly() {
        let (fit, report) = run(vec![None; 6], Better::Higher, 1);
        assert_eq!((report.epochs.len(), report.best_epoch), (6, 6));
        assert_eq!(fit.weights, 6);
        // 12 steps from 1.0 towards 0.5: step k has lr 1 - 0.5 k / 12.
        assert_eq!(fit.lrs.len(), 12);
        assert!((fit.lrs[0] - 1.0).abs() < 1e-12 && (fit.lrs[6] - 0.75).abs() < 1e-12);
    }

    #[test]
    fn shuffled_batches_cover_every_example_once_per_epoch() {
        let mut b = ShuffledBatches::new(10, 4);
        b.shuffle(&mut crate::rng::Rng::new(1));
        assert_eq!(b.steps(), 3);
        let mut seen: Vec<usize> = (0..b.steps()).flat_map(|s| b.batch(s).to_vec()).collect();
        assert_eq!(b.batch(2).len(), 2);
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert!(b.batch(3).is_empty());
    }

    #[test]
    fn a_non_finite_loss_is_a_divergence_error() {
        let mut fit = Scripted {
            weights: 0,
            script: vec![Some(0.1); 6],
            lrs: Vec::new(),
            nan_at: Some(2),
        };
        let schedule = Schedule {
            epochs: 6,
            patience: 0,
            learning_rate: 1.0,
            final_lr_fraction: 1.0,
        };
        let err = train(&mut fit, &schedule, Better::Higher, |_| {}).unwrap_err();
        assert!(
            matches!(err, NnError::Diverged(ref m) if m.contains("epoch 2")),
            "{err}"
        );
    }
}
