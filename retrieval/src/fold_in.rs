//! Fold-in for models with a per-user embedding (MF, GMF): users the model did not train on get
//! a vector from their history. A ridge regression fitted on the training users maps the mean
//! item vector of a history plus a constant to the learned user vector, `u ~ W^T [mean_{j in H}
//! v_j, 1]`: closed-form, deterministic, one `(d + 1) x d` matrix.

use nn::WatchHistories;

use crate::error::Result;

/// The fold-in input of a history: `[mean of its items' first d columns, 1]` appended to `out`
/// (`items` is a row-major table `width` wide; an empty history gives zeros and 1).
pub fn input(items: &[f32], width: usize, d: usize, history: &[u32], out: &mut Vec<f32>) {
    let start = out.len();
    out.resize(start + d + 1, 0.0);
    let row = &mut out[start..];
    for &j in history {
        let v = &items[j as usize * width..j as usize * width + d];
        row[..d].iter_mut().zip(v).for_each(|(r, x)| *r += x);
    }
    let n = history.len().max(1) as f32;
    row[..d].iter_mut().for_each(|r| *r /= n);
    row[d] = 1.0;
}

/// Fits `W` (`(d + 1) x d`, row-major) from every training user's history to their vector
/// (`targets`: `users x d`, row-major); `l2` is relative to the mean diagonal of X^T X.
pub fn fit(
    items: &[f32],
    width: usize,
    d: usize,
    histories: &WatchHistories,
    targets: &[f32],
    l2: f64,
) -> Result<Vec<f32>> {
    let users = histories.num_users();
    let mut x = Vec::with_capacity(users * (d + 1));
    for u in 0..users {
        input(items, width, d, histories.user_items(u), &mut x);
    }
    let w = nn::linalg::ridge(&x, d + 1, targets, d, l2)?;
    Ok(w.into_iter().map(|v| v as f32).collect())
}

/// Appends the folded-in vector of `history` to `out` (`w` from [`fit`]).
pub fn apply(
    w: &[f32],
    items: &[f32],
    width: usize,
    d: usize,
    history: &[u32],
    out: &mut Vec<f32>,
) {
    let mut x = Vec::with_capacity(d + 1);
    input(items, width, d, history, &mut x);
    let start = out.len();
    out.resize(start + d, 0.0);
    for (i, &xi) in x.iter().enumerate() {
        let row = &w[i * d..(i + 1) * d];
        out[start..]
            .iter_mut()
            .zip(row)
            .for_each(|(o, w)| *o += xi * w);
    }
}
