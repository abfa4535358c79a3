//! Publication age: the age buckets and the learned score bias per bucket (see the module
//! doc of [`super`]).

use candle_core::Tensor;

use super::network::Network;
use crate::error::Result;

/// Number of age buckets: bucket 0 holds items of unknown age, bucket `1 + k` ages with
/// `floor(2 log2(1 + days)) = k` (half-octaves: 0-0.4 days, 0.4-1, 1-1.8, ..., the last from
/// 4,096 days on).
pub const AGE_BUCKETS: usize = 26;

/// The age bucket of an age in days (`None`: unknown; negative ages count as 0).
pub fn age_bucket(age_days: Option<f32>) -> u32 {
    match age_days {
        None => 0,
        Some(a) => {
            let k = (2.0 * f64::from(a.max(0.0)).ln_1p() / std::f64::consts::LN_2).floor();
            1 + (k.max(0.0) as u32).min(AGE_BUCKETS as u32 - 2)
        }
    }
}

impl Network {
    /// `rows x (dim + 1)` item rows with the age bias of `buckets` added to the bias column
    /// (unchanged without an age bias).
    pub fn with_age_bias(&self, rows: Tensor, buckets: &[u32]) -> Result<Tensor> {
        let Some(w) = &self.age_bias else {
            return Ok(rows);
        };
        let (n, width) = rows.dims2()?;
        let idx = Tensor::from_slice(buckets, n, rows.device())?;
        let bias = w.index_select(&idx, 0)?.reshape((n, 1))?;
        let zeros = Tensor::zeros((n, width - 1), rows.dtype(), rows.device())?;
        Ok((rows + Tensor::cat(&[&zeros, &bias], 1)?)?)
    }
}
