//! `spectra publish`: what changed, back to Kafka, and the HTTP API with the web console.
//!
//! Each cycle compares a segmentation's latest run with what was last published
//! ([`state`]) and produces only the differences to `segment-assignments` ([`diff`]),
//! the segment profiles ([`profile`]) and the outlet recommendations ([`recommend`]);
//! the state is recorded only after every delivery was acknowledged ([`cycle`]). Names
//! and tags people set live on `segment-metadata` ([`metadata`]). The HTTP server
//! ([`api`]) serves the JSON API, the exports ([`export`]), the console and the admin
//! routes on `publish.listen`. A run the segmenter held ([`hold`]) is not published
//! until it is released through the API.

pub mod api;
pub mod console;
pub mod cycle;
pub mod diff;
pub mod export;
pub mod history;
pub mod hold;
pub mod kafka;
mod lists;
pub mod metadata;
pub mod metrics;
pub mod snapshot;
pub mod state;
pub mod tables;

mod service;

pub use service::{export_file, run, start, ExportSummary, PublishOptions, Service, Summary};

/// Errors of the publisher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage or configuration (from the core crate).
    #[error(transparent)]
    Core(#[from] spectra_core::Error),
    /// A topic is missing or Kafka refused a request.
    #[error(transparent)]
    Topics(#[from] spectra_core::kafka::KafkaError),
    /// The Kafka client failed (an external system: the cycle is retried).
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// A message was not acknowledged; the cycle is not recorded and will be retried.
    #[error("delivery to topic `{topic}` (key `{key}`) failed: {source}; if the broker refuses InitProducerId, set kafka.properties.\"enable.idempotence\" = \"false\"")]
    Deliver {
        /// The topic.
        topic: String,
        /// The message key.
        key: String,
        /// The producer's error (boxed: it is large).
        source: Box<rdkafka::error::KafkaError>,
    },
    /// A table written by another service cannot be read as the README describes it.
    #[error("table `{file}`: {reason}")]
    Table {
        /// The object, relative to the storage root.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The segmentation asked for has no run yet (or does not exist).
    #[error("segmentation `{0}` has no run yet: run `spectra segment` first, or check the name")]
    NoRun(String),
    /// Writing an export failed.
    #[error("export: {0}")]
    Export(String),
    /// An I/O error (binding the HTTP port, writing a file).
    #[error("{0}")]
    Io(String),
}
