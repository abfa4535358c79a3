//! Whole-model weight operations over a `VarMap`: snapshots for the trainer's best epoch, and
//! warm starts that carry a previous model's rows over to a new vocabulary.

use std::collections::HashMap;

use candle_core::Tensor;
use candle_nn::VarMap;

use crate::error::{invalid, Result};

/// Copies of every variable (detached), by name.
pub fn snapshot(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| invalid("variable map lock poisoned"))?;
    data.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().copy()?)))
        .collect()
}

/// Sets every variable that `snap` names back to its copy (moved to the variable's device).
pub fn restore(varmap: &VarMap, snap: &HashMap<String, Tensor>) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| invalid("variable map lock poisoned"))?;
    for (k, v) in data.iter() {
        if let Some(t) = snap.get(k) {
            v.set(&t.to_device(v.as_tensor().device())?)?;
        }
    }
    Ok(())
}

/// What a warm start carried over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarmStats {
    /// Whole tensors copied, or row-mapped tables with at least their known rows copied.
    pub tensors_copied: usize,
    /// Tensors left at their fresh initialisation (absent before, or shape changed).
    pub tensors_fresh: usize,
}

/// Rows of `old` moved to the positions `map` gives (`map[new_row] = Some(old_row)`); rows
/// without an old row keep `new`'s values. None when the widths or sizes do not fit.
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

/// Warm-starts the freshly initialised `new` from `old` weights of the same kind of model:
/// a tensor whose rows are ids (`rows_of(name)` gives the map from new to old rows) keeps the
/// known ids' rows; any other tensor is copied when its shape is unchanged.
pub fn warm_start<'a>(
    new: &VarMap,
    old: &HashMap<String, Tensor>,
    rows_of: impl Fn(&str) -> Option<&'a [Option<u32>]>,
) -> Result<WarmStats> {
    let mut stats = WarmStats::default();
    let data = new
        .data()
        .lock()
        .map_err(|_| invalid("variable map lock poisoned"))?;
    for (name, var) in data.iter() {
        let Some(prev) = old.get(name) else {
            stats.tensors_fresh += 1;
            continue;
        };
        let value = match rows_of(name) {
            Some(map) => copy_rows(prev, var.as_tensor(), map)?,
            None if prev.dims() == var.as_tensor().dims() => {
                Some(prev.to_device(var.as_tensor().device())?)
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
