//! The training loss: full softmax over the catalogue, or sampled softmax with shared
//! negatives and the logQ correction.

use candle_core::{Device, Tensor, Var, D};

use crate::bag::with_f32_data;
use crate::error::Result;
use crate::network::{EmbeddingTable, Network};
use crate::rng::{AliasTable, Rng};

/// Added to the logit of a sampled negative that is the example's own target.
pub const ACCIDENTAL_HIT: f32 = -1e9;

/// Draws the shared negatives from the popularity distribution (count + 1)^power.
#[derive(Debug, Clone)]
pub struct NegativeSampler {
    table: AliasTable,
    /// Number of draws per batch.
    pub draws: usize,
}

impl NegativeSampler {
    /// A sampler over items with training counts `counts`.
    pub fn new(counts: &[u64], power: f64, draws: usize) -> Option<Self> {
        let weights: Vec<f64> = counts.iter().map(|&c| ((c + 1) as f64).powf(power)).collect();
        AliasTable::new(&weights).map(|table| Self { table, draws })
    }

    /// One batch of negatives (with replacement).
    pub fn sample(&self, rng: &mut Rng) -> Vec<u32> {
        (0..self.draws).map(|_| self.table.sample(rng)).collect()
    }

    /// log of the expected number of times `item` appears among the draws (log(S q)).
    pub fn log_expected_count(&self, item: u32) -> f32 {
        (self.draws as f64 * self.table.probability(item)).ln() as f32
    }
}

/// Logit corrections of a sampled batch, `rows x (1 + S)`: column 0 is the target, then the
/// negatives. Each logit gets `- log(S q)` of its item; a negative equal to the row's target
/// is masked with [`ACCIDENTAL_HIT`].
pub fn sampled_corrections(sampler: &NegativeSampler, targets: &[u32], negatives: &[u32]) -> Vec<f32> {
    let neg: Vec<f32> = negatives
        .iter()
        .map(|&j| -sampler.log_expected_count(j))
        .collect();
    let cols = 1 + negatives.len();
    let mut out = Vec::with_capacity(targets.len() * cols);
    for &t in targets {
        out.push(-sampler.log_expected_count(t));
        out.extend_from_slice(&neg);
        let row = out.len() - negatives.len();
        for (j, &n) in negatives.iter().enumerate() {
            if n == t {
                out[row + j] = ACCIDENTAL_HIT;
            }
        }
    }
    out
}

/// What the backward pass must route to the softmax table in sampled mode.
pub struct SampledRows {
    /// The gathered `[targets; negatives]` rows as a leaf variable.
    pub leaf: Var,
    /// The table row of each leaf row.
    pub ids: Vec<u32>,
}

/// Mean cross-entropy of the full softmax over every item; the table itself is in the graph.
pub fn full_softmax_loss(u: &Tensor, table: &EmbeddingTable, targets: &[u32]) -> Result<Tensor> {
    let u = Network::with_bias_column(u)?;
    let logits = u.matmul(&table.var().as_tensor().t()?)?;
    let targets = Tensor::from_slice(targets, targets.len(), u.device())?;
    Ok(candle_nn::loss::cross_entropy(&logits, &targets)?)
}

/// Mean sampled-softmax cross-entropy with logQ correction and accidental hits masked.
pub fn sampled_softmax_loss(
    u: &Tensor,
    table: &EmbeddingTable,
    targets: &[u32],
    negatives: &[u32],
    sampler: &NegativeSampler,
    device: &Device,
) -> Result<(Tensor, SampledRows)> {
    let rows = targets.len();
    let width = table.width();
    let ids: Vec<u32> = targets.iter().chain(negatives).copied().collect();
    let gathered = with_f32_data(table.var().as_tensor(), |w| {
        let mut out = Vec::with_capacity(ids.len() * width);
        for &id in &ids {
            let start = id as usize * width;
            out.extend_from_slice(&w[start..start + width]);
        }
        out
    })?;
    let leaf = Var::from_tensor(&Tensor::from_vec(gathered, (ids.len(), width), device)?)?;
    let u = Network::with_bias_column(u)?;
    let target_rows = leaf.as_tensor().narrow(0, 0, rows)?;
    let negative_rows = leaf.as_tensor().narrow(0, rows, negatives.len())?;
    let true_logits = (&u * &target_rows)?.sum_keepdim(1)?;
    let negative_logits = u.matmul(&negative_rows.t()?)?;
    let corrections = sampled_corrections(sampler, targets, negatives);
    let corrections = Tensor::from_vec(corrections, (rows, 1 + negatives.len()), device)?;
    let logits = (Tensor::cat(&[&true_logits, &negative_logits], 1)? + corrections)?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let loss = log_probs.narrow(1, 0, 1)?.mean_all()?.neg()?;
    Ok((loss, SampledRows { leaf, ids }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_subtract_log_expected_count_and_mask_hits() {
        // counts 0, 1, 3 -> weights 1, 2, 4 (power 1) -> q = 1/7, 2/7, 4/7; S = 2 draws.
        let sampler = NegativeSampler::new(&[0, 1, 3], 1.0, 2).unwrap();
        let c = sampled_corrections(&sampler, &[2, 0], &[0, 1]);
        let lq = |q: f64| -((2.0 * q).ln() as f32);
        let want = [
            lq(4.0 / 7.0),
            lq(1.0 / 7.0),
            lq(2.0 / 7.0),
            lq(1.0 / 7.0),
            ACCIDENTAL_HIT,
            lq(2.0 / 7.0),
        ];
        for (g, w) in c.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{c:?}");
        }
        // A rare item (small q) gets a larger boost than a popular one: -log(Sq) falls with q.
        assert!(c[2] > c[0]);
    }
}
