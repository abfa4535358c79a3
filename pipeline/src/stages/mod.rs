//! The stages of the pipeline, each from loaded data to a trained model and its figures.

pub mod build;
pub mod ranking;
pub mod retrieval;
