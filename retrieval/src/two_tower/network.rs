//! The two towers, the item features they read and the batches they take.

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use nn::bag::Bags;
use nn::layers::{EmbeddingTable, Tower};
use nn::rng::Rng;
use serde::{Deserialize, Serialize};

pub use super::age::{age_bucket, AGE_BUCKETS};
use super::config::TwoTowerConfig;
use crate::error::{invalid, Result};
pub use crate::youtube_dnn::network::ItemTokens;

/// Standardisation of a non-negative numeric item feature: z = (log1p(x) - mean) / std.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Mean of log1p(x) over the training catalogue's known values.
    pub mean: f32,
    /// Standard deviation of log1p(x) (at least 1e-3).
    pub std: f32,
}

impl Standardizer {
    /// Fits the statistics on the known values (mean 0, std 1 when there are none).
    pub fn fit(values: &[Option<f32>]) -> Self {
        let logs: Vec<f64> = values
            .iter()
            .flatten()
            .map(|&x| (x as f64).ln_1p())
            .collect();
        if logs.is_empty() {
            return Self {
                mean: 0.0,
                std: 1.0,
            };
        }
        let n = logs.len() as f64;
        let mean = logs.iter().sum::<f64>() / n;
        let var = logs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        Self {
            mean: mean as f32,
            std: (var.sqrt() as f32).max(1e-3),
        }
    }

    /// The two inputs of one value: `[z, 0]` when known, `[0, 1]` (the missing flag) when not.
    pub fn encode(&self, x: Option<f32>) -> [f32; 2] {
        match x {
            Some(x) => [((x.ln_1p()) - self.mean) / self.std, 0.0],
            None => [0.0, 1.0],
        }
    }
}

/// Sizes of what the network embeds and which item features it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vocabulary {
    /// Items with an id embedding row (the items the model was trained with); an item index
    /// at or above it has a zero id embedding.
    pub id_rows: usize,
    /// Number of tokens (0 = no token feature).
    pub num_tokens: usize,
    /// Duration feature statistics, when the training catalogue had durations.
    pub duration: Option<Standardizer>,
    /// Publication-age statistics, when the training catalogue had ages: the item tower then
    /// reads the age at the reference time, and the score has a learned bias per age bucket
    /// ([`age_bucket`]) at the example's time.
    pub age: Option<Standardizer>,
    /// Cardinality of each categorical user feature used.
    pub user_cardinalities: Vec<usize>,
    /// Number of numeric user features used.
    pub num_numeric: usize,
}

/// Every item's features: what the item tower reads (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemFeatures {
    /// Number of items.
    pub num_items: usize,
    /// Tokens of each item (empty when the model has no token feature).
    pub tokens: ItemTokens,
    /// Duration in seconds of each item (empty when the model has no duration feature).
    pub duration: Vec<Option<f32>>,
    /// Age in days of each item at the training data's reference time (empty when the model
    /// has no age bias).
    pub age: Vec<Option<f32>>,
}

impl ItemFeatures {
    /// The features of `catalog` that `vocab` uses; tokens must be inside the vocabulary.
    pub fn from_catalog(catalog: &nn::Catalog, vocab: &Vocabulary) -> Result<Self> {
        let n = catalog.num_items;
        let tokens = if vocab.num_tokens == 0 {
            ItemTokens::default()
        } else if catalog.item_tokens.is_empty() {
            ItemTokens::from_lists(&vec![Vec::new(); n])?
        } else {
            if let Some(t) = catalog
                .item_tokens
                .iter()
                .flatten()
                .find(|&&t| t as usize >= vocab.num_tokens)
            {
                return Err(invalid(format!(
                    "token {t} is outside the model's {} tokens",
                    vocab.num_tokens
                )));
            }
            ItemTokens::from_lists(&catalog.item_tokens)?
        };
        let column = |on: bool, values: &[Option<f32>]| match (on, values.is_empty()) {
            (false, _) => Vec::new(),
            (true, true) => vec![None; n],
            (true, false) => values.to_vec(),
        };
        Ok(Self {
            num_items: n,
            tokens,
            duration: column(vocab.duration.is_some(), &catalog.duration_seconds),
            age: column(vocab.age.is_some(), &catalog.age_days),
        })
    }

    /// Appends `more`'s items after these.
    pub fn append(&mut self, more: ItemFeatures) {
        if !self.tokens.offsets.is_empty() {
            let base = self.tokens.ids.len() as u32;
            let extra = more.tokens.offsets.iter().skip(1).map(|&o| o + base);
            self.tokens.offsets.extend(extra);
            self.tokens.ids.extend(more.tokens.ids);
        }
        self.duration.extend(more.duration);
        self.age.extend(more.age);
        self.num_items += more.num_items;
    }

