//! Rankers that learn explicit feature crosses on the YouTube ranker's input: DeepFM
//! ([`crate::deepfm`]) and DCN-v2 ([`crate::dcn_v2`]); the multi-task ranker
//! ([`crate::multitask`]) is built on the same core. Each model file is a head over x_0
//! ([`CrossHead`]: the concatenated field embeddings and encoded continuous features of
//! [`crate::model::FeatureInput`]); this file is the rest, the same for every head: training
//! through the shared loop ([`crate::train::fit`], the watch-time-weighted logistic loss of
//! Covington et al. 2016 section 4.2, or unit weights), scoring (x_0 rows assembled by
//! [`InputRows`], then the head), and the model folder (`ranker.safetensors` + `ranker.json`
//! naming the model, its settings, the schema and the quantiles).

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};
use crate::example::{FeatureSchema, RankingExample};
use crate::model::{Fill, InputDims, LogitHead};
use crate::quantiles::{ContinuousEncoder, Quantiles};
use crate::serve::{DeviceHead, InputRows};
use crate::train::{fit, log_loss_of, FitSettings, ModelParts};
use crate::youtube::{META_FILE, SCORE_BATCH, WEIGHTS_FILE};
use nn::trainer::{EpochReport, TrainReport};
use nn::Compute;

/// `format` value of [`META_FILE`] (shared with the YouTube ranker: a ranker folder).
const FORMAT: &str = "recpipe-ranker";
/// Version of the layout of [`META_FILE`].
const FORMAT_VERSION: u32 = 1;

/// A model's head over x_0 and what the shared core needs to know of its settings.
pub(crate) trait CrossHead: LogitHead + Sized + Send + Sync {
    /// The model's settings (`[ranking.<kind>]`).
    type Config: Clone + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync;
    /// Registry name.
    const KIND: &'static str;
    /// Rejects settings that cannot train, naming the section and key.
    fn validate(config: &Self::Config) -> Result<()>;
    /// The shared loop's settings (tables, optimiser, epochs).
    fn fit_settings(config: &Self::Config, unit_weights: bool) -> FitSettings;
    /// The head over x_0 of `width` (`vb` holds variables when training, saved tensors when
    /// loading: a missing or misshapen one is an error).
    fn build(
        vb: VarBuilder,
        schema: &FeatureSchema,
        config: &Self::Config,
        width: usize,
    ) -> Result<Self>;
    /// The initial value rule of each head variable.
    fn fill(name: &str, dims: &[usize], prior: f32) -> Fill;
    /// The head's tasks (the multi-task head; every other head has one, the watch).
    fn task_names(&self) -> Vec<String> {
        vec![crate::multitask::WATCH.to_string()]
    }
    /// The logits `[batch]` of every task of [`CrossHead::task_names`] (the watch first).
    fn task_logits(&self, x0: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![self.logits(x0)?])
    }
    /// The early-stopping loss of `examples` given every task's logits.
    fn selection_loss(
        &self,
        examples: &[RankingExample],
        task_logits: &[Vec<f32>],
        unit_weights: bool,
    ) -> f64 {
        log_loss_of(examples, &task_logits[0], unit_weights)
    }
    /// Prepares the scoring path from the head's weights (after loading or training).
    fn prepare_scoring(&mut self) -> Result<()> {
        Ok(())
    }
    /// The logits of `rows` x_0 rows (row-major), for scoring: the same function as
    /// [`LogitHead::logits`], free to run fewer tensor operations (each costs a thread
    /// synchronisation).
    fn score_rows(&self, x0: Vec<f32>, rows: usize, device: &Device) -> Result<Vec<f32>> {
        let width = x0.len() / rows.max(1);
        let x0 = Tensor::from_vec(x0, (rows, width), device)?;
        Ok(self.logits(&x0)?.to_vec1::<f32>()?)
    }
}

