//! The approximate index: an HNSW graph over the catalogue, searched by exact score.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};
use crate::exact::exact_one;
use crate::graph::{ExactScorer, Graph, QuantScorer};
use crate::hnswrs::build_with_hnsw_rs;
use crate::metric::{BiasTransform, GraphMetric};
use crate::native::{build_native, BuildParams};
use crate::quant::Quantized;
use crate::search::{check_query, resolve_batch, split_batch, to_hits, Exclude, Hit};
use crate::topk::Scored;
use crate::vectors::{Catalogue, ItemVectors};

/// Which code builds the graph (search is the same for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Builder {
    /// This crate's compact parallel builder: faster, ~140 B/item of links while building.
    #[default]
    Native,
    /// hnsw_rs 0.3.5 (`Hnsw::parallel_insert_slice`), links copied out afterwards.
    HnswRs,
}

/// HNSW parameters. Defaults suit 100k..1M items of dimension 32..128.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HnswConfig {
    /// Links per item on upper layers; layer 0 keeps up to `2 * m`. The default, 32, is what
    /// trained model vectors of dimension 128 needed to reach recall@100 0.99 at a search
    /// width of about 500 (the crate README).
    pub m: usize,
    /// Beam width while inserting (quality vs build time).
    pub ef_construction: usize,
    /// Beam width used by searches that pass `ef = 0`.
    pub ef_search_default: usize,
    /// Dissimilarity the graph links are chosen by (search always ranks by `u . v + b`).
    pub metric: GraphMetric,
    /// Multiplies the level scale `1/ln(m)`; below 1 gives fewer layers (0.2..=1).
    pub level_scale: f64,
    /// [`crate::Index::build`] builds an exact index below this many items.
    pub exact_below: usize,
    /// Scale `s` of the bias coordinate in the graph metric: items `[v, (b - mean b) / s]`
    /// (queries `[u, s]` score the same). `None`: `4 std(b) / rms |v|`, measured best.
    pub bias_scale: Option<f32>,
    /// Which code builds the graph.
    pub builder: Builder,
    /// Seed of the layer draws (native builder).
    pub seed: u64,
    /// Walk the graph with int8 copies of the vectors (one cache line per item at dim 64,
    /// +`dim` bytes per item) and re-score the beam with the f32 vectors.
    pub int8_walk: bool,
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig {
            m: 32,
            ef_construction: 200,
            ef_search_default: 128,
            metric: GraphMetric::default(),
            level_scale: 1.0,
            exact_below: 10_000,
            bias_scale: None,
            builder: Builder::default(),
            seed: 0x5EED,
            int8_walk: true,
        }
    }
}

impl HnswConfig {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<()> {
        if !(2..=128).contains(&self.m) {
            return Err(IndexError::InvalidInput(format!(
                "m = {} (must be 2..=128)",
                self.m
            )));
        }
        if self.ef_construction == 0 || self.ef_search_default == 0 {
            return Err(IndexError::InvalidInput(
                "ef_construction and ef_search_default must be > 0".into(),
            ));
        }
        if let Some(s) = self.bias_scale {
            if !(s.is_finite() && s > 0.0) {
                return Err(IndexError::InvalidInput(format!(
                    "bias_scale = {s} (must be finite and > 0)"
                )));
            }
        }
        if !(0.2..=1.0).contains(&self.level_scale) {
            return Err(IndexError::InvalidInput(format!(
                "level_scale = {} (must be 0.2..=1)",
                self.level_scale
            )));
        }
        Ok(())
    }
}

/// How many of the walk's best items (by the int8 score) are re-scored in f32 for an answer
/// of `k`: a margin for the codes' rounding, which moves an item by a few ranks at most
/// (`k + 8`, this, `2k + 8` and `10k + 8` gave the same recall on 200k clustered items).
fn rescore_count(k: usize) -> usize {
    k + k / 4 + 8
}

/// An HNSW index. Answers hold exact scores, best first; an answer has `k` items whenever the
/// catalogue has `k` items outside the exclusion (the graph's answer is completed by exact
/// search when it falls short).
pub struct HnswIndex {
    pub(crate) cat: Catalogue,
    pub(crate) graph: Graph,
    pub(crate) config: HnswConfig,
    /// int8 codes for the walk (see [`HnswConfig::int8_walk`]).
    pub(crate) quant: Option<Quantized>,
    /// Bias coordinate of the graph metric, as fitted at build time.
    pub(crate) graph_bias: BiasTransform,
}

/// The construction parameters of `config` with the bias transform `bias`.
pub(crate) fn build_params(config: &HnswConfig, bias: BiasTransform) -> BuildParams {
    BuildParams {
        m: config.m,
        ef_construction: config.ef_construction,
        metric: config.metric,
        level_scale: config.level_scale,
        bias,
        seed: config.seed,
    }
}

