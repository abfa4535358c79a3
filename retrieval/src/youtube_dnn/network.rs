//! The network: embedding tables, the feature row they feed, and the ReLU tower.

use candle_core::{Device, Tensor, Var};
use candle_nn::VarBuilder;
use nn::bag::Bags;
use nn::layers::{EmbeddingTable, Tower};
use nn::portable::{bag_sum, TouchedRows};
use nn::rng::Rng;

use super::config::YoutubeDnnConfig;
use crate::error::{invalid, Result};

/// Items' token lists in CSR form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemTokens {
    /// Start of each item's tokens; `items + 1` entries (or empty: no tokens at all).
    pub offsets: Vec<u32>,
    /// Token indices.
    pub ids: Vec<u32>,
}

impl ItemTokens {
    /// Flattens per-item token lists.
    pub fn from_lists(lists: &[Vec<u32>]) -> Result<Self> {
        if lists.is_empty() {
            return Ok(Self::default());
        }
        let mut offsets = Vec::with_capacity(lists.len() + 1);
        let mut ids = Vec::new();
        offsets.push(0);
        for l in lists {
            ids.extend_from_slice(l);
            offsets.push(u32::try_from(ids.len()).map_err(|_| invalid("too many item tokens"))?);
        }
        Ok(Self { offsets, ids })
    }

    /// Tokens of `item` (empty when unknown).
    pub fn of(&self, item: u32) -> &[u32] {
        let i = item as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) if a <= b && b as usize <= self.ids.len() => {
                &self.ids[a as usize..b as usize]
            }
            _ => &[],
        }
    }
}

/// Where each feature sits in the tower's input row.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureLayout {
    /// Columns of the gathered (embedding) block, in order: history mean, recent mean,
    /// token mean, user categorical embeddings.
    pub sparse_width: usize,
    /// Columns of the dense block: age, age², sqrt(age) (when on), numeric user features.
    pub dense_width: usize,
    /// Width of the item embeddings.
    pub item_width: usize,
    /// Offset of the recent-watches mean, when on.
    pub recent: Option<usize>,
    /// Offset and width of the token mean, when on.
    pub tokens: Option<(usize, usize)>,
    /// Offset and width of each categorical user feature.
    pub user_categorical: Vec<(usize, usize)>,
    /// Age features on.
    pub age: bool,
    /// Numeric user features.
    pub numeric: usize,
}

/// Sizes of what the network embeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    /// Catalogue size.
    pub num_items: usize,
    /// Number of tokens (0 = none).
    pub num_tokens: usize,
    /// Cardinality of each categorical user feature used.
    pub user_cardinalities: Vec<usize>,
    /// Number of numeric user features used.
    pub num_numeric: usize,
}

impl FeatureLayout {
    /// The layout `cfg` gives for these vocabulary sizes.
    pub fn new(cfg: &YoutubeDnnConfig, vocab: &Vocabulary) -> Self {
        let mut width = cfg.item_embedding_dim;
        let recent = (cfg.recent_window > 0).then(|| {
            width += cfg.item_embedding_dim;
            width - cfg.item_embedding_dim
        });
        let tokens = (cfg.use_tokens && vocab.num_tokens > 0).then(|| {
            width += cfg.token_embedding_dim;
            (width - cfg.token_embedding_dim, cfg.token_embedding_dim)
        });
        let user_categorical = vocab
            .user_cardinalities
            .iter()
            .map(|_| {
                width += cfg.user_embedding_dim;
                (width - cfg.user_embedding_dim, cfg.user_embedding_dim)
            })
            .collect();
        let age = cfg.use_age;
        Self {
            sparse_width: width,
            dense_width: if age { 3 } else { 0 } + vocab.num_numeric,
            item_width: cfg.item_embedding_dim,
            recent,
            tokens,
            user_categorical,
            age,
            numeric: vocab.num_numeric,
        }
    }
}

/// One row of tower input before embedding lookup.
#[derive(Debug, Clone, Copy)]
pub struct FeatureSource<'a> {
    /// The watches the model sees (already cut to the last `max_history`).
    pub history: &'a [u32],
    /// Categorical user feature values (empty = unknown).
    pub categorical: &'a [u32],
    /// Numeric user feature values (empty = unknown).
    pub numeric: &'a [f32],
    /// Normalised example age in [0, 1] (0 at serving).
    pub age: f32,
}

/// A batch of tower inputs: bags per embedded feature plus the dense block.
#[derive(Debug, Clone)]
pub struct TowerInputs {
    /// Number of rows.
    pub rows: usize,
    /// Mean of the watched items.
    pub history: Bags,
    /// Mean of the last few watched items.
    pub recent: Bags,
    /// Mean of the watched items' tokens.
    pub tokens: Bags,
    /// One single-row bag per categorical user feature.
    pub user_categorical: Vec<Bags>,
    /// `rows x dense_width` values.
    pub dense: Vec<f32>,
}

