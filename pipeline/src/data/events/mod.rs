//! `events.parquet`: one row per impression or watch (DESIGN.md), its writer and its validating
//! reader.

use crate::error::{Error, Result};
use crate::ids::{IdSpelling, IdSpellings};
use crate::output::AtomicFile;
use crate::parquet_io::{ColumnSpec, ParquetIn, ParquetOut};
use arrow_array::builder::{BooleanBuilder, Float32Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::path::Path;
use std::sync::Arc;

/// Earliest accepted timestamp: 1990-01-01T00:00:00Z.
pub const MIN_TIMESTAMP: i64 = 631_152_000;
/// Latest accepted timestamp: 2100-01-01T00:00:00Z.
pub const MAX_TIMESTAMP: i64 = 4_102_444_800;

/// One event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// Who.
    pub user_id: i64,
    /// What.
    pub item_id: i64,
    /// When (Unix seconds).
    pub timestamp: i64,
    /// `false` when the item was shown but not watched.
    pub watched: bool,
    /// Seconds watched, when known.
    pub watch_time: Option<f32>,
    /// Explicit rating, when known.
    pub rating: Option<f32>,
}

/// Events held in memory column by column, plus any extra `Int64` columns asked for.
#[derive(Debug, Clone, Default)]
pub struct Events {
    /// `user_id` column.
    pub user_id: Vec<i64>,
    /// `item_id` column.
    pub item_id: Vec<i64>,
    /// `timestamp` column (Unix seconds).
    pub timestamp: Vec<i64>,
    /// `watched` column.
    pub watched: Vec<bool>,
    /// `watch_time` column (seconds; `None` = null).
    pub watch_time: Vec<Option<f32>>,
    /// `rating` column (`None` = null).
    pub rating: Vec<Option<f32>>,
    /// Extra `Int64` columns that were asked for and present, by name.
    pub extra: Vec<(String, Vec<i64>)>,
    /// How the file spelt its user and item ids (string ids are held as surrogates).
    pub ids: IdSpellings,
}

impl Events {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.user_id.len()
    }

    /// Whether there are no events.
    pub fn is_empty(&self) -> bool {
        self.user_id.is_empty()
    }

    /// Event number `i`.
    pub fn get(&self, i: usize) -> Event {
        Event {
            user_id: self.user_id[i],
            item_id: self.item_id[i],
            timestamp: self.timestamp[i],
            watched: self.watched[i],
            watch_time: self.watch_time[i],
            rating: self.rating[i],
        }
    }

    /// Appends one event.
    pub fn push(&mut self, e: Event) {
        self.user_id.push(e.user_id);
        self.item_id.push(e.item_id);
        self.timestamp.push(e.timestamp);
        self.watched.push(e.watched);
        self.watch_time.push(e.watch_time);
        self.rating.push(e.rating);
    }

    /// Removes every row, keeping the columns (and their capacity).
    pub fn clear_rows(&mut self) {
        self.user_id.clear();
        self.item_id.clear();
        self.timestamp.clear();
        self.watched.clear();
        self.watch_time.clear();
        self.rating.clear();
        for (_, col) in &mut self.extra {
            col.clear();
        }
    }

    /// The extra column `name`, when it was read.
    pub fn extra(&self, name: &str) -> Option<&[i64]> {
        self.extra
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// The Arrow schema of `events.parquet`, with extra `Int64` columns appended.
pub fn events_schema(extra: &[&str]) -> SchemaRef {
    events_schema_with_ids(IdType::Int64, IdType::Int64, extra)
}

/// How an id column of `events.parquet` is stored: the canonical `Int64`, or `Utf8` for ids that
/// are arbitrary strings (e.g. imported from a CSV log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdType {
    /// `Int64` ids.
    Int64,
    /// `Utf8` ids, kept as the source spelled them.
    Utf8,
}

impl IdType {
    fn data_type(self) -> DataType {
        match self {
            IdType::Int64 => DataType::Int64,
            IdType::Utf8 => DataType::Utf8,
        }
    }
}

