//! Seeded synthetic vectors: clustered directions with varied norms, like two-tower embeddings.

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix;
use crate::vectors::ItemVectors;

/// Shape of the synthetic data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataConfig {
    /// Vector dimension.
    pub dim: usize,
    /// Number of cluster centres (random unit directions).
    pub clusters: usize,
    /// Noise added to a centre before normalising (total norm; the centre has norm 1).
    pub spread: f64,
    /// Item norms are uniform in `[min_norm, max_norm]`.
    pub min_norm: f64,
    /// See `min_norm`.
    pub max_norm: f64,
    /// Standard deviation of item biases.
    pub bias_std: f64,
    /// Seed; items and queries share the centres.
    pub seed: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dim: 64,
            clusters: 1_000,
            spread: 0.6,
            min_norm: 0.5,
            max_norm: 2.0,
            bias_std: 0.1,
            seed: 42,
        }
    }
}

fn centres(cfg: &DataConfig) -> Vec<f64> {
    let mut rng = SplitMix::new(cfg.seed);
    let mut c = Vec::with_capacity(cfg.clusters.max(1) * cfg.dim);
    for _ in 0..cfg.clusters.max(1) {
        let row: Vec<f64> = (0..cfg.dim).map(|_| rng.normal()).collect();
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        c.extend(row.iter().map(|x| x / norm));
    }
    c
}

/// Appends `count` vectors: a random centre plus noise, normalised, times a norm in the range.
fn sample(cfg: &DataConfig, centres: &[f64], rng: &mut SplitMix, count: usize, out: &mut Vec<f32>) {
    let noise = cfg.spread / (cfg.dim as f64).sqrt();
    let clusters = cfg.clusters.max(1) as u64;
    let mut row = vec![0f64; cfg.dim];
    for _ in 0..count {
        let c = (rng.next_u64() % clusters) as usize;
        for (x, m) in row.iter_mut().zip(&centres[c * cfg.dim..(c + 1) * cfg.dim]) {
            *x = m + noise * rng.normal();
        }
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        let target = cfg.min_norm + (cfg.max_norm - cfg.min_norm) * rng.uniform();
        out.extend(row.iter().map(|x| (x / norm * target) as f32));
    }
}

/// `n` items with ids `0..n`, clustered directions, norms in `[min_norm, max_norm]`, Gaussian biases.
pub fn generate_items(n: usize, cfg: &DataConfig) -> ItemVectors {
    let c = centres(cfg);
    let mut rng = SplitMix::new(cfg.seed.wrapping_add(1));
    let mut data = Vec::with_capacity(n * cfg.dim);
    sample(cfg, &c, &mut rng, n, &mut data);
    let bias = (0..n)
        .map(|_| (rng.normal() * cfg.bias_std) as f32)
        .collect();
    ItemVectors {
        ids: (0..n as i64).collect(),
        dim: cfg.dim,
        data,
        bias,
    }
}

/// `n` queries (row-major) from the same clusters as the items, with their own noise draws.
pub fn generate_queries(n: usize, cfg: &DataConfig) -> Vec<f32> {
    let c = centres(cfg);
    let mut rng = SplitMix::new(cfg.seed.wrapping_add(2));
    let mut data = Vec::with_capacity(n * cfg.dim);
    sample(cfg, &c, &mut rng, n, &mut data);
    data
}
