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

use std::collections::HashMap;

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::{Linear, VarMap};
use nn::data::ValidationCase;
use nn::init::SeededVarMap;
use nn::layers::EmbeddingTable;
use nn::rating::{LabelledPairs, RatingModel, Ratings};
use nn::trainer::{EpochReport, TrainReport};
use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};

/// Registry name of biased MF (GMF with h fixed to ones).
pub const KIND_MF: &str = "mf";
/// Registry name of GMF.
pub const KIND_GMF: &str = "gmf";
/// Registry name of the MLP.
pub const KIND_MLP: &str = "mlp";
/// Registry name of NeuMF.
pub const KIND_NEUMF: &str = "neumf";

/// Which NCF model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcfKind {
    /// Biased MF: GMF whose output weights stay at ones.
    Mf,
    /// Generalised MF.
    Gmf,
    /// The MLP over concatenated embeddings.
    Mlp,
    /// GMF and MLP fused.
    NeuMf,
}

impl NcfKind {
    /// The registry name.
    pub fn name(self) -> &'static str {
        match self {
            NcfKind::Mf => KIND_MF,
            NcfKind::Gmf => KIND_GMF,
            NcfKind::Mlp => KIND_MLP,
            NcfKind::NeuMf => KIND_NEUMF,
        }
    }

    fn has_gmf(self) -> bool {
        self != NcfKind::Mlp
    }

    fn has_mlp(self) -> bool {
        matches!(self, NcfKind::Mlp | NcfKind::NeuMf)
    }

    /// The kind registered as `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [NcfKind::Mf, NcfKind::Gmf, NcfKind::Mlp, NcfKind::NeuMf]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// NCF's settings (`[rating.mf]`, `[rating.gmf]`, `[rating.mlp]`, `[rating.neumf]` on ratings;
/// `[retrieval.gmf]`, `[retrieval.mlp]`, `[retrieval.neumf]` on implicit feedback; NeuMF's
/// pre-training runs GMF and MLP with NeuMF's own settings). On ratings, lambda 0.3 and
/// learning rate 2e-3 gave the lowest mean validation RMSE of GMF, MLP and NeuMF on ml-100k
/// among lambda 0.1 / 0.3 / 1 and learning rates 5e-3 / 2e-3 (GMF 0.9158, MLP 0.9299, NeuMF
/// 0.9147); MF, whose h stays at ones, needs less penalty: lambda 0.1 and 5e-3 (validation
/// 0.9150, against 0.9448 with GMF's values); on implicit feedback the paper's settings (no penalty, learning rate 1e-3, 4
/// negatives, batch 256) are the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NcfConfig {
    /// GMF's predictive factors (embedding width).
    pub dim: usize,
    /// The MLP tower's widths; each MLP embedding is half the first.
    pub mlp_layers: Vec<usize>,
    /// NeuMF: the weight of GMF's output layer in the pre-trained fusion.
    pub alpha: f64,
    /// NeuMF: start from GMF and MLP trained first.
    pub pretrain: bool,
    /// lambda of the L2 penalty on the embeddings and biases of each example; unset: 0.3 on
    /// ratings (MF: 0.1), 0 on implicit feedback.
    pub l2: Option<f64>,
    /// Implicit feedback: unobserved items sampled per observed pair.
    pub negatives: usize,
    /// Ratings per step.
    pub batch_size: usize,
    /// Maximum passes over the ratings.
    pub epochs: usize,
    /// Stop after this many epochs without a lower validation RMSE (0 = never).
    pub patience: usize,
    /// Adam learning rate; unset: 2e-3 on ratings (MF: 5e-3), 1e-3 on implicit feedback.
    pub learning_rate: Option<f64>,
    /// Standard deviation of the initial embeddings and biases.
    pub init_std: f64,
    /// Seed of the initialisation and the shuffles.
    pub seed: u64,
}

impl Default for NcfConfig {
    fn default() -> Self {
        Self {
            dim: 32,
            mlp_layers: vec![64, 32, 16, 8],
            alpha: 0.5,
            pretrain: true,
            l2: None,
            negatives: 4,
            batch_size: 256,
            epochs: 40,
            patience: 3,
            learning_rate: None,
            init_std: 0.05,
            seed: 42,
        }
    }
}

