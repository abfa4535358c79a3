//! RBM-CF's contrastive-divergence step in candle ops, on any device (what `device = "cuda:N"`
//! runs): a batch's users are one block of tensors instead of a loop over users.
//!
//! A batch's rated items are its `n` entries `e = (user slot, item, level)`; every entry reads
//! the K rows `item * K + l` of W and b, gathered once as `n x K x F` and `n x K`. Eq. 2 is
//! `sigmoid(c + index_add over entries of sum_l V[e, l] W[item_e * K + l])` with V one-hot
//! (data, sampled levels) or the softmax probabilities (the final reconstruction); eq. 1 is a
//! softmax over each entry's K logits `b + W . h_user`. The eq. 6 statistics
//! `V_data h_data - P h_model` are `index_add`-ed into dense gradients of W and b, and the
//! momentum update is the CPU one on whole tensors. The random draws come from the host in the
//! CPU loop's order ([`Draws`]), so both paths sample the same chain up to float rounding.

use candle_core::{DType, Device, Tensor};
use nn::rng::Rng;

use super::Params;
use crate::error::Result;

/// The parameters and their momentum velocities on the device.
pub(super) struct DeviceParams {
    w: Tensor,
    b: Tensor,
    c: Tensor,
    vw: Tensor,
    vb: Tensor,
    vc: Tensor,
    /// Each level's rating value, `1 x K`.
    levels: Tensor,
    k: usize,
    f: usize,
}

/// The uniform draws of one batch, drawn in the CPU loop's order: per user, F for the first
/// hidden sample, then for each Gibbs step but the last one per rated item (its level) and F
/// (the next hidden sample).
pub(super) struct Draws {
    /// `B x F`: the first hidden sample.
    first: Vec<f32>,
    /// Per Gibbs step but the last: one per entry (`n`), then `B x F`.
    steps: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Draws {
    /// Draws for users with `counts[u]` rated items, `f` hidden units and `gibbs` steps.
    pub(super) fn new(rng: &mut Rng, counts: &[usize], f: usize, gibbs: usize) -> Self {
        let n: usize = counts.iter().sum();
        let b = counts.len();
        let mut first = vec![0f32; b * f];
        let mut steps = vec![(vec![0f32; n], vec![0f32; b * f]); gibbs.saturating_sub(1)];
        let mut start = 0;
        for (u, &count) in counts.iter().enumerate() {
            first[u * f..(u + 1) * f]
                .iter_mut()
                .for_each(|x| *x = rng.uniform() as f32);
            for (levels, hidden) in steps.iter_mut() {
                levels[start..start + count]
                    .iter_mut()
                    .for_each(|x| *x = rng.uniform() as f32);
                hidden[u * f..(u + 1) * f]
                    .iter_mut()
                    .for_each(|x| *x = rng.uniform() as f32);
            }
            start += count;
        }
        Self { first, steps }
    }
}

impl DeviceParams {
    /// A copy of `params` (K levels valued `levels`, F hidden units) on `device`, with zero
    /// velocities.
    pub(super) fn new(params: &Params, levels: &[f32], f: usize, device: &Device) -> Result<Self> {
        let k = levels.len();
        let rows = params.b.len();
        let w = Tensor::from_slice(&params.w, (rows, f), device)?;
        let b = Tensor::from_slice(&params.b, rows, device)?;
        let c = Tensor::from_slice(&params.c, f, device)?;
        Ok(Self {
            vw: w.zeros_like()?,
            vb: b.zeros_like()?,
            vc: c.zeros_like()?,
            w,
            b,
            c,
            levels: Tensor::from_slice(levels, (1, k), device)?,
            k,
            f,
        })
    }

    /// The parameters in host memory.
    pub(super) fn to_host(&self) -> Result<Params> {
        Ok(Params {
            w: self.w.flatten_all()?.to_vec1()?,
            b: self.b.to_vec1()?,
            c: self.c.to_vec1()?,
        })
    }

    /// Sets the parameters (the velocities stay, as on the CPU).
    pub(super) fn set(&mut self, params: &Params) -> Result<()> {
        let device = self.w.device().clone();
        self.w = Tensor::from_slice(&params.w, self.w.shape(), &device)?;
        self.b = Tensor::from_slice(&params.b, self.b.shape(), &device)?;
        self.c = Tensor::from_slice(&params.c, self.c.shape(), &device)?;
        Ok(())
    }

