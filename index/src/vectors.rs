//! Item vectors as given by the caller, and the catalogue an index keeps of them.

use crate::error::{IndexError, Result};
use crate::kernel;
use crate::topk::Scored;

/// Largest Euclidean norm of `[v, b]` accepted: keeps every dot product far from f32 overflow.
pub const MAX_NORM: f32 = 1e18;

/// The items to index: `ids[i]` owns row `i` of `data` (row-major, `dim` floats a row) and `bias[i]`.
///
/// The score of item `i` for a query `u` is `u . data[i] + bias[i]`, the retrieval model's own score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemVectors {
    /// Item ids, unique.
    pub ids: Vec<i64>,
    /// Vector dimension (> 0).
    pub dim: usize,
    /// `ids.len() * dim` floats, row-major.
    pub data: Vec<f32>,
    /// One bias per item (use zeros when the model has none).
    pub bias: Vec<f32>,
}

impl ItemVectors {
    /// Builds and validates (see [`ItemVectors::validate`]).
    pub fn new(ids: Vec<i64>, dim: usize, data: Vec<f32>, bias: Vec<f32>) -> Result<Self> {
        let items = ItemVectors {
            ids,
            dim,
            data,
            bias,
        };
        items.validate()?;
        Ok(items)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there is no item.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Row `i` of `data`. Panics when `i >= len()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Checks the shapes, that every value is finite, that norms stay below [`MAX_NORM`],
    /// that ids are unique and that there are fewer than 2^32 - 1 items.
    pub fn validate(&self) -> Result<()> {
        check_shapes(self.ids.len(), self.dim, self.data.len(), self.bias.len())?;
        check_values(self.dim, &self.data, &self.bias)?;
        sort_by_id(&self.ids).map(|_| ())
    }
}

/// Checks that `n` items of dimension `dim` match `data_len` floats and `bias_len` biases.
pub(crate) fn check_shapes(n: usize, dim: usize, data_len: usize, bias_len: usize) -> Result<()> {
    if dim == 0 {
        return Err(IndexError::InvalidInput("dimension must be > 0".into()));
    }
    // the graph search's beam keeps two flags in the top bits of an item's index
    if n > crate::pool::MAX_INDEX as usize + 1 {
        return Err(IndexError::InvalidInput(format!(
            "{n} items: at most {} are supported",
            crate::pool::MAX_INDEX as usize + 1
        )));
    }
    if n.checked_mul(dim) != Some(data_len) {
        return Err(IndexError::InvalidInput(format!(
            "{n} ids x dimension {dim} needs {} floats, got {data_len}",
            n.saturating_mul(dim)
        )));
    }
    if bias_len != n {
        return Err(IndexError::InvalidInput(format!(
            "{n} ids but {bias_len} biases"
        )));
    }
    Ok(())
}

/// Checks that every value is finite and every `[v, b]` has a norm below [`MAX_NORM`].
pub(crate) fn check_values(dim: usize, data: &[f32], bias: &[f32]) -> Result<()> {
    for (i, (row, b)) in data.chunks_exact(dim).zip(bias).enumerate() {
        let norm2: f64 = row
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            + f64::from(*b) * f64::from(*b);
        if !norm2.is_finite() || norm2.sqrt() >= f64::from(MAX_NORM) {
            return Err(IndexError::InvalidInput(format!(
                "item at position {i} has a non-finite value or a norm above {MAX_NORM:e}"
            )));
        }
    }
    Ok(())
}

/// Dense indices ordered by id; an error names a duplicated id.
pub(crate) fn sort_by_id(ids: &[i64]) -> Result<Vec<u32>> {
    let mut order: Vec<u32> = (0..ids.len() as u32).collect();
    order.sort_unstable_by_key(|&i| ids[i as usize]);
    if let Some(w) = order
        .windows(2)
        .find(|w| ids[w[0] as usize] == ids[w[1] as usize])
    {
        return Err(IndexError::InvalidInput(format!(
            "duplicate item id {}",
            ids[w[0] as usize]
        )));
    }
    Ok(order)
}

/// Storage of the vector floats: owned, or a read-only memory map of a saved `vectors.bin`.
pub(crate) enum Floats {
    /// Floats in memory.
    Owned(Vec<f32>),
    /// Floats read through a memory map (little-endian file on a little-endian machine).
    Mapped(memmap2::Mmap),
}

impl Floats {
    /// The floats as a slice.
    pub(crate) fn as_slice(&self) -> &[f32] {
        match self {
            Floats::Owned(v) => v,
            Floats::Mapped(map) => {
                // SAFETY: every bit pattern is a valid f32; `align_to` only yields the aligned
                // middle part, and the loader checked that prefix and suffix are empty (the map
                // starts on a page boundary and its length is a multiple of 4).
                let (_, floats, _) = unsafe { map.align_to::<f32>() };
                floats
            }
        }
    }
}

/// What every index keeps: ids, vectors (stored once), biases and the id lookup.
pub(crate) struct Catalogue {
    pub(crate) ids: Vec<i64>,
    pub(crate) dim: usize,
    pub(crate) data: Floats,
    pub(crate) bias: Vec<f32>,
    /// Dense indices ordered by id, for id -> index lookups.
    by_id: Vec<u32>,
}

impl Catalogue {
    /// Takes validated parts; checks shapes and id uniqueness (values are checked by callers
    /// that received them from outside).
    pub(crate) fn new(ids: Vec<i64>, dim: usize, data: Floats, bias: Vec<f32>) -> Result<Self> {
        check_shapes(ids.len(), dim, data.as_slice().len(), bias.len())?;
        let by_id = sort_by_id(&ids)?;
        Ok(Catalogue {
            ids,
            dim,
            data,
            bias,
            by_id,
        })
    }

    /// Validates `items` and takes them over.
    pub(crate) fn from_items(items: ItemVectors) -> Result<Self> {
        check_shapes(
            items.ids.len(),
            items.dim,
            items.data.len(),
            items.bias.len(),
        )?;
        check_values(items.dim, &items.data, &items.bias)?;
        Catalogue::new(items.ids, items.dim, Floats::Owned(items.data), items.bias)
    }

    /// Number of items.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Appends `items` after the present ones. Their dimension must match, their values be
    /// valid and their ids new (neither in the catalogue nor repeated among them); on error
    /// the catalogue is unchanged. Mapped vectors are copied into memory first.
    pub(crate) fn append(&mut self, items: ItemVectors) -> Result<()> {
        if items.dim != self.dim {
            return Err(IndexError::InvalidInput(format!(
                "new items have dimension {}, the index {}",
                items.dim, self.dim
            )));
        }
        let old_n = self.len();
        check_shapes(
            items.ids.len(),
            items.dim,
            items.data.len(),
            items.bias.len(),
        )?;
        check_shapes(
            old_n + items.ids.len(),
            self.dim,
            self.floats().len() + items.data.len(),
            self.bias.len() + items.bias.len(),
        )?;
        check_values(items.dim, &items.data, &items.bias)?;
        let order = sort_by_id(&items.ids)?;
        if let Some(&id) = items.ids.iter().find(|&&id| self.dense_of(id).is_some()) {
            return Err(IndexError::InvalidInput(format!(
                "item id {id} is already in the index"
            )));
        }
        // merge the two id orders (both sorted by id, ids distinct)
        let mut by_id = Vec::with_capacity(old_n + order.len());
        let (mut a, mut b) = (self.by_id.iter().peekable(), order.iter().peekable());
        while let (Some(&&x), Some(&&y)) = (a.peek(), b.peek()) {
            if self.ids[x as usize] < items.ids[y as usize] {
                by_id.push(x);
                a.next();
            } else {
                by_id.push(old_n as u32 + y);
                b.next();
            }
        }
        by_id.extend(a);
        by_id.extend(b.map(|&y| old_n as u32 + y));
        if let Floats::Mapped(_) = self.data {
            self.data = Floats::Owned(self.floats().to_vec());
        }
        if let Floats::Owned(v) = &mut self.data {
            v.extend_from_slice(&items.data);
        }
        self.ids.extend_from_slice(&items.ids);
        self.bias.extend_from_slice(&items.bias);
        self.by_id = by_id;
        Ok(())
    }

    /// All vector floats, row-major.
    pub(crate) fn floats(&self) -> &[f32] {
        self.data.as_slice()
    }

    /// Row `i`.
    pub(crate) fn row(&self, i: u32) -> &[f32] {
        let i = i as usize;
        &self.floats()[i * self.dim..(i + 1) * self.dim]
    }

    /// Exact score of item `i` for `query`.
    #[inline]
    pub(crate) fn score(&self, query: &[f32], i: u32) -> f32 {
        kernel::dot(query, self.row(i)) + self.bias[i as usize]
    }

    /// `items` re-scored exactly (same arithmetic as [`Catalogue::score`]), best first.
    pub(crate) fn rescored(&self, query: &[f32], mut items: Vec<Scored>) -> Vec<Scored> {
        // the rows are scattered: ask for all of them before using the first
        for s in &items {
            kernel::prefetch_row(self.row(s.idx));
            kernel::prefetch(&self.bias[s.idx as usize]);
        }
        let mut quads = items.chunks_exact_mut(4);
        for q in &mut quads {
            let dots = kernel::dot4(
                query,
                [
                    self.row(q[0].idx),
                    self.row(q[1].idx),
                    self.row(q[2].idx),
                    self.row(q[3].idx),
                ],
            );
            for (s, d) in q.iter_mut().zip(dots) {
                s.score = d + self.bias[s.idx as usize];
            }
        }
        for s in quads.into_remainder() {
            s.score = self.score(query, s.idx);
        }
        items.sort_unstable_by(|a, b| b.cmp(a));
        items
    }

    /// Dense index of item `id`.
    pub(crate) fn dense_of(&self, id: i64) -> Option<u32> {
        self.by_id
            .binary_search_by_key(&id, |&i| self.ids[i as usize])
            .ok()
            .map(|pos| self.by_id[pos])
    }

    /// Sorted, deduplicated dense indices of the known ids in `ids` (unknown ids are ignored).
    pub(crate) fn dense_set(&self, ids: &[i64]) -> Vec<u32> {
        let mut set: Vec<u32> = ids.iter().filter_map(|&id| self.dense_of(id)).collect();
        set.sort_unstable();
        set.dedup();
        set
    }

    /// Copies the catalogue out as [`ItemVectors`].
    pub(crate) fn to_items(&self) -> ItemVectors {
        ItemVectors {
            ids: self.ids.clone(),
            dim: self.dim,
            data: self.floats().to_vec(),
            bias: self.bias.clone(),
        }
    }

    /// Bytes held in memory by the catalogue (mapped vectors count as zero).
    pub(crate) fn heap_bytes(&self) -> usize {
        let floats = match &self.data {
            Floats::Owned(v) => v.len() * 4,
            Floats::Mapped(_) => 0,
        };
        floats + self.ids.len() * 8 + self.bias.len() * 4 + self.by_id.len() * 4
    }
}

/// Sorted, deduplicated dense indices below `n` from `dense` (others ignored).
pub(crate) fn dense_set_checked(dense: &[u32], n: usize) -> Vec<u32> {
    let mut set: Vec<u32> = dense
        .iter()
        .copied()
        .filter(|&i| (i as usize) < n)
        .collect();
    set.sort_unstable();
    set.dedup();
    set
}
