//! Small dense linear algebra on the CPU (d x d systems for closed-form fits).

use crate::error::{invalid, Result};

/// Solves `A X = B` for symmetric positive definite `A` (`n x n`, row-major) and `B`
/// (`n x m`, row-major) by Cholesky factorisation; returns X (`n x m`).
pub fn solve_spd(a: &[f64], n: usize, b: &[f64], m: usize) -> Result<Vec<f64>> {
    if a.len() != n * n || b.len() != n * m {
        return Err(invalid("solve_spd: sizes disagree"));
    }
    // A = L L^T, L lower triangular.
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return Err(invalid("solve_spd: the matrix is not positive definite"));
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut x = b.to_vec();
    for c in 0..m {
        // L y = b, then L^T x = y.
        for i in 0..n {
            let mut s = x[i * m + c];
            for k in 0..i {
                s -= l[i * n + k] * x[k * m + c];
            }
            x[i * m + c] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut s = x[i * m + c];
            for k in i + 1..n {
                s -= l[k * n + i] * x[k * m + c];
            }
            x[i * m + c] = s / l[i * n + i];
        }
    }
    Ok(x)
}

/// Ridge regression `W = (X^T X + lambda I)^-1 X^T Y` for rows `x` (`rows x p`) and targets
/// `y` (`rows x q`); returns W (`p x q`, row-major). `lambda` is relative to the mean diagonal
/// of `X^T X`, so the fit does not depend on the scale of X.
pub fn ridge(x: &[f32], p: usize, y: &[f32], q: usize, lambda: f64) -> Result<Vec<f64>> {
    if p == 0 || !x.len().is_multiple_of(p) || y.len() != x.len() / p * q {
        return Err(invalid("ridge: sizes disagree"));
    }
    let rows = x.len() / p;
    let mut xtx = vec![0f64; p * p];
    let mut xty = vec![0f64; p * q];
    for r in 0..rows {
        let xr = &x[r * p..(r + 1) * p];
        let yr = &y[r * q..(r + 1) * q];
        for i in 0..p {
            let xi = f64::from(xr[i]);
            for j in 0..p {
                xtx[i * p + j] += xi * f64::from(xr[j]);
            }
            for j in 0..q {
                xty[i * q + j] += xi * f64::from(yr[j]);
            }
        }
    }
    let mean_diag = (0..p).map(|i| xtx[i * p + i]).sum::<f64>() / p as f64;
    let reg = lambda * mean_diag.max(f64::MIN_POSITIVE);
    for i in 0..p {
        xtx[i * p + i] += reg;
    }
    solve_spd(&xtx, p, &xty, q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_hand_made_system() {
        // [[4, 2], [2, 3]] x = [2, 1] -> x = [0.5, 0].
        let x = solve_spd(&[4.0, 2.0, 2.0, 3.0], 2, &[2.0, 1.0], 1).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        assert!(solve_spd(&[0.0, 0.0, 0.0, 0.0], 2, &[1.0, 1.0], 1).is_err());
    }

    #[test]
    fn ridge_recovers_an_exact_linear_map() {
        // y = 2 x0 - x1 on four rows; a tiny lambda leaves the map.
        let x = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, -1.0];
        let y: Vec<f32> = x.chunks(2).map(|r| 2.0 * r[0] - r[1]).collect();
        let w = ridge(&x, 2, &y, 1, 1e-9).unwrap();
        assert!(
            (w[0] - 2.0).abs() < 1e-6 && (w[1] + 1.0).abs() < 1e-6,
            "{w:?}"
        );
    }
}
