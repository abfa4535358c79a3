//! The fused CPU kernels' formulations in candle ops, which run on any device (see
//! [`crate::compute`]).
//!
//! - Embedding bags ([`crate::bag`]): the rows a batch reads from a table are copied into a
//!   compact leaf variable ([`TouchedRows`]), and each bag is `index_select` of its rows,
//!   weighted, then `index_add`-ed into its example's row ([`bag_sum`]). candle differentiates
//!   both ops, so after the backward pass the leaf's gradient is the table's row-sparse gradient,
//!   one row per touched row, in the ascending order the sparse AdamW takes.
//! - The softmax cross-entropy with additive logit adjustments and masked entries
//!   ([`crate::xent::SoftmaxCrossEntropy`]): `log_softmax` of the adjusted logits, the target
//!   column picked with `gather` ([`softmax_cross_entropy`]).
//! - The AdamW updates live with the fused ones in [`crate::optim`].

use candle_core::{DType, Tensor, Var};

use crate::bag::Bags;
use crate::error::{invalid, Result};

/// Added to a masked logit: its softmax weight is exactly 0 and it gets no gradient.
const MASKED: f32 = -1e30;

/// The distinct rows a batch reads from one table, and each read's position among them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TouchedRows {
    /// The distinct rows, ascending (the rows the sparse AdamW then updates).
    pub rows: Vec<u32>,
    /// For each list given to [`Self::of`], its ids as positions in `rows`.
    pub local: Vec<Vec<u32>>,
}

impl TouchedRows {
    /// The distinct rows of `lists` (ids of one table) and the lists rewritten against them.
    pub fn of(lists: &[&[u32]]) -> Self {
        let mut rows: Vec<u32> = lists.iter().flat_map(|l| l.iter().copied()).collect();
        rows.sort_unstable();
        rows.dedup();
        let local = lists
            .iter()
            .map(|l| {
                l.iter()
                    .map(|id| rows.partition_point(|&r| r < *id) as u32)
                    .collect()
            })
            .collect();
        Self { rows, local }
    }

    /// A copy of these rows of `table` (`rows x width`, any device) as a leaf variable, whose
    /// gradient after the backward pass is the table's gradient on [`Self::rows`] (with no
    /// rows, a one-row placeholder that gets no gradient).
    pub fn leaf(&self, table: &Tensor) -> Result<Var> {
        let (rows, width) = table.dims2()?;
        if let Some(bad) = self.rows.iter().find(|&&r| r as usize >= rows) {
            return Err(invalid(format!(
                "row {bad} is outside a table of {rows} rows"
            )));
        }
        if self.rows.is_empty() {
            // Nothing reads it; one zero row, as a zero-size allocation is not valid on every
            // device.
            return Ok(Var::zeros((1, width), DType::F32, table.device())?);
        }
        let idx = Tensor::from_slice(&self.rows, self.rows.len(), table.device())?;
        Ok(Var::from_tensor(&table.index_select(&idx, 0)?.detach())?)
    }
}

/// Sums row-sparse gradients of one table given as `(rows, gradient)` parts (each part's rows
/// distinct, its gradient `rows.len() x width` on one device): the union of the rows,
/// ascending, and their summed gradient, for one sparse AdamW step (a row must not be
/// stepped twice in a step).
pub fn merge_row_gradients(parts: &[(&[u32], &Tensor)]) -> Result<(Vec<u32>, Tensor)> {
    let Some((_, first)) = parts.first() else {
        return Err(invalid("no row gradients to merge"));
    };
    let width = first.dim(1)?;
    let device = first.device();
    let mut rows: Vec<u32> = parts.iter().flat_map(|(r, _)| r.iter().copied()).collect();
    rows.sort_unstable();
    rows.dedup();
    let mut sum = Tensor::zeros((rows.len(), width), DType::F32, device)?;
    for (part_rows, grad) in parts {
        if part_rows.is_empty() {
            continue;
        }
        if grad.dims() != [part_rows.len(), width] {
            return Err(invalid("a row gradient does not match its rows"));
        }
        let at: Vec<u32> = part_rows
            .iter()
            .map(|r| rows.partition_point(|x| x < r) as u32)
            .collect();
        let at = Tensor::from_vec(at, part_rows.len(), device)?;
        sum = sum.index_add(&at, grad, 0)?;
    }
    Ok((rows, sum))
}

