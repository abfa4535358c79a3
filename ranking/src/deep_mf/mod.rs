//! Deep MF for rating prediction: an MLP over the concatenated user and item embeddings and the
//! user's and item's side-feature embeddings, on top of biased MF's baseline,
//!
//! `r^_ui = mu + b_u + b_i + h^T a_L(... a_1(W_1 [p_u, q_i, u_tok, i_tok] + c_1) ...)`
//!
//! - The MLP over concatenated one-hot-id embeddings `p_u`, `q_i` is the MLP layer of He,
//!   Liao, Zhang, Nie, Hu and Chua, "Neural Collaborative Filtering" (WWW 2017), eq. 10: ReLU
//!   layers (`layers`, default 64-32-16) and a linear output `h` (no sigmoid: explicit ratings
//!   with squared error, the paper's section 3.1.1).
//! - Side features join the same input vector as the embeddings of categorical tokens, averaged
//!   per example: `u_tok` is the mean of the user's token embeddings (gender, occupation, age
//!   bucket), `i_tok` the mean of the item's (genres), the way Covington, Adams and Sargin,
//!   "Deep Neural Networks for YouTube Recommendations" (RecSys 2016, section 3) and the deep
//!   part of Cheng et al., "Wide & Deep Learning for Recommender Systems" (DLRS 2016, section
//!   3.2) feed categorical features to their towers. `use_features = false` (or no features)
//!   leaves the plain embeddings MLP.
//! - `mu` (the training mean) and the learned biases `b_u`, `b_i` are biased MF's baseline
//!   (Koren, Bell and Volinsky 2009, eq. 4); `h` starts at zero, so training starts exactly at
//!   that baseline.
//!
//! This is not Xue et al.'s "Deep Matrix Factorization" (IJCAI 2017), a two-tower model
//! scoring by the cosine of the towers' outputs; "deep MF" here is NCF's MLP with side inputs.
//!
//! Trained like [`crate::ncf`]: squared error on observed ratings plus
//! `lambda (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2)` per rating (token embeddings are shared by many
//! users and items and are not penalised), Adam with row-sparse updates of the embedding and
//! token tables, dropout on the hidden activations while training, and the epoch with the lowest
//! validation RMSE kept.
//!
//! As a ranker ([`DeepMf::train_labelled`]) the same network outputs a logit trained on
//! impressions with the watch-time-weighted logistic loss of Covington et al. 2016, section 4.2
//! (a watched impression weighs its watch time, an unwatched one 1), so that `e^logit`
//! estimates the expected watch time. `mu` is then the prior log-odds of the weighted labels,
//! so that training again starts at the base rate, and the epoch with the lowest weighted log
//! loss on the validation pairs is kept.
//!
//! Training computes where `config.compute` says: with [`nn::Compute::Candle`] (a GPU) the
//! model moves to the device for training (the id rows and token rows a batch reads become
//! compact leaves, the loss, AdamW and validation scoring run there) and back to host memory
//! after it.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{Linear, VarMap};
use nn::bag::Bags;
use nn::init::SeededVarMap;
use nn::layers::{apply_dropout, EmbeddingTable};
use nn::portable::bag_sum;
use nn::rating::{LabelledPairs, RatingModel, Ratings, SideFeatures};
use nn::rng::Rng;
use nn::trainer::{EpochReport, TrainReport};

use crate::error::{RankingError, Result};

/// Registry name of deep MF.
pub const KIND: &str = "deep_mf";

/// One side's tokens: each user's (or item's) token list and the token embedding table.
struct Tokens {
    lists: Vec<Vec<u32>>,
    table: EmbeddingTable,
}

impl Tokens {
    /// The mean-of-tokens bag of each id (an id without tokens has an empty bag).
    fn bags(&self, ids: &[u32]) -> Bags {
        let mut bags = Bags::new();
        for &id in ids {
            let list = self.lists.get(id as usize).map_or(&[][..], |l| &l[..]);
            bags.push_mean(list.iter().copied());
        }
        bags
    }

    /// The bags' mean embeddings (`bags x width`) as a leaf variable, gathered by the fused
    /// kernel (the table in host memory).
    fn gather(&self, bags: &Bags) -> Result<Var> {
        let width = self.table.width();
        let mut out = vec![0f32; bags.len() * width];
        self.table.forward(bags, &mut out, 0, width)?;
        let device = self.table.var().as_tensor().device();
        let t = Tensor::from_vec(out, (bags.len(), width), device)?;
        Ok(Var::from_tensor(&t)?)
    }
}

