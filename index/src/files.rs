//! Checksummed little-endian file I/O for saved indexes, and the graph file format.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{IndexError, Result};
use crate::graph::{BaseLayer, Graph, Layer};
use crate::vectors::Floats;

const GRAPH_MAGIC: &[u8; 8] = b"RPGRAPH\0";

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

/// A writer that hashes what goes through it.
pub(crate) struct HashingWriter {
    out: BufWriter<File>,
    hasher: Sha256,
    size: u64,
    path: PathBuf,
}

impl HashingWriter {
    pub(crate) fn create(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let file = File::create(&path).map_err(|e| IndexError::io(&path, e))?;
        Ok(HashingWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            size: 0,
            path,
        })
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| IndexError::io(&self.path, e))
    }

    /// Writes numbers in little-endian through a buffer.
    pub(crate) fn put_all<T: Copy, const B: usize>(
        &mut self,
        values: &[T],
        le: fn(T) -> [u8; B],
    ) -> Result<()> {
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

    pub(crate) fn finish(self) -> Result<FileEntry> {
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

/// Writes `graph` as `name` in `dir`: magic, `[upper layers, entry, base stride]` (u64), the
/// base slots (u32), then per upper layer `[members, links]` (u64), members (u32), offsets
/// (u64) and links (u32); all little-endian.
pub(crate) fn write_graph(dir: &Path, name: &str, graph: &Graph) -> Result<FileEntry> {
    let mut w = HashingWriter::create(dir, name)?;
    w.put(GRAPH_MAGIC)?;
    let head = [
        graph.upper.len() as u64,
        u64::from(graph.entry),
        graph.base.stride as u64,
    ];
    w.put_all(&head, u64::to_le_bytes)?;
    w.put_all(&graph.base.slots, u32::to_le_bytes)?;
    for layer in &graph.upper {
        w.put_all(
            &[layer.nodes.len() as u64, layer.links.len() as u64],
            u64::to_le_bytes,
        )?;
        w.put_all(&layer.nodes, u32::to_le_bytes)?;
        w.put_all(&layer.offsets, u64::to_le_bytes)?;
        w.put_all(&layer.links, u32::to_le_bytes)?;
    }
    w.finish()
}

pub(crate) fn check_digest(path: &Path, entry: &FileEntry, hasher: Sha256) -> Result<()> {
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
pub(crate) fn read_numbers<T, const B: usize>(
    path: &Path,
    entry: &FileEntry,
    count: usize,
    verify: bool,
    from_le: fn([u8; B]) -> T,
) -> Result<Vec<T>> {
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
pub(crate) fn map_floats(path: &Path, entry: &FileEntry, verify: bool) -> Result<Floats> {
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
        return Err(IndexError::corrupt(
            path,
            "mapped floats are not 4-byte aligned",
        ));
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
pub(crate) fn parse_graph(bytes: &[u8], n: usize, path: &Path) -> Result<Graph> {
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
