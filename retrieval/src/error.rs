//! Errors of the retrieval crate.

/// Everything that can go wrong while training, using, saving or loading a retrieval model.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    /// The inputs (histories, examples, catalogue, features, queries) are inconsistent.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The configuration cannot be used.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A saved model is missing a tensor or has one of the wrong shape.
    #[error("invalid saved model: {0}")]
    InvalidModel(String),
    /// A model name this build does not know.
    #[error("unknown retrieval model '{name}' (known: {known})")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The names this build knows, comma-separated.
        known: String,
    },
    /// Training produced a non-finite loss.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// An error from candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The JSON config could not be read or written.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<nn::NnError> for RetrievalError {
    fn from(e: nn::NnError) -> Self {
        match e {
            nn::NnError::Invalid(m) => RetrievalError::InvalidInput(m),
            nn::NnError::Diverged(m) => RetrievalError::Diverged(m),
            nn::NnError::Candle(e) => RetrievalError::Candle(e),
        }
    }
}

/// Result type of the retrieval crate.
pub type Result<T> = std::result::Result<T, RetrievalError>;

/// Shorthand for an [`RetrievalError::InvalidInput`].
pub(crate) fn invalid(msg: impl Into<String>) -> RetrievalError {
    RetrievalError::InvalidInput(msg.into())
}