/// A trained deep MF model. Each id embedding row is `[factors (dim) | bias]`.
pub struct DeepMf {
    config: DeepMfConfig,
    varmap: VarMap,
    users: EmbeddingTable,
    items: EmbeddingTable,
    user_tokens: Option<Tokens>,
    item_tokens: Option<Tokens>,
    /// Hidden layers (ReLU).
    tower: Vec<Linear>,
    /// Output weights h (1 x last width).
    h: Var,
    /// The fixed offset: mu on ratings, the prior log-odds on labelled pairs.
    mean: f32,
}

impl DeepMf {
    /// A fresh model in host memory: N(0, init_std²) embeddings, h = 0 (the bias baseline).
    fn new(
        config: &DeepMfConfig,
        num_users: usize,
        num_items: usize,
        features: Option<&SideFeatures>,
        mean: f32,
    ) -> Result<Self> {
        let sizes = (num_users, num_items);
        Self::new_on(config, sizes, features, mean, &Device::Cpu)
    }

    /// [`Self::new`] on `device`.
    fn new_on(
        config: &DeepMfConfig,
        (num_users, num_items): (usize, usize),
        features: Option<&SideFeatures>,
        mean: f32,
        device: &Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = SeededVarMap::new(varmap.clone(), config.seed).into_var_builder(device);
        let (d, std) = (config.dim, config.init_std);
        let users = EmbeddingTable::new(vb.pp("users"), num_users, d + 1, std)?;
        let items = EmbeddingTable::new(vb.pp("items"), num_items, d + 1, std)?;
        let features = features.filter(|_| config.use_features);
        let tokens = |name: &str, lists: &[Vec<u32>], vocab: usize| -> Result<Option<Tokens>> {
            if vocab == 0 {
                return Ok(None);
            }
            let table = EmbeddingTable::new(vb.pp(name), vocab, config.feature_dim, std)?;
            Ok(Some(Tokens {
                lists: lists.to_vec(),
                table,
            }))
        };
        let (user_tokens, item_tokens) = match features {
            Some(f) => (
                tokens("user_tokens", &f.user_tokens, f.user_vocab)?,
                tokens("item_tokens", &f.item_tokens, f.item_vocab)?,
            ),
            None => (None, None),
        };
        let sides = usize::from(user_tokens.is_some()) + usize::from(item_tokens.is_some());
        let mut input = 2 * d + sides * config.feature_dim;
        let mut tower = Vec::with_capacity(config.layers.len());
        for (i, &w) in config.layers.iter().enumerate() {
            tower.push(candle_nn::linear(input, w, vb.pp(format!("tower.{i}")))?);
            input = w;
        }
        let h = vb.get_with_hints((1, input), "h", candle_nn::Init::Const(0.0))?;
        Ok(Self {
            config: config.clone(),
            varmap,
            users,
            items,
            user_tokens,
            item_tokens,
            tower,
            h: Var::from_tensor(&h)?,
            mean,
        })
    }

    /// This model with its weights on `device` (itself when they are there already): the same
    /// settings, sizes, token lists and offset, every weight copied.
    pub(crate) fn on_device(self, device: &Device) -> Result<Self> {
        if self.users.var().as_tensor().device().same_device(device) {
            return Ok(self);
        }
        self.copy_on(device)
    }

    /// A copy of this model with its weights on `device`.
    pub(crate) fn copy_on(&self, device: &Device) -> Result<Self> {
        let sizes = (self.users.rows(), self.items.rows());
        let features = self.features();
        let moved = Self::new_on(&self.config, sizes, features.as_ref(), self.mean, device)?;
        nn::vars::restore(&moved.varmap, &self.weights()?)?;
        Ok(moved)
    }

    /// Checks the settings and, when they are read, the side features.
    fn check(
        config: &DeepMfConfig,
        num_users: usize,
        num_items: usize,
        features: Option<&SideFeatures>,
    ) -> Result<()> {
        config.validate(KIND)?;
        if config.use_features {
            if let Some(f) = features {
                f.validate(num_users, num_items)?;
            }
        }
        Ok(())
    }

