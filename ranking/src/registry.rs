//! The rankers this build knows, by name: `[ranking] model = "youtube"` with the model's own
//! section (`[ranking.youtube]`). Adding a model is its file plus its line in [`MODELS`], its
//! settings field and its arms below (a head over the shared input x_0 is a
//! [`crate::feature_ranker::CrossHead`], trained, scored and saved by
//! [`CrossRanker`]).

use std::path::Path;

use nn::{Compute, Ratings, SideFeatures};
use serde::{Deserialize, Serialize};

use crate::autorec::{self, AutoRec, AutoRecConfig, Side};
use crate::cf_ranker::{CfRanker, CfSettings};
use crate::config::RankerConfig;
use crate::dcn_v2::{self, DcnV2Config, DcnV2Head};
use crate::deep_mf::{self, DeepMf, DeepMfConfig};
use crate::deepfm::{self, DeepFmConfig, DeepFmHead};
use crate::error::{RankingError, Result};
use crate::example::{FeatureSchema, RankingExample};
use crate::feature_ranker::CrossRanker;
use crate::multitask::{self, MultitaskConfig, MultitaskHead};
use crate::ncf::{self, Ncf, NcfConfig, NcfKind};
use crate::rbm::{self, Rbm, RbmConfig};
use crate::train::{EpochReport, TrainReport};
use crate::youtube::{self, YoutubeRanker};

/// Registry names of the rankers this build can train and load.
pub const MODELS: &[&str] = &[
    youtube::KIND,
    ncf::KIND_NEUMF,
    deep_mf::KIND,
    deepfm::KIND,
    dcn_v2::KIND,
    multitask::KIND,
];

/// What the pipeline needs of any ranker beyond [`nn::Ranker`].
pub trait RankingModel: nn::Ranker<Example = RankingExample, Error = RankingError> {
    /// The feature schema examples must fit.
    fn schema(&self) -> &FeatureSchema;
    /// Weighted log loss on `examples` (watch-time weights, or unit weights) of the watch
    /// prediction (the multi-task ranker: its watch head).
    fn weighted_log_loss(&self, examples: &[RankingExample], unit_weights: bool) -> Result<f64>;

    /// The tasks whose logits [`RankingModel::task_logits`] returns: `watch` (the watch-time
    /// weighted logit, e^logit = expected watch time), then the multi-task ranker's label heads.
    fn task_names(&self) -> Vec<String> {
        vec![crate::multitask::WATCH.to_string()]
    }

    /// The logits of every task of [`RankingModel::task_names`], one vector per task.
    fn task_logits(&self, examples: &[RankingExample]) -> Result<Vec<Vec<f32>>> {
        Ok(vec![self.logits(examples)?])
    }

    /// Scores with `compute` from now on (what `rerank --device cuda:N` asks): the CPU
    /// scoring path ([`Compute::FusedCpu`], every ranker's default), or candle ops on a device.
    fn score_with(&mut self, compute: &Compute) -> Result<()>;

    /// The early-stopping loss on `examples` ([`RankingModel::weighted_log_loss`] unless the
    /// model trains on several losses).
    fn selection_loss(&self, examples: &[RankingExample], unit_weights: bool) -> Result<f64> {
        self.weighted_log_loss(examples, unit_weights)
    }
}

/// A trained ranker of any kind.
pub type DynRanker = dyn RankingModel;

/// Which ranker to train, and each ranker's settings (the default: the YouTube ranker, every
/// model with its default settings).
#[derive(Debug, Clone, PartialEq)]
pub struct RankerSettings {
    /// Registry name (one of [`MODELS`]).
    pub model: String,
    /// `[ranking.youtube]`.
    pub youtube: RankerConfig,
    /// `[ranking.neumf]`.
    pub neumf: NcfConfig,
    /// `[ranking.deep_mf]`.
    pub deep_mf: DeepMfConfig,
    /// `[ranking.deepfm]`.
    pub deepfm: DeepFmConfig,
    /// `[ranking.dcn_v2]`.
    pub dcn_v2: DcnV2Config,
    /// `[ranking.multitask]`.
    pub multitask: MultitaskConfig,
    /// Names of the examples' extra labels ([`RankingExample::labels`], in order): set by the
    /// caller from the data, read by the multi-task ranker (one head each).
    pub labels: Vec<String>,
    /// The device training runs on: `cpu` or `cuda:N` (see [`Compute::parse`]).
    pub device: String,
}

