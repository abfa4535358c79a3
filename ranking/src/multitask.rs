//! The multi-task ranker, `[ranking] model = "multitask"`: one network predicts several signals
//! of an impression at once and serves a configured combination of them.
//!
//! Over the shared input x_0 (`ranking/src/model.rs`), either
//!
//! - a shared bottom (Caruana 1997, "Multitask Learning", Machine Learning 28): `h = f(x_0)`, a
//!   ReLU MLP (`bottom`), read by every task, `y_t = tower_t(h)`; or
//! - MMoE (Ma, Zhao, Yi, Chen, Hong and Chi, "Modeling Task Relationships in Multi-task
//!   Learning with Multi-gate Mixture-of-Experts", KDD 2018, eq. 5-6), `experts` = n > 0:
//!   `y_t = tower_t(sum_i g_t(x_0)_i f_i(x_0))` with `g_t(x) = softmax(W_gt x)` one gate per
//!   task over the n ReLU experts `f_i` (`expert_hidden`).
//!
//! Each `tower_t` is a small ReLU MLP (`tower`) with one logit. The tasks: `watch` (always: the
//! watch-time-weighted logistic loss of Covington et al. 2016 section 4.2, e^logit = expected
//! watch time, or unit weights), then one logistic head per label column the data has
//! ([`crate::RankerSettings::labels`]; KuaiRand: `long_view`, `is_like`, `is_follow`). A label
//! column the data lacks has no head; a column that is present gets its head even when
//! constant (it then learns the rate). The training objective is
//! `L = sum_t lambda_t L_t` (`loss_weights`, 1 for an unlisted task): `L_watch = sum w l / sum
//! w` as for the single-task rankers, `L_t` the mean log loss of label t. A task with
//! lambda_t = 0 is left out of L; every known task's tower (and gate) is built and initialised
//! whatever the data holds, in a fixed order, so that the shared parameters of a run with a
//! zero-weight head follow exactly those of the run without the head. Early stopping reads the
//! same weighted sum on the validation slice.
//!
//! The serving logit is `sum_t s_t y_t` over `serving` (default `{ watch = 1.0 }`: e^logit =
//! the watch head's expected watch time); terms naming a task the data lacks are dropped, and
//! none left means the watch head. Each task's logit is reported by
//! [`crate::RankingModel::task_logits`].

use std::collections::BTreeMap;

use candle_core::{Tensor, D};
use candle_nn::{Linear, Module, VarBuilder};
use nn::layers::Tower;
use nn::loss::{logistic_loss, weighted_bce_sum};
use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};
use crate::example::{FeatureSchema, RankingExample};
use crate::feature_ranker::{CrossHead, TrainingKeys};
use crate::model::{tower_fill, Fill, InputDims, LogitHead};
use crate::train::{log_loss_of, FitSettings};

/// Registry name of the multi-task ranker.
pub const KIND: &str = "multitask";

/// The watch task (always present).
pub const WATCH: &str = "watch";

/// The label columns a head can be trained on, in the order their heads are built.
pub const LABELS: &[&str] = &["long_view", "is_like", "is_follow"];

/// Section name in error messages.
const SECTION: &str = "ranking.multitask";

/// The multi-task ranker's settings (`[ranking.multitask]`). Every key has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MultitaskConfig {
    /// Width of the item embedding (candidate and recent watches).
    pub item_dim: usize,
    /// Width of the token embedding.
    pub token_dim: usize,
    /// Width of each user categorical field's embedding.
    pub user_dim: usize,
    /// Widths of the shared bottom's ReLU layers (used when `experts` = 0; empty: the towers
    /// read x_0).
    pub bottom: Vec<usize>,
    /// Number of MMoE experts (0: the shared bottom).
    pub experts: usize,
    /// Widths of each expert's ReLU layers (MMoE).
    pub expert_hidden: Vec<usize>,
    /// Widths of each task tower's ReLU layers (then one logit).
    pub tower: Vec<usize>,
    /// lambda_t of each task (`watch` or a label column); an unlisted task weighs 1.
    pub loss_weights: BTreeMap<String, f64>,
    /// The serving logit's weight s_t of each task's logit.
    pub serving: BTreeMap<String, f64>,
    /// The label columns trained on, in [`RankingExample::labels`] order: written at training
    /// from the data ([`crate::RankerSettings::labels`]); a value in a config file is replaced.
    pub labels: Vec<String>,
    /// Quantile intervals fitted per continuous feature.
    pub n_quantiles: usize,
    /// Maximum passes over the training examples.
    pub epochs: usize,
    /// Examples per gradient step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Stop after this many epochs without a better validation loss (0 = never stop early).
    pub patience: usize,
    /// Seed of the initial weights and of the shuffles.
    pub seed: u64,
}

