//! Allocation-free AdamW: dense (every element of a variable) and sparse (chosen rows of a
//! table, "lazy" AdamW: a row's moments and decay advance only on steps that touch it).
//!
//! On the CPU both update the variables' storage in place through candle's `InplaceOp`s,
//! instead of building new tensors as `candle_nn::AdamW` does (STACK-NOTES: its buffers
//! dominated a step). Built [`InPlaceAdamW::for_compute`] with candle ops
//! ([`crate::compute::Compute::Candle`], any device), the moments are tensors on the variables'
//! device and the same update is written in candle ops; a sparse step reads the touched rows
//! with `index_select` and writes them back in place with `scatter_set`.

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::*;

use crate::compute::Compute;
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

impl Coefficients {
    /// [`Self::update`] in candle ops: returns the new `(w, m, v)`.
    fn update_tensors(
        &self,
        w: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let f = |x: f32| x as f64;
        let m = m
            .affine(f(self.beta1), 0.0)?
            .add(&g.affine(f(1.0 - self.beta1), 0.0)?)?;
        let v = v
            .affine(f(self.beta2), 0.0)?
            .add(&g.sqr()?.affine(f(1.0 - self.beta2), 0.0)?)?;
        let m_hat = m.affine(f(self.scale_m), 0.0)?;
        let denominator = v
            .affine(f(self.scale_v), 0.0)?
            .sqrt()?
            .affine(1.0, f(self.eps))?;
        let step = m_hat.affine(f(self.lr), 0.0)?.div(&denominator)?;
        let w = w.affine(f(self.decay), 0.0)?.sub(&step)?;
        Ok((w, m, v))
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

/// Moments of one variable: in host memory for the fused kernels, or tensors on the variable's
/// device for the candle-op update.
#[derive(Debug)]
enum Moments {
    Host { m: Vec<f32>, v: Vec<f32> },
    Device { m: Tensor, v: Tensor },
}

impl Moments {
    fn zeros(var: &Var, fused: bool) -> Result<Self> {
        let t = var.as_tensor();
        Ok(if fused {
            let n = t.elem_count();
            Self::Host {
                m: vec![0.0; n],
                v: vec![0.0; n],
            }
        } else {
            Self::Device {
                m: Tensor::zeros(t.shape(), DType::F32, t.device())?,
                v: Tensor::zeros(t.shape(), DType::F32, t.device())?,
            }
        })
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
    /// The fused CPU kernels update the variables.
    pub fn new(dense: Vec<Var>, sparse: Vec<(Var, usize)>, params: AdamWParams) -> Self {
        let host = |var: &Var| Moments::Host {
            m: vec![0.0; var.elem_count()],
            v: vec![0.0; var.elem_count()],
        };
        Self {
            dense: dense
                .into_iter()
                .map(|var| {
                    let moments = host(&var);
                    (var, moments)
                })
                .collect(),
            sparse: sparse
                .into_iter()
                .map(|(var, width)| {
                    let moments = host(&var);
                    (var, width, moments)
                })
                .collect(),
            step: 0,
            params,
        }
    }

    /// [`Self::new`], updating with the fused kernels or, for [`Compute::Candle`], with candle
    /// ops on the variables' device.
    pub fn for_compute(
        compute: &Compute,
        dense: Vec<Var>,
        sparse: Vec<(Var, usize)>,
        params: AdamWParams,
    ) -> Result<Self> {
        let fused = compute.is_fused_cpu();
        let dense = dense
            .into_iter()
            .map(|var| {
                let moments = Moments::zeros(&var, fused)?;
                Ok((var, moments))
            })
            .collect::<Result<Vec<_>>>()?;
        let sparse = sparse
            .into_iter()
            .map(|(var, width)| {
                let moments = Moments::zeros(&var, fused)?;
                Ok((var, width, moments))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            dense,
            sparse,
            step: 0,
            params,
        })
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
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            match moments {
                Moments::Host { m, v } => {
                    let g = g.contiguous()?;
                    let op = DenseUpdate {
                        m: RefCell::new(m),
                        v: RefCell::new(v),
                        coef,
                    };
                    var.as_tensor().inplace_op2(&g, &op)?;
                }
                Moments::Device { m, v } => {
                    let (w2, m2, v2) = coef.update_tensors(var.as_tensor(), g, m, v)?;
                    var.set(&w2)?;
                    (*m, *v) = (m2, v2);
                }
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
        match moments {
            Moments::Host { m, v } => {
                let op = SparseUpdate {
                    rows,
                    grads,
                    width: *width,
                    m: RefCell::new(m),
                    v: RefCell::new(v),
                    coef,
                };
                var.as_tensor().inplace_op1(&op)?;
            }
            Moments::Device { .. } => {
                let device = var.as_tensor().device().clone();
                let g = Tensor::from_slice(grads, (rows.len(), *width), &device)?;
                return self.step_rows_tensor(table, rows, &g);
            }
        }
        Ok(())
    }

    /// [`Self::step_rows`] with the gradient rows as a `rows.len() x width` tensor (on the
    /// table's device for the candle-op update, which then never leaves the device).
    pub fn step_rows_tensor(&mut self, table: usize, rows: &[u32], grads: &Tensor) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let coef = Coefficients::new(&self.params, self.step.max(1));
        let Some((var, width, moments)) = self.sparse.get_mut(table) else {
            return Err(invalid(format!("no sparse table {table}")));
        };
        let width = *width;
        let (m, v) = match moments {
            Moments::Host { .. } => {
                let g = grads.flatten_all()?.to_vec1::<f32>()?;
                return self.step_rows(table, rows, &g);
            }
            Moments::Device { m, v } => (m, v),
        };
        let w = var.as_tensor();
        let table_rows = w.elem_count() / width.max(1);
        if grads.dims() != [rows.len(), width]
            || rows.windows(2).any(|p| p[0] >= p[1])
            || rows.last().is_some_and(|&r| r as usize >= table_rows)
        {
            return Err(invalid(
                "sparse AdamW rows must be sorted, unique and inside the table, one gradient row \
                 each",
            ));
        }
        let shape = (table_rows, width);
        let (w2d, m2d, v2d) = (w.reshape(shape)?, m.reshape(shape)?, v.reshape(shape)?);
        let idx = Tensor::from_slice(rows, rows.len(), w.device())?;
        let (w_rows, m_rows, v_rows) = (
            w2d.index_select(&idx, 0)?,
            m2d.index_select(&idx, 0)?,
            v2d.index_select(&idx, 0)?,
        );
        let (w_new, m_new, v_new) = coef.update_tensors(&w_rows, grads, &m_rows, &v_rows)?;
        let at = idx
            .unsqueeze(1)?
            .broadcast_as((rows.len(), width))?
            .contiguous()?;
        w2d.scatter_set(&at, &w_new, 0)?;
        m2d.scatter_set(&at, &m_new, 0)?;
        v2d.scatter_set(&at, &v_new, 0)?;
        Ok(())
    }

    /// The standard single-step API: advance and update every dense variable.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.begin_step();
        self.step_dense(grads)
    }
}
