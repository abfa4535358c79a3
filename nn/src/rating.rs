//! The rating-model interface: predicts the rating a user gives an item (EVAL.md section 4),
//! and the rating triples such models train on.

use crate::error::{invalid, NnError, Result};

/// Observed ratings as (user, item, rating) triples over dense indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ratings {
    /// User index of each rating.
    pub users: Vec<u32>,
    /// Item index of each rating.
    pub items: Vec<u32>,
    /// The ratings.
    pub values: Vec<f32>,
}

impl Ratings {
    /// Number of ratings.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Mean rating (0 when empty).
    pub fn mean(&self) -> f64 {
        let n = self.values.len().max(1) as f64;
        self.values.iter().map(|&r| f64::from(r)).sum::<f64>() / n
    }

    /// Checks lengths, finiteness and that indices are below `num_users` / `num_items`.
    pub fn validate(&self, num_users: usize, num_items: usize) -> Result<()> {
        if self.users.len() != self.values.len() || self.items.len() != self.values.len() {
            return Err(invalid("ratings: users, items and values differ in length"));
        }
        if self.users.iter().any(|&u| u as usize >= num_users)
            || self.items.iter().any(|&i| i as usize >= num_items)
        {
            return Err(invalid("ratings: an index is outside the users or items"));
        }
        if self.values.iter().any(|r| !r.is_finite()) {
            return Err(invalid("ratings: a rating is not finite"));
        }
        Ok(())
    }
}

/// Side features a rating model may read beside the ids: each user's and each item's tokens
/// (user categorical values such as gender or occupation, item categories such as genres), as
/// indices into one user-token and one item-token vocabulary. A user or item without any has an
/// empty list.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SideFeatures {
    /// Tokens of user `u` at position `u` (one list per training user).
    pub user_tokens: Vec<Vec<u32>>,
    /// Size of the user-token vocabulary.
    pub user_vocab: usize,
    /// Tokens of item `i` at position `i` (one list per training item).
    pub item_tokens: Vec<Vec<u32>>,
    /// Size of the item-token vocabulary.
    pub item_vocab: usize,
}

impl SideFeatures {
    /// Checks there is one list per user and per item and every token is inside its vocabulary.
    pub fn validate(&self, num_users: usize, num_items: usize) -> Result<()> {
        if self.user_tokens.len() != num_users || self.item_tokens.len() != num_items {
            return Err(invalid(format!(
                "side features: {} user and {} item token lists for {num_users} users and {num_items} items",
                self.user_tokens.len(),
                self.item_tokens.len()
            )));
        }
        let outside =
            |lists: &[Vec<u32>], vocab: usize| lists.iter().flatten().any(|&t| t as usize >= vocab);
        if outside(&self.user_tokens, self.user_vocab)
            || outside(&self.item_tokens, self.item_vocab)
        {
            return Err(invalid("side features: a token is outside its vocabulary"));
        }
        Ok(())
    }
}

/// Labelled (user, item) pairs with weights: a ranker's impressions for the watch-time-weighted
/// logistic loss of Covington et al. 2016, section 4.2 (label 1 = watched, weight = its watch
/// time; label 0 = shown and not watched, weight 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelledPairs {
    /// User index of each pair.
    pub users: Vec<u32>,
    /// Item index of each pair.
    pub items: Vec<u32>,
    /// 1 for a positive, 0 for a negative.
    pub labels: Vec<f32>,
    /// The weight of each pair in the loss.
    pub weights: Vec<f32>,
}

impl LabelledPairs {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Checks lengths, labels in {0, 1}, finite non-negative weights and indices below
    /// `num_users` / `num_items`.
    pub fn validate(&self, num_users: usize, num_items: usize) -> Result<()> {
        let n = self.labels.len();
        if self.users.len() != n || self.items.len() != n || self.weights.len() != n {
            return Err(invalid(
                "labelled pairs: users, items, labels and weights differ in length",
            ));
        }
        if self.users.iter().any(|&u| u as usize >= num_users)
            || self.items.iter().any(|&i| i as usize >= num_items)
        {
            return Err(invalid(
                "labelled pairs: an index is outside the users or items",
            ));
        }
        if self.labels.iter().any(|&l| l != 0.0 && l != 1.0) {
            return Err(invalid("labelled pairs: a label is not 0 or 1"));
        }
        if self.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(invalid(
                "labelled pairs: a weight is negative or not finite",
            ));
        }
        Ok(())
    }

    /// The prior log-odds `ln(sum of positive weights / sum of negative weights)` (0 when either
    /// sum is 0): the constant logit that minimises the weighted log loss, where rankers start.
    pub fn prior_log_odds(&self) -> f32 {
        let (mut positive, mut negative) = (0f64, 0f64);
        for (&y, &w) in self.labels.iter().zip(&self.weights) {
            *(if y > 0.5 {
                &mut positive
            } else {
                &mut negative
            }) += f64::from(w);
        }
        if positive > 0.0 && negative > 0.0 {
            (positive / negative).ln() as f32
        } else {
            0.0
        }
    }

    /// The weighted mean log loss of `logits` on these pairs (`sum w l / sum w`; 0 when all
    /// weights are 0): the validation figure of rankers trained on them.
    pub fn weighted_log_loss(&self, logits: &[f32]) -> f64 {
        let (mut sum, mut weight) = (0f64, 0f64);
        for ((&z, &y), &w) in logits.iter().zip(&self.labels).zip(&self.weights) {
            sum += f64::from(w) * crate::loss::logistic_loss(f64::from(z), f64::from(y));
            weight += f64::from(w);
        }
        if weight > 0.0 {
            sum / weight
        } else {
            0.0
        }
    }
}

/// Root mean squared error of `predicted` against `actual`.
pub fn rmse(predicted: &[f32], actual: &[f32]) -> f64 {
    let n = actual.len().max(1) as f64;
    let sum: f64 = predicted
        .iter()
        .zip(actual)
        .map(|(&p, &a)| (f64::from(p) - f64::from(a)).powi(2))
        .sum();
    (sum / n).sqrt()
}

/// A trained rating model.
pub trait RatingModel: Send + Sync {
    /// The model crate's error type.
    type Error: From<NnError> + std::error::Error + Send + Sync + 'static;

    /// The registry name of the model (`mf`, `autorec_i`, ...).
    fn kind(&self) -> &'static str;
    /// The predicted rating of each (user, item) pair; both must be training indices.
    fn predict(&self, users: &[u32], items: &[u32]) -> std::result::Result<Vec<f32>, Self::Error>;

    /// RMSE on the validation ratings, the figure every rating model chooses its epoch by;
    /// `None` when there are none.
    fn validation_rmse(&self, valid: &Ratings) -> std::result::Result<Option<f64>, Self::Error> {
        if valid.is_empty() {
            return Ok(None);
        }
        let predicted = self.predict(&valid.users, &valid.items)?;
        Ok(Some(rmse(&predicted, &valid.values)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmse_and_mean_on_a_hand_made_case() {
        assert!((rmse(&[1.0, 3.0], &[2.0, 5.0]) - (2.5f64).sqrt()).abs() < 1e-12);
        let r = Ratings {
            users: vec![0, 1],
            items: vec![0, 0],
            values: vec![2.0, 4.0],
        };
        assert_eq!(r.mean(), 3.0);
        assert!(r.validate(2, 1).is_ok());
        assert!(r.validate(1, 1).is_err());
    }
}
