//! The compact layered proximity graph that HNSW search walks.
//!
//! Layer 0 holds every item in fixed-size slots (`[count, ids..]`, one cache miss per visit);
//! upper layers hold their sorted members in compressed-sparse-row form. Search maximises the
//! exact score `u . v + b` with the usual HNSW descent: greedy on the upper layers, a beam of
//! width `ef` on layer 0. Excluded items are walked through but never enter the answer.

use std::cell::RefCell;
use std::collections::BinaryHeap;

use crate::kernel::{dot, dot4, prefetch, prefetch_row};
use crate::topk::{contains, Scored, TopK};
use crate::vectors::Catalogue;

/// Layer 0: `stride` slots per item, the first holding the number of links that follow.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct BaseLayer {
    /// Slots per item (maximum degree + 1).
    pub(crate) stride: usize,
    /// `n * stride` slots.
    pub(crate) slots: Vec<u32>,
}

impl BaseLayer {
    /// Neighbours of `node`, best first.
    #[inline]
    pub(crate) fn neighbours(&self, node: u32) -> &[u32] {
        let start = node as usize * self.stride;
        match self.slots.get(start..start + self.stride) {
            Some(s) => {
                let count = (s[0] as usize).min(self.stride - 1);
                &s[1..1 + count]
            }
            None => &[],
        }
    }

    /// Prefetches the first cache line of `node`'s slots.
    #[inline]
    fn prefetch(&self, node: u32) {
        if let Some(slot) = self.slots.get(node as usize * self.stride) {
            prefetch(slot);
        }
    }

    /// Checks the layout against a catalogue of `n` items.
    pub(crate) fn check(&self, n: usize) -> Result<(), String> {
        if self.stride < 1 || Some(self.slots.len()) != n.checked_mul(self.stride) {
            return Err(format!(
                "{} base slots for {n} items of stride {}",
                self.slots.len(),
                self.stride
            ));
        }
        for node in self.slots.chunks_exact(self.stride) {
            if node[0] as usize >= self.stride {
                return Err("a base-layer link count exceeds the stride".into());
            }
            if node[1..=node[0] as usize].iter().any(|&l| l as usize >= n) {
                return Err("a link points past the last item".into());
            }
        }
        Ok(())
    }
}

/// An upper layer's members and their adjacency lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Layer {
    /// Sorted members (dense indices).
    pub(crate) nodes: Vec<u32>,
    /// `offsets[p]..offsets[p + 1]` is the range of `links` of the member at position `p`.
    pub(crate) offsets: Vec<u64>,
    /// Neighbour dense indices, best first.
    pub(crate) links: Vec<u32>,
}

impl Layer {
    /// Neighbours of `node` in this layer (empty when it is not a member).
    pub(crate) fn neighbours(&self, node: u32) -> &[u32] {
        let Ok(pos) = self.nodes.binary_search(&node) else {
            return &[];
        };
        match (self.offsets.get(pos), self.offsets.get(pos + 1)) {
            (Some(&a), Some(&b)) => self.links.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Checks internal consistency against a catalogue of `n` items.
    pub(crate) fn check(&self, n: usize) -> Result<(), String> {
        if self.offsets.len() != self.nodes.len() + 1 {
            return Err(format!(
                "{} offsets for {} members",
                self.offsets.len(),
                self.nodes.len()
            ));
        }
        if self.offsets.first() != Some(&0)
            || self.offsets.last() != Some(&(self.links.len() as u64))
            || self.offsets.windows(2).any(|w| w[0] > w[1])
        {
            return Err("offsets are not a non-decreasing range over the links".into());
        }
        if self.links.iter().any(|&l| l as usize >= n) {
            return Err("a link points past the last item".into());
        }
        if self.nodes.windows(2).any(|w| w[0] >= w[1]) {
            return Err("layer members are not sorted".into());
        }
        if self.nodes.iter().any(|&m| m as usize >= n) {
            return Err("a layer member is past the last item".into());
        }
        Ok(())
    }
}

/// An HNSW graph over a catalogue's dense indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Graph {
    /// Where every search starts (a member of the top layer).
    pub(crate) entry: u32,
    /// Layer 0.
    pub(crate) base: BaseLayer,
    /// Layers 1, 2, ... (`upper[0]` is layer 1).
    pub(crate) upper: Vec<Layer>,
}

/// Per-thread visited marks, reused between searches (an epoch per item avoids clearing).
pub(crate) struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    /// Forgets all marks, making room for `n` items.
    pub(crate) fn start(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        if self.epoch == u16::MAX {
            self.marks.fill(0);
            self.epoch = 0;
        }
        self.epoch += 1;
    }

    /// Marks `i`; true when it was not marked yet.
    #[inline]
    pub(crate) fn insert(&mut self, i: u32) -> bool {
        match self.marks.get_mut(i as usize) {
            Some(slot) if *slot != self.epoch => {
                *slot = self.epoch;
                true
            }
            _ => false,
        }
    }

    /// Prefetches the mark of `i`.
    #[inline]
    pub(crate) fn prefetch(&self, i: u32) {
        if let Some(slot) = self.marks.get(i as usize) {
            prefetch(slot);
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), epoch: 0 }) };
}

