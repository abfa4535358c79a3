//! The batch kernel of exact search, shaped like a matrix product.
//!
//! A block of item rows is packed into panels of 16 rows stored dimension-major, so one
//! query coordinate times one panel line gives 16 partial scores without horizontal sums.
//! The micro-kernel scores 4 queries x 16 rows per pass; it is compiled for AVX2 + FMA and
//! AVX-512 and picked at run time. Its sums are ordered differently from [`crate::kernel::dot`],
//! so callers re-score the final answers with `dot` (scores then match graph search exactly).

use crate::topk::{contains, Scored, TopK};
use crate::vectors::Catalogue;

/// Rows per panel.
pub(crate) const PANEL: usize = 16;
/// Queries per micro-kernel pass: 6 independent accumulator chains hide the FMA latency and
/// still fit the 16 AVX2 registers (12 accumulators + 2 panel lines).
pub(crate) const QTILE: usize = 6;

/// Packs rows `start..end` into panels: `buf[p * dim + k][r]` = row `start + 16p + r`,
/// coordinate `k` (zero past `end`).
pub(crate) fn pack(cat: &Catalogue, start: usize, end: usize, buf: &mut Vec<[f32; PANEL]>) {
    let dim = cat.dim;
    let panels = (end - start).div_ceil(PANEL);
    buf.clear();
    buf.resize(panels * dim, [0.0; PANEL]);
    for (p, panel) in buf.chunks_exact_mut(dim).enumerate() {
        let first = start + p * PANEL;
        for (r, row) in (first..end.min(first + PANEL)).enumerate() {
            for (line, &x) in panel.iter_mut().zip(cat.row(row as u32)) {
                line[r] = x;
            }
        }
    }
}

/// Scores of a query tile against a panel, bias added, and each query's best score.
type TileScores = ([[f32; PANEL]; QTILE], [f32; QTILE]);

/// Packs queries into tiles of `QTILE`: `tiles[t * dim + k][j]` = coordinate `k` of query
/// `t * QTILE + j` (zero for padding).
pub(crate) fn pack_queries(queries: &[&[f32]], dim: usize) -> Vec<[f32; QTILE]> {
    let tiles = queries.len().div_ceil(QTILE);
    let mut out = vec![[0f32; QTILE]; tiles * dim];
    for (i, q) in queries.iter().enumerate() {
        let (t, j) = (i / QTILE, i % QTILE);
        for (slot, &x) in out[t * dim..(t + 1) * dim].iter_mut().zip(q.iter()) {
            slot[j] = x;
        }
    }
    out
}

#[inline(always)]
fn micro_body<const FMA: bool>(
    panel: &[[f32; PANEL]],
    tile: &[[f32; QTILE]],
    bias: &[f32; PANEL],
) -> TileScores {
    let mut acc = [[0f32; PANEL]; QTILE];
    for (line, x) in panel.iter().zip(tile) {
        for (acc_q, &xq) in acc.iter_mut().zip(x) {
            for (a, &p) in acc_q.iter_mut().zip(line) {
                *a = if FMA { p.mul_add(xq, *a) } else { *a + p * xq };
            }
        }
    }
    let mut best = [f32::NEG_INFINITY; QTILE];
    for (acc_q, best_q) in acc.iter_mut().zip(&mut best) {
        for (a, b) in acc_q.iter_mut().zip(bias) {
            *a += b;
            *best_q = if *a > *best_q { *a } else { *best_q };
        }
    }
    (acc, best)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{micro_body, TileScores, PANEL, QTILE};
    use std::sync::LazyLock;

    /// 2: AVX-512F + FMA, 1: AVX2 + FMA, 0: neither.
    pub(super) static LEVEL: LazyLock<u8> = LazyLock::new(|| {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("fma") {
            2
        } else if has!("avx2") && has!("fma") {
            1
        } else {
            0
        }
    });

    #[target_feature(enable = "avx512f,fma")]
    pub(super) fn micro_avx512(
        panel: &[[f32; PANEL]],
        tile: &[[f32; QTILE]],
        bias: &[f32; PANEL],
    ) -> TileScores {
        micro_body::<true>(panel, tile, bias)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn micro_avx2(
        panel: &[[f32; PANEL]],
        tile: &[[f32; QTILE]],
        bias: &[f32; PANEL],
    ) -> TileScores {
        micro_body::<true>(panel, tile, bias)
    }
}

/// Scores (bias added) of `QTILE` queries against one packed panel, and each query's best.
#[inline]
fn micro(panel: &[[f32; PANEL]], tile: &[[f32; QTILE]], bias: &[f32; PANEL]) -> TileScores {
    #[cfg(target_arch = "x86_64")]
    match *x86::LEVEL {
        // SAFETY: the CPU has the features (checked at run time by LEVEL).
        2 => return unsafe { x86::micro_avx512(panel, tile, bias) },
        // SAFETY: as above.
        1 => return unsafe { x86::micro_avx2(panel, tile, bias) },
        _ => {}
    }
    micro_body::<false>(panel, tile, bias)
}

/// Offers rows `start..end` (packed in `packed`) to every query of a group (packed in `tiles`).
pub(crate) fn scan_packed(
    cat: &Catalogue,
    packed: &[[f32; PANEL]],
    start: usize,
    end: usize,
    tiles: &[[f32; QTILE]],
    excluded: &[&[u32]],
    tops: &mut [TopK],
) {
    let dim = cat.dim;
    let n_queries = tops.len();
    for (p, panel) in packed.chunks_exact(dim).enumerate() {
        let first = start + p * PANEL;
        let rows = PANEL.min(end - first);
        // rows past the end get -inf so that they never win
        let mut bias = [f32::NEG_INFINITY; PANEL];
        bias[..rows].copy_from_slice(&cat.bias[first..first + rows]);
        for (ti, tile) in tiles.chunks_exact(dim).enumerate() {
            let t = ti * QTILE;
            let (scores, best) = micro(panel, tile, &bias);
            for (j, scores_q) in scores.iter().enumerate().take(n_queries - t) {
                let (top, excl) = (&mut tops[t + j], excluded[t + j]);
                // most panels hold nothing good enough for this query
                if !top.may_accept(best[j]) {
                    continue;
                }
                for (r, &score) in scores_q.iter().enumerate().take(rows) {
                    let idx = (first + r) as u32;
                    if top.may_accept(score) && !contains(excl, idx) {
                        top.push(Scored { score, idx });
                    }
                }
            }
        }
    }
}
