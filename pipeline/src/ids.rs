//! Ids as the user's data spells them. Warehouses often key users and items by strings
//! (`"alice"`, `"sku-1093"`, a UUID); recpipe works on `Int64` ids. A string id is read as a
//! *surrogate* `Int64`: the integer itself when the string is a canonical integer (`"123"`, not
//! `"0123"`), else 63 bits of its SHA-256. The surrogate depends on the string alone, so the same
//! string gets the same id in `events`, `items` and `users`, and on every nightly run (a warm
//! start keeps an item's trained row). The strings are kept beside ([`IdKeys`]) so that every
//! answer (`query`, `serve`, `candidates.parquet`, `rerank`) gives the user's own ids back.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The surrogate `Int64` id of a string id (see the module documentation).
pub fn surrogate(key: &str) -> i64 {
    if let Ok(n) = key.parse::<i64>() {
        if n.to_string() == key {
            return n;
        }
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(first) >> 1) as i64
}

/// The strings of one id column: surrogate id to the user's string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdKeys {
    keys: HashMap<i64, String>,
}

impl IdKeys {
    /// The surrogate of `key`, remembering the string; two different strings with one surrogate
    /// (a SHA-256 collision in 63 bits, or `"5"` beside a string that hashes to 5) are an error
    /// naming both.
    pub fn insert(&mut self, key: &str) -> std::result::Result<i64, String> {
        let id = surrogate(key);
        match self.keys.get(&id) {
            Some(known) if known != key => Err(format!(
                "ids '{known}' and '{key}' map to the same surrogate id {id}; rename one"
            )),
            Some(_) => Ok(id),
            None => {
                self.keys.insert(id, key.to_string());
                Ok(id)
            }
        }
    }

    /// The string of surrogate `id`, when known.
    pub fn key(&self, id: i64) -> Option<&str> {
        self.keys.get(&id).map(String::as_str)
    }

    /// Adds every string of `other` (same collision rule as [`IdKeys::insert`]).
    pub fn merge(&mut self, other: &IdKeys) -> std::result::Result<(), String> {
        for key in other.keys.values() {
            self.insert(key)?;
        }
        Ok(())
    }

    /// Number of distinct strings.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no string was seen.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// An id as the user spells it: a number, or the user's string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum ExternalId {
    /// An `Int64` id column.
    Int(i64),
    /// A string id column.
    Key(String),
}

impl std::fmt::Display for ExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExternalId::Int(n) => f.pad(&n.to_string()),
            ExternalId::Key(s) => f.pad(s),
        }
    }
}

/// How one id column of a data folder is spelt: `Int64` numbers, or strings with their keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum IdSpelling {
    /// `Int64` ids (or any integer type).
    #[default]
    Integers,
    /// String ids, read as surrogates.
    Strings(IdKeys),
}

impl IdSpelling {
    /// The spelling of a column read with `keys` (`None`: it held integers).
    pub fn from_keys(keys: Option<IdKeys>) -> Self {
        keys.map_or(IdSpelling::Integers, IdSpelling::Strings)
    }

    /// Whether the ids are strings.
    pub fn is_strings(&self) -> bool {
        matches!(self, IdSpelling::Strings(_))
    }

    /// The strings of string ids.
    pub fn keys(&self) -> Option<&IdKeys> {
        match self {
            IdSpelling::Integers => None,
            IdSpelling::Strings(keys) => Some(keys),
        }
    }

    /// The id `id` as the user spells it (a string id whose string is unknown, which a
    /// consistent data folder never has, is shown as its surrogate number).
    pub fn external(&self, id: i64) -> ExternalId {
        match self {
            IdSpelling::Integers => ExternalId::Int(id),
            IdSpelling::Strings(keys) => keys
                .key(id)
                .map_or(ExternalId::Int(id), |k| ExternalId::Key(k.to_string())),
        }
    }

