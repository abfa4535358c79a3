//! The candidate-generator interface: any model that turns a user's history into a vector u and
//! gives every item a vector v_j and a bias b_j, so that score = u . v_j + b_j and an
//! inner-product index serves it.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use rayon::prelude::*;

use crate::data::{Catalog, UserFeatures, UserQuery, ValidationCase};
use crate::error::{invalid, NnError};
use crate::layers::with_bias_column;
use crate::metrics::{target_rank, RankMetrics};

/// Scores held at once when scoring the whole catalogue (16M floats = 64 MiB).
const CHUNK_SCORES: usize = 1 << 24;
/// Most users per chunk when scoring.
const CHUNK_USERS: usize = 256;

/// A trained candidate generator (see the module doc).
pub trait Retriever: Send + Sync {
    /// The model crate's error type.
    type Error: From<NnError> + std::error::Error + Send + Sync + 'static;

    /// The registry name of the model (`youtube_dnn`, `mf`, ...).
    fn kind(&self) -> &'static str;
    /// Dimension d of user and item vectors.
    fn dim(&self) -> usize;
    /// Number of items in the catalogue.
    fn num_items(&self) -> usize;
    /// User vectors (`queries.len() x dim`, row-major) for any histories, also of new users.
    fn user_vectors(&self, queries: &[UserQuery]) -> Result<Vec<f32>, Self::Error>;
    /// The item table `[v_j, b_j]`: `num_items x (dim + 1)`, the bias in the last column.
    fn item_table(&self) -> &Tensor;
    /// Writes the model's files into `dir` (created if missing).
    fn save(&self, dir: &Path) -> Result<(), Self::Error>;
    /// Every weight by name (to warm-start a new model of the same kind).
    fn weights(&self) -> Result<HashMap<String, Tensor>, Self::Error>;
    /// The configuration as JSON (recorded in a version's manifest).
    fn config_json(&self) -> serde_json::Value;

    /// Appends items the model was not trained on, each embedded from its features alone
    /// (`items` describes the new items only, with the training vocabulary of tokens); their
    /// indices follow the current ones, and [`Retriever::item_table`] grows by their rows.
    /// Only models whose item vectors are computed from item features can: the default is an
    /// error saying so.
    fn add_items(&mut self, items: &Catalog) -> Result<(), Self::Error> {
        let _ = items;
        Err(invalid(format!(
            "the '{}' model learns each item's vector from its watches, so it cannot embed an \
             item it was not trained on; train a model with an item tower (two_tower)",
            self.kind()
        ))
        .into())
    }

    /// Item vectors (`num_items x dim`, row-major) and item biases: score = u . v_j + b_j.
    fn item_vectors(&self) -> Result<(Vec<f32>, Vec<f32>), Self::Error> {
        let d = self.dim();
        let table = self.item_table();
        let split = || -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
            let v = table.narrow(1, 0, d)?.flatten_all()?.to_vec1::<f32>()?;
            let b = table.narrow(1, d, 1)?.flatten_all()?.to_vec1::<f32>()?;
            Ok((v, b))
        };
        Ok(split().map_err(NnError::from)?)
    }

    /// Exact full-catalogue scores for given user vectors (`rows x dim`, row-major): one
    /// matmul of `[u, 1]` with the item table.
    fn score_vectors(&self, user_vectors: &[f32]) -> Result<Vec<f32>, Self::Error> {
        let d = self.dim();
        if d == 0 || !user_vectors.len().is_multiple_of(d) {
            return Err(invalid("user vectors are not a multiple of dim long").into());
        }
        let table = self.item_table();
        let score = || -> crate::Result<Vec<f32>> {
            let u = Tensor::from_slice(user_vectors, (user_vectors.len() / d, d), table.device())?;
            let u = with_bias_column(&u)?;
            Ok(u.matmul(&table.t()?)?.flatten_all()?.to_vec1::<f32>()?)
        };
        Ok(score()?)
    }

    /// Exact full-catalogue scores (`queries.len() x num_items`, row-major).
    fn score_all(&self, queries: &[UserQuery]) -> Result<Vec<f32>, Self::Error> {
        let u = self.user_vectors(queries)?;
        self.score_vectors(&u)
    }

    /// HR@10 over the validation cases (exact scores), the figure every retriever chooses its
    /// epoch by; `None` when there are no cases.
    fn validation_hit_rate(
        &self,
        cases: &[ValidationCase],
        features: Option<&UserFeatures>,
    ) -> Result<Option<f64>, Self::Error> {
        if cases.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.evaluate(cases, features, &[10])?.hit_rate(0)))
    }

    /// HR and NDCG at `cutoffs` over held-out cases (exact scores, EVAL.md section 1).
    fn evaluate(
        &self,
        cases: &[ValidationCase],
        features: Option<&UserFeatures>,
        cutoffs: &[usize],
    ) -> Result<RankMetrics, Self::Error> {
        let mut metrics = RankMetrics::new(cutoffs);
        let n = self.num_items().max(1);
        let chunk = (CHUNK_SCORES / n).clamp(1, CHUNK_USERS);
        for cases in cases.chunks(chunk) {
            let queries: Vec<UserQuery> = cases.iter().map(|c| c.query(features)).collect();
            let scores = self.score_all(&queries)?;
            let ranks: Vec<usize> = scores
                .par_chunks(n)
                .zip(cases.par_iter())
                .map(|(s, c)| target_rank(s, c.target, &c.exclude))
                .collect();
            ranks.into_iter().for_each(|r| metrics.add(r));
        }
        Ok(metrics)
    }
}
