//! Neural collaborative filtering for ratings, He, Liao, Zhang, Nie, Hu and Chua, "Neural
//! Collaborative Filtering" (WWW 2017), section 3, trained on observed ratings with squared
//! error (the paper's section 3.1.1 names it as the explicit-feedback loss) and the biases of
//! biased MF kept, so that every variant is `r^_ui = mu + b_u + b_i + f(u, i)`:
//!
//! - GMF (eq. 9 with a linear output): `f = h^T (p_u . q_i)`, the element-wise product of the
//!   user and item embeddings weighted by h. With h = 1 it is biased MF's dot product (the
//!   paper's section 3.2 argument); h starts at ones, so training begins from MF.
//! - MLP (eq. 10): `f = h^T a_L(... a_1(W_1 [p_u, q_i] + b_1) ...)`, ReLU layers over the
//!   concatenated embeddings, a tower halving its width (`mlp_layers`, default 64-32-16-8; each
//!   embedding is half the first layer).
//! - NeuMF (eq. 11-12): separate GMF and MLP embeddings and `f = h^T [phi_GMF, phi_MLP]`; with
//!   `pretrain`, GMF and MLP are trained first and NeuMF starts from their weights with
//!   `h = [alpha h_GMF, (1 - alpha) h_MLP]` (section 3.4.1; Adam throughout here, where the
//!   paper switches to SGD after pre-training).
//!
//! - MF: GMF with h fixed to ones, biased MF of Koren, Bell and Volinsky, "Matrix
//!   Factorization Techniques for Recommender Systems" (IEEE Computer 2009), eq. 4 with the
//!   regularised squared error of eq. 5: the biased-MF baseline of EVAL.md section 4 is this
//!   model, not a second implementation.
//!
//! Each L2-penalised like biased MF (lambda (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2) per rating), row-
//! sparse updates of the embedding tables, the epoch chosen by validation RMSE.
//!
//! On implicit feedback ([`Ncf::train_implicit`]) the same networks are trained as the paper
//! trains them (section 3.1.1, eq. 7): the output is a logit, `y^_ui = sigmoid(b_u + b_i +
//! f(u, i))`, and the loss is the log loss over each observed (user, item) pair and `negatives`
//! items the user never interacted with, drawn uniformly per positive every epoch; the epoch is
//! chosen by full-catalogue HR@10 on held-out next interactions (EVAL.md section 1).
//!
//! Training computes where `config.compute` says: with [`nn::Compute::Candle`] (a GPU) the
//! model moves to the device for training (the rows a batch reads become compact leaves) and
//! back to host memory after it.

use std::collections::HashMap;

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::{Linear, VarMap};
use nn::init::SeededVarMap;
use nn::layers::EmbeddingTable;
use nn::rating::{RatingModel, Ratings};
use nn::trainer::{EpochReport, TrainReport};

use crate::error::{RankingError, Result};

/// A trained NCF model. Each embedding row is `[GMF factors | MLP factors | bias]` (the parts
/// the kind has).
pub struct Ncf {
    kind: NcfKind,
    config: NcfConfig,
    varmap: VarMap,
    users: EmbeddingTable,
    items: EmbeddingTable,
    /// MLP hidden layers (ReLU).
    tower: Vec<Linear>,
    /// GMF's output weights h (1 x dim).
    h_gmf: Option<Var>,
    /// MLP's output weights h (1 x last width).
    h_mlp: Option<Var>,
    mean: f32,
    /// Trained on implicit feedback (outputs are logits).
    implicit: bool,
}

impl Ncf {
    fn gmf_width(&self) -> usize {
        if self.kind.has_gmf() {
            self.config.dim
        } else {
            0
        }
    }

    fn mlp_width(&self) -> usize {
        if self.kind.has_mlp() {
            self.config.mlp_dim()
        } else {
            0
        }
    }

    /// A fresh model in host memory; h of GMF starts at ones (MF).
    fn new(
        kind: NcfKind,
        config: &NcfConfig,
        num_users: usize,
        num_items: usize,
        mean: f32,
    ) -> Result<Self> {
        Self::new_on(kind, config, (num_users, num_items), mean, &Device::Cpu)
    }