    /// The internal id of `text` as the user typed it (`what` names it in errors: "user id").
    /// With string ids any text is an id (unknown ones simply have no history); with integer
    /// ids it must parse.
    pub fn parse(&self, text: &str, what: &str) -> std::result::Result<i64, String> {
        match self {
            IdSpelling::Integers => text.trim().parse::<i64>().map_err(|_| {
                format!("{what} '{text}' is not an integer (the data's ids are Int64)")
            }),
            IdSpelling::Strings(_) => Ok(surrogate(text)),
        }
    }

    /// Combines the spelling of the same ids read from two files (`a_name`, `b_name` for the
    /// error): both integers, or both strings (keys merged).
    pub fn combine(
        self,
        other: IdSpelling,
        a_name: &str,
        b_name: &str,
    ) -> std::result::Result<IdSpelling, String> {
        match (self, other) {
            (IdSpelling::Integers, IdSpelling::Integers) => Ok(IdSpelling::Integers),
            (IdSpelling::Strings(mut a), IdSpelling::Strings(b)) => {
                a.merge(&b)?;
                Ok(IdSpelling::Strings(a))
            }
            (a, _) => {
                let (s, i) = if a.is_strings() {
                    (a_name, b_name)
                } else {
                    (b_name, a_name)
                };
                Err(format!(
                    "{s} has string ids but {i} has integer ids; write both with the same id type"
                ))
            }
        }
    }
}

/// The spelling of a data folder's user and item ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdSpellings {
    /// `user_id` columns.
    pub users: IdSpelling,
    /// `item_id` columns.
    pub items: IdSpelling,
}

impl IdSpellings {
    /// Which id columns are strings.
    pub fn string_ids(&self) -> StringIds {
        StringIds {
            users: self.users.is_strings(),
            items: self.items.is_strings(),
        }
    }
}

/// Which of a file's user and item id columns hold strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StringIds {
    /// `user_id` is a string column.
    pub users: bool,
    /// `item_id` is a string column.
    pub items: bool,
}

/// The string of surrogate `id` from `keys` (`None`: integer ids, written as the number).
pub fn key_or_number(keys: Option<&IdKeys>, id: i64) -> String {
    keys.and_then(|k| k.key(id))
        .map_or_else(|| id.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrogates_are_stable_and_keep_canonical_integers() {
        assert_eq!(surrogate("123"), 123);
        assert_eq!(surrogate("-7"), -7);
        assert_ne!(surrogate("0123"), 123);
        assert_ne!(surrogate("+5"), 5);
        let a = surrogate("alice");
        assert_eq!(a, surrogate("alice"));
        assert!(a >= 0);
        assert_ne!(a, surrogate("bob"));
        let mut keys = IdKeys::default();
        assert_eq!(keys.insert("alice"), Ok(a));
        assert_eq!(keys.insert("alice"), Ok(a));
        assert_eq!(keys.key(a), Some("alice"));
        assert_eq!(keys.len(), 1);
        let spelling = IdSpelling::Strings(keys);
        assert_eq!(spelling.external(a), ExternalId::Key("alice".into()));
        assert_eq!(spelling.parse("alice", "user id"), Ok(a));
        assert_eq!(IdSpelling::Integers.external(4), ExternalId::Int(4));
        let err = IdSpelling::Integers.parse("alice", "user id").unwrap_err();
        assert!(err.contains("'alice' is not an integer"), "{err}");
        assert_eq!(serde_json::to_string(&ExternalId::Int(4)).unwrap(), "4");
        assert_eq!(
            serde_json::to_string(&ExternalId::Key("x".into())).unwrap(),
            "\"x\""
        );
    }

    #[test]
    fn a_collision_and_mixed_spellings_are_errors() {
        let mut keys = IdKeys::default();
        // Force a collision: a canonical integer equal to another string's hash.
        let h = surrogate("alice");
        keys.insert("alice").unwrap();
        let err = keys.insert(&h.to_string()).unwrap_err();
        assert!(
            err.contains("'alice'") && err.contains("same surrogate"),
            "{err}"
        );
        let err = IdSpelling::Strings(IdKeys::default())
            .combine(IdSpelling::Integers, "events.parquet", "items.parquet")
            .unwrap_err();
        assert_eq!(
            err,
            "events.parquet has string ids but items.parquet has integer ids; write both with \
             the same id type"
        );
    }
}
