//! The network: tied item embeddings, stacked GRU layers unrolled over the padded window, an
//! optional projection from the hidden size to the item-vector dimension.

use candle_core::{Module, Tensor};
use candle_nn::{Init, Linear, VarBuilder};
use nn::layers::{apply_dropout, EmbeddingTable};
use nn::rng::Rng;

use super::config::Gru4RecConfig;
use crate::error::{invalid, Result};
use crate::sequence::{SequenceNetwork, Windows};

/// One GRU layer (Cho et al. 2014, as written in Hidasi et al. 2016, plus biases), unrolled over
/// time with a per-step mask:
///
/// ```text
/// z_t = sigmoid(x_t W_z + h_{t-1} U_z + b_z)          update gate
/// r_t = sigmoid(x_t W_r + h_{t-1} U_r + b_r)          reset gate
/// c_t = tanh(x_t W_c + (r_t * h_{t-1}) U_c + b_c)     candidate
/// h_t = h_{t-1} + m_t z_t (c_t - h_{t-1})             = (1 - z_t) h_{t-1} + z_t c_t at m_t = 1
/// ```
///
/// with `h_0 = 0` and m_t = 1 at a real step, 0 at padding, where the state is carried
/// unchanged. Built from differentiable tensor ops only (matmul, add, mul, tanh and
/// candle-nn's sigmoid, whose backward is `s (1 - s)`; a unit test checks the gradients
/// against finite differences).
#[derive(Debug, Clone)]
pub struct GruLayer {
    /// `[W_z | W_r | W_c]`, `input x 3 hidden`.
    input: Tensor,
    /// `[b_z | b_r | b_c]`, `3 hidden`.
    bias: Tensor,
    /// `[U_z | U_r]`, `hidden x 2 hidden`.
    gates: Tensor,
    /// `U_c`, `hidden x hidden`.
    candidate: Tensor,
    hidden: usize,
}

impl GruLayer {
    /// Builds (or loads) a layer from `input` features to `hidden` units; weights start
    /// Glorot-uniform (per gate: +-sqrt(6 / (fan_in + hidden))), biases at 0.
    pub fn new(vb: VarBuilder, input: usize, hidden: usize) -> Result<Self> {
        let glorot = |fan_in: usize| {
            let a = (6.0 / (fan_in + hidden) as f64).sqrt();
            Init::Uniform { lo: -a, up: a }
        };
        Ok(Self {
            input: vb.get_with_hints((input, 3 * hidden), "input", glorot(input))?,
            bias: vb.get_with_hints(3 * hidden, "bias", Init::Const(0.0))?,
            gates: vb.get_with_hints((hidden, 2 * hidden), "gates", glorot(hidden))?,
            candidate: vb.get_with_hints((hidden, hidden), "candidate", glorot(hidden))?,
            hidden,
        })
    }

    /// The states h_1..h_T for inputs x_t (`batch x input` each) and masks m_t (`batch x 1`
    /// each, 1 at a real step, 0 at padding), in the inputs' dtype.
    pub fn run(&self, inputs: &[Tensor], masks: &[Tensor]) -> Result<Vec<Tensor>> {
        let Some(first) = inputs.first() else {
            return Ok(Vec::new());
        };
        if masks.len() != inputs.len() {
            return Err(invalid("one mask per time step is needed"));
        }
        let h2 = 2 * self.hidden;
        let mut h = Tensor::zeros((first.dim(0)?, self.hidden), first.dtype(), first.device())?;
        let mut states = Vec::with_capacity(inputs.len());
        for (x, m) in inputs.iter().zip(masks) {
            let xw = x.matmul(&self.input)?.broadcast_add(&self.bias)?;
            let gates = candle_nn::ops::sigmoid(&(xw.narrow(1, 0, h2)? + h.matmul(&self.gates)?)?)?;
            let z = gates.narrow(1, 0, self.hidden)?;
            let r = gates.narrow(1, self.hidden, self.hidden)?;
            let c =
                (xw.narrow(1, h2, self.hidden)? + (r * &h)?.matmul(&self.candidate)?)?.tanh()?;
            let step = z.broadcast_mul(m)?.mul(&(c - &h)?)?;
            h = (&h + step)?;
            states.push(h.clone());
        }
        Ok(states)
    }
}

