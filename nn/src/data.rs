//! Plain data the pipeline hands to the retrieval model.

use crate::error::{invalid, Result};

/// Per-user watch sequences in CSR layout, each ordered by (timestamp, item).
///
/// User `u`'s watches are `items[offsets[u]..offsets[u + 1]]`, watched at the matching `times`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchHistories {
    /// Start of each user's watches in `items`/`times`; `users + 1` entries, starting at 0.
    pub offsets: Vec<usize>,
    /// Dense item indices `0..num_items`.
    pub items: Vec<u32>,
    /// Watch times, Unix seconds.
    pub times: Vec<i64>,
}

impl WatchHistories {
    /// Builds the CSR layout from one already ordered sequence of `(item, time)` per user.
    pub fn from_sequences(sequences: &[Vec<(u32, i64)>]) -> Self {
        let mut offsets = Vec::with_capacity(sequences.len() + 1);
        let mut items = Vec::new();
        let mut times = Vec::new();
        offsets.push(0);
        for seq in sequences {
            for &(item, time) in seq {
                items.push(item);
                times.push(time);
            }
            offsets.push(items.len());
        }
        Self {
            offsets,
            items,
            times,
        }
    }

    /// Number of users.
    pub fn num_users(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The watches of user `user` (empty for an unknown user).
    pub fn user_items(&self, user: usize) -> &[u32] {
        match (self.offsets.get(user), self.offsets.get(user + 1)) {
            (Some(&a), Some(&b)) if a <= b && b <= self.items.len() => &self.items[a..b],
            _ => &[],
        }
    }

    /// Checks the layout and that every item is below `num_items`.
    pub fn validate(&self, num_items: usize) -> Result<()> {
        if self.offsets.first() != Some(&0) {
            return Err(invalid("history offsets must start with 0"));
        }
        if self.offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(invalid("history offsets must not decrease"));
        }
        if self.offsets.last() != Some(&self.items.len()) || self.items.len() != self.times.len() {
            return Err(invalid(
                "history offsets, items and times disagree in length",
            ));
        }
        if let Some(bad) = self.items.iter().find(|&&i| i as usize >= num_items) {
            return Err(invalid(format!(
                "history item {bad} is outside the catalogue of {num_items} items"
            )));
        }
        Ok(())
    }
}

/// One training example: the user's last `max_history` watches strictly before position `pos`
/// of their sequence predict the item at `pos` (Covington et al. 2016, §3.4 "rollback").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Example {
    /// User index into [`WatchHistories`].
    pub user: u32,
    /// Position of the target within the user's sequence (0 = the first watch).
    pub pos: u32,
}

/// The item catalogue: its size, the tokens (genres, categories, tags) of each item and, when
/// the data has them, each item's duration and publication age (the features a feature-based
/// item tower embeds an item from).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// Number of items; item indices are `0..num_items`.
    pub num_items: usize,
    /// Tokens of each item (`num_items` lists, or empty when there are none at all).
    pub item_tokens: Vec<Vec<u32>>,
    /// Number of distinct tokens; token indices are `0..num_tokens`.
    pub num_tokens: usize,
    /// Length of each item in seconds (`num_items` values, `None` when unknown), or empty when
    /// the data has no durations.
    pub duration_seconds: Vec<Option<f32>>,
    /// Age of each item in days at `reference_time` (items published later have age 0), or
    /// empty when the data has no publication times.
    pub age_days: Vec<Option<f32>>,
    /// The time (Unix seconds) `age_days` is measured from: the newest watch of the data.
    pub reference_time: Option<i64>,
}

impl Catalog {
    /// A catalogue of `num_items` items without tokens.
    pub fn without_tokens(num_items: usize) -> Self {
        Self {
            num_items,
            ..Self::default()
        }
    }

