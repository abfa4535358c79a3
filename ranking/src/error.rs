//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while building, training, scoring, saving or loading a ranker.
#[derive(Debug, thiserror::Error)]
pub enum RankingError {
    /// A tensor operation failed inside candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `ranker.json` could not be written or parsed.
    #[error("{path}: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// An example does not fit the feature schema (an id outside its vocabulary, a wrong number
    /// of continuous or categorical values).
    #[error("example {index}: {reason}")]
    InvalidExample {
        /// Position of the example in the slice passed in.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration or schema value is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Training produced a non-finite loss.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// Training was asked for without any training example.
    #[error("no training examples")]
    NoTrainingData,
    /// A saved model does not match what this version of the crate writes.
    #[error("{path}: {reason}")]
    IncompatibleModel {
        /// The file involved.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
}

impl From<nn::NnError> for RankingError {
    fn from(e: nn::NnError) -> Self {
        match e {
            nn::NnError::Invalid(m) => RankingError::InvalidConfig(m),
            nn::NnError::Diverged(m) => RankingError::Diverged(m),
            nn::NnError::Candle(e) => RankingError::Candle(e),
        }
    }
}

/// Result type of the ranking crate.
pub type Result<T> = std::result::Result<T, RankingError>;
