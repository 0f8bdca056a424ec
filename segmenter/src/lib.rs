//! spectra-segmenter: re-clusters the outlets of each segmentation, keeping segment
//! ids stable across runs. The clustering core ([`cluster`]) takes arrays and returns
//! arrays, with no I/O.
//!
//! Around it, `spectra segment`: for each configured segmentation, read the
//! aggregator's latest complete [`features`] folder, compute a run ([`pipeline`]: warm
//! start, hysteresis, stable ids, k by silhouette, [`profile`]s, [`gaps`]) and write it
//! under `segmentations/{name}/runs/` ([`runs`]; the moves with their evidence in
//! [`movements`]), `latest.json` last. [`service`] decides
//! when a segmentation is due.

pub mod arrays;
pub mod cluster;
pub mod context;
pub mod features;
pub mod gaps;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod naming;
pub mod patterns;
pub mod pipeline;
pub mod profile;
pub mod recommend;
pub mod runs;
pub mod service;

pub use service::{run, run_segmentation, RunSummary, SegmentOptions, Summary};

/// Errors of the segmenter crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage or configuration (from the core crate); storage errors are worth a retry.
    #[error(transparent)]
    Core(#[from] spectra_core::Error),
    /// The configuration asks for something the segmenter does not do; every problem is
    /// listed.
    #[error("invalid segment configuration:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
    /// A feature table is missing or lacks a column (the aggregator's output is bad).
    #[error("features `{path}`: {reason}")]
    Features {
        /// The object's path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The previous run named by `latest.json` cannot be read.
    #[error("previous run `{path}`: {reason}")]
    PreviousRun {
        /// The object's path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The daily tables stayed part-way through a re-roll that moves lines between days
    /// for longer than a run waits ([`crate::recommend::DAILY_PATIENCE`]), or were
    /// re-rolled during each of its reads; the service tries the run again at its next
    /// poll.
    #[error("recommendations: {0}")]
    DailyUnsettled(spectra_core::tables::rolling::Unsettled),
    /// Too few outlets pass `min_value` to make the segments asked for.
    #[error(
        "segmentation `{segmentation}`: {eligible} outlets pass min_value, {needed} are needed; \
         lower min_value or k (k_range)"
    )]
    TooFewOutlets {
        /// Segmentation name.
        segmentation: String,
        /// Outlets that could be assigned.
        eligible: usize,
        /// Outlets the configured k needs.
        needed: usize,
    },
    /// The run would hold more memory than this process may use, by a low estimate
    /// ([`memory`]): the run is not started.
    #[error(
        "segmentation `{segmentation}`: {} outlets × {} columns and {} outlet × SKU rows \
         need {} by a low estimate ({} for the outlets × columns arrays at {} bytes a \
         cell, {} for the SKU rows and the outlets at {} bytes a row and {} bytes an \
         outlet), and {} is available ({limited_by}); {}",
        .need.outlets, .need.columns, .need.sku_pairs, memory::gb(.need.bytes()),
        memory::gb(.need.arrays()), memory::BYTES_PER_CELL, memory::gb(.need.rest()),
        memory::BYTES_PER_SKU_PAIR, memory::BYTES_PER_OUTLET, memory::gb(*.available),
        memory::advice(*.max_features)
    )]
    TooLittleMemory {
        /// Segmentation name.
        segmentation: String,
        /// What the run would hold: its outlets, columns and SKU rows.
        need: memory::Need,
        /// Bytes this process may use.
        available: u64,
        /// Where `available` comes from.
        limited_by: String,
        /// The most `max_features` that could fit; `None` when not even 2 could.
        max_features: Option<usize>,
    },
    /// A run panicked (a bug); the other segmentations went on.
    #[error("segmentation `{segmentation}`: {message}")]
    Panicked {
        /// Segmentation name.
        segmentation: String,
        /// The panic's message.
        message: String,
    },
    /// A merge or split by hand cannot be applied.
    #[error(
        "segmentation `{segmentation}`: the merge or split by hand cannot be applied: {message}"
    )]
    Operation {
        /// Segmentation name.
        segmentation: String,
        /// Why.
        message: String,
    },
    /// The clustering core refused its input (a bug, or degenerate features).
    #[error("segmentation `{segmentation}`: clustering failed: {source}")]
    Cluster {
        /// Segmentation name.
        segmentation: String,
        /// The core's error.
        source: cluster::ClusterError,
    },
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::Core(spectra_core::Error::Arrow(e))
    }
}
