//! Top-k retrieval by the retrieval model's own score `u . v + b`.
//!
//! * [`HnswIndex`]: an HNSW graph (built with hnsw_rs on all cores, then compacted into `u32`
//!   link lists) searched by the exact score; answers are always ordered by `u . v + b`.
//! * [`ExactIndex`]: blocked, multi-threaded brute force; the baseline and the small-catalogue
//!   choice.
//! * [`Index`]: either one, built by size, saved to and loaded from a folder with a manifest of
//!   sha256 checksums.
//!
//! Both kinds leave out a per-query exclusion (seen items) and still return `k` items whenever
//! the catalogue has `k` items outside it. [`bench`] measures build, memory, recall and speed.

pub mod bench;
mod error;
mod exact;
mod files;
mod graph;
mod hnsw;
mod hnswrs;
mod kernel;
mod metric;
mod native;
mod panel;
mod persist;
mod search;
mod topk;
mod vectors;

pub use error::{IndexError, Result};
pub use exact::ExactIndex;
pub use hnsw::{Builder, HnswConfig, HnswIndex};
pub use kernel::dot;
pub use metric::GraphMetric;
pub use files::FileEntry;
pub use persist::{LoadOptions, Manifest};
pub use search::{recall_at_k, Exclude, Hit};
pub use vectors::{ItemVectors, MAX_NORM};

/// An exact or HNSW index behind one interface.
pub enum Index {
    /// Approximate (graph) search.
    Hnsw(HnswIndex),
    /// Exact (brute-force) search.
    Exact(ExactIndex),
}

impl Index {
    /// An exact index below `config.exact_below` items, an HNSW index otherwise.
    pub fn build(
        items: ItemVectors,
        config: &HnswConfig,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self> {
        if items.len() < config.exact_below {
            config.validate()?;
            let index = ExactIndex::new(items)?;
            progress(index.len(), index.len());
            Ok(Index::Exact(index))
        } else {
            Ok(Index::Hnsw(HnswIndex::build(items, config, progress)?))
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            Index::Hnsw(i) => i.len(),
            Index::Exact(i) => i.len(),
        }
    }

    /// True when there is no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        match self {
            Index::Hnsw(i) => i.dim(),
            Index::Exact(i) => i.dim(),
        }
    }

    /// Top `k` by `u . v + b`, best first, leaving out `exclude`; `ef` is the HNSW beam width
    /// (0: configured default) and is ignored by an exact index.
    pub fn search<'e>(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        exclude: impl Into<Exclude<'e>>,
    ) -> Result<Vec<Hit>> {
        match self {
            Index::Hnsw(i) => i.search(query, k, ef, exclude),
            Index::Exact(i) => i.search(query, k, exclude),
        }
    }

    /// [`Index::search`] for a row-major batch of queries; `exclude` is empty or has one entry
    /// per query.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        ef: usize,
        exclude: &[Exclude<'_>],
    ) -> Result<Vec<Vec<Hit>>> {
        match self {
            Index::Hnsw(i) => i.search_batch(queries, k, ef, exclude),
            Index::Exact(i) => i.search_batch(queries, k, exclude),
        }
    }

    /// Bytes of memory held (mapped vectors excluded).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Index::Hnsw(i) => i.heap_bytes(),
            Index::Exact(i) => i.heap_bytes(),
        }
    }
}
