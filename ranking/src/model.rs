//! The shared input of the feature rankers and the YouTube ranker's network.
//!
//! [`FeatureInput`] turns a batch into x_0, the concatenation of every field's embedding and the
//! encoded continuous features: `[candidate item, candidate tokens (mean), recent watches
//! (mean), recent tokens (mean), one row per user categorical field, 4 inputs per continuous
//! feature]`. The YouTube ranker feeds x_0 to a ReLU tower ([`RankingNet`]); DeepFM and
//! DCN-v2 feed it to their own heads ([`LogitHead`]).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use nn::layers::Tower;
use nn::rng::Rng;

use crate::batch::{BagTensors, BatchTensors};
use crate::config::RankerConfig;
use crate::error::{RankingError, Result};
use crate::example::FeatureSchema;
use crate::quantiles::INPUTS_PER_CONTINUOUS;

/// Standard deviation of the initial embedding entries.
pub(crate) const EMBEDDING_INIT_STD: f64 = 0.05;

/// Names of the embedding tables in the weights map.
pub(crate) const ITEM_TABLE: &str = "items.table";
/// See [`ITEM_TABLE`].
pub(crate) const TOKEN_TABLE: &str = "tokens.table";
/// See [`ITEM_TABLE`].
pub(crate) const USER_TABLE: &str = "users.table";

/// Row widths of the three embedding tables x_0 reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InputDims {
    /// Item table (candidate and recent watches).
    pub item: usize,
    /// Token table (candidate and recent tokens).
    pub token: usize,
    /// User-categorical table (one row per field value).
    pub user: usize,
}

impl InputDims {
    /// Every table `dim` wide (the rankers whose fields must share one width).
    pub fn uniform(dim: usize) -> Self {
        Self {
            item: dim,
            token: dim,
            user: dim,
        }
    }

    /// Width of x_0 for `schema`.
    pub fn width(&self, schema: &FeatureSchema) -> usize {
        self.embedded_width(schema) + schema.continuous.len() * INPUTS_PER_CONTINUOUS
    }

    /// Width of the embedded part of x_0 (everything before the continuous inputs).
    pub fn embedded_width(&self, schema: &FeatureSchema) -> usize {
        2 * self.item + 2 * self.token + schema.user_cardinalities.len() * self.user
    }
}

/// An embedding table read as a sum of scaled rows per segment (a masked mean when the scales
/// are 1 / bag length). Segments without ids come out as zero rows. The table is passed to
/// each call: training hands in only the rows a batch touches (see `crate::sparse`).
pub(crate) struct EmbeddingBag {
    dim: usize,
}

impl EmbeddingBag {
    /// A bag over `dim`-wide rows.
    pub fn new(dim: usize) -> Self {
        Self { dim }
    }

    /// `[n_segments, dim]`: per segment, the sum of its ids' rows of `table` times their scales.
    pub fn forward(&self, table: &Tensor, bags: &BagTensors) -> Result<Tensor> {
        let zeros = Tensor::zeros((bags.n_segments, self.dim), DType::F32, table.device())?;
        if bags.len == 0 {
            return Ok(zeros);
        }
        let rows = table
            .index_select(&bags.ids, 0)?
            .broadcast_mul(&bags.scales)?;
        Ok(zeros.index_add(&bags.segments, &rows, 0)?)
    }
}

/// The embedding tables a forward pass reads (full tables, or a batch's compact rows with the
/// batch's ids rewritten to match).
pub(crate) struct Tables<'a> {
    pub items: &'a Tensor,
    pub tokens: &'a Tensor,
    pub users: &'a Tensor,
}

/// x_0 of a batch: candidate item and tokens, user context (recent watches, their tokens,
/// user categoricals), encoded continuous features, concatenated (a table of width 0 adds
/// nothing).
pub(crate) struct FeatureInput {
    items: EmbeddingBag,
    tokens: EmbeddingBag,
    users: EmbeddingBag,
    n_user_fields: usize,
}

impl FeatureInput {
    /// The input for `schema` with tables `dims` wide.
    pub fn new(schema: &FeatureSchema, dims: InputDims) -> Self {
        Self {
            items: EmbeddingBag::new(dims.item),
            tokens: EmbeddingBag::new(dims.token),
            users: EmbeddingBag::new(dims.user),
            n_user_fields: schema.user_cardinalities.len(),
        }
    }

    /// x_0 `[batch, width]`.
    pub fn forward(&self, tables: &Tables, batch: &BatchTensors) -> Result<Tensor> {
        let mut context = Vec::with_capacity(3);
        if self.items.dim > 0 {
            context.push(self.items.forward(tables.items, &batch.recent)?);
        }
        if self.tokens.dim > 0 {
            context.push(self.tokens.forward(tables.tokens, &batch.recent_tokens)?);
        }
        if self.users.dim > 0 && self.n_user_fields > 0 {
            let users = self.users.forward(tables.users, &batch.users)?;
            context.push(users.reshape((batch.n_contexts, self.n_user_fields * self.users.dim))?);
        }
        let mut parts = Vec::with_capacity(4);
        if self.items.dim > 0 {
            parts.push(self.items.forward(tables.items, &batch.items)?);
        }
        if self.tokens.dim > 0 {
            parts.push(self.tokens.forward(tables.tokens, &batch.item_tokens)?);
        }
        if !context.is_empty() {
            parts.push(Tensor::cat(&context, 1)?.index_select(&batch.context_of, 0)?);
        }
        if batch.continuous.dim(1)? > 0 {
            parts.push(batch.continuous.clone());
        }
        Ok(Tensor::cat(&parts, 1)?)
    }
}

