//! A ranker folder: `ranker.safetensors` and `ranker.json` (the ranking crate's own files) plus
//! [`VOCAB_FILE`], the vocabularies its examples are built with; written whole or not at all.

use crate::error::{Error, Result};
use crate::ranking_features::RankingVocab;
use ranking::DynRanker;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The vocabulary file written beside `ranker.safetensors` and `ranker.json`.
pub const VOCAB_FILE: &str = "ranking_features.json";
const VOCAB_FORMAT: &str = "recpipe-ranking-features";
const VOCAB_VERSION: u32 = 1;

/// What [`VOCAB_FILE`] holds.
#[derive(Debug, Serialize, Deserialize)]
struct VocabFile {
    format: String,
    version: u32,
    #[serde(flatten)]
    vocab: RankingVocab,
}

/// Writes `ranker.safetensors`, `ranker.json` and [`VOCAB_FILE`] into `dir` (an existing
/// folder, e.g. a version being built).
pub fn save_ranker(dir: &Path, ranker: &DynRanker, vocab: &RankingVocab) -> Result<()> {
    ranker.save(dir).map_err(super::ranker_err)?;
    let file = VocabFile {
        format: VOCAB_FORMAT.into(),
        version: VOCAB_VERSION,
        vocab: vocab.clone(),
    };
    crate::output::write_json(&dir.join(VOCAB_FILE), &file)
}

/// Reads [`VOCAB_FILE`] from `dir`.
pub fn load_vocab(dir: &Path) -> Result<RankingVocab> {
    let path = dir.join(VOCAB_FILE);
    let bytes =
        std::fs::read(&path).map_err(|e| Error::input(&path, format!("cannot read: {e}")))?;
    let file: VocabFile =
        serde_json::from_slice(&bytes).map_err(|e| Error::input(&path, format!("corrupt: {e}")))?;
    if file.format != VOCAB_FORMAT || file.version != VOCAB_VERSION {
        return Err(Error::input(
            &path,
            format!(
                "format {} version {}, expected {VOCAB_FORMAT} version {VOCAB_VERSION}",
                file.format, file.version
            ),
        ));
    }
    let mut vocab = file.vocab;
    vocab.reindex();
    Ok(vocab)
}

/// Whether `dir` holds a ranker written by [`save_ranker`].
pub fn has_ranker(dir: &Path) -> bool {
    dir.join(ranking::META_FILE).is_file() && dir.join(VOCAB_FILE).is_file()
}

/// Writes a ranker folder `out` whole or not at all: built in a temporary folder beside it,
/// then renamed into place (a previous ranker folder there is replaced).
pub fn publish_ranker_dir(out: &Path, ranker: &DynRanker, vocab: &RankingVocab) -> Result<()> {
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !out.is_dir() || !(empty || has_ranker(out)) {
            return Err(Error::Input(format!(
                "{}: exists and is not a ranker folder; give --out a new or ranker folder",
                out.display()
            )));
        }
    }
    let name = out
        .file_name()
        .ok_or_else(|| Error::Input(format!("{}: not a folder path", out.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let pid = std::process::id();
    let tmp = parent.join(format!(".{name}.tmp-{pid}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let written = save_ranker(&tmp, ranker, vocab);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let old = parent.join(format!(".{name}.old-{pid}"));
    let replaced = out.exists();
    if replaced {
        std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
    }
    if let Err(e) = std::fs::rename(&tmp, out) {
        if replaced {
            let _ = std::fs::rename(&old, out);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(Error::io(out, e));
    }
    if replaced {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}
