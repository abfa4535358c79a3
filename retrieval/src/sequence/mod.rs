//! What the sequence retrievers ([`crate::sasrec`], [`crate::gru4rec`]) share: the read of a
//! history as a left-padded window of its last `max_len` items, the model around a network
//! that turns such windows into one output per slot, its serving, saving and loading, and the
//! training on every position ([`train`]).
//!
//! A sequence model is a [`SequenceConfig`] (its settings section, which also builds its
//! network) and a [`SequenceNetwork`] (the layers): [`SequenceRetriever`] does the rest. The
//! network reads the tied item table `[E_i | b_i]` (`num_items x (d + 1)`, named [`ITEMS`]):
//! E_i is the input embedding of item i and, with b_i, its output row, so the score of item i
//! after the slot with output F is `F . E_i + b_i` and the index serves the model exactly.
//! The user vector of a history is the output at its last slot; any history gets one, so new
//! users are served as they come.

mod train;

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use nn::init::SeededVarMap;
use nn::layers::EmbeddingTable;
use nn::rng::Rng;
use nn::{Retriever, UserQuery};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result, RetrievalError};
use crate::files;

/// Name of the tied item table in every sequence network's variables.
pub const ITEMS: &str = "items.weight";
/// Histories per chunk when computing user vectors.
const CHUNK_USERS: usize = 256;

/// Left-padded windows of item sequences: `rows x len`, the real items right-aligned.
#[derive(Debug, Clone)]
pub struct Windows {
    /// Number of windows.
    pub rows: usize,
    /// Padded length of every window.
    pub len: usize,
    /// Item of each slot (0 at padding slots, whose input a network must ignore).
    pub ids: Vec<u32>,
    /// Position of each slot counted from the window's first real item (0 at padding).
    pub positions: Vec<u32>,
    /// 1 at real slots, 0 at padding.
    pub mask: Vec<f32>,
}

impl Windows {
    /// Windows of `sequences` (the last `len` items of each), left-padded to `len`.
    pub fn new<'a>(sequences: impl ExactSizeIterator<Item = &'a [u32]>, len: usize) -> Self {
        let rows = sequences.len();
        let mut w = Self {
            rows,
            len,
            ids: vec![0; rows * len],
            positions: vec![0; rows * len],
            mask: vec![0.0; rows * len],
        };
        for (r, seq) in sequences.enumerate() {
            let seq = &seq[seq.len().saturating_sub(len)..];
            let start = r * len + len - seq.len();
            for (k, &item) in seq.iter().enumerate() {
                w.ids[start + k] = item;
                w.positions[start + k] = k as u32;
                w.mask[start + k] = 1.0;
            }
        }
        w
    }
}

/// The settings every sequence model trains with (read from its own section).
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceTraining {
    /// Dimension d of the item embeddings and of the outputs (the user vectors).
    pub dim: usize,
    /// Longest history the model reads (the last `max_len` watches).
    pub max_len: usize,
    /// Dropout probability while training.
    pub dropout: f32,
    /// Use the full softmax when the catalogue has at most this many items.
    pub full_softmax_max_items: usize,
    /// Negatives per batch for the sampled softmax (shared by the batch).
    pub num_negatives: usize,
    /// Negatives are drawn with probability proportional to (count + 1)^sampling_power.
    pub sampling_power: f64,
    /// Training windows per step.
    pub batch_size: usize,
    /// Maximum number of passes over the training windows.
    pub epochs: usize,
    /// Stop after this many epochs without a better validation HR@10 (0 = never).
    pub patience: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Final learning rate as a fraction of `learning_rate` (linear decay; 1 = constant).
    pub final_lr_fraction: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

/// The layers of a sequence model over the tied item table (see the module doc).
pub trait SequenceNetwork: Send + Sync {
    /// The item table `[E_i | b_i]`, `num_items x (d + 1)`, named [`ITEMS`].
    fn items(&self) -> &EmbeddingTable;

    /// The outputs F of every slot of `w`, `(rows * len) x d`, zero at padding slots, from the
    /// slots' item embeddings `inputs` (`(rows * len) x d`, any source, whatever is at padding
    /// slots); `dropout` (training) is `Some((p, rng))`. The output at a slot may depend only
    /// on the real slots up to it.
    fn forward(
        &self,
        inputs: &Tensor,
        w: &Windows,
        dropout: Option<(f32, &mut Rng)>,
    ) -> Result<Tensor>;
}

/// A sequence model's settings section: validates itself, gives the shared training settings
/// and builds the network.
pub trait SequenceConfig:
    Debug + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Registry name.
    const KIND: &'static str;
    /// The network these settings build.
    type Network: SequenceNetwork;

    /// Rejects settings that cannot train (one line naming the section and the key).
    fn validate(&self) -> Result<()>;
    /// The settings the shared training reads.
    fn training(&self) -> SequenceTraining;
    /// Builds (or, from a filled `vb`, loads) the network over `num_items` items.
    fn network(&self, vb: VarBuilder, num_items: usize) -> Result<Self::Network>;
}

/// What `retrieval.json` holds besides format and kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved<C> {
    config: C,
    num_items: usize,
}

/// A trained (or untrained) sequence model: its settings, weights and network.
pub struct SequenceRetriever<C: SequenceConfig> {
    pub(crate) config: C,
    pub(crate) varmap: VarMap,
    pub(crate) network: C::Network,
    pub(crate) num_items: usize,
}

impl<C: SequenceConfig> Debug for SequenceRetriever<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(C::KIND)
            .field("config", &self.config)
            .field("num_items", &self.num_items)
            .finish_non_exhaustive()
    }
}

