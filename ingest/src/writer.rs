//! Making a batch durable, in an order that survives a crash at any instant:
//!
//! 1. dead letters are delivered to the DLQ topic (acknowledged by the broker);
//! 2. an intent naming the batch's objects is written (`state/ingest/pending/…`);
//! 3. the objects are written;
//! 4. the partition's checkpoint (next offset) is written (`state/ingest/checkpoints/…`);
//! 5. the intent is deleted; the Kafka offset commit follows (it only feeds lag metrics).
//!
//! On (re)assignment [`recover`] reads the checkpoint; an intent whose batch the
//! checkpoint does not cover is a half-written batch, and its objects are deleted before
//! the partition is replayed from the checkpoint. Replay rebuilds batches from the same
//! offsets, and object names derive from offsets, so no line is ever stored twice.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use spectra_core::schema::to_parquet;
use spectra_core::Storage;
use tokio_util::sync::CancellationToken;

use crate::batch::{sanitize, DeadLetter, FlushJob};
use crate::metrics::{IngestMetrics, RejectLabels, TopicLabels};
use crate::Error;

/// The durable position of a partition.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    /// The next offset to read.
    pub next_offset: i64,
}

/// A batch about to be written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intent {
    /// First offset of the batch.
    pub first: i64,
    /// Last offset of the batch.
    pub last: i64,
    /// Objects the batch writes.
    pub objects: Vec<String>,
}

fn checkpoint_path(topic: &str, partition: i32) -> String {
    format!(
        "state/ingest/checkpoints/{}/{partition}.json",
        sanitize(topic)
    )
}

fn intent_path(topic: &str, partition: i32) -> String {
    format!("state/ingest/pending/{}/{partition}.json", sanitize(topic))
}

/// Reads a partition's checkpoint and removes a half-written batch, if any.
/// Returns the offset to resume from (`None`: never written, start at the beginning).
pub async fn recover(
    storage: &Storage,
    topic: &str,
    partition: i32,
    metrics: &IngestMetrics,
) -> Result<Option<i64>, Error> {
    let cp: Option<Checkpoint> = storage.get_json(&checkpoint_path(topic, partition)).await?;
    let next = cp.map(|c| c.next_offset);
    if let Some(intent) = storage
        .get_json::<Intent>(&intent_path(topic, partition))
        .await?
    {
        let completed = next.is_some_and(|n| n > intent.last);
        if !completed {
            for o in &intent.objects {
                storage.delete(o).await?;
            }
            metrics.recovered_batches.inc();
            tracing::warn!(
                topic,
                partition,
                first = intent.first,
                last = intent.last,
                objects = intent.objects.len(),
                "removed a half-written batch left by a crash; replaying it"
            );
        }
        storage.delete(&intent_path(topic, partition)).await?;
    }
    Ok(next)
}

/// Writes batches durably (steps 1–5 above).
pub struct BatchWriter {
    /// Where tables live.
    pub storage: Storage,
    /// Producer for the dead-letter topic.
    pub dlq: FutureProducer,
    /// Dead-letter topic name.
    pub dlq_topic: String,
    /// Metrics.
    pub metrics: IngestMetrics,
    /// Cancelled on shutdown: stop retrying a failing external system.
    pub shutdown: CancellationToken,
}

impl BatchWriter {
    /// Makes one batch durable, retrying external failures with backoff until it
    /// succeeds or shutdown is requested.
    pub async fn write(&self, job: &FlushJob) -> Result<Checkpoint, Error> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.try_write(job).await {
                Ok(cp) => return Ok(cp),
                Err(e) if self.shutdown.is_cancelled() => return Err(e),
                Err(e) => {
                    tracing::warn!(topic = %job.topic, partition = job.partition, error = %e,
                        retry_in_ms = delay.as_millis() as u64, "flush failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn try_write(&self, job: &FlushJob) -> Result<Checkpoint, Error> {
        self.send_dead_letters(&job.dead).await?;
        let cp = Checkpoint {
            next_offset: job.last + 1,
        };
        if !job.objects.is_empty() {
            let intent = Intent {
                first: job.first,
                last: job.last,
                objects: job.objects.iter().map(|(p, _)| p.clone()).collect(),
            };
            self.storage
                .put_json(&intent_path(&job.topic, job.partition), &intent)
                .await?;
            for (path, batch) in &job.objects {
                let data = to_parquet(batch.schema(), std::slice::from_ref(batch))?;
                self.storage.put(path, data).await?;
                self.metrics.objects_written.inc();
            }
        }
        self.storage
            .put_json(&checkpoint_path(&job.topic, job.partition), &cp)
            .await?;
        if !job.objects.is_empty() {
            self.storage
                .delete(&intent_path(&job.topic, job.partition))
                .await?;
        }
        self.metrics
            .rows_written
            .get_or_create(&TopicLabels {
                topic: job.topic.clone(),
            })
            .inc_by(job.rows as u64);
        self.metrics
            .flush_seconds
            .observe(job.closed.elapsed().as_secs_f64());
        tracing::debug!(topic = %job.topic, partition = job.partition, first = job.first,
            last = job.last, rows = job.rows, objects = job.objects.len(), "batch durable");
        Ok(cp)
    }

    async fn send_dead_letters(&self, dead: &[DeadLetter]) -> Result<(), Error> {
        let mut pending = Vec::with_capacity(dead.len());
        for d in dead {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "spectra-error",
                    value: Some(d.error.as_bytes()),
                })
                .insert(Header {
                    key: "spectra-source",
                    value: Some(d.source.as_bytes()),
                });
            let mut rec: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.dlq_topic).headers(headers);
            if let Some(k) = &d.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &d.value {
                rec = rec.payload(v.as_slice());
            }
            pending.push(self.dlq.send(rec, Duration::from_secs(30)));
        }
        for (f, d) in futures::future::join_all(pending)
            .await
            .into_iter()
            .zip(dead)
        {
            f.map_err(|(e, _)| Error::DeadLetter {
                topic: self.dlq_topic.clone(),
                source: e,
            })?;
            self.metrics
                .rejected
                .get_or_create(&RejectLabels {
                    topic: d.source.split('/').next().unwrap_or_default().to_owned(),
                    reason: d.class.to_owned(),
                })
                .inc();
        }
        Ok(())
    }
}
