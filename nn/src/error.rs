//! Errors of the shared model pieces.

/// Everything that can go wrong in a layer, loss, optimiser or the trainer.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// Inputs (ids, shapes, sizes) are inconsistent.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// Training produced a non-finite loss.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// An error from candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result type of the `nn` crate.
pub type Result<T> = std::result::Result<T, NnError>;

/// Shorthand for an [`NnError::Invalid`].
pub fn invalid(msg: impl Into<String>) -> NnError {
    NnError::Invalid(msg.into())
}
