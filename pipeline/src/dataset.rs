//! A data folder loaded and validated: events, and the optional items and users tables.

use crate::data::{read_events, read_items, read_users, Events, Items, Users};
use crate::error::{Error, Result};
use crate::ids::IdSpellings;
use std::path::{Path, PathBuf};

/// Extra event columns recpipe uses when present: the day and position of an impression, and
/// the label columns ([`LABEL_COLUMNS`]).
pub const USED_EXTRA_COLUMNS: &[&str] = &["date", "position", "long_view", "is_like", "is_follow"];

/// Extra 0/1 event columns read as training labels when present (KuaiRand's; one head each in
/// the multi-task ranker): the same list as `ranking::multitask::LABELS`.
pub const LABEL_COLUMNS: &[&str] = ranking::multitask::LABELS;

/// Where table `name` (`events`, `items`, `users`) of data folder `dir` is: `NAME.parquet`, a
/// file or a folder of parts (Spark names its output folder so), or else a folder `NAME/` of
/// parts. `None` when there is neither.
pub fn table_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let file = dir.join(format!("{name}.parquet"));
    if file.exists() {
        return Some(file);
    }
    let folder = dir.join(name);
    folder.is_dir().then_some(folder)
}

/// The events table of `dir` (an error when missing names both places looked at).
pub fn events_path(dir: &Path) -> Result<PathBuf> {
    table_path(dir, "events").ok_or_else(|| {
        Error::input(
            dir,
            "no events.parquet (a file, or a folder of parts) and no events/ folder of parts",
        )
    })
}

/// `events.parquet`, `items.parquet` and `users.parquet` of one folder.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder.
    pub dir: PathBuf,
    /// The events.
    pub events: Events,
    /// The catalogue (empty when the folder has no `items.parquet`).
    pub items: Items,
    /// User features (empty when the folder has no `users.parquet`).
    pub users: Users,
    /// How the folder spells user and item ids (the same in every table).
    pub ids: IdSpellings,
}

impl Dataset {
    /// Loads and validates `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let events_at = events_path(dir)?;
        let events = read_events(&events_at, USED_EXTRA_COLUMNS)?;
        let mut ids = events.ids.clone();
        let items = match table_path(dir, "items") {
            Some(p) => {
                let items = read_items(&p)?;
                ids.items = ids
                    .items
                    .combine(
                        items.ids.clone(),
                        &events_at.display().to_string(),
                        &p.display().to_string(),
                    )
                    .map_err(|e| Error::Input(format!("column 'item_id': {e}")))?;
                items
            }
            None => Items::default(),
        };
        let users = match table_path(dir, "users") {
            Some(p) => {
                let users = read_users(&p)?;
                ids.users = ids
                    .users
                    .combine(
                        users.ids.clone(),
                        &events_at.display().to_string(),
                        &p.display().to_string(),
                    )
                    .map_err(|e| Error::Input(format!("column 'user_id': {e}")))?;
                users
            }
            None => Users::default(),
        };
        Ok(Dataset {
            dir: dir.to_path_buf(),
            events,
            items,
            users,
            ids,
        })
    }
}
