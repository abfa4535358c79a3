//! The Parquet files between stages (DESIGN.md): events, items and users, with their writers and
//! validating readers.

pub mod events;
pub mod items;
pub mod users;

pub use events::{read_events, Event, Events, EventsWriter};
pub use items::{read_items, write_items, Items};
pub use users::{read_users, write_users, Users};
