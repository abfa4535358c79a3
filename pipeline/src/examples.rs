//! Example building for the retrieval model: dense ids, item tokens, user features, and the
//! rollback examples of Covington et al. §3.4 ("the last watches strictly before t -> the watch
//! at t"), at most a fixed number per user, sampled.

use crate::data::{Items, Users};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::split::{LeaveLastOut, WatchSequences};
use rayon::prelude::*;
use retrieval::{Catalog, Example, UserFeatures, ValidationCase, WatchHistories};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How examples are drawn.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExamplesConfig {
    /// At most this many examples per user, sampled uniformly among the user's watches, so that
    /// heavy users do not dominate.
    pub max_per_user: usize,
    /// Seed of the sampling.
    pub seed: u64,
    /// Users evaluated (EVAL.md §1, validation during training and the manifest's figures): a
    /// seeded sample of this many when more users can be evaluated, so that evaluation stays
    /// affordable on large worlds (0: every user).
    pub eval_users: usize,
}

impl Default for ExamplesConfig {
    fn default() -> Self {
        ExamplesConfig {
            max_per_user: 2_000,
            seed: 17,
            eval_users: 10_000,
        }
    }
}

/// Dense indices for ids, in a fixed order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdMap {
    /// The ids in index order.
    pub ids: Vec<i64>,
    #[serde(skip)]
    index: HashMap<i64, u32>,
}

impl IdMap {
    /// A map over `ids` (duplicates keep their first index).
    pub fn new(ids: impl IntoIterator<Item = i64>) -> Self {
        let mut m = IdMap::default();
        for id in ids {
            m.insert(id);
        }
        m
    }

    /// Adds `id` when new; returns its index.
    pub fn insert(&mut self, id: i64) -> u32 {
        let next = self.ids.len() as u32;
        let ids = &mut self.ids;
        *self.index.entry(id).or_insert_with(|| {
            ids.push(id);
            next
        })
    }

    /// The index of `id`, when known.
    pub fn get(&self, id: i64) -> Option<u32> {
        self.index.get(&id).copied()
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no ids.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Rebuilds the lookup after deserialising.
    pub fn reindex(&mut self) {
        self.index = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32))
            .collect();
    }
}

/// Turns `users.parquet` values into model inputs: categorical values to indices (0 = missing
/// or unseen), numeric values to [0, 1] by the training range (missing = 0).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserFeatureEncoder {
    /// Per categorical column: its name and known values (index = position + 1).
    pub categorical: Vec<(String, Vec<String>)>,
    /// Per numeric column: its name, minimum and maximum.
    pub numeric: Vec<(String, f64, f64)>,
    /// Users' rows in `users.parquet` order, by id, for lookups.
    #[serde(skip)]
    rows: HashMap<i64, usize>,
    #[serde(skip)]
    users: Users,
    #[serde(skip)]
    lookup: Vec<HashMap<String, u32>>,
}

impl UserFeatureEncoder {
    /// Learns the encoding from `users` (columns with a single value or no values are dropped).
    pub fn fit(users: &Users) -> Self {
        let mut enc = UserFeatureEncoder::default();
        for (name, col) in &users.categorical {
            let mut values: Vec<String> = col.iter().flatten().cloned().collect();
            values.sort();
            values.dedup();
            if values.len() >= 2 && values.len() <= 100_000 {
                enc.categorical.push((name.clone(), values));
            }
        }
        for (name, col) in &users.numeric {
            let vals = col.iter().flatten();
            let lo = vals.clone().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.copied().fold(f64::NEG_INFINITY, f64::max);
            if lo.is_finite() && hi > lo {
                enc.numeric.push((name.clone(), lo, hi));
            }
        }
        enc.attach(users.clone());
        enc
    }

    /// Attaches the user table whose rows [`UserFeatureEncoder::encode`] looks up.
    pub fn attach(&mut self, users: Users) {
        self.rows = users
            .user_id
            .iter()
            .enumerate()
            .map(|(i, &u)| (u, i))
            .collect();
        self.lookup = self
            .categorical
            .iter()
            .map(|(_, vals)| {
                vals.iter()
                    .enumerate()
                    .map(|(i, v)| (v.clone(), i as u32 + 1))
                    .collect()
            })
            .collect();
        self.users = users;
    }

    /// Whether `user_id` has a row in the attached user table.
    pub fn knows(&self, user_id: i64) -> bool {
        self.rows.contains_key(&user_id)
    }

    /// Whether there is any feature.
    pub fn is_empty(&self) -> bool {
        self.categorical.is_empty() && self.numeric.is_empty()
    }

