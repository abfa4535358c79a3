//! Allocation-free AdamW: dense (every element of a variable) and sparse (chosen rows of a
//! table, "lazy" AdamW: a row's moments and decay advance only on steps that touch it).
//!
//! Both update the variables' storage in place through candle's `InplaceOp`s, instead of
//! building new tensors as `candle_nn::AdamW` does (STACK-NOTES: its buffers dominated a step).
//! The kernels run on CPU storage; other devices report an error.

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Var};
use rayon::prelude::*;

use crate::error::{invalid, Result};

/// Elements per parallel chunk of the dense update.
const CHUNK: usize = 1 << 14;

/// AdamW hyper-parameters (same meaning as `candle_nn::ParamsAdamW`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// The per-step scalars of the update, computed once per step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Coefficients {
    beta1: f32,
    beta2: f32,
    scale_m: f32,
    scale_v: f32,
    eps: f32,
    lr: f32,
    decay: f32,
}

impl Coefficients {
    pub(crate) fn new(p: &AdamWParams, step: usize) -> Self {
        let t = step.min(i32::MAX as usize) as i32;
        Self {
            beta1: p.beta1 as f32,
            beta2: p.beta2 as f32,
            scale_m: (1.0 / (1.0 - p.beta1.powi(t))) as f32,
            scale_v: (1.0 / (1.0 - p.beta2.powi(t))) as f32,
            eps: p.eps as f32,
            lr: p.lr as f32,
            decay: (1.0 - p.lr * p.weight_decay) as f32,
        }
    }

    #[inline]
    pub(crate) fn update(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            let m_hat = *m * self.scale_m;
            let v_hat = *v * self.scale_v;
            *w = *w * self.decay - self.lr * m_hat / (v_hat.sqrt() + self.eps);
        }
    }
}

fn f32_slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> candle_core::Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((a, b))) => Ok(&mut data[a..b]),
        _ => candle_core::bail!("in-place AdamW needs a contiguous f32 variable"),
    }
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((a, b))) => Ok(&data[a..b]),
        _ => candle_core::bail!("in-place AdamW needs a contiguous f32 gradient"),
    }
}

/// Dense update of one variable given its gradient.
struct DenseUpdate<'a> {
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    coef: Coefficients,
}

impl InplaceOp2 for DenseUpdate<'_> {
    fn name(&self) -> &'static str {
        "adamw-dense"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let w = f32_slice_mut(s1, l1)?;
        let g = f32_slice(s2, l2)?;
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if w.len() != g.len() || w.len() != m.len() || w.len() != v.len() {
            candle_core::bail!("AdamW state and gradient sizes disagree");
        }
        let coef = self.coef;
        w.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((w, g), m), v)| coef.update(w, g, m, v));
        Ok(())
    }
}

/// Row-wise update of a `rows x width` table: `rows` are unique and sorted, `grads` holds one
/// gradient row per entry of `rows`.
struct SparseUpdate<'a> {
    rows: &'a [u32],
    grads: &'a [f32],
    width: usize,
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    coef: Coefficients,
}

/// Splits `data` into the disjoint `width`-wide rows listed (sorted, unique) in `rows`.
fn pick_rows<'a>(
    mut data: &'a mut [f32],
    rows: &[u32],
    width: usize,
) -> candle_core::Result<Vec<&'a mut [f32]>> {
    let mut picked = Vec::with_capacity(rows.len());
    let mut base = 0usize;
    for &r in rows {
        let start = r as usize * width;
        if start < base || start + width - base > data.len() {
            candle_core::bail!("sparse AdamW rows must be sorted, unique and inside the table");
        }
        let (_, tail) = std::mem::take(&mut data).split_at_mut(start - base);
        let (row, rest) = tail.split_at_mut(width);
        picked.push(row);
        data = rest;
        base = start + width;
    }
    Ok(picked)
}