impl TowerInputs {
    /// Collects the bags and dense values of `sources`.
    pub fn build<'a>(
        layout: &FeatureLayout,
        recent_window: usize,
        tokens: &ItemTokens,
        sources: impl ExactSizeIterator<Item = FeatureSource<'a>>,
    ) -> Self {
        Self::build_with_dropout(layout, recent_window, tokens, sources, None)
    }

    /// [`Self::build`], leaving each watch out of the history mean with probability p when
    /// `history_dropout = Some((p, rng))` (training).
    pub fn build_with_dropout<'a>(
        layout: &FeatureLayout,
        recent_window: usize,
        tokens: &ItemTokens,
        sources: impl ExactSizeIterator<Item = FeatureSource<'a>>,
        mut history_dropout: Option<(f32, &mut Rng)>,
    ) -> Self {
        let rows = sources.len();
        let mut inputs = Self {
            rows,
            history: Bags::new(),
            recent: Bags::new(),
            tokens: Bags::new(),
            user_categorical: vec![Bags::new(); layout.user_categorical.len()],
            dense: Vec::with_capacity(rows * layout.dense_width),
        };
        for src in sources {
            match history_dropout.as_mut() {
                Some((p, rng)) if *p > 0.0 => {
                    let kept: Vec<u32> = src
                        .history
                        .iter()
                        .copied()
                        .filter(|_| rng.uniform() as f32 >= *p)
                        .collect();
                    inputs.history.push_mean(kept);
                }
                _ => inputs.history.push_mean(src.history.iter().copied()),
            }
            if layout.recent.is_some() {
                let start = src.history.len().saturating_sub(recent_window);
                inputs
                    .recent
                    .push_mean(src.history[start..].iter().copied());
            }
            if layout.tokens.is_some() {
                let toks = src
                    .history
                    .iter()
                    .flat_map(|&i| tokens.of(i).iter().copied());
                inputs.tokens.push_mean(toks);
            }
            for (f, bags) in inputs.user_categorical.iter_mut().enumerate() {
                bags.push_mean(src.categorical.get(f).copied());
            }
            if layout.age {
                let a = src.age.clamp(0.0, 1.0);
                inputs.dense.extend_from_slice(&[a, a * a, a.sqrt()]);
            }
            if layout.numeric > 0 {
                if src.numeric.len() == layout.numeric {
                    inputs.dense.extend_from_slice(src.numeric);
                } else {
                    let n = inputs.dense.len();
                    inputs.dense.resize(n + layout.numeric, 0.0);
                }
            }
        }
        inputs
    }
}

/// All layers of the retrieval model.
#[derive(Debug, Clone)]
pub struct Network {
    /// Embeddings of watched items (input side).
    pub items: EmbeddingTable,
    /// Token embeddings, when used.
    pub tokens: Option<EmbeddingTable>,
    /// One table per categorical user feature.
    pub user_categorical: Vec<EmbeddingTable>,
    /// The ReLU tower giving the user vector.
    pub tower: Tower,
    /// Softmax weights and bias: row j = [v_j, b_j], `num_items x (dim + 1)`.
    pub softmax: EmbeddingTable,
    /// Where the features sit in the tower input.
    pub layout: FeatureLayout,
}

impl Network {
    /// Builds (or, from a filled `vb`, loads) every layer.
    pub fn new(vb: VarBuilder, cfg: &YoutubeDnnConfig, vocab: &Vocabulary) -> Result<Self> {
        let layout = FeatureLayout::new(cfg, vocab);
        let std = cfg.init_std;
        let items =
            EmbeddingTable::new(vb.pp("items"), vocab.num_items, cfg.item_embedding_dim, std)?;
        let tokens = match layout.tokens {
            Some((_, w)) => Some(EmbeddingTable::new(
                vb.pp("tokens"),
                vocab.num_tokens,
                w,
                std,
            )?),
            None => None,
        };
        let user_categorical = vocab
            .user_cardinalities
            .iter()
            .enumerate()
            .map(|(f, &card)| {
                EmbeddingTable::new(
                    vb.pp(format!("user.{f}")),
                    card,
                    cfg.user_embedding_dim,
                    std,
                )
            })
            .collect::<nn::Result<Vec<_>>>()?;
        let input = layout.sparse_width + layout.dense_width;
        let tower = Tower::new(vb.pp("tower"), input, &cfg.hidden, cfg.dim)?;
        let softmax = EmbeddingTable::new(vb.pp("softmax"), vocab.num_items, cfg.dim + 1, std)?;
        Ok(Self {
            items,
            tokens,
            user_categorical,
            tower,
            softmax,
            layout,
        })
    }