    /// Checks sizes and token ranges.
    pub fn validate(&self) -> Result<()> {
        if self.num_items == 0 {
            return Err(invalid("the catalogue has no items"));
        }
        if self.num_items > u32::MAX as usize {
            return Err(invalid("the catalogue has more than u32::MAX items"));
        }
        if !self.item_tokens.is_empty() && self.item_tokens.len() != self.num_items {
            return Err(invalid(format!(
                "item_tokens has {} lists for {} items",
                self.item_tokens.len(),
                self.num_items
            )));
        }
        for (name, len) in [
            ("duration_seconds", self.duration_seconds.len()),
            ("age_days", self.age_days.len()),
        ] {
            if len != 0 && len != self.num_items {
                return Err(invalid(format!(
                    "{name} has {len} values for {} items",
                    self.num_items
                )));
            }
        }
        let finite = |v: &&Option<f32>| v.is_some_and(|x| !x.is_finite() || x < 0.0);
        if let Some(bad) = self.duration_seconds.iter().find(finite) {
            return Err(invalid(format!(
                "item duration {bad:?} is not a finite value >= 0"
            )));
        }
        if let Some(bad) = self.age_days.iter().find(finite) {
            return Err(invalid(format!(
                "item age {bad:?} is not a finite value >= 0"
            )));
        }
        let bad = self.item_tokens.iter().flatten();
        if let Some(t) = bad.into_iter().find(|&&t| t as usize >= self.num_tokens) {
            return Err(invalid(format!(
                "token {t} is outside the {} tokens",
                self.num_tokens
            )));
        }
        Ok(())
    }
}

/// Optional per-user side features.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserFeatures {
    /// Number of values of each categorical feature.
    pub cardinalities: Vec<usize>,
    /// Per user, one value (below its cardinality) per categorical feature.
    pub categorical: Vec<Vec<u32>>,
    /// Number of numeric features.
    pub num_numeric: usize,
    /// Per user, `num_numeric` values in [0, 1].
    pub numeric: Vec<Vec<f32>>,
}

impl UserFeatures {
    /// Checks that one user's feature values fit the declared features.
    pub fn check_values(&self, categorical: &[u32], numeric: &[f32]) -> Result<()> {
        if !categorical.is_empty() {
            if categorical.len() != self.cardinalities.len() {
                return Err(invalid(format!(
                    "{} categorical values for {} features",
                    categorical.len(),
                    self.cardinalities.len()
                )));
            }
            for (value, &card) in categorical.iter().zip(&self.cardinalities) {
                if *value as usize >= card {
                    return Err(invalid(format!(
                        "categorical value {value} is outside cardinality {card}"
                    )));
                }
            }
        }
        if !numeric.is_empty() && numeric.len() != self.num_numeric {
            return Err(invalid(format!(
                "{} numeric values for {} features",
                numeric.len(),
                self.num_numeric
            )));
        }
        if numeric.iter().any(|x| !x.is_finite()) {
            return Err(invalid("numeric user feature is not finite"));
        }
        Ok(())
    }

    /// Checks every user's values; `num_users` is the number of users they must cover.
    pub fn validate(&self, num_users: usize) -> Result<()> {
        if self.cardinalities.contains(&0) {
            return Err(invalid("a categorical user feature has cardinality 0"));
        }
        if self.categorical.len() != num_users && !self.cardinalities.is_empty() {
            return Err(invalid(format!(
                "categorical features for {} users, expected {num_users}",
                self.categorical.len()
            )));
        }
        if self.numeric.len() != num_users && self.num_numeric > 0 {
            return Err(invalid(format!(
                "numeric features for {} users, expected {num_users}",
                self.numeric.len()
            )));
        }
        for user in 0..num_users {
            self.check_values(self.categorical_of(user), self.numeric_of(user))?;
        }
        Ok(())
    }

    /// Categorical values of `user` (empty when there are none).
    pub fn categorical_of(&self, user: usize) -> &[u32] {
        self.categorical.get(user).map_or(&[], |v| v.as_slice())
    }

    /// Numeric values of `user` (empty when there are none).
    pub fn numeric_of(&self, user: usize) -> &[f32] {
        self.numeric.get(user).map_or(&[], |v| v.as_slice())
    }
}

