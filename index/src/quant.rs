//! 8-bit copies of the vectors for walking the graph.
//!
//! Graph search is bound by memory traffic: an f32 row of 64 dims is four cache lines, its
//! int8 code one. Codes use one scale per dimension (`max |v_k| / 127`), so a query is
//! prepared once as `u_k * s_k` and a score is `sum(prepared_k * code_k) + b`. Only the walk
//! uses these scores; answers are re-scored with the f32 vectors.

use rayon::prelude::*;

use crate::kernel::{prefetch, reduce, LANES};
use crate::vectors::Catalogue;

/// Codes per cache line.
const LINE: usize = 64;

/// The code step of a dimension whose largest `|v_k|` is `max`.
#[inline]
fn scale(max: f32) -> f32 {
    if max > 0.0 {
        max / 127.0
    } else {
        1.0
    }
}

/// One 64-byte-aligned cache line of codes.
#[derive(Clone, Copy)]
#[repr(align(64))]
pub(crate) struct Line([i8; LINE]);

/// int8 codes of every row, each row padded to whole cache lines.
pub(crate) struct Quantized {
    /// Per dimension, the largest `|v_k|` coded (the scale is `max / 127`, see [`scale`]).
    max: Vec<f32>,
    lines_per_row: usize,
    codes: Vec<Line>,
}

impl Quantized {
    /// Quantizes the catalogue's vectors.
    pub(crate) fn new(cat: &Catalogue) -> Self {
        let dim = cat.dim;
        let max = cat
            .floats()
            .par_chunks(dim * 4096)
            .map(|rows| {
                let mut max = vec![0f32; dim];
                for row in rows.chunks_exact(dim) {
                    for (m, &x) in max.iter_mut().zip(row) {
                        *m = m.max(x.abs());
                    }
                }
                max
            })
            .reduce(
                || vec![0f32; dim],
                |a, b| a.iter().zip(&b).map(|(x, y)| x.max(*y)).collect(),
            );
        let lines_per_row = dim.div_ceil(LINE);
        let mut quant = Quantized {
            max,
            lines_per_row,
            codes: Vec::new(),
        };
        quant.encode(cat.floats());
        quant
    }

    /// Appends the codes of the row-major rows `floats`.
    fn encode(&mut self, floats: &[f32]) {
        let dim = self.max.len();
        let scales: Vec<f32> = self.max.iter().map(|&m| scale(m)).collect();
        let start = self.codes.len();
        let rows = floats.len() / dim;
        self.codes
            .resize(start + rows * self.lines_per_row, Line([0; LINE]));
        floats
            .par_chunks_exact(dim)
            .zip(self.codes[start..].par_chunks_exact_mut(self.lines_per_row))
            .for_each(|(row, lines)| {
                for (k, (&x, &s)) in row.iter().zip(&scales).enumerate() {
                    lines[k / LINE].0[k % LINE] = (x / s).round().clamp(-127.0, 127.0) as i8;
                }
            });
    }

    /// Brings the codes up to date after rows `from..` were appended to `cat`: their codes
    /// are appended when every value is within the per-dimension range already coded (the
    /// scales then stay those of the whole catalogue), otherwise everything is re-quantized
    /// with the wider range. Either way the result equals [`Quantized::new`] of `cat`.
    /// Returns true when everything was re-quantized.
    pub(crate) fn extend(&mut self, cat: &Catalogue, from: usize) -> bool {
        let new = cat.floats().get(from * cat.dim..).unwrap_or(&[]);
        let within = new
            .chunks_exact(cat.dim)
            .all(|row| row.iter().zip(&self.max).all(|(x, &m)| x.abs() <= m));
        if within && self.max.len() == cat.dim {
            self.encode(new);
            false
        } else {
            *self = Quantized::new(cat);
            true
        }
    }

