//! The beam of a graph search: a short array kept sorted best first.
//!
//! A binary heap of candidates plus a heap of results costs two unpredictable sifts per
//! scored item. The beam here is one sorted array of at most `capacity` eligible items (plus
//! the excluded ones that rank among them). The items scored in one step of the walk are
//! offered, sorted, and merged into it in one pass; the next items to expand are the best
//! ones not yet expanded, and the walk ends when every item in the beam has been expanded.

use crate::topk::Scored;

/// Flag bit: the entry has been expanded.
const EXPANDED: u32 = 1 << 31;
/// Flag bit: the entry is excluded (walked through, never answered).
const EXCLUDED: u32 = 1 << 30;
/// Largest dense index the flags leave room for (the catalogue holds at most this + 1 items).
pub(crate) const MAX_INDEX: u32 = EXCLUDED - 1;

/// One entry: score, and the index with the two flags in its top bits.
#[derive(Clone, Copy)]
struct Entry {
    score: f32,
    tagged: u32,
}

impl Entry {
    #[inline]
    fn idx(self) -> u32 {
        self.tagged & MAX_INDEX
    }
}

/// The beam: the best `capacity` eligible items scored so far, with the excluded items that
/// rank among them, sorted best first (higher score, then lower index).
pub(crate) struct Pool {
    entries: Vec<Entry>,
    /// Offers of the current round (see [`Pool::offer`]), then merge scratch.
    offers: Vec<Entry>,
    scratch: Vec<Entry>,
    eligible: usize,
    capacity: usize,
    /// No entry before this position is unexpanded.
    cursor: usize,
}

