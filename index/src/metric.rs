//! The dissimilarity graphs are built with (search always ranks by the exact `u . v + b`).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::kernel::dot;
use crate::vectors::Catalogue;

/// Which items get linked in the graph. Search always ranks by `u . v + b`; this only shapes
/// the graph. The crate README reports recall@100 for each: on synthetic clustered items with
/// norms 0.5..2 and biases `Mobius` was clearly best, but on the vectors of trained models
/// (the YouTube network on a 200k-item generated world and on ml-latest-small) `Angular` was,
/// by a wide margin, and it is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GraphMetric {
    /// Negated inner product of the vectors, `C - v_a . v_b` (shifted to stay >= 0).
    InnerProduct,
    /// Cosine distance of the vectors (norms and biases ignored). The default: on trained
    /// model vectors it gave the best recall of the four (see the crate README).
    #[default]
    Angular,
    /// Euclidean distance after the MIPS-to-L2 augmentation `[v, b', sqrt(M^2 - |v|^2 - b'^2)]`.
    MipsL2,
    /// Euclidean distance after the Moebius transform `x / |x|^2` of `x = [v, b']`
    /// (Zhou et al., NeurIPS 2019). The best on synthetic clustered items with norms 0.5..2;
    /// worse than `Angular` on trained model vectors.
    Mobius,
}

/// The bias coordinate `b'` of each item in the graph metric: `(b - mean) / scale`. Only
/// differences of biases matter to rankings, hence the centring. The default scale
/// `s = 4 std(b) / rms |v|` was the best of a sweep on clustered data (bias std 0.1 and 0.3,
/// norms 0.5..2): it gives the bias axis about a quarter of a typical vector's length.
///
/// An index keeps the transform its graph was built with (and saves it in its manifest), so
/// that items inserted later get the same coordinates as the items already linked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BiasTransform {
    /// Mean bias subtracted.
    pub mean: f64,
    /// Divisor of the centred bias (finite, > 0).
    pub scale: f64,
}

impl Default for BiasTransform {
    fn default() -> Self {
        BiasTransform {
            mean: 0.0,
            scale: 1.0,
        }
    }
}

impl BiasTransform {
    /// The transform of a catalogue: its mean bias, and `bias_scale` or the default scale.
    pub(crate) fn fit(cat: &Catalogue, bias_scale: Option<f32>) -> Self {
        let norms2: Vec<f32> = (0..cat.len() as u32)
            .into_par_iter()
            .map(|i| dot(cat.row(i), cat.row(i)))
            .collect();
        let n = cat.len().max(1) as f64;
        let mean = cat.bias.iter().map(|&b| f64::from(b)).sum::<f64>() / n;
        let var = cat
            .bias
            .iter()
            .map(|&b| (f64::from(b) - mean).powi(2))
            .sum::<f64>()
            / n;
        let rms_norm = (norms2.iter().map(|&x| f64::from(x)).sum::<f64>() / n).sqrt();
        let auto = if var > 0.0 && rms_norm > 0.0 {
            4.0 * var.sqrt() / rms_norm
        } else {
            1.0
        };
        let scale = match bias_scale {
            Some(s) if s.is_finite() && s > 0.0 => f64::from(s),
            _ => auto,
        };
        BiasTransform { mean, scale }
    }

    /// True when the values are usable (finite, positive scale).
    pub(crate) fn is_valid(&self) -> bool {
        self.mean.is_finite() && self.scale.is_finite() && self.scale > 0.0
    }

    /// The graph coordinate `b'` of bias `b`.
    #[inline]
    fn apply(&self, b: f32) -> f32 {
        ((f64::from(b) - self.mean) / self.scale) as f32
    }
}

/// A [`GraphMetric`] with its per-item constants, evaluated between dense indices.
pub(crate) struct BuildMetric<'a> {
    cat: &'a Catalogue,
    kind: GraphMetric,
    /// Per item: 1/|v| (angular), the augmentation coordinate (MIPS-L2), 1/|x|^2 (Moebius).
    aux: Vec<f32>,
    /// Bias coordinates `b'` (see [`graph_bias`]).
    bias: Vec<f32>,
    /// Inner product: a bound on `v_a . v_b`; MIPS-L2: `M^2`.
    shift: f32,
}

impl<'a> BuildMetric<'a> {
    /// Precomputes the per-item constants, biases mapped by `transform`.
    pub(crate) fn with_transform(
        cat: &'a Catalogue,
        kind: GraphMetric,
        transform: BiasTransform,
    ) -> Self {
        let n = cat.len() as u32;
        let norms2: Vec<f32> = (0..n)
            .into_par_iter()
            .map(|i| dot(cat.row(i), cat.row(i)))
            .collect();
        let bias: Vec<f32> = cat.bias.iter().map(|&b| transform.apply(b)).collect();
        let full2: Vec<f32> = norms2.iter().zip(&bias).map(|(x, b)| x + b * b).collect();
        let inv = |x: f32| if x > 0.0 { 1.0 / x } else { 0.0 };
        let (aux, shift) = match kind {
            GraphMetric::InnerProduct => {
                let max = norms2.iter().copied().fold(0f32, f32::max);
                (Vec::new(), max * 1.001 + 1e-6)
            }
            GraphMetric::Angular => (norms2.iter().map(|&x| inv(x.sqrt())).collect(), 0.0),
            GraphMetric::MipsL2 => {
                let m2 = full2.iter().copied().fold(0f32, f32::max);
                (
                    full2.iter().map(|&x| (m2 - x).max(0.0).sqrt()).collect(),
                    m2,
                )
            }
            GraphMetric::Mobius => (full2.iter().map(|&x| inv(x)).collect(), 0.0),
        };
        BuildMetric {
            cat,
            kind,
            aux,
            bias,
            shift,
        }
    }

    /// Dissimilarity from the dot product `d = v_a . v_b`: finite and >= 0 (hnsw_rs asserts on
    /// negative values).
    #[inline]
    fn dist_from_dot(&self, d: f32, a: usize, b: usize) -> f32 {
        let dist = match self.kind {
            GraphMetric::InnerProduct => self.shift - d,
            GraphMetric::Angular => 1.0 - d * self.aux[a] * self.aux[b],
            GraphMetric::MipsL2 => {
                let x = d + self.bias[a] * self.bias[b] + self.aux[a] * self.aux[b];
                2.0 * (self.shift - x)
            }
            GraphMetric::Mobius => {
                let (ia, ib) = (self.aux[a], self.aux[b]);
                let x = d + self.bias[a] * self.bias[b];
                ia + ib - 2.0 * x * ia * ib
            }
        };
        if dist > 0.0 {
            dist
        } else {
            0.0
        }
    }

    /// Vector of item `i`.
    #[inline]
    pub(crate) fn row(&self, i: u32) -> &[f32] {
        self.cat.row(i)
    }

    /// Dissimilarity of items `a` and `b`.
    #[inline]
    pub(crate) fn dist(&self, a: u32, b: u32) -> f32 {
        let d = dot(self.cat.row(a), self.cat.row(b));
        self.dist_from_dot(d, a as usize, b as usize)
    }

    /// Dissimilarity from item `a` to four items at once (same values as [`BuildMetric::dist`]).
    #[inline]
    pub(crate) fn dist4(&self, a: u32, b: [u32; 4]) -> [f32; 4] {
        let dots = crate::kernel::dot4(self.cat.row(a), b.map(|i| self.cat.row(i)));
        let mut out = [0f32; 4];
        for ((o, d), bi) in out.iter_mut().zip(dots).zip(b) {
            *o = self.dist_from_dot(d, a as usize, bi as usize);
        }
        out
    }
}
