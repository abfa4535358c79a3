//! The YouTube ranker (Covington et al. 2016, section 4): a ReLU tower over embedded ids and
//! quantile-normalised continuous features, one logit trained as weighted logistic regression
//! (eq. of section 4.2: positives weigh their watch time, so e^logit estimates it). Scoring,
//! saving and loading.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::RankerConfig;
use crate::error::{RankingError, Result};
use crate::example::{FeatureSchema, RankingExample};
use crate::model::input_width;
use crate::quantiles::{ContinuousEncoder, Quantiles};
use crate::serve::{DeviceHead, ServingNet};
use nn::layers::Tower;
use nn::Compute;

/// Weights file inside a model folder.
pub const WEIGHTS_FILE: &str = "ranker.safetensors";
/// Config, schema and quantiles file inside a model folder.
pub const META_FILE: &str = "ranker.json";
/// `format` value of [`META_FILE`].
const FORMAT: &str = "recpipe-ranker";
/// Version of [`META_FILE`]'s layout this crate reads and writes.
const FORMAT_VERSION: u32 = 1;
/// Examples per forward pass when scoring: large enough for the tower's matmuls to run near the
/// machine's matmul rate, small enough to keep the activations in a few MB.
pub const SCORE_BATCH: usize = 4096;

/// What `ranker.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct RankerMeta {
    format: String,
    version: u32,
    /// Registry name (absent in folders written before rankers were configurable).
    #[serde(default = "kind")]
    model: String,
    config: RankerConfig,
    schema: FeatureSchema,
    quantiles: ContinuousEncoder,
}

/// A trained ranking network with the schema and quantiles it was trained with.
pub struct YoutubeRanker {
    pub(crate) config: RankerConfig,
    pub(crate) schema: FeatureSchema,
    pub(crate) encoder: ContinuousEncoder,
    serving: ServingNet,
    /// The tower on a device, when scoring there ([`YoutubeRanker::score_with`]).
    on_device: Option<DeviceHead<Tower>>,
    pub(crate) weights: HashMap<String, Tensor>,
    device: Device,
}

impl YoutubeRanker {
    /// Assembles a ranker around trained weights (detached from any gradient graph).
    pub(crate) fn from_weights(
        config: RankerConfig,
        schema: FeatureSchema,
        encoder: ContinuousEncoder,
        weights: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        // Building the training network checks every weight's name and shape.
        let vb = candle_nn::VarBuilder::from_tensors(weights.clone(), DType::F32, device);
        crate::model::RankingNet::new(vb, &schema, &config)?;
        let serving = ServingNet::new(&weights, &schema, &config)?;
        Ok(Self {
            config,
            schema,
            encoder,
            serving,
            on_device: None,
            weights,
            device: device.clone(),
        })
    }

    /// Scores with `compute` from now on: the CPU scoring path (the fused kernels, the
    /// default), or the tower in candle ops on a device (a GPU), fed x_0 rows assembled in
    /// host memory.
    pub fn score_with(&mut self, compute: &Compute) -> Result<()> {
        self.on_device = match compute {
            Compute::FusedCpu => None,
            Compute::Candle(device) => {
                let input = input_width(&self.schema, &self.config);
                let hidden = &self.config.hidden;
                Some(DeviceHead::new(&self.weights, device, |vb| {
                    Ok(Tower::new(vb.pp("tower"), input, hidden, 1)?)
                })?)
            }
        };
        Ok(())
    }

    /// The configuration the ranker was trained with.
    pub fn config(&self) -> &RankerConfig {
        &self.config
    }

    /// The feature schema examples must fit.
    pub fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    /// The fitted quantiles of the continuous features.
    pub fn quantiles(&self) -> &[Quantiles] {
        &self.encoder.features
    }

    /// Multiply-adds of the tower per scored example (the matmul work; embeddings excluded).
    pub fn tower_multiply_adds(&self) -> usize {
        Tower::multiply_adds(
            input_width(&self.schema, &self.config),
            &self.config.hidden,
            1,
        )
    }

    /// The logit of each example, in batches of [`SCORE_BATCH`].
    pub fn logits(&self, examples: &[RankingExample]) -> Result<Vec<f32>> {
        for (index, example) in examples.iter().enumerate() {
            self.schema.check(index, example)?;
        }
        let mut logits = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(SCORE_BATCH) {
            logits.extend(self.checked_logits(chunk)?);
        }
        Ok(logits)
    }

