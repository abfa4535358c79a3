//! Matrix factorisation as a network: a user embedding p_u and an item vector v_j with bias
//! b_j, score(u, j) = p_u . v_j + b_j, with no hidden layer (Koren, Bell and Volinsky,
//! "Matrix Factorization Techniques for Recommender Systems", IEEE Computer 2009, eq. 1 with
//! the item bias of eq. 3; user-only terms do not change a user's ranking and are dropped).
//! Trained on next-watch prediction with the same losses as the YouTube network: each
//! (user, watch) example maximises the softmax probability e^{p_u v_j + b_j} / sum_k
//! e^{p_u v_k + b_k} of the watched item (full softmax on small catalogues, sampled softmax with
//! logQ correction above). It is the baseline every later retriever is compared with.
//!
//! Users the model did not train on (new users, or any history given without a user index)
//! get a folded-in vector ([`crate::fold_in`]): a ridge regression fitted on the training users
//! maps the mean item vector of a user's history (plus a constant) to their learned embedding,
//! learning the scale and direction the softmax gave the trained users.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use nn::bag::{with_f32_data, RowGrads};
use nn::init::SeededVarMap;
use nn::layers::EmbeddingTable;
use nn::optim::{AdamWParams, InPlaceAdamW};
use nn::portable::TouchedRows;
use nn::rng::Rng;
use nn::softmax::CatalogueSoftmax;
use nn::trainer::{self, Better, Fit, Schedule, ShuffledBatches, StepLoss, TrainReport};
use nn::{Compute, Retriever, TrainingSet, UserQuery};
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result, RetrievalError};
use crate::files;
use crate::fold_in;
use crate::warm::WarmStart;

/// Registry name.
pub const KIND: &str = "mf";
const FOLD_IN: &str = "fold_in.weight";

/// MF's settings (`[retrieval.mf]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MfConfig {
    /// Dimension d of user and item vectors.
    pub dim: usize,
    /// Use the full softmax when the catalogue has at most this many items.
    pub full_softmax_max_items: usize,
    /// Negatives per batch for the sampled softmax (shared by the batch).
    pub num_negatives: usize,
    /// Negatives are drawn with probability proportional to (count + 1)^sampling_power.
    pub sampling_power: f64,
    /// Examples per training step.
    pub batch_size: usize,
    /// Maximum number of passes over the examples.
    pub epochs: usize,
    /// Stop after this many epochs without a better validation HR@10 (0 = never).
    pub patience: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Final learning rate as a fraction of `learning_rate` (linear decay).
    pub final_lr_fraction: f64,
    /// AdamW decoupled weight decay (applied to the rows a step touches).
    pub weight_decay: f64,
    /// Standard deviation of the initial embeddings.
    pub init_std: f64,
    /// Ridge penalty of the fold-in regression, relative to the mean diagonal of X^T X.
    pub fold_in_l2: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for MfConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            full_softmax_max_items: 20_000,
            num_negatives: 2048,
            sampling_power: 0.75,
            batch_size: 512,
            epochs: 20,
            patience: 3,
            learning_rate: 4e-3,
            final_lr_fraction: 0.1,
            weight_decay: 0.0,
            init_std: 0.05,
            fold_in_l2: 1e-2,
            seed: 42,
        }
    }
}

impl MfConfig {
    /// Rejects configurations that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(RetrievalError::InvalidConfig(format!("[retrieval.mf] {m}")));
        if self.dim == 0 || self.batch_size == 0 || self.num_negatives == 0 {
            return bad("dim, batch_size and num_negatives must be positive");
        }
        let finite_pos = |x: f64| x.is_finite() && x > 0.0;
        if !finite_pos(self.learning_rate) || !finite_pos(self.init_std) {
            return bad("learning_rate and init_std must be finite and positive");
        }
        let finite_nonneg = |x: f64| x.is_finite() && x >= 0.0;
        if ![
            self.weight_decay,
            self.final_lr_fraction,
            self.sampling_power,
            self.fold_in_l2,
        ]
        .into_iter()
        .all(finite_nonneg)
        {
            return bad("weight_decay, final_lr_fraction, sampling_power and fold_in_l2 must be finite and >= 0");
        }
        Ok(())
    }
}

