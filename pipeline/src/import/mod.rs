//! `recpipe import`: public data sets turned into validated `events.parquet`, `items.parquet`
//! and `users.parquet`.

pub mod csv;
pub mod kuairand;
pub mod movielens;
pub mod text;

use crate::data::events::{EventSorter, MAX_TIMESTAMP, MIN_TIMESTAMP};
use crate::data::{write_items, write_users, Event, Items, Users};
use crate::error::{Error, Result};
use crate::output::{commit_all, OutputDir};
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What an import produced.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    /// Where the data came from.
    pub source: String,
    /// Rows in `events.parquet`.
    pub events: usize,
    /// Watched events among them.
    pub watched: usize,
    /// Distinct users in the events.
    pub users: usize,
    /// Distinct items in the events.
    pub items: usize,
    /// Rows in `items.parquet` (the catalogue, which may hold items nobody watched).
    pub catalogue: usize,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} events ({} watched, {:.1}%), {} users, {} items ({} in the catalogue)",
            self.source,
            self.events,
            self.watched,
            100.0 * self.watched as f64 / self.events.max(1) as f64,
            self.users,
            self.items,
            self.catalogue
        )
    }
}

/// Events on their way into `events.parquet`: timestamps checked, ids and watches counted,
/// and rows sorted by (user, timestamp, item) within the import's memory budget
/// ([`EventSorter`]: a log larger than the budget spills sorted runs beside the output and is
/// merged from them).
pub struct EventSink {
    source: String,
    budget_bytes: usize,
    dest: PathBuf,
    sorter: Option<EventSorter>,
    users: HashSet<i64>,
    items: HashSet<i64>,
    watched: usize,
}

impl EventSink {
    /// A sink writing `dest` with about `budget_bytes` of events held in memory.
    pub fn new(dest: &Path, budget_bytes: usize) -> Self {
        EventSink {
            source: "import".into(),
            budget_bytes,
            dest: dest.to_path_buf(),
            sorter: None,
            users: HashSet::new(),
            items: HashSet::new(),
            watched: 0,
        }
    }

    /// Names the source and the extra `Int64` columns every event will carry; called once,
    /// before the first [`EventSink::push`].
    pub fn start(&mut self, source: &str, extra: &[String]) {
        self.source = source.to_string();
        self.sorter = Some(EventSorter::new(extra, self.budget_bytes, &self.dest));
    }

    /// Takes one event (its extra values in [`EventSink::start`]'s order); a timestamp outside
    /// 1990..2100 is an error naming the event's number.
    pub fn push(&mut self, e: Event, extra: &[i64]) -> Result<()> {
        let sorter = match &mut self.sorter {
            Some(s) => s,
            None => self
                .sorter
                .insert(EventSorter::new(&[], self.budget_bytes, &self.dest)),
        };
        if !(MIN_TIMESTAMP..MAX_TIMESTAMP).contains(&e.timestamp) {
            return Err(Error::Input(format!(
                "{}: event {} has timestamp {} outside 1990..2100",
                self.source,
                sorter.rows + 1,
                e.timestamp
            )));
        }
        self.users.insert(e.user_id);
        self.items.insert(e.item_id);
        self.watched += usize::from(e.watched);
        sorter.push(e, extra)
    }

    /// Runs the sort spilled (0: the events fit the budget and were sorted in memory).
    pub fn spilled_runs(&self) -> usize {
        self.sorter.as_ref().map_or(0, EventSorter::runs)
    }
}

/// Completes the item and user tables with every id the events use (ids missing from a table
/// are appended in ascending order), then writes `events.parquet` (sorted), `items.parquet`
/// and `users.parquet` into `out`: all three appear together or none does.
pub fn finish_import(
    sink: EventSink,
    mut items: Items,
    mut users: Users,
    out: &OutputDir,
) -> Result<ImportSummary> {
    let Some(sorter) = sink.sorter.filter(|s| s.rows > 0) else {
        return Err(Error::Input(format!("{}: no events found", sink.source)));
    };
    let known: HashSet<i64> = items.item_id.iter().copied().collect();
    let mut missing: Vec<i64> = sink.items.difference(&known).copied().collect();
    missing.sort_unstable();
    for id in missing {
        items.push(id, None, None, Vec::new(), None);
    }
    let known_users: HashSet<i64> = users.user_id.iter().copied().collect();
    let mut missing: Vec<i64> = sink.users.difference(&known_users).copied().collect();
    missing.sort_unstable();
    for u in missing {
        users.user_id.push(u);
        for (_, col) in users.categorical.iter_mut() {
            col.push(None);
        }
        for (_, col) in users.numeric.iter_mut() {
            col.push(None);
        }
    }
    let summary = ImportSummary {
        source: sink.source.clone(),
        events: sorter.rows,
        watched: sink.watched,
        users: sink.users.len(),
        items: sink.items.len(),
        catalogue: items.len(),
    };
    let files = vec![
        sorter.finish(&out.join("events.parquet"))?,
        write_items(&out.join("items.parquet"), &items)?,
        write_users(&out.join("users.parquet"), &users)?,
    ];
    commit_all(files)?;
    Ok(summary)
}
