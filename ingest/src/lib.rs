//! `spectra ingest`: invoices and master data from Kafka into raw Parquet, exactly once.
//!
//! Accepted lines land in `raw/invoices/date=…/`, master data in `master/outlets/` and
//! `master/skus/`, bad messages on the dead-letter topic with the contract's headers.
//! Offsets are stored with the writes under a per-partition lease (see [`writer`]), so
//! neither a crash at any instant nor a second ingest process (a second pod, a member
//! evicted during a storage stall while its writer still writes) loses a line or
//! stores it twice, and offsets that no longer mean what the checkpoint counted (a
//! recreated topic, a retention gap) stop the partition loudly instead of skipping. [`load`] is `spectra load`: files onto the
//! input topics.

pub mod batch;
pub mod consumer;
pub mod generate;
pub mod load;
pub mod metrics;
pub mod writer;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use spectra_core::kafka::{client_config, ensure_topics, Retention};
use spectra_core::service::Context;
use spectra_core::{Config, Storage};

use crate::batch::TopicKind;
use crate::metrics::IngestMetrics;
use crate::writer::BatchWriter;

/// Errors of the ingest crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage or configuration (from the core crate).
    #[error(transparent)]
    Core(#[from] spectra_core::Error),
    /// A topic is missing or Kafka refused a request.
    #[error(transparent)]
    Topics(#[from] spectra_core::kafka::KafkaError),
    /// The Kafka client failed (an external system: retried where it makes sense).
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// A rejected message could not be delivered to the dead-letter topic.
    #[error("could not deliver a rejected message to the dead-letter topic `{topic}`: {source}")]
    DeadLetter {
        /// The dead-letter topic.
        topic: String,
        /// The producer's error.
        source: rdkafka::error::KafkaError,
    },
    /// A partition's offsets are not the ones its checkpoint counts (see
    /// [`writer`]'s "offset domain").
    #[error("{topic}:{partition}: offset domain mismatch ({reason}): {detail}. Nothing of the partition was skipped; ingest of it stopped. To re-ingest deliberately, stop ingest and run `spectra ingest --reset-checkpoint {topic}:{partition}` (README: \"Offset domain\")")]
    OffsetDomain {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// `cluster_changed`, `retention_gap`, `topic_recreated`, `offset_reset`.
        reason: &'static str,
        /// What was found.
        detail: String,
    },
    /// A file given to `spectra load` could not be read or mapped.
    #[error("{0}")]
    Load(String),
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    /// True for a failure of an external system that a retry may mend (storage, the
    /// broker); false for one that needs a person (a missing topic, bad configuration,
    /// a file that cannot be read).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Core(e) => e.is_transient(),
            Error::Topics(spectra_core::kafka::KafkaError::MissingTopic { .. }) => false,
            Error::Topics(_) | Error::Client(_) | Error::DeadLetter { .. } => true,
            Error::Load(_) | Error::Io { .. } | Error::OffsetDomain { .. } => false,
        }
    }
}

/// How `run` behaves.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Exit once every assigned partition reached the end it had when assigned.
    pub once: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages read.
    pub messages: u64,
    /// Rows appended (invoice lines and master records).
    pub rows: u64,
    /// Messages sent to the dead-letter topic.
    pub rejected: u64,
}

impl Summary {
    /// Counts the rows and dead letters of a batch handed to the writer (a batch
    /// discarded on revocation is read again by the partition's next owner).
    pub(crate) fn count(&mut self, job: &batch::FlushJob) {
        self.rows += job.rows as u64;
        self.rejected += job.dead.len() as u64;
    }
}

/// `spectra ingest --reset-checkpoint TOPIC[:PARTITION]`: forgets the checkpoints of a
/// topic (or one partition) so that the next ingest re-reads it from its beginning, as a
/// deliberate answer to an offset-domain refusal. Returns what was reset, one line per
/// partition.
pub async fn reset_checkpoint(cfg: &Config, spec: &str) -> Result<Vec<String>, Error> {
    let storage = Storage::from_url(&cfg.storage.url)?;
    let (topic, partition) = match spec.rsplit_once(':') {
        Some((t, p)) => (
            t,
            Some(p.parse::<i32>().map_err(|_| {
                Error::Load(format!(
                    "--reset-checkpoint {spec}: `{p}` is not a partition number"
                ))
            })?),
        ),
        None => (spec, None),
    };
    writer::reset_checkpoint(&storage, topic, partition).await
}

