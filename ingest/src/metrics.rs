//! Ingest's metrics, named once here and updated beside the log lines that explain them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::atomic::AtomicU64;

use spectra_core::telemetry::Metrics;

/// Labels naming a topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// Topic name.
    pub topic: String,
}

/// Labels naming a topic partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: String,
}

/// Labels of a rejection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// Topic name.
    pub topic: String,
    /// Reason class (`not_json`, `missing_field`, `bad_date`…).
    pub reason: String,
}

/// Labels of invoice value by the currency it arrived in.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CurrencyLabels {
    /// The currency code as sent (upper-case; the base for lines without one), or
    /// `as_sent` when no base currency is configured.
    pub currency: String,
}

/// Labels of an offset-domain refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainLabels {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: String,
    /// `cluster_changed`, `retention_gap`, `topic_recreated`, `offset_reset`.
    pub reason: String,
}

/// Every ingest metric.
#[derive(Clone)]
pub struct IngestMetrics {
    /// Messages read from Kafka, per topic.
    pub messages_read: Family<TopicLabels, Counter>,
    /// Rows durably written to Parquet, per topic (invoice lines, master records).
    pub rows_written: Family<TopicLabels, Counter>,
    /// Net value of the invoice lines made durable, in the base currency, by the
    /// currency the lines arrived in (returns subtract).
    pub net_value: Family<CurrencyLabels, Gauge<f64, AtomicU64>>,
    /// Messages sent to the dead-letter topic, per source topic and reason.
    pub rejected: Family<RejectLabels, Counter>,
    /// Parquet objects written.
    pub objects_written: Counter,
    /// Seconds from a batch's flush decision to its checkpoint being durable.
    pub flush_seconds: Histogram,
    /// Messages behind the end of the partition.
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// Half-written batches removed at start-up (after a crash).
    pub recovered_batches: Counter,
    /// Failed attempts at making a batch durable (storage or DLQ), each retried.
    pub write_retries: Counter,
    /// Rejected messages too large for the dead-letter topic, sent as truncated copies.
    pub dead_letters_truncated: Counter,
    /// Batches dropped because another process took the partition's lease.
    pub fenced_batches: Counter,
    /// Partitions stopped because their offsets are not the ones the checkpoint counts.
    pub offset_domain_errors: Family<DomainLabels, Counter>,
    /// Times the consumer paused its partitions because the writer fell behind.
    pub backpressure_pauses: Counter,
}

impl IngestMetrics {
    /// Creates the metrics and registers them.
    pub fn register(m: &Metrics) -> Self {
        let s = Self {
            messages_read: Family::default(),
            rows_written: Family::default(),
            net_value: Family::default(),
            rejected: Family::default(),
            objects_written: Counter::default(),
            flush_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            consumer_lag: Family::default(),
            recovered_batches: Counter::default(),
            write_retries: Counter::default(),
            dead_letters_truncated: Counter::default(),
            fenced_batches: Counter::default(),
            offset_domain_errors: Family::default(),
            backpressure_pauses: Counter::default(),
        };
        let mut r = m.registry();
        let r = r.sub_registry_with_prefix("ingest");
        r.register(
            "messages_read",
            "Messages read from Kafka",
            s.messages_read.clone(),
        );
        r.register(
            "rows_written",
            "Rows durably written to Parquet",
            s.rows_written.clone(),
        );
        r.register(
            "net_value",
            "Net value of the invoice lines durably written, in the base currency (ingest.currency.base), by the currency they arrived in",
            s.net_value.clone(),
        );
        r.register(
            "messages_rejected",
            "Messages sent to the dead-letter topic, by reason",
            s.rejected.clone(),
        );
        r.register(
            "objects_written",
            "Parquet objects written",
            s.objects_written.clone(),
        );
        r.register(
            "flush_seconds",
            "Flush latency: batch closed to checkpoint durable",
            s.flush_seconds.clone(),
        );
        r.register(
            "consumer_lag",
            "Messages behind the end of the partition",
            s.consumer_lag.clone(),
        );
        r.register(
            "recovered_batches",
            "Half-written batches removed after a crash",
            s.recovered_batches.clone(),
        );
        r.register(
            "write_retries",
            "Failed attempts at making a batch durable (storage or dead-letter topic), retried with backoff",
            s.write_retries.clone(),
        );
        r.register(
            "dead_letters_truncated",
            "Rejected messages too large for the dead-letter topic, sent as truncated copies",
            s.dead_letters_truncated.clone(),
        );
        r.register(
            "fenced_batches",
            "Batches dropped because another ingest process took the partition's lease (replayed by it)",
            s.fenced_batches.clone(),
        );
        r.register(
            "offset_domain_errors",
            "Partitions stopped because the broker's offsets are not the ones the checkpoint counts (see README: Offset domain)",
            s.offset_domain_errors.clone(),
        );
        r.register(
            "backpressure_pauses",
            "Times the consumer paused its partitions while storage writes fell behind",
            s.backpressure_pauses.clone(),
        );
        s
    }
}
