//! Rankers that learn explicit feature crosses on the YouTube ranker's input: DeepFM
//! ([`crate::deepfm`]) and DCN-v2 ([`crate::dcn_v2`]). Each model file is a head over x_0
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
use crate::serve::InputRows;
use crate::train::{fit, log_loss_of, FitSettings, ModelParts};
use crate::youtube::{META_FILE, SCORE_BATCH, WEIGHTS_FILE};
use nn::trainer::{EpochReport, TrainReport};

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
    weights: HashMap<String, Tensor>,
    device: Device,
}

impl<H: CrossHead> CrossRanker<H> {
    /// Trains on `train`, keeping the epoch with the lowest weighted loss on `valid` (the last
    /// epoch when it is empty); `unit_weights` trains the ablation.
    pub fn train(
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
        fit(&schema, &settings, train, valid, parts, progress)
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
            weights,
            device: device.clone(),
        })
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
            let x0 = self.rows.rows_vec(chunk, &self.encoder);
            logits.extend(self.head.score_rows(x0, chunk.len(), &self.device)?);
        }
        Ok(logits)
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
    fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    fn weighted_log_loss(&self, examples: &[RankingExample], unit_weights: bool) -> Result<f64> {
        let logits = self.logits(examples)?;
        Ok(log_loss_of(examples, &logits, unit_weights))
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
pub(crate) mod testkit {
    //! What the cross rankers' tests share: a world where only a feature cross predicts the
    //! label, AUC, and the checks every cross ranker must pass.

    use super::*;
    use crate::registry::RankingModel;
    use nn::rng::Rng;
    use nn::Ranker;

    /// The schema of [`xor_world`]: 8 items, 2 tokens, one binary user field, one continuous
    /// feature (noise), 6 users.
    pub fn xor_schema() -> FeatureSchema {
        FeatureSchema {
            n_users: 6,
            n_items: 8,
            n_tokens: 2,
            user_cardinalities: vec![2],
            continuous: vec!["noise".into()],
        }
    }

    /// Impressions whose label depends only on whether the user's field equals the item's
    /// parity: watched with probability 0.7 when it does, 0.1 when not (watch time 10 s). Every
    /// field alone is independent of the label (P = 0.4 for each value), so a model without
    /// crosses can do no better than the base rate. Recent watches and a missing value now and
    /// then exercise the rest of the input.
    pub fn xor_world(seed: u64, count: usize) -> Vec<RankingExample> {
        let mut rng = Rng::new(seed);
        (0..count)
            .map(|_| {
                let (a, i) = (rng.below(2) as u32, rng.below(8) as u32);
                let p = if a == i % 2 { 0.7 } else { 0.1 };
                let label = rng.uniform() < p;
                let noise = if rng.below(10) == 0 {
                    f32::NAN
                } else {
                    rng.uniform() as f32
                };
                RankingExample {
                    user: Some(rng.below(6) as u32),
                    item: Some(i),
                    recent_watches: vec![rng.below(8) as u32],
                    item_tokens: vec![i % 2],
                    recent_tokens: vec![rng.below(2) as u32],
                    user_categorical: vec![Some(a)],
                    continuous: vec![noise],
                    label,
                    watch_time: if label { 10.0 } else { 0.0 },
                }
            })
            .collect()
    }

    /// Area under the ROC curve of `scores` for `labels` (ties count half).
    pub fn auc(labels: &[bool], scores: &[f32]) -> f64 {
        let (mut pairs, mut right) = (0f64, 0f64);
        for (p, &sp) in labels.iter().zip(scores) {
            for (n, &sn) in labels.iter().zip(scores) {
                if *p && !*n {
                    pairs += 1.0;
                    right += if sp > sn {
                        1.0
                    } else if sp == sn {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        right / pairs.max(1.0)
    }

    /// Trains `config` on the XOR world and checks that the model learnt the cross (validation
    /// AUC well above chance, weighted loss well below the base rate's), that scoring matches
    /// the training network, and that a save and a load through the registry give identical
    /// logits. Returns the validation AUC.
    pub fn learns_the_cross_and_round_trips<H: CrossHead>(config: &H::Config) -> f64 {
        let (train, valid) = (xor_world(1, 3000), xor_world(2, 600));
        let (ranker, report) =
            CrossRanker::<H>::train(config, xor_schema(), false, &train, &valid, &mut |_| {})
                .expect("trains");
        let logits = ranker.logits(&valid).expect("logits");
        let labels: Vec<bool> = valid.iter().map(|e| e.label).collect();
        let auc = auc(&labels, &logits);
        // The base rate's weighted loss: the constant logit log(sum w+ / sum w-).
        let (pos, neg) = valid.iter().fold((0f64, 0f64), |(p, n), e| {
            if e.label {
                (p + f64::from(e.watch_time), n)
            } else {
                (p, n + 1.0)
            }
        });
        let prior = log_loss_of(&valid, &vec![(pos / neg).ln() as f32; valid.len()], false);
        let fitted = report.best_validation.expect("validation");
        eprintln!(
            "{}: AUC {auc:.3}, weighted loss {fitted:.4}, base rate {prior:.4}",
            H::KIND
        );
        // The Bayes AUC of this world is 0.8125; without the cross it is 0.5.
        assert!(auc > 0.75, "{}: AUC {auc}", H::KIND);
        assert!(fitted < 0.85 * prior, "{}: {fitted} vs {prior}", H::KIND);
        let own = ranker.weighted_log_loss(&valid, false).expect("loss");
        assert!((own - fitted).abs() < 1e-6);
        // The scoring path (rows assembled in Rust) matches the training input (candle bags).
        let reference = ranker.training_net_logits(&valid).expect("reference");
        for (a, b) in logits.iter().zip(&reference) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // Saved and loaded through the registry: identical logits, also out of vocabulary.
        let dir =
            std::env::temp_dir().join(format!("recpipe-cross-{}-{}", H::KIND, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ranker.save(&dir).expect("save");
        let loaded = crate::registry::load(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let loaded = loaded.expect("load");
        assert_eq!(loaded.kind(), H::KIND);
        let mut probe = valid[..50].to_vec();
        probe[0].item = None;
        probe[1].user_categorical = vec![None];
        probe[2].recent_watches.clear();
        assert_eq!(
            loaded.logits(&probe).expect("loaded"),
            ranker.logits(&probe).expect("trained")
        );
        assert_eq!(loaded.config_json(), ranker.config_json());
        auc
    }
}