/// Runs the ingest service until shutdown (or until caught up, with `--once`).
pub async fn run(cfg: Config, ctx: Context, opts: IngestOptions) -> Result<Summary, Error> {
    let storage = Storage::from_url(&cfg.storage.url)?;
    // Fencing relies on conditional writes: a store that ignores them is refused here.
    storage
        .verify_conditional_puts(&format!("ingest-{}", std::process::id()))
        .await?;
    let t = &cfg.kafka.topics;
    ensure_topics(
        &cfg,
        &[
            (t.invoices.as_str(), Retention::Delete),
            (t.outlets.as_str(), Retention::Compact),
            (t.skus.as_str(), Retention::Compact),
            (t.dlq.as_str(), Retention::Delete),
        ],
    )
    .await?;
    let metrics = IngestMetrics::register(&ctx.metrics);
    for topic in [&t.invoices, &t.outlets, &t.skus] {
        // Show every topic's series from the start, at 0, rather than after its first flush.
        let _ = metrics.rows_written.get_or_create(&metrics::TopicLabels {
            topic: topic.clone(),
        });
    }
    ctx.health.register("ingest");

    let dlq: FutureProducer = client_config(&cfg)
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5")
        .create()?;
    let topics = vec![
        (t.invoices.clone(), TopicKind::Invoices),
        (t.outlets.clone(), TopicKind::Outlets),
        (t.skus.clone(), TopicKind::Skus),
    ];
    let (shared, rx) = consumer::shared(
        topics.clone(),
        tokio::runtime::Handle::current(),
        metrics.clone(),
        ctx.shutdown.clone(),
        opts.once,
    );
    let writer = BatchWriter {
        storage,
        dlq,
        dlq_topic: t.dlq.clone(),
        dlq_max_message_bytes: cfg.ingest.dlq_max_message_bytes,
        attempts: cfg.ingest.write_attempts,
        metrics,
        shutdown: ctx.shutdown.clone(),
    };
    // The broker's side of the offset domain, asked by the writer thread (never the
    // poll thread): the cluster id and each partition's low watermark.
    let meta: BaseConsumer = client_config(&cfg).create()?;
    let facts: consumer::FactsFn = Box::new(move |topic: &str, partition: i32| {
        let t = std::time::Duration::from_secs(5);
        let low = match meta.fetch_watermarks(topic, partition, t) {
            Ok((low, _high)) => Some(low),
            Err(e) => {
                tracing::warn!(topic, partition, error = %e, "cannot read the low watermark; the retention-gap check is skipped");
                None
            }
        };
        writer::KafkaFacts {
            cluster_id: meta.client().fetch_cluster_id(t),
            low_watermark: low,
        }
    });
    let writer_thread = consumer::spawn_writer(
        writer,
        rx,
        shared.clone(),
        facts,
        cfg.ingest.group_id.clone(),
    );

    let session = cfg.kafka.session_timeout_ms;
    let c: BaseConsumer<consumer::IngestContext> = client_config(&cfg)
        .set("group.id", &cfg.ingest.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("session.timeout.ms", session.to_string())
        .set(
            "heartbeat.interval.ms",
            (session / 3).clamp(100, 3000).to_string(),
        )
        .set("fetch.wait.max.ms", cfg.kafka.fetch_wait_max_ms.to_string())
        // When a partition's local queue is over `queued.min.messages` (a fetch can
        // bring tens of thousands of lines), librdkafka stops fetching from the broker
        // for this long. Its default, 1 s, left ingest idle most of each second once
        // the queue drained (bench/ingest/RESULTS.md); 10 ms resumes as soon as there
        // is room.
        .set("fetch.queue.backoff.ms", "10")
        .set(
            "statistics.interval.ms",
            if opts.once { "500" } else { "5000" },
        )
        .create_with_context(consumer::context(shared.clone()))?;
    let names: Vec<&str> = topics.iter().map(|(n, _)| n.as_str()).collect();
    c.subscribe(&names)?;
    ctx.health.set_ready("ingest", true);
    tracing::info!(topics = ?names, group = %cfg.ingest.group_id, once = opts.once, "ingest started");

    let ingest_cfg = cfg.ingest.clone();
    let fence_retry = std::time::Duration::from_millis(2 * u64::from(session));
    let health = ctx.health.clone();
    let result = tokio::task::spawn_blocking(move || {
        let r = consumer::poll_loop(&c, &shared, &opts, &ingest_cfg, fence_retry);
        health.set_ready("ingest", false);
        c.unsubscribe();
        drop(c);
        drop(shared);
        r
    })
    .await
    .expect("poll loop does not panic");
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    if let Ok(s) = &result {
        tracing::info!(
            messages = s.messages,
            rows = s.rows,
            rejected = s.rejected,
            "ingest stopped"
        );
    }
    result
}
