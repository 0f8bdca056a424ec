//! `spectra aggregate`: raw Parquet into feature tables with DataFusion.
//!
//! One pass ([`run_once`]) rolls newly landed raw invoice lines up into the daily tables
//! `features/daily/` and `features/outlet_daily/` — deduplicated so every line identity
//! counts once, its latest version winning, and rebuilt only for the days that changed
//! ([`absorb`], [`index`], [`rollup`], summed by hand in [`roll`]) — then computes each segmentation's window features from
//! the daily tables ([`features`], merged outlet by outlet in [`window`]). [`run`] is the service: a pass whenever new raw or
//! master data has landed, polled every `aggregate.poll_seconds`.

pub mod absorb;
pub mod features;
pub mod hash;
pub mod index;
pub mod lease;
pub mod master;
pub mod metrics;
mod pass;
pub mod roll;
pub mod rollup;
pub mod session;
pub mod state;
pub mod superseded;
pub mod window;

use std::time::Duration;

use arrow::datatypes::SchemaRef;
use chrono::NaiveDate;
use serde::Serialize;
use spectra_core::service::Context;
use spectra_core::tables::features::{DailyRow, OutletDailyRow};
use spectra_core::tables::Rows;
use spectra_core::{Config, Storage};

use crate::metrics::AggregateMetrics;
pub use crate::pass::run_once;

/// Objects [`put_all`] stores at once.
const PUTS_AT_ONCE: usize = 16;

/// Stores objects side by side, [`PUTS_AT_ONCE`] at a time: a local write waits on its
/// own `fsync` and an S3 put on a round trip, so one after another they add up (a
/// re-roll's day tables, a merge's bucket files).
pub(crate) async fn put_all(
    storage: &Storage,
    objects: Vec<(String, bytes::Bytes)>,
) -> Result<(), Error> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(objects)
        .map(|(path, data)| async move { storage.put(&path, data).await })
        .buffer_unordered(PUTS_AT_ONCE)
        .try_collect::<()>()
        .await?;
    Ok(())
}

/// Errors of the aggregator crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage or configuration (from the core crate).
    #[error(transparent)]
    Core(#[from] spectra_core::Error),
    /// A query failed (a bug, or unreadable Parquet: the message names the file).
    #[error("query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// Building a record batch failed (a bug).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A segmentation's `filter` is not a valid predicate over the outlet fields.
    #[error("segmentation `{segmentation}`: filter `{filter}` cannot be evaluated over outlet_id, name, region, channel and the outlet attributes: {reason}")]
    Filter {
        /// The segmentation.
        segmentation: String,
        /// The filter as configured.
        filter: String,
        /// The query engine's complaint.
        reason: String,
    },
    /// `--segmentation` names no configured segmentation.
    #[error("no segmentation named `{0}` in the configuration")]
    UnknownSegmentation(String),
    /// Another process took the aggregator's lease over during this pass: nothing more
    /// of the pass lands; the next pass recomputes it.
    #[error("aggregator lease lost, pass abandoned: {0}")]
    Fenced(String),
    /// Another live pass holds the lease (`--once` waited its TTL).
    #[error("another aggregation pass holds the lease: owner {owner}, epoch {epoch}, expires at {expires_at}; retry later, or stop that process")]
    Busy {
        /// The holder.
        owner: String,
        /// Its epoch.
        epoch: u64,
        /// When its lease expires unless renewed.
        expires_at: String,
    },
    /// The aggregator's own state is damaged; `--full` rebuilds it from the raw data.
    #[error("aggregator state: {0}")]
    Corrupt(String),
    /// The temporary files of a large absorb (the OS temporary directory).
    #[error("temporary files of the absorb step: {0}")]
    Spill(#[from] std::io::Error),
}

/// How a pass or the service behaves.
#[derive(Debug, Clone, Default)]
pub struct AggregateOptions {
    /// Run one pass and return.
    pub once: bool,
    /// Last day of the feature window; default: the robust as-of of the daily table
    /// ([`state::robust_as_of`]).
    pub as_of: Option<NaiveDate>,
    /// Only this segmentation's features (the roll-up is shared and always runs).
    pub segmentation: Option<String>,
    /// Forget the state and rebuild the daily tables from all raw data.
    pub full: bool,
}

/// One segmentation's features written by a pass.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SegmentationSummary {
    /// The features folder's manifest.
    #[serde(flatten)]
    pub manifest: features::Manifest,
}

