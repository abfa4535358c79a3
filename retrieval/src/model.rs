//! The trained model: user vectors for any history, item vectors, exact scores, persistence.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::RetrievalConfig;
use crate::data::{UserFeatures, UserQuery, ValidationCase};
use crate::error::{invalid, Result, RetrievalError};
use crate::init::SeededVarMap;
use crate::metrics::{target_rank, RankMetrics};
use crate::network::{FeatureSource, ItemTokens, Network, TowerInputs, Vocabulary};

/// File name of the weights inside a model folder.
pub const WEIGHTS_FILE: &str = "retrieval.safetensors";
/// File name of the config inside a model folder.
pub const CONFIG_FILE: &str = "retrieval.json";
const FORMAT: u32 = 1;
const TOKEN_OFFSETS: &str = "catalog.token_offsets";
const TOKEN_IDS: &str = "catalog.token_ids";
/// Users per chunk when computing vectors.
const CHUNK_USERS: usize = 256;
/// Scores held at once when scoring the whole catalogue (16M floats = 64 MiB).
const CHUNK_SCORES: usize = 1 << 24;

/// What `retrieval.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedConfig {
    format: u32,
    config: RetrievalConfig,
    num_items: usize,
    num_tokens: usize,
    user_cardinalities: Vec<usize>,
    num_numeric: usize,
}

/// A trained candidate-generation model (Covington et al. 2016, §3).
pub struct RetrievalModel {
    pub(crate) config: RetrievalConfig,
    pub(crate) vocab: Vocabulary,
    pub(crate) network: Network,
    pub(crate) varmap: VarMap,
    pub(crate) item_tokens: ItemTokens,
    pub(crate) device: Device,
}

impl std::fmt::Debug for RetrievalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetrievalModel")
            .field("config", &self.config)
            .field("vocab", &self.vocab)
            .finish_non_exhaustive()
    }
}

