//! The ranker's input: one (user, candidate, time) example as plain values, and the schema that
//! fixes vocabulary sizes and the list of continuous features.

use serde::{Deserialize, Serialize};

use crate::error::{RankingError, Result};

/// One impression to rank (or to learn from): a candidate item shown to a user at some time.
///
/// Every id is an index into a vocabulary whose size the [`FeatureSchema`] fixes; the caller
/// builds the vocabularies. Ids are checked: one at or above its vocabulary size is an error,
/// out-of-vocabulary values are expressed with `None` (or left out of the lists) instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RankingExample {
    /// The user's index in the user vocabulary (the users of the training impressions);
    /// `None` for a user outside it. Read by the collaborative-filtering rankers (NeuMF, deep
    /// MF), which learn an embedding per user.
    #[serde(default)]
    pub user: Option<u32>,
    /// The candidate's index in the item vocabulary; `None` for an item outside it, which gets
    /// the zero embedding.
    pub item: Option<u32>,
    /// The user's recent watches, indices in the same item vocabulary (the embedding table is
    /// shared with `item`); fed as their mean embedding, the zero vector when empty.
    pub recent_watches: Vec<u32>,
    /// The candidate's category or tag ids (token vocabulary), fed as their mean embedding.
    pub item_tokens: Vec<u32>,
    /// Category or tag ids of the recent watches (token vocabulary), fed as their mean embedding.
    pub recent_tokens: Vec<u32>,
    /// One value per user categorical field (index in that field's vocabulary, see
    /// [`FeatureSchema::user_cardinalities`]); `None` for an unknown value (zero embedding).
    pub user_categorical: Vec<Option<u32>>,
    /// Raw continuous values, in the order of [`FeatureSchema::continuous`]; `NaN` = missing.
    pub continuous: Vec<f32>,
    /// Whether the impression was watched (the training label; ignored when scoring).
    pub label: bool,
    /// Watch time in seconds of a watched impression (the training weight; ignored when
    /// scoring and for unwatched impressions).
    pub watch_time: f32,
    /// The other training labels, 0 or 1, in the order of the label names the ranker is
    /// trained with ([`crate::RankerSettings::labels`]; KuaiRand: `long_view`, `is_like`,
    /// `is_follow`): read only by the multi-task ranker's heads, ignored when scoring. Empty in
    /// data without them (and in examples saved before them).
    #[serde(default)]
    pub labels: Vec<f32>,
}

/// Vocabulary sizes and feature names: what the network's input layer is built for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FeatureSchema {
    /// Size of the user vocabulary ([`RankingExample::user`]; 0 in rankers saved before it).
    #[serde(default)]
    pub n_users: usize,
    /// Size of the item vocabulary (candidates and recent watches).
    pub n_items: usize,
    /// Size of the token vocabulary (categories, tags).
    pub n_tokens: usize,
    /// Vocabulary size of each user categorical field, in the order of
    /// [`RankingExample::user_categorical`].
    pub user_cardinalities: Vec<usize>,
    /// Names of the continuous features, in the order of [`RankingExample::continuous`].
    pub continuous: Vec<String>,
}

impl FeatureSchema {
    /// Checks that `example` fits this schema; `index` is only used in the error.
    pub fn check(&self, index: usize, example: &RankingExample) -> Result<()> {
        let bad = |reason: String| Err(RankingError::InvalidExample { index, reason });
        if let Some(user) = example.user.filter(|&u| u as usize >= self.n_users) {
            return bad(format!(
                "user {user} outside the user vocabulary ({})",
                self.n_users
            ));
        }
        if let Some(item) = example.item {
            if item as usize >= self.n_items {
                return bad(format!(
                    "item {item} outside the item vocabulary ({})",
                    self.n_items
                ));
            }
        }
        if let Some(&id) = example
            .recent_watches
            .iter()
            .find(|&&id| id as usize >= self.n_items)
        {
            return bad(format!(
                "recent watch {id} outside the item vocabulary ({})",
                self.n_items
            ));
        }
        for (what, tokens) in [
            ("item", &example.item_tokens),
            ("recent", &example.recent_tokens),
        ] {
            if let Some(&id) = tokens.iter().find(|&&id| id as usize >= self.n_tokens) {
                return bad(format!(
                    "{what} token {id} outside the token vocabulary ({})",
                    self.n_tokens
                ));
            }
        }
        if example.user_categorical.len() != self.user_cardinalities.len() {
            return bad(format!(
                "{} user categorical values, the schema has {} fields",
                example.user_categorical.len(),
                self.user_cardinalities.len()
            ));
        }
        for (field, (value, &card)) in example
            .user_categorical
            .iter()
            .zip(&self.user_cardinalities)
            .enumerate()
        {
            if let Some(v) = value {
                if *v as usize >= card {
                    return bad(format!(
                        "user field {field}: value {v} outside its vocabulary ({card})"
                    ));
                }
            }
        }
        if example.continuous.len() != self.continuous.len() {
            return bad(format!(
                "{} continuous values, the schema has {}",
                example.continuous.len(),
                self.continuous.len()
            ));
        }
        Ok(())
    }

    /// Offset of each user field's first row in the shared user-categorical embedding table.
    pub(crate) fn user_offsets(&self) -> Vec<u32> {
        let mut offsets = Vec::with_capacity(self.user_cardinalities.len());
        let mut next = 0usize;
        for &card in &self.user_cardinalities {
            offsets.push(next as u32);
            next += card;
        }
        offsets
    }

    /// Rows of the shared user-categorical embedding table (sum of the field cardinalities).
    pub(crate) fn user_rows(&self) -> usize {
        self.user_cardinalities.iter().sum()
    }

    /// Checks the sizes themselves (non-empty vocabularies, ids that fit in `u32`).
    pub fn validate(&self) -> Result<()> {
        let too_big = |what: &str, n: usize| {
            Err(RankingError::InvalidConfig(format!(
                "{what} has {n} entries, more than u32 ids can index"
            )))
        };
        if self.n_users > u32::MAX as usize {
            return too_big("user vocabulary", self.n_users);
        }
        if self.n_items > u32::MAX as usize {
            return too_big("item vocabulary", self.n_items);
        }
        if self.n_tokens > u32::MAX as usize {
            return too_big("token vocabulary", self.n_tokens);
        }
        if self.user_rows() > u32::MAX as usize {
            return too_big("user categorical vocabulary", self.user_rows());
        }
        Ok(())
    }
}
