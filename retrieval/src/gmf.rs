//! GMF as a candidate generator: the generalised matrix factorisation of He, Liao, Zhang, Nie,
//! Hu and Chua, "Neural Collaborative Filtering" (WWW 2017), section 3.2, eq. 9, trained on
//! implicit feedback as the paper trains it (eq. 7: log loss over each observed pair and 4
//! items the user never interacted with, drawn uniformly; see [`ranking::ncf`], which holds the
//! one implementation of GMF, MLP and NeuMF).
//!
//! Its logit `b_u + b_i + h^T (p_u . q_i)` is a dot product, so the index serves it exactly:
//! `u = h . p_u` (element-wise), `v_i = q_i`, bias `b_i`; the user-only `b_u` does not change a
//! user's ranking and is dropped. Users the model did not train on get a folded-in vector
//! ([`crate::fold_in`], fitted to the trained users' `h . p_u`).
//!
//! MLP and NeuMF score pairs through a network and have no such form: they are trained and
//! measured with `recpipe evaluate --protocol ncf --model neumf`, never served by the index.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use nn::bag::with_f32_data;
use nn::{EpochReport, Retriever, TrainReport, TrainingSet, UserQuery};
use ranking::ncf::{Implicit, Ncf, NcfConfig, NcfKind};
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result, RetrievalError};
use crate::files;
use crate::fold_in;
use crate::warm::WarmStart;

/// Registry name.
pub const KIND: &str = "gmf";
/// Name of the fold-in map among the saved weights.
const FOLD_IN: &str = "fold_in.weight";
/// Ridge penalty of the fold-in (relative to the mean diagonal of X^T X), as MF's default.
const FOLD_IN_L2: f64 = 1e-2;

/// What `retrieval.json` holds besides format and kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    config: NcfConfig,
    num_users: usize,
    num_items: usize,
}

/// A trained GMF retriever.
pub struct Gmf {
    model: Ncf,
    /// `h . p_u` of every training user (`users x d`, row-major).
    trained: Vec<f32>,
    /// `(d + 1) x d` fold-in map, row-major.
    fold_in: Vec<f32>,
}

/// Each training user's items, sorted and unique, and the validation cases: NCF's implicit
/// feedback from a training set.
pub fn implicit_data(data: &TrainingSet) -> Vec<Vec<u32>> {
    (0..data.histories.num_users())
        .map(|u| {
            let mut items = data.histories.user_items(u).to_vec();
            items.sort_unstable();
            items.dedup();
            items
        })
        .collect()
}

/// Trains an NCF model of `kind` on `data`'s interactions (from `warm`'s rows when given).
pub fn train_ncf(
    kind: NcfKind,
    config: &NcfConfig,
    data: &TrainingSet,
    warm: Option<&WarmStart>,
    progress: impl FnMut(&EpochReport),
) -> Result<(Ncf, TrainReport)> {
    data.validate()?;
    let seen = implicit_data(data);
    let implicit = Implicit {
        seen: &seen,
        num_items: data.catalog.num_items,
        validation: data.validation,
    };
    let ncf_err = |e: ranking::RankingError| RetrievalError::InvalidConfig(e.to_string());
    match warm {
        Some(w) => {
            let model = Ncf::fresh_implicit(kind, config, seen.len(), implicit.num_items)
                .map_err(ncf_err)?;
            nn::vars::warm_start(model.varmap(), &w.weights, |name| match name {
                n if n.starts_with("items.") => Some(w.items.as_slice()),
                n if n.starts_with("users.") => Some(w.users.as_slice()),
                _ => None,
            })?;
            model.fit_implicit(&implicit, progress).map_err(ncf_err)
        }
        None => Ncf::train_implicit(kind, config, &implicit, progress).map_err(ncf_err),
    }
}

impl Gmf {
    /// Trains GMF on `data` (early stopping on validation HR@10), then fits the fold-in map.
    pub fn train(
        config: &NcfConfig,
        data: &TrainingSet,
        warm: Option<&WarmStart>,
        progress: impl FnMut(&EpochReport),
    ) -> Result<(Self, TrainReport)> {
        let (model, report) = train_ncf(NcfKind::Gmf, config, data, warm, progress)?;
        let trained = trained_user_vectors(&model)?;
        let d = model.config().dim;
        let fold_in = with_f32_data(model.items().var().as_tensor(), |items| {
            fold_in::fit(items, d + 1, d, data.histories, &trained, FOLD_IN_L2)
        })??;
        Ok((
            Self {
                model,
                trained,
                fold_in,
            },
            report,
        ))
    }

