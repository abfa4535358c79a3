//! Dot-product kernels shared by exact and graph search.
//!
//! `dot` and `dot4` add the same products in the same order, so one item gets bit-identical
//! scores from both; exact and approximate answers can be compared score for score. On x86_64
//! the kernels are compiled a second time with AVX2 enabled and picked at run time.

/// Accumulator lanes: 16 floats (two AVX2 or one AVX-512 register).
pub(crate) const LANES: usize = 16;

/// Sums the lanes pairwise (fixed order).
#[inline(always)]
pub(crate) fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0]
}

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    reduce(acc) + tail
}

#[inline(always)]
fn dot4_body(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    let n = rows.iter().fold(q.len(), |m, r| m.min(r.len()));
    let q = &q[..n];
    let rows = rows.map(|r| &r[..n]);
    let full = n - n % LANES;
    let mut acc = [[0f32; LANES]; 4];
    let mut start = 0;
    while start < full {
        let qc = &q[start..start + LANES];
        for (acc_r, row) in acc.iter_mut().zip(rows) {
            let rc = &row[start..start + LANES];
            for l in 0..LANES {
                acc_r[l] += qc[l] * rc[l];
            }
        }
        start += LANES;
    }
    let mut out = [0f32; 4];
    for ((o, acc_r), row) in out.iter_mut().zip(acc).zip(rows) {
        let mut tail = 0f32;
        for (x, y) in q[full..].iter().zip(&row[full..]) {
            tail += x * y;
        }
        *o = reduce(acc_r) + tail;
    }
    out
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::sync::LazyLock;

    /// Whether this CPU runs the AVX2 versions (shared with [`crate::quant`]).
    pub(crate) static HAS_AVX2: LazyLock<bool> =
        LazyLock::new(|| std::arch::is_x86_feature_detected!("avx2"));

    #[target_feature(enable = "avx2")]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::dot_body(a, b)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn dot4(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        super::dot4_body(q, rows)
    }
}

/// Dot product over the common length of `a` and `b`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if *x86::HAS_AVX2 {
        // SAFETY: the CPU supports AVX2 (checked at run time just above).
        return unsafe { x86::dot(a, b) };
    }
    dot_body(a, b)
}

/// Dot products of `q` with four rows at once; element `r` equals `dot(q, rows[r])` exactly.
#[inline]
pub fn dot4(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if *x86::HAS_AVX2 {
        // SAFETY: the CPU supports AVX2 (checked at run time just above).
        return unsafe { x86::dot4(q, rows) };
    }
    dot4_body(q, rows)
}

/// Hints the CPU to bring the cache line holding `p` into L1 (no effect elsewhere).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
}

/// Prefetches every cache line of `row`.
#[inline(always)]
pub(crate) fn prefetch_row(row: &[f32]) {
    for line in row.chunks(16) {
        prefetch(line.as_ptr());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_hand_computed_and_dot4_is_bit_identical() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.25).collect();
        let expected: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        assert!((f64::from(dot(&a, &b)) - expected).abs() < 1e-3);
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
        let rows: Vec<Vec<f32>> = (0..4)
            .map(|r| b.iter().map(|x| x * (r as f32 + 0.3)).collect())
            .collect();
        let four = dot4(&a, [&rows[0], &rows[1], &rows[2], &rows[3]]);
        for r in 0..4 {
            assert_eq!(four[r].to_bits(), dot(&a, &rows[r]).to_bits());
            assert_eq!(four[r].to_bits(), dot_body(&a, &rows[r]).to_bits());
        }
    }
}
