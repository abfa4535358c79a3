//! The two-tower retrieval model with item features, after TensorFlow Recommenders' retrieval
//! model (Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
//! Recommendations", RecSys 2019): a user tower and an item tower whose outputs meet in a dot
//! product, trained with an in-batch softmax plus shared sampled negatives, logQ-corrected.
//!
//! **Item tower.** Item j's input is `[e_j, t_j, x_j]`: its id embedding e_j (zero for any
//! item index at or above the number of items the model was trained with, and zeroed at
//! random with probability `id_dropout` while training: the DropoutNet trick of Volkovs,
//! Yu and Poutanen, "DropoutNet: Addressing Cold Start in Recommender Systems", NeurIPS 2017,
//! so that the feature-only path new items take is trained), the mean t_j of its token
//! embeddings, and x_j = (log1p(duration) - mean) / std with a missing flag (statistics
//! fitted on the training catalogue and saved). A ReLU MLP maps it to `d + 1` outputs,
//! `[v_j, b_j]`: the item vector and its bias, so a fresh item gets a bias from its features
//! too. Inputs the catalogue lacks (tokens, durations) are simply absent.
//!
//! **Publication age.** Popularity depends on an item's age at the time of the watch, not
//! at the end of the data: an item published two days before the end has had two days to
//! be watched, so a feature measured at the end would teach the model that young items are
//! unpopular, and a fresh item would never be served. As Covington et al. (RecSys 2016,
//! section 3.3) feed the example age, the score gets a learned bias `a(k)` of the candidate's
//! age bucket k (half-octaves of 1 + days, bucket 0 = unknown age) evaluated at each training
//! example's time: `s(i, j) = u_i . v_j + b_j + a(bucket(age_j at t_i))`; a candidate not yet
//! published at t_i is masked like an accidental hit. The served item table adds `a` at the
//! reference time (the newest watch of the training data; `add-items` measures new items from
//! it too, so a fresh item sits in bucket 1).
//!
//! **User tower.** The mean of the history's embedded item parts `[e_i, t_i]` (the same
//! tables as the item tower, so fresh items in a history still count through their tokens),
//! the same mean over the last `recent_window` watches, the categorical user feature
//! embeddings and the numeric user features -> ReLU MLP -> u (d). Any history gets a vector,
//! so new users are served as they come; `UserQuery::user` is not used.
//!
//! **Loss.** A batch holds B (history, next watch) examples; the candidates are the B targets
//! (in-batch negatives) and S negatives drawn for the whole batch from
//! `(count + 1)^sampling_power` (the mixed negative sampling of Yang et al., "Mixed Negative
//! Sampling for Learning Two-tower Neural Networks in Recommendations", WWW 2020). With
//! `s(i, j) = (u_i . v_j + b_j + a(k_ij)) / temperature` (k_ij: j's age bucket at example i's
//! time, above), the corrected logit of Yi et al. (eq. 3) is `s^c(i, j) = s(i, j) - log
//! E[n_j]`, where `E[n_j] = B p_j + S q_j` is the expected number of columns holding item j
//! (p_j: j's share of the training targets, q_j: its draw probability);
//! with it the batch softmax estimates the full softmax `P(j | i) = e^{s(i,j)} / sum_k
//! e^{s(i,k)}` without the popularity bias of in-batch negatives. A column holding row i's own
//! target other than its own column (an accidental hit) is masked out, and the loss is the
//! mean of `-log softmax(s^c(i, .))` at each row's own column (eq. 4). Improvement over the
//! brief: one correction for both kinds of negatives, since they are one candidate set.
//!
//! **Serving.** After training (and after each epoch, for the validation HR@10 that picks the
//! epoch) the item tower runs over the whole catalogue to fill the item table `[v | b]` (b
//! holding the age bias at the reference time); score = `u . v_j + b_j`, served by the inner-product index. [`nn::Retriever::add_items`]
//! embeds items the model was not trained on from their features alone (zero id embedding)
//! and appends them to the table and to the saved features. Warm start keeps the id rows of
//! known items; new items' id rows start at zero, i.e. from their features.
//!
//! **Speed.** The id, token and user feature tables are read through bags and updated
//! row-sparsely (only the rows a step touched), as in [`crate::youtube_dnn`]; per step the item
//! tower runs on the batch's distinct candidates only.
//!
//! **Figures** (`recpipe leaderboard --data <folder> --models two_tower`, default settings,
//! test HR@10 of EVAL.md section 1, 2 shared cores, November 2026): ml-100k 0.1930 (the
//! YouTube DNN 0.1941), ml-latest-small 0.0738 (the YouTube DNN 0.1049). With the age only as
//! a tower input (no age bias) they were 0.2004 and 0.0820, but on a synthetic world no item
//! added after training reached any user's top 50; with the bias it reaches 0.6257 of the users
//! of its taste (`tests/tests/add_items.rs`). Tuning runs of that earlier form on
//! ml-latest-small (all within the noise of 610 test users, standard error about 0.011):
//! `num_negatives = 4096` 0.0852, `id_dropout = 0.1, dropout = 0` 0.0885 (0.1930 on ml-100k),
//! `dim = id_embedding_dim = 128` 0.0623, `learning_rate = 1e-3` 0.0787.

