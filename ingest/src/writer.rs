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
    /// Largest dead letter sent whole; larger ones go as truncated copies.
    pub dlq_max_message_bytes: usize,
    /// Attempts at one batch before giving up.
    pub attempts: u32,
    /// Metrics.
    pub metrics: IngestMetrics,
    /// Cancelled on shutdown: stop retrying a failing external system.
    pub shutdown: CancellationToken,
}

impl BatchWriter {
    /// Makes one batch durable. Failures of an external system (storage, the broker)
    /// are retried with a doubling backoff, `attempts` times in all, each counted in
    /// `spectra_ingest_write_retries`; then, or at once for a failure no retry can mend
    /// (the dead-letter topic is missing), the error stops ingest loudly and the batch
    /// is replayed from the checkpoint by the next run.
    pub async fn write(&self, job: &FlushJob) -> Result<Checkpoint, Error> {
        let mut delay = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            match self.try_write(job).await {
                Ok(cp) => return Ok(cp),
                Err(e) if self.shutdown.is_cancelled() || !e.is_transient() => return Err(e),
                Err(e) if attempt >= self.attempts => {
                    tracing::error!(topic = %job.topic, partition = job.partition, error = %e,
                        attempts = attempt, "flush failed; giving up");
                    return Err(e);
                }
                Err(e) => {
                    self.metrics.write_retries.inc();
                    tracing::warn!(topic = %job.topic, partition = job.partition, error = %e,
                        attempt, retry_in_ms = delay.as_millis() as u64, "flush failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.cancelled() => return Err(e),
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                    attempt += 1;
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
        let letters: Vec<Letter<'_>> = dead
            .iter()
            .map(|d| Letter::of(d, self.dlq_max_message_bytes))
            .collect();
        let pending = letters.iter().map(|l| {
            let mut rec: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.dlq_topic).headers(l.headers());
            if let Some(k) = l.key {
                rec = rec.key(k);
            }
            if let Some(v) = l.value {
                rec = rec.payload(v);
            }
            self.dlq.send(rec, Duration::from_secs(30))
        });
        let results = futures::future::join_all(pending).await;
        for ((f, d), l) in results.into_iter().zip(dead).zip(&letters) {
            f.map_err(|(e, _)| self.dead_letter_error(e))?;
            if l.original.is_some() {
                self.metrics.dead_letters_truncated.inc();
            }
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

    /// A failed delivery to the dead-letter topic, classified: a missing topic is
    /// named (no retry mends it); anything else is the broker's, retried.
    fn dead_letter_error(&self, e: rdkafka::error::KafkaError) -> Error {
        use rdkafka::types::RDKafkaErrorCode as C;
        match e.rdkafka_error_code() {
            Some(C::UnknownTopicOrPartition | C::UnknownTopic) => {
                Error::Topics(spectra_core::kafka::KafkaError::MissingTopic {
                    topic: self.dlq_topic.clone(),
                    brokers: "the configured brokers".into(),
                })
            }
            _ => Error::DeadLetter {
                topic: self.dlq_topic.clone(),
                source: e,
            },
        }
    }
}

/// A dead letter as sent: the rejected bytes unchanged, or, when key, value and headers
/// would pass `max` bytes, a truncated copy whose headers give the original's size and
/// SHA-256 so it can be found and matched at the source.
struct Letter<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    error: &'a str,
    source: &'a str,
    /// `(size of the value, its SHA-256 in hex)` when truncated.
    original: Option<(usize, String)>,
}

/// Room kept for the headers of a truncated copy and the record's own framing.
const HEADER_ROOM: usize = 1024;

impl<'a> Letter<'a> {
    fn of(d: &'a DeadLetter, max: usize) -> Self {
        let key = d.key.as_deref();
        let value = d.value.as_deref();
        let size = key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
        // The reason is at most a few hundred bytes (it quotes at most 40 characters of
        // a field), but bound it anyway: it is built from the message.
        let error = truncate_utf8(&d.error, 512);
        if size + error.len() + d.source.len() + HEADER_ROOM <= max {
            return Self {
                key,
                value,
                error,
                source: &d.source,
                original: None,
            };
        }
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(value.unwrap_or_default());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let room = max.saturating_sub(error.len() + d.source.len() + 2 * HEADER_ROOM);
        let key = key.map(|k| &k[..k.len().min(room / 4)]);
        let room = room - key.map_or(0, <[u8]>::len);
        Self {
            key,
            value: value.map(|v| &v[..v.len().min(room)]),
            error,
            source: &d.source,
            original: Some((value.map_or(0, <[u8]>::len), hex)),
        }
    }

    fn headers(&self) -> OwnedHeaders {
        let mut h = OwnedHeaders::new()
            .insert(Header {
                key: "spectra-error",
                value: Some(self.error.as_bytes()),
            })
            .insert(Header {
                key: "spectra-source",
                value: Some(self.source.as_bytes()),
            });
        if let Some((size, sha)) = &self.original {
            let size = size.to_string();
            h = h
                .insert(Header {
                    key: "spectra-truncated",
                    value: Some(b"true".as_slice()),
                })
                .insert(Header {
                    key: "spectra-original-size",
                    value: Some(size.as_bytes()),
                })
                .insert(Header {
                    key: "spectra-original-sha256",
                    value: Some(sha.as_bytes()),
                });
        }
        h
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(value: Vec<u8>) -> DeadLetter {
        DeadLetter {
            key: Some(b"PL-1".to_vec()),
            value: Some(value),
            error: "net_value is not a finite number".into(),
            source: "invoices/0/7".into(),
            class: "bad_number",
        }
    }

    #[test]
    fn small_dead_letters_go_unchanged() {
        let d = letter(b"{\"x\":1}".to_vec());
        let l = Letter::of(&d, 10_000);
        assert_eq!(l.value, d.value.as_deref());
        assert_eq!(l.key, d.key.as_deref());
        assert!(l.original.is_none());
    }

    #[test]
    fn a_poison_pill_is_truncated_with_its_size_and_digest() {
        let big = vec![b'x'; 5_000_000];
        let d = letter(big.clone());
        let l = Letter::of(&d, 100_000);
        let v = l.value.unwrap();
        assert!(v.len() < 100_000 && v.len() > 90_000, "{}", v.len());
        assert_eq!(v, &big[..v.len()]);
        let (size, sha) = l.original.clone().unwrap();
        assert_eq!(size, 5_000_000);
        use sha2::Digest as _;
        let want: String = sha2::Sha256::digest(&big)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, want);
        let h = l.headers();
        use rdkafka::message::Headers as _;
        let names: Vec<_> = h.iter().map(|h| h.key.to_owned()).collect();
        assert_eq!(
            names,
            [
                "spectra-error",
                "spectra-source",
                "spectra-truncated",
                "spectra-original-size",
                "spectra-original-sha256"
            ]
        );
    }
}
