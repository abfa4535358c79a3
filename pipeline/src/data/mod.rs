//! The Parquet files between stages (DESIGN.md): events, items, users, vectors, candidates and
//! ranked candidates, with their writers and validating readers.

pub mod candidates;
pub mod events;
pub mod items;
pub mod users;
pub mod vectors;

pub use candidates::{Candidate, CandidatesReader, CandidatesWriter};
pub use events::{read_events, Event, Events, EventsWriter, Id, IdType};
pub use items::{read_items, write_items, Items};
pub use users::{read_users, write_users, Users};
pub use vectors::{read_vectors, write_vectors, IdVectors};