    /// Checks that every column covers every item and tokens are inside `vocab`.
    pub fn check(&self, vocab: &Vocabulary) -> Result<()> {
        let n = self.num_items;
        let t = &self.tokens;
        let tokens_ok = if vocab.num_tokens == 0 {
            t.offsets.is_empty()
        } else {
            t.offsets.len() == n + 1
                && t.offsets.first() == Some(&0)
                && t.offsets.windows(2).all(|w| w[0] <= w[1])
                && t.offsets.last().copied() == Some(t.ids.len() as u32)
                && t.ids.iter().all(|&k| (k as usize) < vocab.num_tokens)
        };
        let column_ok = |on: bool, len: usize| if on { len == n } else { len == 0 };
        if !tokens_ok
            || !column_ok(vocab.duration.is_some(), self.duration.len())
            || !column_ok(vocab.age.is_some(), self.age.len())
            || vocab.id_rows > n
        {
            return Err(invalid("the item features do not match the model"));
        }
        Ok(())
    }
}

/// Where each input sits in the two towers' input rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Width of the id embeddings.
    pub id_width: usize,
    /// Width of the token embeddings (0 = no token feature).
    pub token_width: usize,
    /// Dense item inputs: 2 per numeric item feature (standardised value, missing flag).
    pub item_dense: usize,
    /// Width of the user tower's gathered block: history mean, recent mean, user features.
    pub user_sparse: usize,
    /// Offset of the recent-watches mean, when on.
    pub recent: Option<usize>,
    /// Offset and width of each categorical user feature.
    pub user_categorical: Vec<(usize, usize)>,
    /// Numeric user features (the user tower's dense block).
    pub numeric: usize,
}

impl Layout {
    /// The layout `cfg` gives for `vocab`.
    pub fn new(cfg: &TwoTowerConfig, vocab: &Vocabulary) -> Self {
        let token_width = if vocab.num_tokens > 0 {
            cfg.token_embedding_dim
        } else {
            0
        };
        let embed = cfg.id_embedding_dim + token_width;
        let mut width = embed;
        let recent = (cfg.recent_window > 0).then(|| {
            width += embed;
            embed
        });
        let user_categorical = vocab
            .user_cardinalities
            .iter()
            .map(|_| {
                width += cfg.user_embedding_dim;
                (width - cfg.user_embedding_dim, cfg.user_embedding_dim)
            })
            .collect();
        let item_dense = 2 * (vocab.duration.is_some() as usize + vocab.age.is_some() as usize);
        Self {
            id_width: cfg.id_embedding_dim,
            token_width,
            item_dense,
            user_sparse: width,
            recent,
            user_categorical,
            numeric: vocab.num_numeric,
        }
    }

    /// Width of an item's embedded part: id embedding then token mean.
    pub fn item_embed(&self) -> usize {
        self.id_width + self.token_width
    }
}

/// Item tower inputs of a batch of items, before the embedding lookup.
#[derive(Debug, Clone)]
pub struct ItemBatch {
    /// Number of items.
    pub rows: usize,
    /// Each item's id row (weight 1), or an empty bag (zero id embedding).
    pub ids: Bags,
    /// Each item's token mean.
    pub tokens: Bags,
    /// `rows x item_dense` standardised values and missing flags.
    pub dense: Vec<f32>,
}

/// User tower inputs of a batch of histories, before the embedding lookup.
#[derive(Debug, Clone)]
pub struct UserBatch {
    /// Number of histories.
    pub rows: usize,
    /// History mean of the id embeddings (items without an id row count as zero).
    pub ids: Bags,
    /// History mean of the items' token means.
    pub tokens: Bags,
    /// The same two means over the last `recent_window` watches.
    pub recent_ids: Bags,
    /// See `recent_ids`.
    pub recent_tokens: Bags,
    /// One single-row bag per categorical user feature.
    pub categorical: Vec<Bags>,
    /// `rows x numeric` values.
    pub dense: Vec<f32>,
}

/// One history with its user features (each may be empty: unknown).
#[derive(Debug, Clone, Copy)]
pub struct UserSource<'a> {
    /// Watches, oldest first, already cut to the last `max_history`.
    pub history: &'a [u32],
    /// Categorical user feature values.
    pub categorical: &'a [u32],
    /// Numeric user feature values.
    pub numeric: &'a [f32],
}