/// One id value for [`EventsWriter::push_row`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id<'a> {
    /// An integer id (written as its decimal text into a `Utf8` column).
    Int(i64),
    /// A string id (only a `Utf8` column takes it).
    Text(&'a str),
}

/// The Arrow schema of `events.parquet` with the given id column types and extra `Int64`
/// columns appended.
pub fn events_schema_with_ids(user: IdType, item: IdType, extra: &[&str]) -> SchemaRef {
    let mut fields = vec![
        Field::new("user_id", user.data_type(), false),
        Field::new("item_id", item.data_type(), false),
        Field::new("timestamp", DataType::Int64, false),
        Field::new("watched", DataType::Boolean, false),
        Field::new("watch_time", DataType::Float32, true),
        Field::new("rating", DataType::Float32, true),
    ];
    fields.extend(extra.iter().map(|n| Field::new(*n, DataType::Int64, true)));
    Arc::new(Schema::new(fields))
}

/// Streams events into `events.parquet` in row groups; memory stays bounded.
pub struct EventsWriter {
    out: ParquetOut,
    schema: SchemaRef,
    user: IdBuilder,
    item: IdBuilder,
    ts: Int64Builder,
    watched: BooleanBuilder,
    watch_time: Float32Builder,
    rating: Float32Builder,
    extra: Vec<Int64Builder>,
    pending: usize,
    /// Rows written so far.
    pub rows: usize,
}

const FLUSH_ROWS: usize = 64 * 1024;

/// The builder of an id column.
enum IdBuilder {
    Int64(Int64Builder),
    Utf8(StringBuilder),
}

impl IdBuilder {
    fn new(t: IdType) -> Self {
        match t {
            IdType::Int64 => IdBuilder::Int64(Int64Builder::new()),
            IdType::Utf8 => IdBuilder::Utf8(StringBuilder::new()),
        }
    }

    fn append(&mut self, id: Id<'_>) -> Result<()> {
        match (self, id) {
            (IdBuilder::Int64(b), Id::Int(v)) => b.append_value(v),
            (IdBuilder::Utf8(b), Id::Text(s)) => b.append_value(s),
            (IdBuilder::Utf8(b), Id::Int(v)) => b.append_value(v.to_string()),
            (IdBuilder::Int64(_), Id::Text(s)) => {
                return Err(Error::Other(format!(
                    "events writer: string id '{s}' for an Int64 id column"
                )))
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            IdBuilder::Int64(b) => Arc::new(b.finish()),
            IdBuilder::Utf8(b) => Arc::new(b.finish()),
        }
    }
}

impl EventsWriter {
    /// Starts writing `dest` with the given extra `Int64` columns.
    pub fn create(dest: &Path, extra: &[&str]) -> Result<Self> {
        Self::create_with_ids(dest, IdType::Int64, IdType::Int64, extra)
    }

    /// Starts writing `dest` with the given id column types and extra `Int64` columns.
    pub fn create_with_ids(
        dest: &Path,
        user: IdType,
        item: IdType,
        extra: &[&str],
    ) -> Result<Self> {
        let schema = events_schema_with_ids(user, item, extra);
        Ok(EventsWriter {
            out: ParquetOut::create(dest, schema.clone())?,
            schema,
            user: IdBuilder::new(user),
            item: IdBuilder::new(item),
            ts: Int64Builder::new(),
            watched: BooleanBuilder::new(),
            watch_time: Float32Builder::new(),
            rating: Float32Builder::new(),
            extra: extra.iter().map(|_| Int64Builder::new()).collect(),
            pending: 0,
            rows: 0,
        })
    }

    /// Appends one event with its extra values (one per extra column, in order).
    pub fn push(&mut self, e: &Event, extra: &[i64]) -> Result<()> {
        self.user.append(Id::Int(e.user_id))?;
        self.item.append(Id::Int(e.item_id))?;
        for (b, v) in self.extra.iter_mut().zip(extra) {
            b.append_value(*v);
        }
        self.push_rest(e.timestamp, e.watched, e.watch_time, e.rating)
    }

