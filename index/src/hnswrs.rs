//! Graph construction with hnsw_rs, then conversion into the compact [`Graph`].
//!
//! hnsw_rs stores one copy of each inserted "vector"; we insert the item's dense index (a single
//! `u32`) and give hnsw_rs a [`Distance`] that looks the vectors up in the catalogue, so the
//! vectors are stored once. Once built, the links are copied into compressed `u32` lists and the
//! hnsw_rs structure (several hundred bytes of `Arc`s per item) is dropped.

use hnsw_rs::anndists::dist::distances::Distance;
use hnsw_rs::hnsw::Hnsw;

use crate::graph::{BaseLayer, Graph, Layer};
use crate::metric::BuildMetric;
use crate::native::BuildParams;
use crate::vectors::Catalogue;

/// hnsw_rs's layer limit (its dump format also wants exactly this value).
const MAX_LAYERS: usize = 16;

/// hnsw_rs distance over dense indices (each inserted "vector" is one `u32`).
struct IndexDistance<'a>(BuildMetric<'a>);

impl Distance<u32> for IndexDistance<'_> {
    fn eval(&self, va: &[u32], vb: &[u32]) -> f32 {
        match (va.first(), vb.first()) {
            (Some(&a), Some(&b)) => self.0.dist(a, b),
            _ => f32::MAX,
        }
    }
}

/// Builds the graph on all rayon threads, calling `progress(done, total)` between batches.
pub(crate) fn build_with_hnsw_rs(
    cat: &Catalogue,
    params: &BuildParams,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Graph {
    let n = cat.len();
    progress(0, n);
    if n == 0 {
        return Graph::empty();
    }
    let dist = IndexDistance(BuildMetric::with_transform(cat, params.metric, params.bias));
    let mut hnsw =
        Hnsw::<u32, IndexDistance>::new(params.m, n, MAX_LAYERS, params.ef_construction, dist);
    if params.level_scale < 1.0 {
        hnsw.modify_level_scale(params.level_scale);
    }
    let keys: Vec<[u32; 1]> = (0..n as u32).map(|i| [i]).collect();
    let batch = (n / 100).clamp(1_000, 20_000);
    let mut done = 0;
    for chunk in keys.chunks(batch) {
        let items: Vec<(&[u32], usize)> = chunk.iter().map(|k| (&k[..], k[0] as usize)).collect();
        hnsw.parallel_insert_slice(&items);
        done += chunk.len();
        progress(done, n);
    }
    hnsw.set_searching_mode(true);
    extract(&hnsw, n)
}

/// Copies hnsw_rs's links into a compact [`Graph`].
fn extract(hnsw: &Hnsw<u32, IndexDistance>, n: usize) -> Graph {
    let indexation = hnsw.get_point_indexation();
    let top = indexation.get_max_level_observed() as usize;
    // level of every item, and its neighbour lists per layer
    let mut level = vec![0u8; n];
    let mut lists: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    for point in indexation {
        let idx = point.get_origin_id();
        if idx >= n {
            continue;
        }
        level[idx] = point.get_point_id().0;
        lists[idx] = point
            .get_neighborhood_id()
            .into_iter()
            .take(level[idx] as usize + 1)
            .map(|layer| layer.iter().map(|nb| nb.d_id as u32).collect())
            .collect();
    }
    // keep links to members of the layer only, never to the item itself
    let links_of = |i: u32, l: usize| -> Vec<u32> {
        lists[i as usize].get(l).map_or_else(Vec::new, |list| {
            list.iter()
                .copied()
                .filter(|&nb| nb != i && (nb as usize) < n && level[nb as usize] as usize >= l)
                .collect()
        })
    };
    let base_lists: Vec<Vec<u32>> = (0..n as u32).map(|i| links_of(i, 0)).collect();
    let stride = base_lists.iter().map(Vec::len).max().unwrap_or(0) + 1;
    let mut slots = vec![0u32; n * stride];
    for (node, list) in slots.chunks_exact_mut(stride).zip(&base_lists) {
        node[0] = list.len() as u32;
        node[1..=list.len()].copy_from_slice(list);
    }
    let mut upper = Vec::with_capacity(top);
    for l in 1..=top {
        let nodes: Vec<u32> = (0..n as u32)
            .filter(|&i| level[i as usize] as usize >= l)
            .collect();
        let mut offsets = Vec::with_capacity(nodes.len() + 1);
        let mut links = Vec::new();
        offsets.push(0u64);
        for &i in &nodes {
            links.extend(links_of(i, l));
            offsets.push(links.len() as u64);
        }
        upper.push(Layer {
            nodes,
            offsets,
            links,
        });
    }
    let entry = upper
        .last()
        .and_then(|layer| layer.nodes.first().copied())
        .unwrap_or(0);
    Graph {
        entry,
        base: BaseLayer { stride, slots },
        upper,
    }
}
