//! Training: batches of rolled-back examples, the logQ-corrected in-batch + sampled softmax of
//! the module doc, in-place AdamW (row-sparse for the embedding tables), run by the shared
//! trainer with early stopping on validation HR@10; with the fused CPU kernels or in candle ops
//! on a GPU ([`nn::Compute`]), the same batches and random draws either way.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use nn::bag::RowGrads;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::rng::Rng;
use nn::softmax::NegativeSampler;
use nn::trainer::{self, Better, Fit, Schedule, ShuffledBatches, StepLoss, TrainReport};
use nn::{Compute, Retriever, TrainingSet, UserFeatures};

use super::config::TwoTowerConfig;
use super::network::{ItemFeatures, Standardizer, Vocabulary};
use super::TwoTower;
use crate::error::{invalid, Result, RetrievalError};
use crate::warm::WarmStart;

mod step;

/// Name of the id embedding table among the variables.
const IDS: &str = "ids.weight";

impl TwoTower {
    /// Trains a model on `data`, keeping the epoch with the best validation HR@10 and stopping
    /// after `cfg.patience` epochs without improvement; starts from `warm`'s weights when given
    /// (known items keep their id rows, new items start from their features).
    pub fn train(
        cfg: &TwoTowerConfig,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(TwoTower, TrainReport)> {
        Self::train_with(&Compute::FusedCpu, cfg, data, warm, progress)
    }

    /// [`Self::train`] computing as `compute` says (a GPU: [`Compute::Candle`]); the model
    /// returned is in host memory whichever device trained it.
    pub fn train_with(
        compute: &Compute,
        cfg: &TwoTowerConfig,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(TwoTower, TrainReport)> {
        cfg.validate()?;
        data.validate()?;
        let model = Self::warm_started(cfg, data, warm, &compute.device())?;
        let mut run = Run::new(model, data, compute)?;
        let schedule = Schedule {
            epochs: cfg.epochs,
            patience: cfg.patience,
            learning_rate: cfg.learning_rate,
            final_lr_fraction: cfg.final_lr_fraction,
        };
        let report = trainer::train(&mut run, &schedule, Better::Higher, progress)?;
        Ok((run.model.into_cpu()?, report))
    }

    /// The untrained model for `data`: fresh, or from `warm`'s weights (id rows of known
    /// items and token rows moved to their new indices, new items' id rows zero, every other
    /// tensor copied when its shape is unchanged).
    pub(crate) fn warm_started(
        cfg: &TwoTowerConfig,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let c = data.catalog;
        let features = data.user_features.filter(|_| cfg.use_user_features);
        let vocab = Vocabulary {
            id_rows: c.num_items,
            num_tokens: if c.item_tokens.is_empty() {
                0
            } else {
                c.num_tokens
            },
            duration: (!c.duration_seconds.is_empty())
                .then(|| Standardizer::fit(&c.duration_seconds)),
            age: (!c.age_days.is_empty()).then(|| Standardizer::fit(&c.age_days)),
            user_cardinalities: features.map_or(Vec::new(), |f| f.cardinalities.clone()),
            num_numeric: features.map_or(0, |f| f.num_numeric),
        };
        let items = ItemFeatures::from_catalog(c, &vocab)?;
        let mut model = TwoTower::init(cfg, vocab, items, device)?;
        let Some(w) = warm else {
            return Ok(model);
        };
        nn::vars::warm_start(&model.varmap, &w.weights, |name| {
            if name.starts_with("ids.") {
                Some(w.items.as_slice())
            } else if name.starts_with("tokens.") {
                Some(w.tokens.as_slice())
            } else {
                None
            }
        })?;
        let old_rows = w.weights.get(IDS).and_then(|t| t.dim(0).ok());
        if let (Some(old_rows), true) = (old_rows, w.items.len() == model.vocab.id_rows) {
            let var = model.network.ids.var();
            let width = model.network.ids.width();
            let mut rows = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            for (r, prev) in w.items.iter().enumerate() {
                if !prev.is_some_and(|p| (p as usize) < old_rows) {
                    rows[r * width..(r + 1) * width].fill(0.0);
                }
            }
            var.set(&Tensor::from_vec(rows, var.shape(), &model.device)?)?;
        }
        model.refresh_table()?;
        Ok(model)
    }
}

/// Row gradients of the embedding tables, in the optimiser's sparse-table order.
struct TableGrads {
    ids: RowGrads,
    tokens: Option<RowGrads>,
    user: Vec<RowGrads>,
}

/// One training run's state.
struct Run<'a> {
    model: TwoTower,
    data: TrainingSet<'a>,
    features: Option<&'a UserFeatures>,
    /// Draws the shared negatives (None when `num_negatives` is 0).
    sampler: Option<NegativeSampler>,
    /// Each item's share p_j of the training targets (the in-batch candidates' distribution).
    target_share: Vec<f64>,
    optimizer: InPlaceAdamW,
    grads: TableGrads,
    rng: Rng,
    batches: ShuffledBatches,
    /// Fused CPU kernels, or candle ops on the model's device.
    compute: Compute,
}

impl<'a> Run<'a> {
    fn new(model: TwoTower, data: &TrainingSet<'a>, compute: &Compute) -> Result<Self> {
        let cfg = model.config.clone();
        let features = data.user_features.filter(|_| cfg.use_user_features);
        let sampler = match cfg.num_negatives {
            0 => None,
            s => Some(
                NegativeSampler::new(&data.item_counts(), cfg.sampling_power, s)
                    .ok_or_else(|| invalid("cannot build the negative sampler"))?,
            ),
        };
        let mut counts = vec![0f64; data.catalog.num_items];
        for e in data.examples {
            counts[data.target(e) as usize] += 1.0;
        }
        let total = data.examples.len().max(1) as f64;
        let target_share = counts.into_iter().map(|c| c / total).collect();

        let net = &model.network;
        let mut sparse = vec![(net.ids.var().clone(), net.ids.width())];
        if let Some(t) = &net.tokens {
            sparse.push((t.var().clone(), t.width()));
        }
        sparse.extend(
            net.user_categorical
                .iter()
                .map(|t| (t.var().clone(), t.width())),
        );
        // The item tower's output bias is among them although the softmax gives it no gradient
        // in exact arithmetic (it shifts every logit of a row alike), so AdamW moves it on
        // rounding noise: leaving it out lowered validation HR@10 on ml-100k in both seeds tried
        // (README, two_tower), and the scores' order does not depend on it.
        let dense: Vec<Var> = {
            let vars = model
                .varmap
                .data()
                .lock()
                .map_err(|_| invalid("variable map lock poisoned"))?;
            let mut names: Vec<&String> = vars
                .keys()
                .filter(|k| k.starts_with("item_tower.") || k.starts_with("user_tower."))
                .collect();
            names.sort();
            names.into_iter().map(|k| vars[k].clone()).collect()
        };
        let params = AdamWParams {
            lr: cfg.learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: cfg.weight_decay,
        };
        let grads = TableGrads {
            ids: RowGrads::new(net.ids.rows(), net.ids.width()),
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
            optimizer: InPlaceAdamW::for_compute(compute, dense, sparse, params)?,
            compute: compute.clone(),
            rng: Rng::new(cfg.seed ^ 0x7A0_70EE),
            batches: ShuffledBatches::new(data.examples.len(), cfg.batch_size),
            model,
            data: *data,
            features,
            sampler,
            target_share,
            grads,
        })
    }
}