mod age;
pub mod config;
#[cfg(test)]
mod device_tests;
pub mod gather;
pub mod network;
#[cfg(test)]
mod tests;
mod train;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use nn::init::SeededVarMap;
use nn::{Catalog, Retriever, UserFeatures, UserQuery};
use serde::{Deserialize, Serialize};

pub use config::TwoTowerConfig;
use network::{age_bucket, ItemFeatures, ItemTokens, Network, UserSource, Vocabulary};

use crate::error::{invalid, Result, RetrievalError};
use crate::files;

/// Registry name.
pub const KIND: &str = "two_tower";
const TOKEN_OFFSETS: &str = "features.token_offsets";
const TOKEN_IDS: &str = "features.token_ids";
const DURATION: &str = "features.duration_seconds";
const AGE: &str = "features.age_days";
const ITEM_TABLE: &str = "item_table";
/// Users per chunk when computing vectors.
const CHUNK_USERS: usize = 256;
/// Items per chunk when computing the item table.
const CHUNK_ITEMS: usize = 4096;

/// What `retrieval.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedConfig {
    config: TwoTowerConfig,
    vocab: Vocabulary,
    num_items: usize,
}

/// A trained two-tower model (see the module doc).
pub struct TwoTower {
    pub(crate) config: TwoTowerConfig,
    pub(crate) vocab: Vocabulary,
    pub(crate) network: Network,
    pub(crate) varmap: VarMap,
    pub(crate) features: ItemFeatures,
    /// `[v | b]`, `num_items x (dim + 1)`.
    pub(crate) table: Tensor,
    pub(crate) device: Device,
}

impl std::fmt::Debug for TwoTower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoTower")
            .field("config", &self.config)
            .field("vocab", &self.vocab)
            .field("num_items", &self.features.num_items)
            .finish_non_exhaustive()
    }
}

impl TwoTower {
    /// A freshly initialised model seeded by `config.seed`, its item table computed.
    pub(crate) fn init(
        config: &TwoTowerConfig,
        vocab: Vocabulary,
        features: ItemFeatures,
        device: &Device,
    ) -> Result<Self> {
        let device = device.clone();
        let varmap = VarMap::new();
        let vb = SeededVarMap::new(varmap.clone(), config.seed).into_var_builder(&device);
        let network = Network::new(vb, config, &vocab)?;
        features.check(&vocab)?;
        let table = Tensor::zeros((0, config.dim + 1), DType::F32, &device)?;
        let mut model = Self {
            config: config.clone(),
            vocab,
            network,
            varmap,
            features,
            table,
            device,
        };
        model.refresh_table()?;
        Ok(model)
    }

