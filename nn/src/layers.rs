//! Layers every model builds from, candle-nn style (a struct per layer, `new(vb, ..)` +
//! `forward`): an embedding table read through bags with row-sparse gradients, and a ReLU
//! tower (MLP) with seeded dropout.

use candle_core::{DType, Module, Tensor, Var};
use candle_nn::{Init, Linear, VarBuilder};

use crate::bag::{gather, with_f32_data, Bags};
use crate::error::Result;
use crate::rng::Rng;

/// A `rows x width` embedding table, read through bags (see [`crate::bag`]).
#[derive(Debug, Clone)]
pub struct EmbeddingTable {
    var: Var,
    rows: usize,
    width: usize,
}

impl EmbeddingTable {
    /// The table `weight` under `vb`, created N(0, std²) when missing.
    pub fn new(vb: VarBuilder, rows: usize, width: usize, std: f64) -> Result<Self> {
        let init = Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        let t = vb.get_with_hints((rows, width), "weight", init)?;
        Ok(Self {
            var: Var::from_tensor(&t)?,
            rows,
            width,
        })
    }

    /// The weights as a variable.
    pub fn var(&self) -> &Var {
        &self.var
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Adds the bags' weighted rows into columns `offset..offset + width` of `out`.
    pub fn forward(
        &self,
        bags: &Bags,
        out: &mut [f32],
        offset: usize,
        stride: usize,
    ) -> Result<()> {
        with_f32_data(self.var.as_tensor(), |table| {
            gather(table, self.width, bags, out, offset, stride)
        })?
    }
}

/// An MLP: ReLU layers followed by one linear output layer (no activation).
#[derive(Debug, Clone)]
pub struct Tower {
    hidden: Vec<Linear>,
    output: Linear,
}

impl Tower {
    /// Layers `hidden.{i}` and `output` under `vb`.
    pub fn new(vb: VarBuilder, input: usize, hidden: &[usize], output: usize) -> Result<Self> {
        let mut layers = Vec::with_capacity(hidden.len());
        let mut width = input;
        for (i, &h) in hidden.iter().enumerate() {
            layers.push(candle_nn::linear(width, h, vb.pp(format!("hidden.{i}")))?);
            width = h;
        }
        let output = candle_nn::linear(width, output, vb.pp("output"))?;
        Ok(Self {
            hidden: layers,
            output,
        })
    }

    /// `[batch, input]` -> `[batch, output]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with_dropout(x, None)
    }

    /// The forward pass; with `dropout = Some((p, rng))` (training) each input of every
    /// layer is zeroed with probability p and the rest scaled by 1 / (1 - p).
    pub fn forward_with_dropout(
        &self,
        x: &Tensor,
        mut dropout: Option<(f32, &mut Rng)>,
    ) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in self.hidden.iter().chain(std::iter::once(&self.output)) {
            if let Some((p, rng)) = dropout.as_mut() {
                x = apply_dropout(&x, *p, rng)?;
            }
            x = layer.forward(&x)?;
            if !std::ptr::eq(layer, &self.output) {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

/// Zeroes each element with probability `p` (from the seeded `rng`, to 1/65536), scales the
/// rest by 1/(1-p).
pub fn apply_dropout(x: &Tensor, p: f32, rng: &mut Rng) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 / (1.0 - p);
    let threshold = (p * 65536.0) as u64;
    let n = x.elem_count();
    let mut mask = Vec::with_capacity(n + 3);
    while mask.len() < n {
        let bits = rng.next_u64();
        for k in 0..4 {
            let drop = (bits >> (16 * k)) & 0xFFFF < threshold;
            mask.push(if drop { 0.0 } else { keep });
        }
    }
    mask.truncate(n);
    Ok((x * Tensor::from_vec(mask, x.shape(), x.device())?)?)
}

/// Appends a column of ones: `[u, 1] . [v_j, b_j] = u . v_j + b_j` (item tables that hold
/// the bias as their last column).
pub fn with_bias_column(u: &Tensor) -> Result<Tensor> {
    let ones = Tensor::ones((u.dim(0)?, 1), DType::F32, u.device())?;
    Ok(Tensor::cat(&[u, &ones], 1)?)
}

impl Tower {
    /// Multiply-adds per example of a tower `input -> hidden.. -> output`.
    pub fn multiply_adds(input: usize, hidden: &[usize], output: usize) -> usize {
        let mut total = 0;
        let mut width = input;
        for &next in hidden.iter().chain(std::iter::once(&output)) {
            total += width * next;
            width = next;
        }
        total
    }

    /// The hidden layers, then the output layer.
    pub fn layers(&self) -> impl Iterator<Item = &Linear> {
        self.hidden.iter().chain(std::iter::once(&self.output))
    }
}
