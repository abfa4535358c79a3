//! The scoring path: the input rows x_0 are assembled in plain Rust (embedding rows and means
//! copied straight from the tables, in parallel: [`InputRows`], shared by every ranker on that
//! input), then dense layers run as one matmul and one fused bias (+ ReLU) pass each
//! ([`ServingStack`]: the YouTube ranker's tower, the cross rankers' deep parts). Same function
//! as [`crate::model::RankingNet::forward`] with far fewer tensor operations per batch (each
//! costs a thread synchronisation).

use std::collections::HashMap;

use candle_core::{CpuStorage, Device, InplaceOp2, Layout, Tensor};
use rayon::prelude::*;

use crate::config::RankerConfig;
use crate::error::{RankingError, Result};
use crate::example::{FeatureSchema, RankingExample};
use crate::model::{InputDims, ITEM_TABLE, TOKEN_TABLE, USER_TABLE};
use crate::quantiles::ContinuousEncoder;

/// Rows assembled per parallel task.
const ROWS_PER_TASK: usize = 256;

/// An embedding table as a plain row-major array.
struct Table {
    values: Vec<f32>,
    dim: usize,
}

impl Table {
    /// Reads table `name`, which must be `rows.max(1)` x `dim`.
    fn from(
        weights: &HashMap<String, Tensor>,
        name: &str,
        rows: usize,
        dim: usize,
    ) -> Result<Self> {
        let tensor = weights
            .get(name)
            .ok_or_else(|| RankingError::InvalidConfig(format!("missing weight {name}")))?;
        if tensor.dims() != [rows.max(1), dim] {
            return Err(RankingError::InvalidConfig(format!(
                "weight {name} has shape {:?}, expected [{}, {dim}]",
                tensor.dims(),
                rows.max(1)
            )));
        }
        Ok(Self {
            values: tensor.flatten_all()?.to_vec1::<f32>()?,
            dim,
        })
    }

    /// Adds `scale` times row `id` to `out` (`dim` values).
    fn add_row(&self, id: u32, scale: f32, out: &mut [f32]) {
        let start = id as usize * self.dim;
        if let Some(row) = self.values.get(start..start + self.dim) {
            for (o, &v) in out.iter_mut().zip(row) {
                *o += scale * v;
            }
        }
    }

    /// Writes the mean of `ids`' rows (zeros when empty) into `out`.
    fn mean_into(&self, ids: &[u32], out: &mut [f32]) {
        out.fill(0.0);
        let scale = 1.0 / ids.len().max(1) as f32;
        for &id in ids {
            self.add_row(id, scale, out);
        }
    }
}

/// Adds a bias row to every row of a matrix in place, then ReLU if asked: one pass over the
/// layer output instead of two tensor operations (each a thread synchronisation).
struct AddBias {
    relu: bool,
}

impl InplaceOp2 for AddBias {
    fn name(&self) -> &'static str {
        "add-bias"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        bias: &CpuStorage,
        bias_l: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(out), CpuStorage::F32(bias)) = (dst, bias) else {
            candle_core::bail!("add-bias: f32 tensors only")
        };
        let (Some((o_start, o_end)), Some((b_start, b_end))) =
            (dst_l.contiguous_offsets(), bias_l.contiguous_offsets())
        else {
            candle_core::bail!("add-bias: contiguous tensors only")
        };
        let (out, bias) = (&mut out[o_start..o_end], &bias[b_start..b_end]);
        if bias.is_empty() || out.len() % bias.len() != 0 {
            candle_core::bail!(
                "add-bias: {} values are not rows of {}",
                out.len(),
                bias.len()
            )
        }
        let relu = self.relu;
        out.par_chunks_mut(bias.len() * ROWS_PER_TASK)
            .for_each(|block| {
                for row in block.chunks_mut(bias.len()) {
                    for (o, &b) in row.iter_mut().zip(bias) {
                        *o = if relu { (*o + b).max(0.0) } else { *o + b };
                    }
                }
            });
        Ok(())
    }
}

