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
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{IndexError, Result};
use crate::exact::ExactIndex;
use crate::graph::{BaseLayer, Graph, Layer};
use crate::hnsw::{HnswConfig, HnswIndex};
use crate::vectors::{check_values, Catalogue, Floats};
use crate::Index;

/// Name of the manifest inside an index folder.
pub const MANIFEST: &str = "manifest.json";
const FORMAT: &str = "recpipe-index";
const FORMAT_VERSION: u32 = 1;
const GRAPH_MAGIC: &[u8; 8] = b"RPGRAPH\0";
const IDS: &str = "ids.bin";
const VECTORS: &str = "vectors.bin";
const BIAS: &str = "bias.bin";
const GRAPH: &str = "graph.bin";

/// One file of a saved index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the folder.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the contents, lower-case hex.
    pub sha256: String,
}

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

/// A writer that hashes what goes through it.
struct HashingWriter {
    out: BufWriter<File>,
    hasher: Sha256,
    size: u64,
    path: PathBuf,
}

impl HashingWriter {
    fn create(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let file = File::create(&path).map_err(|e| IndexError::io(&path, e))?;
        Ok(HashingWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            size: 0,
            path,
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| IndexError::io(&self.path, e))
    }

    /// Writes numbers in little-endian through a buffer.
    fn put_all<T: Copy, const B: usize>(&mut self, values: &[T], le: fn(T) -> [u8; B]) -> Result<()> {
        let mut buf = Vec::with_capacity(B * 8192);
        for chunk in values.chunks(8192) {
            buf.clear();
            for &v in chunk {
                buf.extend_from_slice(&le(v));
            }
            self.put(&buf)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<FileEntry> {
        let path = self.path;
        let file = self
            .out
            .into_inner()
            .map_err(|e| IndexError::io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| IndexError::io(&path, e))?;
        Ok(FileEntry {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the data files of `cat` (and `graph`) into `dir`.
fn write_files(dir: &Path, cat: &Catalogue, graph: Option<&Graph>) -> Result<Vec<FileEntry>> {
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
    if let Some(graph) = graph {
        let mut w = HashingWriter::create(dir, GRAPH)?;
        w.put(GRAPH_MAGIC)?;
        let head = [graph.upper.len() as u64, u64::from(graph.entry), graph.base.stride as u64];
        w.put_all(&head, u64::to_le_bytes)?;
        w.put_all(&graph.base.slots, u32::to_le_bytes)?;
        for layer in &graph.upper {
            w.put_all(&[layer.nodes.len() as u64, layer.links.len() as u64], u64::to_le_bytes)?;
            w.put_all(&layer.nodes, u32::to_le_bytes)?;
            w.put_all(&layer.offsets, u64::to_le_bytes)?;
            w.put_all(&layer.links, u32::to_le_bytes)?;
        }
        files.push(w.finish()?);
    }
    Ok(files)
}

/// Saves into `dir`, which must not exist or be an empty folder. Returns the data files and
/// the manifest itself (last), each with size and sha256.
pub(crate) fn save(dir: &Path, cat: &Catalogue, graph: Option<&Graph>, config: Option<&HnswConfig>) -> Result<Vec<FileEntry>> {
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
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
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
fn checked_file<'m>(dir: &Path, m: &'m Manifest, name: &str, expected: Option<u64>) -> Result<(PathBuf, &'m FileEntry)> {
    let path = dir.join(name);
    let entry = m
        .files
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| IndexError::corrupt(dir.join(MANIFEST), format!("no entry for {name}")))?;
    let actual = fs::metadata(&path).map_err(|e| IndexError::io(&path, e))?.len();
    if actual != entry.size {
        return Err(IndexError::corrupt(
            &path,
            format!("{actual} bytes, manifest says {} (truncated or replaced)", entry.size),
        ));
    }
    if let Some(expected) = expected {
        if expected != entry.size {
            return Err(IndexError::corrupt(
                &path,
                format!("{} bytes, {expected} expected for the manifest's shape", entry.size),
            ));
        }
    }
    Ok((path, entry))
}

fn check_digest(path: &Path, entry: &FileEntry, hasher: Sha256) -> Result<()> {
    let actual = hex(&hasher.finalize());
    if actual != entry.sha256 {
        return Err(IndexError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: entry.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Reads `count` little-endian numbers, hashing on the way when `verify`.
fn read_numbers<T, const B: usize>(path: &Path, entry: &FileEntry, count: usize, verify: bool, from_le: fn([u8; B]) -> T) -> Result<Vec<T>> {
    let mut file = File::open(path).map_err(|e| IndexError::io(path, e))?;
    let mut out = Vec::with_capacity(count);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; B * 65_536];
    let mut left = count;
    while left > 0 {
        let take = left.min(65_536);
        let bytes = &mut buf[..take * B];
        file.read_exact(bytes).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => IndexError::corrupt(path, "file is truncated"),
            _ => IndexError::io(path, e),
        })?;
        if verify {
            hasher.update(&*bytes);
        }
        out.extend(bytes.chunks_exact(B).map(|c| {
            let mut a = [0u8; B];
            a.copy_from_slice(c);
            from_le(a)
        }));
        left -= take;
    }
    if verify {
        check_digest(path, entry, hasher)?;
    }
    Ok(out)
}

/// Maps `vectors.bin` (little-endian machines), hashing it when `verify`.
fn map_floats(path: &Path, entry: &FileEntry, verify: bool) -> Result<Floats> {
    let file = File::open(path).map_err(|e| IndexError::io(path, e))?;
    // SAFETY: the map is read-only; like every memory map it assumes nobody truncates or
    // rewrites the file while the index is loaded (saved folders are never modified in place).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| IndexError::io(path, e))?;
    if map.len() as u64 != entry.size {
        return Err(IndexError::corrupt(path, "file changed while loading"));
    }
    // SAFETY: any bit pattern is a valid f32; only the alignment split is inspected here.
    let (head, _, tail) = unsafe { map.align_to::<f32>() };
    if !head.is_empty() || !tail.is_empty() {
        return Err(IndexError::corrupt(path, "mapped floats are not 4-byte aligned"));
    }
    if verify {
        let mut hasher = Sha256::new();
        hasher.update(&map[..]);
        check_digest(path, entry, hasher)?;
    }
    Ok(Floats::Mapped(map))
}

/// A cursor over `graph.bin` that checks lengths before allocating.
struct Cursor<'a> {
    bytes: &'a [u8],
    path: &'a Path,
}

impl Cursor<'_> {
    fn take(&mut self, len: u64) -> Result<&[u8]> {
        if len > self.bytes.len() as u64 {
            return Err(IndexError::corrupt(self.path, "graph file is truncated"));
        }
        let (head, rest) = self.bytes.split_at(len as usize);
        self.bytes = rest;
        Ok(head)
    }

    fn u64s(&mut self, count: u64) -> Result<Vec<u64>> {
        let bytes = self.take(count.saturating_mul(8))?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }

    fn u32s(&mut self, count: u64) -> Result<Vec<u32>> {
        let bytes = self.take(count.saturating_mul(4))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Parses and checks `graph.bin` for `n` items.
fn parse_graph(bytes: &[u8], n: usize, path: &Path) -> Result<Graph> {
    let mut cur = Cursor { bytes, path };
    if cur.take(8)? != GRAPH_MAGIC {
        return Err(IndexError::corrupt(path, "not a graph file"));
    }
    let head = cur.u64s(3)?;
    let (n_upper, entry, stride) = (head[0], head[1], head[2]);
    if n_upper > 64 || entry > u64::from(u32::MAX) || stride == 0 || stride > 1 << 16 {
        return Err(IndexError::corrupt(path, "bad graph header"));
    }
    let base = BaseLayer {
        stride: stride as usize,
        slots: cur.u32s((n as u64).saturating_mul(stride))?,
    };
    let mut upper = Vec::new();
    for _ in 0..n_upper {
        let sizes = cur.u64s(2)?;
        let nodes = cur.u32s(sizes[0])?;
        let offsets = cur.u64s(sizes[0].saturating_add(1))?;
        let links = cur.u32s(sizes[1])?;
        upper.push(Layer {
            nodes,
            offsets,
            links,
        });
    }
    if !cur.bytes.is_empty() {
        return Err(IndexError::corrupt(path, "trailing bytes after the graph"));
    }
    let graph = Graph {
        entry: entry as u32,
        base,
        upper,
    };
    graph.check(n).map_err(|e| IndexError::corrupt(path, e))?;
    Ok(graph)
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
        Floats::Owned(read_numbers(&path, entry, floats_len, verify, f32::from_le_bytes)?)
    };
    if !verify {
        check_values(dim, data.as_slice(), &bias)
            .map_err(|e| IndexError::corrupt(&path, e.to_string()))?;
    }
    let cat = Catalogue::new(ids, dim, data, bias).map_err(|e| IndexError::corrupt(dir, e.to_string()))?;
    match manifest.kind.as_str() {
        "exact" => Ok(Index::Exact(ExactIndex { cat })),
        "hnsw" => {
            let (path, entry) = checked_file(dir, &manifest, GRAPH, None)?;
            let size = usize::try_from(entry.size).map_err(|_| IndexError::corrupt(&path, "too large"))?;
            let bytes = read_numbers(&path, entry, size, verify, u8::from_le_bytes)?;
            let graph = parse_graph(&bytes, n, &path)?;
            let config = manifest.config.clone().unwrap_or_default();
            config.validate().map_err(|e| IndexError::corrupt(&mpath, e.to_string()))?;
            Ok(Index::Hnsw(HnswIndex { cat, graph, config }))
        }
        other => Err(IndexError::corrupt(&mpath, format!("unknown index kind {other:?}"))),
    }
}

impl Index {
    /// Saves into `dir` (must not exist or be empty): data files plus `manifest.json`, written
    /// under a temporary name and renamed into place. Returns every file with size and sha256
    /// (the manifest last).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<Vec<FileEntry>> {
        match self {
            Index::Hnsw(i) => save(dir.as_ref(), &i.cat, Some(&i.graph), Some(&i.config)),
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
        save(dir.as_ref(), &self.cat, Some(&self.graph), Some(&self.config))
    }
}

impl ExactIndex {
    /// Saves into `dir`; see [`Index::save`].
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<Vec<FileEntry>> {
        save(dir.as_ref(), &self.cat, None, None)
    }
}