    /// The gathered embedding block, `rows x sparse_width`.
    pub fn gather(&self, inputs: &TowerInputs) -> Result<Vec<f32>> {
        let l = &self.layout;
        let stride = l.sparse_width;
        let mut out = vec![0.0; inputs.rows * stride];
        self.items.forward(&inputs.history, &mut out, 0, stride)?;
        if let Some(offset) = l.recent {
            self.items
                .forward(&inputs.recent, &mut out, offset, stride)?;
        }
        if let (Some((offset, _)), Some(table)) = (l.tokens, &self.tokens) {
            table.forward(&inputs.tokens, &mut out, offset, stride)?;
        }
        for ((table, bags), (offset, _)) in self
            .user_categorical
            .iter()
            .zip(&inputs.user_categorical)
            .zip(&l.user_categorical)
        {
            table.forward(bags, &mut out, *offset, stride)?;
        }
        Ok(out)
    }

    /// [`Self::gather`] as a `rows x sparse_width` tensor on the tables' device: the fused CPU
    /// gather when they are in host memory, candle ops ([`bag_sum`]) elsewhere.
    pub fn gather_tensor(&self, inputs: &TowerInputs) -> Result<Tensor> {
        let device = self.items.var().as_tensor().device();
        if device.is_cpu() {
            let sparse = self.gather(inputs)?;
            return Ok(Tensor::from_vec(
                sparse,
                (inputs.rows, self.layout.sparse_width),
                device,
            )?);
        }
        let whole = |table: &EmbeddingTable, bags: &Bags| -> Result<Tensor> {
            Ok(bag_sum(table.var().as_tensor(), bags, &bags.ids)?)
        };
        let mut blocks = vec![whole(&self.items, &inputs.history)?];
        if self.layout.recent.is_some() {
            blocks.push(whole(&self.items, &inputs.recent)?);
        }
        if let (Some(_), Some(table)) = (self.layout.tokens, &self.tokens) {
            blocks.push(whole(table, &inputs.tokens)?);
        }
        for (table, bags) in self.user_categorical.iter().zip(&inputs.user_categorical) {
            blocks.push(whole(table, bags)?);
        }
        Ok(Tensor::cat(&blocks, 1)?)
    }

    /// The gathered block for a training step in candle ops: each embedding table's rows
    /// that the batch reads become a compact leaf variable (in the optimiser's sparse-table
    /// order: items, tokens, user features), whose gradient is that table's row-sparse one.
    pub fn gather_leaves(&self, inputs: &TowerInputs) -> Result<(Tensor, Vec<(TouchedRows, Var)>)> {
        let mut item_lists: Vec<&[u32]> = vec![&inputs.history.ids];
        if self.layout.recent.is_some() {
            item_lists.push(&inputs.recent.ids);
        }
        let items = TouchedRows::of(&item_lists);
        let leaf = items.leaf(self.items.var().as_tensor())?;
        let mut blocks = vec![bag_sum(leaf.as_tensor(), &inputs.history, &items.local[0])?];
        if self.layout.recent.is_some() {
            blocks.push(bag_sum(leaf.as_tensor(), &inputs.recent, &items.local[1])?);
        }
        let mut leaves = vec![(items, leaf)];
        let mut compact = |table: &EmbeddingTable, bags: &Bags| -> Result<()> {
            let touched = TouchedRows::of(&[&bags.ids]);
            let leaf = touched.leaf(table.var().as_tensor())?;
            blocks.push(bag_sum(leaf.as_tensor(), bags, &touched.local[0])?);
            leaves.push((touched, leaf));
            Ok(())
        };
        if let (Some(_), Some(table)) = (self.layout.tokens, &self.tokens) {
            compact(table, &inputs.tokens)?;
        }
        for (table, bags) in self.user_categorical.iter().zip(&inputs.user_categorical) {
            compact(table, bags)?;
        }
        Ok((Tensor::cat(&blocks, 1)?, leaves))
    }

    /// User vectors from the gathered block (a tensor or a leaf variable) and the dense values.
    pub fn user_vectors(&self, sparse: &Tensor, dense: &[f32], device: &Device) -> Result<Tensor> {
        self.user_vectors_with_dropout(sparse, dense, device, None)
    }

    /// [`Self::user_vectors`] with the tower's dropout (training).
    pub fn user_vectors_with_dropout(
        &self,
        sparse: &Tensor,
        dense: &[f32],
        device: &Device,
        dropout: Option<(f32, &mut Rng)>,
    ) -> Result<Tensor> {
        let rows = sparse.dim(0)?;
        let x = if self.layout.dense_width > 0 {
            let dense = Tensor::from_slice(dense, (rows, self.layout.dense_width), device)?;
            Tensor::cat(&[sparse, &dense], 1)?
        } else {
            sparse.clone()
        };
        Ok(self.tower.forward_with_dropout(&x, dropout)?)
    }
}