    /// [`Self::new`] on `device`.
    fn new_on(
        kind: NcfKind,
        config: &NcfConfig,
        (num_users, num_items): (usize, usize),
        mean: f32,
        device: &Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = SeededVarMap::new(varmap.clone(), config.seed).into_var_builder(device);
        let (g, m) = (
            if kind.has_gmf() { config.dim } else { 0 },
            if kind.has_mlp() { config.mlp_dim() } else { 0 },
        );
        let width = g + m + 1;
        let users = EmbeddingTable::new(vb.pp("users"), num_users, width, config.init_std)?;
        let items = EmbeddingTable::new(vb.pp("items"), num_items, width, config.init_std)?;
        let mut tower = Vec::new();
        let mut h_mlp = None;
        if kind.has_mlp() {
            let mut input = 2 * m;
            for (i, &w) in config.mlp_layers.iter().enumerate().skip(1) {
                tower.push(candle_nn::linear(input, w, vb.pp(format!("tower.{i}")))?);
                input = w;
            }
            let init = candle_nn::Init::Randn {
                mean: 0.0,
                stdev: (1.0 / input as f64).sqrt(),
            };
            h_mlp = Some(Var::from_tensor(&vb.get_with_hints(
                (1, input),
                "h_mlp",
                init,
            )?)?);
        }
        let h_gmf = match kind.has_gmf() {
            true => Some(Var::from_tensor(&vb.get_with_hints(
                (1, g),
                "h_gmf",
                candle_nn::Init::Const(1.0),
            )?)?),
            false => None,
        };
        Ok(Self {
            kind,
            config: config.clone(),
            varmap,
            users,
            items,
            tower,
            h_gmf,
            h_mlp,
            mean,
            implicit: false,
        })
    }

    /// Trains `kind` on `train` (indices below `num_users` / `num_items`), keeping the epoch
    /// with the lowest RMSE on `valid`; NeuMF with `pretrain` trains GMF and MLP first.
    pub fn train(
        kind: NcfKind,
        config: &NcfConfig,
        num_users: usize,
        num_items: usize,
        train: &Ratings,
        valid: &Ratings,
        mut progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        config.validate(kind.name())?;
        train.validate(num_users, num_items)?;
        valid.validate(num_users, num_items)?;
        if train.is_empty() {
            return Err(RankingError::NoTrainingData);
        }
        let mean = train.mean() as f32;
        let model = if kind == NcfKind::NeuMf && config.pretrain {
            let args = (num_users, num_items, train, valid);
            let data = train::Data::Ratings(args.2, args.3);
            let (gmf, _) = train::fit(
                Self::new(NcfKind::Gmf, config, args.0, args.1, mean)?,
                data,
                &mut progress,
            )?;
            let (mlp, _) = train::fit(
                Self::new(NcfKind::Mlp, config, args.0, args.1, mean)?,
                data,
                &mut progress,
            )?;
            Self::fuse(&gmf, &mlp, config.alpha)?
        } else {
            Self::new(kind, config, num_users, num_items, mean)?
        };
        train::fit(model, train::Data::Ratings(train, valid), progress)
    }

    /// NeuMF initialised from a trained GMF and MLP: their embeddings side by side, MLP's tower,
    /// `h = [alpha h_GMF, (1 - alpha) h_MLP]`, GMF's biases.
    pub fn fuse(gmf: &Ncf, mlp: &Ncf, alpha: f64) -> Result<Self> {
        let config = gmf.config.clone();
        let model = Self::new(
            NcfKind::NeuMf,
            &config,
            gmf.users.rows(),
            gmf.items.rows(),
            gmf.mean,
        )?
        .with_objective(gmf.implicit);
        let (d, e) = (config.dim, config.mlp_dim());
        for (dst, a, b) in [
            (&model.users, &gmf.users, &mlp.users),
            (&model.items, &gmf.items, &mlp.items),
        ] {
            let t = Tensor::cat(
                &[
                    a.var().as_tensor().narrow(1, 0, d)?,
                    b.var().as_tensor().narrow(1, 0, e)?,
                    a.var().as_tensor().narrow(1, d, 1)?,
                ],
                1,
            )?;
            dst.var().set(&t)?;
        }
        for (dst, src) in model.tower.iter().zip(&mlp.tower) {
            Var::from_tensor(dst.weight())?.set(src.weight())?;
            if let (Some(d), Some(s)) = (dst.bias(), src.bias()) {
                Var::from_tensor(d)?.set(s)?;
            }
        }
        let scaled = |h: &Option<Var>, by: f64| -> Result<Option<Tensor>> {
            Ok(match h {
                Some(h) => Some((h.as_tensor() * by)?),
                None => None,
            })
        };
        if let (Some(dst), Some(src)) = (&model.h_gmf, scaled(&gmf.h_gmf, alpha)?) {
            dst.set(&src)?;
        }
        if let (Some(dst), Some(src)) = (&model.h_mlp, scaled(&mlp.h_mlp, 1.0 - alpha)?) {
            dst.set(&src)?;
        }
        Ok(model)
    }

