//! Fused softmax cross-entropy with additive logit adjustments (a candle `CustomOp1`).
//!
//! candle's `log_softmax` + `nll` chain runs about a dozen elementwise passes over the
//! `batch x classes` logits forward and backward; this op does one pass each way. It also
//! applies the sampled softmax's logQ corrections and accidental-hit masks on the fly, so the
//! corrected logits are never materialised. CPU only; other devices report an error.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::bag::with_f32_data;

/// Per-row cross-entropy `logsumexp(z_b) - z_b[target_b]` of adjusted logits
/// `z_b[c] = logits[b, c] + column_adjust[c]`, with the
/// masked `(row, column)` entries removed from the softmax.
#[derive(Debug, Default)]
pub struct SoftmaxCrossEntropy {
    targets: Vec<u32>,
    column_adjust: Vec<f32>,
    mask_offsets: Vec<usize>,
    mask_columns: Vec<u32>,
    /// Each row's log-sum-exp from the forward pass, reused by the backward pass.
    lse: Mutex<Vec<f32>>,
}

impl SoftmaxCrossEntropy {
    /// Plain cross-entropy with the given target column per row.
    pub fn new(targets: Vec<u32>) -> Self {
        let rows = targets.len();
        Self {
            targets,
            mask_offsets: vec![0; rows + 1],
            ..Self::default()
        }
    }

    /// Adds `adjust[c]` to column `c` of every row.
    pub fn with_column_adjust(mut self, adjust: Vec<f32>) -> Self {
        self.column_adjust = adjust;
        self
    }

    /// Removes the listed `(row, column)` logits from the softmax (the target is never removed).
    pub fn with_masked(mut self, mut masked: Vec<(u32, u32)>) -> Self {
        masked.sort_unstable();
        let rows = self.targets.len();
        let mut offsets = vec![0usize; rows + 1];
        for &(r, _) in &masked {
            if (r as usize) < rows {
                offsets[r as usize + 1] += 1;
            }
        }
        for r in 0..rows {
            offsets[r + 1] += offsets[r];
        }
        self.mask_columns = masked
            .into_iter()
            .filter(|&(r, _)| (r as usize) < rows)
            .map(|(_, c)| c)
            .collect();
        self.mask_offsets = offsets;
        self
    }

    /// Fills `z` with row `b`'s adjusted logits.
    fn adjusted_row(&self, b: usize, logits: &[f32], z: &mut Vec<f32>) {
        z.clear();
        z.extend_from_slice(logits);
        if !self.column_adjust.is_empty() {
            z.iter_mut()
                .zip(&self.column_adjust)
                .for_each(|(x, a)| *x += a);
        }
        let t = self.targets[b] as usize;
        for &c in &self.mask_columns[self.mask_offsets[b]..self.mask_offsets[b + 1]] {
            if c as usize != t {
                if let Some(x) = z.get_mut(c as usize) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }

    fn check(&self, rows: usize, cols: usize) -> candle_core::Result<()> {
        if rows != self.targets.len()
            || self.targets.iter().any(|&t| t as usize >= cols)
            || (!self.column_adjust.is_empty() && self.column_adjust.len() != cols)
        {
            candle_core::bail!(
                "softmax cross-entropy: targets or adjustments do not fit the logits"
            );
        }
        Ok(())
    }
}

/// exp(x) to about 3e-7 (1 + |x|) relative error, branch-free so that loops over it vectorise.
/// Arguments below -87 (including -inf) give about 1.6e-38 instead of 0.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    const ROUND_BITS: u32 = 0x4B40_0000; // bit pattern of ROUND
    let t = x.clamp(-87.0, 88.0) * std::f32::consts::LOG2_E;
    let r = t + ROUND;
    let f = t - (r - ROUND); // in [-0.5, 0.5]
                             // 2^f by its Taylor series in f ln 2 (terms up to degree 7).
    let p = 1.0
        + f * (std::f32::consts::LN_2
            + f * (0.240_226_5
                + f * (0.055_504_11
                    + f * (0.009_618_129
                        + f * (0.001_333_355_8 + f * (0.000_154_035_3 + f * 0.000_015_252_73))))));
    // r's low mantissa bits hold round(t): 2^round(t) without a float-to-int conversion.
    let scale = f32::from_bits((r.to_bits().wrapping_sub(ROUND_BITS).wrapping_add(127)) << 23);
    scale * p
}

/// Lanes of the vectorised reductions.
const LANES: usize = 16;

/// log(sum(exp(z))), with lane-wise partial reductions so that they vectorise.
#[inline(always)]
fn log_sum_exp_portable(z: &[f32]) -> f32 {
    let chunks = z.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for c in chunks.clone() {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = l.max(x);
        }
    }
    let max = tail
        .iter()
        .chain(&lanes)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sums = [0f32; LANES];
    for c in chunks {
        for (s, &x) in sums.iter_mut().zip(c) {
            *s += fast_exp(x - max);
        }
    }
    let sum = sums.iter().sum::<f32>() + tail.iter().map(|&x| fast_exp(x - max)).sum::<f32>();
    max + sum.ln()
}