    /// The GMF network itself (its logits are the pair scores the index reproduces).
    pub fn network(&self) -> &Ncf {
        &self.model
    }

    /// Reads a model written by [`Retriever::save`].
    pub fn load(dir: &Path) -> Result<Self> {
        let saved: Saved = files::load_meta(dir)?;
        let mut weights = files::load_tensors(dir)?;
        let fold = weights
            .remove(FOLD_IN)
            .ok_or_else(|| RetrievalError::InvalidModel(format!("no '{FOLD_IN}' weights")))?;
        let model = Ncf::from_weights(
            NcfKind::Gmf,
            &saved.config,
            saved.num_users,
            saved.num_items,
            0.0,
            true,
            &weights,
        )
        .map_err(|e| RetrievalError::InvalidModel(e.to_string()))?;
        let d = saved.config.dim;
        let fold_in = fold.flatten_all()?.to_vec1::<f32>()?;
        if fold_in.len() != (d + 1) * d {
            return Err(RetrievalError::InvalidModel(format!(
                "'{FOLD_IN}' is not {} x {d}",
                d + 1
            )));
        }
        let trained = trained_user_vectors(&model)?;
        Ok(Self {
            model,
            trained,
            fold_in,
        })
    }
}

/// `h . p_u` of every training user of a GMF model (`users x d`, row-major).
fn trained_user_vectors(model: &Ncf) -> Result<Vec<f32>> {
    let d = model.config().dim;
    let h = model
        .gmf_output()
        .map_err(|e| RetrievalError::InvalidModel(e.to_string()))?
        .ok_or_else(|| RetrievalError::InvalidModel("GMF without output weights".into()))?;
    let users = model.users();
    let out = with_f32_data(users.var().as_tensor(), |p| {
        p.chunks(users.width())
            .flat_map(|row| row[..d].iter().zip(&h).map(|(a, b)| a * b))
            .collect::<Vec<f32>>()
    })?;
    Ok(out)
}

impl Retriever for Gmf {
    type Error = RetrievalError;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn dim(&self) -> usize {
        self.model.config().dim
    }

    fn num_items(&self) -> usize {
        self.model.items().rows()
    }

    /// `h . p_u` for a training user the query names; otherwise the fold-in of the history.
    fn user_vectors(&self, queries: &[UserQuery]) -> Result<Vec<f32>> {
        let (d, n) = (self.dim(), self.num_items());
        for q in queries {
            if let Some(bad) = q.history.iter().find(|&&i| i as usize >= n) {
                return Err(invalid(format!(
                    "history item {bad} is outside the catalogue"
                )));
            }
        }
        let known = self.model.users().rows();
        let trained = &self.trained;
        let out = with_f32_data(self.item_table(), |items| {
            let mut out = Vec::with_capacity(queries.len() * d);
            for q in queries {
                match q.user.filter(|&u| (u as usize) < known) {
                    Some(u) => {
                        out.extend_from_slice(&trained[u as usize * d..(u as usize + 1) * d])
                    }
                    None => fold_in::apply(&self.fold_in, items, d + 1, d, q.history, &mut out),
                }
            }
            out
        })?;
        Ok(out)
    }

    fn item_table(&self) -> &Tensor {
        self.model.items().var().as_tensor()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let saved = Saved {
            config: self.model.config().clone(),
            num_users: self.model.users().rows(),
            num_items: self.num_items(),
        };
        files::save(dir, KIND, &saved, &self.weights()?)
    }

    fn weights(&self) -> Result<HashMap<String, Tensor>> {
        let mut w = self
            .model
            .weights()
            .map_err(|e| RetrievalError::InvalidModel(e.to_string()))?;
        let d = self.dim();
        w.insert(
            FOLD_IN.to_string(),
            Tensor::from_slice(&self.fold_in, (d + 1, d), &Device::Cpu)?,
        );
        Ok(w)
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(self.model.config()).unwrap_or_default()
    }
}
