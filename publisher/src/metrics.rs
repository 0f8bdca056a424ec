//! The publisher's metrics, named once here: messages published by topic and change,
//! publish cycle duration, outlets published, and HTTP API requests.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use spectra_core::telemetry::Metrics;

/// Labels of a published message.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublishedLabels {
    /// Topic name.
    pub topic: String,
    /// `new`, `moved`, `renamed`, `tombstone`, `profile`, `recommendation`, `metadata`.
    pub change: String,
}

/// Labels of a segmentation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SegmentationLabels {
    /// The segmentation.
    pub segmentation: String,
}

/// Labels of an API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// The route's pattern (`/api/outlets/{id}`), not the raw path.
    pub route: String,
    /// Status code.
    pub status: String,
}

/// Every publisher metric.
#[derive(Clone)]
pub struct PublishMetrics {
    /// Messages acknowledged by the broker, by topic and change.
    pub messages: Family<PublishedLabels, Counter>,
    /// Seconds per publish cycle (one segmentation).
    pub cycle_seconds: Histogram,
    /// Cycles that failed.
    pub cycle_errors: Family<SegmentationLabels, Counter>,
    /// Outlets in the published view, per segmentation.
    pub outlets: Family<SegmentationLabels, Gauge>,
    /// HTTP requests by method, route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// 1 while a segmentation's latest run is held by the circuit breaker (nothing of
    /// it published) and not released, else 0.
    pub runs_held: Family<SegmentationLabels, Gauge>,
}

impl PublishMetrics {
    /// Creates the metrics and registers them.
    pub fn register(m: &Metrics) -> Self {
        let s = Self {
            messages: Family::default(),
            cycle_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            cycle_errors: Family::default(),
            outlets: Family::default(),
            requests: Family::default(),
            runs_held: Family::default(),
        };
        let mut r = m.registry();
        let r = r.sub_registry_with_prefix("publish");
        r.register(
            "messages",
            "Messages acknowledged by the broker, by topic and change",
            s.messages.clone(),
        );
        r.register(
            "cycle_seconds",
            "Duration of a publish cycle",
            s.cycle_seconds.clone(),
        );
        r.register(
            "cycle_errors",
            "Publish cycles that failed",
            s.cycle_errors.clone(),
        );
        r.register(
            "outlets",
            "Outlets in the published view",
            s.outlets.clone(),
        );
        r.register("api_requests", "HTTP API requests", s.requests.clone());
        r.register(
            "runs_held",
            "1 while the latest run is held by the circuit breaker and not released",
            s.runs_held.clone(),
        );
        s
    }

    /// Records whether a segmentation's latest run is held and not released.
    pub fn set_held(&self, segmentation: &str, held: bool) {
        self.runs_held
            .get_or_create(&SegmentationLabels {
                segmentation: segmentation.to_owned(),
            })
            .set(i64::from(held));
    }

    /// Counts an acknowledged message.
    pub fn published(&self, topic: &str, change: &str) {
        self.messages
            .get_or_create(&PublishedLabels {
                topic: topic.to_owned(),
                change: change.to_owned(),
            })
            .inc();
    }
}
