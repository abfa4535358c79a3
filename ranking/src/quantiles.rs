//! Continuous features mapped to their cumulative distribution (Covington et al. 2016, 4.3):
//! x~ = F(x) in [0, 1], by linear interpolation between quantiles of the training data, fed to
//! the network as x~, x~^2 and sqrt(x~) beside an explicit missing indicator.

use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};
use crate::example::RankingExample;

/// Network inputs per continuous feature: x~, x~^2, sqrt(x~), missing indicator.
pub const INPUTS_PER_CONTINUOUS: usize = 4;

/// Quantiles of one continuous feature's training values, and the interpolated CDF they define.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Quantiles {
    /// Sorted knots q_0 <= ... <= q_m: the minimum, m - 1 evenly spaced order statistics and the
    /// maximum of the finite training values (empty when there was none).
    knots: Vec<f32>,
}

impl Quantiles {
    /// Fits `n_quantiles` quantile intervals (at most one per value) to the finite values;
    /// `NaN` and infinite values are ignored. Keeps every value when there are at most
    /// `n_quantiles + 1`.
    pub fn fit(values: impl IntoIterator<Item = f32>, n_quantiles: usize) -> Self {
        let mut sorted: Vec<f32> = values.into_iter().filter(|x| x.is_finite()).collect();
        sorted.sort_unstable_by(f32::total_cmp);
        let n = sorted.len();
        let m = n_quantiles.max(1);
        if n <= m + 1 {
            return Self { knots: sorted };
        }
        let knots = (0..=m).map(|j| sorted[(j * (n - 1) + m / 2) / m]).collect();
        Self { knots }
    }

    /// Builds quantiles from knots saved earlier; they must be finite and sorted.
    pub fn from_knots(knots: Vec<f32>) -> Result<Self> {
        if knots.iter().any(|x| !x.is_finite()) || knots.windows(2).any(|w| w[0] > w[1]) {
            return Err(RankingError::InvalidConfig(
                "quantile knots must be finite and sorted".into(),
            ));
        }
        Ok(Self { knots })
    }

    /// The knots (see the field's doc).
    pub fn knots(&self) -> &[f32] {
        &self.knots
    }

    /// x~ = F(x): 0 below the smallest knot, 1 above the largest, linear between neighbouring
    /// knots; a value equal to a run of knots maps to the middle of the run. `None` for `NaN`
    /// (missing). With no knots at all every value maps to 0.
    pub fn cdf(&self, x: f32) -> Option<f32> {
        if x.is_nan() {
            return None;
        }
        let q = &self.knots;
        match q.len() {
            0 => return Some(0.0),
            1 => {
                return Some(if x < q[0] {
                    0.0
                } else if x > q[0] {
                    1.0
                } else {
                    0.5
                })
            }
            _ => {}
        }
        let lo = q.partition_point(|&k| k < x);
        let hi = q.partition_point(|&k| k <= x);
        let m = (q.len() - 1) as f32;
        let position = if lo < hi {
            (lo + hi - 1) as f32 / 2.0
        } else if lo == 0 {
            0.0
        } else if lo == q.len() {
            m
        } else {
            let (a, b) = (q[lo - 1], q[lo]);
            (lo - 1) as f32 + (x - a) / (b - a)
        };
        Some(position / m)
    }

    /// Writes the network inputs for `x`: [x~, x~^2, sqrt(x~), 0] or [0, 0, 0, 1] when missing.
    pub fn encode(&self, x: f32, out: &mut [f32; INPUTS_PER_CONTINUOUS]) {
        *out = match self.cdf(x) {
            Some(t) => [t, t * t, t.sqrt(), 0.0],
            None => [0.0, 0.0, 0.0, 1.0],
        };
    }
}

/// The quantiles of every continuous feature of a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ContinuousEncoder {
    /// One entry per continuous feature, in schema order.
    pub features: Vec<Quantiles>,
}