impl Default for MultitaskConfig {
    fn default() -> Self {
        Self {
            item_dim: 32,
            token_dim: 16,
            user_dim: 4,
            bottom: vec![256, 128],
            experts: 0,
            expert_hidden: vec![128],
            tower: vec![64],
            loss_weights: BTreeMap::new(),
            serving: BTreeMap::from([(WATCH.to_string(), 1.0)]),
            labels: Vec::new(),
            n_quantiles: 256,
            epochs: 20,
            batch_size: 512,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            patience: 2,
            seed: 42,
        }
    }
}

fn known(task: &str) -> bool {
    task == WATCH || LABELS.contains(&task)
}

impl MultitaskConfig {
    /// Rejects settings that cannot train; the error names `[ranking.multitask]` and the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| {
            Err(RankingError::InvalidConfig(format!(
                "[{SECTION}] {key} {why}"
            )))
        };
        let names = format!("{WATCH}, {}", LABELS.join(", "));
        for (key, map) in [
            ("loss_weights", &self.loss_weights),
            ("serving", &self.serving),
        ] {
            for (task, &w) in map {
                if !known(task) {
                    return bad(key, format!("names unknown task '{task}' (known: {names})"));
                }
                if !w.is_finite() || (key == "loss_weights" && w < 0.0) {
                    return bad(key, format!("{task} = {w} is not a valid weight"));
                }
            }
        }
        for (i, label) in self.labels.iter().enumerate() {
            if label == WATCH || !known(label) || self.labels[..i].contains(label) {
                return bad(
                    "labels",
                    format!("'{label}' is not a known, distinct label"),
                );
            }
        }
        if self.experts > 0 && (self.expert_hidden.is_empty() || self.expert_hidden.contains(&0)) {
            return bad(
                "expert_hidden",
                "must be positive widths with experts".into(),
            );
        }
        if self.bottom.contains(&0) {
            return bad("bottom", "widths must be positive".into());
        }
        TrainingKeys {
            section: SECTION,
            hidden: &self.tower,
            n_quantiles: self.n_quantiles,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
        }
        .validate()
    }

    /// The tasks of a model trained with these settings: the watch, then the labels.
    pub fn tasks(&self) -> Vec<String> {
        std::iter::once(WATCH.to_string())
            .chain(self.labels.iter().cloned())
            .collect()
    }

    /// lambda_t of `task`.
    pub fn loss_weight(&self, task: &str) -> f64 {
        self.loss_weights.get(task).copied().unwrap_or(1.0)
    }
}

/// Checks that every example carries one 0/1 value per label column (`labels`).
pub(crate) fn check_labels(labels: &[String], examples: &[RankingExample]) -> Result<()> {
    for (index, example) in examples.iter().enumerate() {
        let reason = if example.labels.len() != labels.len() {
            format!(
                "{} label values, the ranker trains on {} ({})",
                example.labels.len(),
                labels.len(),
                labels.join(", ")
            )
        } else if let Some((k, v)) = example
            .labels
            .iter()
            .enumerate()
            .find(|(_, &v)| v != 0.0 && v != 1.0)
        {
            format!("label {} = {v}, expected 0 or 1", labels[k])
        } else {
            continue;
        };
        return Err(RankingError::InvalidExample { index, reason });
    }
    Ok(())
}

/// ReLU layers.
struct Mlp(Vec<Linear>);

impl Mlp {
    fn new(vb: VarBuilder, input: usize, widths: &[usize]) -> Result<(Self, usize)> {
        let mut layers = Vec::with_capacity(widths.len());
        let mut width = input;
        for (i, &w) in widths.iter().enumerate() {
            layers.push(candle_nn::linear(width, w, vb.pp(format!("layer{i}")))?);
            width = w;
        }
        Ok((Self(layers), width))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in &self.0 {
            x = layer.forward(&x)?.relu()?;
        }
        Ok(x)
    }
}

