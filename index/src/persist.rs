//! Saving an index into a folder and loading it back.
//!
//! Folder contents (all numbers little-endian):
//! `ids.bin` (i64 per item), `vectors.bin` (f32, row-major), `bias.bin` (f32 per item),
//! `graph.bin` (HNSW only: the compact link lists, see [`crate::persist`] source) and
//! `manifest.json` (kind, shape, config and every file's size and sha256).
//! The folder is written under a temporary name and renamed into place, so a half-written
//! index is never taken for a whole one. The graph is saved in this crate's own format rather
//! than as an hnsw_rs dump: it is the structure search uses, loads without hnsw_rs's borrowed
//! loader, is endian-fixed and about a tenth of the size.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};
use crate::exact::ExactIndex;
use crate::files::{map_floats, parse_graph, read_numbers, write_graph, FileEntry, HashingWriter};
use crate::graph::Graph;
use crate::hnsw::{HnswConfig, HnswIndex};
use crate::metric::BiasTransform;
use crate::vectors::{check_values, Catalogue, Floats};
use crate::Index;

/// Name of the manifest inside an index folder.
pub const MANIFEST: &str = "manifest.json";
const FORMAT: &str = "recpipe-index";
const FORMAT_VERSION: u32 = 1;
const IDS: &str = "ids.bin";
const VECTORS: &str = "vectors.bin";
const BIAS: &str = "bias.bin";
const GRAPH: &str = "graph.bin";

/// The contents of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `"recpipe-index"`.
    pub format: String,
    /// Layout version of the files.
    pub format_version: u32,
    /// `"hnsw"` or `"exact"`.
    pub kind: String,
    /// Number of items.
    pub items: u64,
    /// Vector dimension.
    pub dim: u64,
    /// Build configuration (HNSW only).
    pub config: Option<HnswConfig>,
    /// Every data file with its size and checksum.
    pub files: Vec<FileEntry>,
    /// The graph metric's bias transform (HNSW only; absent in folders saved before it was
    /// recorded, which are then given the transform fitted to their items, as at build time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_bias: Option<BiasTransform>,
}

/// How [`Index::load`] reads a folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadOptions {
    /// Check every file's sha256 against the manifest (sizes are always checked).
    pub verify_checksums: bool,
    /// Map `vectors.bin` into memory instead of reading it (little-endian machines only).
    pub mmap_vectors: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            verify_checksums: true,
            mmap_vectors: false,
        }
    }
}

/// Writes the data files of `cat` (and `graph`) into `dir`.
fn write_files(
    dir: &Path,
    cat: &Catalogue,
    graph: Option<(&Graph, BiasTransform)>,
) -> Result<Vec<FileEntry>> {
    let mut files = Vec::new();
    let mut w = HashingWriter::create(dir, IDS)?;
    w.put_all(&cat.ids, i64::to_le_bytes)?;
    files.push(w.finish()?);
    let mut w = HashingWriter::create(dir, VECTORS)?;
    w.put_all(cat.floats(), f32::to_le_bytes)?;
    files.push(w.finish()?);
    let mut w = HashingWriter::create(dir, BIAS)?;
    w.put_all(&cat.bias, f32::to_le_bytes)?;
    files.push(w.finish()?);
    if let Some((graph, _)) = graph {
        files.push(write_graph(dir, GRAPH, graph)?);
    }
    Ok(files)
}

/// Saves into `dir`, which must not exist or be an empty folder. Returns the data files and
/// the manifest itself (last), each with size and sha256.
pub(crate) fn save(
    dir: &Path,
    cat: &Catalogue,
    graph: Option<(&Graph, BiasTransform)>,
    config: Option<&HnswConfig>,
) -> Result<Vec<FileEntry>> {
    if dir.exists() {
        let mut entries = fs::read_dir(dir).map_err(|e| IndexError::io(dir, e))?;
        if entries.next().is_some() {
            return Err(IndexError::InvalidInput(format!(
                "{} exists and is not empty",
                dir.display()
            )));
        }
    }
    let name = dir
        .file_name()
        .ok_or_else(|| IndexError::InvalidInput(format!("{} has no folder name", dir.display())))?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| IndexError::io(parent, e))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
    let result = (|| {
        let files = write_files(&tmp, cat, graph)?;
        let manifest = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            kind: if graph.is_some() { "hnsw" } else { "exact" }.into(),
            items: cat.len() as u64,
            dim: cat.dim as u64,
            config: config.cloned(),
            files: files.clone(),
            graph_bias: graph.map(|(_, bias)| bias),
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| IndexError::InvalidInput(format!("manifest: {e}")))?;
        let mut w = HashingWriter::create(&tmp, MANIFEST)?;
        w.put(&json)?;
        let mut all = files;
        all.push(w.finish()?);
        if dir.exists() {
            fs::remove_dir(dir).map_err(|e| IndexError::io(dir, e))?;
        }
        fs::rename(&tmp, dir).map_err(|e| IndexError::io(dir, e))?;
        if let Ok(p) = File::open(parent) {
            let _ = p.sync_all();
        }
        Ok(all)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

/// Reads and checks `manifest.json`.
fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let file = File::open(&path).map_err(|e| IndexError::io(&path, e))?;
    let mut json = Vec::new();
    file.take(16 << 20)
        .read_to_end(&mut json)
        .map_err(|e| IndexError::io(&path, e))?;
    let manifest: Manifest = serde_json::from_slice(&json)
        .map_err(|e| IndexError::corrupt(&path, format!("not a valid manifest: {e}")))?;
    if manifest.format != FORMAT || manifest.format_version != FORMAT_VERSION {
        return Err(IndexError::corrupt(
            &path,
            format!(
                "format {} v{} (expected {FORMAT} v{FORMAT_VERSION})",
                manifest.format, manifest.format_version
            ),
        ));
    }
    Ok(manifest)
}

