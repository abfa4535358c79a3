//! Events sorted by (user, timestamp, item) within a memory budget: an external merge sort
//! (Knuth, TAOCP vol. 3, §5.4.1). Events are buffered column by column; when the buffer holds
//! the budget's worth of rows it is sorted and written as a run (a Parquet file in a spill
//! folder beside the output). At the end the runs are merged, a row group at a time from
//! each, into `events.parquet`. A log that fits the budget never spills: it is sorted in memory
//! and written, the in-memory path. Both paths sort stably (equal keys keep their input
//! order), so they write the same rows in the same order.

use super::{write_events_rows, Event, Events, EventsWriter};
use crate::error::{Error, Result};
use crate::output::AtomicFile;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

/// Rows read at a time from each run while merging.
const MERGE_BATCH: usize = 8_192;

/// Runs merged at once: when a spill makes this many, they are merged into one longer run,
/// so the final merge never holds more open files than this.
const FAN_IN: usize = 128;

/// The default memory budget of an import's sort, in MiB.
pub const DEFAULT_SORT_MEMORY_MB: usize = 2_048;

/// Sorts events pushed in any order; see the module doc.
pub struct EventSorter {
    buffer: Events,
    /// Rows a run holds: what the budget affords.
    run_rows: usize,
    /// Where runs are spilled (created at the first spill, removed when the sorter goes).
    spill_dir: PathBuf,
    runs: Vec<PathBuf>,
    /// Rows pushed so far.
    pub rows: usize,
}