impl RetrievalModel {
    /// A freshly initialised (untrained) model, seeded by `config.seed`.
    pub(crate) fn init(
        config: &RetrievalConfig,
        vocab: Vocabulary,
        item_tokens: ItemTokens,
    ) -> Result<Self> {
        let device = Device::Cpu;
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
    pub fn config(&self) -> &RetrievalConfig {
        &self.config
    }

    /// The network's layers (for inspection).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Dimension d of user and item vectors.
    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// Number of items in the catalogue.
    pub fn num_items(&self) -> usize {
        self.vocab.num_items
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
        declared.check_values(categorical, numeric)
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
        let sparse = self.network.gather(&inputs)?;
        let sparse = Tensor::from_vec(
            sparse,
            (inputs.rows, self.network.layout.sparse_width),
            &self.device,
        )?;
        self.network
            .user_vectors(&sparse, &inputs.dense, &self.device)
    }

    /// User vectors (`queries.len() x dim`, row-major) for any histories, also of new users.
    pub fn user_vectors(&self, queries: &[UserQuery]) -> Result<Vec<f32>> {
        queries.iter().try_for_each(|q| self.check_query(q))?;
        let mut out = Vec::with_capacity(queries.len() * self.dim());
        for chunk in queries.chunks(CHUNK_USERS) {
            out.extend(self.user_tensor(chunk)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Item vectors (`num_items x dim`, row-major) and item biases: score = u . v_j + b_j.
    pub fn item_vectors(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let d = self.dim();
        let table = self.network.softmax.var().as_tensor();
        let vectors = table.narrow(1, 0, d)?.flatten_all()?.to_vec1::<f32>()?;
        let bias = table.narrow(1, d, 1)?.flatten_all()?.to_vec1::<f32>()?;
        Ok((vectors, bias))
    }

    /// Users per chunk when scoring the whole catalogue.
    fn score_chunk(&self) -> usize {
        (CHUNK_SCORES / self.num_items().max(1)).clamp(1, CHUNK_USERS)
    }

    /// Exact scores of every item for `rows` users given as a `rows x dim` tensor.
    fn scores_of(&self, users: &Tensor) -> Result<Tensor> {
        let u = Network::with_bias_column(users)?;
        Ok(u.matmul(&self.network.softmax.var().as_tensor().t()?)?)
    }

    /// Exact full-catalogue scores (`queries.len() x num_items`, row-major), one matmul per chunk.
    pub fn score_all(&self, queries: &[UserQuery]) -> Result<Vec<f32>> {
        queries.iter().try_for_each(|q| self.check_query(q))?;
        let mut out = Vec::with_capacity(queries.len() * self.num_items());
        for chunk in queries.chunks(self.score_chunk()) {
            let u = self.user_tensor(chunk)?;
            out.extend(self.scores_of(&u)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Exact full-catalogue scores for given user vectors (`rows x dim`, row-major).
    pub fn score_vectors(&self, user_vectors: &[f32]) -> Result<Vec<f32>> {
        let d = self.dim();
        if !user_vectors.len().is_multiple_of(d) {
            return Err(invalid("user vectors are not a multiple of dim long"));
        }
        let u = Tensor::from_slice(user_vectors, (user_vectors.len() / d, d), &self.device)?;
        Ok(self.scores_of(&u)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// HR and NDCG at `cutoffs` over validation-style cases (exact scores, EVAL.md §1).
    pub fn evaluate(
        &self,
        cases: &[ValidationCase],
        features: Option<&UserFeatures>,
        cutoffs: &[usize],
    ) -> Result<RankMetrics> {
        let mut metrics = RankMetrics::new(cutoffs);
        let n = self.num_items();
        for chunk in cases.chunks(self.score_chunk()) {
            let queries: Vec<UserQuery> = chunk
                .iter()
                .map(|c| UserQuery {
                    history: &c.history,
                    categorical: features.map_or(&[], |f| f.categorical_of(c.user as usize)),
                    numeric: features.map_or(&[], |f| f.numeric_of(c.user as usize)),
                })
                .collect();
            let scores = self.score_all(&queries)?;
            let ranks: Vec<usize> = scores
                .par_chunks(n)
                .zip(chunk.par_iter())
                .map(|(s, c)| target_rank(s, c.target, &c.exclude))
                .collect();
            ranks.into_iter().for_each(|r| metrics.add(r));
        }
        Ok(metrics)
    }

    /// Writes `retrieval.safetensors` and `retrieval.json` into `dir` (created if missing).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        {
            let data = self
                .varmap
                .data()
                .lock()
                .map_err(|_| invalid("variable map lock poisoned"))?;
            for (name, var) in data.iter() {
                tensors.insert(name.clone(), var.as_tensor().clone());
            }
        }
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
        candle_core::safetensors::save(&tensors, dir.join(WEIGHTS_FILE))?;
        let saved = SavedConfig {
            format: FORMAT,
            config: self.config.clone(),
            num_items: self.vocab.num_items,
            num_tokens: self.vocab.num_tokens,
            user_cardinalities: self.vocab.user_cardinalities.clone(),
            num_numeric: self.vocab.num_numeric,
        };
        std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string_pretty(&saved)?)?;
        Ok(())
    }

    /// Reads a model written by [`Self::save`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let saved: SavedConfig = serde_json::from_slice(&std::fs::read(dir.join(CONFIG_FILE))?)?;
        if saved.format != FORMAT {
            return Err(RetrievalError::InvalidModel(format!(
                "format {} (this build reads {FORMAT})",
                saved.format
            )));
        }
        saved.config.validate()?;
        let device = Device::Cpu;
        let mut tensors = candle_core::safetensors::load(dir.join(WEIGHTS_FILE), &device)?;
        let item_tokens = match (tensors.remove(TOKEN_OFFSETS), tensors.remove(TOKEN_IDS)) {
            (Some(o), Some(i)) => ItemTokens {
                offsets: o.to_dtype(DType::U32)?.to_vec1()?,
                ids: i.to_dtype(DType::U32)?.to_vec1()?,
            },
            _ => ItemTokens::default(),
        };
        let varmap = VarMap::new();
        {
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| invalid("variable map lock poisoned"))?;
            for (name, t) in tensors {
                data.insert(name, Var::from_tensor(&t.to_dtype(DType::F32)?)?);
            }
        }
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
        if varmap.all_vars().len() != expected {
            return Err(RetrievalError::InvalidModel(
                "the weights file lacks some of the network's tensors".into(),
            ));
        }
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