impl ItemFeatures {
    /// The item tower inputs of `items`; item j gets its id row when j < `vocab.id_rows` and
    /// `keep_id(j)` (training draws the DropoutNet mask there).
    pub fn item_batch(
        &self,
        items: &[u32],
        vocab: &Vocabulary,
        mut keep_id: impl FnMut(u32) -> bool,
    ) -> ItemBatch {
        let mut b = ItemBatch {
            rows: items.len(),
            ids: Bags::new(),
            tokens: Bags::new(),
            dense: Vec::new(),
        };
        for &j in items {
            let known = (j as usize) < vocab.id_rows && keep_id(j);
            b.ids.push_mean(known.then_some(j));
            b.tokens.push_mean(self.tokens.of(j).iter().copied());
            for (column, stats) in [(&self.duration, vocab.duration), (&self.age, vocab.age)] {
                if let Some(stats) = stats {
                    let x = column.get(j as usize).copied().flatten();
                    b.dense.extend(stats.encode(x));
                }
            }
        }
        b
    }

    /// Appends the mean of `items`' embedded parts (id row, token mean) to `ids` and `tokens`:
    /// each item weighs 1/len, an item without an id row adds nothing to the id mean, an
    /// item's tokens share its weight.
    fn push_item_mean(&self, items: &[u32], id_rows: usize, ids: &mut Bags, tokens: &mut Bags) {
        if !items.is_empty() {
            let w = 1.0 / items.len() as f32;
            for &i in items {
                if (i as usize) < id_rows {
                    ids.ids.push(i);
                    ids.weights.push(w);
                }
                let t = self.tokens.of(i);
                if !t.is_empty() {
                    let wt = w / t.len() as f32;
                    tokens.ids.extend_from_slice(t);
                    tokens.weights.extend(std::iter::repeat_n(wt, t.len()));
                }
            }
        }
        ids.offsets.push(ids.ids.len());
        tokens.offsets.push(tokens.ids.len());
    }

    /// The user tower inputs of `sources`.
    pub fn user_batch<'a>(
        &self,
        layout: &Layout,
        vocab: &Vocabulary,
        recent_window: usize,
        sources: impl ExactSizeIterator<Item = UserSource<'a>>,
    ) -> UserBatch {
        let rows = sources.len();
        let mut b = UserBatch {
            rows,
            ids: Bags::new(),
            tokens: Bags::new(),
            recent_ids: Bags::new(),
            recent_tokens: Bags::new(),
            categorical: vec![Bags::new(); layout.user_categorical.len()],
            dense: Vec::with_capacity(rows * layout.numeric),
        };
        for src in sources {
            let h = src.history;
            self.push_item_mean(h, vocab.id_rows, &mut b.ids, &mut b.tokens);
            if layout.recent.is_some() {
                let recent = &h[h.len().saturating_sub(recent_window)..];
                let (ids, tokens) = (&mut b.recent_ids, &mut b.recent_tokens);
                self.push_item_mean(recent, vocab.id_rows, ids, tokens);
            }
            for (f, bags) in b.categorical.iter_mut().enumerate() {
                bags.push_mean(src.categorical.get(f).copied());
            }
            if layout.numeric > 0 {
                let n = b.dense.len();
                b.dense.resize(n + layout.numeric, 0.0);
                if src.numeric.len() == layout.numeric {
                    b.dense[n..].copy_from_slice(src.numeric);
                }
            }
        }
        b
    }
}

/// All layers: the shared id and token tables, the user feature tables and the two towers.
#[derive(Debug, Clone)]
pub struct Network {
    /// Item id embeddings, `id_rows x id_embedding_dim`.
    pub ids: EmbeddingTable,
    /// Token embeddings, when the catalogue has tokens.
    pub tokens: Option<EmbeddingTable>,
    /// One table per categorical user feature.
    pub user_categorical: Vec<EmbeddingTable>,
    /// Item tower: `[id, token mean, dense]` -> `[v_j, b_j]` (dim + 1).
    pub item_tower: Tower,
    /// User tower: `[history mean, recent mean, user features]` -> u (dim).
    pub user_tower: Tower,
    /// The learned score bias of each age bucket ([`AGE_BUCKETS`] values), when the catalogue
    /// has publication ages.
    pub age_bias: Option<Tensor>,
    /// Where the inputs sit.
    pub layout: Layout,
}