    /// Trains on `train` (indices below `num_users` / `num_items`) with the side `features`
    /// (one token list per user and per item; ignored with `use_features = false`), keeping the
    /// epoch with the lowest RMSE on `valid`.
    pub fn train(
        config: &DeepMfConfig,
        num_users: usize,
        num_items: usize,
        features: Option<&SideFeatures>,
        train: &Ratings,
        valid: &Ratings,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        Self::check(config, num_users, num_items, features)?;
        train.validate(num_users, num_items)?;
        valid.validate(num_users, num_items)?;
        if train.is_empty() {
            return Err(RankingError::NoTrainingData);
        }
        let model = Self::new(config, num_users, num_items, features, train.mean() as f32)?;
        train::fit(model, train::Data::Ratings(train, valid), progress)
    }

    /// Trains on labelled pairs with the weighted logistic loss; predict() then returns logits.
    ///
    /// Each pair weighs its weight (Covington et al. 2016, section 4.2: a watched impression
    /// its watch time, an unwatched one 1), so `e^logit` estimates the expected watch time. The
    /// offset is the prior log-odds `ln(sum of positive weights / sum of negative weights)` of
    /// `train` (0 when either is 0), the untrained model's prediction; the epoch with the lowest
    /// weighted log loss on `valid` is kept (the last epoch when `valid` is empty). Settings,
    /// features and indices are checked as by [`DeepMf::train`], labels must be 0 or 1 and
    /// weights finite and non-negative.
    pub fn train_labelled(
        config: &DeepMfConfig,
        num_users: usize,
        num_items: usize,
        features: Option<&SideFeatures>,
        train: &LabelledPairs,
        valid: &LabelledPairs,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        Self::check(config, num_users, num_items, features)?;
        train.validate(num_users, num_items)?;
        valid.validate(num_users, num_items)?;
        if train.is_empty() {
            return Err(RankingError::NoTrainingData);
        }
        let model = Self::new(
            config,
            num_users,
            num_items,
            features,
            train.prior_log_odds(),
        )?;
        train::fit(model, train::Data::Labelled(train, valid), progress)
    }

    /// Every weight by name (for saving).
    ///
    /// `users.weight` and `items.weight` (rows `[factors | bias]`), `user_tokens.weight` and
    /// `item_tokens.weight` when the model reads those features, `tower.{k}.weight` and
    /// `tower.{k}.bias`, and `h`.
    pub fn weights(&self) -> Result<HashMap<String, Tensor>> {
        Ok(nn::vars::snapshot(&self.varmap)?)
    }

    /// The side features the model reads (None when it reads none), to save beside the weights.
    ///
    /// A side it does not read (an empty vocabulary) comes back as empty token lists with
    /// vocabulary 0, so that [`DeepMf::from_weights`] rebuilds the same model from it.
    pub fn features(&self) -> Option<SideFeatures> {
        if self.user_tokens.is_none() && self.item_tokens.is_none() {
            return None;
        }
        let side = |t: &Option<Tokens>, rows: usize| match t {
            Some(t) => (t.lists.clone(), t.table.rows()),
            None => (vec![Vec::new(); rows], 0),
        };
        let (user_tokens, user_vocab) = side(&self.user_tokens, self.users.rows());
        let (item_tokens, item_vocab) = side(&self.item_tokens, self.items.rows());
        Some(SideFeatures {
            user_tokens,
            user_vocab,
            item_tokens,
            item_vocab,
        })
    }

    /// The settings it was built with (to save beside the weights).
    pub fn config(&self) -> &DeepMfConfig {
        &self.config
    }

    /// The fixed offset: mu on ratings, the prior log-odds on labelled pairs.
    pub fn offset(&self) -> f32 {
        self.mean
    }

    /// A model from saved weights (every variable present with its shape, else an error naming
    /// it), the same config, sizes, features and offset it was saved with.
    ///
    /// A weight the model does not have (say token tables saved with features that were not
    /// passed back) is an error too.
    pub fn from_weights(
        config: &DeepMfConfig,
        num_users: usize,
        num_items: usize,
        features: Option<&SideFeatures>,
        offset: f32,
        weights: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        Self::check(config, num_users, num_items, features)?;
        if !offset.is_finite() {
            return Err(RankingError::InvalidConfig(format!(
                "saved {KIND} offset {offset} is not finite"
            )));
        }
        let model = Self::new(config, num_users, num_items, features, offset)?;
        let fresh = nn::vars::snapshot(&model.varmap)?;
        let mut extra: Vec<&String> = weights.keys().filter(|k| !fresh.contains_key(*k)).collect();
        extra.sort();
        if let Some(name) = extra.first() {
            return Err(RankingError::InvalidConfig(format!(
                "saved {KIND} weight '{name}' is not in the model (other settings or features?)"
            )));
        }
        let mut names: Vec<(&String, &Tensor)> = fresh.iter().collect();
        names.sort_by_key(|&(name, _)| name);
        let mut saved = HashMap::with_capacity(fresh.len());
        for (name, t) in names {
            let found = weights.get(name);
            let Some(w) = found.filter(|w| w.dims() == t.dims()) else {
                let found = found.map_or("none".into(), |w| format!("{:?}", w.dims()));
                return Err(RankingError::InvalidConfig(format!(
                    "saved {KIND} weights lack '{name}' of shape {:?} (found {found})",
                    t.dims()
                )));
            };
            saved.insert(
                name.clone(),
                w.to_device(&Device::Cpu)?.to_dtype(DType::F32)?,
            );
        }
        nn::vars::restore(&model.varmap, &saved)?;
        Ok(model)
    }