    /// Cardinalities of the categorical features (including the missing value 0).
    pub fn cardinalities(&self) -> Vec<usize> {
        self.categorical.iter().map(|(_, v)| v.len() + 1).collect()
    }

    /// The encoded features of `user_id` (all missing for an unknown user).
    pub fn encode(&self, user_id: i64) -> (Vec<u32>, Vec<f32>) {
        let row = self.rows.get(&user_id).copied();
        let cat = self
            .categorical
            .iter()
            .zip(&self.lookup)
            .map(|((name, _), lookup)| {
                row.and_then(|r| column(&self.users.categorical, name).and_then(|c| c[r].clone()))
                    .and_then(|v| lookup.get(&v).copied())
                    .unwrap_or(0)
            })
            .collect();
        let num = self
            .numeric
            .iter()
            .map(|(name, lo, hi)| {
                row.and_then(|r| column(&self.users.numeric, name).and_then(|c| c[r]))
                    .map(|x| ((x - lo) / (hi - lo)).clamp(0.0, 1.0) as f32)
                    .unwrap_or(0.0)
            })
            .collect();
        (cat, num)
    }
}

fn column<'a, T>(cols: &'a [(String, Vec<T>)], name: &str) -> Option<&'a [T]> {
    cols.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// Everything the retrieval model trains and is evaluated on.
pub struct RetrievalInputs {
    /// Dense item indices (the catalogue's order, then items only seen in events).
    pub items: IdMap,
    /// Token vocabulary (categories).
    pub tokens: IdMapStr,
    /// The catalogue with its tokens.
    pub catalog: Catalog,
    /// Training histories, one per user of `users`.
    pub histories: WatchHistories,
    /// Users in `histories` order.
    pub users: IdMap,
    /// The sampled rollback examples.
    pub examples: Vec<Example>,
    /// User features (aligned with `users`), when the data has any.
    pub features: Option<UserFeatures>,
    /// The feature encoder (saved with the model for serving).
    pub encoder: UserFeatureEncoder,
    /// Validation cases (EVAL.md §1), one per evaluated user.
    pub validation: Vec<ValidationCase>,
    /// Test cases: the validation watch joins the history.
    pub test: Vec<ValidationCase>,
    /// Users that could be evaluated (at least three watches); `validation` and `test` hold a
    /// seeded sample of them when there are more than `eval_users`.
    pub evaluable_users: usize,
    /// The newest watch time of the data (Unix seconds): item ages are measured from it.
    pub reference_time: Option<i64>,
}

/// A string vocabulary (token -> index).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdMapStr {
    /// Tokens in index order.
    pub tokens: Vec<String>,
}

