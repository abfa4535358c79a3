//! The network: embedding tables, the feature row they feed, and the ReLU tower.

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{Init, Linear, VarBuilder};

use crate::bag::{gather, with_f32_data, Bags};
use crate::config::RetrievalConfig;
use crate::error::{invalid, Result};
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

/// ReLU layers followed by one linear layer to the user vector.
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

    /// The user vectors of a batch of feature rows.
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
fn apply_dropout(x: &Tensor, p: f32, rng: &mut Rng) -> Result<Tensor> {
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
    pub fn new(cfg: &RetrievalConfig, vocab: &Vocabulary) -> Self {
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
    pub fn new(vb: VarBuilder, cfg: &RetrievalConfig, vocab: &Vocabulary) -> Result<Self> {
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
            .collect::<Result<Vec<_>>>()?;
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
        self.tower.forward_with_dropout(&x, dropout)
    }

    /// Appends a column of ones: `[u, 1] . [v_j, b_j] = u . v_j + b_j`.
    pub fn with_bias_column(u: &Tensor) -> Result<Tensor> {
        let ones = Tensor::ones((u.dim(0)?, 1), DType::F32, u.device())?;
        Ok(Tensor::cat(&[u, &ones], 1)?)
    }
}