    /// Appends one event given its ids as [`Id`]s (a string id needs a `Utf8` id column); extra
    /// columns, if any, get nulls.
    pub fn push_row(
        &mut self,
        user: Id<'_>,
        item: Id<'_>,
        timestamp: i64,
        watched: bool,
        watch_time: Option<f32>,
        rating: Option<f32>,
    ) -> Result<()> {
        self.user.append(user)?;
        self.item.append(item)?;
        for b in &mut self.extra {
            b.append_null();
        }
        self.push_rest(timestamp, watched, watch_time, rating)
    }

    fn push_rest(
        &mut self,
        timestamp: i64,
        watched: bool,
        watch_time: Option<f32>,
        rating: Option<f32>,
    ) -> Result<()> {
        self.ts.append_value(timestamp);
        self.watched.append_value(watched);
        self.watch_time.append_option(watch_time);
        self.rating.append_option(rating);
        self.pending += 1;
        self.rows += 1;
        if self.pending >= FLUSH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let mut cols: Vec<ArrayRef> = vec![
            self.user.finish(),
            self.item.finish(),
            Arc::new(self.ts.finish()),
            Arc::new(self.watched.finish()),
            Arc::new(self.watch_time.finish()),
            Arc::new(self.rating.finish()),
        ];
        cols.extend(
            self.extra
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        let batch = RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|e| Error::Other(format!("events batch: {e}")))?;
        self.pending = 0;
        self.out.write(&batch)
    }