/// One dense layer: `x W^T + b`, with `W^T` stored contiguous.
struct Layer {
    weight_t: Tensor,
    bias: Tensor,
}

/// Dense layers prepared for scoring: one matmul per layer, then the bias (and the ReLU) added
/// in one parallel pass ([`AddBias`]) instead of two tensor operations.
pub(crate) struct ServingStack {
    layers: Vec<Layer>,
}

impl ServingStack {
    /// The layers of `(weight [out, in], bias [out])` pairs, input side first.
    pub fn new<'a>(layers: impl IntoIterator<Item = (&'a Tensor, &'a Tensor)>) -> Result<Self> {
        let layers = layers
            .into_iter()
            .map(|(w, b)| {
                Ok(Layer {
                    weight_t: w.t()?.contiguous()?,
                    bias: b.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// The layers of candle `Linear`s (each with a bias).
    pub fn from_linears<'a>(
        linears: impl IntoIterator<Item = &'a candle_nn::Linear>,
    ) -> Result<Self> {
        let pairs = linears
            .into_iter()
            .map(|l| {
                let bias = l
                    .bias()
                    .ok_or_else(|| RankingError::InvalidConfig("a layer without bias".into()))?;
                Ok((l.weight(), bias))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(pairs)
    }

    /// `x` through every layer, ReLU after each but the last (after the last too with
    /// `relu_last`).
    pub fn forward(&self, x: Tensor, relu_last: bool) -> Result<Tensor> {
        let mut h = x;
        let last = self.layers.len().saturating_sub(1);
        for (l, layer) in self.layers.iter().enumerate() {
            h = h.matmul(&layer.weight_t)?;
            h.inplace_op2(
                &layer.bias,
                &AddBias {
                    relu: l < last || relu_last,
                },
            )?;
        }
        Ok(h)
    }
}

/// DCN-v2's full-rank cross update in place, `h <- x_0 ⊙ (h + b) + x_l`, on `h = x_l W^T`:
/// one parallel pass instead of three tensor operations.
pub(crate) struct CrossUpdate<'a> {
    /// b, one value per column.
    pub bias: &'a [f32],
}

impl candle_core::InplaceOp3 for CrossUpdate<'_> {
    fn name(&self) -> &'static str {
        "cross-update"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        x0: &CpuStorage,
        x0_l: &Layout,
        xl: &CpuStorage,
        xl_l: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(h), CpuStorage::F32(x0), CpuStorage::F32(xl)) = (dst, x0, xl) else {
            candle_core::bail!("cross-update: f32 tensors only")
        };
        let (Some((h0, h1)), Some((a0, a1)), Some((b0, b1))) = (
            dst_l.contiguous_offsets(),
            x0_l.contiguous_offsets(),
            xl_l.contiguous_offsets(),
        ) else {
            candle_core::bail!("cross-update: contiguous tensors only")
        };
        let (h, x0, xl) = (&mut h[h0..h1], &x0[a0..a1], &xl[b0..b1]);
        let width = self.bias.len();
        if width == 0 || h.len() != x0.len() || h.len() != xl.len() || h.len() % width != 0 {
            candle_core::bail!("cross-update: shapes do not match")
        }
        let block = width * ROWS_PER_TASK;
        h.par_chunks_mut(block)
            .zip(x0.par_chunks(block))
            .zip(xl.par_chunks(block))
            .for_each(|((h, x0), xl)| {
                for (k, v) in h.iter_mut().enumerate() {
                    *v = x0[k] * (*v + self.bias[k % width]) + xl[k];
                }
            });
        Ok(())
    }
}

/// x_0 rows assembled in plain Rust from the embedding tables: the scoring counterpart of
/// [`crate::model::FeatureInput`], shared by every ranker on that input.
pub(crate) struct InputRows {
    items: Table,
    tokens: Table,
    users: Table,
    user_offsets: Vec<u32>,
    input: usize,
}

impl InputRows {
    /// Reads the tables of `dims` for `schema` from `weights`.
    pub fn new(
        weights: &HashMap<String, Tensor>,
        schema: &FeatureSchema,
        dims: InputDims,
    ) -> Result<Self> {
        Ok(Self {
            items: Table::from(weights, ITEM_TABLE, schema.n_items, dims.item)?,
            tokens: Table::from(weights, TOKEN_TABLE, schema.n_tokens, dims.token)?,
            users: Table::from(weights, USER_TABLE, schema.user_rows(), dims.user)?,
            user_offsets: schema.user_offsets(),
            input: dims.width(schema),
        })
    }

