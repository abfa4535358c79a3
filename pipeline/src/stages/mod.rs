//! The stages of the pipeline, each from loaded data to a trained model and its figures.

pub mod add_items;
pub mod build;
pub mod ranking;
pub mod retrieval;
