//! Inserting new items into a built index (`recpipe add-items`), without rebuilding it.
//!
//! An HNSW index links each new item exactly as its builder links a late item (see
//! `native::extend_native`): the level continues the index's seeded draw, the item descends
//! greedily from the entry point, takes its links on each of its layers from an
//! `ef_construction` beam by the builder's heuristic, and is linked back, pruning lists to
//! their capacity. The graph metric keeps the bias transform fitted at build time
//! ([`HnswIndex::bias_transform`]), so old and new items share one geometry. Large batches are
//! inserted in parallel like the builder's; the cost is the links of the new items plus one
//! copy of the link arrays (linear in the catalogue, a small fraction of a build).
//!
//! The int8 walk codes stay those of the whole catalogue: new rows are coded with the present
//! scales when they fall within the coded range, and everything is re-quantized otherwise.

use crate::error::Result;
use crate::exact::ExactIndex;
use crate::hnsw::{build_graph, build_params, HnswIndex};
use crate::metric::BiasTransform;
use crate::native::extend_native;
use crate::vectors::ItemVectors;
use crate::Index;

impl HnswIndex {
    /// Adds `items` to the index, linking each into the graph as the builder links a late
    /// item (in parallel for large batches; whichever builder made the graph, new items are
    /// linked by this crate's native code). Their ids must be new: an id already indexed, or
    /// repeated among `items`, a dimension mismatch or an invalid value is an
    /// [`crate::IndexError::InvalidInput`] and leaves the index unchanged.
    /// `progress(done, items.len())` is called between batches.
    pub fn insert(
        &mut self,
        items: ItemVectors,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<()> {
        let old_n = self.cat.len();
        self.cat.append(items)?;
        let n = self.cat.len();
        if n == old_n {
            progress(0, 0);
            return Ok(());
        }
        if old_n == 0 {
            // nothing to stay consistent with: build as `HnswIndex::build` would
            self.graph_bias = BiasTransform::fit(&self.cat, self.config.bias_scale);
            self.graph = build_graph(&self.cat, &self.config, self.graph_bias, progress);
        } else {
            let params = build_params(&self.config, self.graph_bias);
            let graph = std::mem::take(&mut self.graph);
            self.graph = extend_native(graph, old_n, &self.cat, &params, progress);
        }
        if let Some(quant) = &mut self.quant {
            quant.extend(&self.cat, old_n);
        }
        Ok(())
    }
}

impl ExactIndex {
    /// Appends `items` (ids must be new; see [`HnswIndex::insert`] for the checks). On error
    /// the index is unchanged.
    pub fn insert(&mut self, items: ItemVectors) -> Result<()> {
        self.cat.append(items)
    }
}

impl Index {
    /// Adds `items` to either kind of index (see [`HnswIndex::insert`] and
    /// [`ExactIndex::insert`]); an exact index stays exact whatever its new size.
    /// `progress(done, items.len())` is called as items get linked.
    pub fn insert(
        &mut self,
        items: ItemVectors,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<()> {
        match self {
            Index::Hnsw(i) => i.insert(items, progress),
            Index::Exact(i) => {
                let m = items.len();
                i.insert(items)?;
                progress(m, m);
                Ok(())
            }
        }
    }

    /// A copy of the indexed vectors (the inserted ones included), in index order.
    pub fn items(&self) -> ItemVectors {
        match self {
            Index::Hnsw(i) => i.items(),
            Index::Exact(i) => i.items(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{generate_items, DataConfig};
    use crate::hnsw::HnswConfig;
    use crate::metric::GraphMetric;
    use crate::native::build_native;
    use crate::quant::Quantized;
    use crate::vectors::Catalogue;

    fn items(n: usize) -> ItemVectors {
        let cfg = DataConfig {
            dim: 24,
            clusters: 8,
            seed: 5,
            ..DataConfig::default()
        };
        generate_items(n, &cfg)
    }

    fn head(all: &ItemVectors, n: usize) -> ItemVectors {
        ItemVectors {
            ids: all.ids[..n].to_vec(),
            dim: all.dim,
            data: all.data[..n * all.dim].to_vec(),
            bias: all.bias[..n].to_vec(),
        }
    }

    fn tail(all: &ItemVectors, n: usize) -> ItemVectors {
        ItemVectors {
            ids: all.ids[n..].to_vec(),
            dim: all.dim,
            data: all.data[n * all.dim..].to_vec(),
            bias: all.bias[n..].to_vec(),
        }
    }

    /// Below the builder's serial phase, inserting late items gives exactly the graph a build
    /// over all items makes (same levels, same order, same metric), for every metric.
    #[test]
    fn serial_insertion_reproduces_the_builders_graph() {
        let all = items(900);
        for metric in [
            GraphMetric::Mobius,
            GraphMetric::InnerProduct,
            GraphMetric::Angular,
            GraphMetric::MipsL2,
        ] {
            let config = HnswConfig {
                metric,
                m: 6,
                ef_construction: 40,
                ..HnswConfig::default()
            };
            let full = Catalogue::from_items(all.clone()).unwrap();
            let bias = BiasTransform::fit(&Catalogue::from_items(head(&all, 500)).unwrap(), None);
            let params = build_params(&config, bias);
            let reference = build_native(&full, &params, &|_, _| {});
            assert!(reference.layers() >= 3, "too few layers to test descent");
            let mut cat = Catalogue::from_items(head(&all, 500)).unwrap();
            let graph = build_native(&cat, &params, &|_, _| {});
            cat.append(tail(&all, 500)).unwrap();
            let extended = extend_native(graph, 500, &cat, &params, &|_, _| {});
            assert_eq!(extended.entry, reference.entry, "{metric:?}: entry");
            assert_eq!(
                extended.upper.len(),
                reference.upper.len(),
                "{metric:?}: layers"
            );
            for (l, (a, b)) in extended.upper.iter().zip(&reference.upper).enumerate() {
                assert_eq!(a.nodes, b.nodes, "{metric:?}: layer {} members", l + 1);
                assert_eq!(a, b, "{metric:?}: layer {} links", l + 1);
            }
            let diff = (0..900u32)
                .filter(|&i| extended.base.neighbours(i) != reference.base.neighbours(i))
                .collect::<Vec<_>>();
            assert!(diff.is_empty(), "{metric:?}: base lists differ at {diff:?}");
            // (slots past a list's count may differ: the builder leaves stale ids there)
            assert_eq!(extended.base.stride, reference.base.stride);
            extended.check(900).unwrap();
        }
    }

    /// Parallel insertion gives every new item out-links, and all but a few in-links (HNSW's
    /// pruning may drop an item from every neighbour's list, as a build may; which items it
    /// drops depends on the threads' timing).
    #[test]
    fn parallel_insertion_links_every_new_item() {
        let all = items(6_000);
        let mut index =
            HnswIndex::build(head(&all, 2_000), &HnswConfig::default(), &|_, _| {}).unwrap();
        index.insert(tail(&all, 2_000), &|_, _| {}).unwrap();
        index.graph.check(6_000).unwrap();
        let mut in_degree = vec![0u32; 6_000];
        for node in 0..6_000u32 {
            for &nb in index.graph.base.neighbours(node) {
                in_degree[nb as usize] += 1;
            }
        }
        for node in 2_000..6_000u32 {
            assert!(!index.graph.base.neighbours(node).is_empty(), "{node}");
        }
        let unreachable: Vec<u32> = (2_000..6_000u32)
            .filter(|&node| in_degree[node as usize] == 0)
            .collect();
        assert!(unreachable.len() <= 20, "unreachable: {unreachable:?}");
    }

    /// The walk codes after insertion equal the codes of the whole catalogue, whether the new
    /// rows fit the coded range or widen it.
    #[test]
    fn codes_after_insertion_equal_fresh_codes() {
        let all = items(400);
        for widen in [false, true] {
            let mut cat = Catalogue::from_items(head(&all, 300)).unwrap();
            let mut quant = Quantized::new(&cat);
            // copies of old rows (within the coded range), or one value beyond it
            let mut new = head(&all, 100);
            new.ids.iter_mut().for_each(|id| *id += 10_000);
            if widen {
                new.data[5] = 40.0;
            }
            cat.append(new).unwrap();
            assert_eq!(quant.extend(&cat, 300), widen);
            let fresh = Quantized::new(&cat);
            let query: Vec<f32> = (0..all.dim).map(|k| (k as f32 * 0.7).cos()).collect();
            let (p, q) = (quant.prepare(&query), fresh.prepare(&query));
            for i in 0..400u32 {
                assert_eq!(quant.dot(&p, i).to_bits(), fresh.dot(&q, i).to_bits());
            }
        }
    }
}
