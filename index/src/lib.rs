//! Top-k retrieval by the retrieval model's own score `u . v + b`.
//!
//! * [`HnswIndex`]: an HNSW graph searched by that score. The graph's links are chosen with
//!   the Moebius transform `x / |x|^2` of `x = [v, b']` ([`GraphMetric`]), which suits inner
//!   products of vectors with varied norms; it is built on all cores by this crate's compact
//!   builder (or by hnsw_rs, [`Builder`]) and walked with int8 copies of the vectors; the beam
//!   is re-scored in f32, so answers are always ordered by the exact `u . v + b`.
//! * [`ExactIndex`]: blocked, multi-threaded brute force (a matrix-product micro-kernel for
//!   batches); the baseline and the small-catalogue choice.
//! * [`Index`]: either one, built by size, saved to and loaded from a folder whose manifest
//!   records every file's sha256 ([`Index::save`], [`Index::load`]).
//! * New items go into a built index without a rebuild ([`Index::insert`]): each is linked
//!   into the graph as the builder links a late item, with the build's [`BiasTransform`].
//!
//! Both kinds leave out a per-query exclusion (seen items, [`Exclude`]) and still return `k`
//! items whenever the catalogue has `k` items outside it. [`bench`] measures build time,
//! memory, recall and speed against exact search; `cargo bench -p index` runs it.
//!
//! ```
//! use index::{Exclude, HnswConfig, Index, ItemVectors};
//! let items = ItemVectors::new(vec![7, 8, 9], 2, vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0], vec![0.0, 0.5, -1.0])?;
//! let index = Index::build(items, &HnswConfig::default(), &|_done, _total| {})?;
//! let seen = [8i64];
//! let hits = index.search(&[1.0, 2.0], 2, 0, &seen[..])?;
//! assert_eq!(hits.iter().map(|h| h.item_id).collect::<Vec<_>>(), vec![9, 7]);
//! assert_eq!(hits[0].score, 2.0); // 1*1 + 2*1 - 1
//! # Ok::<(), index::IndexError>(())
//! ```

pub mod bench;
mod error;
mod exact;
mod files;
mod graph;
mod hnsw;
mod hnswrs;
mod insert;
mod kernel;
mod metric;
mod native;
mod panel;
mod persist;
mod pool;
mod quant;
mod rng;
mod search;
mod topk;
mod tune;
mod vectors;

pub use error::{IndexError, Result};
pub use exact::ExactIndex;
pub use files::FileEntry;
pub use hnsw::{Builder, HnswConfig, HnswIndex};
pub use kernel::dot;
pub use metric::{BiasTransform, GraphMetric};
pub use persist::{LoadOptions, Manifest};
pub use search::{recall_at_k, Exclude, Hit};
pub use tune::EfChoice;
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
    /// (0: configured default; see [`HnswIndex::search`]) and is ignored by an exact index.
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