/// What `retrieval.json` holds besides format and kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    config: MfConfig,
    num_items: usize,
    num_users: usize,
}

/// A trained MF retriever.
pub struct Mf {
    config: MfConfig,
    varmap: VarMap,
    users: EmbeddingTable,
    items: EmbeddingTable,
    /// `(d + 1) x d` fold-in map (zeros until fitted).
    fold_in: Var,
}

impl std::fmt::Debug for Mf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mf")
            .field("config", &self.config)
            .field("users", &self.users.rows())
            .field("items", &self.items.rows())
            .finish_non_exhaustive()
    }
}

impl Mf {
    /// The tables over `varmap` (fresh seeded weights when it is empty) on `device`.
    fn build(
        config: &MfConfig,
        varmap: VarMap,
        (num_users, num_items): (usize, usize),
        device: &Device,
    ) -> Result<Self> {
        let vb = if varmap.all_vars().is_empty() {
            SeededVarMap::new(varmap.clone(), config.seed).into_var_builder(device)
        } else {
            candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, device)
        };
        let d = config.dim;
        let users = EmbeddingTable::new(vb.pp("users"), num_users.max(1), d, config.init_std)?;
        let items = EmbeddingTable::new(vb.pp("items"), num_items, d + 1, config.init_std)?;
        let fold_in = vb.get_with_hints((d + 1, d), FOLD_IN, candle_nn::Init::Const(0.0))?;
        Ok(Self {
            config: config.clone(),
            varmap,
            users,
            items,
            fold_in: Var::from_tensor(&fold_in)?,
        })
    }

    /// The configuration the model was trained with.
    pub fn config(&self) -> &MfConfig {
        &self.config
    }

    /// Number of training users (rows of the user table).
    pub fn num_users(&self) -> usize {
        self.users.rows()
    }

    /// Trains on `data` (early stopping on validation HR@10), then fits the fold-in map.
    pub fn train(
        config: &MfConfig,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(Mf, TrainReport)> {
        Self::train_with(&Compute::FusedCpu, config, data, warm, progress)
    }

    /// [`Self::train`] computing as `compute` says (a GPU: [`Compute::Candle`]); the model
    /// returned, and the fold-in fitted on it, are in host memory.
    pub fn train_with(
        compute: &Compute,
        config: &MfConfig,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&nn::EpochReport),
    ) -> Result<(Mf, TrainReport)> {
        config.validate()?;
        data.validate()?;
        let model = Mf::build(
            config,
            VarMap::new(),
            (data.histories.num_users(), data.catalog.num_items),
            &compute.device(),
        )?;
        if let Some(w) = warm {
            nn::vars::warm_start(&model.varmap, &w.weights, |name| match name {
                n if n.starts_with("items.") => Some(w.items.as_slice()),
                n if n.starts_with("users.") => Some(w.users.as_slice()),
                _ => None,
            })?;
        }
        let mut run = MfRun::new(model, data, compute)?;
        let schedule = Schedule {
            epochs: config.epochs,
            patience: config.patience,
            learning_rate: config.learning_rate,
            final_lr_fraction: config.final_lr_fraction,
        };
        let report = trainer::train(&mut run, &schedule, Better::Higher, progress)?;
        let model = run.model.into_cpu()?;
        model.fit_fold_in(data)?;
        Ok((model, report))
    }

    /// The model with every weight in host memory; a CPU model is returned as it is.
    fn into_cpu(self) -> Result<Self> {
        if self.items.var().as_tensor().device().is_cpu() {
            return Ok(self);
        }
        let varmap = files::host_varmap(&self.varmap)?;
        let sizes = (self.num_users(), self.num_items());
        Mf::build(&self.config, varmap, sizes, &Device::Cpu)
    }

    /// Fits the fold-in map from the training users' histories to their learned embeddings.
    fn fit_fold_in(&self, data: &TrainingSet) -> Result<()> {
        let d = self.config.dim;
        let users = data.histories.num_users();
        let y = self
            .users
            .var()
            .as_tensor()
            .narrow(0, 0, users)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let w = with_f32_data(self.items.var().as_tensor(), |items| {
            fold_in::fit(items, d + 1, d, data.histories, &y, self.config.fold_in_l2)
        })??;
        self.fold_in
            .set(&Tensor::from_vec(w, (d + 1, d), &Device::Cpu)?)?;
        Ok(())
    }

    /// Reads a model written by [`Retriever::save`].
    pub fn load(dir: &Path) -> Result<Self> {
        let saved: Saved = files::load_meta(dir)?;
        saved.config.validate()?;
        let varmap = files::varmap_of(files::load_tensors(dir)?)?;
        let expected = varmap.all_vars().len();
        let sizes = (saved.num_users, saved.num_items);
        let model = Mf::build(&saved.config, varmap, sizes, &Device::Cpu)
            .map_err(|e| RetrievalError::InvalidModel(e.to_string()))?;
        files::check_complete(&model.varmap, expected)?;
        Ok(model)
    }
}