impl Default for RankerSettings {
    fn default() -> Self {
        Self {
            model: youtube::KIND.to_string(),
            youtube: RankerConfig::default(),
            neumf: NcfConfig::default(),
            deep_mf: DeepMfConfig::default(),
            deepfm: DeepFmConfig::default(),
            dcn_v2: DcnV2Config::default(),
            multitask: MultitaskConfig::default(),
            labels: Vec::new(),
            device: "cpu".to_string(),
        }
    }
}

fn unknown(name: &str) -> RankingError {
    RankingError::InvalidConfig(format!(
        "unknown ranking model '{name}' (known: {})",
        MODELS.join(", ")
    ))
}

impl RankerSettings {
    /// Checks that the model is known and its settings can train.
    pub fn validate(&self) -> Result<()> {
        match self.model.as_str() {
            youtube::KIND => self.youtube.validate(),
            ncf::KIND_NEUMF => self.neumf.validate("ranking.neumf"),
            deep_mf::KIND => self.deep_mf.validate("ranking.deep_mf"),
            deepfm::KIND => self.deepfm.validate(),
            dcn_v2::KIND => self.dcn_v2.validate(),
            multitask::KIND => self.multitask.validate(),
            other => Err(unknown(other)),
        }
    }

    /// Whether the chosen model trains with unit weights (the paper's ablation; the switch is
    /// `[ranking.youtube] unit_weights` or `--unit-weights`, for every ranker).
    pub fn unit_weights(&self) -> bool {
        self.youtube.unit_weights
    }

    /// The same settings trained with unit weights.
    pub fn with_unit_weights(&self) -> Self {
        let mut s = self.clone();
        s.youtube.unit_weights = true;
        s
    }

    /// Maximum epochs of the chosen model (for progress display).
    pub fn epochs(&self) -> usize {
        match self.model.as_str() {
            ncf::KIND_NEUMF => self.neumf.epochs,
            deep_mf::KIND => self.deep_mf.epochs,
            deepfm::KIND => self.deepfm.epochs,
            dcn_v2::KIND => self.dcn_v2.epochs,
            multitask::KIND => self.multitask.epochs,
            _ => self.youtube.epochs,
        }
    }

    /// Trains the chosen model on `train`, stopping early on `valid`, on [`Self::device`].
    pub fn train(
        &self,
        schema: FeatureSchema,
        train: &[RankingExample],
        valid: &[RankingExample],
        progress: &mut dyn FnMut(&EpochReport),
    ) -> Result<(Box<DynRanker>, TrainReport)> {
        let compute = &Compute::parse(&self.device)?;
        match self.model.as_str() {
            youtube::KIND => {
                let (r, report) = YoutubeRanker::train_with(
                    compute,
                    schema,
                    self.youtube.clone(),
                    train,
                    valid,
                    progress,
                )?;
                Ok((Box::new(r), report))
            }
            ncf::KIND_NEUMF | deep_mf::KIND => {
                let neumf = NcfConfig {
                    compute: compute.clone(),
                    ..self.neumf.clone()
                };
                let deep = DeepMfConfig {
                    compute: compute.clone(),
                    ..self.deep_mf.clone()
                };
                let cf = match self.model.as_str() {
                    ncf::KIND_NEUMF => CfSettings::NeuMf(&neumf),
                    _ => CfSettings::DeepMf(&deep),
                };
                let (r, report) =
                    CfRanker::train(cf, schema, self.unit_weights(), train, valid, progress)?;
                Ok((Box::new(r), report))
            }
            deepfm::KIND => {
                let (r, report) = CrossRanker::<DeepFmHead>::train_with(
                    compute,
                    &self.deepfm,
                    schema,
                    self.unit_weights(),
                    train,
                    valid,
                    progress,
                )?;
                Ok((Box::new(r), report))
            }
            dcn_v2::KIND => {
                let (r, report) = CrossRanker::<DcnV2Head>::train_with(
                    compute,
                    &self.dcn_v2,
                    schema,
                    self.unit_weights(),
                    train,
                    valid,
                    progress,
                )?;
                Ok((Box::new(r), report))
            }
            multitask::KIND => {
                let config = MultitaskConfig {
                    labels: self.labels.clone(),
                    ..self.multitask.clone()
                };
                config.validate()?;
                multitask::check_labels(&self.labels, train)?;
                multitask::check_labels(&self.labels, valid).map_err(|e| match e {
                    RankingError::InvalidExample { index, reason } => {
                        RankingError::InvalidExample {
                            index: index + train.len(),
                            reason,
                        }
                    }
                    other => other,
                })?;
                let (r, report) = CrossRanker::<MultitaskHead>::train_with(
                    compute,
                    &config,
                    schema,
                    self.unit_weights(),
                    train,
                    valid,
                    progress,
                )?;
                Ok((Box::new(r), report))
            }
            other => Err(unknown(other)),
        }
    }
}

