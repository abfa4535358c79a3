//! A retrieval model folder: `retrieval.safetensors` (every weight) and `retrieval.json`
//! (`{"format", "model", "config", ...}`), shared by every model of the crate.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result, RetrievalError};

/// File name of the weights inside a model folder.
pub const WEIGHTS_FILE: &str = "retrieval.safetensors";
/// File name of the config inside a model folder.
pub const CONFIG_FILE: &str = "retrieval.json";
/// Version of the folder layout this build writes and reads.
pub const FORMAT: u32 = 1;

/// The part of `retrieval.json` every model shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    format: u32,
    /// Registry name; folders written before models were configurable hold the YouTube DNN.
    #[serde(default = "default_kind")]
    model: String,
}

fn default_kind() -> String {
    crate::youtube_dnn::KIND.to_string()
}

/// Writes `meta` (with `format` and `model` added) and `tensors` into `dir`.
pub fn save(
    dir: &Path,
    kind: &str,
    meta: &impl Serialize,
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    candle_core::safetensors::save(tensors, dir.join(WEIGHTS_FILE))?;
    let mut json = serde_json::to_value(meta)?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("format".into(), FORMAT.into());
        obj.insert("model".into(), kind.into());
    }
    std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string_pretty(&json)?)?;
    Ok(())
}

/// The registry name of the model saved in `dir`, after checking the format.
pub fn kind_of(dir: &Path) -> Result<String> {
    let header: Header = serde_json::from_slice(&std::fs::read(dir.join(CONFIG_FILE))?)?;
    if header.format != FORMAT {
        return Err(RetrievalError::InvalidModel(format!(
            "format {} (this build reads {FORMAT})",
            header.format
        )));
    }
    Ok(header.model)
}

/// The model-specific part of `retrieval.json` (unknown keys such as `format` are ignored by
/// the model's own struct when it allows them).
pub fn load_meta<T: DeserializeOwned>(dir: &Path) -> Result<T> {
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(CONFIG_FILE))?)?;
    if let Some(obj) = json.as_object_mut() {
        obj.remove("format");
        obj.remove("model");
    }
    Ok(serde_json::from_value(json)?)
}

/// Every tensor of `dir`'s weights file, as f32 on the CPU.
pub fn load_tensors(dir: &Path) -> Result<HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load(
        dir.join(WEIGHTS_FILE),
        &Device::Cpu,
    )?)
}

/// Every variable of `varmap` by name (shared storage, no copy).
pub fn var_tensors(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| invalid("variable map lock poisoned"))?;
    Ok(data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect())
}

/// A copy of `varmap` in host memory (a model trained on a GPU is saved and served from there).
pub fn host_varmap(varmap: &VarMap) -> Result<VarMap> {
    let tensors = var_tensors(varmap)?
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_device(&candle_core::Device::Cpu)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    varmap_of(tensors)
}

/// A variable map holding `tensors` (as f32); a model's `new(vb)` then finds its weights there.
pub fn varmap_of(tensors: HashMap<String, Tensor>) -> Result<VarMap> {
    let varmap = VarMap::new();
    {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| invalid("variable map lock poisoned"))?;
        for (name, t) in tensors {
            data.insert(name, Var::from_tensor(&t.to_dtype(DType::F32)?)?);
        }
    }
    Ok(varmap)
}

/// Fails unless building the network left the map at `expected` variables (a missing tensor
/// would have been created fresh).
pub fn check_complete(varmap: &VarMap, expected: usize) -> Result<()> {
    if varmap.all_vars().len() != expected {
        return Err(RetrievalError::InvalidModel(
            "the weights file lacks some of the network's tensors".into(),
        ));
    }
    Ok(())
}
