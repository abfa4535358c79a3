//! Id columns: canonical integer detection and the distinct ids of pass 1.

use crate::data::IdType;
use std::collections::HashSet;

/// `s` as an `i64` when it is exactly how that integer is written (so "007", "+7", "-0" and
/// "1e3" are not).
pub fn canonical_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || digits.starts_with('+') || (digits.starts_with('0') && s != "0") {
        return None;
    }
    s.parse().ok()
}

/// The distinct values of an id column, and whether all are canonical integers.
#[derive(Debug, Default)]
pub(crate) struct Distinct {
    text: bool,
    ints: HashSet<i64>,
    strings: HashSet<Box<str>>,
}

impl Distinct {
    /// Adds one id.
    pub(crate) fn add(&mut self, s: &str) {
        if !self.text {
            if let Some(v) = canonical_int(s) {
                self.ints.insert(v);
                return;
            }
            self.text = true;
            self.strings = self.ints.drain().map(|v| v.to_string().into()).collect();
            self.ints = HashSet::new();
        }
        if !self.strings.contains(s) {
            self.strings.insert(s.into());
        }
    }

    /// Number of distinct ids.
    pub(crate) fn len(&self) -> usize {
        self.ints.len() + self.strings.len()
    }

    /// `Int64` while every id was a canonical integer, else `Utf8`.
    pub(crate) fn id_type(&self) -> IdType {
        if self.text {
            IdType::Utf8
        } else {
            IdType::Int64
        }
    }
}
