//! The compact layered proximity graph that HNSW search walks.
//!
//! Layer 0 holds every item in fixed-size slots (`[count, ids..]`, one cache miss per visit);
//! upper layers hold their sorted members in compressed-sparse-row form. Search maximises the
//! exact score `u . v + b` with the usual HNSW descent: greedy on the upper layers, a beam of
//! width `ef` on layer 0. Excluded items are walked through but never enter the answer.

use std::cell::RefCell;

use crate::kernel::{dot, dot4, prefetch, prefetch_row};
use crate::pool::Pool;
use crate::quant::Quantized;
use crate::topk::{contains, Scored};
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

    /// Prefetches every cache line of `node`'s slots.
    #[inline]
    fn prefetch(&self, node: u32) {
        let start = node as usize * self.stride;
        if let Some(block) = self.slots.get(start..start + self.stride) {
            let first = block.as_ptr() as usize & !63;
            let end = block.as_ptr() as usize + block.len() * 4;
            for line in (first..end).step_by(64) {
                prefetch(line as *const u8);
            }
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

/// Adjacency lists a beam search can walk.
pub(crate) trait Links {
    /// Neighbours of `node`, best first.
    fn neighbours(&self, node: u32) -> &[u32];
    /// Starts loading `node`'s list.
    fn prefetch(&self, node: u32);
}

impl Links for BaseLayer {
    #[inline]
    fn neighbours(&self, node: u32) -> &[u32] {
        BaseLayer::neighbours(self, node)
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        BaseLayer::prefetch(self, node);
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

/// Per-thread visited marks, reused between searches: one byte per item holding the number of
/// the search that last visited it, so only every 255th search clears the array.
pub(crate) struct Visited {
    marks: Vec<u8>,
    epoch: u8,
}

impl Visited {
    /// Forgets all marks, making room for `n` items.
    pub(crate) fn start(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        if self.epoch == u8::MAX {
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

/// What graph search ranks by.
pub(crate) trait Scorer {
    /// Score of item `idx`.
    fn score(&self, idx: u32) -> f32;
    /// Scores of four items.
    fn score4(&self, idx: [u32; 4]) -> [f32; 4];
    /// Starts loading what scoring `idx` reads.
    fn prefetch(&self, idx: u32);
}

/// The exact score `u . v + b` from the f32 vectors.
pub(crate) struct ExactScorer<'a> {
    pub(crate) cat: &'a Catalogue,
    pub(crate) query: &'a [f32],
}

impl Scorer for ExactScorer<'_> {
    #[inline]
    fn score(&self, idx: u32) -> f32 {
        dot(self.query, self.cat.row(idx)) + self.cat.bias[idx as usize]
    }

    #[inline]
    fn score4(&self, idx: [u32; 4]) -> [f32; 4] {
        let dots = dot4(self.query, idx.map(|i| self.cat.row(i)));
        std::array::from_fn(|j| dots[j] + self.cat.bias[idx[j] as usize])
    }

    #[inline]
    fn prefetch(&self, idx: u32) {
        prefetch_row(self.cat.row(idx));
        prefetch(&self.cat.bias[idx as usize]);
    }
}

/// The approximate score from int8 codes (exact bias).
pub(crate) struct QuantScorer<'a> {
    pub(crate) quant: &'a Quantized,
    /// The query prepared by [`Quantized::prepare`].
    pub(crate) prepared: &'a [f32],
    pub(crate) bias: &'a [f32],
}

impl Scorer for QuantScorer<'_> {
    #[inline]
    fn score(&self, idx: u32) -> f32 {
        self.quant.dot(self.prepared, idx) + self.bias[idx as usize]
    }

    #[inline]
    fn score4(&self, idx: [u32; 4]) -> [f32; 4] {
        let dots = self.quant.dot4(self.prepared, idx);
        std::array::from_fn(|j| dots[j] + self.bias[idx[j] as usize])
    }

    #[inline]
    fn prefetch(&self, idx: u32) {
        self.quant.prefetch(idx);
        prefetch(&self.bias[idx as usize]);
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

    /// The greedy descent of the upper layers: the item layer 0 starts from and the number
    /// of items scored.
    pub(crate) fn descend<S: Scorer>(&self, scorer: &S) -> (Scored, usize) {
        let mut scored = 1;
        let mut cur = Scored {
            score: scorer.score(self.entry),
            idx: self.entry,
        };
        for layer in self.upper.iter().rev() {
            loop {
                let mut moved = false;
                for &nb in layer.neighbours(cur.idx) {
                    scored += 1;
                    let cand = Scored {
                        score: scorer.score(nb),
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
        (cur, scored)
    }

    /// The best non-excluded items of a walk whose beam holds `max(beam, keep)` of them (see
    /// `beam_search`), best first by the scorer's score, and how many items were scored (a
    /// machine-independent measure of the work). `excluded` holds sorted dense indices; `n` is
    /// the item count.
    pub(crate) fn search<S: Scorer>(
        &self,
        scorer: &S,
        n: usize,
        beam: usize,
        keep: usize,
        excluded: &[u32],
    ) -> (Vec<Scored>, usize) {
        if n == 0 || beam == 0 || keep == 0 {
            return (Vec::new(), 0);
        }
        let (cur, scored) = self.descend(scorer);
        let (found, beam_scored) = with_visited(|visited| {
            visited.start(n);
            beam_search(&self.base, scorer, cur, beam, keep, excluded, visited)
        });
        (found, scored + beam_scored)
    }
}

/// Beam items expanded together, so that their memory loads overlap (measured on 200k items:
/// 17-27% less time per query than one at a time, for 1-5% more items scored).
const EXPAND: usize = 4;

/// Beam search from `start` over `links`: the beam holds the `max(beam, keep)` best
/// non-excluded items scored (with the excluded ones that rank among them), and the walk
/// ends when every item in it has been expanded. Returns the beam's non-excluded items, best
/// first, and the number of items scored.
fn beam_search<S: Scorer, L: Links>(
    links: &L,
    scorer: &S,
    start: Scored,
    beam: usize,
    keep: usize,
    excluded: &[u32],
    visited: &mut Visited,
) -> (Vec<Scored>, usize) {
    let mut pool = Pool::new(beam.max(keep));
    visited.insert(start.idx);
    pool.offer(start.score, start.idx, !contains(excluded, start.idx));
    pool.merge();
    let mut scored = 0;
    let mut batch: Vec<u32> = Vec::with_capacity(EXPAND);
    let mut fresh: Vec<u32> = Vec::with_capacity(64 * EXPAND);
    // the exclusion is looked up only for items that would enter the beam
    let offer = |pool: &mut Pool, score: f32, idx: u32| {
        if pool.admits(score) {
            pool.offer(score, idx, !contains(excluded, idx));
        }
    };
    loop {
        pool.next(EXPAND, &mut batch);
        if batch.is_empty() {
            break;
        }
        for &c in &batch {
            links.prefetch(c);
        }
        for &c in &batch {
            for &nb in links.neighbours(c) {
                visited.prefetch(nb);
            }
        }
        fresh.clear();
        for &c in &batch {
            fresh.extend(
                links
                    .neighbours(c)
                    .iter()
                    .copied()
                    .filter(|&nb| visited.insert(nb)),
            );
        }
        scored += fresh.len();
        for &nb in &fresh {
            scorer.prefetch(nb);
        }
        let mut quads = fresh.chunks_exact(4);
        for q in &mut quads {
            let ids = [q[0], q[1], q[2], q[3]];
            for (idx, score) in ids.into_iter().zip(scorer.score4(ids)) {
                offer(&mut pool, score, idx);
            }
        }
        for &idx in quads.remainder() {
            offer(&mut pool, scorer.score(idx), idx);
        }
        pool.merge();
    }
    (pool.into_sorted(), scored)
}
