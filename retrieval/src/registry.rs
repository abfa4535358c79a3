//! The retrievers this build knows, by name: choosing one is configuration
//! (`[retrieval] model = "mf"` with its own section `[retrieval.mf]`). Adding a model is its
//! file plus its line in [`MODELS`], its section field and its arms below.

use std::path::Path;

use nn::{Compute, EpochReport, Retriever, TrainReport, TrainingSet};
use serde::{Deserialize, Serialize};

use crate::autoencoder::{Autoencoder, AutoencoderSettings};
use crate::autorec::AutoRecConfig;
use crate::cdae::CdaeConfig;
use crate::cfgan::CfganConfig;
use crate::error::{Result, RetrievalError};
use crate::files;
use crate::gmf::Gmf;
use crate::gru4rec::{Gru4Rec, Gru4RecConfig};
use crate::mf::{Mf, MfConfig};
use crate::mult_dae::MultDaeConfig;
use crate::mult_vae::MultVaeConfig;
use crate::sasrec::{SasRec, SasRecConfig};
use crate::two_tower::{TwoTower, TwoTowerConfig};
use crate::warm::WarmStart;
use crate::youtube_dnn::{YoutubeDnn, YoutubeDnnConfig};
use crate::{
    autorec, cdae, cfgan, gmf, gru4rec, mf, mult_dae, mult_vae, sasrec, two_tower, youtube_dnn,
};
use ranking::ncf::{self, Ncf, NcfConfig, NcfKind};

/// A trained retriever of any kind.
pub type DynRetriever = dyn Retriever<Error = RetrievalError>;

/// Registry names of the retrievers this build can train and load.
pub const MODELS: &[&str] = &[
    youtube_dnn::KIND,
    mf::KIND,
    mult_vae::KIND,
    mult_dae::KIND,
    cdae::KIND,
    autorec::KIND,
    cfgan::KIND,
    gmf::KIND,
    sasrec::KIND,
    gru4rec::KIND,
    two_tower::KIND,
];

/// NCF's pair scorers (He et al. 2017): trained on the same implicit feedback, but their score
/// is a network over the pair, not a dot product, so the index cannot serve them; `recpipe
/// evaluate --protocol ncf` measures them.
pub const PAIR_MODELS: &[&str] = &[ncf::KIND_MLP, ncf::KIND_NEUMF];

/// The `[retrieval]` section: which model, and each model's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrievalSettings {
    /// Registry name of the model to train (one of [`MODELS`]).
    pub model: String,
    /// `[retrieval.youtube_dnn]`.
    pub youtube_dnn: YoutubeDnnConfig,
    /// `[retrieval.mf]`.
    pub mf: MfConfig,
    /// `[retrieval.mult_vae]`.
    pub mult_vae: MultVaeConfig,
    /// `[retrieval.mult_dae]`.
    pub mult_dae: MultDaeConfig,
    /// `[retrieval.cdae]`.
    pub cdae: CdaeConfig,
    /// `[retrieval.autorec_u]`.
    pub autorec_u: AutoRecConfig,
    /// `[retrieval.cfgan]`.
    pub cfgan: CfganConfig,
    /// `[retrieval.gmf]`.
    pub gmf: NcfConfig,
    /// `[retrieval.sasrec]`.
    pub sasrec: SasRecConfig,
    /// `[retrieval.gru4rec]`.
    pub gru4rec: Gru4RecConfig,
    /// `[retrieval.two_tower]`.
    pub two_tower: TwoTowerConfig,
    /// `[retrieval.mlp]` (a pair model, see [`PAIR_MODELS`]).
    pub mlp: NcfConfig,
    /// `[retrieval.neumf]` (a pair model, see [`PAIR_MODELS`]).
    pub neumf: NcfConfig,
    /// The device training runs on: `cpu` or `cuda:N` (see [`Compute::parse`]). Not part of
    /// `[retrieval]`: the binary sets it from `[train] device` or `--device`.
    #[serde(skip)]
    pub device: String,
}