impl Pool {
    /// An empty beam of `capacity` (at least 1) eligible items.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Pool {
            entries: Vec::with_capacity(capacity + 1),
            offers: Vec::new(),
            scratch: Vec::with_capacity(capacity + 1),
            eligible: 0,
            capacity,
            cursor: 0,
        }
    }

    /// True when an item of `score` would enter the beam.
    #[inline]
    pub(crate) fn admits(&self, score: f32) -> bool {
        // when full, the last entry is eligible (see `merge`)
        self.eligible < self.capacity || self.entries.last().is_some_and(|e| score > e.score)
    }

    /// Queues item `idx` (at most [`MAX_INDEX`]) for the next [`Pool::merge`] when it would
    /// enter the beam now; `eligible` is false for an excluded item.
    #[inline]
    pub(crate) fn offer(&mut self, score: f32, idx: u32, eligible: bool) {
        if self.admits(score) {
            let tagged = if eligible { idx } else { idx | EXCLUDED };
            self.offers.push(Entry { score, tagged });
        }
    }

    /// Merges the queued offers into the beam in one pass (cheaper than inserting one by one:
    /// the beam is copied once per round instead of shifted once per item).
    pub(crate) fn merge(&mut self) {
        if self.offers.is_empty() {
            return;
        }
        let rank = |a: &Entry, b: &Entry| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.idx().cmp(&b.idx()))
        };
        self.offers.sort_unstable_by(rank);
        let first = self.offers[0];
        // entries ranking before the best offer stay where they are
        let keep = self
            .entries
            .partition_point(|e| rank(e, &first) == std::cmp::Ordering::Less);
        let mut eligible = self.entries[..keep]
            .iter()
            .filter(|e| e.tagged & EXCLUDED == 0)
            .count();
        self.scratch.clear();
        let (mut i, mut j) = (keep, 0);
        while eligible < self.capacity {
            let take_old = match (self.entries.get(i), self.offers.get(j)) {
                (Some(a), Some(b)) => rank(a, b) == std::cmp::Ordering::Less,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let e = if take_old {
                i += 1;
                self.entries[i - 1]
            } else {
                j += 1;
                self.offers[j - 1]
            };
            eligible += usize::from(e.tagged & EXCLUDED == 0);
            self.scratch.push(e);
        }
        self.entries.truncate(keep);
        self.entries.extend_from_slice(&self.scratch);
        self.eligible = eligible;
        self.cursor = self.cursor.min(keep);
        self.offers.clear();
    }

    /// Moves up to `max` of the best unexpanded items into `out` (cleared first) and marks
    /// them expanded; `out` stays empty when the walk is over.
    #[inline]
    pub(crate) fn next(&mut self, max: usize, out: &mut Vec<u32>) {
        out.clear();
        let mut i = self.cursor;
        while i < self.entries.len() && out.len() < max {
            let e = &mut self.entries[i];
            if e.tagged & EXPANDED == 0 {
                e.tagged |= EXPANDED;
                out.push(e.tagged & MAX_INDEX);
            }
            i += 1;
        }
        // entries before `i` are expanded now
        self.cursor = i;
    }

    /// The eligible items, best first.
    pub(crate) fn into_sorted(self) -> Vec<Scored> {
        self.entries
            .into_iter()
            .filter(|e| e.tagged & EXCLUDED == 0)
            .map(|e| Scored {
                score: e.score,
                idx: e.idx(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer1(p: &mut Pool, score: f32, idx: u32, eligible: bool) {
        p.offer(score, idx, eligible);
        p.merge();
    }

    fn ids(p: Pool) -> Vec<u32> {
        p.into_sorted().iter().map(|s| s.idx).collect()
    }

    #[test]
    fn keeps_the_best_eligible_items_sorted() {
        let mut p = Pool::new(3);
        for (score, idx) in [(1.0, 1), (5.0, 5), (3.0, 3), (4.0, 4), (2.0, 2), (4.0, 0)] {
            offer1(&mut p, score, idx, true);
        }
        // ties rank the lower index first
        assert_eq!(ids(p), vec![5, 0, 4]);
    }

    #[test]
    fn excluded_items_are_walked_but_not_answered() {
        let mut p = Pool::new(2);
        offer1(&mut p, 9.0, 9, false);
        offer1(&mut p, 1.0, 1, true);
        offer1(&mut p, 2.0, 2, true);
        offer1(&mut p, 0.5, 7, false); // behind a full beam: not admitted
        let mut out = Vec::new();
        p.next(10, &mut out);
        assert_eq!(out, vec![9, 2, 1]);
        offer1(&mut p, 3.0, 3, true); // pushes 1 out
        p.next(10, &mut out);
        assert_eq!(out, vec![3]);
        p.next(10, &mut out);
        assert!(out.is_empty());
        assert_eq!(ids(p), vec![3, 2]);
    }

    #[test]
    fn a_merge_keeps_the_best_of_old_and_new() {
        let mut p = Pool::new(4);
        for (score, idx) in [(1.0, 1), (3.0, 3), (5.0, 5)] {
            p.offer(score, idx, true);
        }
        p.merge();
        let mut out = Vec::new();
        p.next(1, &mut out);
        assert_eq!(out, vec![5]);
        // one merge with items before, between and after the beam's, one excluded
        for (score, idx, eligible) in [
            (6.0, 6, true),
            (4.0, 4, false),
            (2.0, 2, true),
            (0.5, 9, true),
        ] {
            p.offer(score, idx, eligible);
        }
        p.merge();
        p.next(10, &mut out);
        assert_eq!(out, vec![6, 4, 3, 2]);
        assert_eq!(ids(p), vec![6, 5, 3, 2]);
    }

    #[test]
    fn trailing_excluded_entries_leave_with_the_worst_eligible() {
        let mut p = Pool::new(2);
        offer1(&mut p, 5.0, 5, true);
        offer1(&mut p, 4.0, 4, true);
        offer1(&mut p, 3.0, 3, false); // excluded, worse than the full beam's worst: refused
        offer1(&mut p, 4.5, 45, false);
        offer1(&mut p, 6.0, 6, true); // 4 leaves; nothing excluded trails 5
        let mut out = Vec::new();
        p.next(10, &mut out);
        assert_eq!(out, vec![6, 5]);
        assert_eq!(ids(p), vec![6, 5]);
    }
}