    /// The query scaled per dimension and zero-padded to whole lines.
    pub(crate) fn prepare(&self, query: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; self.lines_per_row * LINE];
        for ((o, &x), &m) in out.iter_mut().zip(query).zip(&self.max) {
            *o = x * scale(m);
        }
        out
    }

    /// Codes of row `i`.
    #[inline]
    fn row(&self, i: u32) -> &[Line] {
        let start = i as usize * self.lines_per_row;
        &self.codes[start..start + self.lines_per_row]
    }

    /// Approximate `u . v_i` for a prepared query.
    #[inline]
    pub(crate) fn dot(&self, prepared: &[f32], i: u32) -> f32 {
        dispatch_dot(prepared, self.row(i))
    }

    /// Approximate `u . v` for four rows.
    #[inline]
    pub(crate) fn dot4(&self, prepared: &[f32], i: [u32; 4]) -> [f32; 4] {
        dispatch_dot4(prepared, i.map(|i| self.row(i)))
    }

    /// Prefetches the codes of row `i`.
    #[inline]
    pub(crate) fn prefetch(&self, i: u32) {
        for line in self.row(i) {
            prefetch(line);
        }
    }

    /// Bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.codes.len() * LINE + self.max.len() * 4
    }
}

#[inline(always)]
fn dot_body(q: &[f32], row: &[Line]) -> f32 {
    let mut acc = [0f32; LANES];
    for (line, ql) in row.iter().zip(q.chunks_exact(LINE)) {
        for (c, x) in line.0.chunks_exact(LANES).zip(ql.chunks_exact(LANES)) {
            for l in 0..LANES {
                acc[l] += f32::from(c[l]) * x[l];
            }
        }
    }
    reduce(acc)
}

#[inline(always)]
fn dot4_body(q: &[f32], rows: [&[Line]; 4]) -> [f32; 4] {
    let mut acc = [[0f32; LANES]; 4];
    for (j, ql) in q.chunks_exact(LINE).enumerate() {
        for (acc_r, row) in acc.iter_mut().zip(rows) {
            let Some(line) = row.get(j) else { continue };
            for (c, x) in line.0.chunks_exact(LANES).zip(ql.chunks_exact(LANES)) {
                for l in 0..LANES {
                    acc_r[l] += f32::from(c[l]) * x[l];
                }
            }
        }
    }
    acc.map(reduce)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Line;
    pub(super) use crate::kernel::x86::HAS_AVX2;

    #[target_feature(enable = "avx2")]
    pub(super) fn dot(q: &[f32], row: &[Line]) -> f32 {
        super::dot_body(q, row)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn dot4(q: &[f32], rows: [&[Line]; 4]) -> [f32; 4] {
        super::dot4_body(q, rows)
    }
}

#[inline]
fn dispatch_dot(q: &[f32], row: &[Line]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if *x86::HAS_AVX2 {
        // SAFETY: the CPU supports AVX2 (checked at run time just above).
        return unsafe { x86::dot(q, row) };
    }
    dot_body(q, row)
}

#[inline]
fn dispatch_dot4(q: &[f32], rows: [&[Line]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if *x86::HAS_AVX2 {
        // SAFETY: the CPU supports AVX2 (checked at run time just above).
        return unsafe { x86::dot4(q, rows) };
    }
    dot4_body(q, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::{Catalogue, Floats};

    #[test]
    fn int8_scores_track_exact_scores() {
        let dim = 70; // two lines per row, the second partly padding
        let n = 50;
        let data: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 0.3)
            .collect();
        let cat = Catalogue::new(
            (0..n as i64).collect(),
            dim,
            Floats::Owned(data),
            vec![0.0; n],
        )
        .unwrap();
        let quant = Quantized::new(&cat);
        let query: Vec<f32> = (0..dim).map(|k| (k as f32 * 0.13).sin()).collect();
        let prepared = quant.prepare(&query);
        let step = quant.max.iter().fold(0f32, |a, &m| a.max(scale(m)));
        let bound = query.iter().map(|x| x.abs()).sum::<f32>() * step / 2.0 + 1e-5;
        for i in 0..n as u32 {
            let exact = crate::kernel::dot(&query, cat.row(i));
            let approx = quant.dot(&prepared, i);
            assert!(
                (exact - approx).abs() <= bound,
                "{exact} vs {approx} (bound {bound})"
            );
        }
        let four = quant.dot4(&prepared, [0, 7, 13, 49]);
        for (j, i) in [0u32, 7, 13, 49].into_iter().enumerate() {
            assert_eq!(four[j].to_bits(), quant.dot(&prepared, i).to_bits());
        }
    }
}