/// A data file named in the manifest: its path and entry, after checking its size on disk
/// against the manifest and against `expected` (when known).
fn checked_file<'m>(
    dir: &Path,
    m: &'m Manifest,
    name: &str,
    expected: Option<u64>,
) -> Result<(PathBuf, &'m FileEntry)> {
    let path = dir.join(name);
    let entry =
        m.files.iter().find(|f| f.name == name).ok_or_else(|| {
            IndexError::corrupt(dir.join(MANIFEST), format!("no entry for {name}"))
        })?;
    let actual = fs::metadata(&path)
        .map_err(|e| IndexError::io(&path, e))?
        .len();
    if actual != entry.size {
        return Err(IndexError::corrupt(
            &path,
            format!(
                "{actual} bytes, manifest says {} (truncated or replaced)",
                entry.size
            ),
        ));
    }
    if let Some(expected) = expected {
        if expected != entry.size {
            return Err(IndexError::corrupt(
                &path,
                format!(
                    "{} bytes, {expected} expected for the manifest's shape",
                    entry.size
                ),
            ));
        }
    }
    Ok((path, entry))
}

/// Loads a folder written by `save`.
pub(crate) fn load(dir: &Path, opts: &LoadOptions) -> Result<Index> {
    let manifest = read_manifest(dir)?;
    let mpath = dir.join(MANIFEST);
    let n = usize::try_from(manifest.items)
        .ok()
        .filter(|&n| n < u32::MAX as usize)
        .ok_or_else(|| IndexError::corrupt(&mpath, "item count out of range"))?;
    let dim = usize::try_from(manifest.dim)
        .ok()
        .filter(|&d| d > 0)
        .ok_or_else(|| IndexError::corrupt(&mpath, "bad dimension"))?;
    let floats_len = n
        .checked_mul(dim)
        .ok_or_else(|| IndexError::corrupt(&mpath, "shape overflows"))?;
    let verify = opts.verify_checksums;
    let (path, entry) = checked_file(dir, &manifest, IDS, Some(n as u64 * 8))?;
    let ids = read_numbers(&path, entry, n, verify, i64::from_le_bytes)?;
    let (path, entry) = checked_file(dir, &manifest, BIAS, Some(n as u64 * 4))?;
    let bias = read_numbers(&path, entry, n, verify, f32::from_le_bytes)?;
    let (path, entry) = checked_file(dir, &manifest, VECTORS, Some(floats_len as u64 * 4))?;
    let data = if opts.mmap_vectors && cfg!(target_endian = "little") {
        map_floats(&path, entry, verify)?
    } else {
        Floats::Owned(read_numbers(
            &path,
            entry,
            floats_len,
            verify,
            f32::from_le_bytes,
        )?)
    };
    if !verify {
        check_values(dim, data.as_slice(), &bias)
            .map_err(|e| IndexError::corrupt(&path, e.to_string()))?;
    }
    let cat = Catalogue::new(ids, dim, data, bias)
        .map_err(|e| IndexError::corrupt(dir, e.to_string()))?;
    match manifest.kind.as_str() {
        "exact" => Ok(Index::Exact(ExactIndex { cat })),
        "hnsw" => {
            let (path, entry) = checked_file(dir, &manifest, GRAPH, None)?;
            let size =
                usize::try_from(entry.size).map_err(|_| IndexError::corrupt(&path, "too large"))?;
            let bytes = read_numbers(&path, entry, size, verify, u8::from_le_bytes)?;
            let graph = parse_graph(&bytes, n, &path)?;
            let config = manifest.config.clone().unwrap_or_default();
            config
                .validate()
                .map_err(|e| IndexError::corrupt(&mpath, e.to_string()))?;
            let bias = match manifest.graph_bias {
                Some(b) if b.is_valid() => b,
                Some(_) => return Err(IndexError::corrupt(&mpath, "bad graph_bias")),
                None => BiasTransform::fit(&cat, config.bias_scale),
            };
            Ok(Index::Hnsw(HnswIndex::assemble(cat, graph, config, bias)))
        }
        other => Err(IndexError::corrupt(
            &mpath,
            format!("unknown index kind {other:?}"),
        )),
    }
}

impl Index {
    /// Saves into `dir` (must not exist or be empty): data files plus `manifest.json`, written
    /// under a temporary name and renamed into place. Returns every file with size and sha256
    /// (the manifest last).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<Vec<FileEntry>> {
        match self {
            Index::Hnsw(i) => i.save(dir),
            Index::Exact(i) => save(dir.as_ref(), &i.cat, None, None),
        }
    }

    /// Loads a folder written by [`Index::save`]. Sizes and structure are always checked;
    /// checksums unless `opts.verify_checksums` is false (then values are checked instead).
    /// A damaged folder gives an error, never a panic.
    pub fn load(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Index> {
        load(dir.as_ref(), opts)
    }

    /// Reads `manifest.json` of a saved folder.
    pub fn read_manifest(dir: impl AsRef<Path>) -> Result<Manifest> {
        read_manifest(dir.as_ref())
    }
}

impl HnswIndex {
    /// Saves into `dir`; see [`Index::save`].
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<Vec<FileEntry>> {
        save(
            dir.as_ref(),
            &self.cat,
            Some((&self.graph, self.graph_bias)),
            Some(&self.config),
        )
    }
}

impl ExactIndex {
    /// Saves into `dir`; see [`Index::save`].
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<Vec<FileEntry>> {
        save(dir.as_ref(), &self.cat, None, None)
    }
}
