//! The ranking network: embedding bags for ids, a ReLU tower and one logit.

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

/// The whole network: candidate item and tokens, user context (recent watches, their tokens,
/// user categoricals), encoded continuous features, concatenated into the tower.
pub(crate) struct RankingNet {
    items: EmbeddingBag,
    tokens: EmbeddingBag,
    users: EmbeddingBag,
    tower: Tower,
    n_user_fields: usize,
}

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
            items: EmbeddingBag::new(config.item_dim),
            tokens: EmbeddingBag::new(config.token_dim),
            users: EmbeddingBag::new(config.user_dim),
            tower: Tower::new(vb.pp("tower"), input, &config.hidden, 1)?,
            n_user_fields: schema.user_cardinalities.len(),
        })
    }

    /// Logits `[batch]`.
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
        Ok(self.tower.forward(&Tensor::cat(&parts, 1)?)?.squeeze(1)?)
    }
}

/// Width of the tower's input for `schema` and `config`.
pub(crate) fn input_width(schema: &FeatureSchema, config: &RankerConfig) -> usize {
    2 * config.item_dim
        + 2 * config.token_dim
        + schema.user_cardinalities.len() * config.user_dim
        + schema.continuous.len() * INPUTS_PER_CONTINUOUS
}

/// Overwrites every tower variable with seeded values: hidden weights He-uniform, the output
/// weight uniform(+-1/sqrt(fan_in)), biases zero except the output bias, `output_bias` (the
/// prior log-odds speeds up the first epoch).
pub(crate) fn seeded_init(
    varmap: &VarMap,
    rng: &mut Rng,
    output_bias: f32,
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
        let values: Vec<f32> = if name == "tower.output.bias" {
            vec![output_bias; count]
        } else if name.ends_with("bias") {
            vec![0.0; count]
        } else {
            let fan_in = dims.last().copied().unwrap_or(1).max(1) as f64;
            let bound = if name.starts_with("tower.output") {
                fan_in.recip().sqrt()
            } else {
                (6.0 / fan_in).sqrt()
            };
            (0..count)
                .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                .collect()
        };
        var.set(&Tensor::from_vec(values, dims, device)?)?;
    }
    Ok(())
}