impl EventSorter {
    /// A sorter for events with the extra `Int64` columns `extra`, for an import whose memory
    /// budget is `budget_bytes`: the buffer of events gets the budget less 768 MiB for the
    /// rest of the import (half the budget below 1.5 GiB). Runs spill into a hidden folder
    /// beside `dest` (the output's file system, so its free space is what the spill needs).
    pub fn new(extra: &[String], budget_bytes: usize, dest: &Path) -> Self {
        // The rest of the import (the Parquet writers' open row groups, the run readers of
        // the merge, the distinct ids, the item and user tables) takes several hundred MiB:
        // 663 MiB beside a 1,536 MiB buffer on a 100M-row log with 1M items. The buffer gets
        // what is left.
        const RESERVE: usize = 768 << 20;
        let buffer_bytes = if budget_bytes > 2 * RESERVE {
            budget_bytes - RESERVE
        } else {
            budget_bytes / 2
        };
        // The columns, plus the sort's u32 order per row.
        let row_bytes = 8 * 3 + 1 + 8 + 8 + 8 * extra.len() + 4;
        let run_rows = (buffer_bytes / row_bytes).clamp(1, u32::MAX as usize);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let spill_dir = dest.with_file_name(format!(
            ".{name}.sort-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        EventSorter {
            buffer: Events {
                extra: extra.iter().map(|n| (n.clone(), Vec::new())).collect(),
                ..Default::default()
            },
            run_rows,
            spill_dir,
            runs: Vec::new(),
            rows: 0,
        }
    }

    /// Runs spilled so far (0: everything is still in memory).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Appends one event with its extra values (one per extra column, in order).
    pub fn push(&mut self, e: Event, extra: &[i64]) -> Result<()> {
        self.buffer.push(e);
        for ((_, col), &v) in self.buffer.extra.iter_mut().zip(extra) {
            col.push(v);
        }
        self.rows += 1;
        if self.buffer.len() >= self.run_rows {
            self.spill()?;
        }
        Ok(())
    }

    /// The stable order of the buffered rows by (user, timestamp, item).
    fn order(&self) -> Vec<u32> {
        let ev = &self.buffer;
        let mut order: Vec<u32> = (0..ev.len() as u32).collect();
        order.par_sort_by_key(|&i| {
            let i = i as usize;
            (ev.user_id[i], ev.timestamp[i], ev.item_id[i])
        });
        order
    }

    /// Writes the buffer, sorted, to `dest`.
    fn write_sorted(&self, dest: &Path) -> Result<AtomicFile> {
        let order = self.order();
        write_events_rows(dest, &self.buffer, order.into_iter().map(|i| i as usize))
    }

    fn spill(&mut self) -> Result<()> {
        if self.runs.is_empty() {
            std::fs::create_dir_all(&self.spill_dir).map_err(|e| Error::io(&self.spill_dir, e))?;
        }
        let run = self
            .spill_dir
            .join(format!("run-{:05}.parquet", self.runs.len()));
        self.write_sorted(&run)?.commit()?;
        self.runs.push(run);
        if self.runs.len() >= FAN_IN {
            let merged = self
                .spill_dir
                .join(format!("merged-{:05}.parquet", self.rows));
            self.merge_runs(&merged)?.commit()?;
            for run in std::mem::take(&mut self.runs) {
                std::fs::remove_file(&run).map_err(|e| Error::io(&run, e))?;
            }
            self.runs.push(merged);
        }
        self.buffer.clear_rows();
        Ok(())
    }

    /// Writes every event pushed, sorted, to `dest` (under a temporary name, renamed into
    /// place when the returned file is committed); the spill folder is removed.
    pub fn finish(mut self, dest: &Path) -> Result<AtomicFile> {
        if self.runs.is_empty() {
            return self.write_sorted(dest);
        }
        if !self.buffer.is_empty() {
            self.spill()?;
        }
        self.buffer = Events {
            extra: std::mem::take(&mut self.buffer.extra),
            ..Default::default()
        };
        self.merge_runs(dest)
    }

    /// Merges the runs, in order, into `dest`.
    fn merge_runs(&self, dest: &Path) -> Result<AtomicFile> {
        let names: Vec<&str> = self.buffer.extra.iter().map(|(n, _)| n.as_str()).collect();
        let mut readers = self
            .runs
            .iter()
            .map(|p| RunReader::open(p, names.len()))
            .collect::<Result<Vec<_>>>()?;
        // Smallest key first; equal keys in run order, which is input order.
        let mut heap = BinaryHeap::new();
        for (r, reader) in readers.iter_mut().enumerate() {
            if let Some(key) = reader.key()? {
                heap.push(Reverse((key, r)));
            }
        }
        let mut w = EventsWriter::create(dest, &names)?;
        while let Some(Reverse((_, r))) = heap.pop() {
            let reader = &mut readers[r];
            let (event, extra) = reader.row();
            w.push(&event, extra)?;
            reader.advance();
            if let Some(key) = reader.key()? {
                heap.push(Reverse((key, r)));
            }
        }
        w.finish()
    }
}

impl Drop for EventSorter {
    fn drop(&mut self) {
        if self.spill_dir.exists() {
            let _ = std::fs::remove_dir_all(&self.spill_dir);
        }
    }
}

/// One run being merged: its current batch, decoded, and the position in it.
struct RunReader {
    path: PathBuf,
    batches: ParquetRecordBatchReader,
    rows: Events,
    extra: Vec<Vec<i64>>,
    extra_row: Vec<i64>,
    at: usize,
}

impl RunReader {
    fn open(path: &Path, n_extra: usize) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let batches = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(MERGE_BATCH).build())
            .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
        Ok(RunReader {
            path: path.to_path_buf(),
            batches,
            rows: Events::default(),
            extra: vec![Vec::new(); n_extra],
            extra_row: vec![0; n_extra],
            at: 0,
        })
    }

    /// The key of the current row, reading the next batch when this one is spent; `None` at
    /// the end of the run.
    fn key(&mut self) -> Result<Option<(i64, i64, i64)>> {
        while self.at >= self.rows.len() {
            match self.batches.next() {
                None => return Ok(None),
                Some(batch) => {
                    let batch =
                        batch.map_err(|e| Error::Other(format!("{}: {e}", self.path.display())))?;
                    self.decode(&batch);
                }
            }
        }
        let i = self.at;
        Ok(Some((
            self.rows.user_id[i],
            self.rows.timestamp[i],
            self.rows.item_id[i],
        )))
    }

    /// The current row (after [`RunReader::key`] returned one).
    fn row(&mut self) -> (Event, &[i64]) {
        for (slot, col) in self.extra_row.iter_mut().zip(&self.extra) {
            *slot = col[self.at];
        }
        (self.rows.get(self.at), &self.extra_row)
    }

    fn advance(&mut self) {
        self.at += 1;
    }

    /// Reads a batch of a run this sorter wrote (the events schema, in column order).
    fn decode(&mut self, batch: &RecordBatch) {
        let int = |c: usize| {
            batch
                .column(c)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        };
        let float = |c: usize| {
            let a = batch.column(c).as_primitive::<Float32Type>();
            (0..a.len())
                .map(|r| (!a.is_null(r)).then(|| a.value(r)))
                .collect()
        };
        let watched = batch.column(3).as_boolean();
        self.rows = Events {
            user_id: int(0),
            item_id: int(1),
            timestamp: int(2),
            watched: (0..watched.len()).map(|r| watched.value(r)).collect(),
            watch_time: float(4),
            rating: float(5),
            ..Default::default()
        };
        for (k, col) in self.extra.iter_mut().enumerate() {
            *col = int(6 + k);
        }
        self.at = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::read_events;

    /// 5,000 events over 40 users with many equal (user, timestamp, item) keys whose other
    /// columns differ, so only a stable sort gives one answer.
    fn pushed(sorter: &mut EventSorter) {
        let mut x = 12_345u64;
        let mut next = |n: u64| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 33) % n
        };
        for k in 0..5_000 {
            let watched = next(2) == 0;
            let e = Event {
                user_id: next(40) as i64,
                item_id: next(30) as i64,
                timestamp: 1_600_000_000 + next(20) as i64,
                watched,
                watch_time: (watched && next(3) > 0).then_some(k as f32),
                rating: (next(4) == 0).then_some(next(5) as f32),
            };
            sorter.push(e, &[k, -k]).expect("push");
        }
    }

    fn sorted_file(budget_bytes: usize, dir: &Path, name: &str) -> (PathBuf, usize) {
        let dest = dir.join(name);
        let mut sorter = EventSorter::new(&["a".into(), "b".into()], budget_bytes, &dest);
        pushed(&mut sorter);
        let runs = sorter.runs();
        sorter
            .finish(&dest)
            .expect("finish")
            .commit()
            .expect("commit");
        (dest, runs)
    }

    #[test]
    fn spilled_and_in_memory_sorts_write_the_same_rows() {
        let dir = std::env::temp_dir().join(format!("recpipe-sort-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (memory, runs) = sorted_file(1 << 30, &dir, "memory.parquet");
        assert_eq!(runs, 0, "a large budget never spills");
        // 61 bytes a row, half of 1,000 bytes for the buffer: 8 rows per run, 625 runs,
        // merged 128 at a time along the way.
        let (spilled, runs) = sorted_file(1_000, &dir, "spilled.parquet");
        assert!((1..FAN_IN).contains(&runs), "{runs} runs");
        let a = read_events(&memory, &["a", "b"]).expect("read");
        let b = read_events(&spilled, &["a", "b"]).expect("read");
        assert_eq!(a.len(), 5_000);
        assert_eq!(
            (0..a.len()).map(|i| a.get(i)).collect::<Vec<_>>(),
            (0..b.len()).map(|i| b.get(i)).collect::<Vec<_>>(),
            "row for row"
        );
        assert_eq!(a.extra, b.extra);
        // Sorted by key, and stable: equal keys keep the input order (extra column a).
        let key = |i: usize| (a.user_id[i], a.timestamp[i], a.item_id[i]);
        let seq = a.extra("a").expect("a");
        assert!((1..a.len())
            .all(|i| key(i - 1) < key(i) || (key(i - 1) == key(i) && seq[i - 1] < seq[i])));
        assert!(
            (0..a.len()).any(|i| i > 0 && key(i - 1) == key(i)),
            "ties exercised"
        );
        // Nothing left of the spill.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