impl<C: SequenceConfig> SequenceRetriever<C> {
    /// Builds the network over `varmap`: fresh seeded weights when it is empty, else its own.
    /// on `device` (the same seed gives the same weights on every device).
    pub(crate) fn build(
        config: &C,
        varmap: VarMap,
        num_items: usize,
        device: &Device,
    ) -> Result<Self> {
        let vb = if varmap.all_vars().is_empty() {
            SeededVarMap::new(varmap.clone(), config.training().seed).into_var_builder(device)
        } else {
            VarBuilder::from_varmap(&varmap, DType::F32, device)
        };
        let network = config.network(vb, num_items)?;
        Ok(Self {
            config: config.clone(),
            varmap,
            network,
            num_items,
        })
    }

    /// A freshly initialised (untrained) model over `num_items` items.
    pub fn untrained(config: &C, num_items: usize) -> Result<Self> {
        config.validate()?;
        if num_items == 0 {
            return Err(invalid("the catalogue has no items"));
        }
        Self::build(config, VarMap::new(), num_items, &Device::Cpu)
    }

    /// The model with every weight in host memory (a model trained on a GPU is saved, indexed
    /// and served from there); a CPU model is returned as it is.
    pub(crate) fn into_cpu(self) -> Result<Self> {
        if self.item_table().device().is_cpu() {
            return Ok(self);
        }
        let varmap = files::host_varmap(&self.varmap)?;
        Self::build(&self.config, varmap, self.num_items, &Device::Cpu)
    }

    /// The configuration the model was trained with.
    pub fn config(&self) -> &C {
        &self.config
    }

    /// The network.
    pub fn network(&self) -> &C::Network {
        &self.network
    }

    fn check_history(&self, history: &[u32]) -> Result<()> {
        match history.iter().find(|&&i| i as usize >= self.num_items) {
            Some(bad) => Err(invalid(format!(
                "history item {bad} is outside the catalogue"
            ))),
            None => Ok(()),
        }
    }

    /// The input embeddings of `w`'s slots read from the item table itself (differentiable
    /// with respect to the whole table): `(rows * len) x d`.
    pub fn embed_from_table(&self, w: &Windows) -> Result<Tensor> {
        let table = self.network.items().var().as_tensor();
        let ids = Tensor::from_slice(&w.ids, w.ids.len(), table.device())?;
        Ok(table
            .index_select(&ids, 0)?
            .narrow(1, 0, self.config.training().dim)?)
    }

    /// The output at every real slot of `history`'s window (its last `max_len` items, oldest
    /// first), left-padded to `padded_len` slots (at least the window's length): one
    /// `dim`-vector per slot. The user vector is the last one.
    pub fn position_outputs(&self, history: &[u32], padded_len: usize) -> Result<Vec<Vec<f32>>> {
        self.check_history(history)?;
        let used = history.len().min(self.config.training().max_len);
        if padded_len < used {
            return Err(invalid("padded_len is shorter than the window"));
        }
        let w = Windows::new(std::iter::once(history), padded_len);
        let f = self
            .network
            .forward(&self.embed_from_table(&w)?, &w, None)?;
        Ok(f.narrow(0, padded_len - used, used)?.to_vec2::<f32>()?)
    }

    /// Reads a model written by [`Retriever::save`].
    pub fn load(dir: &Path) -> Result<Self> {
        let saved: Saved<C> = files::load_meta(dir)?;
        saved.config.validate()?;
        let varmap = files::varmap_of(files::load_tensors(dir)?)?;
        let expected = varmap.all_vars().len();
        let model = Self::build(&saved.config, varmap, saved.num_items, &Device::Cpu)
            .map_err(|e| RetrievalError::InvalidModel(e.to_string()))?;
        files::check_complete(&model.varmap, expected)?;
        Ok(model)
    }
}

impl<C: SequenceConfig> Retriever for SequenceRetriever<C> {
    type Error = RetrievalError;

    fn kind(&self) -> &'static str {
        C::KIND
    }

    fn dim(&self) -> usize {
        self.config.training().dim
    }

    fn num_items(&self) -> usize {
        self.num_items
    }

    /// The output at the last slot of each history's last `max_len` items (zero for an empty
    /// history: the score is then the item bias alone).
    fn user_vectors(&self, queries: &[UserQuery]) -> Result<Vec<f32>> {
        queries
            .iter()
            .try_for_each(|q| self.check_history(q.history))?;
        let t = self.config.training();
        let mut out = Vec::with_capacity(queries.len() * t.dim);
        for chunk in queries.chunks(CHUNK_USERS) {
            let len = chunk
                .iter()
                .map(|q| q.history.len().min(t.max_len))
                .max()
                .unwrap_or(0)
                .max(1);
            let w = Windows::new(chunk.iter().map(|q| q.history), len);
            let f = self
                .network
                .forward(&self.embed_from_table(&w)?, &w, None)?;
            let last: Vec<u32> = (0..w.rows).map(|r| (r * len + len - 1) as u32).collect();
            let last = Tensor::from_vec(last, w.rows, f.device())?;
            out.extend(f.index_select(&last, 0)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    fn item_table(&self) -> &Tensor {
        self.network.items().var().as_tensor()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let saved = Saved {
            config: self.config.clone(),
            num_items: self.num_items,
        };
        files::save(dir, C::KIND, &saved, &files::var_tensors(&self.varmap)?)
    }

    fn weights(&self) -> Result<HashMap<String, Tensor>> {
        files::var_tensors(&self.varmap)
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
}
