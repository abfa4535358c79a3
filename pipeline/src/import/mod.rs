//! `recpipe import`: public data sets turned into validated `events.parquet`, `items.parquet`
//! and `users.parquet`.

pub mod csv;
pub mod kuairand;
pub mod movielens;
pub mod text;

use crate::data::events::{write_events_file, MAX_TIMESTAMP, MIN_TIMESTAMP};
use crate::data::{write_items, write_users, Events, Items, Users};
use crate::error::{Error, Result};
use crate::output::{commit_all, OutputDir};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;

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

/// Orders events by (user, timestamp, item), checks timestamps, completes the item and user
/// tables with every id the events use, and counts.
pub(crate) fn finish(
    mut events: Events,
    mut items: Items,
    mut users: Users,
    source: &str,
) -> Result<(Events, Items, Users, ImportSummary)> {
    if events.is_empty() {
        return Err(Error::Input(format!("{source}: no events found")));
    }
    if let Some(i) = events
        .timestamp
        .iter()
        .position(|t| !(MIN_TIMESTAMP..MAX_TIMESTAMP).contains(t))
    {
        return Err(Error::Input(format!(
            "{source}: event {} has timestamp {} outside 1990..2100",
            i + 1,
            events.timestamp[i]
        )));
    }
    let mut order: Vec<u32> = (0..events.len() as u32).collect();
    order.par_sort_by_key(|&i| {
        let i = i as usize;
        (events.user_id[i], events.timestamp[i], events.item_id[i])
    });
    events = permute(&events, &order);
    let known: HashSet<i64> = items.item_id.iter().copied().collect();
    let mut added = HashSet::new();
    for &id in &events.item_id {
        if !known.contains(&id) && added.insert(id) {
            items.push(id, None, None, Vec::new(), None);
        }
    }
    let known_users: HashMap<i64, ()> = users.user_id.iter().map(|&u| (u, ())).collect();
    let mut added_users = HashSet::new();
    for &u in &events.user_id {
        if !known_users.contains_key(&u) && added_users.insert(u) {
            users.user_id.push(u);
            for (_, col) in users.categorical.iter_mut() {
                col.push(None);
            }
            for (_, col) in users.numeric.iter_mut() {
                col.push(None);
            }
        }
    }
    let summary = ImportSummary {
        source: source.to_string(),
        events: events.len(),
        watched: events.watched.iter().filter(|w| **w).count(),
        users: events.user_id.iter().collect::<HashSet<_>>().len(),
        items: events.item_id.iter().collect::<HashSet<_>>().len(),
        catalogue: items.len(),
    };
    Ok((events, items, users, summary))
}

fn permute(ev: &Events, order: &[u32]) -> Events {
    fn take<T: Copy>(v: &[T], order: &[u32]) -> Vec<T> {
        order.iter().map(|&i| v[i as usize]).collect()
    }
    Events {
        user_id: take(&ev.user_id, order),
        item_id: take(&ev.item_id, order),
        timestamp: take(&ev.timestamp, order),
        watched: take(&ev.watched, order),
        watch_time: take(&ev.watch_time, order),
        rating: take(&ev.rating, order),
        extra: ev
            .extra
            .iter()
            .map(|(n, v)| (n.clone(), take(v, order)))
            .collect(),
        ids: ev.ids.clone(),
    }
}

/// Writes the three files into `out` (created when missing): all appear together or none does.
pub fn write_dataset(out: &Path, events: &Events, items: &Items, users: &Users) -> Result<()> {
    let dir = OutputDir::open(out)?;
    let files = vec![
        write_events_file(&dir.join("events.parquet"), events)?,
        write_items(&dir.join("items.parquet"), items)?,
        write_users(&dir.join("users.parquet"), users)?,
    ];
    commit_all(files)?;
    dir.keep();
    Ok(())
}