/// What a ranker computes from x_0: one logit per row.
pub(crate) trait LogitHead {
    /// Logits `[batch]` of x_0 `[batch, width]`.
    fn logits(&self, x0: &Tensor) -> Result<Tensor>;

    /// The training objective of a batch whose x_0 is `x0` (`rows`: its examples, in order) and
    /// the unscaled sum of w * loss reported as the training loss. A single-task head: `scale`
    /// x the watch-time-weighted logistic loss; the multi-task head adds its other tasks.
    fn objective(
        &self,
        x0: &Tensor,
        labels: &Tensor,
        weights: &Tensor,
        scale: f64,
        _rows: &[&crate::example::RankingExample],
    ) -> Result<(Tensor, f64)> {
        let sum = nn::loss::weighted_bce_sum(&self.logits(x0)?, labels, weights)?;
        Ok((sum.affine(scale, 0.0)?, f64::from(sum.to_scalar::<f32>()?)))
    }
}

impl LogitHead for Tower {
    fn logits(&self, x0: &Tensor) -> Result<Tensor> {
        Ok(self.forward(x0)?.squeeze(1)?)
    }
}

/// A whole network: the shared input, then a head.
pub(crate) struct Net<H> {
    /// Builds x_0.
    pub input: FeatureInput,
    /// Turns x_0 into logits.
    pub head: H,
}

impl<H: LogitHead> Net<H> {
    /// Logits `[batch]` (training steps call the input and the head's objective instead).
    #[cfg(test)]
    pub fn forward(&self, tables: &Tables, batch: &BatchTensors) -> Result<Tensor> {
        self.head.logits(&self.input.forward(tables, batch)?)
    }
}

/// The YouTube ranker's network: x_0 into a ReLU tower with one logit.
pub(crate) type RankingNet = Net<Tower>;

impl RankingNet {
    /// Builds the tower (zero weights, see [`seeded_init`]) for `schema`.
    pub fn new(vb: VarBuilder, schema: &FeatureSchema, config: &RankerConfig) -> Result<Self> {
        let input = input_width(schema, config);
        if input == 0 {
            return Err(RankingError::InvalidConfig(
                "the network has no input".into(),
            ));
        }
        Ok(Self {
            input: FeatureInput::new(schema, config.dims()),
            head: Tower::new(vb.pp("tower"), input, &config.hidden, 1)?,
        })
    }
}

/// Width of the tower's input for `schema` and `config`.
pub(crate) fn input_width(schema: &FeatureSchema, config: &RankerConfig) -> usize {
    config.dims().width(schema)
}

/// How [`seeded_init`] fills one variable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fill {
    /// Every entry this value.
    Const(f32),
    /// Uniform in +-bound.
    Uniform(f64),
    /// Normal with this standard deviation.
    Normal(f64),
}

/// The tower's rule: biases zero except the output bias, `prior` (the prior log-odds speeds up
/// the first epoch); the output weight uniform(+-1/sqrt(fan_in)), other weights He-uniform.
/// Any variable named `*output.bias` / `*output.weight` is treated as the output layer.
pub(crate) fn tower_fill(name: &str, dims: &[usize], prior: f32) -> Fill {
    if name.ends_with("output.bias") {
        Fill::Const(prior)
    } else if name.ends_with("bias") {
        Fill::Const(0.0)
    } else {
        let fan_in = dims.last().copied().unwrap_or(1).max(1) as f64;
        if name.ends_with("output.weight") {
            Fill::Uniform(fan_in.recip().sqrt())
        } else {
            Fill::Uniform((6.0 / fan_in).sqrt())
        }
    }
}

/// Overwrites every variable, in name order, with seeded values `fill(name, dims, prior)`
/// chooses.
pub(crate) fn seeded_init(
    varmap: &VarMap,
    rng: &mut Rng,
    prior: f32,
    fill: impl Fn(&str, &[usize], f32) -> Fill,
    device: &Device,
) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| RankingError::InvalidConfig("variable map lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let count: usize = dims.iter().product();
        let values: Vec<f32> = match fill(name, &dims, prior) {
            Fill::Const(c) => vec![c; count],
            Fill::Uniform(bound) => (0..count)
                .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                .collect(),
            Fill::Normal(std) => (0..count).map(|_| (rng.normal() * std) as f32).collect(),
        };
        var.set(&Tensor::from_vec(values, dims, device)?)?;
    }
    Ok(())
}