impl Retriever for Mf {
    type Error = RetrievalError;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn dim(&self) -> usize {
        self.config.dim
    }

    fn num_items(&self) -> usize {
        self.items.rows()
    }

    /// A training user's learned embedding when the query names one; otherwise the fold-in
    /// of the history (see the module doc).
    fn user_vectors(&self, queries: &[UserQuery]) -> Result<Vec<f32>> {
        let d = self.config.dim;
        let n = self.num_items();
        for q in queries {
            if let Some(bad) = q.history.iter().find(|&&i| i as usize >= n) {
                return Err(invalid(format!(
                    "history item {bad} is outside the catalogue"
                )));
            }
        }
        let fold = self.fold_in.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let known = self.num_users();
        // Validation while training on a GPU reads host copies of the tables (once per epoch).
        let host = &Device::Cpu;
        let users = self.users.var().as_tensor().to_device(host)?;
        let items = self.items.var().as_tensor().to_device(host)?;
        let out = with_f32_data(&users, |p| {
            with_f32_data(&items, |items| {
                let mut out = Vec::with_capacity(queries.len() * d);
                for q in queries {
                    match q.user.filter(|&u| (u as usize) < known) {
                        Some(u) => out.extend_from_slice(&p[u as usize * d..(u as usize + 1) * d]),
                        None => fold_in::apply(&fold, items, d + 1, d, q.history, &mut out),
                    }
                }
                out
            })
        })??;
        Ok(out)
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
        files::save(dir, KIND, &saved, &files::var_tensors(&self.varmap)?)
    }

    fn weights(&self) -> Result<HashMap<String, Tensor>> {
        files::var_tensors(&self.varmap)
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
}

/// One MF training run.
struct MfRun<'a> {
    model: Mf,
    data: TrainingSet<'a>,
    softmax: CatalogueSoftmax,
    optimizer: InPlaceAdamW,
    user_grads: RowGrads,
    rng: Rng,
    batches: ShuffledBatches,
    /// Fused CPU kernels, or candle ops on the model's device.
    fused: bool,
}