/// What `ranker.json` holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "C: Serialize + DeserializeOwned")]
struct Meta<C> {
    format: String,
    version: u32,
    model: String,
    config: C,
    schema: FeatureSchema,
    quantiles: ContinuousEncoder,
    unit_weights: bool,
}

/// A trained ranker: head `H` on the shared input.
pub(crate) struct CrossRanker<H: CrossHead> {
    config: H::Config,
    schema: FeatureSchema,
    encoder: ContinuousEncoder,
    unit_weights: bool,
    rows: InputRows,
    head: H,
    /// The head on a device, when scoring there ([`CrossRanker::score_with`]).
    on_device: Option<DeviceHead<H>>,
    weights: HashMap<String, Tensor>,
    device: Device,
}

impl<H: CrossHead> CrossRanker<H> {
    /// Trains on `train`, keeping the epoch with the lowest weighted loss on `valid` (the last
    /// epoch when it is empty), on `compute`'s device (see [`fit`]); `unit_weights` trains the
    /// ablation. The ranker returned is in host memory.
    pub fn train_with(
        compute: &Compute,
        config: &H::Config,
        schema: FeatureSchema,
        unit_weights: bool,
        train: &[RankingExample],
        valid: &[RankingExample],
        progress: &mut dyn FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        H::validate(config)?;
        let settings = H::fit_settings(config, unit_weights);
        let device = Device::Cpu;
        let parts = ModelParts {
            build: |vb: VarBuilder, width| H::build(vb, &schema, config, width),
            fill: H::fill,
            assemble: |encoder, weights| {
                Self::from_weights(
                    config.clone(),
                    schema.clone(),
                    encoder,
                    unit_weights,
                    weights,
                    &device,
                )
            },
        };
        fit(compute, &schema, &settings, train, valid, parts, progress)
    }