/// The registry name recorded in a ranker folder's `ranker.json` (folders written before
/// rankers were configurable hold the YouTube ranker).
fn kind_of(dir: &Path) -> Result<String> {
    let path = dir.join(youtube::META_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| RankingError::Io {
        path: path.clone(),
        source,
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| RankingError::Json { path, source })?;
    Ok(json["model"].as_str().unwrap_or(youtube::KIND).to_string())
}

/// Reads the ranker saved in `dir`, whatever its kind.
pub fn load(dir: &Path) -> Result<Box<DynRanker>> {
    match kind_of(dir)?.as_str() {
        youtube::KIND => Ok(Box::new(YoutubeRanker::load(dir)?)),
        ncf::KIND_NEUMF | deep_mf::KIND => Ok(Box::new(CfRanker::load(dir)?)),
        deepfm::KIND => Ok(Box::new(CrossRanker::<DeepFmHead>::load(dir)?)),
        dcn_v2::KIND => Ok(Box::new(CrossRanker::<DcnV2Head>::load(dir)?)),
        multitask::KIND => Ok(Box::new(CrossRanker::<MultitaskHead>::load(dir)?)),
        other => Err(unknown(other)),
    }
}

/// Registry names of the rating models this build can train (EVAL.md section 4).
pub const RATING_MODELS: &[&str] = &[
    ncf::KIND_MF,
    autorec::KIND_ITEM,
    autorec::KIND_USER,
    rbm::KIND,
    ncf::KIND_GMF,
    ncf::KIND_MLP,
    ncf::KIND_NEUMF,
    deep_mf::KIND,
];

/// A trained rating model of any kind.
pub type DynRatingModel = dyn nn::RatingModel<Error = RankingError>;

/// The `[rating]` section: which rating model, and each one's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RatingSettings {
    /// Registry name of the model (one of [`RATING_MODELS`]).
    pub model: String,
    /// `[rating.mf]` (biased MF: GMF with h fixed to ones; the NCF-only keys are unused).
    pub mf: NcfConfig,
    /// `[rating.autorec_i]`.
    pub autorec_i: AutoRecConfig,
    /// `[rating.autorec_u]`.
    pub autorec_u: AutoRecConfig,
    /// `[rating.rbm]`.
    pub rbm: RbmConfig,
    /// `[rating.gmf]`.
    pub gmf: NcfConfig,
    /// `[rating.mlp]`.
    pub mlp: NcfConfig,
    /// `[rating.neumf]`.
    pub neumf: NcfConfig,
    /// `[rating.deep_mf]`.
    pub deep_mf: DeepMfConfig,
    /// The device training runs on: `cpu` or `cuda:N` (not a key of `[rating]`: the binary
    /// sets it from `[train] device` or `--device`).
    #[serde(skip)]
    pub device: String,
}

impl Default for RatingSettings {
    fn default() -> Self {
        Self {
            model: ncf::KIND_MF.to_string(),
            mf: NcfConfig::default(),
            autorec_i: AutoRecConfig::default(),
            autorec_u: AutoRecConfig::default(),
            rbm: RbmConfig::default(),
            gmf: NcfConfig::default(),
            mlp: NcfConfig::default(),
            neumf: NcfConfig::default(),
            deep_mf: DeepMfConfig::default(),
            device: "cpu".to_string(),
        }
    }
}

fn unknown_rating(name: &str) -> RankingError {
    RankingError::InvalidConfig(format!(
        "unknown rating model '{name}' (known: {})",
        RATING_MODELS.join(", ")
    ))
}

impl RatingSettings {
    /// These settings with `model` chosen instead.
    pub fn with_model(&self, model: &str) -> Self {
        Self {
            model: model.to_string(),
            ..self.clone()
        }
    }

