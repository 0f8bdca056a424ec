//! The core crate's error type.

use thiserror::Error;

/// Errors raised by the core crate.
#[derive(Debug, Error)]
pub enum Error {
    /// The configuration could not be loaded or is invalid; every problem is listed.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
    /// The storage URL is malformed or names an unsupported scheme.
    #[error("storage URL `{url}`: {reason}")]
    StorageUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An object store operation failed (retry with backoff: an external system).
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// Arrow or Parquet encoding failed (a bug or corrupt data).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet encoding or decoding failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A JSON document in storage could not be read.
    #[error("json in `{path}`: {source}")]
    Json {
        /// The object's path.
        path: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A stored table or document lacks a column, or has one of another type, or
    /// values its definition excludes (see [`crate::tables`]).
    #[error("table `{file}`: {reason}")]
    Table {
        /// The object's path.
        file: String,
        /// What is wrong, naming the column.
        reason: String,
    },
    /// An I/O error (binding a port, reading a file).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True for a failure of an external system that a retry may mend (the object store,
    /// I/O); false for bad configuration and for encoding errors (a bug, or corrupt data:
    /// retrying would fail the same way, so the caller stops loudly).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::ObjectStore(e) => !matches!(
                e,
                object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
            Error::Io(_) => true,
            Error::Config(_)
            | Error::StorageUrl { .. }
            | Error::Arrow(_)
            | Error::Parquet(_)
            | Error::Json { .. }
            | Error::Table { .. } => false,
        }
    }
}
