//! What the user-row autoencoders share (U-AutoRec, CDAE, Mult-DAE, Mult-VAE, and CFGAN's
//! generator): a user's row of
//! the implicit interaction matrix x_u (1 for each distinct item in their history) goes in, a
//! score for every item comes out, and the last hidden layer is the user vector.
//!
//! The network: a first layer over the sparse row (`h_1 = a(x_u W_1 + b_1 [+ V_u])`, read as
//! a bag of the watched items' rows of W_1, so its cost is the history length, not the
//! catalogue), further `a`-layers, for the VAE a Gaussian latent layer (mean and log-variance,
//! Kingma and Welling 2014), decoder layers, and a linear output layer over items whose rows are
//! the item table: `o_uj = h_u . v_j + b_j`. Every output non-linearity these models use
//! (identity, sigmoid, softmax) is monotone in `o_uj`, so the top-K by `u . v_j + b_j` with
//! u = the last hidden layer is the model's own top-K and the index serves it.
//!
//! The model files hold each paper's configuration (shape, corruption, objective, in the terms of
//! `spec.rs`); this folder trains (`train.rs`) and serves them all.

mod spec;
mod train;

pub use spec::{Activation, InputScale, Objective, Shape, Spec, Training};
pub(crate) use train::{unwatched_sample, Updater, UserRows};

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap};
use nn::bag::{with_f32_data, Bags};
use nn::init::SeededVarMap;
use nn::layers::{BagLinear, EmbeddingTable};
use nn::portable::bag_sum;
use nn::rng::Rng;
use nn::trainer::{self, Better, Schedule, TrainReport};
use nn::{Compute, Retriever, TrainingSet, UserQuery};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result, RetrievalError};
use crate::files;
use crate::warm::WarmStart;

/// A model file's settings: the network and training they describe. Validation, training and
/// loading come with it.
pub trait AutoencoderSettings: Serialize + DeserializeOwned {
    /// The network and training these settings describe.
    fn spec(&self) -> Spec;

    /// Rejects settings that cannot train.
    fn validate(&self) -> Result<()> {
        self.spec().validate()
    }

    /// Trains the model on `data`, from `warm`'s weights when given.
    fn train(
        &self,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(Autoencoder, TrainReport)> {
        self.train_with(&Compute::FusedCpu, data, warm, progress)
    }

    /// [`Self::train`] computing as `compute` says (a GPU: [`Compute::Candle`]).
    fn train_with(
        &self,
        compute: &Compute,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(Autoencoder, TrainReport)> {
        self.validate()?;
        let config = serde_json::to_value(self)?;
        Autoencoder::train(compute, &self.spec(), config, data, warm, progress)
    }

    /// Reads a model of this kind written by [`Retriever::save`].
    fn load(dir: &Path) -> Result<Autoencoder> {
        Autoencoder::load(dir, Self::spec)
    }
}

/// What `retrieval.json` holds besides format and kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved<C> {
    config: C,
    num_items: usize,
    num_users: usize,
}

/// The layers after the first: encoder, latent, decoder.
#[derive(Debug, Clone)]
struct Dense {
    encoder: Vec<Linear>,
    latent: Option<Linear>,
    decoder: Vec<Linear>,
}

/// A trained user-row autoencoder (see the module doc).
pub struct Autoencoder {
    spec: Spec,
    config: serde_json::Value,
    varmap: VarMap,
    input: BagLinear,
    user_node: Option<EmbeddingTable>,
    dense: Dense,
    /// The output layer `[v_j, b_j]`.
    items: EmbeddingTable,
}

impl std::fmt::Debug for Autoencoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Autoencoder")
            .field("spec", &self.spec)
            .field("items", &self.items.rows())
            .finish_non_exhaustive()
    }
}

/// Glorot's normal initialisation std for a `fan_in x fan_out` weight (Liang et al.'s choice).
fn glorot(fan_in: usize, fan_out: usize) -> f64 {
    (2.0 / (fan_in + fan_out).max(1) as f64).sqrt()
}

