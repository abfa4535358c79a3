//! The ranker interface: a model that scores (user, candidate, context) examples. Trained with
//! the watch-time-weighted logistic loss (Covington et al. 2016, section 4.2), its odds e^logit
//! estimate the expected watch time of an impression; with unit weights, the odds of a watch.

use std::path::Path;

use crate::error::NnError;

/// A trained ranker over examples of type `Example` (the ranking crate's feature rows).
pub trait Ranker: Send + Sync {
    /// What one scored row is.
    type Example;
    /// The model crate's error type.
    type Error: From<NnError> + std::error::Error + Send + Sync + 'static;

    /// The registry name of the model (`youtube`, `deepfm`, ...).
    fn kind(&self) -> &'static str;
    /// The logit of each example.
    fn logits(&self, examples: &[Self::Example]) -> Result<Vec<f32>, Self::Error>;
    /// Writes the model's files into `dir` (created if missing).
    fn save(&self, dir: &Path) -> Result<(), Self::Error>;
    /// The configuration as JSON (recorded in a version's manifest).
    fn config_json(&self) -> serde_json::Value;

    /// The serving score of each example: e^logit (the expected watch time in seconds for a
    /// ranker trained with watch-time weights).
    fn score(&self, examples: &[Self::Example]) -> Result<Vec<f32>, Self::Error> {
        let mut scores = self.logits(examples)?;
        scores.iter_mut().for_each(|s| *s = s.exp());
        Ok(scores)
    }
}
