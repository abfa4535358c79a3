//! Warm start: a new model begins from a previous model's weights. Ids the previous model knew
//! keep their embeddings and item vectors (rows are moved to the new ids' positions), new ids keep
//! their fresh initialisation; every other tensor is copied when its shape is unchanged.

use crate::error::Result;
use crate::model::RetrievalModel;
use candle_core::Tensor;

/// The previous model and how the new catalogue maps onto it.
pub struct WarmStart<'a> {
    /// The model to start from.
    pub model: &'a RetrievalModel,
    /// For each new item index, its index in the previous model (None: a new item).
    pub items: Vec<Option<u32>>,
    /// For each new token index, its index in the previous model (None: a new token).
    pub tokens: Vec<Option<u32>>,
}

/// What a warm start carried over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarmStats {
    /// Item rows copied from the previous model.
    pub items_kept: usize,
    /// Whole tensors copied (tower, user features, ...).
    pub tensors_copied: usize,
    /// Tensors left at their fresh initialisation (shape changed).
    pub tensors_fresh: usize,
}

fn copy_rows(old: &Tensor, new: &Tensor, map: &[Option<u32>]) -> Result<Option<Tensor>> {
    let (Ok((old_rows, width)), Ok((new_rows, new_width))) = (old.dims2(), new.dims2()) else {
        return Ok(None);
    };
    if width != new_width || map.len() != new_rows {
        return Ok(None);
    }
    let src = old.flatten_all()?.to_vec1::<f32>()?;
    let mut dst = new.flatten_all()?.to_vec1::<f32>()?;
    for (row, prev) in map.iter().enumerate() {
        if let Some(p) = prev.filter(|&p| (p as usize) < old_rows) {
            let p = p as usize;
            dst[row * width..(row + 1) * width].copy_from_slice(&src[p * width..(p + 1) * width]);
        }
    }
    Ok(Some(Tensor::from_vec(
        dst,
        (new_rows, width),
        new.device(),
    )?))
}

/// Copies what `warm` allows into `model` (freshly initialised).
pub(crate) fn apply(model: &RetrievalModel, warm: &WarmStart) -> Result<WarmStats> {
    let mut stats = WarmStats {
        items_kept: warm.items.iter().filter(|m| m.is_some()).count(),
        ..Default::default()
    };
    let old = warm
        .model
        .varmap
        .data()
        .lock()
        .map_err(|_| crate::error::invalid("lock poisoned"))?;
    let new = model
        .varmap
        .data()
        .lock()
        .map_err(|_| crate::error::invalid("lock poisoned"))?;
    for (name, var) in new.iter() {
        let Some(prev) = old.get(name) else {
            stats.tensors_fresh += 1;
            continue;
        };
        let map = if name.starts_with("items.") || name.starts_with("softmax.") {
            Some(&warm.items)
        } else if name.starts_with("tokens.") {
            Some(&warm.tokens)
        } else {
            None
        };
        let value = match map {
            Some(m) => copy_rows(prev.as_tensor(), var.as_tensor(), m)?,
            None if prev.as_tensor().dims() == var.as_tensor().dims() => {
                Some(prev.as_tensor().copy()?)
            }
            None => None,
        };
        match value {
            Some(t) => {
                var.set(&t)?;
                stats.tensors_copied += 1;
            }
            None => stats.tensors_fresh += 1,
        }
    }
    Ok(stats)
}