    /// Assembles a ranker around trained weights, checking every weight's name and shape.
    pub(crate) fn from_weights(
        config: H::Config,
        schema: FeatureSchema,
        encoder: ContinuousEncoder,
        unit_weights: bool,
        weights: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let dims = Self::dims(&config);
        let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, device);
        let mut head = H::build(vb, &schema, &config, dims.width(&schema))?;
        head.prepare_scoring()?;
        let rows = InputRows::new(&weights, &schema, dims)?;
        Ok(Self {
            config,
            schema,
            encoder,
            unit_weights,
            rows,
            head,
            on_device: None,
            weights,
            device: device.clone(),
        })
    }

    /// Scores with `compute` from now on: the CPU scoring path (the fused passes, the
    /// default), or the head in candle ops on a device (a GPU), fed x_0 rows assembled in host
    /// memory.
    pub fn score_with(&mut self, compute: &Compute) -> Result<()> {
        self.on_device = match compute {
            Compute::FusedCpu => None,
            Compute::Candle(device) => {
                let (schema, config) = (&self.schema, &self.config);
                let width = Self::dims(config).width(schema);
                Some(DeviceHead::new(&self.weights, device, |vb| {
                    H::build(vb, schema, config, width)
                })?)
            }
        };
        Ok(())
    }

    fn dims(config: &H::Config) -> InputDims {
        H::fit_settings(config, false).dims
    }

    /// The logit of each example, in batches of [`SCORE_BATCH`].
    pub fn logits(&self, examples: &[RankingExample]) -> Result<Vec<f32>> {
        for (index, example) in examples.iter().enumerate() {
            self.schema.check(index, example)?;
        }
        let mut logits = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(SCORE_BATCH) {
            if let Some(head) = &self.on_device {
                logits.extend(head.logits(&self.rows, chunk, &self.encoder)?);
                continue;
            }
            let x0 = self.rows.rows_vec(chunk, &self.encoder);
            logits.extend(self.head.score_rows(x0, chunk.len(), &self.device)?);
        }
        Ok(logits)
    }

    /// Every task's logits ([`CrossHead::task_logits`]), one vector per task.
    pub fn task_logits(&self, examples: &[RankingExample]) -> Result<Vec<Vec<f32>>> {
        for (index, example) in examples.iter().enumerate() {
            self.schema.check(index, example)?;
        }
        let mut out = vec![Vec::with_capacity(examples.len()); self.head.task_names().len()];
        for chunk in examples.chunks(SCORE_BATCH) {
            let task_logits = match &self.on_device {
                Some(head) => {
                    head.head()
                        .task_logits(&head.rows(&self.rows, chunk, &self.encoder)?)?
                }
                None => {
                    let x0 = self.rows.rows_vec(chunk, &self.encoder);
                    let width = x0.len() / chunk.len().max(1);
                    let x0 = Tensor::from_vec(x0, (chunk.len(), width), &self.device)?;
                    self.head.task_logits(&x0)?
                }
            };
            for (task, logits) in out.iter_mut().zip(task_logits) {
                task.extend(logits.to_vec1::<f32>()?);
            }
        }
        Ok(out)
    }

    fn multi_task(&self) -> bool {
        self.head.task_names().len() > 1
    }

    /// Logits through the training network's input (candle embedding bags over the full
    /// tables): the reference the scoring path must match.
    #[cfg(test)]
    pub(crate) fn training_net_logits(&self, examples: &[RankingExample]) -> Result<Vec<f32>> {
        use crate::model::{FeatureInput, Tables, ITEM_TABLE, TOKEN_TABLE, USER_TABLE};
        let batch = crate::batch::Batch::build(&self.schema, &self.encoder, examples.iter());
        let tensors = batch.to_tensors(&self.device, self.encoder.width())?;
        let table = |name: &str| {
            self.weights
                .get(name)
                .ok_or_else(|| RankingError::InvalidConfig(format!("no {name}")))
        };
        let tables = Tables {
            items: table(ITEM_TABLE)?,
            tokens: table(TOKEN_TABLE)?,
            users: table(USER_TABLE)?,
        };
        let input = FeatureInput::new(&self.schema, Self::dims(&self.config));
        let x0 = input.forward(&tables, &tensors)?;
        Ok(self.head.logits(&x0)?.to_vec1::<f32>()?)
    }

    /// Reads a ranker written by [`nn::Ranker::save`], on the CPU.
    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META_FILE);
        let text =
            std::fs::read_to_string(&meta_path).map_err(|source| io_error(&meta_path, source))?;
        let meta: Meta<H::Config> =
            serde_json::from_str(&text).map_err(|source| RankingError::Json {
                path: meta_path.clone(),
                source,
            })?;
        let incompatible = |reason: String| RankingError::IncompatibleModel {
            path: meta_path.clone(),
            reason,
        };
        if meta.format != FORMAT || meta.version != FORMAT_VERSION || meta.model != H::KIND {
            return Err(incompatible(format!(
                "format {} version {} model {}, expected {FORMAT} version {FORMAT_VERSION} \
                 model {}",
                meta.format,
                meta.version,
                meta.model,
                H::KIND
            )));
        }
        H::validate(&meta.config)?;
        meta.schema.validate()?;
        if meta.quantiles.features.len() != meta.schema.continuous.len() {
            return Err(incompatible(
                "quantiles do not match the continuous features".into(),
            ));
        }
        for quantiles in &meta.quantiles.features {
            Quantiles::from_knots(quantiles.knots().to_vec())?;
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        if !weights_path.is_file() {
            return Err(io_error(&weights_path, std::io::ErrorKind::NotFound.into()));
        }
        let device = Device::Cpu;
        let weights = candle_core::safetensors::load(&weights_path, &device)?;
        Self::from_weights(
            meta.config,
            meta.schema,
            meta.quantiles,
            meta.unit_weights,
            weights,
            &device,
        )
    }
}

impl<H: CrossHead> nn::Ranker for CrossRanker<H> {
    type Example = RankingExample;
    type Error = RankingError;

