//! The ranking stage of recpipe (Covington et al. 2016, section 4): a feed-forward network that
//! re-scores a few hundred candidates per user by expected watch time.
//!
//! - [`RankingExample`]: the features of one (user, candidate, time) impression as plain values;
//!   [`FeatureSchema`]: the vocabulary sizes and continuous feature names they refer to.
//! - [`Quantiles`]: continuous values mapped to their training CDF, fed as x~, x~^2, sqrt(x~).
//! - [`YoutubeRanker::train`]: weighted logistic regression (watched impressions weigh their watch
//!   time), AdamW (lazy, row-sparse for the embedding tables), seeded, early stopping on a
//!   validation slice.
//! - [`YoutubeRanker::score`]: e^logit = expected watch time, in batches whose tower runs as one
//!   matmul per layer; [`YoutubeRanker::save`] /
//!   [`YoutubeRanker::load`]: `ranker.safetensors` + `ranker.json`.
//! - DeepFM ([`deepfm`], Guo et al. 2017) and DCN-v2 ([`dcn_v2`], Wang et al. 2021): explicit
//!   feature crosses over the same input as the YouTube ranker, trained and scored by the same
//!   loop (`[ranking] model = "deepfm" | "dcn_v2"`).
//! - The multi-task ranker ([`multitask`], shared bottom or MMoE, Caruana 1997 / Ma et al.
//!   2018): one head per signal (the watch, plus each label column the data has), the serving
//!   score a configured combination (`[ranking] model = "multitask"`).
//! - [`RankerSettings`] picks and trains a ranker by name (`[ranking] model`); [`load`] reads
//!   any saved one as a [`DynRanker`] (the [`nn::Ranker`] interface plus [`RankingModel`]).
//!
//! The crate reads and writes no data files besides its own model folder.

#![warn(missing_docs)]

pub mod autorec;
mod batch;
pub mod cf_ranker;
mod config;
pub mod dcn_v2;
pub mod deep_mf;
pub mod deepfm;
mod error;
mod example;
mod feature_ranker;
mod model;
pub mod multitask;
pub mod ncf;
mod quantiles;
pub mod rbm;
mod registry;
mod serve;
mod train;
mod youtube;

#[cfg(test)]
mod scoring_tests;
#[cfg(test)]
mod testdata;
#[cfg(test)]
mod tests;

pub use autorec::{AutoRec, AutoRecConfig};
pub use config::RankerConfig;
pub use dcn_v2::{DcnV2Config, Structure as DcnStructure};
pub use deepfm::DeepFmConfig;
pub use error::{RankingError, Result};
pub use example::{FeatureSchema, RankingExample};
pub use multitask::MultitaskConfig;
pub use quantiles::{ContinuousEncoder, Quantiles, INPUTS_PER_CONTINUOUS};
pub use registry::{
    load, DynRanker, DynRatingModel, RankerSettings, RankingModel, RatingSettings, MODELS,
    RATING_MODELS,
};
pub use train::{example_weight, EpochReport, TrainReport};
pub use youtube::{YoutubeRanker, KIND, META_FILE, SCORE_BATCH, WEIGHTS_FILE};
