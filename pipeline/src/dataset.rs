//! A data folder loaded and validated: events, and the optional items and users tables.

use crate::data::{read_events, read_items, read_users, Events, Items, Users};
use crate::error::Result;
use std::path::{Path, PathBuf};

/// Extra event columns recpipe uses when present.
pub const USED_EXTRA_COLUMNS: &[&str] = &["date", "position"];

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
}

impl Dataset {
    /// Loads and validates `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let events = read_events(&dir.join("events.parquet"), USED_EXTRA_COLUMNS)?;
        let items_path = dir.join("items.parquet");
        let items = if items_path.is_file() {
            read_items(&items_path)?
        } else {
            Items::default()
        };
        let users_path = dir.join("users.parquet");
        let users = if users_path.is_file() {
            read_users(&users_path)?
        } else {
            Users::default()
        };
        Ok(Dataset {
            dir: dir.to_path_buf(),
            events,
            items,
            users,
        })
    }
}
