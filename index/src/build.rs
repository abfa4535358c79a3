//! Graph construction with hnsw_rs, then conversion into the compact [`Graph`].
//!
//! hnsw_rs stores one copy of each inserted "vector"; we insert the item's dense index (a single
//! `u32`) and give hnsw_rs a [`Distance`] that looks the vectors up in the catalogue, so the
//! vectors are stored once. Once built, the links are copied into compressed `u32` lists and the
//! hnsw_rs structure (several hundred bytes of `Arc`s per item) is dropped.

use hnsw_rs::anndists::dist::distances::Distance;
use hnsw_rs::hnsw::Hnsw;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::graph::{Graph, Layer};
use crate::kernel::dot;
use crate::vectors::Catalogue;

/// hnsw_rs's layer limit (its dump format also wants exactly this value).
const MAX_LAYERS: usize = 16;

/// The dissimilarity the graph is built with. Search always ranks by the exact `u . v + b`;
/// this only decides which items get linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GraphMetric {
    /// Negated inner product of the vectors, `C - v_a . v_b` (shifted to stay >= 0).
    #[default]
    InnerProduct,
    /// Negated inner product with the neighbour's bias: `C - (v_a . v_b + b_b)`.
    InnerProductBias,
    /// Cosine distance of the vectors (norms and biases ignored).
    Angular,
    /// Euclidean distance after the MIPS-to-L2 augmentation `[v, b, sqrt(M^2 - |v|^2 - b^2)]`.
    MipsL2,
    /// Euclidean distance after the Moebius transform `x / |x|^2` of `x = [v, b]`
    /// (Zhou et al., NeurIPS 2019).
    Mobius,
}

/// hnsw_rs distance over dense indices, reading vectors from the catalogue.
struct IndexDistance<'a> {
    cat: &'a Catalogue,
    metric: GraphMetric,
    /// Per item: 1/|v| (angular) or the augmentation coordinate (MIPS-L2); empty otherwise.
    aux: Vec<f32>,
    /// Shift keeping inner-product distances non-negative (hnsw_rs asserts on negative ones).
    shift: f32,
    /// Biases as graph coordinates: `b / s` for a scale `s` (query side `[u, s]`).
    bias: Vec<f32>,
}

impl<'a> IndexDistance<'a> {
    fn new(cat: &'a Catalogue, metric: GraphMetric, bias_scale: f32) -> Self {
        let n = cat.len() as u32;
        let bias: Vec<f32> = cat.bias.iter().map(|b| b / bias_scale).collect();
        let norms2: Vec<f32> = (0..n)
            .into_par_iter()
            .map(|i| dot(cat.row(i), cat.row(i)))
            .collect();
        let max_norm2 = norms2.iter().copied().fold(0f32, f32::max);
        let max_bias = cat.bias.iter().map(|b| b.abs()).fold(0f32, f32::max);
        let (aux, shift) = match metric {
            GraphMetric::InnerProduct => (Vec::new(), max_norm2 * 1.001 + 1e-6),
            GraphMetric::InnerProductBias => (Vec::new(), max_norm2 * 1.001 + max_bias + 1e-6),
            GraphMetric::Angular => (
                norms2
                    .iter()
                    .map(|&x| if x > 0.0 { 1.0 / x.sqrt() } else { 0.0 })
                    .collect(),
                0.0,
            ),
            GraphMetric::Mobius => (
                norms2
                    .iter()
                    .zip(&bias)
                    .map(|(x, b)| {
                        let full = x + b * b;
                        if full > 0.0 {
                            1.0 / full
                        } else {
                            0.0
                        }
                    })
                    .collect(),
                0.0,
            ),
            GraphMetric::MipsL2 => {
                let full2: Vec<f32> = norms2.iter().zip(&cat.bias).map(|(x, b)| x + b * b).collect();
                let m2 = full2.iter().copied().fold(0f32, f32::max);
                (full2.iter().map(|&x| (m2 - x).max(0.0).sqrt()).collect(), m2)
            }
        };
        IndexDistance {
            cat,
            metric,
            aux,
            shift,
            bias,
        }
    }
}

impl Distance<u32> for IndexDistance<'_> {
    fn eval(&self, va: &[u32], vb: &[u32]) -> f32 {
        let (Some(&a), Some(&b)) = (va.first(), vb.first()) else {
            return f32::MAX;
        };
        let d = dot(self.cat.row(a), self.cat.row(b));
        let dist = match self.metric {
            GraphMetric::InnerProduct => self.shift - d,
            GraphMetric::InnerProductBias => self.shift - d - self.cat.bias[b as usize],
            GraphMetric::Angular => 1.0 - d * self.aux[a as usize] * self.aux[b as usize],
            GraphMetric::MipsL2 => {
                let x = d
                    + self.cat.bias[a as usize] * self.cat.bias[b as usize]
                    + self.aux[a as usize] * self.aux[b as usize];
                2.0 * (self.shift - x)
            }
            GraphMetric::Mobius => {
                let (ia, ib) = (self.aux[a as usize], self.aux[b as usize]);
                let x = d + self.bias[a as usize] * self.bias[b as usize];
                ia + ib - 2.0 * x * ia * ib
            }
        };
        // Rounding must not make a distance negative (hnsw_rs asserts) or NaN (it panics).
        if dist > 0.0 {
            dist
        } else {
            0.0
        }
    }
}

/// Parameters for hnsw_rs construction.
pub(crate) struct BuildParams {
    pub(crate) m: usize,
    pub(crate) ef_construction: usize,
    pub(crate) metric: GraphMetric,
    pub(crate) level_scale: f64,
    pub(crate) bias_scale: f32,
}

/// Builds the graph on all rayon threads, calling `progress(done, total)` between batches.
pub(crate) fn build_graph(
    cat: &Catalogue,
    params: &BuildParams,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Graph {
    let n = cat.len();
    progress(0, n);
    if n == 0 {
        return Graph {
            entry: 0,
            layers: vec![Layer {
                offsets: vec![0],
                ..Layer::default()
            }],
        };
    }
    let dist = IndexDistance::new(cat, params.metric, params.bias_scale);
    let mut hnsw = Hnsw::<u32, IndexDistance>::new(
        params.m,
        n,
        MAX_LAYERS,
        params.ef_construction,
        dist,
    );
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
    let mut layers = Vec::with_capacity(top + 1);
    for l in 0..=top {
        let members: Vec<u32> = (0..n as u32)
            .filter(|&i| level[i as usize] as usize >= l)
            .collect();
        let mut offsets = Vec::with_capacity(members.len() + 1);
        let mut links = Vec::new();
        offsets.push(0u64);
        for &i in &members {
            if let Some(list) = lists[i as usize].get(l) {
                // keep links to members of this layer only, never to the item itself
                links.extend(
                    list.iter()
                        .copied()
                        .filter(|&nb| nb != i && (nb as usize) < n && level[nb as usize] as usize >= l),
                );
            }
            offsets.push(links.len() as u64);
        }
        let nodes = if l == 0 { Vec::new() } else { members };
        layers.push(Layer {
            nodes,
            offsets,
            links,
        });
    }
    let entry = layers
        .last()
        .and_then(|layer| layer.nodes.first().copied())
        .unwrap_or(0);
    Graph { entry, layers }
}
