//! Weighted logistic regression training (Covington et al. 2016, section 4.2): a watched
//! impression weighs its watch time in seconds, an unwatched one weighs 1, so that the learned
//! odds e^logit approximate the expected watch time. AdamW, seeded, early stopping on a
//! validation slice by the same weighted loss. One loop ([`fit`]) for every ranker on the
//! shared input x_0 (the YouTube ranker, DeepFM, DCN-v2, the multi-task ranker): only the head
//! differs, and a head may add terms to the objective ([`LogitHead::objective`]) and to the
//! early-stopping loss ([`RankingModel::selection_loss`]) — the multi-task ranker's other tasks.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use nn::loss::logistic_loss;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::rng::Rng;
use nn::sparse::SparseEmbedding;
use nn::trainer::{self, Better, Fit, Schedule, ShuffledBatches, StepLoss};
use nn::Compute;

use nn::layers::Tower;

use crate::batch::Batch;
use crate::config::RankerConfig;
use crate::error::{RankingError, Result};
use crate::example::{FeatureSchema, RankingExample};
use crate::model::{
    seeded_init, tower_fill, FeatureInput, Fill, InputDims, LogitHead, Net, Tables,
    EMBEDDING_INIT_STD, ITEM_TABLE, TOKEN_TABLE, USER_TABLE,
};
use crate::quantiles::ContinuousEncoder;
use crate::registry::RankingModel;
use crate::youtube::YoutubeRanker;

pub use nn::trainer::{EpochReport, TrainReport};

/// The training weight of an example.
pub fn example_weight(example: &RankingExample, unit_weights: bool) -> f32 {
    if example.label && !unit_weights {
        example.watch_time
    } else {
        1.0
    }
}

/// The training settings every ranker on the shared input reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FitSettings {
    /// Embedding table widths.
    pub dims: InputDims,
    /// Quantile intervals fitted per continuous feature.
    pub n_quantiles: usize,
    /// Maximum passes over the training examples.
    pub epochs: usize,
    /// Examples per gradient step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Epochs without a better validation loss before stopping (0 = never).
    pub patience: usize,
    /// Seed of the initial weights and the shuffles.
    pub seed: u64,
    /// Every impression weighs 1.
    pub unit_weights: bool,
}

/// What [`fit`] needs of a model beyond its settings: its head, its initialisation and how
/// to assemble a scoring model from trained weights.
pub(crate) struct ModelParts<B, F, A> {
    /// Builds the head over x_0 of the given width from a variable builder.
    pub build: B,
    /// The initial value rule of each head variable (see [`crate::model::seeded_init`]).
    pub fill: F,
    /// The scoring model of a set of weights (tables and head) and the fitted quantiles.
    pub assemble: A,
}