    /// Whether the model reads side features (of users, of items).
    pub fn uses_features(&self) -> (bool, bool) {
        (self.user_tokens.is_some(), self.item_tokens.is_some())
    }

    /// Predictions for gathered id rows `p`, `q` (`batch x (dim + 1)`) and mean token
    /// embeddings; `dropout` (training) draws the masks of the hidden activations.
    fn forward(
        &self,
        p: &Tensor,
        q: &Tensor,
        tokens: [Option<&Tensor>; 2],
        mut dropout: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let d = self.config.dim;
        let bias = (p.narrow(1, d, 1)? + q.narrow(1, d, 1)?)?;
        let mut parts = vec![p.narrow(1, 0, d)?, q.narrow(1, 0, d)?];
        parts.extend(tokens.into_iter().flatten().cloned());
        let mut x = Tensor::cat(&parts, 1)?;
        for layer in &self.tower {
            x = layer.forward(&x)?.relu()?;
            if let Some(rng) = dropout.as_deref_mut() {
                x = apply_dropout(&x, self.config.dropout as f32, rng)?;
            }
        }
        let out = ((x.matmul(&self.h.as_tensor().t()?)? + bias)? + f64::from(self.mean))?;
        Ok(out.squeeze(1)?)
    }
}

impl DeepMf {
    /// Predictions for pairs inside the tables, without gradients: the rows read by the fused
    /// gathers (`fused`, the weights in host memory) or by candle ops on the weights' device
    /// (`index_select`, token bags with [`bag_sum`]), the same values either way.
    fn predict_rows(&self, users: &[u32], items: &[u32], fused: bool) -> Result<Tensor> {
        let device = self.users.var().as_tensor().device();
        let rows = |table: &EmbeddingTable, ids: &[u32]| -> Result<Tensor> {
            if fused {
                return Ok(table.gather(ids)?.as_tensor().clone());
            }
            let ids = Tensor::from_slice(ids, ids.len(), device)?;
            Ok(table.var().as_tensor().index_select(&ids, 0)?)
        };
        let side = |t: &Option<Tokens>, ids: &[u32]| -> Result<Option<Tensor>> {
            let Some(t) = t else {
                return Ok(None);
            };
            let bags = t.bags(ids);
            Ok(Some(if fused {
                t.gather(&bags)?.as_tensor().clone()
            } else {
                bag_sum(t.table.var().as_tensor(), &bags, &bags.ids)?
            }))
        };
        let (p, q) = (rows(&self.users, users)?, rows(&self.items, items)?);
        let (ut, it) = (
            side(&self.user_tokens, users)?,
            side(&self.item_tokens, items)?,
        );
        self.forward(&p, &q, [ut.as_ref(), it.as_ref()], None)
    }
}

impl RatingModel for DeepMf {
    type Error = RankingError;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn predict(&self, users: &[u32], items: &[u32]) -> Result<Vec<f32>> {
        if users.len() != items.len()
            || users.iter().any(|&u| u as usize >= self.users.rows())
            || items.iter().any(|&i| i as usize >= self.items.rows())
        {
            return Err(RankingError::InvalidConfig(
                "rating pairs outside the trained users and items".into(),
            ));
        }
        let fused = self.users.var().as_tensor().device().is_cpu();
        let mut out = Vec::with_capacity(users.len());
        for (u, i) in users.chunks(4096).zip(items.chunks(4096)) {
            out.extend(self.predict_rows(u, i, fused)?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

mod config;
mod train;

pub use config::DeepMfConfig;

#[cfg(test)]
mod labelled_tests;
#[cfg(test)]
mod tests;
