//! Embedding bags computed outside candle's autograd.
//!
//! candle's embedding backward is dense (a zero gradient the size of the whole table every
//! step). Here a bag's weighted mean is gathered straight from the table's storage into a
//! small leaf tensor; after the backward pass the leaf's gradient is scattered into a sparse
//! per-row gradient ([`RowGrads`]) that the sparse AdamW applies to the touched rows only.

use candle_core::{CpuStorage, Storage, Tensor};
use rayon::prelude::*;

use crate::error::{invalid, Result};

/// Weighted bags of table rows, one bag per example (CSR).
#[derive(Debug, Clone, Default)]
pub struct Bags {
    /// Start of each example's entries; `examples + 1` entries.
    pub offsets: Vec<usize>,
    /// Table rows.
    pub ids: Vec<u32>,
    /// Weight of each entry.
    pub weights: Vec<f32>,
}

impl Bags {
    /// An empty set of bags for 0 examples.
    pub fn new() -> Self {
        Self {
            offsets: vec![0],
            ids: Vec::new(),
            weights: Vec::new(),
        }
    }

    /// Appends one example's bag: each id weighted 1/len (a mean); an empty bag is all zeros.
    pub fn push_mean(&mut self, ids: impl IntoIterator<Item = u32>) {
        let start = self.ids.len();
        self.ids.extend(ids);
        let n = self.ids.len() - start;
        if n > 0 {
            let w = 1.0 / n as f32;
            self.weights.extend(std::iter::repeat_n(w, n));
        }
        self.offsets.push(self.ids.len());
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// True when there is no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entries(&self, example: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let (a, b) = (self.offsets[example], self.offsets[example + 1]);
        self.ids[a..b]
            .iter()
            .copied()
            .zip(self.weights[a..b].iter().copied())
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor.
pub fn with_f32_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(data)), Some((a, b))) => Ok(f(&data[a..b])),
        _ => Err(invalid(
            "embedding tables must be contiguous f32 tensors on the CPU",
        )),
    }
}

/// Adds each example's bag of `table` rows (`width` wide) into columns
/// `offset..offset + width` of `out`, a row-major `examples x stride` matrix.
pub fn gather(
    table: &[f32],
    width: usize,
    bags: &Bags,
    out: &mut [f32],
    offset: usize,
    stride: usize,
) -> Result<()> {
    if out.len() != bags.len() * stride || offset + width > stride {
        return Err(invalid("bag output has the wrong size"));
    }
    let rows = table.len() / width.max(1);
    if bags.ids.iter().any(|&id| id as usize >= rows) {
        return Err(invalid("bag id outside its table"));
    }
    out.par_chunks_mut(stride)
        .enumerate()
        .with_min_len(16)
        .for_each(|(example, row)| {
            let dst = &mut row[offset..offset + width];
            for (id, w) in bags.entries(example) {
                let src = &table[id as usize * width..(id as usize + 1) * width];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += w * s;
                }
            }
        });
    Ok(())
}

/// Sparse gradient of one table: the touched rows and their accumulated gradients.
#[derive(Debug, Clone)]
pub struct RowGrads {
    width: usize,
    slot_of: Vec<u32>,
    rows: Vec<u32>,
    grads: Vec<f32>,
}

const NO_SLOT: u32 = u32::MAX;

impl RowGrads {
    /// An empty gradient for a `rows x width` table.
    pub fn new(rows: usize, width: usize) -> Self {
        Self {
            width,
            slot_of: vec![NO_SLOT; rows],
            rows: Vec::new(),
            grads: Vec::new(),
        }
    }

    /// Row width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Adds `scale * grad` (one row's worth, `width` values) to row `row`.
    pub fn add(&mut self, row: u32, scale: f32, grad: &[f32]) {
        let width = self.width;
        let slot = match self.slot_of.get(row as usize) {
            Some(&NO_SLOT) => {
                let slot = self.rows.len();
                self.slot_of[row as usize] = slot as u32;
                self.rows.push(row);
                self.grads.resize(self.grads.len() + width, 0.0);
                slot
            }
            Some(&slot) => slot as usize,
            None => return,
        };
        let dst = &mut self.grads[slot * width..(slot + 1) * width];
        for (d, g) in dst.iter_mut().zip(grad) {
            *d += scale * g;
        }
    }

    /// Adds row k of `grad` (`ids.len() x width`, the gradient of a gathered batch of rows) to
    /// row `ids[k]`.
    pub fn add_rows(&mut self, ids: &[u32], grad: &Tensor) -> Result<()> {
        let width = self.width;
        with_f32_data(&grad.contiguous()?, |g| {
            for (row, &id) in g.chunks(width).zip(ids) {
                self.add(id, 1.0, row);
            }
        })
    }

    /// Scatters the gradient of a gathered bag feature (columns `offset..offset + width` of
    /// the `examples x stride` matrix `grad_out`) back onto the bag's rows.
    pub fn scatter(&mut self, grad_out: &[f32], offset: usize, stride: usize, bags: &Bags) {
        for example in 0..bags.len() {
            let g = &grad_out[example * stride + offset..example * stride + offset + self.width];
            for (id, w) in bags.entries(example) {
                self.add(id, w, g);
            }
        }
    }

    /// Rows in ascending order with their gradients (for the sparse AdamW), then clears.
    pub fn take_sorted(&mut self) -> (Vec<u32>, Vec<f32>) {
        let width = self.width;
        let mut order: Vec<u32> = (0..self.rows.len() as u32).collect();
        order.sort_unstable_by_key(|&s| self.rows[s as usize]);
        let rows: Vec<u32> = order.iter().map(|&s| self.rows[s as usize]).collect();
        let mut grads = Vec::with_capacity(self.grads.len());
        for &s in &order {
            grads.extend_from_slice(&self.grads[s as usize * width..(s as usize + 1) * width]);
        }
        for &r in &self.rows {
            self.slot_of[r as usize] = NO_SLOT;
        }
        self.rows.clear();
        self.grads.clear();
        (rows, grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_means_and_scatter_back() {
        // 3 rows x 2 wide table.
        let table = [1.0, 2.0, 10.0, 20.0, 100.0, 200.0];
        let mut bags = Bags::new();
        bags.push_mean([0, 2]);
        bags.push_mean([]);
        bags.push_mean([1]);
        let mut out = vec![0.0; 3 * 3];
        gather(&table, 2, &bags, &mut out, 1, 3).unwrap();
        assert_eq!(out, vec![0.0, 50.5, 101.0, 0.0, 0.0, 0.0, 0.0, 10.0, 20.0]);

        let grad_out = [9.0, 1.0, 2.0, 9.0, 5.0, 5.0, 9.0, 3.0, 4.0];
        let mut g = RowGrads::new(3, 2);
        g.scatter(&grad_out, 1, 3, &bags);
        g.add(2, 1.0, &[1.0, 1.0]);
        let (rows, grads) = g.take_sorted();
        assert_eq!(rows, vec![0, 1, 2]);
        assert_eq!(grads, vec![0.5, 1.0, 3.0, 4.0, 1.5, 2.0]);
        let (rows, _) = g.take_sorted();
        assert!(rows.is_empty());
    }
}