/// Builds the graph of `cat` with the configured builder.
pub(crate) fn build_graph(
    cat: &Catalogue,
    config: &HnswConfig,
    bias: BiasTransform,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Graph {
    let params = build_params(config, bias);
    match config.builder {
        Builder::Native => build_native(cat, &params, progress),
        Builder::HnswRs => build_with_hnsw_rs(cat, &params, progress),
    }
}

impl HnswIndex {
    /// Builds on all rayon threads; `progress(done, total)` is called as items get inserted.
    /// Takes the vectors over (they are stored once, in the index).
    pub fn build(
        items: ItemVectors,
        config: &HnswConfig,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self> {
        config.validate()?;
        let cat = Catalogue::from_items(items)?;
        let bias = BiasTransform::fit(&cat, config.bias_scale);
        let graph = build_graph(&cat, config, bias, progress);
        Ok(HnswIndex::assemble(cat, graph, config.clone(), bias))
    }

    /// Puts the parts together (and quantizes the vectors when configured).
    pub(crate) fn assemble(
        cat: Catalogue,
        graph: Graph,
        config: HnswConfig,
        graph_bias: BiasTransform,
    ) -> Self {
        let quant = config.int8_walk.then(|| Quantized::new(&cat));
        HnswIndex {
            cat,
            graph,
            config,
            quant,
            graph_bias,
        }
    }

    /// The bias coordinate transform of the graph metric, fixed when the index was built
    /// (inserted items are linked with the same one).
    pub fn bias_transform(&self) -> BiasTransform {
        self.graph_bias
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.cat.len()
    }

    /// True when there is no item.
    pub fn is_empty(&self) -> bool {
        self.cat.len() == 0
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.cat.dim
    }

    /// The configuration the index was built with.
    pub fn config(&self) -> &HnswConfig {
        &self.config
    }

    /// Turns the int8 walk (see [`HnswConfig::int8_walk`]) on or off.
    pub fn set_int8_walk(&mut self, on: bool) {
        self.config.int8_walk = on;
        if !on {
            self.quant = None;
        } else if self.quant.is_none() {
            self.quant = Some(Quantized::new(&self.cat));
        }
    }

    /// Number of graph layers.
    pub fn layers(&self) -> usize {
        self.graph.layers()
    }

    /// Approximate `k` best items by `u . v + b`, leaving out `exclude`. `ef` is the beam
    /// width (0: the configured default); a beam narrower than `k` is widened to `k`.
    pub fn search<'e>(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        exclude: impl Into<Exclude<'e>>,
    ) -> Result<Vec<Hit>> {
        check_query(&self.cat, query)?;
        let excluded = exclude.into().resolve(&self.cat);
        Ok(to_hits(&self.cat, self.search_one(query, k, ef, &excluded)))
    }

    /// [`HnswIndex::search`] for a row-major batch of queries, in parallel; `exclude` is empty
    /// (nothing excluded) or has one entry per query.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        ef: usize,
        exclude: &[Exclude<'_>],
    ) -> Result<Vec<Vec<Hit>>> {
        let rows = split_batch(&self.cat, queries)?;
        let excluded = resolve_batch(&self.cat, rows.len(), exclude)?;
        Ok(rows
            .par_iter()
            .zip(excluded.par_iter())
            .map(|(q, e)| to_hits(&self.cat, self.search_one(q, k, ef, e)))
            .collect())
    }

    /// Graph search (int8 walk re-scored in f32, or an f32 walk), its best `k`, and the number
    /// of items scored.
    pub(crate) fn search_graph(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        excluded: &[u32],
    ) -> (Vec<Scored>, usize) {
        let ef = if ef == 0 {
            self.config.ef_search_default
        } else {
            ef
        };
        let (n, beam) = (self.cat.len(), ef.max(1));
        let (mut found, scored) = match &self.quant {
            Some(quant) => {
                let prepared = quant.prepare(query);
                let scorer = QuantScorer {
                    quant,
                    prepared: &prepared,
                    bias: &self.cat.bias,
                };
                let (mut found, scored) = self.graph.search(&scorer, n, beam, k, excluded);
                found.truncate(rescore_count(k));
                (self.cat.rescored(query, found), scored)
            }
            None => {
                let scorer = ExactScorer {
                    cat: &self.cat,
                    query,
                };
                self.graph.search(&scorer, n, beam, k, excluded)
            }
        };
        found.truncate(k);
        (found, scored)
    }

    /// Graph search, completed by exact search when it found fewer than `k` eligible items.
    pub(crate) fn search_one(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        excluded: &[u32],
    ) -> Vec<Scored> {
        let (found, _) = self.search_graph(query, k, ef, excluded);
        let eligible = self.cat.len() - excluded.len();
        if found.len() < k.min(eligible) {
            return exact_one(&self.cat, query, k, excluded);
        }
        found
    }

    /// A copy of the indexed vectors.
    pub fn items(&self) -> ItemVectors {
        self.cat.to_items()
    }

    /// Bytes of memory the index holds: vectors, ids, biases, lookups and links (mapped
    /// vectors excluded).
    pub fn heap_bytes(&self) -> usize {
        self.cat.heap_bytes()
            + self.graph.heap_bytes()
            + self.quant.as_ref().map_or(0, Quantized::heap_bytes)
    }
}
