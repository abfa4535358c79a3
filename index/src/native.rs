//! The default graph builder: HNSW insertion (Malkov & Yashunin, with hnswlib's neighbour
//! heuristic for both new and reverse links) on compact link arrays, in parallel with rayon.
//!
//! Links live in one flat `AtomicU32` array per layer group (`[count, ids..]` per item): readers
//! never lock, writers take a striped mutex of the item they modify. About 140 bytes per item
//! at `m = 16`, against 2-3 KB for hnsw_rs's `Arc`-linked points; and several times faster.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::graph::{with_visited, BaseLayer, Graph, Layer, Visited};
use crate::kernel::{prefetch, prefetch_row};
use crate::metric::{BiasTransform, BuildMetric, GraphMetric};
use crate::rng::SplitMix;
use crate::topk::{Scored, TopK};
use crate::vectors::Catalogue;

/// Highest layer index an item can get.
const TOP_LAYER: u8 = 15;
/// Items inserted one by one before the parallel phase (seeds a well-formed graph).
const SERIAL_START: usize = 1_000;

/// Parameters for graph construction.
pub(crate) struct BuildParams {
    pub(crate) m: usize,
    pub(crate) ef_construction: usize,
    pub(crate) metric: GraphMetric,
    pub(crate) level_scale: f64,
    /// Bias coordinate of the graph metric.
    pub(crate) bias: BiasTransform,
    pub(crate) seed: u64,
}

/// A candidate during construction: `score = -distance`, so "greater" means "closer".
fn near(dist: f32, idx: u32) -> Scored {
    Scored { score: -dist, idx }
}

struct GraphBuilder<'a> {
    metric: BuildMetric<'a>,
    m: usize,
    m0: usize,
    ef: usize,
    levels: Vec<u8>,
    /// Layer 0: `m0 + 1` slots per item (count, then ids).
    base: Vec<AtomicU32>,
    /// Start of an item's upper-layer slots in `upper` (`u32::MAX` below layer 1).
    upper_start: Vec<u32>,
    /// Layers 1..=level: `m + 1` slots per item and layer.
    upper: Vec<AtomicU32>,
    locks: Vec<Mutex<()>>,
    /// Entry item and its level.
    entry: Mutex<(u32, u8)>,
}