/// `g = exp(z - lse) * scale`: the softmax times the row's upstream gradient.
#[inline(always)]
fn scaled_softmax_portable(z: &[f32], lse: f32, scale: f32, g: &mut [f32]) {
    for (g, &x) in g.iter_mut().zip(z) {
        *g = fast_exp(x - lse) * scale;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn log_sum_exp_avx2(z: &[f32]) -> f32 {
    log_sum_exp_portable(z)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn scaled_softmax_avx2(z: &[f32], lse: f32, scale: f32, g: &mut [f32]) {
    scaled_softmax_portable(z, lse, scale, g)
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

fn log_sum_exp(z: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
        return unsafe { log_sum_exp_avx2(z) };
    }
    log_sum_exp_portable(z)
}

fn scaled_softmax(z: &[f32], lse: f32, scale: f32, g: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
        return unsafe { scaled_softmax_avx2(z, lse, scale, g) };
    }
    scaled_softmax_portable(z, lse, scale, g)
}

fn dims2(shape: &Shape) -> candle_core::Result<(usize, usize)> {
    match shape.dims() {
        [r, c] => Ok((*r, *c)),
        _ => candle_core::bail!("softmax cross-entropy expects rank-2 logits"),
    }
}

impl CustomOp1 for SoftmaxCrossEntropy {
    fn name(&self) -> &'static str {
        "softmax-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, cols) = dims2(layout.shape())?;
        self.check(rows, cols)?;
        let logits = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(data), Some((a, b))) => &data[a..b],
            _ => candle_core::bail!("softmax cross-entropy expects contiguous f32 logits"),
        };
        let lse: Vec<f32> = logits
            .par_chunks(cols)
            .enumerate()
            .map_init(Vec::new, |z, (b, row)| {
                self.adjusted_row(b, row, z);
                log_sum_exp(z)
            })
            .collect();
        let losses = lse
            .iter()
            .zip(logits.chunks(cols))
            .enumerate()
            .map(|(b, (&lse, row))| {
                let t = self.targets[b] as usize;
                let adjust = self.column_adjust.get(t).copied().unwrap_or(0.0);
                lse - (row[t] + adjust)
            })
            .collect();
        if let Ok(mut cache) = self.lse.lock() {
            *cache = lse;
        }
        Ok((CpuStorage::F32(losses), Shape::from(rows)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (rows, cols) = arg.dims2()?;
        let arg = arg.contiguous()?;
        let scale = grad_res.to_vec1::<f32>()?;
        let lse_cache = match self.lse.lock() {
            Ok(cache) if cache.len() == rows => cache.clone(),
            _ => Vec::new(),
        };
        let mut grad = vec![0f32; rows * cols];
        with_f32_data(&arg, |logits| {
            grad.par_chunks_mut(cols)
                .zip(logits.par_chunks(cols))
                .enumerate()
                .for_each_init(Vec::new, |z, (b, (g, row))| {
                    self.adjusted_row(b, row, z);
                    let lse = match lse_cache.get(b) {
                        Some(&lse) => lse,
                        None => log_sum_exp(z),
                    };
                    scaled_softmax(z, lse, scale[b], g);
                    g[self.targets[b] as usize] -= scale[b];
                });
        })
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok(Some(Tensor::from_vec(grad, (rows, cols), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_cross_entropy_and_its_gradient() {
        let dev = Device::Cpu;
        let data = vec![0.5f32, -1.0, 2.0, 0.0, 3.0, 1.0, -2.0, 0.5];
        let x = Var::from_tensor(&Tensor::from_vec(data, (2, 4), &dev).unwrap()).unwrap();
        let targets = vec![2u32, 1];
        let ours = x
            .as_tensor()
            .apply_op1(SoftmaxCrossEntropy::new(targets.clone()))
            .unwrap();
        let ours = ours.mean_all().unwrap();
        let t = Tensor::from_slice(&targets, 2, &dev).unwrap();
        let theirs = candle_nn::loss::cross_entropy(x.as_tensor(), &t).unwrap();
        let (a, b) = (
            ours.to_scalar::<f32>().unwrap(),
            theirs.to_scalar::<f32>().unwrap(),
        );
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        let grad = |loss: &Tensor| {
            loss.backward()
                .unwrap()
                .get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (ga, gb) = (grad(&ours), grad(&theirs));
        for (p, q) in ga.iter().zip(&gb) {
            assert!((p - q).abs() < 1e-6, "{ga:?} vs {gb:?}");
        }
    }

    #[test]
    fn fast_exp_is_close_to_exp() {
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let (a, b) = (fast_exp(x), x.exp());
            assert!(
                (a - b).abs() <= 3e-7 * (1.0 + x.abs()) * b,
                "{x}: {a} vs {b}"
            );
        }
        assert!(fast_exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn adjustments_and_masks_act_on_the_logits() {
        // Row 0: logits [1, 2, 3], target 0, column adjust [0.5, -2, 0], mask column 2:
        // z = [1.5, 0, -inf] -> loss = ln(e^1.5 + e^0) - 1.5.
        let dev = Device::Cpu;
        let x = Tensor::from_vec(vec![1f32, 2.0, 3.0], (1, 3), &dev).unwrap();
        let op = SoftmaxCrossEntropy::new(vec![0])
            .with_column_adjust(vec![0.5, -2.0, 0.0])
            .with_masked(vec![(0, 2)]);
        let loss = x.apply_op1(op).unwrap().to_vec1::<f32>().unwrap()[0];
        let want = (1.5f32.exp() + 1.0).ln() - 1.5;
        assert!((loss - want).abs() < 1e-6, "{loss} vs {want}");
    }
}
