//! The candidate-generation network of Covington, Adams and Sargin, "Deep Neural Networks for
//! YouTube Recommendations" (RecSys 2016), section 3: the user vector is a ReLU tower over the
//! mean embedding of the watched items (plus an order-aware mean of the last few watches, their
//! tokens, the example age and the user features), and next-watch prediction is the extreme
//! multiclass softmax of eq. 1, P(w_t = i | U, C) = e^{v_i u} / sum_j e^{v_j u}, whose weights
//! (with a bias) are the item vectors; trained with the full softmax on small catalogues and
//! the sampled softmax with logQ correction above.

pub mod config;
pub mod network;
mod train;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use nn::init::SeededVarMap;
use nn::{Retriever, UserFeatures, UserQuery};
use serde::{Deserialize, Serialize};

pub use config::YoutubeDnnConfig;
use network::{FeatureSource, ItemTokens, Network, TowerInputs, Vocabulary};

use crate::error::{invalid, Result, RetrievalError};
use crate::files;

/// Registry name.
pub const KIND: &str = "youtube_dnn";
const TOKEN_OFFSETS: &str = "catalog.token_offsets";
const TOKEN_IDS: &str = "catalog.token_ids";
/// Users per chunk when computing vectors.
const CHUNK_USERS: usize = 256;

/// What `retrieval.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedConfig {
    config: YoutubeDnnConfig,
    num_items: usize,
    num_tokens: usize,
    user_cardinalities: Vec<usize>,
    num_numeric: usize,
}

/// A trained candidate-generation model (Covington et al. 2016, §3).
pub struct YoutubeDnn {
    pub(crate) config: YoutubeDnnConfig,
    pub(crate) vocab: Vocabulary,
    pub(crate) network: Network,
    pub(crate) varmap: VarMap,
    pub(crate) item_tokens: ItemTokens,
    pub(crate) device: Device,
}

impl std::fmt::Debug for YoutubeDnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YoutubeDnn")
            .field("config", &self.config)
            .field("vocab", &self.vocab)
            .finish_non_exhaustive()
    }
}

impl YoutubeDnn {
    /// A freshly initialised (untrained) model, seeded by `config.seed`.
    /// The same seed gives the same weights on every device.
    pub(crate) fn init(
        config: &YoutubeDnnConfig,
        vocab: Vocabulary,
        item_tokens: ItemTokens,
        device: &Device,
    ) -> Result<Self> {
        let device = device.clone();
        let varmap = VarMap::new();
        let vb = SeededVarMap::new(varmap.clone(), config.seed).into_var_builder(&device);
        let network = Network::new(vb, config, &vocab)?;
        Ok(Self {
            config: config.clone(),
            vocab,
            network,
            varmap,
            item_tokens,
            device,
        })
    }

    /// The configuration the model was trained with.
    pub fn config(&self) -> &YoutubeDnnConfig {
        &self.config
    }

    /// The network's layers (for inspection).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Checks one query against the model's vocabulary: history items inside the catalogue,
    /// and values (when given) for exactly the user features the model was trained with.
    fn check_query(&self, q: &UserQuery) -> Result<()> {
        if let Some(bad) = q
            .history
            .iter()
            .find(|&&i| i as usize >= self.vocab.num_items)
        {
            return Err(invalid(format!(
                "history item {bad} is outside the catalogue"
            )));
        }
        // Feature values for features the model does not use are ignored.
        let declared = UserFeatures {
            cardinalities: self.vocab.user_cardinalities.clone(),
            num_numeric: self.vocab.num_numeric,
            ..UserFeatures::default()
        };
        let categorical = if declared.cardinalities.is_empty() {
            &[]
        } else {
            q.categorical
        };
        let numeric = if declared.num_numeric == 0 {
            &[]
        } else {
            q.numeric
        };
        Ok(declared.check_values(categorical, numeric)?)
    }

    /// Tower inputs of queries (age 0: serving time).
    fn query_inputs(&self, queries: &[UserQuery]) -> TowerInputs {
        let max_history = self.config.max_history;
        let sources = queries.iter().map(|q| FeatureSource {
            history: &q.history[q.history.len().saturating_sub(max_history)..],
            categorical: q.categorical,
            numeric: q.numeric,
            age: 0.0,
        });
        TowerInputs::build(
            &self.network.layout,
            self.config.recent_window,
            &self.item_tokens,
            sources,
        )
    }