    /// The model with every weight and its item table in host memory (a model trained on a
    /// GPU is saved, indexed and served from there); a CPU model is returned as it is.
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
            table: self.table.to_device(&Device::Cpu)?,
            device: Device::Cpu,
            ..self
        })
    }

    /// The configuration the model was trained with.
    pub fn config(&self) -> &TwoTowerConfig {
        &self.config
    }

    /// The network's layers (for inspection).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Number of items with an id embedding (those the model was trained with).
    pub fn id_rows(&self) -> usize {
        self.vocab.id_rows
    }

    /// The item tower's output `[v_j, b_j]` for items `items` (no dropout), the bias plus the
    /// age bias of each item's age at the training data's reference time.
    pub fn item_rows(&self, items: &[u32]) -> Result<Tensor> {
        if let Some(bad) = items
            .iter()
            .find(|&&j| j as usize >= self.features.num_items)
        {
            return Err(invalid(format!("item {bad} is outside the catalogue")));
        }
        let b = self.features.item_batch(items, &self.vocab, |_| true);
        let sparse = self.network.item_block(&b)?;
        let rows = self.network.item_forward(&sparse, &b.dense, None)?;
        let buckets: Vec<u32> = items
            .iter()
            .map(|&j| age_bucket(self.features.age.get(j as usize).copied().flatten()))
            .collect();
        self.network.with_age_bias(rows, &buckets)
    }

    /// Recomputes the item table from the current weights.
    pub(crate) fn refresh_table(&mut self) -> Result<()> {
        let all: Vec<u32> = (0..self.features.num_items as u32).collect();
        let mut parts = Vec::new();
        for chunk in all.chunks(CHUNK_ITEMS) {
            parts.push(self.item_rows(chunk)?);
        }
        self.table = Tensor::cat(&parts, 0)?;
        Ok(())
    }

    /// Checks one query: history items inside the catalogue, and values (when given) for
    /// exactly the user features the model was trained with.
    fn check_query(&self, q: &UserQuery) -> Result<()> {
        let n = self.features.num_items;
        if let Some(bad) = q.history.iter().find(|&&i| i as usize >= n) {
            return Err(invalid(format!(
                "history item {bad} is outside the catalogue"
            )));
        }
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

    /// User vectors of a chunk of queries as a `rows x dim` tensor.
    fn user_tensor(&self, queries: &[UserQuery]) -> Result<Tensor> {
        let max = self.config.max_history;
        let sources = queries.iter().map(|q| UserSource {
            history: &q.history[q.history.len().saturating_sub(max)..],
            categorical: q.categorical,
            numeric: q.numeric,
        });
        let layout = &self.network.layout;
        let window = self.config.recent_window;
        let b = self
            .features
            .user_batch(layout, &self.vocab, window, sources);
        let sparse = self.network.user_block(&b)?;
        self.network.user_forward(&sparse, &b.dense, None)
    }

    /// Reads a model written by [`Retriever::save`].
    pub fn load(dir: &Path) -> Result<Self> {
        let saved: SavedConfig = files::load_meta(dir)?;
        saved.config.validate()?;
        let device = Device::Cpu;
        let mut tensors = files::load_tensors(dir)?;
        let mut take_u32 = |name: &str| -> Result<Vec<u32>> {
            match tensors.remove(name) {
                Some(t) => Ok(t.to_dtype(DType::U32)?.to_vec1()?),
                None => Ok(Vec::new()),
            }
        };
        let tokens = ItemTokens {
            offsets: take_u32(TOKEN_OFFSETS)?,
            ids: take_u32(TOKEN_IDS)?,
        };
        let mut take_f32 = |name: &str| -> Result<Vec<Option<f32>>> {
            match tensors.remove(name) {
                Some(t) => {
                    let v = t.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                    Ok(v.into_iter().map(|x| x.is_finite().then_some(x)).collect())
                }
                None => Ok(Vec::new()),
            }
        };
        let features = ItemFeatures {
            num_items: saved.num_items,
            tokens,
            duration: take_f32(DURATION)?,
            age: take_f32(AGE)?,
        };
        let model_err = |m: &str| RetrievalError::InvalidModel(m.to_string());
        features
            .check(&saved.vocab)
            .map_err(|e| model_err(&e.to_string()))?;
        let table = tensors
            .remove(ITEM_TABLE)
            .ok_or_else(|| model_err("the weights file has no item table"))?
            .to_dtype(DType::F32)?;
        if table.dims() != [saved.num_items, saved.config.dim + 1] {
            return Err(model_err("the item table has the wrong shape"));
        }
        let varmap = files::varmap_of(tensors)?;
        let expected = varmap.all_vars().len();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let network =
            Network::new(vb, &saved.config, &saved.vocab).map_err(|e| model_err(&e.to_string()))?;
        files::check_complete(&varmap, expected)?;
        Ok(Self {
            config: saved.config,
            vocab: saved.vocab,
            network,
            varmap,
            features,
            table,
            device,
        })
    }
}

impl Retriever for TwoTower {
    type Error = RetrievalError;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn dim(&self) -> usize {
        self.config.dim
    }

    fn num_items(&self) -> usize {
        self.features.num_items
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
        &self.table
    }

    fn add_items(&mut self, items: &Catalog) -> Result<()> {
        if items.num_items == 0 {
            return Ok(());
        }
        let mut check = items.clone();
        check.num_tokens = check.num_tokens.max(self.vocab.num_tokens);
        check.validate()?;
        let more = ItemFeatures::from_catalog(items, &self.vocab)?;
        let start = self.features.num_items as u32;
        let mut features = self.features.clone();
        features.append(more);
        features.check(&self.vocab)?;
        self.features = features;
        let new: Vec<u32> = (start..self.features.num_items as u32).collect();
        let mut parts = vec![self.table.clone()];
        for chunk in new.chunks(CHUNK_ITEMS) {
            parts.push(self.item_rows(chunk)?);
        }
        self.table = Tensor::cat(&parts, 0)?;
        Ok(())
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let mut tensors = files::var_tensors(&self.varmap)?;
        let cpu = &Device::Cpu;
        let f = &self.features;
        for (name, values) in [
            (TOKEN_OFFSETS, &f.tokens.offsets),
            (TOKEN_IDS, &f.tokens.ids),
        ] {
            if !values.is_empty() {
                tensors.insert(name.into(), Tensor::from_slice(values, values.len(), cpu)?);
            }
        }
        for (name, values) in [(DURATION, &f.duration), (AGE, &f.age)] {
            if !values.is_empty() {
                let v: Vec<f32> = values.iter().map(|x| x.unwrap_or(f32::NAN)).collect();
                tensors.insert(name.into(), Tensor::from_vec(v, values.len(), cpu)?);
            }
        }
        tensors.insert(ITEM_TABLE.into(), self.table.clone());
        let saved = SavedConfig {
            config: self.config.clone(),
            vocab: self.vocab.clone(),
            num_items: f.num_items,
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
