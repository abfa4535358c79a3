//! Warm start: a new model begins from the live model's weights (same kind). Ids the previous
//! model knew keep their rows (items, tokens, users are moved to the new ids' positions), new
//! ids keep their fresh initialisation; every other tensor is copied when its shape is
//! unchanged.

use std::collections::HashMap;

use candle_core::Tensor;

/// The previous model's weights and how the new vocabularies map onto its rows.
#[derive(Debug, Clone, Default)]
pub struct WarmStart {
    /// Every weight of the previous model, by name (see `Retriever::weights`).
    pub weights: HashMap<String, Tensor>,
    /// For each new item index, its index in the previous model (None: a new item).
    pub items: Vec<Option<u32>>,
    /// For each new token index, its index in the previous model (None: a new token).
    pub tokens: Vec<Option<u32>>,
    /// For each new user index, its index in the previous model (None: a new user).
    pub users: Vec<Option<u32>>,
}

impl WarmStart {
    /// Number of items the previous model knew.
    pub fn items_kept(&self) -> usize {
        self.items.iter().filter(|m| m.is_some()).count()
    }
}
