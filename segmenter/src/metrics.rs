//! The segmenter's metrics, named once here and updated beside the log line of each
//! run (`spectra_segment_*`, labelled by segmentation).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use spectra_core::telemetry::Metrics;

use crate::service::RunSummary;

/// Labels naming a segmentation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SegmentationLabels {
    /// Segmentation name.
    pub segmentation: String,
}

type HistogramFamily = Family<SegmentationLabels, Histogram, fn() -> Histogram>;

fn run_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

/// Every segmenter metric.
#[derive(Clone)]
pub struct SegmentMetrics {
    /// Runs completed.
    pub runs: Family<SegmentationLabels, Counter>,
    /// Runs that failed.
    pub failures: Family<SegmentationLabels, Counter>,
    /// Seconds per run, reading features to `latest.json`.
    pub run_seconds: HistogramFamily,
    /// Outlets assigned in the latest run.
    pub outlets_assigned: Family<SegmentationLabels, Gauge>,
    /// Outlets that changed segment, summed over runs.
    pub outlets_moved: Family<SegmentationLabels, Counter>,
    /// Outlets that changed segment in the latest run.
    pub outlets_moved_last: Family<SegmentationLabels, Gauge>,
    /// Inertia of the latest run.
    pub inertia: Family<SegmentationLabels, Gauge<f64, AtomicU64>>,
    /// Sampled silhouette of the latest run.
    pub silhouette: Family<SegmentationLabels, Gauge<f64, AtomicU64>>,
    /// 1 while the latest run is held by the circuit breaker (not released), else 0.
    pub runs_held: Family<SegmentationLabels, Gauge>,
}

impl SegmentMetrics {
    /// Creates the metrics and registers them.
    pub fn register(m: &Metrics) -> Self {
        let s = Self {
            runs: Family::default(),
            failures: Family::default(),
            run_seconds: Family::new_with_constructor(run_histogram),
            outlets_assigned: Family::default(),
            outlets_moved: Family::default(),
            outlets_moved_last: Family::default(),
            inertia: Family::default(),
            silhouette: Family::default(),
            runs_held: Family::default(),
        };
        let mut r = m.registry();
        let r = r.sub_registry_with_prefix("segment");
        r.register("runs", "Segmentation runs completed", s.runs.clone());
        r.register(
            "run_failures",
            "Segmentation runs that failed",
            s.failures.clone(),
        );
        r.register(
            "run_seconds",
            "Duration of a segmentation run",
            s.run_seconds.clone(),
        );
        r.register(
            "outlets_assigned",
            "Outlets assigned in the latest run",
            s.outlets_assigned.clone(),
        );
        r.register(
            "outlets_moved",
            "Outlets that changed segment, over all runs",
            s.outlets_moved.clone(),
        );
        r.register(
            "outlets_moved_last_run",
            "Outlets that changed segment in the latest run",
            s.outlets_moved_last.clone(),
        );
        r.register(
            "inertia",
            "k-means inertia of the latest run",
            s.inertia.clone(),
        );
        r.register(
            "silhouette",
            "Sampled silhouette of the latest run",
            s.silhouette.clone(),
        );
        r.register(
            "runs_held",
            "1 while the latest run is held by the circuit breaker (not published until released)",
            s.runs_held.clone(),
        );
        s
    }

    /// Starts the run and failure counters of a configured segmentation at zero, so
    /// every segmentation is a series (and a choice of the dashboard's variable) before
    /// its first run, including one whose runs fail.
    pub fn known(&self, segmentation: &str) {
        let l = SegmentationLabels {
            segmentation: segmentation.to_owned(),
        };
        let _ = self.runs.get_or_create(&l);
        let _ = self.failures.get_or_create(&l);
    }

    /// Records whether the latest run is held and not released.
    pub fn set_held(&self, segmentation: &str, held: bool) {
        self.runs_held
            .get_or_create(&SegmentationLabels {
                segmentation: segmentation.to_owned(),
            })
            .set(i64::from(held));
    }

    /// Records a completed run.
    pub fn record(&self, segmentation: &str, r: &RunSummary) {
        let l = SegmentationLabels {
            segmentation: segmentation.to_owned(),
        };
        self.runs.get_or_create(&l).inc();
        self.run_seconds
            .get_or_create(&l)
            .observe(r.duration_ms as f64 / 1000.0);
        self.outlets_assigned
            .get_or_create(&l)
            .set(r.outlets as i64);
        self.outlets_moved.get_or_create(&l).inc_by(r.moved as u64);
        self.outlets_moved_last
            .get_or_create(&l)
            .set(r.moved as i64);
        self.inertia.get_or_create(&l).set(r.inertia);
        self.runs_held
            .get_or_create(&l)
            .set(i64::from(r.held.is_some()));
        self.silhouette.get_or_create(&l).set(r.silhouette);
    }

    /// Records a failed run.
    pub fn failed(&self, segmentation: &str) {
        self.failures
            .get_or_create(&SegmentationLabels {
                segmentation: segmentation.to_owned(),
            })
            .inc();
    }
}