/// Trains a ranker on the shared input: checks the examples, fits the quantiles on `train`,
/// runs the weighted logistic regression (tables with the lazy row-sparse AdamW, the head with
/// the dense one) and returns the model of the epoch with the lowest weighted loss on `valid`
/// (the last epoch when `valid` is empty). An example that does not fit the schema is
/// reported by its position in `train` followed by `valid`.
///
/// With [`Compute::Candle`] the network and its dense AdamW run on that device; the embedding
/// tables stay in host memory, and each step moves only the rows its batch reads there and
/// their gradient back ([`SparseEmbedding`]). `assemble` always gets host tensors.
pub(crate) fn fit<H, R, B, F, A>(
    compute: &Compute,
    schema: &FeatureSchema,
    settings: &FitSettings,
    train: &[RankingExample],
    valid: &[RankingExample],
    parts: ModelParts<B, F, A>,
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<(R, TrainReport)>
where
    H: LogitHead,
    R: RankingModel,
    B: FnOnce(VarBuilder, usize) -> Result<H>,
    F: Fn(&str, &[usize], f32) -> Fill,
    A: Fn(ContinuousEncoder, HashMap<String, Tensor>) -> Result<R>,
{
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
    let device = compute.device();
    let encoder = ContinuousEncoder::fit(train, schema.continuous.len(), settings.n_quantiles);
    let weights: Vec<f32> = train
        .iter()
        .map(|e| example_weight(e, settings.unit_weights))
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

    let mut rng = Rng::new(settings.seed);
    let varmap = VarMap::new();
    let dims = settings.dims;
    let width = dims.width(schema);
    if width == 0 {
        return Err(RankingError::InvalidConfig(
            "the network has no input".into(),
        ));
    }
    let net = Net {
        input: FeatureInput::new(schema, dims),
        head: (parts.build)(VarBuilder::from_varmap(&varmap, DType::F32, &device), width)?,
    };
    seeded_init(&varmap, &mut rng, prior, &parts.fill, &device)?;
    let std = EMBEDDING_INIT_STD;
    let tables = SparseTables {
        items: SparseEmbedding::new(schema.n_items, dims.item, std, &mut rng),
        tokens: SparseEmbedding::new(schema.n_tokens, dims.token, std, &mut rng),
        users: SparseEmbedding::new(schema.user_rows(), dims.user, std, &mut rng),
    };
    let adam = AdamWParams {
        lr: settings.learning_rate,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: settings.weight_decay,
    };
    let dense = varmap.all_vars();
    let mut run = Run {
        stepper: Stepper {
            net,
            tables,
            optimizer: InPlaceAdamW::for_compute(compute, dense, Vec::new(), adam)?,
            adam,
            device: device.clone(),
            continuous_width: encoder.width(),
        },
        varmap,
        settings,
        schema,
        encoder: &encoder,
        assemble: &parts.assemble,
        train,
        valid,
        weights,
        mean_weight,
        batches: ShuffledBatches::new(train.len(), settings.batch_size),
        rng,
    };
    let schedule = Schedule {
        epochs: settings.epochs,
        patience: settings.patience,
        learning_rate: settings.learning_rate,
        final_lr_fraction: 1.0,
    };
    let report = trainer::train(&mut run, &schedule, Better::Lower, |e| progress(e))?;
    let best = run.snapshot()?;
    let model = (parts.assemble)(encoder.clone(), best)?;
    Ok((model, report))
}

impl YoutubeRanker {
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
        Self::train_with(&Compute::FusedCpu, schema, config, train, valid, progress)
    }

    /// [`Self::train`] on `compute`'s device (see [`fit`]); the ranker returned is in host
    /// memory.
    pub fn train_with(
        compute: &Compute,
        schema: FeatureSchema,
        config: RankerConfig,
        train: &[RankingExample],
        valid: &[RankingExample],
        progress: &mut dyn FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        config.validate()?;
        let device = Device::Cpu;
        let parts = ModelParts {
            build: |vb: VarBuilder, width| {
                Ok(Tower::new(vb.pp("tower"), width, &config.hidden, 1)?)
            },
            fill: tower_fill,
            assemble: |encoder, weights| {
                YoutubeRanker::from_weights(
                    config.clone(),
                    schema.clone(),
                    encoder,
                    weights,
                    &device,
                )
            },
        };
        fit(
            compute,
            &schema,
            &config.fit_settings(),
            train,
            valid,
            parts,
            progress,
        )
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
struct Stepper<H> {
    net: Net<H>,
    tables: SparseTables,
    optimizer: InPlaceAdamW,
    adam: AdamWParams,
    device: Device,
    continuous_width: usize,
}

/// One training run: the stepper plus the data and the example order.
struct Run<'a, H, A> {
    stepper: Stepper<H>,
    varmap: VarMap,
    settings: &'a FitSettings,
    schema: &'a FeatureSchema,
    encoder: &'a ContinuousEncoder,
    assemble: &'a A,
    train: &'a [RankingExample],
    valid: &'a [RankingExample],
    weights: Vec<f32>,
    mean_weight: f64,
    batches: ShuffledBatches,
    rng: Rng,
}

impl<H, R, A> Fit for Run<'_, H, A>
where
    H: LogitHead,
    R: RankingModel,
    A: Fn(ContinuousEncoder, HashMap<String, Tensor>) -> Result<R>,
{
    type Error = RankingError;
    type Snapshot = HashMap<String, Tensor>;

    fn examples_per_epoch(&self) -> usize {
        self.train.len()
    }

    fn steps_per_epoch(&self) -> usize {
        self.batches.steps()
    }

    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        self.batches.shuffle(&mut self.rng);
        Ok(())
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepLoss> {
        let chunk = self.batches.batch(step);
        let rows: Vec<&RankingExample> = chunk.iter().map(|&i| &self.train[i]).collect();
        let batch = Batch::build(self.schema, self.encoder, rows.iter().copied());
        let chunk_weights: Vec<f32> = chunk.iter().map(|&i| self.weights[i]).collect();
        let scale = 1.0 / (chunk.len() as f64 * self.mean_weight);
        self.stepper.adam.lr = lr;
        self.stepper.optimizer.set_learning_rate(lr);
        let sum = self.stepper.step(batch, &rows, &chunk_weights, scale)?;
        Ok(StepLoss {
            sum,
            weight: chunk_weights.iter().map(|&w| f64::from(w)).sum(),
        })
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        if self.valid.is_empty() {
            return Ok(None);
        }
        let model = (self.assemble)(self.encoder.clone(), self.snapshot()?)?;
        Ok(Some(
            model.selection_loss(self.valid, self.settings.unit_weights)?,
        ))
    }

    fn snapshot(&self) -> Result<Self::Snapshot> {
        current_weights(&self.varmap, &self.stepper.tables)
    }

    fn restore(&mut self, snapshot: Self::Snapshot) -> Result<()> {
        // Only the final ranker is built from the restored weights: keep them as they are.
        nn::vars::restore(&self.varmap, &snapshot)?;
        self.stepper.tables.restore(&snapshot)
    }
}

impl SparseTables {
    /// Puts the tables of a snapshot back.
    fn restore(&mut self, snapshot: &HashMap<String, Tensor>) -> Result<()> {
        for (name, table) in [
            (ITEM_TABLE, &mut self.items),
            (TOKEN_TABLE, &mut self.tokens),
            (USER_TABLE, &mut self.users),
        ] {
            if let Some(t) = snapshot.get(name) {
                table.set_values(t)?;
            }
        }
        Ok(())
    }
}

impl<H: LogitHead> Stepper<H> {
    /// One AdamW step on the head's objective ([`LogitHead::objective`]: `scale` x the weighted
    /// loss of `batch` for a single-task head); returns the unscaled sum of w * loss.
    fn step(
        &mut self,
        mut batch: Batch,
        rows: &[&RankingExample],
        weights: &[f32],
        scale: f64,
    ) -> Result<f64> {
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
        let x0 = self.net.input.forward(&compact, &tensors)?;
        let labels = Tensor::from_slice(batch.labels(), batch.len(), device)?;
        let weights = Tensor::from_slice(weights, batch.len(), device)?;
        let (objective, sum) = self
            .net
            .head
            .objective(&x0, &labels, &weights, scale, rows)?;
        let grads = objective.backward()?;
        self.optimizer.step(&grads)?;
        let (adam, step) = (&self.adam, self.optimizer.steps());
        for (table, var) in [
            (&mut self.tables.items, &items),
            (&mut self.tables.tokens, &tokens),
            (&mut self.tables.users, &users),
        ] {
            table.update(grads.get(var.as_tensor()), step, adam)?;
        }
        Ok(sum)
    }
}

/// Copies of the current tower variables and tables in host memory, detached from any graph.
fn current_weights(varmap: &VarMap, tables: &SparseTables) -> Result<HashMap<String, Tensor>> {
    let host = &Device::Cpu;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| RankingError::InvalidConfig("variable map lock poisoned".into()))?;
    let mut weights = data
        .iter()
        .map(|(name, var)| {
            let t = var.as_tensor().detach();
            let t = if t.device().is_cpu() {
                t.copy()?
            } else {
                t.to_device(host)?
            };
            Ok((name.clone(), t))
        })
        .collect::<Result<HashMap<_, _>>>()?;
    weights.insert(ITEM_TABLE.to_string(), tables.items.to_tensor(host)?);
    weights.insert(TOKEN_TABLE.to_string(), tables.tokens.to_tensor(host)?);
    weights.insert(USER_TABLE.to_string(), tables.users.to_tensor(host)?);
    Ok(weights)
}

/// sum w * loss / sum w of `logits` for `examples`.
pub(crate) fn log_loss_of(examples: &[RankingExample], logits: &[f32], unit_weights: bool) -> f64 {
    let (mut loss, mut weight) = (0f64, 0f64);
    for (example, &z) in examples.iter().zip(logits) {
        let w = f64::from(example_weight(example, unit_weights));
        loss += w * logistic_loss(f64::from(z), f64::from(u8::from(example.label)));
        weight += w;
    }
    loss / weight.max(f64::MIN_POSITIVE)
}
