//! The compact layered proximity graph that HNSW search walks.
//!
//! Links are `u32` dense indices in compressed-sparse-row form: layer 0 holds every item,
//! upper layers list their (sorted) members. Search maximises the exact score `u . v + b`
//! with the usual HNSW descent: greedy on the upper layers, a beam of width `ef` on layer 0.
//! Excluded items are walked through but never enter the answer.

use std::cell::RefCell;
use std::collections::BinaryHeap;

use crate::kernel::dot4;
use crate::topk::{contains, Scored, TopK};
use crate::vectors::Catalogue;

/// One layer's adjacency lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Layer {
    /// Sorted members (dense indices); empty on layer 0, where every item is a member.
    pub(crate) nodes: Vec<u32>,
    /// `offsets[p]..offsets[p + 1]` is the range of `links` of the member at position `p`.
    pub(crate) offsets: Vec<u64>,
    /// Neighbour dense indices, best first.
    pub(crate) links: Vec<u32>,
}

impl Layer {
    /// Neighbours of `node` in this layer (empty when it is not a member).
    #[inline]
    pub(crate) fn neighbours(&self, node: u32) -> &[u32] {
        let pos = if self.nodes.is_empty() {
            node as usize
        } else {
            match self.nodes.binary_search(&node) {
                Ok(p) => p,
                Err(_) => return &[],
            }
        };
        match (self.offsets.get(pos), self.offsets.get(pos + 1)) {
            (Some(&a), Some(&b)) => self.links.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Checks internal consistency against a catalogue of `n` items.
    pub(crate) fn check(&self, n: usize, base: bool) -> Result<(), String> {
        let members = if base { n } else { self.nodes.len() };
        if self.offsets.len() != members + 1 {
            return Err(format!(
                "{} offsets for {members} members",
                self.offsets.len()
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
        if !base && self.nodes.windows(2).any(|w| w[0] >= w[1]) {
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
    /// `layers[0]` is the base layer.
    pub(crate) layers: Vec<Layer>,
}

/// Per-thread visited marks, reused between searches (an epoch per item avoids clearing).
pub(crate) struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    /// Forgets all marks, making room for `n` items.
    pub(crate) fn start(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        if self.epoch == u32::MAX {
            self.marks.fill(0);
            self.epoch = 0;
        }
        self.epoch += 1;
    }

    /// Marks `i`; true when it was not marked yet.
    #[inline]
    pub(crate) fn insert(&mut self, i: u32) -> bool {
        let slot = &mut self.marks[i as usize];
        let fresh = *slot != self.epoch;
        *slot = self.epoch;
        fresh
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
            layers: vec![Layer {
                offsets: vec![0],
                ..Layer::default()
            }],
        }
    }

    /// Checks the graph against a catalogue of `n` items.
    pub(crate) fn check(&self, n: usize) -> Result<(), String> {
        let Some(base) = self.layers.first() else {
            return Err("no layer".into());
        };
        base.check(n, true)?;
        for (l, layer) in self.layers.iter().enumerate().skip(1) {
            layer.check(n, false).map_err(|e| format!("layer {l}: {e}"))?;
        }
        if n > 0 && self.entry as usize >= n {
            return Err("entry point is past the last item".into());
        }
        Ok(())
    }

    /// Bytes held by the adjacency lists.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.nodes.len() * 4 + l.offsets.len() * 8 + l.links.len() * 4)
            .sum()
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
        let n = cat.len();
        if n == 0 || k == 0 || self.layers.is_empty() {
            return Vec::new();
        }
        let mut cur = Scored {
            score: cat.score(query, self.entry),
            idx: self.entry,
        };
        for layer in self.layers.iter().skip(1).rev() {
            loop {
                let mut moved = false;
                for &nb in layer.neighbours(cur.idx) {
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
        let mut found = with_visited(|visited| {
            visited.start(n);
            self.beam_search(cat, query, cur, beam, excluded, visited)
        });
        found.truncate(k);
        found
    }

    /// Beam search on layer 0 from `start`; returns the beam's non-excluded items, best first.
    fn beam_search(
        &self,
        cat: &Catalogue,
        query: &[f32],
        start: Scored,
        beam: usize,
        excluded: &[u32],
        visited: &mut Visited,
    ) -> Vec<Scored> {
        let base = &self.layers[0];
        let mut candidates = BinaryHeap::with_capacity(beam * 2);
        let mut results = TopK::new(beam);
        visited.insert(start.idx);
        candidates.push(start);
        if !contains(excluded, start.idx) {
            results.push(start);
        }
        let mut fresh: Vec<u32> = Vec::with_capacity(64);
        while let Some(c) = candidates.pop() {
            if let Some(worst) = results.worst() {
                if results.is_full() && c.score < worst.score {
                    break;
                }
            }
            fresh.clear();
            fresh.extend(
                base.neighbours(c.idx)
                    .iter()
                    .copied()
                    .filter(|&nb| visited.insert(nb)),
            );
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
                let dots = dot4(query, rows);
                for (&idx, d) in q.iter().zip(dots) {
                    offer(idx, d);
                }
            }
            for &idx in quads.remainder() {
                offer(idx, crate::kernel::dot(query, cat.row(idx)));
            }
        }
        results.into_sorted()
    }
}
