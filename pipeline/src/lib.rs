//! recpipe: a two-stage recommender after Covington et al., "Deep Neural Networks for YouTube
//! Recommendations" (RecSys 2016). This crate holds the command line, data import and validation,
//! Parquet I/O, example building, stage orchestration and evaluation.

pub mod args;
pub mod artifacts;
pub mod batch;
pub mod bench;
pub mod bench_scale;
pub mod build_lock;
pub mod calendar;
pub mod cli;
pub mod config;
pub mod data;
pub mod dataset;
pub mod error;
pub mod eval;
pub mod examples;
pub mod generate;
pub mod ids;
pub mod import;
pub mod output;
pub mod parquet_io;
pub mod parquet_parts;
pub mod parquet_types;
pub mod progress;
pub mod ranking_features;
pub mod report;
pub mod rng;
pub mod server;
pub mod serving;
pub mod split;
pub mod stages;

pub use error::{Error, Result};
