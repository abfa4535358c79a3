//! The training loss: full softmax over the catalogue, or sampled softmax with shared
//! negatives and the logQ correction; with the fused CPU kernels or in candle ops on any
//! device ([`CatalogueSoftmax::with_compute`]).

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

use crate::bag::{with_f32_data, RowGrads};
use crate::compute::Compute;
use crate::error::{invalid, Result};
use crate::layers::{with_bias_column, EmbeddingTable};
use crate::portable::{self, TouchedRows};
use crate::rng::{AliasTable, Rng};
use crate::xent::SoftmaxCrossEntropy;

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
        let weights: Vec<f64> = counts
            .iter()
            .map(|&c| ((c + 1) as f64).powf(power))
            .collect();
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

/// The logQ corrections of a sampled batch whose logit columns are `[target, negatives...]`:
/// `- log(S q_j)` for each negative column (0 for the target column, whose logit stays as
/// it is), and the `(row, column)` of every negative equal to the row's target (an accidental
/// hit, masked out of the softmax). With the hits removed, `sum_k exp(s_k) / (S q_k)` over
/// the draws is an unbiased estimate of the partition sum over the non-target items.
pub fn log_q_corrections(
    sampler: &NegativeSampler,
    targets: &[u32],
    negatives: &[u32],
) -> (Vec<f32>, Vec<(u32, u32)>) {
    let mut per_column = Vec::with_capacity(1 + negatives.len());
    per_column.push(0.0);
    per_column.extend(negatives.iter().map(|&j| -sampler.log_expected_count(j)));
    let mut column_of: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    for (j, &n) in negatives.iter().enumerate() {
        column_of.entry(n).or_default().push(1 + j as u32);
    }
    let mut hits = Vec::new();
    for (b, t) in targets.iter().enumerate() {
        if let Some(cols) = column_of.get(t) {
            hits.extend(cols.iter().map(|&c| (b as u32, c)));
        }
    }
    (per_column, hits)
}

/// What the backward pass must route to the softmax table in sampled mode.
pub struct SampledRows {
    /// The gathered `[targets; negatives]` rows as a leaf variable (fused kernels), or the
    /// distinct rows among them (candle ops).
    pub leaf: Var,
    /// The table row of each leaf row (ascending and distinct with candle ops).
    pub ids: Vec<u32>,
}

/// Mean cross-entropy of the full softmax over every item; the table itself is in the graph.
pub fn full_softmax_loss(u: &Tensor, table: &EmbeddingTable, targets: &[u32]) -> Result<Tensor> {
    let u = with_bias_column(u)?;
    let logits = u.matmul(&table.var().as_tensor().t()?)?;
    let objective = SoftmaxCrossEntropy::new(targets.to_vec());
    Ok(logits.apply_op1(objective)?.mean_all()?)
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
    let u = with_bias_column(u)?;
    let target_rows = leaf.as_tensor().narrow(0, 0, rows)?;
    let negative_rows = leaf.as_tensor().narrow(0, rows, negatives.len())?;
    let logits = sampled_logits(&u, &target_rows, &negative_rows)?;
    let (per_column, hits) = log_q_corrections(sampler, targets, negatives);
    let objective = SoftmaxCrossEntropy::new(vec![0; rows])
        .with_column_adjust(per_column)
        .with_masked(hits);
    let loss = logits.apply_op1(objective)?.mean_all()?;
    Ok((loss, SampledRows { leaf, ids }))
}

/// The sampled softmax's logits `[u_b . t_b, u_b . n_1, .., u_b . n_S]` (column 0 the target)
/// of `[u, 1]` rows against their target rows and the shared negative rows.
fn sampled_logits(u: &Tensor, target_rows: &Tensor, negative_rows: &Tensor) -> Result<Tensor> {
    let true_logits = (u * target_rows)?.sum_keepdim(1)?;
    let negative_logits = u.matmul(&negative_rows.t()?)?;
    Ok(Tensor::cat(&[&true_logits, &negative_logits], 1)?)
}

/// The next-watch softmax over a whole catalogue as a model trains with it: the full softmax
/// when the catalogue has at most `full_max_items` items (the item table is then a dense
/// variable), otherwise the sampled softmax with shared, popularity-drawn negatives and the
/// logQ correction, whose gradient reaches only the drawn rows (a sparse table update).
#[derive(Debug)]
pub struct CatalogueSoftmax {
    sampler: NegativeSampler,
    /// Row gradients of the item table (sampled mode only).
    rows: Option<RowGrads>,
    /// Fused CPU kernels, or candle ops.
    fused: bool,
}

impl CatalogueSoftmax {
    /// The softmax over `table` (`num_items x (dim + 1)`) for items with training `counts`.
    pub fn new(
        counts: &[u64],
        table: &EmbeddingTable,
        full_max_items: usize,
        sampling_power: f64,
        num_negatives: usize,
    ) -> Result<Self> {
        let sampler = NegativeSampler::new(counts, sampling_power, num_negatives)
            .ok_or_else(|| invalid("cannot build the negative sampler"))?;
        let full = table.rows() <= full_max_items;
        Ok(Self {
            sampler,
            rows: (!full).then(|| RowGrads::new(table.rows(), table.width())),
            fused: true,
        })
    }

    /// Computes with the fused CPU kernels or, for [`Compute::Candle`], in candle ops on the
    /// table's device (then [`Self::table_gradient_tensor`] gives the sampled rows' gradient).
    pub fn with_compute(mut self, compute: &Compute) -> Self {
        self.fused = compute.is_fused_cpu();
        self
    }