/// All layers of GRU4Rec.
#[derive(Debug, Clone)]
pub struct Network {
    /// Item table `[E_i | b_i]`, `num_items x (d + 1)`: E_i (the first d columns) is the GRU's
    /// input for item i and, with the bias b_i, its output row: score `F_t . E_i + b_i`.
    pub items: EmbeddingTable,
    layers: Vec<GruLayer>,
    /// `hidden -> d` when they differ.
    projection: Option<Linear>,
    dim: usize,
}

impl Network {
    /// Builds (or, from a filled `vb`, loads) every layer.
    pub fn new(vb: VarBuilder, cfg: &Gru4RecConfig, num_items: usize) -> Result<Self> {
        let d = cfg.dim;
        let items = EmbeddingTable::new(vb.pp("items"), num_items, d + 1, cfg.init_std)?;
        let layers = (0..cfg.layers)
            .map(|l| {
                let input = if l == 0 { d } else { cfg.hidden };
                GruLayer::new(vb.pp(format!("gru.{l}")), input, cfg.hidden)
            })
            .collect::<Result<Vec<_>>>()?;
        let projection = (cfg.hidden != d)
            .then(|| candle_nn::linear(cfg.hidden, d, vb.pp("projection")))
            .transpose()?;
        Ok(Self {
            items,
            layers,
            projection,
            dim: d,
        })
    }

    /// The outputs F of every slot, `(rows * len) x d` (zero at padding slots): the last
    /// layer's state after each slot, projected. `dropout` (training) applies to the
    /// embeddings and to every layer's outputs (not to the recurrent state).
    pub fn forward(
        &self,
        inputs: &Tensor,
        w: &Windows,
        mut dropout: Option<(f32, &mut Rng)>,
    ) -> Result<Tensor> {
        let (rows, len, d) = (w.rows, w.len, self.dim);
        let device = inputs.device();
        let mask = Tensor::from_slice(&w.mask, (rows * len, 1), device)?;
        let x = dropped(inputs.broadcast_mul(&mask)?, &mut dropout)?;
        // Time-major, so that step t is one contiguous block of rows.
        let x = x.reshape((rows, len, d))?.transpose(0, 1)?.contiguous()?;
        let mut steps = (0..len)
            .map(|t| x.get(t))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let masks = (0..len)
            .map(|t| {
                let m: Vec<f32> = (0..rows).map(|r| w.mask[r * len + t]).collect();
                Tensor::from_vec(m, (rows, 1), device)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        for layer in &self.layers {
            steps = layer
                .run(&steps, &masks)?
                .into_iter()
                .map(|h| dropped(h, &mut dropout))
                .collect::<Result<Vec<_>>>()?;
        }
        let hidden = steps.first().map(|s| s.dim(1)).transpose()?.unwrap_or(d);
        let mut f = Tensor::stack(&steps, 1)?.reshape((rows * len, hidden))?;
        if let Some(p) = &self.projection {
            f = p.forward(&f)?;
        }
        Ok(f.broadcast_mul(&mask)?)
    }
}

impl SequenceNetwork for Network {
    fn items(&self) -> &EmbeddingTable {
        &self.items
    }

    fn forward(
        &self,
        inputs: &Tensor,
        w: &Windows,
        dropout: Option<(f32, &mut Rng)>,
    ) -> Result<Tensor> {
        Network::forward(self, inputs, w, dropout)
    }
}

/// `t` with dropout when training.
fn dropped(t: Tensor, dropout: &mut Option<(f32, &mut Rng)>) -> Result<Tensor> {
    match dropout.as_mut() {
        Some((p, rng)) => Ok(apply_dropout(&t, *p, rng)?),
        None => Ok(t),
    }
}
