//! Embedding tables trained sparsely: each step reads and updates only the rows its batch
//! touches, with a lazy AdamW (moments and decoupled weight decay of a row advance only when
//! the row gets a gradient), so a step costs the same whatever the vocabulary size. A dense
//! gradient and optimiser step over a 100k x 32 table made a step allocate and update the
//! whole table: 2.4k examples/s against 13.6k at 5k items.

use candle_core::{Device, Tensor, Var};

use crate::error::Result;
use crate::rng::SplitMix64;

/// Marks a row that the current batch does not use.
const FREE: u32 = u32::MAX;

/// AdamW settings shared with the dense optimiser.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// A `rows` x `dim` table with its AdamW moments.
pub(crate) struct SparseEmbedding {
    values: Vec<f32>,
    first: Vec<f32>,
    second: Vec<f32>,
    rows: usize,
    dim: usize,
    /// Per row: its index in the current batch's compact table, or [`FREE`].
    slots: Vec<u32>,
    /// Rows of the current batch's compact table, in order.
    touched: Vec<u32>,
}

impl SparseEmbedding {
    /// A table initialised by [`crate::model::initial_table`] (at least one row).
    pub fn new(rows: usize, dim: usize, rng: &mut SplitMix64) -> Self {
        let rows = rows.max(1);
        Self {
            values: crate::model::initial_table(rows, dim, rng),
            first: vec![0.0; rows * dim],
            second: vec![0.0; rows * dim],
            rows,
            dim,
            slots: vec![FREE; rows],
            touched: Vec::new(),
        }
    }

    /// Rewrites the ids in `lists` (all indexing this table) to indices of a compact table of
    /// the rows they use, and returns that compact table as a variable to differentiate.
    pub fn localize(&mut self, lists: &mut [&mut Vec<u32>], device: &Device) -> Result<Var> {
        for list in lists.iter_mut() {
            for id in list.iter_mut() {
                let slot = &mut self.slots[*id as usize];
                if *slot == FREE {
                    *slot = self.touched.len() as u32;
                    self.touched.push(*id);
                }
                *id = *slot;
            }
        }
        let dim = self.dim;
        let mut rows = Vec::with_capacity(self.touched.len() * dim);
        for &row in &self.touched {
            let start = row as usize * dim;
            rows.extend_from_slice(&self.values[start..start + dim]);
        }
        Ok(Var::from_tensor(&Tensor::from_vec(
            rows,
            (self.touched.len(), dim),
            device,
        )?)?)
    }

    /// Applies the compact table's gradient (`None`: the rows got none) to the touched rows
    /// at optimiser step `step` (1-based), then forgets the batch.
    pub fn update(&mut self, gradient: Option<&Tensor>, step: i32, adam: &AdamW) -> Result<()> {
        if let Some(gradient) = gradient {
            let gradient = gradient.flatten_all()?.to_vec1::<f32>()?;
            let (b1, b2) = (adam.beta1 as f32, adam.beta2 as f32);
            let scale_m = 1.0 / (1.0 - adam.beta1.powi(step)) as f32;
            let scale_v = 1.0 / (1.0 - adam.beta2.powi(step)) as f32;
            let (lr, eps) = (adam.lr as f32, adam.eps as f32);
            let decay = 1.0 - (adam.lr * adam.weight_decay) as f32;
            for (k, &row) in self.touched.iter().enumerate() {
                let range = row as usize * self.dim..(row as usize + 1) * self.dim;
                let g = &gradient[k * self.dim..(k + 1) * self.dim];
                let theta = &mut self.values[range.clone()];
                let m = &mut self.first[range.clone()];
                let v = &mut self.second[range];
                for j in 0..self.dim {
                    m[j] = b1 * m[j] + (1.0 - b1) * g[j];
                    v[j] = b2 * v[j] + (1.0 - b2) * g[j] * g[j];
                    let update = (m[j] * scale_m) / ((v[j] * scale_v).sqrt() + eps);
                    theta[j] = theta[j] * decay - lr * update;
                }
            }
        }
        for &row in &self.touched {
            self.slots[row as usize] = FREE;
        }
        self.touched.clear();
        Ok(())
    }

    /// The table's current values as a `[rows, dim]` tensor.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.values,
            (self.rows, self.dim),
            device,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localize_compacts_ids_and_update_touches_only_their_rows() -> Result<()> {
        let device = Device::Cpu;
        let mut table = SparseEmbedding::new(5, 2, &mut SplitMix64::new(1));
        let before = table.values.clone();
        let (mut a, mut b) = (vec![4, 1, 4], vec![1, 3]);
        let local = table.localize(&mut [&mut a, &mut b], &device)?;
        assert_eq!((a, b), (vec![0, 1, 0], vec![1, 2]));
        let rows = local.as_tensor().to_vec2::<f32>()?;
        assert_eq!(rows[0], before[8..10].to_vec());
        let adam = AdamW {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let gradient = Tensor::from_slice(&[1f32, -1.0, 0.0, 0.0, 2.0, 2.0], (3, 2), &device)?;
        table.update(Some(&gradient), 1, &adam)?;
        // First Adam step: each coordinate moves by lr against its gradient's sign (zero stays).
        let after = &table.values;
        assert!(
            (after[8] - (before[8] - 0.1)).abs() < 1e-6
                && (after[9] - (before[9] + 0.1)).abs() < 1e-6
        );
        assert_eq!(&after[2..4], &before[2..4]);
        assert!((after[6] - (before[6] - 0.1)).abs() < 1e-6);
        assert_eq!(&after[0..2], &before[0..2]);
        assert!(table.touched.is_empty() && table.slots.iter().all(|&s| s == FREE));
        Ok(())
    }
}
