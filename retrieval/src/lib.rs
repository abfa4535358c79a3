//! Candidate generation for recpipe: the retrieval network of Covington, Adams and Sargin,
//! "Deep Neural Networks for YouTube Recommendations" (RecSys 2016), §3, in candle.
//!
//! A user vector `u` comes from a ReLU tower over the mean embedding of the watched items, an
//! order-aware mean of the last few watches, the mean embedding of their tokens, the example
//! age and the user features; item `j` has a softmax vector `v_j` and bias `b_j`, and its
//! score is `u . v_j + b_j`. Training uses the full softmax on small catalogues and a sampled
//! softmax with shared, popularity-drawn negatives and the logQ correction otherwise.
//!
//! The crate takes and returns plain Rust values; it reads and writes only its own weights.

#![warn(missing_docs)]

pub mod bag;
pub mod config;
pub mod data;
pub mod error;
pub mod init;
pub mod metrics;
pub mod model;
pub mod network;
pub mod optim;
pub mod rng;
pub mod softmax;
pub mod train;
pub mod warm;
pub mod xent;

pub use config::RetrievalConfig;
pub use data::{Catalog, Example, UserFeatures, UserQuery, ValidationCase, WatchHistories};
pub use error::{Result, RetrievalError};
pub use metrics::{target_rank, RankMetrics};
pub use model::RetrievalModel;
pub use optim::{AdamWParams, InPlaceAdamW};
pub use train::{EpochReport, TrainReport};
pub use warm::{WarmStart, WarmStats};