fn linear(vb: VarBuilder, input: usize, output: usize) -> Result<Linear> {
    let init = candle_nn::Init::Randn {
        mean: 0.0,
        stdev: glorot(input, output),
    };
    let w = vb.get_with_hints((output, input), "weight", init)?;
    let b = vb.get_with_hints(output, "bias", candle_nn::Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

impl Autoencoder {
    /// The network over `varmap` (fresh seeded weights when it is empty) on `device`.
    fn build(
        spec: &Spec,
        config: serde_json::Value,
        varmap: VarMap,
        (num_users, num_items): (usize, usize),
        device: &Device,
    ) -> Result<Self> {
        let shape = &spec.shape;
        let vb = if varmap.all_vars().is_empty() {
            SeededVarMap::new(varmap.clone(), spec.training.seed).into_var_builder(device)
        } else {
            VarBuilder::from_varmap(&varmap, DType::F32, device)
        };
        let first = *shape.encoder.first().ok_or_else(|| {
            RetrievalError::InvalidConfig(format!("{}: no encoder layer", spec.kind))
        })?;
        let input = BagLinear::new(vb.pp("input"), num_items, first, glorot(num_items, first))?;
        let user_node = match shape.user_node {
            true => Some(EmbeddingTable::new(
                vb.pp("user_node"),
                num_users.max(1),
                first,
                glorot(num_users, first),
            )?),
            false => None,
        };
        let mut width = first;
        let mut encoder = Vec::new();
        for (i, &w) in shape.encoder.iter().enumerate().skip(1) {
            encoder.push(linear(vb.pp(format!("encoder.{i}")), width, w)?);
            width = w;
        }
        let latent = match shape.latent {
            Some(z) => {
                let l = linear(vb.pp("latent"), width, 2 * z)?;
                width = z;
                Some(l)
            }
            None => None,
        };
        let mut decoder = Vec::new();
        for (i, &w) in shape.decoder.iter().enumerate() {
            decoder.push(linear(vb.pp(format!("decoder.{i}")), width, w)?);
            width = w;
        }
        let items = EmbeddingTable::new(
            vb.pp("items"),
            num_items,
            width + 1,
            glorot(width, num_items),
        )?;
        Ok(Self {
            spec: spec.clone(),
            config,
            varmap,
            input,
            user_node,
            dense: Dense {
                encoder,
                latent,
                decoder,
            },
            items,
        })
    }

    /// Trains the model `spec` describes on `data` (early stopping on validation HR@10),
    /// starting from `warm`'s weights when given, computing as `compute` says. `config` is the
    /// model's own settings, kept for the manifest and for loading. The model returned is in
    /// host memory whichever device trained it.
    pub fn train(
        compute: &Compute,
        spec: &Spec,
        config: serde_json::Value,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(Self, TrainReport)> {
        let model = Self::untrained(spec, config, data, warm, &compute.device())?;
        let t = &spec.training;
        let mut run = train::Run::new(model, data, compute)?;
        let schedule = Schedule {
            epochs: t.epochs,
            patience: t.patience,
            learning_rate: t.learning_rate,
            final_lr_fraction: 1.0,
        };
        let report = trainer::train(&mut run, &schedule, Better::Higher, progress)?;
        Ok((run.model.into_cpu()?, report))
    }

    /// The model with every weight in host memory (a model trained on a GPU is saved, indexed
    /// and served from there); a CPU model is returned as it is.
    pub(crate) fn into_cpu(self) -> Result<Self> {
        if self.items.var().as_tensor().device().is_cpu() {
            return Ok(self);
        }
        let varmap = files::host_varmap(&self.varmap)?;
        let sizes = (self.num_users(), self.num_items());
        Self::build(&self.spec, self.config, varmap, sizes, &Device::Cpu)
    }

    /// A fresh network for `data`'s users and items on `device`, from `warm`'s weights when
    /// given.
    pub(crate) fn untrained(
        spec: &Spec,
        config: serde_json::Value,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        device: &Device,
    ) -> Result<Self> {
        spec.validate()?;
        data.validate()?;
        let model = Self::build(
            spec,
            config,
            VarMap::new(),
            (data.histories.num_users(), data.catalog.num_items),
            device,
        )?;
        if let Some(w) = warm {
            nn::vars::warm_start(&model.varmap, &w.weights, |name| match name {
                "input.weight" | "items.weight" => Some(w.items.as_slice()),
                "user_node.weight" => Some(w.users.as_slice()),
                _ => None,
            })?;
        }
        Ok(model)
    }

    /// Every weight, by name.
    pub(crate) fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Reads a model written by [`Retriever::save`]; `spec_of` turns the saved config of type
    /// `C` into the network's description.
    pub fn load<C: DeserializeOwned + Serialize>(
        dir: &Path,
        spec_of: impl Fn(&C) -> Spec,
    ) -> Result<Self> {
        let saved: Saved<C> = files::load_meta(dir)?;
        let spec = spec_of(&saved.config);
        spec.validate()?;
        let config = serde_json::to_value(&saved.config)?;
        let varmap = files::varmap_of(files::load_tensors(dir)?)?;
        let expected = varmap.all_vars().len();
        let sizes = (saved.num_users, saved.num_items);
        let model = Self::build(&spec, config, varmap, sizes, &Device::Cpu)
            .map_err(|e| RetrievalError::InvalidModel(e.to_string()))?;
        files::check_complete(&model.varmap, expected)?;
        Ok(model)
    }

    /// The model's description.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Number of training users (rows of the per-user node; 0 without one).
    pub fn num_users(&self) -> usize {
        self.user_node.as_ref().map_or(0, |t| t.rows())
    }

    /// The input-layer weight of each item of `history` under the configured scaling (each
    /// distinct item once), times `keep_scale`.
    fn push_row(&self, bags: &mut Bags, items: &[u32], keep_scale: f32) {
        let w = match self.spec.shape.input {
            InputScale::Binary => 1.0,
            InputScale::UnitNorm => 1.0 / (items.len().max(1) as f32).sqrt(),
        } * keep_scale;
        let start = bags.ids.len();
        bags.ids.extend_from_slice(items);
        bags.weights
            .extend(std::iter::repeat_n(w, bags.ids.len() - start));
        bags.offsets.push(bags.ids.len());
    }

    /// Hidden layers from the first layer's pre-activation `pre` (`rows x encoder[0]`): the
    /// user vectors, and for the VAE the latent mean and log-variance. With `noise` (training)
    /// the latent is sampled, z = mu + eps * e^(logvar / 2); without, z = mu.
    fn hidden(
        &self,
        pre: &Tensor,
        noise: Option<&mut Rng>,
    ) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
        let act = self.spec.shape.activation;
        let mut h = act.apply(pre)?;
        for layer in &self.dense.encoder {
            h = act.apply(&layer.forward(&h)?)?;
        }
        let mut gaussian = None;
        if let (Some(layer), Some(z)) = (&self.dense.latent, self.spec.shape.latent) {
            let out = layer.forward(&h)?;
            let mu = out.narrow(1, 0, z)?;
            let logvar = out.narrow(1, z, z)?;
            h = match noise {
                Some(rng) => {
                    let n = mu.elem_count();
                    let eps: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
                    let eps = Tensor::from_vec(eps, mu.shape(), mu.device())?;
                    (&mu + (eps * (&logvar * 0.5)?.exp()?)?)?
                }
                None => mu.clone(),
            };
            gaussian = Some((mu, logvar));
        }
        for layer in &self.dense.decoder {
            h = act.apply(&layer.forward(&h)?)?;
        }
        Ok((h, gaussian))
    }

    /// The model's own output for each query, `queries.len() x num_items`: the output
    /// non-linearity applied to the whole catalogue's logits (softmax for the multinomial
    /// models, sigmoid for CDAE, identity for AutoRec), by a forward pass that does not go
    /// through the item table's `[u, 1]` product. What serving's top-K must reproduce.
    pub fn reconstruct(&self, queries: &[UserQuery]) -> Result<Vec<f32>> {
        let d = self.dim();
        let u = self.user_vectors(queries)?;
        let table = self.items.var().as_tensor();
        let u = Tensor::from_vec(u, (queries.len(), d), table.device())?;
        let weight = table.narrow(1, 0, d)?;
        let bias = table.narrow(1, d, 1)?.squeeze(1)?;
        let logits = u.matmul(&weight.t()?)?.broadcast_add(&bias)?;
        let out = match self.spec.training.objective {
            Objective::SquaredError | Objective::Adversarial => logits,
            Objective::Logistic { .. } => Activation::Sigmoid.apply(&logits)?,
            Objective::Multinomial { .. } => candle_nn::ops::softmax(&logits, 1)?,
        };
        Ok(out.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Rows of the per-user node for `users` (`rows x encoder[0]`, zeros for unknown users).
    fn user_node_rows(&self, users: &[Option<u32>]) -> Result<Option<Tensor>> {
        let Some(table) = &self.user_node else {
            return Ok(None);
        };
        let weights = table.var().as_tensor();
        if !weights.device().is_cpu() {
            let bags = user_bags(users, table.rows());
            return Ok(Some(bag_sum(weights, &bags, &bags.ids)?));
        }
        let w = table.width();
        let rows = with_f32_data(table.var().as_tensor(), |v| {
            let mut out = vec![0f32; users.len() * w];
            for (dst, u) in out.chunks_mut(w).zip(users) {
                if let Some(u) = u.filter(|&u| (u as usize) < table.rows()) {
                    dst.copy_from_slice(&v[u as usize * w..(u as usize + 1) * w]);
                }
            }
            out
        })?;
        Ok(Some(Tensor::from_vec(
            rows,
            (users.len(), w),
            &Device::Cpu,
        )?))
    }
}

/// One bag per user: its row of the per-user node with weight 1, or empty (zeros) for an
/// unknown user.
fn user_bags(users: &[Option<u32>], rows: usize) -> Bags {
    let mut bags = Bags::new();
    for u in users {
        bags.push_mean(u.filter(|&u| (u as usize) < rows));
    }
    bags
}

/// Each distinct item of `history`, sorted.
fn distinct(history: &[u32]) -> Vec<u32> {
    let mut items = history.to_vec();
    items.sort_unstable();
    items.dedup();
    items
}

impl Retriever for Autoencoder {
    type Error = RetrievalError;

    fn kind(&self) -> &'static str {
        self.spec.kind
    }

    fn dim(&self) -> usize {
        self.spec.shape.dim()
    }

    fn num_items(&self) -> usize {
        self.items.rows()
    }

    /// The last hidden layer for each history (the VAE's mean path, no corruption); a training
    /// user's node is added when the model has one and the query names the user, and left out
    /// for anyone else (CDAE's new users: the history part only).
    fn user_vectors(&self, queries: &[UserQuery]) -> Result<Vec<f32>> {
        let n = self.num_items();
        let mut bags = Bags::new();
        for q in queries {
            if let Some(bad) = q.history.iter().find(|&&i| i as usize >= n) {
                return Err(invalid(format!(
                    "history item {bad} is outside the catalogue"
                )));
            }
            self.push_row(&mut bags, &distinct(q.history), 1.0);
        }
        let mut pre = self.input.forward_tensor(&bags)?;
        let users: Vec<Option<u32>> = queries.iter().map(|q| q.user).collect();
        if let Some(node) = self.user_node_rows(&users)? {
            pre = (pre + node)?;
        }
        let (h, _) = self.hidden(&pre, None)?;
        Ok(h.flatten_all()?.to_vec1::<f32>()?)
    }

    fn item_table(&self) -> &Tensor {
        self.items.var().as_tensor()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let saved = Saved {
            config: self.config.clone(),
            num_items: self.num_items(),
            num_users: self.num_users(),
        };
        files::save(
            dir,
            self.spec.kind,
            &saved,
            &files::var_tensors(&self.varmap)?,
        )
    }

    fn weights(&self) -> Result<HashMap<String, Tensor>> {
        files::var_tensors(&self.varmap)
    }

    fn config_json(&self) -> serde_json::Value {
        self.config.clone()
    }
}
