//! The vocabularies a ranker's examples refer to ([`RankingVocab`]) and the side information
//! of items and users encoded with them ([`SideInfo`]).

use super::{FeatureConfig, CONTINUOUS, RETRIEVAL};
use crate::data::{Events, Items, Users};
use crate::examples::{IdMap, UserFeatureEncoder};
use ranking::FeatureSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The vocabularies a ranker's examples refer to, saved beside the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankingVocab {
    /// Feature settings.
    pub features: FeatureConfig,
    /// The item vocabulary (rows of the item embedding); other items get the zero embedding.
    pub items: IdMap,
    /// The user vocabulary: every user of the fitted impressions, by id (the CF rankers' user
    /// rows; empty in vocabularies saved before it).
    #[serde(default)]
    pub user_ids: IdMap,
    /// The token (category, tag) vocabulary.
    pub tokens: Vec<String>,
    /// User categorical fields and their values (only the categorical part is used).
    pub users: UserFeatureEncoder,
}

impl RankingVocab {
    /// Builds the vocabularies: the `max_items` items with the most watched impressions among
    /// the events `fit` selects (ties: more impressions, then smaller id; only items shown at
    /// least once), every category of the catalogue (sorted), and the user table's categorical
    /// fields.
    pub fn fit(
        events: &Events,
        fit: impl Fn(usize) -> bool,
        items: &Items,
        users: &Users,
        max_items: usize,
        features: FeatureConfig,
    ) -> Self {
        let mut counts: HashMap<i64, (u64, u64)> = HashMap::new();
        let mut user_ids = Vec::new();
        for i in (0..events.len()).filter(|&i| fit(i)) {
            user_ids.push(events.user_id[i]);
            let c = counts.entry(events.item_id[i]).or_default();
            c.0 += u64::from(events.watched[i]);
            c.1 += 1;
        }
        let mut ranked: Vec<(i64, (u64, u64))> = counts.into_iter().collect();
        ranked
            .sort_unstable_by_key(|&(id, (w, n))| (std::cmp::Reverse(w), std::cmp::Reverse(n), id));
        ranked.truncate(max_items);
        let mut tokens: Vec<String> = items.categories.iter().flatten().cloned().collect();
        tokens.sort_unstable();
        tokens.dedup();
        let mut encoder = UserFeatureEncoder::fit(users);
        encoder.numeric.clear();
        user_ids.sort_unstable();
        user_ids.dedup();
        RankingVocab {
            features,
            user_ids: IdMap::new(user_ids),
            items: IdMap::new(ranked.into_iter().map(|(id, _)| id)),
            tokens,
            users: encoder,
        }
    }

    /// Rebuilds lookups after deserialising.
    pub fn reindex(&mut self) {
        self.items.reindex();
        self.user_ids.reindex();
    }

    /// The feature schema of examples built with these vocabularies.
    pub fn schema(&self) -> FeatureSchema {
        FeatureSchema {
            n_users: self.user_ids.len(),
            n_items: self.items.len(),
            n_tokens: self.tokens.len(),
            user_cardinalities: self
                .users
                .categorical
                .iter()
                .map(|(_, v)| v.len())
                .collect(),
            continuous: CONTINUOUS
                .iter()
                .chain(if self.features.retrieval {
                    &RETRIEVAL[..]
                } else {
                    &[]
                })
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// Side information of items and users, encoded with a [`RankingVocab`].
#[derive(Debug, Clone, Default)]
pub struct SideInfo {
    pub(super) item_tokens: HashMap<i64, Vec<u32>>,
    pub(super) duration: HashMap<i64, f32>,
    pub(super) published: HashMap<i64, i64>,
    pub(super) user_categorical: HashMap<i64, Vec<Option<u32>>>,
    pub(super) item_index: HashMap<i64, u32>,
    pub(super) user_index: HashMap<i64, u32>,
    pub(super) n_user_fields: usize,
}

impl SideInfo {
    /// Encodes the catalogue and the user table with `vocab`.
    pub fn new(vocab: &RankingVocab, items: &Items, users: &Users) -> Self {
        let token_index: HashMap<&str, u32> = vocab
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let mut side = SideInfo {
            item_index: vocab
                .items
                .ids
                .iter()
                .enumerate()
                .map(|(i, &id)| (id, i as u32))
                .collect(),
            user_index: vocab
                .user_ids
                .ids
                .iter()
                .enumerate()
                .map(|(i, &id)| (id, i as u32))
                .collect(),
            n_user_fields: vocab.users.categorical.len(),
            ..Default::default()
        };
        for (row, &id) in items.item_id.iter().enumerate() {
            let tokens: Vec<u32> = items.categories[row]
                .iter()
                .filter_map(|c| token_index.get(c.as_str()).copied())
                .collect();
            if !tokens.is_empty() {
                side.item_tokens.insert(id, tokens);
            }
            if let Some(d) = items.duration[row] {
                side.duration.insert(id, d);
            }
            if let Some(p) = items.published[row] {
                side.published.insert(id, p);
            }
        }
        if side.n_user_fields > 0 {
            let mut encoder = vocab.users.clone();
            encoder.attach(users.clone());
            for &user in &users.user_id {
                // The encoder's 0 is "missing or unseen": the zero embedding.
                let values = encoder.encode(user).0;
                let values = values.iter().map(|&v| v.checked_sub(1)).collect();
                side.user_categorical.insert(user, values);
            }
        }
        side
    }

    /// Whether `item_id` is in the ranker's item vocabulary.
    pub fn knows_item(&self, item_id: i64) -> bool {
        self.item_index.contains_key(&item_id)
    }

    pub(super) fn tokens_of(&self, item_id: i64) -> &[u32] {
        self.item_tokens.get(&item_id).map_or(&[], Vec::as_slice)
    }
}