impl Default for RetrievalSettings {
    fn default() -> Self {
        Self {
            model: youtube_dnn::KIND.to_string(),
            youtube_dnn: YoutubeDnnConfig::default(),
            mf: MfConfig::default(),
            mult_vae: MultVaeConfig::default(),
            mult_dae: MultDaeConfig::default(),
            cdae: CdaeConfig::default(),
            autorec_u: AutoRecConfig::default(),
            cfgan: CfganConfig::default(),
            gmf: NcfConfig::default(),
            sasrec: SasRecConfig::default(),
            gru4rec: Gru4RecConfig::default(),
            two_tower: TwoTowerConfig::default(),
            mlp: NcfConfig::default(),
            neumf: NcfConfig::default(),
            device: "cpu".to_string(),
        }
    }
}

fn ranking_err(e: ranking::RankingError) -> RetrievalError {
    RetrievalError::InvalidConfig(e.to_string())
}

fn unknown(name: &str) -> RetrievalError {
    RetrievalError::UnknownModel {
        name: name.to_string(),
        known: MODELS.join(", "),
    }
}

impl RetrievalSettings {
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
            youtube_dnn::KIND => self.youtube_dnn.validate(),
            mf::KIND => self.mf.validate(),
            mult_vae::KIND => self.mult_vae.validate(),
            mult_dae::KIND => self.mult_dae.validate(),
            cdae::KIND => self.cdae.validate(),
            autorec::KIND => self.autorec_u.validate(),
            cfgan::KIND => self.cfgan.validate(),
            gmf::KIND => self.gmf.validate("retrieval.gmf").map_err(ranking_err),
            sasrec::KIND => self.sasrec.validate(),
            gru4rec::KIND => self.gru4rec.validate(),
            two_tower::KIND => self.two_tower.validate(),
            pair if PAIR_MODELS.contains(&pair) => Err(RetrievalError::InvalidConfig(format!(
                "'{pair}' scores (user, item) pairs through a network, which the index cannot \
                 serve; measure it with `recpipe evaluate --protocol ncf --model {pair}`"
            ))),
            other => Err(unknown(other)),
        }
    }

    /// Trains one of NCF's models (GMF, MLP, NeuMF) on `data`'s interactions with its
    /// `[retrieval.<kind>]` settings, as a pair scorer (for EVAL.md section 5).
    pub fn train_pair_model(
        &self,
        kind: &str,
        data: &TrainingSet,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Ncf, TrainReport)> {
        let compute = Compute::parse(&self.device)?;
        let (k, cfg) = match kind {
            ncf::KIND_GMF => (NcfKind::Gmf, &self.gmf),
            ncf::KIND_MLP => (NcfKind::Mlp, &self.mlp),
            ncf::KIND_NEUMF => (NcfKind::NeuMf, &self.neumf),
            other => return Err(unknown(other)),
        };
        let cfg = NcfConfig {
            compute,
            ..cfg.clone()
        };
        gmf::train_ncf(k, &cfg, data, None, progress)
    }

    /// Maximum epochs of the chosen model (for progress display).
    pub fn epochs(&self) -> usize {
        match self.model.as_str() {
            mf::KIND => self.mf.epochs,
            mult_vae::KIND => self.mult_vae.epochs,
            mult_dae::KIND => self.mult_dae.epochs,
            cdae::KIND => self.cdae.epochs,
            autorec::KIND => self.autorec_u.epochs,
            cfgan::KIND => self.cfgan.epochs,
            gmf::KIND => self.gmf.epochs,
            sasrec::KIND => self.sasrec.epochs,
            gru4rec::KIND => self.gru4rec.epochs,
            two_tower::KIND => self.two_tower.epochs,
            ncf::KIND_MLP => self.mlp.epochs,
            ncf::KIND_NEUMF => self.neumf.epochs,
            _ => self.youtube_dnn.epochs,
        }
    }

    /// The chosen model's settings as JSON (for manifests and reports).
    pub fn chosen_config(&self) -> serde_json::Value {
        let value = match self.model.as_str() {
            mf::KIND => serde_json::to_value(&self.mf),
            mult_vae::KIND => serde_json::to_value(&self.mult_vae),
            mult_dae::KIND => serde_json::to_value(&self.mult_dae),
            cdae::KIND => serde_json::to_value(&self.cdae),
            autorec::KIND => serde_json::to_value(&self.autorec_u),
            cfgan::KIND => serde_json::to_value(&self.cfgan),
            gmf::KIND => serde_json::to_value(&self.gmf),
            sasrec::KIND => serde_json::to_value(&self.sasrec),
            gru4rec::KIND => serde_json::to_value(&self.gru4rec),
            two_tower::KIND => serde_json::to_value(&self.two_tower),
            ncf::KIND_MLP => serde_json::to_value(&self.mlp),
            ncf::KIND_NEUMF => serde_json::to_value(&self.neumf),
            _ => serde_json::to_value(&self.youtube_dnn),
        };
        value.unwrap_or_default()
    }

    /// Where the chosen model trains: [`Self::device`] opened (every model trains on a GPU).
    pub fn compute(&self) -> Result<Compute> {
        Ok(Compute::parse(&self.device)?)
    }

    /// Trains the chosen model on `data`, from `warm`'s weights when given (same kind only),
    /// on [`Self::device`].
    pub fn train(
        &self,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Box<DynRetriever>, TrainReport)> {
        self.train_on(&self.compute()?, data, warm, progress)
    }

    /// [`Self::train`] computing as `compute` says (benchmarks compare the fused kernels with
    /// [`Compute::Candle`] on the CPU).
    pub fn train_on(
        &self,
        compute: &Compute,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Box<DynRetriever>, TrainReport)> {
        let compute = compute.clone();
        Ok(match self.model.as_str() {
            youtube_dnn::KIND => {
                let (m, r) =
                    YoutubeDnn::train_with(&compute, &self.youtube_dnn, data, warm, progress)?;
                (Box::new(m), r)
            }
            mf::KIND => {
                let (m, r) = Mf::train_with(&compute, &self.mf, data, warm, progress)?;
                (Box::new(m), r)
            }
            mult_vae::KIND => boxed(self.mult_vae.train_with(&compute, data, warm, progress)?),
            mult_dae::KIND => boxed(self.mult_dae.train_with(&compute, data, warm, progress)?),
            cdae::KIND => boxed(self.cdae.train_with(&compute, data, warm, progress)?),
            autorec::KIND => boxed(self.autorec_u.train_with(&compute, data, warm, progress)?),
            cfgan::KIND => boxed(self.cfgan.train_with(&compute, data, warm, progress)?),
            gmf::KIND => {
                let cfg = NcfConfig {
                    compute: compute.clone(),
                    ..self.gmf.clone()
                };
                let (m, r) = Gmf::train(&cfg, data, warm, progress)?;
                (Box::new(m), r)
            }
            sasrec::KIND => {
                let (m, r) = SasRec::train_with(&compute, &self.sasrec, data, warm, progress)?;
                (Box::new(m), r)
            }
            gru4rec::KIND => {
                let (m, r) = Gru4Rec::train_with(&compute, &self.gru4rec, data, warm, progress)?;
                (Box::new(m), r)
            }
            two_tower::KIND => {
                let (m, r) = TwoTower::train_with(&compute, &self.two_tower, data, warm, progress)?;
                (Box::new(m), r)
            }
            other => return Err(unknown(other)),
        })
    }
}

fn boxed((model, report): (Autoencoder, TrainReport)) -> (Box<DynRetriever>, TrainReport) {
    (Box::new(model), report)
}

/// Reads the model saved in `dir`, whatever its kind.
pub fn load(dir: &Path) -> Result<Box<DynRetriever>> {
    Ok(match files::kind_of(dir)?.as_str() {
        youtube_dnn::KIND => Box::new(YoutubeDnn::load(dir)?),
        mf::KIND => Box::new(Mf::load(dir)?),
        mult_vae::KIND => Box::new(MultVaeConfig::load(dir)?),
        mult_dae::KIND => Box::new(MultDaeConfig::load(dir)?),
        cdae::KIND => Box::new(CdaeConfig::load(dir)?),
        autorec::KIND => Box::new(AutoRecConfig::load(dir)?),
        cfgan::KIND => Box::new(CfganConfig::load(dir)?),
        gmf::KIND => Box::new(Gmf::load(dir)?),
        sasrec::KIND => Box::new(SasRec::load(dir)?),
        gru4rec::KIND => Box::new(Gru4Rec::load(dir)?),
        two_tower::KIND => Box::new(TwoTower::load(dir)?),
        other => return Err(unknown(other)),
    })
}
