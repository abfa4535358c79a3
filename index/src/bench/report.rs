//! Plain-text table of a [`BenchReport`].
//!
//! "x 1thr" compares one query at a time on one thread (how an online query runs) with exact
//! search run the same way; "x all" compares a batch on all threads with exact search's batch
//! (its matrix-product kernel, its best case).

use std::fmt;

use super::BenchReport;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.config.hnsw;
        writeln!(
            f,
            "items {} x dim {}, {} queries, k {}, {} threads; m {}, ef_construction {}, metric {:?}",
            self.items, self.dim, self.queries, self.config.k, self.threads, h.m, h.ef_construction, h.metric
        )?;
        writeln!(
            f,
            "build {:.1} s ({:.0} inserts/s, {} CPU s), {} layers",
            self.build_seconds,
            self.inserts_per_second,
            self.build_cpu_seconds
                .map(|c| format!("{c:.1}"))
                .unwrap_or_else(|| "?".into()),
            self.layers
        )?;
        writeln!(
            f,
            "memory: vectors {:.1} MiB, index {:.1} MiB ({:.0} B/item beyond vectors)",
            mib(self.vector_bytes),
            mib(self.index_bytes),
            self.index_bytes_per_item_beyond_vectors
        )?;
        if let (Some(peak), Some(before), Some(per)) = (
            self.peak_rss_bytes,
            self.rss_before_build_bytes,
            self.build_peak_bytes_per_item,
        ) {
            writeln!(
                f,
                "process RSS before build {:.1} MiB, peak (VmHWM) {:.1} MiB: build needed {per:.0} B/item on top",
                mib(before),
                mib(peak)
            )?;
        }
        writeln!(
            f,
            "{:>6} {:>8} {:>8} {:>10} {:>10} {:>8} {:>8} {:>9} {:>10} {:>7} {:>7} {:>7}",
            "ef",
            "recall",
            "min",
            "q/s 1thr",
            "q/s all",
            "p50 ms",
            "p99 ms",
            "recall-ex",
            "q/s-ex all",
            "x 1thr",
            "x all",
            "scored"
        )?;
        let e = &self.exact;
        writeln!(
            f,
            "{:>6} {:>8.4} {:>8.4} {:>10.1} {:>10.1} {:>8.3} {:>8.3} {:>9} {:>10} {:>7} {:>7}",
            "exact",
            1.0,
            1.0,
            e.qps_one_thread,
            e.qps_all_threads,
            e.p50_ms,
            e.p99_ms,
            "",
            "",
            "1.0",
            "1.0"
        )?;
        for p in &self.sweep {
            let s = &p.speed;
            writeln!(
                f,
                "{:>6} {:>8.4} {:>8.4} {:>10.1} {:>10.1} {:>8.3} {:>8.3} {:>9} {:>10} {:>7.1} {:>7.1} {:>7.0}",
                p.ef,
                p.recall,
                p.recall_min,
                s.qps_one_thread,
                s.qps_all_threads,
                s.p50_ms,
                s.p99_ms,
                p.recall_excluded
                    .map(|r| format!("{r:.4}"))
                    .unwrap_or_default(),
                p.qps_excluded_all_threads
                    .map(|q| format!("{q:.1}"))
                    .unwrap_or_default(),
                s.qps_one_thread / e.qps_one_thread.max(1e-12),
                s.qps_all_threads / e.qps_all_threads.max(1e-12),
                p.scored_per_query
            )?;
        }
        Ok(())
    }
}
