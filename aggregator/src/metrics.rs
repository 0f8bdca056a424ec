//! The aggregator's metrics, named once here and updated beside the log lines that
//! explain them (see [`crate::run_once`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use spectra_core::telemetry::Metrics;

/// Labels naming a segmentation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SegmentationLabels {
    /// Segmentation name.
    pub segmentation: String,
}

/// Every aggregator metric.
#[derive(Clone)]
pub struct AggregateMetrics {
    /// Passes completed.
    pub runs: Counter,
    /// Seconds per pass (roll-up and features).
    pub run_seconds: Histogram,
    /// Raw files rolled up for the first time.
    pub files_new: Counter,
    /// Raw rows read from new files.
    pub rows_read: Counter,
    /// Rows written: daily tables and feature tables.
    pub rows_written: Counter,
    /// Days whose daily tables were rebuilt.
    pub days_rerolled: Counter,
    /// (line, day) pairs a correction on another day took away.
    pub lines_moved: Counter,
    /// Distinct SKUs in the window missing from master data, per segmentation.
    pub unknown_skus: Family<SegmentationLabels, Gauge>,
    /// Distinct outlets in the window missing from master data, per segmentation.
    pub unknown_outlets: Family<SegmentationLabels, Gauge>,
    /// Segmentations whose features failed (bad filter, error, panic), per segmentation.
    pub failures: Family<SegmentationLabels, Counter>,
    /// Raw objects absorbed earlier and gone from `raw/invoices/` (their days held).
    pub raw_missing_objects: Gauge,
    /// Passes abandoned because another pass took the lease over.
    pub fenced: Counter,
}

impl AggregateMetrics {
    /// Creates the metrics and registers them.
    pub fn register(m: &Metrics) -> Self {
        let s = Self {
            runs: Counter::default(),
            run_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            files_new: Counter::default(),
            rows_read: Counter::default(),
            rows_written: Counter::default(),
            days_rerolled: Counter::default(),
            lines_moved: Counter::default(),
            unknown_skus: Family::default(),
            unknown_outlets: Family::default(),
            failures: Family::default(),
            raw_missing_objects: Gauge::default(),
            fenced: Counter::default(),
        };
        let mut r = m.registry();
        let r = r.sub_registry_with_prefix("aggregate");
        r.register("runs", "Aggregation passes completed", s.runs.clone());
        r.register(
            "run_seconds",
            "Duration of an aggregation pass",
            s.run_seconds.clone(),
        );
        r.register("files_new", "Raw files rolled up", s.files_new.clone());
        r.register(
            "rows_read",
            "Raw rows read from new files",
            s.rows_read.clone(),
        );
        r.register(
            "rows_written",
            "Rows written to daily and feature tables",
            s.rows_written.clone(),
        );
        r.register(
            "days_rerolled",
            "Days whose daily tables were rebuilt",
            s.days_rerolled.clone(),
        );
        r.register(
            "lines_moved",
            "Lines a correction moved to another invoice date",
            s.lines_moved.clone(),
        );
        r.register(
            "unknown_skus",
            "SKUs bought in the window that master data does not know",
            s.unknown_skus.clone(),
        );
        r.register(
            "unknown_outlets",
            "Outlets buying in the window that master data does not know",
            s.unknown_outlets.clone(),
        );
        r.register(
            "segmentation_failures",
            "Segmentations whose features failed in a pass (the others were written)",
            s.failures.clone(),
        );
        r.register(
            "raw_missing_objects",
            "Raw objects the aggregator rolled up that are gone from raw/invoices/ (their days are held until a full rebuild)",
            s.raw_missing_objects.clone(),
        );
        r.register(
            "fenced_passes",
            "Aggregation passes abandoned because another pass took the lease over",
            s.fenced.clone(),
        );
        s
    }
}
