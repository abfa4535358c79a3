//! The error type of recpipe: every failure carries a one-line message, and bad input is told
//! apart from other failures so that the binary can exit with code 2 for it.

use std::path::{Path, PathBuf};

/// What went wrong, in one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's data or arguments are wrong (exit code 2). The message names the file, column
    /// and row where it can.
    #[error("{0}")]
    Input(String),
    /// Reading or writing a file failed for a reason outside the data itself.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A model failed to train, load or score; the model crate's error is kept as the source.
    #[error("{stage} model: {source}")]
    Model {
        /// `retrieval` or `ranking`.
        stage: &'static str,
        /// The model crate's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The index failed to build, save, load or search.
    #[error("{what}: {source}")]
    Index {
        /// What was being done.
        what: &'static str,
        /// The index crate's error.
        source: index::IndexError,
    },
    /// Anything else (internal errors).
    #[error("{0}")]
    Other(String),
}

/// A recpipe result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Bad input found in `file`: `what` says where in it and what is wrong.
    pub fn input(file: &Path, what: impl std::fmt::Display) -> Self {
        Error::Input(format!("{}: {what}", file.display()))
    }

    /// A model crate's error from `stage`: a bad model name or setting (`setting`) is the
    /// user's input (exit code 2), prefixed with its config section; anything else keeps the
    /// crate's error as its source.
    pub fn model(
        stage: &'static str,
        setting: bool,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        if setting {
            Error::Input(format!("[{stage}] {source}"))
        } else {
            Error::Model {
                stage,
                source: Box::new(source),
            }
        }
    }

    /// An index failure while doing `what`.
    pub fn index(what: &'static str) -> impl FnOnce(index::IndexError) -> Self {
        move |source| Error::Index { what, source }
    }

    /// An I/O failure on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The process exit code for this error: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => 2,
            _ => 1,
        }
    }
}