    /// Predictions for gathered embedding rows `p`, `q` (`batch x width`).
    fn forward(&self, p: &Tensor, q: &Tensor) -> Result<Tensor> {
        let (g, m) = (self.gmf_width(), self.mlp_width());
        let bias = (p.narrow(1, g + m, 1)? + q.narrow(1, g + m, 1)?)?;
        let mut out = (bias + f64::from(self.mean))?;
        if let Some(h) = &self.h_gmf {
            let product = (p.narrow(1, 0, g)? * q.narrow(1, 0, g)?)?;
            out = (out + product.matmul(&h.as_tensor().t()?)?)?;
        }
        if let Some(h) = &self.h_mlp {
            let mut x = Tensor::cat(&[p.narrow(1, g, m)?, q.narrow(1, g, m)?], 1)?;
            for layer in &self.tower {
                x = layer.forward(&x)?.relu()?;
            }
            out = (out + x.matmul(&h.as_tensor().t()?)?)?;
        }
        Ok(out.squeeze(1)?)
    }

    /// This model with its weights on `device` (itself when they are there already).
    pub(crate) fn on_device(self, device: &Device) -> Result<Self> {
        if self.users.var().as_tensor().device().same_device(device) {
            return Ok(self);
        }
        self.copy_on(device)
    }

    /// A copy of this model with its weights on `device`.
    pub(crate) fn copy_on(&self, device: &Device) -> Result<Self> {
        let sizes = (self.users.rows(), self.items.rows());
        let moved = Self::new_on(self.kind, &self.config, sizes, self.mean, device)?
            .with_objective(self.implicit);
        nn::vars::restore(&moved.varmap, &self.weights()?)?;
        Ok(moved)
    }

    fn with_objective(mut self, implicit: bool) -> Self {
        self.implicit = implicit;
        self
    }

    /// Which model this is.
    pub fn ncf_kind(&self) -> NcfKind {
        self.kind
    }

    /// The settings it was built with.
    pub fn config(&self) -> &NcfConfig {
        &self.config
    }

    /// Every weight by name (user and item tables are `users.weight` and `items.weight`).
    pub fn weights(&self) -> Result<HashMap<String, Tensor>> {
        Ok(nn::vars::snapshot(&self.varmap)?)
    }

    /// The variables, by name (for warm starts).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The user table: row u is `[GMF factors | MLP factors | b_u]`.
    pub fn users(&self) -> &EmbeddingTable {
        &self.users
    }

    /// The item table: row i is `[GMF factors | MLP factors | b_i]`.
    pub fn items(&self) -> &EmbeddingTable {
        &self.items
    }

    /// GMF's output weights h (`None` for the MLP).
    pub fn gmf_output(&self) -> Result<Option<Vec<f32>>> {
        Ok(match &self.h_gmf {
            Some(h) => Some(h.as_tensor().flatten_all()?.to_vec1::<f32>()?),
            None => None,
        })
    }

    /// A model of `kind` from saved `weights` (every variable must be present, shapes equal).
    pub fn from_weights(
        kind: NcfKind,
        config: &NcfConfig,
        num_users: usize,
        num_items: usize,
        mean: f32,
        implicit: bool,
        weights: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        config.validate(kind.name())?;
        let model = Self::new(kind, config, num_users, num_items, mean)?.with_objective(implicit);
        let fresh = nn::vars::snapshot(&model.varmap)?;
        for (name, t) in &fresh {
            match weights.get(name) {
                Some(w) if w.dims() == t.dims() => {}
                _ => {
                    return Err(RankingError::InvalidConfig(format!(
                        "saved {} weights lack '{name}' of shape {:?}",
                        kind.name(),
                        t.dims()
                    )))
                }
            }
        }
        nn::vars::restore(&model.varmap, weights)?;
        Ok(model)
    }

    /// Sets GMF's output weights h (tests: h = 1 makes GMF biased MF).
    pub fn set_gmf_output(&self, h: &[f32]) -> Result<()> {
        if let Some(var) = &self.h_gmf {
            var.set(&Tensor::from_slice(h, (1, h.len()), &Device::Cpu)?)?;
        }
        Ok(())
    }
}

impl RatingModel for Ncf {
    type Error = RankingError;

    fn kind(&self) -> &'static str {
        self.kind.name()
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
        let mut out = Vec::with_capacity(users.len());
        let device = self.users.var().as_tensor().device();
        let rows = |table: &EmbeddingTable, ids: &[u32]| -> Result<Tensor> {
            if device.is_cpu() {
                return Ok(table.gather(ids)?.as_tensor().clone());
            }
            let ids = Tensor::from_slice(ids, ids.len(), device)?;
            Ok(table.var().as_tensor().index_select(&ids, 0)?)
        };
        for (u, i) in users.chunks(4096).zip(items.chunks(4096)) {
            let (p, q) = (rows(&self.users, u)?, rows(&self.items, i)?);
            out.extend(self.forward(&p, &q)?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

mod config;
mod implicit;
mod train;

pub use config::{NcfConfig, NcfKind, KIND_GMF, KIND_MF, KIND_MLP, KIND_NEUMF};
pub use implicit::Implicit;

#[cfg(test)]
mod tests;