    /// Completes the file; it is renamed into place by committing the returned file.
    pub fn finish(mut self) -> Result<AtomicFile> {
        self.flush()?;
        self.out.finish()
    }
}

/// Writes `events` (in their order) to `dest` under a temporary name, renamed into place when
/// the returned file is committed.
pub fn write_events_file(dest: &Path, events: &Events) -> Result<AtomicFile> {
    write_events_rows(dest, events, 0..events.len())
}

/// Writes the rows `rows` of `events`, in that order, to `dest` under a temporary name,
/// renamed into place when the returned file is committed.
pub fn write_events_rows(
    dest: &Path,
    events: &Events,
    rows: impl IntoIterator<Item = usize>,
) -> Result<AtomicFile> {
    let names: Vec<&str> = events.extra.iter().map(|(n, _)| n.as_str()).collect();
    let mut w = EventsWriter::create(dest, &names)?;
    let mut extra = vec![0i64; names.len()];
    for i in rows {
        for (slot, (_, col)) in extra.iter_mut().zip(&events.extra) {
            *slot = col[i];
        }
        w.push(&events.get(i), &extra)?;
    }
    w.finish()
}

const USER: usize = 0;
const ITEM: usize = 1;
const TS: usize = 2;
const WATCHED: usize = 3;
const WATCH_TIME: usize = 4;
const RATING: usize = 5;

fn specs() -> Vec<ColumnSpec> {
    vec![
        ColumnSpec::required("user_id", DataType::Int64).id(),
        ColumnSpec::required("item_id", DataType::Int64).id(),
        ColumnSpec::required("timestamp", DataType::Int64).unix_seconds(),
        ColumnSpec::required("watched", DataType::Boolean),
        ColumnSpec::required("watch_time", DataType::Float32),
        ColumnSpec::required("rating", DataType::Float32),
    ]
}

/// Reads and validates `events.parquet`, keeping the extra `Int64` columns named in `extra` that
/// the file has. Every rule of DESIGN.md is checked; the first violation is an
/// [`Error::Input`] naming the file, column and (1-based) row.
pub fn read_events(path: &Path, extra: &[&str]) -> Result<Events> {
    let mut all_specs = specs();
    all_specs.extend(
        extra
            .iter()
            .map(|n| ColumnSpec::optional(n, DataType::Int64)),
    );
    let mut input = ParquetIn::open(path, &all_specs)?;
    let present: Vec<usize> = (0..extra.len())
        .filter(|&k| input.has(RATING + 1 + k))
        .collect();
    let mut ev = Events {
        extra: present
            .iter()
            .map(|&k| (extra[k].to_string(), Vec::new()))
            .collect(),
        ..Default::default()
    };
    let reserve = input.num_rows;
    ev.user_id.reserve(reserve);
    ev.item_id.reserve(reserve);
    ev.timestamp.reserve(reserve);
    ev.watched.reserve(reserve);
    ev.watch_time.reserve(reserve);
    ev.rating.reserve(reserve);
    while let Some((first, batch)) = input.next_batch()? {
        let at = input.path().to_path_buf();
        let col = |i: usize| input.column(&batch, i).expect("required column projected");
        let user = col(USER).as_primitive::<Int64Type>();
        let item = col(ITEM).as_primitive::<Int64Type>();
        let ts = col(TS).as_primitive::<Int64Type>();
        let watched = col(WATCHED).as_boolean();
        let wt = col(WATCH_TIME).as_primitive::<Float32Type>();
        let rating = col(RATING).as_primitive::<Float32Type>();
        let bad = |name: &str, r: usize, what: String| {
            Err(Error::input(
                &at,
                format!("column '{name}', row {}: {what}", first + r),
            ))
        };
        for (name, a) in [("user_id", user), ("item_id", item), ("timestamp", ts)] {
            if a.null_count() > 0 {
                let r = (0..a.len()).find(|&r| a.is_null(r)).unwrap_or(0);
                return bad(name, r, "null value in a required column".into());
            }
        }
        if watched.null_count() > 0 {
            let r = (0..watched.len())
                .find(|&r| watched.is_null(r))
                .unwrap_or(0);
            return bad("watched", r, "null value in a required column".into());
        }
        for r in 0..batch.num_rows() {
            let t = ts.value(r);
            if !(MIN_TIMESTAMP..MAX_TIMESTAMP).contains(&t) {
                return bad(
                    "timestamp",
                    r,
                    format!("{t} is outside 1990..2100 (expected Unix seconds)"),
                );
            }
            let w = watched.value(r);
            let time = if wt.is_null(r) {
                None
            } else {
                Some(wt.value(r))
            };
            if let Some(x) = time {
                if !x.is_finite() || x < 0.0 {
                    return bad(
                        "watch_time",
                        r,
                        format!("{x} is not a finite non-negative number of seconds"),
                    );
                }
                if !w {
                    return bad(
                        "watch_time",
                        r,
                        format!("watch time {x} on an unwatched impression (watched = false)"),
                    );
                }
            }
            let rt = if rating.is_null(r) {
                None
            } else {
                Some(rating.value(r))
            };
            if let Some(x) = rt {
                if !x.is_finite() {
                    return bad("rating", r, format!("{x} is not a finite number"));
                }
            }
            ev.watch_time.push(time);
            ev.rating.push(rt);
        }
        ev.user_id.extend_from_slice(user.values());
        ev.item_id.extend_from_slice(item.values());
        ev.timestamp.extend_from_slice(ts.values());
        ev.watched
            .extend(watched.iter().map(|x| x.unwrap_or(false)));
        for (&k, (name, dest)) in present.iter().zip(ev.extra.iter_mut()) {
            let a = col(RATING + 1 + k).as_primitive::<Int64Type>();
            if a.null_count() > 0 {
                let r = (0..a.len()).find(|&r| a.is_null(r)).unwrap_or(0);
                return bad(name, r, "null value in an extra Int64 column".into());
            }
            if crate::dataset::LABEL_COLUMNS.contains(&name.as_str()) {
                if let Some(r) = a.values().iter().position(|&v| v != 0 && v != 1) {
                    let v = a.value(r);
                    return bad(name, r, format!("{v} is not 0 or 1 (a label column)"));
                }
            }
            dest.extend_from_slice(a.values());
        }
    }
    if ev.is_empty() {
        return Err(Error::input(path, "the file holds no events (0 rows)"));
    }
    ev.ids = IdSpellings {
        users: IdSpelling::from_keys(input.keys(USER).cloned()),
        items: IdSpelling::from_keys(input.keys(ITEM).cloned()),
    };
    Ok(ev)
}

pub mod sort;

pub use sort::{EventSorter, DEFAULT_SORT_MEMORY_MB};

#[cfg(test)]
mod tests;