    /// User vectors of a chunk of queries as a `rows x dim` tensor.
    fn user_tensor(&self, queries: &[UserQuery]) -> Result<Tensor> {
        let inputs = self.query_inputs(queries);
        let sparse = self.network.gather_tensor(&inputs)?;
        self.network
            .user_vectors(&sparse, &inputs.dense, &self.device)
    }

    /// The model with every weight in host memory (a model trained on a GPU is saved, indexed
    /// and served from there); a CPU model is returned as it is.
    pub(crate) fn into_cpu(self) -> Result<Self> {
        if self.device.is_cpu() {
            return Ok(self);
        }
        let varmap = files::host_varmap(&self.varmap)?;
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let network = Network::new(vb, &self.config, &self.vocab)?;
        Ok(Self {
            network,
            varmap,
            device: Device::Cpu,
            ..self
        })
    }

    /// Reads a model written by [`Retriever::save`].
    pub fn load(dir: &Path) -> Result<Self> {
        let saved: SavedConfig = files::load_meta(dir)?;
        saved.config.validate()?;
        let device = Device::Cpu;
        let mut tensors = files::load_tensors(dir)?;
        let item_tokens = match (tensors.remove(TOKEN_OFFSETS), tensors.remove(TOKEN_IDS)) {
            (Some(o), Some(i)) => ItemTokens {
                offsets: o.to_dtype(DType::U32)?.to_vec1()?,
                ids: i.to_dtype(DType::U32)?.to_vec1()?,
            },
            _ => ItemTokens::default(),
        };
        let varmap = files::varmap_of(tensors)?;
        let vocab = Vocabulary {
            num_items: saved.num_items,
            num_tokens: saved.num_tokens,
            user_cardinalities: saved.user_cardinalities,
            num_numeric: saved.num_numeric,
        };
        let expected = varmap.all_vars().len();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let network = Network::new(vb, &saved.config, &vocab)
            .map_err(|e| RetrievalError::InvalidModel(e.to_string()))?;
        files::check_complete(&varmap, expected)?;
        let tokens_ok = item_tokens.offsets.is_empty()
            || (item_tokens.offsets.len() == vocab.num_items + 1
                && item_tokens.offsets.last().copied() == Some(item_tokens.ids.len() as u32)
                && item_tokens
                    .ids
                    .iter()
                    .all(|&t| (t as usize) < vocab.num_tokens));
        if !tokens_ok {
            return Err(RetrievalError::InvalidModel(
                "inconsistent item tokens".into(),
            ));
        }
        Ok(Self {
            config: saved.config,
            vocab,
            network,
            varmap,
            item_tokens,
            device,
        })
    }
}

impl Retriever for YoutubeDnn {
    type Error = RetrievalError;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn dim(&self) -> usize {
        self.config.dim
    }

    fn num_items(&self) -> usize {
        self.vocab.num_items
    }

    fn user_vectors(&self, queries: &[UserQuery]) -> Result<Vec<f32>> {
        queries.iter().try_for_each(|q| self.check_query(q))?;
        let mut out = Vec::with_capacity(queries.len() * self.dim());
        for chunk in queries.chunks(CHUNK_USERS) {
            out.extend(self.user_tensor(chunk)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    fn item_table(&self) -> &Tensor {
        self.network.softmax.var().as_tensor()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let mut tensors = files::var_tensors(&self.varmap)?;
        if !self.item_tokens.offsets.is_empty() {
            let t = &self.item_tokens;
            tensors.insert(
                TOKEN_OFFSETS.into(),
                Tensor::from_slice(&t.offsets, t.offsets.len(), &Device::Cpu)?,
            );
            tensors.insert(
                TOKEN_IDS.into(),
                Tensor::from_slice(&t.ids, t.ids.len(), &Device::Cpu)?,
            );
        }
        let saved = SavedConfig {
            config: self.config.clone(),
            num_items: self.vocab.num_items,
            num_tokens: self.vocab.num_tokens,
            user_cardinalities: self.vocab.user_cardinalities.clone(),
            num_numeric: self.vocab.num_numeric,
        };
        files::save(dir, KIND, &saved, &tensors)
    }

    fn weights(&self) -> Result<HashMap<String, Tensor>> {
        files::var_tensors(&self.varmap)
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
}
