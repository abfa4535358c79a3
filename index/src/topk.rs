//! Scored items and a bounded best-k collector.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// An item (dense index) with its exact score. Ordered so that "greater" means "better":
/// higher score first, then the lower index (a deterministic tie-break).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    pub(crate) score: f32,
    pub(crate) idx: u32,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.idx.cmp(&self.idx))
    }
}

/// Keeps the best `k` items pushed so far.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Scored>>,
}

impl TopK {
    /// An empty collector of at most `k` items.
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// True once `k` items are held.
    pub(crate) fn is_full(&self) -> bool {
        self.heap.len() >= self.k
    }

    /// The worst item held, if any.
    pub(crate) fn worst(&self) -> Option<Scored> {
        self.heap.peek().map(|r| r.0)
    }

    /// True when an item scoring `score` could enter (cheap pre-check before `push`).
    #[inline]
    pub(crate) fn may_accept(&self, score: f32) -> bool {
        match self.heap.peek() {
            Some(worst) if self.is_full() => score >= worst.0.score,
            _ => self.k > 0,
        }
    }

    /// Offers an item; returns whether it was kept.
    #[inline]
    pub(crate) fn push(&mut self, item: Scored) -> bool {
        if self.k == 0 {
            return false;
        }
        if self.heap.len() < self.k {
            self.heap.push(Reverse(item));
            return true;
        }
        match self.heap.peek_mut() {
            Some(mut worst) if item > worst.0 => {
                // replace the worst in place: one sift instead of a pop and a push
                *worst = Reverse(item);
                true
            }
            _ => false,
        }
    }

    /// Adds every item of `other`.
    pub(crate) fn merge(&mut self, other: TopK) {
        for Reverse(item) in other.heap {
            self.push(item);
        }
    }

    /// The items, best first.
    pub(crate) fn into_sorted(self) -> Vec<Scored> {
        let mut items: Vec<Scored> = self.heap.into_iter().map(|r| r.0).collect();
        items.sort_unstable_by(|a, b| b.cmp(a));
        items
    }
}

/// True when `idx` is in the sorted slice `set`.
#[inline]
pub(crate) fn contains(set: &[u32], idx: u32) -> bool {
    !set.is_empty() && set.binary_search(&idx).is_ok()
}