/// Each example's weighted bag of `table` rows, `bags.len() x width`: entry k of the bags
/// reads row `ids[k]` of `table` (the bags' own ids against the whole table, or
/// [`TouchedRows::local`] against a compact leaf), weighted by the bag's weight; an empty bag
/// is zeros. The same sums as [`crate::bag::gather`].
pub fn bag_sum(table: &Tensor, bags: &Bags, ids: &[u32]) -> Result<Tensor> {
    let (rows, width) = table.dims2()?;
    let device = table.device();
    if ids.len() != bags.ids.len() || bags.weights.len() != ids.len() {
        return Err(invalid("bag ids and weights disagree in length"));
    }
    if let Some(bad) = ids.iter().find(|&&r| r as usize >= rows) {
        return Err(invalid(format!(
            "bag id {bad} is outside a table of {rows} rows"
        )));
    }
    let zeros = Tensor::zeros((bags.len(), width), DType::F32, device)?;
    if ids.is_empty() {
        return Ok(zeros);
    }
    let mut example = Vec::with_capacity(ids.len());
    for e in 0..bags.len() {
        let n = bags.offsets[e + 1] - bags.offsets[e];
        example.extend(std::iter::repeat_n(e as u32, n));
    }
    let idx = Tensor::from_slice(ids, ids.len(), device)?;
    let weights = Tensor::from_slice(&bags.weights, (ids.len(), 1), device)?;
    let read = table.index_select(&idx, 0)?.broadcast_mul(&weights)?;
    let example = Tensor::from_vec(example, ids.len(), device)?;
    Ok(zeros.index_add(&example, &read, 0)?)
}