impl<'a> MfRun<'a> {
    fn new(model: Mf, data: &TrainingSet<'a>, compute: &Compute) -> Result<Self> {
        let cfg = &model.config;
        let softmax = CatalogueSoftmax::new(
            &data.item_counts(),
            &model.items,
            cfg.full_softmax_max_items,
            cfg.sampling_power,
            cfg.num_negatives,
        )?
        .with_compute(compute);
        let users = (model.users.var().clone(), model.users.width());
        let items = (model.items.var().clone(), model.items.width());
        let (dense, sparse) = if softmax.is_full() {
            (vec![items.0], vec![users])
        } else {
            (Vec::new(), vec![users, items])
        };
        let params = AdamWParams {
            lr: cfg.learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: cfg.weight_decay,
        };
        Ok(Self {
            user_grads: RowGrads::new(model.users.rows(), model.users.width()),
            optimizer: InPlaceAdamW::for_compute(compute, dense, sparse, params)?,
            fused: compute.is_fused_cpu(),
            rng: Rng::new(cfg.seed ^ 0x3F_0FBA),
            batches: ShuffledBatches::new(data.examples.len(), cfg.batch_size),
            model,
            data: *data,
            softmax,
        })
    }
}

impl Fit for MfRun<'_> {
    type Error = RetrievalError;
    type Snapshot = HashMap<String, Tensor>;

    fn examples_per_epoch(&self) -> usize {
        self.data.examples.len()
    }

    fn steps_per_epoch(&self) -> usize {
        self.batches.steps()
    }

    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        self.batches.shuffle(&mut self.rng);
        Ok(())
    }

    fn step(&mut self, step: usize, lr: f64) -> Result<StepLoss> {
        let batch = self.batches.batch(step);
        let examples: Vec<_> = batch.iter().map(|&i| self.data.examples[i]).collect();
        let targets: Vec<u32> = examples.iter().map(|e| self.data.target(e)).collect();
        let users: Vec<u32> = examples.iter().map(|e| e.user).collect();
        // Fused: one leaf row per example. Candle ops: the distinct users' rows as a leaf,
        // read per example, so the leaf's gradient is the table's row-sparse gradient.
        let (leaf, u, touched) = if self.fused {
            let leaf = self.model.users.gather(&users)?;
            let u = leaf.as_tensor().clone();
            (leaf, u, None)
        } else {
            let touched = TouchedRows::of(&[&users]);
            let leaf = touched.leaf(self.model.users.var().as_tensor())?;
            let local = &touched.local[0];
            let local = Tensor::from_slice(local, local.len(), leaf.device())?;
            let u = leaf.as_tensor().index_select(&local, 0)?;
            (leaf, u, Some(touched.rows))
        };
        let (loss, sampled) = self
            .softmax
            .loss(&u, &self.model.items, &targets, &mut self.rng)?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        let store = loss.backward()?;
        self.optimizer.set_learning_rate(lr);
        self.optimizer.begin_step();
        self.optimizer.step_dense(&store)?;
        let g = store
            .get(leaf.as_tensor())
            .ok_or_else(|| invalid("no gradient reached the user embeddings"))?;
        if let Some(rows) = touched {
            self.optimizer.step_rows_tensor(0, &rows, g)?;
            if let Some((rows, g)) = self.softmax.table_gradient_tensor(&store, sampled)? {
                self.optimizer.step_rows_tensor(1, &rows, &g)?;
            }
            return Ok(StepLoss {
                sum: value,
                weight: 1.0,
            });
        }
        self.user_grads.add_rows(&users, g)?;
        let (rows, gv) = self.user_grads.take_sorted();
        self.optimizer.step_rows(0, &rows, &gv)?;
        if !self.softmax.is_full() {
            let (rows, gv) = self.softmax.table_gradient(&store, sampled)?;
            self.optimizer.step_rows(1, &rows, &gv)?;
        }
        Ok(StepLoss {
            sum: value,
            weight: 1.0,
        })
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.model.validation_hit_rate(self.data.validation, None)
    }

    fn snapshot(&self) -> Result<Self::Snapshot> {
        Ok(nn::vars::snapshot(&self.model.varmap)?)
    }

    fn restore(&mut self, snapshot: Self::Snapshot) -> Result<()> {
        Ok(nn::vars::restore(&self.model.varmap, &snapshot)?)
    }
}