    /// Logits of examples already checked against the schema, through the scoring path.
    pub(crate) fn checked_logits(&self, examples: &[RankingExample]) -> Result<Vec<f32>> {
        match &self.on_device {
            Some(head) => head.logits(self.serving.input_rows(), examples, &self.encoder),
            None => self.serving.logits(examples, &self.encoder, &self.device),
        }
    }

    /// Logits through the training network (the reference the scoring path must match).
    #[cfg(test)]
    pub(crate) fn training_net_logits(&self, examples: &[RankingExample]) -> Result<Vec<f32>> {
        use crate::model::{Tables, ITEM_TABLE, TOKEN_TABLE, USER_TABLE};
        let vb =
            candle_nn::VarBuilder::from_tensors(self.weights.clone(), DType::F32, &self.device);
        let net = crate::model::RankingNet::new(vb, &self.schema, &self.config)?;
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
        Ok(net.forward(&tables, &tensors)?.to_vec1::<f32>()?)
    }

    /// The serving score of each example: e^logit, the expected watch time in seconds for a
    /// ranker trained with watch-time weights (the odds of a watch with `unit_weights`).
    pub fn score(&self, examples: &[RankingExample]) -> Result<Vec<f32>> {
        let mut scores = self.logits(examples)?;
        for s in &mut scores {
            *s = s.exp();
        }
        Ok(scores)
    }

    /// Writes [`WEIGHTS_FILE`] and [`META_FILE`] into `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        let weights_path = dir.join(WEIGHTS_FILE);
        candle_core::safetensors::save(&self.weights, &weights_path)?;
        let meta = RankerMeta {
            format: FORMAT.to_string(),
            version: FORMAT_VERSION,
            model: KIND.to_string(),
            config: self.config.clone(),
            schema: self.schema.clone(),
            quantiles: self.encoder.clone(),
        };
        let meta_path = dir.join(META_FILE);
        let text = serde_json::to_string_pretty(&meta).map_err(|source| RankingError::Json {
            path: meta_path.clone(),
            source,
        })?;
        std::fs::write(&meta_path, text).map_err(|source| io_error(&meta_path, source))
    }

    /// Reads a ranker written by [`YoutubeRanker::save`], on the CPU.
    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META_FILE);
        let text =
            std::fs::read_to_string(&meta_path).map_err(|source| io_error(&meta_path, source))?;
        let meta: RankerMeta =
            serde_json::from_str(&text).map_err(|source| RankingError::Json {
                path: meta_path.clone(),
                source,
            })?;
        let incompatible = |reason: String| RankingError::IncompatibleModel {
            path: meta_path.clone(),
            reason,
        };
        if meta.format != FORMAT || meta.version != FORMAT_VERSION {
            return Err(incompatible(format!(
                "format {} version {}, expected {FORMAT} version {FORMAT_VERSION}",
                meta.format, meta.version
            )));
        }
        meta.config.validate()?;
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
        let weights = candle_core::safetensors::load(&weights_path, &device)?
            .into_iter()
            .map(|(name, t)| (current_name(&name), t))
            .collect();
        Self::from_weights(meta.config, meta.schema, meta.quantiles, weights, &device)
    }
}

/// Registry name of the YouTube ranker.
pub const KIND: &str = "youtube";

fn kind() -> String {
    KIND.to_string()
}

impl nn::Ranker for YoutubeRanker {
    type Example = RankingExample;
    type Error = RankingError;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn logits(&self, examples: &[RankingExample]) -> Result<Vec<f32>> {
        YoutubeRanker::logits(self, examples)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        YoutubeRanker::save(self, dir)
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
}

impl crate::registry::RankingModel for YoutubeRanker {
    fn score_with(&mut self, compute: &Compute) -> Result<()> {
        YoutubeRanker::score_with(self, compute)
    }

    fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    fn weighted_log_loss(&self, examples: &[RankingExample], unit_weights: bool) -> Result<f64> {
        YoutubeRanker::weighted_log_loss(self, examples, unit_weights)
    }
}

/// Rankers saved before the tower moved to the shared `nn` crate named its layers
/// `tower.hidden{i}` and `tower.out`; those files keep loading.
fn current_name(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("tower.out.") {
        return format!("tower.output.{rest}");
    }
    if let Some(rest) = name.strip_prefix("tower.hidden") {
        if rest.starts_with(|c: char| c.is_ascii_digit()) {
            return format!("tower.hidden.{rest}");
        }
    }
    name.to_string()
}

fn io_error(path: &Path, source: std::io::Error) -> RankingError {
    RankingError::Io {
        path: PathBuf::from(path),
        source,
    }
}