impl NcfConfig {
    /// Rejects settings that cannot train; `kind` names the section.
    pub fn validate(&self, kind: &str) -> Result<()> {
        let bad = |m: &str| Err(RankingError::InvalidConfig(format!("[rating.{kind}] {m}")));
        if self.dim == 0 || self.batch_size == 0 {
            return bad("dim and batch_size must be positive");
        }
        if self.mlp_layers.len() < 2
            || self.mlp_layers.contains(&0)
            || !self.mlp_layers[0].is_multiple_of(2)
        {
            return bad("mlp_layers needs at least two positive widths, the first even");
        }
        let lr = self.learning_rate.unwrap_or(1.0);
        let ok = lr.is_finite()
            && lr > 0.0
            && self.init_std.is_finite()
            && self.init_std > 0.0
            && self.l2.is_none_or(|l2| l2.is_finite() && l2 >= 0.0)
            && (0.0..=1.0).contains(&self.alpha);
        if !ok {
            return bad("learning_rate and init_std must be positive, l2 >= 0, alpha in [0, 1]");
        }
        Ok(())
    }

    /// lambda of `kind` on ratings (`implicit` false) or implicit feedback.
    fn l2_for(&self, kind: NcfKind, implicit: bool) -> f64 {
        self.l2.unwrap_or(match (implicit, kind) {
            (true, _) => 0.0,
            (false, NcfKind::Mf) => 0.1,
            (false, _) => 0.3,
        })
    }

    /// The learning rate of `kind` on ratings (`implicit` false) or implicit feedback.
    fn learning_rate_for(&self, kind: NcfKind, implicit: bool) -> f64 {
        self.learning_rate.unwrap_or(match (implicit, kind) {
            (true, _) => 1e-3,
            (false, NcfKind::Mf) => 5e-3,
            (false, _) => 2e-3,
        })
    }

    /// Width of each MLP embedding.
    fn mlp_dim(&self) -> usize {
        self.mlp_layers[0] / 2
    }
}

/// Implicit feedback for NCF's log loss.
#[derive(Debug, Clone, Copy)]
pub struct Implicit<'a> {
    /// Items each training user interacted with, sorted and unique (user index = position).
    pub seen: &'a [Vec<u32>],
    /// Catalogue size.
    pub num_items: usize,
    /// Held-out next interactions of training users, for choosing the epoch (HR@10).
    pub validation: &'a [ValidationCase],
}

impl Implicit<'_> {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(RankingError::InvalidConfig(m));
        for (u, items) in self.seen.iter().enumerate() {
            if items.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("user {u}: seen items are not sorted and unique"));
            }
            if items.last().is_some_and(|&i| i as usize >= self.num_items) {
                return bad(format!("user {u}: an item is outside the catalogue"));
            }
            if items.len() >= self.num_items {
                return bad(format!(
                    "user {u} has seen every item: no negatives to sample"
                ));
            }
        }
        let users = self.seen.len();
        if let Some(c) = self
            .validation
            .iter()
            .find(|c| c.user as usize >= users || c.target as usize >= self.num_items)
        {
            return bad(format!(
                "validation case of user {} is outside the training users or items",
                c.user
            ));
        }
        if self.seen.iter().all(Vec::is_empty) {
            return Err(RankingError::NoTrainingData);
        }
        Ok(())
    }
}

