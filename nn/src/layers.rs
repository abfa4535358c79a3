//! Layers every model builds from, candle-nn style (a struct per layer, `new(vb, ..)` +
//! `forward`): an embedding table read through bags with row-sparse gradients, a linear layer
//! over a sparse (bag) input, and a ReLU tower (MLP) with seeded dropout.

use candle_core::{DType, Module, Tensor, Var};
use candle_nn::{Init, Linear, VarBuilder};

use crate::bag::{gather, with_f32_data, Bags};
use crate::error::Result;
use crate::portable::{bag_sum, TouchedRows};
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

    /// Copies rows `rows` (each below [`Self::rows`]) into a `rows.len() x width` leaf
    /// variable: a batch's embeddings, whose gradient [`crate::bag::RowGrads::add_rows`] sends
    /// back to the table.
    pub fn gather(&self, rows: &[u32]) -> Result<Var> {
        let w = self.width;
        if let Some(bad) = rows.iter().find(|&&r| r as usize >= self.rows) {
            return Err(crate::error::invalid(format!(
                "row {bad} is outside a table of {} rows",
                self.rows
            )));
        }
        let data = with_f32_data(self.var.as_tensor(), |t| {
            let mut out = Vec::with_capacity(rows.len() * w);
            for &r in rows {
                out.extend_from_slice(&t[r as usize * w..(r as usize + 1) * w]);
            }
            out
        })?;
        let device = self.var.as_tensor().device();
        Ok(Var::from_tensor(&Tensor::from_vec(
            data,
            (rows.len(), w),
            device,
        )?)?)
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

/// A linear layer whose input is a sparse vector over `inputs` entries given as a weighted bag,
/// `y = sum_k w_k W[id_k] + b` (= `x W + b` for the dense x the bag stands for): the first
/// layer of the autoencoders, whose input is a user's row of the interaction matrix. Only the
/// rows of `W` in the bag are read, and only they get a gradient (see [`crate::bag`]).
#[derive(Debug, Clone)]
pub struct BagLinear {
    weight: EmbeddingTable,
    bias: Var,
}

impl BagLinear {
    /// `weight` (`inputs x outputs`, N(0, std²)) and `bias` (zeros) under `vb`.
    pub fn new(vb: VarBuilder, inputs: usize, outputs: usize, std: f64) -> Result<Self> {
        let weight = EmbeddingTable::new(vb.clone(), inputs, outputs, std)?;
        let bias = vb.get_with_hints(outputs, "bias", Init::Const(0.0))?;
        Ok(Self {
            weight,
            bias: Var::from_tensor(&bias)?,
        })
    }

    /// The weight rows (one per input entry), updated row-sparsely.
    pub fn weight(&self) -> &EmbeddingTable {
        &self.weight
    }

    /// The bias (a dense parameter).
    pub fn bias(&self) -> &Var {
        &self.bias
    }

    /// `bags.len() x outputs`: returns the gathered `x W` as a leaf variable (its gradient is
    /// what [`crate::bag::RowGrads::scatter`] sends back to the rows) and `x W + b`.
    pub fn forward(&self, bags: &Bags) -> Result<(Var, Tensor)> {
        let width = self.weight.width();
        let mut out = vec![0f32; bags.len() * width];
        self.weight.forward(bags, &mut out, 0, width)?;
        let device = self.bias.as_tensor().device();
        let leaf = Var::from_tensor(&Tensor::from_vec(out, (bags.len(), width), device)?)?;
        let y = leaf.as_tensor().broadcast_add(self.bias.as_tensor())?;
        Ok((leaf, y))
    }

    /// [`Self::forward`] in candle ops on the layer's device: the bags' distinct rows of `W`
    /// as a compact leaf (its gradient is `W`'s row-sparse gradient on [`TouchedRows::rows`])
    /// and `x W + b`.
    pub fn forward_rows(&self, bags: &Bags) -> Result<(TouchedRows, Var, Tensor)> {
        let touched = TouchedRows::of(&[&bags.ids]);
        let leaf = touched.leaf(self.weight.var().as_tensor())?;
        let xw = bag_sum(leaf.as_tensor(), bags, &touched.local[0])?;
        let y = xw.broadcast_add(self.bias.as_tensor())?;
        Ok((touched, leaf, y))
    }

    /// `x W + b` without gradients (inference): the fused gather when `W` is in host memory,
    /// candle ops on other devices.
    pub fn forward_tensor(&self, bags: &Bags) -> Result<Tensor> {
        let weight = self.weight.var().as_tensor();
        if weight.device().is_cpu() {
            return Ok(self.forward(bags)?.1);
        }
        let xw = bag_sum(weight, bags, &bags.ids)?;
        Ok(xw.broadcast_add(self.bias.as_tensor())?)
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