    /// Width of the user-side part of a row: recent watches, their tokens, user fields.
    fn context_width(&self) -> usize {
        self.items.dim + self.tokens.dim + self.user_offsets.len() * self.users.dim
    }

    fn context_into(&self, example: &RankingExample, out: &mut [f32]) {
        let (recent, rest) = out.split_at_mut(self.items.dim);
        let (tokens, users) = rest.split_at_mut(self.tokens.dim);
        self.items.mean_into(&example.recent_watches, recent);
        self.tokens.mean_into(&example.recent_tokens, tokens);
        users.fill(0.0);
        let fields = users.chunks_mut(self.users.dim.max(1));
        for ((value, offset), field) in example
            .user_categorical
            .iter()
            .zip(&self.user_offsets)
            .zip(fields)
        {
            if let Some(v) = value {
                self.users.add_row(v + offset, 1.0, field);
            }
        }
    }

    /// x_0 of `examples` (checked against the schema) as a `[examples, width]` tensor.
    pub fn rows(
        &self,
        examples: &[RankingExample],
        encoder: &ContinuousEncoder,
        device: &Device,
    ) -> Result<Tensor> {
        let rows = self.rows_vec(examples, encoder);
        Ok(Tensor::from_vec(
            rows,
            (examples.len(), self.input),
            device,
        )?)
    }

    /// x_0 of `examples` (checked against the schema), row-major.
    pub fn rows_vec(&self, examples: &[RankingExample], encoder: &ContinuousEncoder) -> Vec<f32> {
        // User contexts, once per run of consecutive examples sharing them.
        let mut context_of = Vec::with_capacity(examples.len());
        let mut firsts: Vec<usize> = Vec::new();
        for (i, example) in examples.iter().enumerate() {
            let same = firsts.last().is_some_and(|&f| {
                let p = &examples[f];
                p.recent_watches == example.recent_watches
                    && p.recent_tokens == example.recent_tokens
                    && p.user_categorical == example.user_categorical
            });
            if !same {
                firsts.push(i);
            }
            context_of.push(firsts.len() - 1);
        }
        let context_width = self.context_width();
        let mut contexts = vec![0f32; firsts.len() * context_width];
        if context_width > 0 {
            contexts
                .par_chunks_mut(context_width)
                .zip(&firsts)
                .for_each(|(out, &f)| self.context_into(&examples[f], out));
        }
        // Rows: [item, item tokens, context, encoded continuous].
        let input = self.input;
        let mut rows = vec![0f32; examples.len() * input];
        if input > 0 {
            rows.par_chunks_mut(input * ROWS_PER_TASK)
                .enumerate()
                .for_each(|(task, block)| {
                    let mut encoded = Vec::with_capacity(encoder.width());
                    for (k, row) in block.chunks_mut(input).enumerate() {
                        let i = task * ROWS_PER_TASK + k;
                        let example = &examples[i];
                        let (item, rest) = row.split_at_mut(self.items.dim);
                        let (tokens, rest) = rest.split_at_mut(self.tokens.dim);
                        let (context, continuous) = rest.split_at_mut(context_width);
                        if let Some(id) = example.item {
                            self.items.add_row(id, 1.0, item);
                        }
                        self.tokens.mean_into(&example.item_tokens, tokens);
                        let c = context_of[i] * context_width;
                        context.copy_from_slice(&contexts[c..c + context_width]);
                        encoded.clear();
                        encoder.encode_into(&example.continuous, &mut encoded);
                        continuous.copy_from_slice(&encoded);
                    }
                });
        }
        rows
    }
}

/// The YouTube ranker's network prepared for scoring.
pub(crate) struct ServingNet {
    rows: InputRows,
    tower: ServingStack,
}

impl ServingNet {
    /// Prepares the weights of a [`crate::model::RankingNet`] for scoring.
    pub fn new(
        weights: &HashMap<String, Tensor>,
        schema: &FeatureSchema,
        config: &RankerConfig,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(config.hidden.len() + 1);
        let names = (0..config.hidden.len())
            .map(|i| format!("tower.hidden.{i}"))
            .chain(["tower.output".to_string()]);
        for name in names {
            let get = |suffix: &str| {
                weights.get(&format!("{name}.{suffix}")).ok_or_else(|| {
                    RankingError::InvalidConfig(format!("missing weight {name}.{suffix}"))
                })
            };
            layers.push((get("weight")?, get("bias")?));
        }
        Ok(Self {
            rows: InputRows::new(weights, schema, config.dims())?,
            tower: ServingStack::new(layers)?,
        })
    }