/// Per-column logQ corrections `-log(B p_j + S q_j)` (B = `targets.len()`, p_j =
/// `target_share[j]`, S q_j = the sampler's expected draws of j) and the accidental hits
/// `(row, column)` of a batch whose columns are `targets` then the negatives: every column
/// holding a row's target other than the row's own column.
pub(super) fn corrections(
    sampler: Option<&NegativeSampler>,
    target_share: &[f64],
    targets: &[u32],
    columns: &[u32],
) -> (Vec<f32>, Vec<(u32, u32)>) {
    let b = targets.len() as f64;
    let adjust = columns
        .iter()
        .map(|&j| {
            let drawn = sampler.map_or(0.0, |s| f64::from(s.log_expected_count(j)).exp());
            let share = target_share.get(j as usize).copied().unwrap_or(0.0);
            -((b * share + drawn).max(1e-12).ln() as f32)
        })
        .collect();
    let mut column_of: HashMap<u32, Vec<u32>> = HashMap::new();
    for (c, &j) in columns.iter().enumerate() {
        column_of.entry(j).or_default().push(c as u32);
    }
    let mut hits = Vec::new();
    for (row, t) in targets.iter().enumerate() {
        if let Some(cols) = column_of.get(t) {
            let others = cols.iter().filter(|&&c| c as usize != row);
            hits.extend(others.map(|&c| (row as u32, c)));
        }
    }
    (adjust, hits)
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
        let batch = self.batch(step);
        self.optimizer.set_learning_rate(lr);
        self.optimizer.begin_step();
        let value = if self.compute.is_fused_cpu() {
            self.fused_step(&batch)?
        } else {
            self.step_in_candle_ops(&batch)?
        };
        Ok(StepLoss {
            sum: value,
            weight: 1.0,
        })
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.model.refresh_table()?;
        self.model
            .validation_hit_rate(self.data.validation, self.features)
    }

    fn snapshot(&self) -> Result<Self::Snapshot> {
        Ok(nn::vars::snapshot(&self.model.varmap)?)
    }

    fn restore(&mut self, snapshot: Self::Snapshot) -> Result<()> {
        nn::vars::restore(&self.model.varmap, &snapshot)?;
        self.model.refresh_table()
    }
}