/// Pairs scored at once when scoring whole catalogues.
const SCORE_PAIRS: usize = 1 << 16;

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

    /// A fresh model; h of GMF starts at ones (MF).
    fn new(
        kind: NcfKind,
        config: &NcfConfig,
        num_users: usize,
        num_items: usize,
        mean: f32,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = SeededVarMap::new(varmap.clone(), config.seed).into_var_builder(&Device::Cpu);
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

    /// An untrained model for implicit feedback (the starting point of
    /// [`Ncf::fit_implicit`]; a caller may warm-start its [`Ncf::varmap`] first).
    pub fn fresh_implicit(
        kind: NcfKind,
        config: &NcfConfig,
        num_users: usize,
        num_items: usize,
    ) -> Result<Self> {
        config.validate(kind.name())?;
        Ok(Self::new(kind, config, num_users, num_items, 0.0)?.with_objective(true))
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

    /// Trains `kind` on implicit feedback with the log loss and sampled negatives (see the
    /// module doc); NeuMF with `pretrain` trains GMF and MLP the same way first.
    pub fn train_implicit(
        kind: NcfKind,
        config: &NcfConfig,
        data: &Implicit,
        mut progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        let (users, items) = (data.seen.len(), data.num_items);
        let model = if kind == NcfKind::NeuMf && config.pretrain {
            let fresh = |k| Self::fresh_implicit(k, config, users, items);
            let (gmf, _) = fresh(NcfKind::Gmf)?.fit_implicit(data, &mut progress)?;
            let (mlp, _) = fresh(NcfKind::Mlp)?.fit_implicit(data, &mut progress)?;
            Self::fuse(&gmf, &mlp, config.alpha)?
        } else {
            Self::fresh_implicit(kind, config, users, items)?
        };
        model.fit_implicit(data, progress)
    }

    /// Trains `kind` on labelled impressions with the watch-time-weighted logistic loss
    /// (Covington et al. 2016, section 4.2), the loss of recpipe's rankers: the output is a
    /// logit whose odds estimate the expected watch time; the fixed offset is the prior
    /// log-odds of the weighted labels, and the epoch is chosen by the weighted log loss on
    /// `valid` (none when it is empty). NeuMF with `pretrain` trains GMF and MLP the same way
    /// first. Learning rate and lambda default as on implicit feedback.
    pub fn train_labelled(
        kind: NcfKind,
        config: &NcfConfig,
        num_users: usize,
        num_items: usize,
        train: &LabelledPairs,
        valid: &LabelledPairs,
        mut progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        config.validate(kind.name())?;
        train.validate(num_users, num_items)?;
        valid.validate(num_users, num_items)?;
        if train.is_empty() {
            return Err(RankingError::NoTrainingData);
        }
        let (mut positive, mut negative) = (0f64, 0f64);
        for (&y, &w) in train.labels.iter().zip(&train.weights) {
            *(if y > 0.5 {
                &mut positive
            } else {
                &mut negative
            }) += f64::from(w);
        }
        let prior = if positive > 0.0 && negative > 0.0 {
            (positive / negative).ln() as f32
        } else {
            0.0
        };
        let fresh = |k| -> Result<Self> {
            Ok(Self::new(k, config, num_users, num_items, prior)?.with_objective(true))
        };
        let data = train::Data::Labelled(train, valid);
        let model = if kind == NcfKind::NeuMf && config.pretrain {
            let (gmf, _) = train::fit(fresh(NcfKind::Gmf)?, data, &mut progress)?;
            let (mlp, _) = train::fit(fresh(NcfKind::Mlp)?, data, &mut progress)?;
            Self::fuse(&gmf, &mlp, config.alpha)?
        } else {
            fresh(kind)?
        };
        train::fit(model, data, progress)
    }

    /// The fixed offset added to every output: mu on ratings, the prior log-odds on labelled
    /// impressions, 0 on implicit feedback.
    pub fn offset(&self) -> f32 {
        self.mean
    }

    /// Trains this model further on implicit feedback from its current weights.
    pub fn fit_implicit(
        self,
        data: &Implicit,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        data.validate()?;
        if data.seen.len() != self.users.rows() || data.num_items != self.items.rows() {
            return Err(RankingError::InvalidConfig(
                "implicit data and model differ in users or items".into(),
            ));
        }
        train::fit(
            self.with_objective(true),
            train::Data::Implicit(data),
            progress,
        )
    }

    /// Logits (implicit feedback) or ratings of every item for each of `users`
    /// (`users.len() x items`, row-major).
    pub fn score_catalogue(&self, users: &[u32]) -> Result<Vec<f32>> {
        let n = self.items.rows();
        let per_chunk = (SCORE_PAIRS / n.max(1)).max(1);
        let mut out = Vec::with_capacity(users.len() * n);
        let all: Vec<u32> = (0..n as u32).collect();
        for chunk in users.chunks(per_chunk) {
            let us: Vec<u32> = chunk
                .iter()
                .flat_map(|&u| std::iter::repeat_n(u, n))
                .collect();
            let is: Vec<u32> = chunk.iter().flat_map(|_| all.iter().copied()).collect();
            out.extend(self.predict(&us, &is)?);
        }
        Ok(out)
    }

    /// Full-catalogue HR@10 over held-out cases (EVAL.md section 1's rank rule).
    pub fn hit_rate_at_10(&self, cases: &[ValidationCase]) -> Result<Option<f64>> {
        if cases.is_empty() {
            return Ok(None);
        }
        let n = self.items.rows();
        let mut metrics = nn::RankMetrics::new(&[10]);
        let per_chunk = (SCORE_PAIRS / n.max(1)).max(1);
        for chunk in cases.chunks(per_chunk) {
            let users: Vec<u32> = chunk.iter().map(|c| c.user).collect();
            let scores = self.score_catalogue(&users)?;
            for (c, s) in chunk.iter().zip(scores.chunks(n)) {
                metrics.add(nn::target_rank(s, c.target, &c.exclude));
            }
        }
        Ok(Some(metrics.hit_rate(0)))
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
        for (u, i) in users.chunks(4096).zip(items.chunks(4096)) {
            let p = self.users.gather(u)?;
            let q = self.items.gather(i)?;
            out.extend(
                self.forward(p.as_tensor(), q.as_tensor())?
                    .to_vec1::<f32>()?,
            );
        }
        Ok(out)
    }
}

mod train;

#[cfg(test)]
mod tests;