impl Network {
    /// Builds (or, from a filled `vb`, loads) every layer.
    pub fn new(vb: VarBuilder, cfg: &TwoTowerConfig, vocab: &Vocabulary) -> Result<Self> {
        let layout = Layout::new(cfg, vocab);
        let std = cfg.init_std;
        let ids = EmbeddingTable::new(vb.pp("ids"), vocab.id_rows, layout.id_width, std)?;
        let tokens = if layout.token_width > 0 {
            let vb = vb.pp("tokens");
            Some(EmbeddingTable::new(
                vb,
                vocab.num_tokens,
                layout.token_width,
                std,
            )?)
        } else {
            None
        };
        let user_categorical = vocab
            .user_cardinalities
            .iter()
            .enumerate()
            .map(|(f, &card)| {
                let vb = vb.pp(format!("user.{f}"));
                EmbeddingTable::new(vb, card, cfg.user_embedding_dim, std)
            })
            .collect::<nn::Result<Vec<_>>>()?;
        let item_in = layout.item_embed() + layout.item_dense;
        let item_tower = Tower::new(vb.pp("item_tower"), item_in, &cfg.item_hidden, cfg.dim + 1)?;
        let user_in = layout.user_sparse + layout.numeric;
        let user_tower = Tower::new(vb.pp("user_tower"), user_in, &cfg.user_hidden, cfg.dim)?;
        let age_bias = if vocab.age.is_some() {
            let init = candle_nn::Init::Const(0.0);
            Some(
                vb.pp("item_tower")
                    .get_with_hints(AGE_BUCKETS, "age_bias", init)?,
            )
        } else {
            None
        };
        Ok(Self {
            age_bias,
            ids,
            tokens,
            user_categorical,
            item_tower,
            user_tower,
            layout,
        })
    }

    /// Adds the embedded part of an item mean (`ids`, `tokens` bags) at column `offset`.
    fn gather_embed(
        &self,
        ids: &Bags,
        tokens: &Bags,
        out: &mut [f32],
        offset: usize,
        stride: usize,
    ) -> Result<()> {
        self.ids.forward(ids, out, offset, stride)?;
        if let Some(t) = &self.tokens {
            t.forward(tokens, out, offset + self.layout.id_width, stride)?;
        }
        Ok(())
    }

    /// The gathered embedded part of an item batch, `rows x item_embed`.
    pub fn gather_items(&self, b: &ItemBatch) -> Result<Vec<f32>> {
        let stride = self.layout.item_embed();
        let mut out = vec![0.0; b.rows * stride];
        self.gather_embed(&b.ids, &b.tokens, &mut out, 0, stride)?;
        Ok(out)
    }

    /// The gathered block of a user batch, `rows x user_sparse`.
    pub fn gather_users(&self, b: &UserBatch) -> Result<Vec<f32>> {
        let l = &self.layout;
        let stride = l.user_sparse;
        let mut out = vec![0.0; b.rows * stride];
        self.gather_embed(&b.ids, &b.tokens, &mut out, 0, stride)?;
        if let Some(offset) = l.recent {
            self.gather_embed(&b.recent_ids, &b.recent_tokens, &mut out, offset, stride)?;
        }
        for ((table, bags), (offset, _)) in self
            .user_categorical
            .iter()
            .zip(&b.categorical)
            .zip(&l.user_categorical)
        {
            table.forward(bags, &mut out, *offset, stride)?;
        }
        Ok(out)
    }

    /// `[v_j, b_j]` rows from the gathered block (a tensor or a leaf) and the dense inputs.
    pub fn item_forward(
        &self,
        sparse: &Tensor,
        dense: &[f32],
        dropout: Option<(f32, &mut Rng)>,
    ) -> Result<Tensor> {
        let x = with_dense(sparse, dense, self.layout.item_dense)?;
        Ok(self.item_tower.forward_with_dropout(&x, dropout)?)
    }

    /// User vectors from the gathered block (a tensor or a leaf) and the dense inputs.
    pub fn user_forward(
        &self,
        sparse: &Tensor,
        dense: &[f32],
        dropout: Option<(f32, &mut Rng)>,
    ) -> Result<Tensor> {
        let x = with_dense(sparse, dense, self.layout.numeric)?;
        Ok(self.user_tower.forward_with_dropout(&x, dropout)?)
    }
}

/// `[sparse, dense]` where dense is `rows x width` row-major (nothing when width is 0).
fn with_dense(sparse: &Tensor, dense: &[f32], width: usize) -> Result<Tensor> {
    if width == 0 {
        return Ok(sparse.clone());
    }
    let rows = sparse.dim(0)?;
    if dense.len() != rows * width {
        return Err(invalid("dense inputs have the wrong size"));
    }
    let dense = Tensor::from_slice(dense, (rows, width), sparse.device())?;
    Ok(Tensor::cat(&[sparse, &dense], 1)?)
}

/// A `rows x width` tensor of gathered values on `device`.
pub fn block(values: Vec<f32>, rows: usize, width: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(values, (rows, width), device)?)
}