impl GraphBuilder<'_> {
    /// The slots (count, then ids) of `node` on `layer`.
    fn slots(&self, node: u32, layer: u8) -> &[AtomicU32] {
        if layer == 0 {
            let s = node as usize * (self.m0 + 1);
            &self.base[s..s + self.m0 + 1]
        } else {
            let s = self.upper_start[node as usize] as usize + (layer as usize - 1) * (self.m + 1);
            &self.upper[s..s + self.m + 1]
        }
    }

    /// Appends the links of `node` on `layer` to `out` (lock-free; may see a list mid-update,
    /// which only costs search quality, never safety: every stored id is a valid item).
    fn read(&self, node: u32, layer: u8, out: &mut Vec<u32>) {
        let slots = self.slots(node, layer);
        let count = (slots[0].load(Relaxed) as usize).min(slots.len() - 1);
        out.extend(slots[1..=count].iter().map(|s| s.load(Relaxed)));
    }

    /// Replaces the links of `node` on `layer` (caller holds the node's lock).
    fn write(&self, node: u32, layer: u8, ids: impl ExactSizeIterator<Item = u32>) {
        let slots = self.slots(node, layer);
        let count = ids.len().min(slots.len() - 1);
        for (slot, id) in slots[1..].iter().zip(ids) {
            slot.store(id, Relaxed);
        }
        slots[0].store(count as u32, Relaxed);
    }

    fn lock(&self, node: u32) -> std::sync::MutexGuard<'_, ()> {
        let lock = &self.locks[node as usize % self.locks.len()];
        lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Greedy walk towards `q` on `layer`.
    fn greedy(&self, q: u32, mut cur: Scored, layer: u8, buf: &mut Vec<u32>) -> Scored {
        loop {
            buf.clear();
            self.read(cur.idx, layer, buf);
            let mut moved = false;
            for &nb in buf.iter() {
                let cand = near(self.metric.dist(q, nb), nb);
                if cand > cur {
                    cur = cand;
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// The `ef` items closest to `q` found on `layer` from `start`, closest first.
    fn search_layer(&self, q: u32, start: Scored, layer: u8, visited: &mut Visited) -> Vec<Scored> {
        visited.start(self.levels.len());
        visited.insert(start.idx);
        let mut candidates = BinaryHeap::with_capacity(self.ef * 2);
        let mut results = TopK::new(self.ef);
        candidates.push(start);
        results.push(start);
        let mut buf = Vec::with_capacity(self.m0);
        while let Some(c) = candidates.pop() {
            if results.is_full() && results.worst().is_some_and(|w| c.score < w.score) {
                break;
            }
            if let Some(next) = candidates.peek() {
                prefetch(self.slots(next.idx, layer).as_ptr());
            }
            buf.clear();
            self.read(c.idx, layer, &mut buf);
            for &nb in &buf {
                visited.prefetch(nb);
            }
            buf.retain(|&nb| visited.insert(nb));
            for &nb in &buf {
                prefetch_row(self.metric.row(nb));
            }
            let mut offer = |idx: u32, dist: f32| {
                let item = near(dist, idx);
                if results.may_accept(item.score) {
                    candidates.push(item);
                    results.push(item);
                }
            };
            let mut quads = buf.chunks_exact(4);
            for quad in &mut quads {
                let ids = [quad[0], quad[1], quad[2], quad[3]];
                for (idx, d) in ids.into_iter().zip(self.metric.dist4(q, ids)) {
                    offer(idx, d);
                }
            }
            for &idx in quads.remainder() {
                offer(idx, self.metric.dist(q, idx));
            }
        }
        results.into_sorted()
    }

    /// hnswlib's heuristic: walk `cands` closest first and keep one unless an already kept item
    /// is closer to it than the base item is; at most `max`.
    fn select(&self, cands: &[Scored], max: usize) -> Vec<Scored> {
        let mut kept: Vec<Scored> = Vec::with_capacity(max);
        for &c in cands {
            if kept.len() >= max {
                break;
            }
            let dist_to_base = -c.score;
            if kept
                .iter()
                .all(|r| self.metric.dist(c.idx, r.idx) > dist_to_base)
            {
                kept.push(c);
            }
        }
        kept
    }

    /// Adds `q` (at distance `dist`) to the links of `node`, shrinking by the heuristic when full.
    fn link_back(&self, node: u32, q: u32, dist: f32, layer: u8) {
        let cap = if layer == 0 { self.m0 } else { self.m };
        let _guard = self.lock(node);
        let mut ids = Vec::with_capacity(cap + 1);
        self.read(node, layer, &mut ids);
        if ids.contains(&q) {
            return;
        }
        if ids.len() < cap {
            ids.push(q);
            self.write(node, layer, ids.into_iter());
            return;
        }
        let mut cands: Vec<Scored> = ids
            .iter()
            .map(|&nb| near(self.metric.dist(node, nb), nb))
            .collect();
        cands.push(near(dist, q));
        cands.sort_unstable_by(|a, b| b.cmp(a));
        let kept = self.select(&cands, cap);
        self.write(node, layer, kept.into_iter().map(|s| s.idx));
    }

    /// Inserts item `q` into the graph.
    fn insert(&self, q: u32) {
        let level = self.levels[q as usize];
        let (entry, top) = *self.entry.lock().unwrap_or_else(|p| p.into_inner());
        if entry == q {
            return;
        }
        let mut buf = Vec::with_capacity(self.m0);
        let mut cur = near(self.metric.dist(q, entry), entry);
        for layer in (level + 1..=top).rev() {
            cur = self.greedy(q, cur, layer, &mut buf);
        }
        for layer in (0..=level.min(top)).rev() {
            let found = with_visited(|v| self.search_layer(q, cur, layer, v));
            let kept = self.select(&found, if layer == 0 { self.m0 } else { self.m });
            {
                let _guard = self.lock(q);
                self.write(q, layer, kept.iter().map(|s| s.idx));
            }
            for s in &kept {
                self.link_back(s.idx, q, -s.score, layer);
            }
            if let Some(&closest) = found.first() {
                cur = closest;
            }
        }
        if level > top {
            let mut e = self.entry.lock().unwrap_or_else(|p| p.into_inner());
            if level > e.1 {
                *e = (q, level);
            }
        }
    }

    /// Copies the links into the search graph.
    fn into_graph(self) -> Graph {
        let n = self.levels.len();
        let (entry, top) = *self.entry.lock().unwrap_or_else(|p| p.into_inner());
        let base = BaseLayer {
            stride: self.m0 + 1,
            slots: self.base.into_iter().map(AtomicU32::into_inner).collect(),
        };
        let mut upper = Vec::with_capacity(top as usize);
        for layer in 1..=top {
            let nodes: Vec<u32> = (0..n as u32)
                .filter(|&i| self.levels[i as usize] >= layer)
                .collect();
            let mut offsets = Vec::with_capacity(nodes.len() + 1);
            offsets.push(0u64);
            let mut links = Vec::new();
            for &node in &nodes {
                let s =
                    self.upper_start[node as usize] as usize + (layer as usize - 1) * (self.m + 1);
                let slots = &self.upper[s..s + self.m + 1];
                let count = (slots[0].load(Relaxed) as usize).min(self.m);
                links.extend(slots[1..=count].iter().map(|a| a.load(Relaxed)));
                offsets.push(links.len() as u64);
            }
            upper.push(Layer {
                nodes,
                offsets,
                links,
            });
        }
        Graph { entry, base, upper }
    }
}

/// Draws each item's top layer: `floor(-ln(U) * level_scale / ln(m))`, capped.
fn draw_levels(n: usize, m: usize, level_scale: f64, seed: u64) -> Vec<u8> {
    let ml = level_scale / (m.max(2) as f64).ln();
    let mut rng = SplitMix::new(seed);
    (0..n)
        .map(|_| {
            let u = rng.uniform().max(1e-300);
            (-u.ln() * ml).floor().min(f64::from(TOP_LAYER)) as u8
        })
        .collect()
}

/// Upper-layer slot starts (`u32::MAX` below layer 1) and the total slot count for `levels`.
fn upper_layout(levels: &[u8], m: usize) -> (Vec<u32>, usize) {
    let mut upper_start = vec![u32::MAX; levels.len()];
    let mut upper_len = 0usize;
    for (start, &l) in upper_start.iter_mut().zip(levels) {
        if l > 0 {
            *start = upper_len as u32;
            upper_len += l as usize * (m + 1);
        }
    }
    (upper_start, upper_len)
}

/// Inserts items `from..end` (after `from` items already linked), one by one until the graph
/// has [`SERIAL_START`] items, then in parallel batches; `progress(done, end - from)`.
fn insert_range(
    builder: &GraphBuilder<'_>,
    from: usize,
    end: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) {
    let total = end - from;
    let serial = end.min(SERIAL_START.max(from));
    for q in from as u32..serial as u32 {
        builder.insert(q);
    }
    let mut done = serial;
    progress(done - from, total);
    let batch = (end / 100).clamp(1_000, 20_000);
    while done < end {
        let stop = (done + batch).min(end);
        (done as u32..stop as u32)
            .into_par_iter()
            .for_each(|q| builder.insert(q));
        done = stop;
        progress(done - from, total);
    }
}

/// Links catalogue items `graph_n..` into `graph` (built on the first `graph_n` items) as the
/// builder links late items: levels continue the seeded draw, each item descends from the
/// entry point, takes its links by the heuristic from an `ef_construction` beam per layer and
/// is linked back (lists pruned to capacity); a new top level makes it the entry point.
/// `progress(done, new items)` is called between batches.
pub(crate) fn extend_native(
    graph: Graph,
    graph_n: usize,
    cat: &Catalogue,
    params: &BuildParams,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Graph {
    let n = cat.len();
    if graph_n == 0 {
        return build_native(cat, params, progress);
    }
    progress(0, n - graph_n);
    let (m, m0) = (params.m, params.m * 2);
    let mut levels = draw_levels(n, m, params.level_scale, params.seed);
    levels[..graph_n].fill(0);
    for (l, layer) in graph.upper.iter().enumerate() {
        let level = (l + 1).min(usize::from(TOP_LAYER)) as u8;
        for &node in layer
            .nodes
            .iter()
            .filter(|&&node| (node as usize) < graph_n)
        {
            levels[node as usize] = levels[node as usize].max(level);
        }
    }
    let (upper_start, upper_len) = upper_layout(&levels, m);
    let mut base: Vec<AtomicU32> = Vec::with_capacity(n * (m0 + 1));
    for node in 0..graph_n as u32 {
        let links = graph.base.neighbours(node);
        let links = &links[..links.len().min(m0)];
        base.push(AtomicU32::new(links.len() as u32));
        base.extend(links.iter().map(|&l| AtomicU32::new(l)));
        base.extend((links.len()..m0).map(|_| AtomicU32::new(0)));
    }
    base.resize_with(n * (m0 + 1), || AtomicU32::new(0));
    let upper: Vec<AtomicU32> = (0..upper_len).map(|_| AtomicU32::new(0)).collect();
    let top = graph.upper.len().min(usize::from(TOP_LAYER)) as u8;
    let builder = GraphBuilder {
        metric: BuildMetric::with_transform(cat, params.metric, params.bias),
        m,
        m0,
        ef: params.ef_construction.max(m),
        base,
        upper,
        upper_start,
        locks: (0..n.clamp(1, 1 << 16)).map(|_| Mutex::new(())).collect(),
        entry: Mutex::new((graph.entry, top)),
        levels,
    };
    for (l, layer) in graph.upper.iter().enumerate().take(usize::from(top)) {
        for &node in layer
            .nodes
            .iter()
            .filter(|&&node| (node as usize) < graph_n)
        {
            let links = layer.neighbours(node);
            builder.write(node, l as u8 + 1, links.iter().copied().take(m));
        }
    }
    drop(graph);
    insert_range(&builder, graph_n, n, progress);
    builder.into_graph()
}

/// Builds the graph on all rayon threads, calling `progress(done, total)` between batches.
pub(crate) fn build_native(
    cat: &Catalogue,
    params: &BuildParams,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Graph {
    let n = cat.len();
    progress(0, n);
    if n == 0 {
        return Graph::empty();
    }
    let (m, m0) = (params.m, params.m * 2);
    let levels = draw_levels(n, m, params.level_scale, params.seed);
    let (upper_start, upper_len) = upper_layout(&levels, m);
    let builder = GraphBuilder {
        metric: BuildMetric::with_transform(cat, params.metric, params.bias),
        m,
        m0,
        ef: params.ef_construction.max(m),
        base: (0..n * (m0 + 1)).map(|_| AtomicU32::new(0)).collect(),
        upper: (0..upper_len).map(|_| AtomicU32::new(0)).collect(),
        upper_start,
        locks: (0..n.clamp(1, 1 << 16)).map(|_| Mutex::new(())).collect(),
        entry: Mutex::new((0, levels[0])),
        levels,
    };
    // item 0 is the first entry point; insert_range reports from item 1
    insert_range(&builder, 1, n, &|done, _| progress(done + 1, n));
    builder.into_graph()
}