/// Mean over rows b of `logsumexp(z_b) - z_b[targets[b]]`, where
/// `z_b[c] = logits[b, c] + column_adjust[c]` (no adjustment when empty) and the `masked`
/// `(row, column)` entries are left out of the softmax (a row's target never is): the mean of
/// [`crate::xent::SoftmaxCrossEntropy`]'s per-row losses, in candle ops.
pub fn softmax_cross_entropy(
    logits: &Tensor,
    targets: &[u32],
    column_adjust: &[f32],
    masked: &[(u32, u32)],
) -> Result<Tensor> {
    let (rows, cols) = logits.dims2()?;
    let device = logits.device();
    if targets.len() != rows || targets.iter().any(|&t| t as usize >= cols) {
        return Err(invalid("cross-entropy targets do not match the logits"));
    }
    let mut z = logits.clone();
    if !column_adjust.is_empty() {
        if column_adjust.len() != cols {
            return Err(invalid(
                "cross-entropy column adjustments do not match the logits",
            ));
        }
        z = z.broadcast_add(&Tensor::from_slice(column_adjust, (1, cols), device)?)?;
    }
    // Only the masked entries cross to the device (a dense mask is rows x cols floats).
    let flat: Vec<u32> = masked
        .iter()
        .map(|&(r, c)| (r as usize, c as usize))
        .filter(|&(r, c)| r < rows && c < cols && targets[r] as usize != c)
        .map(|(r, c)| (r * cols + c) as u32)
        .collect();
    if !flat.is_empty() {
        let n = flat.len();
        let at = Tensor::from_vec(flat, n, device)?;
        let add = Tensor::full(MASKED, n, device)?;
        z = z
            .flatten_all()?
            .index_add(&at, &add, 0)?
            .reshape((rows, cols))?;
    }
    let log_p = candle_nn::ops::log_softmax(&z, 1)?;
    let targets = Tensor::from_slice(targets, (rows, 1), device)?;
    Ok(log_p.gather(&targets, 1)?.neg()?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bag::gather;
    use crate::xent::SoftmaxCrossEntropy;
    use candle_core::Device;

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn bag_sums_from_a_compact_leaf_equal_the_fused_gather_and_its_gradient_is_row_sparse(
    ) -> Result<()> {
        let dev = Device::Cpu;
        // 5 rows x 2 wide.
        let table: Vec<f32> = (0..10).map(|x| x as f32 * 0.5 - 1.0).collect();
        let table_t = Tensor::from_slice(&table, (5, 2), &dev)?;
        let mut bags = Bags::new();
        bags.push_mean([4, 1, 4]);
        bags.push_mean([]);
        bags.push_mean([3]);
        let mut fused = vec![0f32; 3 * 2];
        gather(&table, 2, &bags, &mut fused, 0, 2)?;

        let whole = bag_sum(&table_t, &bags, &bags.ids)?;
        assert!(close(&whole.flatten_all()?.to_vec1()?, &fused, 1e-6));

        let touched = TouchedRows::of(&[&bags.ids]);
        assert_eq!(touched.rows, vec![1, 3, 4]);
        assert_eq!(touched.local, vec![vec![2, 0, 2, 1]]);
        let leaf = touched.leaf(&table_t)?;
        let sums = bag_sum(leaf.as_tensor(), &bags, &touched.local[0])?;
        assert!(close(&sums.flatten_all()?.to_vec1()?, &fused, 1e-6));

        // d(sum of column 0 + 2 x column 1)/d(leaf): each row gets its bag weight per use.
        let coeff = Tensor::from_slice(&[1f32, 2.0], (1, 2), &dev)?;
        let store = sums.broadcast_mul(&coeff)?.sum_all()?.backward()?;
        let g = store.get(leaf.as_tensor()).expect("leaf gradient");
        let third = 1.0 / 3.0;
        let want = [third, 2.0 * third, 1.0, 2.0, 2.0 * third, 4.0 * third];
        assert!(close(&g.flatten_all()?.to_vec1()?, &want, 1e-6), "{g}");
        Ok(())
    }

    #[test]
    fn merged_row_gradients_sum_shared_rows_once() -> Result<()> {
        let dev = Device::Cpu;
        let a = Tensor::from_slice(&[1f32, 2.0, 3.0, 4.0], (2, 2), &dev)?;
        let b = Tensor::from_slice(&[10f32, 20.0, 30.0, 40.0, 50.0, 60.0], (3, 2), &dev)?;
        let (rows, sum) = merge_row_gradients(&[(&[7, 2], &a), (&[2, 9, 0], &b)])?;
        assert_eq!(rows, vec![0, 2, 7, 9]);
        assert_eq!(
            sum.to_vec2::<f32>()?,
            vec![
                vec![50.0, 60.0],
                vec![13.0, 24.0],
                vec![1.0, 2.0],
                vec![30.0, 40.0]
            ]
        );
        Ok(())
    }

    #[test]
    fn cross_entropy_equals_the_fused_op_in_value_and_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let values: Vec<f32> = (0..12).map(|x| ((x * 7) % 5) as f32 * 0.3 - 0.4).collect();
        let targets = vec![2u32, 0, 3];
        let adjust = vec![0.1f32, -0.2, 0.0, 0.5];
        // Row 1's target is listed as masked too: it must stay in.
        let masked = vec![(0u32, 1u32), (1, 0), (1, 3), (2, 2)];

        let fused_var = Var::from_tensor(&Tensor::from_slice(&values, (3, 4), &dev)?)?;
        let op = SoftmaxCrossEntropy::new(targets.clone())
            .with_column_adjust(adjust.clone())
            .with_masked(masked.clone());
        let fused = fused_var.as_tensor().apply_op1(op)?.mean_all()?;
        let fused_grad = fused.backward()?;

        let var = Var::from_tensor(&Tensor::from_slice(&values, (3, 4), &dev)?)?;
        let loss = softmax_cross_entropy(var.as_tensor(), &targets, &adjust, &masked)?;
        let grad = loss.backward()?;

        let (a, b) = (fused.to_scalar::<f32>()?, loss.to_scalar::<f32>()?);
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        let ga = fused_grad
            .get(fused_var.as_tensor())
            .expect("fused gradient");
        let gb = grad.get(var.as_tensor()).expect("gradient");
        let (ga, gb) = (ga.flatten_all()?.to_vec1()?, gb.flatten_all()?.to_vec1()?);
        assert!(close(&ga, &gb, 1e-5), "{ga:?} vs {gb:?}");
        // Masked entries get exactly no gradient.
        assert_eq!(gb[1], 0.0);
        assert_eq!(gb[4 + 3], 0.0);
        Ok(())
    }
}
