//! The ranking stage of recpipe (Covington et al. 2016, section 4): a feed-forward network that
//! re-scores a few hundred candidates per user by expected watch time.
//!
//! - [`RankingExample`]: the features of one (user, candidate, time) impression as plain values;
//!   [`FeatureSchema`]: the vocabulary sizes and continuous feature names they refer to.
//! - [`Quantiles`]: continuous values mapped to their training CDF, fed as x~, x~^2, sqrt(x~).
//! - [`Ranker::train`]: weighted logistic regression (watched impressions weigh their watch
//!   time), AdamW (lazy, row-sparse for the embedding tables), seeded, early stopping on a
//!   validation slice.
//! - [`Ranker::score`]: e^logit = expected watch time, in batches whose tower runs as one
//!   matmul per layer; [`Ranker::save`] /
//!   [`Ranker::load`]: `ranker.safetensors` + `ranker.json`.
//!
//! The crate reads and writes no data files besides its own model folder.

#![warn(missing_docs)]

mod batch;
mod config;
mod error;
mod example;
mod model;
mod quantiles;
mod ranker;
mod serve;
mod train;

#[cfg(test)]
mod tests;

pub use config::RankerConfig;
pub use error::{RankingError, Result};
pub use example::{FeatureSchema, RankingExample};
pub use quantiles::{ContinuousEncoder, Quantiles, INPUTS_PER_CONTINUOUS};
pub use ranker::{Ranker, META_FILE, SCORE_BATCH, WEIGHTS_FILE};
pub use train::{example_weight, EpochReport, TrainReport};
