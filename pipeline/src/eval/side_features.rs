//! Side features for rating models that read them (deep MF): each rated user's and item's
//! tokens from `users.parquet` and `items.parquet`, over the dense indices of a rating split.
//!
//! - A user categorical column `c` with value `v` is the token `c=v`; values held by fewer
//!   than [`MIN_USERS`] users are dropped (a value nearly unique to one user, such as a zip
//!   code, is a second user id, not a feature).
//! - A user numeric column is cut at its deciles over the users: the token `c#k`, k = 0..9.
//! - An item's categories (genres, tags) are its tokens.

use std::collections::HashMap;

use nn::SideFeatures;

use crate::data::{Items, Users};

/// Fewest users a categorical value needs to become a token.
pub const MIN_USERS: usize = 5;
/// Buckets of a numeric user column.
const NUMERIC_BUCKETS: usize = 10;

/// Tokens by name, in first-seen order.
#[derive(Default)]
struct Vocab(HashMap<String, u32>);

impl Vocab {
    fn id(&mut self, token: String) -> u32 {
        let next = self.0.len() as u32;
        *self.0.entry(token).or_insert(next)
    }
}

/// The side features of the users and items with dense indices `user_index[id]` /
/// `item_index[id]` (`num_users` / `num_items` of them); `None` when neither file has any.
pub fn side_features(
    users: &Users,
    items: &Items,
    user_index: impl Fn(i64) -> Option<u32>,
    item_index: impl Fn(i64) -> Option<u32>,
    num_users: usize,
    num_items: usize,
) -> Option<SideFeatures> {
    let mut out = SideFeatures {
        user_tokens: vec![Vec::new(); num_users],
        item_tokens: vec![Vec::new(); num_items],
        ..SideFeatures::default()
    };
    let rows: Vec<(usize, usize)> = (0..users.len())
        .filter_map(|r| user_index(users.user_id[r]).map(|u| (r, u as usize)))
        .collect();
    let mut vocab = Vocab::default();
    for (name, values) in &users.categorical {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for &(r, _) in &rows {
            if let Some(v) = &values[r] {
                *counts.entry(v.as_str()).or_default() += 1;
            }
        }
        for &(r, u) in &rows {
            if let Some(v) = values[r].as_deref().filter(|v| counts[v] >= MIN_USERS) {
                out.user_tokens[u].push(vocab.id(format!("{name}={v}")));
            }
        }
    }
    for (name, values) in &users.numeric {
        let mut known: Vec<f64> = rows
            .iter()
            .filter_map(|&(r, _)| values[r].filter(|x| x.is_finite()))
            .collect();
        if known.is_empty() {
            continue;
        }
        known.sort_by(f64::total_cmp);
        let cuts: Vec<f64> = (1..NUMERIC_BUCKETS)
            .map(|k| known[k * known.len() / NUMERIC_BUCKETS])
            .collect();
        for &(r, u) in &rows {
            if let Some(x) = values[r].filter(|x| x.is_finite()) {
                let bucket = cuts.partition_point(|&c| c <= x);
                out.user_tokens[u].push(vocab.id(format!("{name}#{bucket}")));
            }
        }
    }
    out.user_vocab = vocab.0.len();
    let mut vocab = Vocab::default();
    for (r, categories) in items.categories.iter().enumerate() {
        if let Some(i) = item_index(items.item_id[r]) {
            let tokens = &mut out.item_tokens[i as usize];
            for c in categories {
                tokens.push(vocab.id(c.clone()));
            }
            tokens.sort_unstable();
            tokens.dedup();
        }
    }
    out.item_vocab = vocab.0.len();
    (out.user_vocab + out.item_vocab > 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_categorical_numeric_and_category_columns() {
        let n = 12;
        let users = Users {
            user_id: (0..n as i64).collect(),
            categorical: vec![(
                "zip".into(),
                (0..n)
                    .map(|u| Some(if u < 6 { "A".into() } else { format!("z{u}") }))
                    .collect(),
            )],
            numeric: vec![("age".into(), (0..n).map(|u| Some(u as f64)).collect())],
            ..Default::default()
        };
        let items = Items {
            item_id: vec![7, 8],
            categories: vec![vec!["Drama".into(), "Drama".into()], vec![]],
            duration: vec![None; 2],
            published: vec![None; 2],
            title: vec![None; 2],
            ..Default::default()
        };
        // Users 0..10 are rated (dense index = id); item 8 is, item 7 is index 0.
        let f = side_features(
            &users,
            &items,
            |id| (id < 10).then_some(id as u32),
            |id| Some(if id == 7 { 0 } else { 1 }),
            10,
            2,
        )
        .unwrap();
        // "zip=A" (6 users) is a token, the singleton zips are not; every user has an age decile.
        assert_eq!(f.user_tokens[0].len(), 2);
        assert_eq!(f.user_tokens[7].len(), 1);
        assert_eq!(f.user_tokens[0][0], f.user_tokens[5][0]);
        assert_ne!(
            f.user_tokens[0][1], f.user_tokens[9][0],
            "ages 0 and 9 differ in decile"
        );
        assert_eq!(f.item_tokens, vec![vec![0], vec![]]);
        assert_eq!((f.user_vocab, f.item_vocab), (11, 1));
        assert!(f.validate(10, 2).is_ok());
    }
}