impl ContinuousEncoder {
    /// Fits every feature's quantiles in one pass over `examples` (which must have been checked
    /// against the schema: `n_features` values each).
    pub fn fit(examples: &[RankingExample], n_features: usize, n_quantiles: usize) -> Self {
        let mut columns: Vec<Vec<f32>> = vec![Vec::with_capacity(examples.len()); n_features];
        for example in examples {
            for (column, &x) in columns.iter_mut().zip(&example.continuous) {
                column.push(x);
            }
        }
        let features = columns
            .into_iter()
            .map(|c| Quantiles::fit(c, n_quantiles))
            .collect();
        Self { features }
    }

    /// Network inputs per example: `INPUTS_PER_CONTINUOUS` per feature.
    pub fn width(&self) -> usize {
        self.features.len() * INPUTS_PER_CONTINUOUS
    }

    /// Appends the network inputs of one example's raw values to `out`.
    pub fn encode_into(&self, raw: &[f32], out: &mut Vec<f32>) {
        let mut inputs = [0.0; INPUTS_PER_CONTINUOUS];
        for (quantiles, &x) in self.features.iter().zip(raw) {
            quantiles.encode(x, &mut inputs);
            out.extend_from_slice(&inputs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_interpolates_between_knots() {
        let q = Quantiles::fit([4.0, 0.0, 2.0, 1.0, 3.0, f32::NAN], 4);
        assert_eq!(q.knots(), &[0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(q.cdf(2.5), Some(0.625));
        assert_eq!(q.cdf(2.0), Some(0.5));
        assert_eq!(q.cdf(0.25), Some(0.0625));
        assert_eq!(q.cdf(-1.0), Some(0.0));
        assert_eq!(q.cdf(9.0), Some(1.0));
        assert_eq!(q.cdf(f32::INFINITY), Some(1.0));
        assert_eq!(q.cdf(f32::NAN), None);
    }

    #[test]
    fn repeated_values_map_to_the_middle_of_their_run() {
        let q = Quantiles::fit([0.0, 0.0, 0.0, 1.0], 3);
        assert_eq!(q.knots(), &[0.0, 0.0, 0.0, 1.0]);
        // Knots 0..=2 equal 0: middle position 1 of 3.
        assert!((q.cdf(0.0).unwrap_or(-1.0) - 1.0 / 3.0).abs() < 1e-6);
        // Halfway from knot 2 (0.0) to knot 3 (1.0): (2 + 0.5) / 3.
        assert!((q.cdf(0.5).unwrap_or(-1.0) - 2.5 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn fit_picks_evenly_spaced_order_statistics() {
        let q = Quantiles::fit((0..=100).map(|x| x as f32), 4);
        assert_eq!(q.knots(), &[0.0, 25.0, 50.0, 75.0, 100.0]);
        assert_eq!(q.cdf(60.0), Some(0.6));
    }

    #[test]
    fn single_knot_and_empty_quantiles() {
        let constant = Quantiles::fit([5.0, 5.0], 10);
        assert_eq!(constant.cdf(4.0), Some(0.0));
        assert_eq!(constant.cdf(5.0), Some(0.5));
        assert_eq!(constant.cdf(6.0), Some(1.0));
        assert_eq!(Quantiles::fit([f32::NAN], 10).cdf(3.0), Some(0.0));
    }

    #[test]
    fn encode_feeds_powers_and_missing_indicator() {
        let q = Quantiles::fit([0.0, 1.0, 2.0, 3.0, 4.0], 4);
        let mut out = [9.0; INPUTS_PER_CONTINUOUS];
        q.encode(1.0, &mut out);
        assert_eq!(out, [0.25, 0.0625, 0.5, 0.0]);
        q.encode(f32::NAN, &mut out);
        assert_eq!(out, [0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn from_knots_rejects_unsorted() {
        assert!(Quantiles::from_knots(vec![1.0, 0.0]).is_err());
        assert!(Quantiles::from_knots(vec![0.0, f32::NAN]).is_err());
        assert!(Quantiles::from_knots(vec![0.0, 1.0]).is_ok());
    }
}