    /// Checks that the model is known and its settings can train.
    pub fn validate(&self) -> Result<()> {
        match self.model.as_str() {
            ncf::KIND_MF => self.mf.validate("rating.mf"),
            autorec::KIND_ITEM => self.autorec_i.validate(autorec::KIND_ITEM),
            autorec::KIND_USER => self.autorec_u.validate(autorec::KIND_USER),
            rbm::KIND => self.rbm.validate(),
            ncf::KIND_GMF => self.gmf.validate("rating.gmf"),
            ncf::KIND_MLP => self.mlp.validate("rating.mlp"),
            ncf::KIND_NEUMF => self.neumf.validate("rating.neumf"),
            deep_mf::KIND => self.deep_mf.validate("rating.deep_mf"),
            other => Err(unknown_rating(other)),
        }
    }

    /// The chosen model's settings as JSON.
    pub fn chosen_config(&self) -> serde_json::Value {
        let value = match self.model.as_str() {
            autorec::KIND_ITEM => serde_json::to_value(&self.autorec_i),
            autorec::KIND_USER => serde_json::to_value(&self.autorec_u),
            rbm::KIND => serde_json::to_value(&self.rbm),
            ncf::KIND_GMF => serde_json::to_value(&self.gmf),
            ncf::KIND_MLP => serde_json::to_value(&self.mlp),
            ncf::KIND_NEUMF => serde_json::to_value(&self.neumf),
            deep_mf::KIND => serde_json::to_value(&self.deep_mf),
            _ => serde_json::to_value(&self.mf),
        };
        value.unwrap_or_default()
    }

    /// Maximum epochs of the chosen model (for progress display).
    pub fn epochs(&self) -> usize {
        match self.model.as_str() {
            autorec::KIND_ITEM => self.autorec_i.epochs,
            autorec::KIND_USER => self.autorec_u.epochs,
            rbm::KIND => self.rbm.epochs,
            ncf::KIND_GMF => self.gmf.epochs,
            ncf::KIND_MLP => self.mlp.epochs,
            ncf::KIND_NEUMF => self.neumf.epochs,
            deep_mf::KIND => self.deep_mf.epochs,
            _ => self.mf.epochs,
        }
    }

    /// Trains the chosen model on `train` (dense indices below `num_users` / `num_items`),
    /// selecting the epoch by RMSE on `valid`; models that read side features get `features`.
    pub fn train(
        &self,
        num_users: usize,
        num_items: usize,
        features: Option<&SideFeatures>,
        train: &Ratings,
        valid: &Ratings,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Box<DynRatingModel>, TrainReport)> {
        let compute = Compute::parse(&self.device)?;
        match self.model.as_str() {
            autorec::KIND_ITEM | autorec::KIND_USER => {
                let (side, cfg) = match self.model.as_str() {
                    autorec::KIND_ITEM => (Side::Item, &self.autorec_i),
                    _ => (Side::User, &self.autorec_u),
                };
                let cfg = AutoRecConfig {
                    compute,
                    ..cfg.clone()
                };
                let (m, r) =
                    AutoRec::train(side, &cfg, num_users, num_items, train, valid, progress)?;
                Ok((Box::new(m), r))
            }
            rbm::KIND => {
                let (m, r) = Rbm::train_with(
                    &compute, &self.rbm, num_users, num_items, train, valid, progress,
                )?;
                Ok((Box::new(m), r))
            }
            ncf::KIND_MF | ncf::KIND_GMF | ncf::KIND_MLP | ncf::KIND_NEUMF => {
                let (kind, cfg) = match self.model.as_str() {
                    ncf::KIND_MF => (NcfKind::Mf, &self.mf),
                    ncf::KIND_GMF => (NcfKind::Gmf, &self.gmf),
                    ncf::KIND_MLP => (NcfKind::Mlp, &self.mlp),
                    _ => (NcfKind::NeuMf, &self.neumf),
                };
                let cfg = NcfConfig {
                    compute,
                    ..cfg.clone()
                };
                let (m, r) = Ncf::train(kind, &cfg, num_users, num_items, train, valid, progress)?;
                Ok((Box::new(m), r))
            }
            deep_mf::KIND => {
                let cfg = DeepMfConfig {
                    compute,
                    ..self.deep_mf.clone()
                };
                let (m, r) =
                    DeepMf::train(&cfg, num_users, num_items, features, train, valid, progress)?;
                Ok((Box::new(m), r))
            }
            other => Err(unknown_rating(other)),
        }
    }
}