/// A held-out next watch used for model selection (EVAL.md §1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidationCase {
    /// User index (for user features).
    pub user: u32,
    /// All the user's training watches, oldest first.
    pub history: Vec<u32>,
    /// The held-out item.
    pub target: u32,
    /// Items never recommended to this user (their history); the target is never excluded.
    pub exclude: Vec<u32>,
}

/// What the model needs to compute one user vector: any history, also of a new user.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UserQuery<'a> {
    /// Watches, oldest first; only the last `max_history` are used.
    pub history: &'a [u32],
    /// One value per categorical user feature, or empty when unknown.
    pub categorical: &'a [u32],
    /// One value per numeric user feature, or empty when unknown.
    pub numeric: &'a [f32],
    /// The user's index among the training users, when the model saw them (models with a
    /// per-user embedding use it; others ignore it).
    pub user: Option<u32>,
}

impl<'a> UserQuery<'a> {
    /// A query from a history alone (no user features, not a training user).
    pub fn from_history(history: &'a [u32]) -> Self {
        Self {
            history,
            categorical: &[],
            numeric: &[],
            user: None,
        }
    }

    /// The query of training user `user`: their features from `features`, when given.
    pub fn of_user(history: &'a [u32], user: u32, features: Option<&'a UserFeatures>) -> Self {
        Self {
            history,
            categorical: features.map_or(&[], |f| f.categorical_of(user as usize)),
            numeric: features.map_or(&[], |f| f.numeric_of(user as usize)),
            user: Some(user),
        }
    }
}

impl ValidationCase {
    /// The query that scores this case: the user's history, features and index.
    pub fn query<'a>(&'a self, features: Option<&'a UserFeatures>) -> UserQuery<'a> {
        UserQuery::of_user(&self.history, self.user, features)
    }
}

/// Everything a retriever trains on: rolled-back examples over the users' histories, the
/// catalogue, optional user features and the validation cases that select the epoch.
#[derive(Debug, Clone, Copy)]
pub struct TrainingSet<'a> {
    /// Items and their tokens.
    pub catalog: &'a Catalog,
    /// The training users' watch sequences (user index = position).
    pub histories: &'a WatchHistories,
    /// (user, position) pairs: the watches before predict the one at the position.
    pub examples: &'a [Example],
    /// Per-user side features, when the data has them.
    pub user_features: Option<&'a UserFeatures>,
    /// Held-out next watches for early stopping.
    pub validation: &'a [ValidationCase],
}

impl TrainingSet<'_> {
    /// Checks that every index is inside what it indexes.
    pub fn validate(&self) -> Result<()> {
        self.catalog.validate()?;
        self.histories.validate(self.catalog.num_items)?;
        let users = self.histories.num_users();
        if let Some(f) = self.user_features {
            f.validate(users)?;
        }
        if self.examples.is_empty() {
            return Err(invalid("no training examples"));
        }
        for e in self.examples {
            if e.user as usize >= users
                || e.pos as usize >= self.histories.user_items(e.user as usize).len()
            {
                return Err(invalid(format!(
                    "example (user {}, pos {}) is outside the histories",
                    e.user, e.pos
                )));
            }
        }
        for c in self.validation {
            let in_catalog = |i: &u32| (*i as usize) < self.catalog.num_items;
            if !in_catalog(&c.target) || !c.history.iter().all(in_catalog) {
                return Err(invalid(
                    "a validation case names an item outside the catalogue",
                ));
            }
            if c.user as usize >= users {
                return Err(invalid("a validation case names an unknown user"));
            }
        }
        Ok(())
    }

    /// The target item of an example.
    pub fn target(&self, e: &Example) -> u32 {
        self.histories.user_items(e.user as usize)[e.pos as usize]
    }

    /// Training count of each item (for popularity-drawn negatives).
    pub fn item_counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.catalog.num_items];
        self.histories
            .items
            .iter()
            .for_each(|&i| counts[i as usize] += 1);
        counts
    }
}
