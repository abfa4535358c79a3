//! What every recpipe model shares, candle-nn style: layers ([`layers`]), embedding bags with
//! row-sparse gradients ([`bag`], [`sparse`]), the in-place dense and lazy row-sparse AdamW
//! ([`optim`]), a seeded initialiser ([`init`]) and random generator ([`rng`]), losses
//! ([`softmax`] over a catalogue with logQ correction, [`loss`] for pointwise and pairwise
//! ones), the ranking metrics of EVAL.md section 1 ([`metrics`]), one training loop
//! ([`trainer`]) and the model interfaces: [`Retriever`] (candidate generators), [`Ranker`]
//! (rankers) and [`RatingModel`] (rating prediction).
//!
//! Each model computes either with the fused CPU kernels or, on a GPU, with their formulations
//! in candle ops ([`compute`], [`portable`]).
//!
//! The crate knows no model and no file format: model crates build on it.

#![warn(missing_docs)]

pub mod bag;
pub mod compute;
pub mod data;
pub mod error;
pub mod init;
pub mod layers;
pub mod linalg;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod portable;
pub mod ranker;
pub mod rating;
pub mod retriever;
pub mod rng;
pub mod softmax;
pub mod sparse;
pub mod trainer;
pub mod vars;
pub mod xent;

pub use compute::Compute;
pub use data::{
    Catalog, Example, TrainingSet, UserFeatures, UserQuery, ValidationCase, WatchHistories,
};
pub use error::{NnError, Result};
pub use metrics::{target_rank, RankMetrics};
pub use optim::{AdamWParams, InPlaceAdamW};
pub use ranker::Ranker;
pub use rating::{LabelledPairs, RatingModel, Ratings, SideFeatures};
pub use retriever::Retriever;
pub use trainer::{with_time_budget, Better, EpochReport, Fit, Schedule, StepLoss, TrainReport};