    fn kind(&self) -> &'static str {
        H::KIND
    }

    fn logits(&self, examples: &[RankingExample]) -> Result<Vec<f32>> {
        CrossRanker::logits(self, examples)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        candle_core::safetensors::save(&self.weights, dir.join(WEIGHTS_FILE))?;
        let meta = Meta {
            format: FORMAT.to_string(),
            version: FORMAT_VERSION,
            model: H::KIND.to_string(),
            config: self.config.clone(),
            schema: self.schema.clone(),
            quantiles: self.encoder.clone(),
            unit_weights: self.unit_weights,
        };
        let meta_path = dir.join(META_FILE);
        let text = serde_json::to_string_pretty(&meta).map_err(|source| RankingError::Json {
            path: meta_path.clone(),
            source,
        })?;
        std::fs::write(&meta_path, text).map_err(|source| io_error(&meta_path, source))
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
}

impl<H: CrossHead> crate::registry::RankingModel for CrossRanker<H> {
    fn score_with(&mut self, compute: &Compute) -> Result<()> {
        CrossRanker::score_with(self, compute)
    }

    fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    fn weighted_log_loss(&self, examples: &[RankingExample], unit_weights: bool) -> Result<f64> {
        let logits = if self.multi_task() {
            CrossRanker::task_logits(self, examples)?.swap_remove(0)
        } else {
            self.logits(examples)?
        };
        Ok(log_loss_of(examples, &logits, unit_weights))
    }

    fn task_names(&self) -> Vec<String> {
        self.head.task_names()
    }

    fn task_logits(&self, examples: &[RankingExample]) -> Result<Vec<Vec<f32>>> {
        if self.multi_task() {
            CrossRanker::task_logits(self, examples)
        } else {
            Ok(vec![self.logits(examples)?])
        }
    }

    fn selection_loss(&self, examples: &[RankingExample], unit_weights: bool) -> Result<f64> {
        if !self.multi_task() {
            return self.weighted_log_loss(examples, unit_weights);
        }
        let logits = CrossRanker::task_logits(self, examples)?;
        Ok(self.head.selection_loss(examples, &logits, unit_weights))
    }
}

/// The training settings every cross ranker's section has, checked in one place: a bad value
/// is a one-line error naming `[section] key`.
pub(crate) struct TrainingKeys<'a> {
    /// `[ranking.<kind>]`, for the messages.
    pub section: &'a str,
    /// `hidden`.
    pub hidden: &'a [usize],
    /// `n_quantiles`.
    pub n_quantiles: usize,
    /// `batch_size`.
    pub batch_size: usize,
    /// `learning_rate`.
    pub learning_rate: f64,
    /// `weight_decay`.
    pub weight_decay: f64,
}

impl TrainingKeys<'_> {
    /// Checks the keys.
    pub fn validate(&self) -> Result<()> {
        let section = self.section;
        let bad = |key: &str, why: &str| {
            Err(RankingError::InvalidConfig(format!(
                "[{section}] {key} {why}"
            )))
        };
        if self.hidden.contains(&0) {
            return bad("hidden", "widths must be positive");
        }
        if self.n_quantiles == 0 {
            return bad("n_quantiles", "must be positive");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be positive");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate", "must be a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", "must be a non-negative number");
        }
        Ok(())
    }
}

/// Glorot-uniform bound of a `[fan_out, fan_in]` weight: sqrt(6 / (fan_in + fan_out)).
pub(crate) fn glorot(dims: &[usize]) -> Fill {
    let fans: usize = dims.iter().rev().take(2).sum();
    Fill::Uniform((6.0 / fans.max(1) as f64).sqrt())
}

fn io_error(path: &Path, source: std::io::Error) -> RankingError {
    RankingError::Io {
        path: PathBuf::from(path),
        source,
    }
}

#[cfg(test)]
#[path = "feature_ranker_testkit.rs"]
pub(crate) mod testkit;