/// The multi-task head over x_0.
pub(crate) struct MultitaskHead {
    /// `watch`, then the label columns.
    tasks: Vec<String>,
    /// The shared bottom (one) or the experts.
    experts: Vec<Mlp>,
    /// One gate per task (MMoE), empty for the shared bottom.
    gates: Vec<Linear>,
    /// One tower per task.
    towers: Vec<Tower>,
    /// lambda_t per task.
    loss_weights: Vec<f64>,
    /// (task, s_t) of the serving logit.
    serving: Vec<(usize, f64)>,
}

impl MultitaskHead {
    /// The input of each task's tower.
    fn tower_inputs(&self, x0: &Tensor) -> Result<Vec<Tensor>> {
        let outputs = self
            .experts
            .iter()
            .map(|e| e.forward(x0))
            .collect::<Result<Vec<_>>>()?;
        if self.gates.is_empty() {
            return Ok(vec![outputs[0].clone(); self.tasks.len()]);
        }
        let stacked = Tensor::stack(&outputs, 1)?; // [batch, n, d]
        self.gates
            .iter()
            .map(|gate| {
                let g = candle_nn::ops::softmax(&gate.forward(x0)?, D::Minus1)?; // [batch, n]
                Ok(stacked.broadcast_mul(&g.unsqueeze(2)?)?.sum(1)?)
            })
            .collect()
    }
}

impl LogitHead for MultitaskHead {
    fn logits(&self, x0: &Tensor) -> Result<Tensor> {
        let logits = self.task_logits(x0)?;
        let mut serving: Option<Tensor> = None;
        for &(t, s) in &self.serving {
            let term = if s == 1.0 {
                logits[t].clone()
            } else {
                logits[t].affine(s, 0.0)?
            };
            serving = Some(match serving {
                None => term,
                Some(sum) => (sum + term)?,
            });
        }
        serving.ok_or_else(|| RankingError::InvalidConfig("no serving task".into()))
    }

    fn objective(
        &self,
        x0: &Tensor,
        labels: &Tensor,
        weights: &Tensor,
        scale: f64,
        rows: &[&RankingExample],
    ) -> Result<(Tensor, f64)> {
        let logits = self.task_logits(x0)?;
        let watch = weighted_bce_sum(&logits[0], labels, weights)?;
        let mut objective: Option<Tensor> = None;
        let mut add = |term: Tensor| -> Result<()> {
            objective = Some(match objective.take() {
                None => term,
                Some(sum) => (sum + term)?,
            });
            Ok(())
        };
        if self.loss_weights[0] > 0.0 {
            add(watch.affine(scale * self.loss_weights[0], 0.0)?)?;
        }
        let n = rows.len().max(1) as f64;
        let ones = Tensor::ones(rows.len(), candle_core::DType::F32, x0.device())?;
        // Label task t reads the label column t - 1.
        for (t, (logits, &lambda)) in logits.iter().zip(&self.loss_weights).enumerate().skip(1) {
            if lambda <= 0.0 {
                continue;
            }
            let y: Vec<f32> = rows.iter().map(|e| e.labels[t - 1]).collect();
            let y = Tensor::from_vec(y, rows.len(), x0.device())?;
            add(weighted_bce_sum(logits, &y, &ones)?.affine(lambda / n, 0.0)?)?;
        }
        let objective =
            objective.ok_or_else(|| RankingError::InvalidConfig("no task to train".into()))?;
        Ok((objective, f64::from(watch.to_scalar::<f32>()?)))
    }
}

impl CrossHead for MultitaskHead {
    type Config = MultitaskConfig;
    const KIND: &'static str = KIND;

    fn validate(config: &MultitaskConfig) -> Result<()> {
        config.validate()
    }

    fn fit_settings(c: &MultitaskConfig, unit_weights: bool) -> FitSettings {
        FitSettings {
            dims: InputDims {
                item: c.item_dim,
                token: c.token_dim,
                user: c.user_dim,
            },
            n_quantiles: c.n_quantiles,
            epochs: c.epochs,
            batch_size: c.batch_size,
            learning_rate: c.learning_rate,
            weight_decay: c.weight_decay,
            patience: c.patience,
            seed: c.seed,
            unit_weights,
        }
    }

