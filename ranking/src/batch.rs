//! Examples turned into the flat index and value arrays the network consumes.
//!
//! Every id list becomes a "bag": (id, segment, scale) triples that an embedding-bag layer sums
//! into one row per segment, so a masked mean over a variable-length list, a single optional id
//! and an out-of-vocabulary id (no triple, zero row) are all the same operation. User-side bags
//! (recent watches, their tokens, user categoricals) are built once per run of consecutive
//! examples sharing them, the usual layout when a user's candidates are scored together.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::example::{FeatureSchema, RankingExample};
use crate::quantiles::ContinuousEncoder;

/// Ids to embed and average, one output row per segment.
#[derive(Debug, Default)]
pub(crate) struct Bags {
    ids: Vec<u32>,
    segments: Vec<u32>,
    scales: Vec<f32>,
    n_segments: usize,
}

impl Bags {
    /// Adds one segment holding the mean of `ids` (the zero row when empty).
    fn push_mean(&mut self, ids: &[u32]) {
        let segment = self.n_segments as u32;
        let scale = 1.0 / ids.len().max(1) as f32;
        for &id in ids {
            self.ids.push(id);
            self.segments.push(segment);
            self.scales.push(scale);
        }
        self.n_segments += 1;
    }

    /// Adds one segment holding `id`'s embedding (the zero row for `None`).
    fn push_one(&mut self, id: Option<u32>) {
        if let Some(id) = id {
            self.ids.push(id);
            self.segments.push(self.n_segments as u32);
            self.scales.push(1.0);
        }
        self.n_segments += 1;
    }

    fn to_tensors(&self, device: &Device) -> Result<BagTensors> {
        let n = self.ids.len();
        Ok(BagTensors {
            ids: Tensor::from_slice(&self.ids, n, device)?,
            segments: Tensor::from_slice(&self.segments, n, device)?,
            scales: Tensor::from_slice(&self.scales, (n, 1), device)?,
            len: n,
            n_segments: self.n_segments,
        })
    }
}

/// [`Bags`] as tensors.
pub(crate) struct BagTensors {
    pub ids: Tensor,
    pub segments: Tensor,
    pub scales: Tensor,
    pub len: usize,
    pub n_segments: usize,
}

/// A batch of examples as flat arrays.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    items: Bags,
    item_tokens: Bags,
    recent: Bags,
    recent_tokens: Bags,
    /// One segment per (context, user field).
    users: Bags,
    /// For each example, its row among the distinct user contexts.
    context_of: Vec<u32>,
    /// `encoder.width()` values per example.
    continuous: Vec<f32>,
    labels: Vec<f32>,
    len: usize,
}

impl Batch {
    /// Builds a batch of `examples` (already checked against `schema`).
    pub fn build<'a>(
        schema: &FeatureSchema,
        encoder: &ContinuousEncoder,
        examples: impl ExactSizeIterator<Item = &'a RankingExample>,
    ) -> Self {
        let offsets = schema.user_offsets();
        let mut batch = Batch {
            len: examples.len(),
            ..Default::default()
        };
        batch.continuous.reserve(examples.len() * encoder.width());
        let mut previous: Option<&RankingExample> = None;
        for example in examples {
            batch.items.push_one(example.item);
            batch.item_tokens.push_mean(&example.item_tokens);
            let same_context = previous.is_some_and(|p| {
                p.recent_watches == example.recent_watches
                    && p.recent_tokens == example.recent_tokens
                    && p.user_categorical == example.user_categorical
            });
            if !same_context {
                batch.recent.push_mean(&example.recent_watches);
                batch.recent_tokens.push_mean(&example.recent_tokens);
                for (value, offset) in example.user_categorical.iter().zip(&offsets) {
                    batch.users.push_one(value.map(|v| v + offset));
                }
            }
            batch.context_of.push((batch.recent.n_segments - 1) as u32);
            encoder.encode_into(&example.continuous, &mut batch.continuous);
            batch.labels.push(f32::from(u8::from(example.label)));
            previous = Some(example);
        }
        batch
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The id lists indexing the item table: candidates, recent watches.
    pub fn item_ids_mut(&mut self) -> [&mut Vec<u32>; 2] {
        [&mut self.items.ids, &mut self.recent.ids]
    }

    /// The id lists indexing the token table: candidate tokens, recent tokens.
    pub fn token_ids_mut(&mut self) -> [&mut Vec<u32>; 2] {
        [&mut self.item_tokens.ids, &mut self.recent_tokens.ids]
    }

    /// The id list indexing the user-categorical table.
    pub fn user_ids_mut(&mut self) -> &mut Vec<u32> {
        &mut self.users.ids
    }

    /// 1 for watched examples, 0 otherwise.
    pub fn labels(&self) -> &[f32] {
        &self.labels
    }

    /// The network inputs as tensors on `device`.
    pub fn to_tensors(&self, device: &Device, continuous_width: usize) -> Result<BatchTensors> {
        Ok(BatchTensors {
            items: self.items.to_tensors(device)?,
            item_tokens: self.item_tokens.to_tensors(device)?,
            recent: self.recent.to_tensors(device)?,
            recent_tokens: self.recent_tokens.to_tensors(device)?,
            users: self.users.to_tensors(device)?,
            context_of: Tensor::from_slice(&self.context_of, self.len, device)?,
            n_contexts: self.recent.n_segments,
            continuous: Tensor::from_slice(&self.continuous, (self.len, continuous_width), device)?,
        })
    }
}

/// [`Batch`] network inputs as tensors.
pub(crate) struct BatchTensors {
    pub items: BagTensors,
    pub item_tokens: BagTensors,
    pub recent: BagTensors,
    pub recent_tokens: BagTensors,
    pub users: BagTensors,
    pub context_of: Tensor,
    pub n_contexts: usize,
    pub continuous: Tensor,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_examples_share_a_context_row() {
        let schema = FeatureSchema {
            n_users: 0,
            n_items: 10,
            n_tokens: 4,
            user_cardinalities: vec![3, 2],
            continuous: vec![],
        };
        let user = RankingExample {
            recent_watches: vec![1, 2],
            user_categorical: vec![Some(2), None],
            ..Default::default()
        };
        let other = RankingExample {
            recent_watches: vec![3],
            ..user.clone()
        };
        let examples = [
            RankingExample {
                user: None,
                item: Some(4),
                ..user.clone()
            },
            RankingExample {
                user: None,
                item: None,
                ..user.clone()
            },
            RankingExample {
                user: None,
                item: Some(5),
                ..other
            },
        ];
        let batch = Batch::build(&schema, &ContinuousEncoder::default(), examples.iter());
        assert_eq!(batch.context_of, vec![0, 0, 1]);
        assert_eq!(batch.items.ids, vec![4, 5]);
        assert_eq!(batch.items.segments, vec![0, 2]);
        assert_eq!(batch.recent.ids, vec![1, 2, 3]);
        assert_eq!(batch.recent.scales, vec![0.5, 0.5, 1.0]);
        // Field 0 value 2 at offset 0; field 1 unknown: no entry; two fields per context.
        assert_eq!(batch.users.ids, vec![2, 2]);
        assert_eq!(batch.users.segments, vec![0, 2]);
        assert_eq!(batch.users.n_segments, 4);
    }
}
