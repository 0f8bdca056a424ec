//! The clustering core of the segmenter: arrays in, arrays out — no files, no Kafka,
//! no clock, so every step can be tested with seeds and tolerances and benchmarked
//! alone.
//!
//! - [`transform`]: spend shares → Hellinger features, optional weighted KPI columns.
//! - [`kmeans`]: fast, deterministic k-means (k-means++ or warm start).
//! - [`matching`]: new centroids ↔ old segment ids (Hungarian assignment) and the id
//!   allocator that never reuses an id.
//! - [`incremental`]: one segmentation run from the previous model, with hysteresis
//!   so outlets move only when another segment fits clearly better.
//! - [`movement`]: the change detector — an outlet moves when its own recent spend
//!   differs significantly from its earlier spend and fits another segment clearly
//!   better; one that only wobbles on a border keeps its segment.
//! - [`auto_k`]: choosing k at the first run, proposing a split or merge later.
//! - [`metrics`]: adjusted Rand index and sampled silhouette.

pub mod auto_k;
pub mod incremental;
pub mod kmeans;
pub mod matching;
pub mod metrics;
pub mod movement;
pub mod transform;

mod convert;
mod hamerly;
mod kernel;
mod rows;
mod seeding;
mod swap;
mod tiles;

pub use auto_k::{
    choose_k, propose_restructure, AutoKConfig, KCandidate, KSelection, Restructure,
    RestructureKind,
};
pub use incremental::{run, Assignment, Change, Previous, RunConfig, RunOutcome, SegmentModel};
pub use kmeans::{fit, nearest, Init, KMeansConfig, KMeansFit, NearestCentres};
pub use matching::{match_centroids, min_cost_assignment, CentroidMatch, IdAllocator};
pub use metrics::{adjusted_rand_index, silhouette};

use ndarray::ArrayView2;

/// Why a clustering step refused its input. All are caller errors (bad input).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClusterError {
    /// There are no rows or no feature columns to cluster.
    #[error("nothing to cluster: the feature matrix is {rows} × {cols}")]
    Empty {
        /// Rows in the matrix.
        rows: usize,
        /// Columns in the matrix.
        cols: usize,
    },
    /// k is zero or larger than the number of rows.
    #[error("cannot make {k} clusters from {rows} rows: k must be between 1 and the row count")]
    InvalidK {
        /// Requested number of clusters.
        k: usize,
        /// Rows available.
        rows: usize,
    },
    /// A value is NaN or infinite.
    #[error("the {what} contain a non-finite value at row {row}; clean or drop that row")]
    NonFinite {
        /// Which input (features, weights, centroids).
        what: &'static str,
        /// First offending row.
        row: usize,
    },
    /// A length or width does not match the feature matrix.
    #[error("the {what} have {found} entries/columns where {expected} were expected")]
    DimensionMismatch {
        /// Which input.
        what: &'static str,
        /// What the feature matrix implies.
        expected: usize,
        /// What was given.
        found: usize,
    },
    /// A parameter is outside its range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name as in the configuration.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Checks the shapes of `x`, `weights` and `k` and the weights' values; the
/// features' finiteness is checked while they are converted for the kernels.
fn validate(x: ArrayView2<f64>, weights: Option<&[f64]>, k: usize) -> Result<(), ClusterError> {
    let (rows, cols) = x.dim();
    if rows == 0 || cols == 0 {
        return Err(ClusterError::Empty { rows, cols });
    }
    if k == 0 || k > rows {
        return Err(ClusterError::InvalidK { k, rows });
    }
    if let Some(w) = weights {
        if w.len() != rows {
            return Err(ClusterError::DimensionMismatch {
                what: "weights",
                expected: rows,
                found: w.len(),
            });
        }
        if let Some(row) = w.iter().position(|v| !v.is_finite() || *v < 0.0) {
            return Err(ClusterError::NonFinite {
                what: "weights (or a negative weight)",
                row,
            });
        }
    }
    Ok(())
}