    /// One contrastive-divergence step (eq. 6, `gibbs` Gibbs steps) over the users whose rated
    /// items are `rated`, then the momentum update `v = momentum v + scale g - decay w` (decay
    /// on W only), `w += v`; returns the summed squared error of the final reconstruction's
    /// expected ratings against the data.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step(
        &mut self,
        rated: &[&[(u32, u8)]],
        draws: &Draws,
        gibbs: usize,
        momentum: f64,
        scale: f64,
        decay: f64,
    ) -> Result<f64> {
        let (k, f) = (self.k, self.f);
        let device = self.w.device().clone();
        let users = rated.len();
        let n: usize = rated.iter().map(|r| r.len()).sum();
        let mut slot = Vec::with_capacity(n);
        let mut rows = Vec::with_capacity(n * k);
        let mut data = vec![0f32; n * k];
        for (u, entries) in rated.iter().enumerate() {
            for &(item, level) in entries.iter() {
                data[slot.len() * k + level as usize] = 1.0;
                slot.push(u as u32);
                rows.extend((0..k as u32).map(|l| item * k as u32 + l));
            }
        }
        let slot = Tensor::from_vec(slot, n, &device)?;
        let rows = Tensor::from_vec(rows, n * k, &device)?;
        let data = Tensor::from_vec(data, (n, k), &device)?;
        let w = self.w.index_select(&rows, 0)?.reshape((n, k, f))?;
        let b = self.b.index_select(&rows, 0)?.reshape((n, k))?;
        let zeros = Tensor::zeros((users, f), DType::F32, &device)?;
        // Eq. 2 for visible units V (`n x K`).
        let hidden = |v: &Tensor| -> Result<Tensor> {
            let per_entry = v.unsqueeze(2)?.broadcast_mul(&w)?.sum(1)?;
            let pre = zeros
                .index_add(&slot, &per_entry, 0)?
                .broadcast_add(&self.c)?;
            Ok(candle_nn::ops::sigmoid(&pre)?)
        };
        let sample = |p: &Tensor, u: &[f32]| -> Result<Tensor> {
            let u = Tensor::from_slice(u, (users, f), &device)?;
            Ok(u.lt(p)?.to_dtype(DType::F32)?)
        };
        let data_h = hidden(&data)?;
        let mut h = sample(&data_h, &draws.first)?;
        let mut probs = data.zeros_like()?;
        let mut model_h = data_h.zeros_like()?;
        for t in 1..=gibbs {
            // Eq. 1: each entry's K logits b + W . h_user.
            let h_entry = h.index_select(&slot, 0)?.unsqueeze(1)?;
            let logits = (w.broadcast_mul(&h_entry)?.sum(2)? + &b)?;
            probs = candle_nn::ops::softmax_last_dim(&logits)?;
            if t == gibbs {
                // The final reconstruction enters as probabilities (less sampling noise).
                model_h = hidden(&probs)?;
                break;
            }
            let (level_draws, hidden_draws) = &draws.steps[t - 1];
            let x = Tensor::from_slice(level_draws, (n, 1), &device)?;
            // The sampled level: the first l whose running sum of probabilities exceeds x
            // (summed level by level, as on the CPU), the last level when none does.
            let mut below = Tensor::zeros((n, 1), DType::F32, &device)?;
            let mut acc = Tensor::zeros((n, 1), DType::F32, &device)?;
            for l in 0..k {
                acc = (acc + probs.narrow(1, l, 1)?)?;
                below = (below + acc.le(&x)?.to_dtype(DType::F32)?)?;
            }
            let level = below.clamp(0f32, (k - 1) as f32)?;
            let all = Tensor::arange(0f32, k as f32, &device)?.reshape((1, k))?;
            let one_hot = all.broadcast_eq(&level)?.to_dtype(DType::F32)?;
            model_h = hidden(&one_hot)?;
            h = sample(&model_h, hidden_draws)?;
        }
        // Eq. 6's statistics, data minus reconstruction.
        let at = |t: &Tensor| -> Result<Tensor> { Ok(t.index_select(&slot, 0)?.unsqueeze(1)?) };
        let positive = data.unsqueeze(2)?.broadcast_mul(&at(&data_h)?)?;
        let negative = probs.unsqueeze(2)?.broadcast_mul(&at(&model_h)?)?;
        let g_entries = (positive - negative)?.reshape((n * k, f))?;
        let gw = self.w.zeros_like()?.index_add(&rows, &g_entries, 0)?;
        let g_b = (&data - &probs)?.flatten_all()?;
        let gb = self.b.zeros_like()?.index_add(&rows, &g_b, 0)?;
        let gc = (&data_h - &model_h)?.sum(0)?;
        let expected = probs.broadcast_mul(&self.levels)?.sum(1)?;
        let actual = data.broadcast_mul(&self.levels)?.sum(1)?;
        let squared = (expected - actual)?.sqr()?.sum_all()?.to_scalar::<f32>()?;

        let update = |w: &Tensor, g: &Tensor, v: &Tensor, decay: f64| -> Result<(Tensor, Tensor)> {
            let v =
                ((v.affine(momentum, 0.0)? + g.affine(scale, 0.0)?)? - w.affine(decay, 0.0)?)?;
            Ok(((w + &v)?, v))
        };
        (self.w, self.vw) = update(&self.w, &gw, &self.vw, decay)?;
        (self.b, self.vb) = update(&self.b, &gb, &self.vb, 0.0)?;
        (self.c, self.vc) = update(&self.c, &gc, &self.vc, 0.0)?;
        Ok(f64::from(squared))
    }
}