impl InplaceOp1 for SparseUpdate<'_> {
    fn name(&self) -> &'static str {
        "adamw-sparse"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let w = f32_slice_mut(s, l)?;
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if w.len() != m.len()
            || w.len() != v.len()
            || self.grads.len() != self.rows.len() * self.width
        {
            candle_core::bail!("sparse AdamW state and gradient sizes disagree");
        }
        let w_rows = pick_rows(w, self.rows, self.width)?;
        let m_rows = pick_rows(&mut m, self.rows, self.width)?;
        let v_rows = pick_rows(&mut v, self.rows, self.width)?;
        let coef = self.coef;
        w_rows
            .into_par_iter()
            .zip(m_rows.into_par_iter())
            .zip(v_rows.into_par_iter())
            .zip(self.grads.par_chunks(self.width))
            .with_min_len(64)
            .for_each(|(((w, m), v), g)| coef.update(w, g, m, v));
        Ok(())
    }
}

/// Moments of one variable.
#[derive(Debug)]
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Moments {
    fn zeros(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }
}

/// AdamW over dense variables and sparse tables, updating in place.
#[derive(Debug)]
pub struct InPlaceAdamW {
    dense: Vec<(Var, Moments)>,
    sparse: Vec<(Var, usize, Moments)>,
    step: usize,
    params: AdamWParams,
}

impl InPlaceAdamW {
    /// An optimiser for `dense` variables (updated whole from a `GradStore`) and `sparse`
    /// tables `(variable, row width)` (updated row by row with [`Self::step_rows`]).
    pub fn new(dense: Vec<Var>, sparse: Vec<(Var, usize)>, params: AdamWParams) -> Self {
        let dense = dense
            .into_iter()
            .map(|var| {
                let n = var.elem_count();
                (var, Moments::zeros(n))
            })
            .collect();
        let sparse = sparse
            .into_iter()
            .map(|(var, width)| {
                let n = var.elem_count();
                (var, width, Moments::zeros(n))
            })
            .collect();
        Self {
            dense,
            sparse,
            step: 0,
            params,
        }
    }

    /// Current hyper-parameters.
    pub fn params(&self) -> AdamWParams {
        self.params
    }

    /// Changes the learning rate (for schedules).
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// Steps taken so far (the bias-correction step count).
    pub fn steps(&self) -> usize {
        self.step
    }

    /// Advances the step counter; call once per training step before the updates.
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// Updates every dense variable that has a gradient in `grads`.
    pub fn step_dense(&mut self, grads: &GradStore) -> Result<()> {
        let coef = Coefficients::new(&self.params, self.step.max(1));
        for (var, moments) in &mut self.dense {
            if let Some(g) = grads.get(var.as_tensor()) {
                let g = g.contiguous()?;
                let op = DenseUpdate {
                    m: RefCell::new(&mut moments.m),
                    v: RefCell::new(&mut moments.v),
                    coef,
                };
                var.as_tensor().inplace_op2(&g, &op)?;
            }
        }
        Ok(())
    }

    /// Updates the listed rows of sparse table `table` (index in the `sparse` list given to
    /// [`Self::new`]); `rows` sorted and unique, `grads` one row of gradient per entry.
    pub fn step_rows(&mut self, table: usize, rows: &[u32], grads: &[f32]) -> Result<()> {
        let coef = Coefficients::new(&self.params, self.step.max(1));
        let Some((var, width, moments)) = self.sparse.get_mut(table) else {
            return Err(invalid(format!("no sparse table {table}")));
        };
        let op = SparseUpdate {
            rows,
            grads,
            width: *width,
            m: RefCell::new(&mut moments.m),
            v: RefCell::new(&mut moments.v),
            coef,
        };
        var.as_tensor().inplace_op1(&op)?;
        Ok(())
    }

    /// The standard single-step API: advance and update every dense variable.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.begin_step();
        self.step_dense(grads)
    }
}
