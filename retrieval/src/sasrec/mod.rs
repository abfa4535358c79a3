//! SASRec, the self-attentive sequential recommender of Kang and McAuley, "Self-Attentive
//! Sequential Recommendation" (ICDM 2018), as a candidate generator.
//!
//! - Input (section III-A, eq. 2): the last `max_len` watches, left-padded; each real slot
//!   is `E_i * sqrt(d) + P_k` (the item embedding scaled by sqrt(d), as the authors' code
//!   does, plus a learned position embedding). Positions count from the first real item of
//!   the window, and padding slots are zeroed and masked out of every attention, so the
//!   amount of padding never changes an output.
//! - `blocks` self-attention blocks (eq. 3-6) with `heads` heads, each
//!   `x + Dropout(SA(LN(x)))` then `x + Dropout(FFN(LN(x)))` (the pre-LN form of the paper's
//!   `g(x) = x + Dropout(g(LayerNorm(x)))`), with a final layer norm as in the authors' code.
//!   SA is eq. 3-4 (no output projection), causal: slot t sees only slots <= t; FFN is eq. 5
//!   (ReLU, two linear layers).
//! - Prediction (eq. 7, with the shared item embedding of section III-D):
//!   `r_{i,t} = F_t . E_i + b_i`, with a learned item bias b_i. The user vector is the last
//!   slot's output F_t and the item table is `[E_i | b_i]`, so the index serves the score
//!   exactly. The model has no per-user parameter: any history (a new user's too) gets a
//!   vector.
//! - Training: per user, the training sequence cut into windows of at most `max_len` inputs
//!   (the last window ends at the last training target, earlier windows cover the earlier
//!   targets); every slot whose next item is a training example predicts it, with the
//!   catalogue softmax (full softmax on small catalogues, sampled softmax with logQ
//!   correction above) instead of the paper's one-negative binary loss.

mod config;
pub mod network;
mod train;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use nn::init::SeededVarMap;
use nn::{Retriever, UserQuery};
use serde::{Deserialize, Serialize};

pub use config::SasRecConfig;
use network::{Network, Windows};

use crate::error::{invalid, Result, RetrievalError};
use crate::files;

/// Registry name.
pub const KIND: &str = "sasrec";
/// Histories per chunk when computing user vectors.
const CHUNK_USERS: usize = 256;

/// What `retrieval.json` holds besides format and kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    config: SasRecConfig,
    num_items: usize,
}

/// A trained SASRec model (see the module doc).
pub struct SasRec {
    config: SasRecConfig,
    varmap: VarMap,
    network: Network,
    num_items: usize,
}

impl std::fmt::Debug for SasRec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasRec")
            .field("config", &self.config)
            .field("num_items", &self.num_items)
            .finish_non_exhaustive()
    }
}

impl SasRec {
    /// Builds the network over `varmap`: fresh seeded weights when it is empty, else its own.
    fn build(config: &SasRecConfig, varmap: VarMap, num_items: usize) -> Result<Self> {
        let vb = if varmap.all_vars().is_empty() {
            SeededVarMap::new(varmap.clone(), config.seed).into_var_builder(&Device::Cpu)
        } else {
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)
        };
        let network = Network::new(vb, config, num_items)?;
        Ok(Self {
            config: config.clone(),
            varmap,
            network,
            num_items,
        })
    }

    /// A freshly initialised (untrained) model over `num_items` items.
    pub fn untrained(config: &SasRecConfig, num_items: usize) -> Result<Self> {
        config.validate()?;
        if num_items == 0 {
            return Err(invalid("the catalogue has no items"));
        }
        Self::build(config, VarMap::new(), num_items)
    }

    /// The configuration the model was trained with.
    pub fn config(&self) -> &SasRecConfig {
        &self.config
    }

    fn check_history(&self, history: &[u32]) -> Result<()> {
        match history.iter().find(|&&i| i as usize >= self.num_items) {
            Some(bad) => Err(invalid(format!(
                "history item {bad} is outside the catalogue"
            ))),
            None => Ok(()),
        }
    }

    /// The output F_t at every real slot of `history`'s window (its last `max_len` items,
    /// oldest first), left-padded to `padded_len` slots (at least the window's length):
    /// one `dim`-vector per slot. The user vector is the last one.
    pub fn position_outputs(&self, history: &[u32], padded_len: usize) -> Result<Vec<Vec<f32>>> {
        self.check_history(history)?;
        let used = history.len().min(self.config.max_len);
        if padded_len < used {
            return Err(invalid("padded_len is shorter than the window"));
        }
        let w = Windows::new(std::iter::once(history), padded_len);
        let f = self
            .network
            .forward(&self.network.embed_from_table(&w)?, &w, None)?;
        let f = f.narrow(0, padded_len - used, used)?.to_vec2::<f32>()?;
        Ok(f)
    }

    /// Reads a model written by [`Retriever::save`].
    pub fn load(dir: &Path) -> Result<Self> {
        let saved: Saved = files::load_meta(dir)?;
        saved.config.validate()?;
        let varmap = files::varmap_of(files::load_tensors(dir)?)?;
        let expected = varmap.all_vars().len();
        let model = Self::build(&saved.config, varmap, saved.num_items)
            .map_err(|e| RetrievalError::InvalidModel(e.to_string()))?;
        files::check_complete(&model.varmap, expected)?;
        Ok(model)
    }
}

impl Retriever for SasRec {
    type Error = RetrievalError;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn dim(&self) -> usize {
        self.config.dim
    }

    fn num_items(&self) -> usize {
        self.num_items
    }

    /// The last slot's output F_t for each history's last `max_len` items (zero for an empty
    /// history: the score is then the item bias alone).
    fn user_vectors(&self, queries: &[UserQuery]) -> Result<Vec<f32>> {
        queries
            .iter()
            .try_for_each(|q| self.check_history(q.history))?;
        let (d, max_len) = (self.config.dim, self.config.max_len);
        let mut out = Vec::with_capacity(queries.len() * d);
        for chunk in queries.chunks(CHUNK_USERS) {
            let len = chunk
                .iter()
                .map(|q| q.history.len().min(max_len))
                .max()
                .unwrap_or(0)
                .max(1);
            let w = Windows::new(chunk.iter().map(|q| q.history), len);
            let f = self
                .network
                .forward(&self.network.embed_from_table(&w)?, &w, None)?;
            let last: Vec<u32> = (0..w.rows).map(|r| (r * len + len - 1) as u32).collect();
            let last = Tensor::from_vec(last, w.rows, f.device())?;
            out.extend(f.index_select(&last, 0)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    fn item_table(&self) -> &Tensor {
        self.network.items.var().as_tensor()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let saved = Saved {
            config: self.config.clone(),
            num_items: self.num_items,
        };
        files::save(dir, KIND, &saved, &files::var_tensors(&self.varmap)?)
    }

    fn weights(&self) -> Result<HashMap<String, Tensor>> {
        files::var_tensors(&self.varmap)
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