/// What a pass did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    /// True when the state was rebuilt from all raw data.
    pub full: bool,
    /// Raw files rolled up for the first time.
    pub files_new: u64,
    /// Raw rows read from them.
    pub rows_read: u64,
    /// Days whose daily tables were rebuilt.
    pub days_rerolled: u64,
    /// (line, day) pairs that corrections moved to another day.
    pub lines_moved: u64,
    /// Groups of identity-index buckets absorbed one after the other: more than one
    /// when the new lines' identities exceeded `aggregate.absorb_memory_mb` and were
    /// spilled to temporary files (0 when nothing new was absorbed).
    pub absorb_groups: u32,
    /// Rows written to daily and feature tables.
    pub rows_written: u64,
    /// The as-of date the features were computed for (none without data).
    pub as_of: Option<String>,
    /// Later days with lines that the as-of rule passed over (too few lines, or after
    /// today + `aggregate.as_of_future_days`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub as_of_passed_over: Vec<String>,
    /// The segmentations' features.
    pub segmentations: Vec<SegmentationSummary>,
    /// Segmentations whose features failed in this pass (the others were written).
    pub failures: Vec<spectra_core::service::SegmentationFailure>,
    /// Raw objects the aggregator absorbed that are gone from `raw/invoices/`
    /// (retention, a deletion): their days are held, not re-rolled without them, until
    /// `--once --full` rebuilds deliberately.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_raw_objects: Vec<String>,
    /// The days of those objects (`YYYY-MM-DD`), kept as they were.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_days: Vec<String>,
    /// Raw objects listed but not yet committed by ingest ([`spectra_core::checkpoint`]):
    /// left for a later pass.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deferred_raw_objects: Vec<String>,
    /// Days a `--full` rebuild found daily files for but no raw object (all of the
    /// day's deleted: the loss the rebuild accepts): their daily files were removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub days_removed: Vec<String>,
    /// The lease epoch this pass ran under.
    pub lease_epoch: u64,
    /// Wall-clock duration of the pass, ms.
    pub duration_ms: u64,
}

/// Days since the epoch as `YYYY-MM-DD`.
pub fn date_text(days: i32) -> String {
    date_of(days).to_string()
}

/// Days since the epoch as a date.
pub fn date_of(days: i32) -> NaiveDate {
    spectra_core::tables::date_of(days)
}

/// A date as days since the epoch (Arrow's `Date32`).
pub fn days_of(date: NaiveDate) -> i32 {
    spectra_core::tables::date32(date)
}

/// Schema of `features/daily/` (defined in the table layer).
pub fn daily_schema() -> SchemaRef {
    DailyRow::schema()
}

/// Schema of `features/outlet_daily/` (defined in the table layer).
pub fn outlet_daily_schema() -> SchemaRef {
    OutletDailyRow::schema()
}

/// Runs the aggregate service: a pass at start, then one whenever new raw or master
/// files have landed, polling every `aggregate.poll_seconds`, until shutdown (or after
/// one pass with `once`). Returns the last pass's summary.
pub async fn run(cfg: Config, ctx: Context, opts: AggregateOptions) -> Result<Summary, Error> {
    let storage = Storage::from_url(&cfg.storage.url)?;
    let metrics = AggregateMetrics::register(&ctx.metrics);
    ctx.health.register("aggregate");
    ctx.health.set_ready("aggregate", true);
    let mut seen = pass::landed(&storage).await?;
    let mut last = match run_once(&cfg, &storage, &opts, &metrics).await {
        Ok(s) => s,
        Err(e @ (Error::Busy { .. } | Error::Fenced(_))) if !opts.once => {
            tracing::warn!(error = %e, "first aggregation pass skipped; retrying at the next poll");
            seen.clear();
            Summary::default()
        }
        Err(e) => return Err(e),
    };
    if opts.once {
        ctx.health.set_ready("aggregate", false);
        return Ok(last);
    }
    let poll = Duration::from_secs(cfg.aggregate.poll_seconds.max(1));
    let pass_opts = AggregateOptions {
        full: false,
        ..opts.clone()
    };
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = tokio::time::sleep(poll) => {}
        }
        let now = match pass::landed(&storage).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "listing raw and master data failed; retrying at the next poll");
                continue;
            }
        };
        if now == seen && !committed_since(&storage, &last.deferred_raw_objects, &now).await {
            continue;
        }
        match run_once(&cfg, &storage, &pass_opts, &metrics).await {
            Ok(s) => {
                last = s;
                seen = now;
            }
            Err(e @ Error::Busy { .. }) => {
                tracing::info!(error = %e, "aggregation pass deferred; retrying at the next poll")
            }
            Err(e) => {
                tracing::error!(error = %e, "aggregation pass failed; retrying at the next poll")
            }
        }
    }
    ctx.health.set_ready("aggregate", false);
    Ok(last)
}

/// Whether an object the last pass left for later, not yet committed by ingest, is
/// committed now (a listing does not change when a checkpoint lands).
async fn committed_since(
    storage: &Storage,
    deferred: &[String],
    listed: &std::collections::BTreeMap<String, u64>,
) -> bool {
    if deferred.is_empty() {
        return false;
    }
    match spectra_core::checkpoint::uncommitted(storage, deferred.iter().map(String::as_str)).await
    {
        Ok(still) => deferred
            .iter()
            .any(|p| listed.contains_key(p) && !still.contains(p)),
        Err(e) => {
            tracing::warn!(error = %e, "reading ingest's partition states failed; retrying at the next poll");
            false
        }
    }
}