impl RetrievalInputs {
    /// Builds the inputs: every user's watched sequence (`all`) with the last two watches of
    /// evaluated users (`split`) held out.
    pub fn build(
        all: &WatchSequences,
        split: &LeaveLastOut,
        items: &Items,
        users: &Users,
        cfg: &ExamplesConfig,
    ) -> Result<Self> {
        let mut item_map = IdMap::new(items.item_id.iter().copied());
        for &i in &all.items {
            item_map.insert(i);
        }
        if item_map.is_empty() {
            return Err(Error::Input("no items: the events hold no watches".into()));
        }
        // Tokens: categories of the catalogue.
        let mut token_index: HashMap<&str, u32> = HashMap::new();
        let mut tokens = Vec::new();
        let mut item_tokens = vec![Vec::new(); item_map.len()];
        for (row, cats) in items.categories.iter().enumerate() {
            let idx = item_map.get(items.item_id[row]).unwrap_or(0) as usize;
            for c in cats {
                let next = tokens.len() as u32;
                let t = *token_index.entry(c.as_str()).or_insert_with(|| {
                    tokens.push(c.clone());
                    next
                });
                item_tokens[idx].push(t);
            }
        }
        let reference_time = all.times.iter().copied().max();
        let (duration_seconds, age_days) =
            item_numeric(items, |id| item_map.get(id), item_map.len(), reference_time);
        let catalog = Catalog {
            num_items: item_map.len(),
            num_tokens: tokens.len(),
            item_tokens: if tokens.is_empty() {
                Vec::new()
            } else {
                item_tokens
            },
            duration_seconds,
            age_days,
            reference_time,
        };
        let evaluated: HashMap<i64, usize> = split
            .sequences
            .users
            .iter()
            .enumerate()
            .map(|(k, &u)| (u, k))
            .collect();
        let user_map = IdMap::new(all.users.iter().copied());
        let sequences: Vec<Vec<(u32, i64)>> = (0..all.num_users())
            .into_par_iter()
            .map(|u| {
                let (it, ts) = match evaluated.get(&all.users[u]) {
                    Some(&k) => split.train(k),
                    None => all.user(u),
                };
                it.iter()
                    .zip(ts)
                    .map(|(&i, &t)| (item_map.get(i).unwrap_or(0), t))
                    .collect()
            })
            .collect();
        let histories = WatchHistories::from_sequences(&sequences);
        let examples = sample_examples(&histories, cfg);
        let encoder = UserFeatureEncoder::fit(users);
        let features = (!encoder.is_empty()).then(|| {
            let mut f = UserFeatures {
                cardinalities: encoder.cardinalities(),
                num_numeric: encoder.numeric.len(),
                ..Default::default()
            };
            for &u in &user_map.ids {
                let (c, n) = encoder.encode(u);
                f.categorical.push(c);
                f.numeric.push(n);
            }
            f
        });
        let case = |k: usize, test: bool| {
            let u = split.sequences.users[k];
            let (hist, _) = if test {
                split.train_and_validation(k)
            } else {
                split.train(k)
            };
            let history: Vec<u32> = hist.iter().map(|&i| item_map.get(i).unwrap_or(0)).collect();
            let target_id = if test {
                split.test(k).0
            } else {
                split.validation(k).0
            };
            ValidationCase {
                user: user_map.get(u).unwrap_or(0),
                exclude: history.clone(),
                history,
                target: item_map.get(target_id).unwrap_or(0),
            }
        };
        let evaluable_users = split.num_users();
        let evaluated: Vec<usize> = if cfg.eval_users > 0 && evaluable_users > cfg.eval_users {
            crate::rng::Rng::stream(cfg.seed, 0xE7A1)
                .sample_sorted((0..evaluable_users as u32).collect(), cfg.eval_users)
                .into_iter()
                .map(|k| k as usize)
                .collect()
        } else {
            (0..evaluable_users).collect()
        };
        let validation = evaluated.iter().map(|&k| case(k, false)).collect();
        let test = evaluated.iter().map(|&k| case(k, true)).collect();
        Ok(RetrievalInputs {
            items: item_map,
            tokens: IdMapStr { tokens },
            catalog,
            histories,
            users: user_map,
            examples,
            features,
            encoder,
            validation,
            test,
            evaluable_users,
            reference_time,
        })
    }
}

/// An item's age in days at `reference` (0 for an item published after it); `None` when
/// either time is unknown.
pub fn age_days(published: Option<i64>, reference: Option<i64>) -> Option<f32> {
    let (p, r) = (published?, reference?);
    Some((r.saturating_sub(p).max(0) as f64 / 86_400.0) as f32)
}

/// Each item's duration (seconds) and age (days at `reference`) at the index `index_of` gives
/// its id (`n` items; rows it maps to `None` are skipped). A column the catalogue never fills
/// comes back empty; negative or non-finite durations count as unknown.
pub fn item_numeric(
    items: &Items,
    index_of: impl Fn(i64) -> Option<u32>,
    n: usize,
    reference: Option<i64>,
) -> (Vec<Option<f32>>, Vec<Option<f32>>) {
    let known_duration = items.duration.iter().any(Option::is_some);
    let known_published = items.published.iter().any(Option::is_some) && reference.is_some();
    let mut duration = if known_duration {
        vec![None; n]
    } else {
        Vec::new()
    };
    let mut age = if known_published {
        vec![None; n]
    } else {
        Vec::new()
    };
    for (row, &id) in items.item_id.iter().enumerate() {
        let Some(i) = index_of(id).map(|i| i as usize).filter(|&i| i < n) else {
            continue;
        };
        if known_duration {
            duration[i] = items.duration[row].filter(|d| d.is_finite() && *d >= 0.0);
        }
        if known_published {
            age[i] = age_days(items.published[row], reference);
        }
    }
    (duration, age)
}

/// Rollback examples: for each user, positions 1.. of their training sequence (each predicts
/// its watch from the watches before it), at most `max_per_user`, sampled without replacement
/// with a per-user seed. Ordered by user then position.
pub fn sample_examples(h: &WatchHistories, cfg: &ExamplesConfig) -> Vec<Example> {
    (0..h.num_users())
        .into_par_iter()
        .flat_map_iter(|u| {
            let n = h.offsets[u + 1] - h.offsets[u];
            let pos = Rng::stream(cfg.seed, u as u64)
                .sample_sorted((1..n as u32).collect(), cfg.max_per_user);
            pos.into_iter().map(move |p| Example {
                user: u as u32,
                pos: p,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