    /// Whether the full softmax is used (the table then trains as a dense variable).
    pub fn is_full(&self) -> bool {
        self.rows.is_none()
    }

    /// Mean cross-entropy of `targets` given user vectors `u`; in sampled mode also the drawn
    /// rows, to hand to [`Self::table_gradient`] after the backward pass.
    pub fn loss(
        &self,
        u: &Tensor,
        table: &EmbeddingTable,
        targets: &[u32],
        rng: &mut Rng,
    ) -> Result<(Tensor, Option<SampledRows>)> {
        if !self.fused {
            return self.loss_in_candle_ops(u, table, targets, rng);
        }
        if self.is_full() {
            return Ok((full_softmax_loss(u, table, targets)?, None));
        }
        let negatives = self.sampler.sample(rng);
        let (loss, rows) =
            sampled_softmax_loss(u, table, targets, &negatives, &self.sampler, u.device())?;
        Ok((loss, Some(rows)))
    }

    /// [`Self::loss`] in candle ops (the same draws from `rng`): the sampled rows are read into
    /// a compact leaf of the distinct rows, so its gradient is the table's row-sparse gradient.
    fn loss_in_candle_ops(
        &self,
        u: &Tensor,
        table: &EmbeddingTable,
        targets: &[u32],
        rng: &mut Rng,
    ) -> Result<(Tensor, Option<SampledRows>)> {
        let u = with_bias_column(u)?;
        let weights = table.var().as_tensor();
        if self.is_full() {
            let logits = u.matmul(&weights.t()?)?;
            return Ok((
                portable::softmax_cross_entropy(&logits, targets, &[], &[])?,
                None,
            ));
        }
        let negatives = self.sampler.sample(rng);
        let rows = targets.len();
        let ids: Vec<u32> = targets.iter().chain(&negatives).copied().collect();
        let touched = TouchedRows::of(&[&ids]);
        let leaf = touched.leaf(weights)?;
        let device = weights.device();
        let local = &touched.local[0];
        let read = |range: std::ops::Range<usize>| -> Result<Tensor> {
            let idx = Tensor::from_slice(&local[range.clone()], range.len(), device)?;
            Ok(leaf.as_tensor().index_select(&idx, 0)?)
        };
        let target_rows = read(0..rows)?;
        let negative_rows = read(rows..ids.len())?;
        let logits = sampled_logits(&u, &target_rows, &negative_rows)?;
        let (per_column, hits) = log_q_corrections(&self.sampler, targets, &negatives);
        let loss = portable::softmax_cross_entropy(&logits, &vec![0; rows], &per_column, &hits)?;
        Ok((
            loss,
            Some(SampledRows {
                leaf,
                ids: touched.rows,
            }),
        ))
    }

    /// The sampled rows' gradient with candle ops: the distinct rows (ascending) and their
    /// gradient as a tensor on the table's device; `None` in full mode or when no gradient
    /// reached them.
    pub fn table_gradient_tensor(
        &mut self,
        grads: &GradStore,
        sampled: Option<SampledRows>,
    ) -> Result<Option<(Vec<u32>, Tensor)>> {
        if self.fused {
            let (rows, g) = self.table_gradient(grads, sampled)?;
            let width = self.rows.as_ref().map_or(1, |r| r.width());
            if rows.is_empty() {
                return Ok(None);
            }
            let n = rows.len();
            return Ok(Some((rows, Tensor::from_vec(g, (n, width), &Device::Cpu)?)));
        }
        let Some(sampled) = sampled else {
            return Ok(None);
        };
        Ok(grads
            .get(sampled.leaf.as_tensor())
            .map(|g| (sampled.ids, g.clone())))
    }

    /// The sampled rows' gradient from `grads` as sorted, unique table rows and their summed
    /// gradients (for a sparse optimiser step); empty in full mode.
    pub fn table_gradient(
        &mut self,
        grads: &GradStore,
        sampled: Option<SampledRows>,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        let (Some(rows), Some(sampled)) = (self.rows.as_mut(), sampled) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let g = grads
            .get(sampled.leaf.as_tensor())
            .ok_or_else(|| invalid("no gradient reached the item table"))?
            .contiguous()?;
        let width = rows.width();
        with_f32_data(&g, |g| {
            for (row, &id) in g.chunks(width).zip(&sampled.ids) {
                rows.add(id, 1.0, row);
            }
        })?;
        Ok(rows.take_sorted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_subtract_log_expected_count_and_find_hits() {
        // counts 0, 1, 3 -> weights 1, 2, 4 (power 1) -> q = 1/7, 2/7, 4/7; S = 2 draws.
        let sampler = NegativeSampler::new(&[0, 1, 3], 1.0, 2).unwrap();
        let (per_column, hits) = log_q_corrections(&sampler, &[2, 0], &[0, 1]);
        let lq = |q: f64| -((2.0 * q).ln() as f32);
        let want = [0.0, lq(1.0 / 7.0), lq(2.0 / 7.0)];
        assert!(
            per_column
                .iter()
                .zip(&want)
                .all(|(x, y)| (x - y).abs() < 1e-6),
            "{per_column:?}"
        );
        // Row 1's target (item 0) was drawn as the first negative (column 1).
        assert_eq!(hits, vec![(1, 1)]);
        // The sign: a rarely drawn item gets a larger (positive) boost than a popular one.
        assert!(per_column[1] > 0.0 && per_column[1] > per_column[2]);
    }
}
