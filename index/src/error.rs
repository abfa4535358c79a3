//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong building, searching, saving or loading an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The vectors, ids, biases or parameters given by the caller are unusable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A query's length differs from the index's dimension.
    #[error("query has dimension {got}, the index has {expected}")]
    DimensionMismatch {
        /// The index's dimension.
        expected: usize,
        /// The query's length.
        got: usize,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A saved index is damaged, truncated or inconsistent.
    #[error("corrupt index file {path}: {reason}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file's sha256 differs from the one recorded in the manifest.
    #[error("checksum mismatch for {path}: manifest says {expected}, file has {actual}")]
    ChecksumMismatch {
        /// The file concerned.
        path: PathBuf,
        /// The digest in the manifest (hex).
        expected: String,
        /// The digest of the file on disk (hex).
        actual: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, IndexError>;

impl IndexError {
    /// An [`IndexError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`IndexError::Corrupt`] for `path`.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        IndexError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
