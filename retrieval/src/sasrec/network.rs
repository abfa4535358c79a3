//! The network: tied item embeddings, learned positions, causal self-attention blocks.

use candle_core::{Module, Tensor, D};
use candle_nn::{Init, Linear, VarBuilder};
use nn::layers::{apply_dropout, EmbeddingTable};
use nn::rng::Rng;

use super::config::SasRecConfig;
use crate::error::Result;
use crate::sequence::{SequenceNetwork, Windows};

/// Added to the logit of a key a query may not see (a later or a padding position):
/// `exp(-1e9 - max)` is exactly 0 in f32, so such keys contribute nothing.
const MASKED: f32 = -1e9;
/// Layer-norm epsilon.
const LN_EPS: f64 = 1e-8;

/// Layer normalisation over the last dimension, built from differentiable tensor ops
/// (candle-nn's fused kernel has no backward pass).
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn new(vb: VarBuilder, d: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(d, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(d, "bias", Init::Const(0.0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + LN_EPS)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)?)
    }
}

/// One self-attention block (eq. 3-6), pre-LN: `x + Dropout(SA(LN(x)))`, then
/// `x + Dropout(FFN(LN(x)))`.
#[derive(Debug, Clone)]
struct Block {
    ln_attention: LayerNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    ln_ffn: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
}

impl Block {
    fn new(vb: VarBuilder, d: usize) -> Result<Self> {
        Ok(Self {
            ln_attention: LayerNorm::new(vb.pp("ln_attention"), d)?,
            query: candle_nn::linear(d, d, vb.pp("query"))?,
            key: candle_nn::linear(d, d, vb.pp("key"))?,
            value: candle_nn::linear(d, d, vb.pp("value"))?,
            ln_ffn: LayerNorm::new(vb.pp("ln_ffn"), d)?,
            ffn_in: candle_nn::linear(d, d, vb.pp("ffn_in"))?,
            ffn_out: candle_nn::linear(d, d, vb.pp("ffn_out"))?,
        })
    }
}

/// The additive attention mask of `w`, `rows x 1 x len x len`: 0 where query slot i may see
/// key slot j (j <= i and j real), [`MASKED`] elsewhere.
fn attention_mask(w: &Windows) -> Vec<f32> {
    let l = w.len;
    let mut out = vec![MASKED; w.rows * l * l];
    for r in 0..w.rows {
        for i in 0..l {
            for j in 0..=i {
                if w.mask[r * l + j] > 0.0 {
                    out[(r * l + i) * l + j] = 0.0;
                }
            }
        }
    }
    out
}

/// All layers of SASRec.
#[derive(Debug, Clone)]
pub struct Network {
    /// Item table `[E_i | b_i]`, `num_items x (d + 1)`: the input embedding E_i (the first d
    /// columns) is shared with the output layer, whose score is `F_t . E_i + b_i`.
    pub items: EmbeddingTable,
    /// Learned position embeddings P, `max_len x d`.
    positions: Tensor,
    blocks: Vec<Block>,
    final_ln: LayerNorm,
    dim: usize,
    heads: usize,
}

impl Network {
    /// Builds (or, from a filled `vb`, loads) every layer.
    pub fn new(vb: VarBuilder, cfg: &SasRecConfig, num_items: usize) -> Result<Self> {
        let d = cfg.dim;
        let std = cfg.init_std;
        let items = EmbeddingTable::new(vb.pp("items"), num_items, d + 1, std)?;
        let init = Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        let positions = vb.get_with_hints((cfg.max_len, d), "positions.weight", init)?;
        let blocks = (0..cfg.blocks)
            .map(|b| Block::new(vb.pp(format!("blocks.{b}")), d))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            items,
            positions,
            blocks,
            final_ln: LayerNorm::new(vb.pp("final_ln"), d)?,
            dim: d,
            heads: cfg.heads,
        })
    }

    /// The outputs F of every slot, `(rows * len) x d` (zero at padding slots), from the
    /// slots' item embeddings `items` (`(rows * len) x d`, any source); `dropout` (training)
    /// is `Some((p, rng))`.
    pub fn forward(
        &self,
        items: &Tensor,
        w: &Windows,
        mut dropout: Option<(f32, &mut Rng)>,
    ) -> Result<Tensor> {
        let (n, d, l) = (w.rows * w.len, self.dim, w.len);
        let device = items.device();
        let mask = Tensor::from_slice(&w.mask, (n, 1), device)?;
        let pos = Tensor::from_slice(&w.positions, n, device)?;
        let max_pos = self.positions.dim(0)?;
        if w.positions.iter().any(|&p| p as usize >= max_pos) {
            return Err(crate::error::invalid("a window is longer than max_len"));
        }
        // Eq. 2: E_hat = E * sqrt(d) + P, padding slots zeroed.
        let x = ((items * (d as f64).sqrt())? + self.positions.index_select(&pos, 0)?)?;
        let mut x = x.broadcast_mul(&mask)?;
        x = dropped(x, &mut dropout)?;
        let attention_mask = Tensor::from_vec(attention_mask(w), (w.rows, 1, l, l), device)?;
        let (h, dh) = (self.heads, d / self.heads);
        let split = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((w.rows, l, h, dh))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        for block in &self.blocks {
            // Eq. 3-4: S = softmax(Q K^T / sqrt(d/h)) V with a causal, padding-aware mask.
            let y = block.ln_attention.forward(&x)?;
            let q = split(block.query.forward(&y)?)?;
            let k = split(block.key.forward(&y)?)?;
            let v = split(block.value.forward(&y)?)?;
            let logits = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (dh as f64).sqrt())?;
            let weights =
                candle_nn::ops::softmax(&logits.broadcast_add(&attention_mask)?, D::Minus1)?;
            let s = weights
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((n, d))?;
            x = (x + dropped(s, &mut dropout)?)?;
            // Eq. 5: F = ReLU(S W1 + b1) W2 + b2.
            let y = block.ln_ffn.forward(&x)?;
            let f = dropped(block.ffn_in.forward(&y)?.relu()?, &mut dropout)?;
            let f = block.ffn_out.forward(&f)?;
            x = (x + dropped(f, &mut dropout)?)?.broadcast_mul(&mask)?;
        }
        Ok(self.final_ln.forward(&x)?.broadcast_mul(&mask)?)
    }
}

/// `t` with dropout when training.
fn dropped(t: Tensor, dropout: &mut Option<(f32, &mut Rng)>) -> Result<Tensor> {
    match dropout.as_mut() {
        Some((p, rng)) => Ok(apply_dropout(&t, *p, rng)?),
        None => Ok(t),
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