/// Runs `f` with this thread's visited marks (a fresh set if they are in use).
pub(crate) fn with_visited<R>(f: impl FnOnce(&mut Visited) -> R) -> R {
    VISITED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut visited) => f(&mut visited),
        Err(_) => f(&mut Visited {
            marks: Vec::new(),
            epoch: 0,
        }),
    })
}

impl Graph {
    /// A graph without items.
    pub(crate) fn empty() -> Self {
        Graph {
            entry: 0,
            base: BaseLayer {
                stride: 1,
                slots: Vec::new(),
            },
            upper: Vec::new(),
        }
    }

    /// Number of layers, the base included.
    pub(crate) fn layers(&self) -> usize {
        self.upper.len() + 1
    }

    /// Checks the graph against a catalogue of `n` items.
    pub(crate) fn check(&self, n: usize) -> Result<(), String> {
        self.base.check(n)?;
        for (l, layer) in self.upper.iter().enumerate() {
            layer
                .check(n)
                .map_err(|e| format!("layer {}: {e}", l + 1))?;
        }
        if n > 0 && self.entry as usize >= n {
            return Err("entry point is past the last item".into());
        }
        Ok(())
    }

    /// Bytes held by the links.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.base.slots.len() * 4
            + self
                .upper
                .iter()
                .map(|l| l.nodes.len() * 4 + l.offsets.len() * 8 + l.links.len() * 4)
                .sum::<usize>()
    }

    /// Up to `k` best non-excluded items found with a beam of width `max(ef, k)`, best first.
    /// `excluded` holds sorted dense indices.
    pub(crate) fn search(
        &self,
        cat: &Catalogue,
        query: &[f32],
        k: usize,
        ef: usize,
        excluded: &[u32],
    ) -> Vec<Scored> {
        self.search_counted(cat, query, k, ef, excluded).0
    }

    /// [`Graph::search`], also returning how many items were scored (a machine-independent
    /// measure of the work done).
    pub(crate) fn search_counted(
        &self,
        cat: &Catalogue,
        query: &[f32],
        k: usize,
        ef: usize,
        excluded: &[u32],
    ) -> (Vec<Scored>, usize) {
        let n = cat.len();
        if n == 0 || k == 0 {
            return (Vec::new(), 0);
        }
        let mut scored = 1;
        let mut cur = Scored {
            score: cat.score(query, self.entry),
            idx: self.entry,
        };
        for layer in self.upper.iter().rev() {
            loop {
                let mut moved = false;
                for &nb in layer.neighbours(cur.idx) {
                    scored += 1;
                    let cand = Scored {
                        score: cat.score(query, nb),
                        idx: nb,
                    };
                    if cand > cur {
                        cur = cand;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        let beam = ef.max(k);
        let (mut found, beam_scored) = with_visited(|visited| {
            visited.start(n);
            self.beam_search(cat, query, cur, beam, excluded, visited)
        });
        found.truncate(k);
        (found, scored + beam_scored)
    }

    /// Beam search on layer 0 from `start`; returns the beam's non-excluded items, best first,
    /// and the number of items scored.
    fn beam_search(
        &self,
        cat: &Catalogue,
        query: &[f32],
        start: Scored,
        beam: usize,
        excluded: &[u32],
        visited: &mut Visited,
    ) -> (Vec<Scored>, usize) {
        let mut scored = 0;
        let mut candidates = BinaryHeap::with_capacity(beam * 2);
        let mut results = TopK::new(beam);
        visited.insert(start.idx);
        candidates.push(start);
        if !contains(excluded, start.idx) {
            results.push(start);
        }
        let mut fresh: Vec<u32> = Vec::with_capacity(self.base.stride);
        while let Some(c) = candidates.pop() {
            if results.is_full() && results.worst().is_some_and(|w| c.score < w.score) {
                break;
            }
            if let Some(next) = candidates.peek() {
                self.base.prefetch(next.idx);
            }
            let links = self.base.neighbours(c.idx);
            for &nb in links {
                visited.prefetch(nb);
            }
            fresh.clear();
            fresh.extend(links.iter().copied().filter(|&nb| visited.insert(nb)));
            scored += fresh.len();
            for &nb in &fresh {
                prefetch_row(cat.row(nb));
            }
            let mut offer = |idx: u32, dot: f32| {
                let score = dot + cat.bias[idx as usize];
                if results.may_accept(score) {
                    let item = Scored { score, idx };
                    candidates.push(item);
                    if !contains(excluded, idx) {
                        results.push(item);
                    }
                }
            };
            let mut quads = fresh.chunks_exact(4);
            for q in &mut quads {
                let rows = [cat.row(q[0]), cat.row(q[1]), cat.row(q[2]), cat.row(q[3])];
                for (&idx, d) in q.iter().zip(dot4(query, rows)) {
                    offer(idx, d);
                }
            }
            for &idx in quads.remainder() {
                offer(idx, dot(query, cat.row(idx)));
            }
        }
        (results.into_sorted(), scored)
    }
}