    /// The x_0 rows' assembler.
    pub fn input_rows(&self) -> &InputRows {
        &self.rows
    }

    /// Logits of `examples` (checked against the schema), as one batch.
    pub fn logits(
        &self,
        examples: &[RankingExample],
        encoder: &ContinuousEncoder,
        device: &Device,
    ) -> Result<Vec<f32>> {
        let x0 = self.rows.rows(examples, encoder, device)?;
        Ok(self
            .tower
            .forward(x0, false)?
            .squeeze(1)?
            .to_vec1::<f32>()?)
    }
}

/// A ranker's head rebuilt on a device, where it scores in candle ops (what
/// `rerank --device cuda:N` runs): x_0 rows are assembled in host memory by [`InputRows`] (the
/// embedding tables stay there) and cross to the device once per batch; the head's layers
/// live there. The CPU scoring path ([`ServingStack`] and the fused passes) is the default.
pub(crate) struct DeviceHead<H> {
    head: H,
    device: Device,
}

impl<H: crate::model::LogitHead> DeviceHead<H> {
    /// The head `build` makes from `weights` (all but the embedding tables) copied to
    /// `device`.
    pub fn new(
        weights: &HashMap<String, Tensor>,
        device: &Device,
        build: impl FnOnce(candle_nn::VarBuilder) -> Result<H>,
    ) -> Result<Self> {
        // The embedding tables stay in host memory, where [`InputRows`] reads them.
        let on_device = weights
            .iter()
            .filter(|(name, _)| ![ITEM_TABLE, TOKEN_TABLE, USER_TABLE].contains(&name.as_str()))
            .map(|(name, t)| Ok((name.clone(), t.to_device(device)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        let vb = candle_nn::VarBuilder::from_tensors(on_device, candle_core::DType::F32, device);
        Ok(Self {
            head: build(vb)?,
            device: device.clone(),
        })
    }

    /// The head.
    pub fn head(&self) -> &H {
        &self.head
    }

    /// x_0 of `examples` (checked against the schema) on the head's device.
    pub fn rows(
        &self,
        rows: &InputRows,
        examples: &[RankingExample],
        encoder: &ContinuousEncoder,
    ) -> Result<Tensor> {
        rows.rows(examples, encoder, &self.device)
    }

    /// Logits of `examples` (checked against the schema), as one batch.
    pub fn logits(
        &self,
        rows: &InputRows,
        examples: &[RankingExample],
        encoder: &ContinuousEncoder,
    ) -> Result<Vec<f32>> {
        let x0 = self.rows(rows, examples, encoder)?;
        Ok(self.head.logits(&x0)?.to_vec1::<f32>()?)
    }
}
