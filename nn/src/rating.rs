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