    fn build(
        vb: VarBuilder,
        _schema: &FeatureSchema,
        config: &MultitaskConfig,
        width: usize,
    ) -> Result<Self> {
        let tasks = config.tasks();
        let (experts, out) = if config.experts == 0 {
            let (bottom, out) = Mlp::new(vb.pp("bottom"), width, &config.bottom)?;
            (vec![bottom], out)
        } else {
            let mut experts = Vec::with_capacity(config.experts);
            let mut out = width;
            for e in 0..config.experts {
                let (expert, o) =
                    Mlp::new(vb.pp(format!("experts.{e}")), width, &config.expert_hidden)?;
                experts.push(expert);
                out = o;
            }
            (experts, out)
        };
        // Every known task's gate and tower, whether the data has its label or not: the
        // initial draws then do not depend on the data's label columns.
        let mut heads = Vec::new();
        for task in std::iter::once(WATCH).chain(LABELS.iter().copied()) {
            let gate = if config.experts > 0 {
                let vb = vb.pp(format!("gates.{task}"));
                Some(candle_nn::linear(width, config.experts, vb)?)
            } else {
                None
            };
            let tower = Tower::new(vb.pp(format!("towers.{task}")), out, &config.tower, 1)?;
            heads.push((task, gate, tower));
        }
        // Those of the data's tasks, in the order of `tasks` (the watch, then its labels).
        let (mut gates, mut towers) = (Vec::new(), Vec::new());
        for task in &tasks {
            if let Some((_, gate, tower)) = heads.iter().find(|(name, _, _)| name == task) {
                gates.extend(gate.clone());
                towers.push(tower.clone());
            }
        }
        let loss_weights: Vec<f64> = tasks.iter().map(|t| config.loss_weight(t)).collect();
        if loss_weights.iter().all(|&w| w <= 0.0) {
            return Err(RankingError::InvalidConfig(format!(
                "[{SECTION}] loss_weights: every task of this data ({}) weighs 0",
                tasks.join(", ")
            )));
        }
        let mut serving: Vec<(usize, f64)> = tasks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| config.serving.get(t).map(|&s| (i, s)))
            .collect();
        if serving.is_empty() {
            serving.push((0, 1.0));
        }
        Ok(Self {
            tasks,
            experts,
            gates,
            towers,
            loss_weights,
            serving,
        })
    }

    fn fill(name: &str, dims: &[usize], prior: f32) -> Fill {
        let fan_in = dims.last().copied().unwrap_or(1).max(1) as f64;
        if name.starts_with("towers.") {
            if name.ends_with("output.bias") {
                // The watch head starts at the prior log-odds, a label head at 0.
                let watch = name == format!("towers.{WATCH}.output.bias");
                Fill::Const(if watch { prior } else { 0.0 })
            } else {
                tower_fill(name, dims, prior)
            }
        } else if name.ends_with("bias") {
            Fill::Const(0.0)
        } else if name.starts_with("gates.") {
            Fill::Uniform(fan_in.recip().sqrt())
        } else {
            Fill::Uniform((6.0 / fan_in).sqrt())
        }
    }

    fn task_names(&self) -> Vec<String> {
        self.tasks.clone()
    }

    fn task_logits(&self, x0: &Tensor) -> Result<Vec<Tensor>> {
        self.tower_inputs(x0)?
            .iter()
            .zip(&self.towers)
            .map(|(h, tower)| Ok(tower.forward(h)?.squeeze(1)?))
            .collect()
    }

    fn selection_loss(
        &self,
        examples: &[RankingExample],
        task_logits: &[Vec<f32>],
        unit_weights: bool,
    ) -> f64 {
        let mut loss = 0.0;
        if self.loss_weights[0] > 0.0 {
            loss += self.loss_weights[0] * log_loss_of(examples, &task_logits[0], unit_weights);
        }
        let tasks = task_logits.iter().zip(&self.loss_weights).enumerate();
        for (t, (logits, &lambda)) in tasks.skip(1) {
            if lambda <= 0.0 {
                continue;
            }
            let sum: f64 = examples
                .iter()
                .zip(logits)
                .map(|(e, &z)| {
                    let y = e.labels.get(t - 1).copied().unwrap_or(0.0);
                    logistic_loss(f64::from(z), f64::from(y))
                })
                .sum();
            loss += lambda * sum / examples.len().max(1) as f64;
        }
        loss
    }
}

#[cfg(test)]
#[path = "multitask_tests.rs"]
mod tests;
