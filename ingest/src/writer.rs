//! Making a batch durable, fenced against a second writer of the same partition.
//!
//! # The partition state: checkpoint, lease and intent in one object
//!
//! Each topic partition has one state object, `state/ingest/checkpoints/{topic}/{p}.json`
//! ([`PartitionState`]): the next offset to read, the owner's lease epoch, the batch being
//! written (its intent), objects to remove, the offset domain it was read in (cluster
//! id, timestamp of the last stored message) and running totals. It is only ever
//! written with a conditional put against the version its writer read
//! ([`Storage::put_if`]), so of two writers racing from the same version exactly one
//! lands; the other learns it was fenced.
//!
//! # Owning a partition
//!
//! On assignment, [`acquire`] reads the state and writes it back with the epoch
//! bumped (epoch `e + 1`): from then on, every conditional write of the previous owner
//! (epoch `e`, perhaps still running: evicted during a storage stall, or a second pod)
//! fails. Only *after* the bump does the new owner delete the objects of the previous
//! owner's unfinished batch (named by its intent), so it never deletes objects a live
//! owner could still commit.
//!
//! # Writing a batch (owner of epoch `e`, state at version `v`)
//!
//! 1. the intent (first and last offset, object names) is put into the state: a
//!    conditional write at `v`: fenced → nothing was written, the batch is dropped;
//! 2. dead letters go to the DLQ topic (acknowledged by the broker);
//! 3. the objects are written. Their names carry the epoch
//!    (`{topic}-{p}-{first}-{last}-e{epoch}.parquet`), so two owners never write the
//!    same name, and a fenced owner's cleanup never touches the new owner's objects;
//! 4. the checkpoint (next offset, no intent) is a conditional write at the intent's
//!    version: fenced → the owner deletes the objects it just wrote and drops the batch.
//!    Unless an earlier attempt of this checkpoint landed though its answer was lost
//!    (a retried write): then the batch is committed, and the owner that took over
//!    resumed after it. The new owner records each unfinished batch it replays
//!    (`replayed`); a refused batch that the stored checkpoint covers and that is not
//!    among them keeps its objects.
//!
//! Why exact: an object is *committed* when the checkpoint write of its batch lands.
//! That write names the batch's last offset and happens under the lease, so committed
//! batches of a partition cover disjoint, contiguous offset ranges in order (each
//! owner starts at the checkpoint it acquired). An uncommitted object is removed by its
//! own writer (fenced at step 4), or by the next owner (its intent is in the state the
//! next owner bumped), and a put of a fenced writer that lands *after* the new owner's
//! delete (a request in flight during a stall) is still listed in `orphans` and
//! deleted again at every later acquisition and, [`ORPHAN_GRACE`] later, once more
//! before it is forgotten.
//! The state's type is defined in [`spectra_core::checkpoint`], where the aggregator
//! reads it: it rolls up only objects the state names neither as pending nor as
//! orphans, that is, committed ones.
//!
//! # The offset domain
//!
//! Offsets mean something only in one topic of one cluster. The state records the
//! cluster id and the timestamp of the last stored message; [`acquire`] refuses a
//! partition whose cluster id changed or whose broker low watermark is above the
//! checkpoint (a retention gap: messages expired before they were read), and the
//! consumer re-reads the last stored message before resuming: a different message
//! (the topic was recreated) or an offset below it (the topic's offsets went back)
//! stops the partition. Each refusal is counted in
//! `spectra_ingest_offset_domain_errors_total{topic,partition,reason}` and says how to
//! re-ingest deliberately (`spectra ingest --reset-checkpoint TOPIC[:PARTITION]`,
//! [`reset_checkpoint`]).

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rayon::prelude::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use spectra_core::checkpoint::sanitize;
pub use spectra_core::checkpoint::{
    checkpoint_path, Intent, Orphan, PartitionState, Replayed, REPLAYED_KEPT,
};
use spectra_core::schema::to_parquet;
use spectra_core::storage::{Condition, PutOutcome, Version};
use spectra_core::Storage;
use tokio_util::sync::CancellationToken;

use crate::batch::{DeadLetter, FlushJob};
use crate::metrics::{IngestMetrics, RejectLabels, TopicLabels};
use crate::Error;

mod letter;
use letter::Letter;

/// How long an orphan (an object of a fenced writer) is deleted again, at each
/// checkpoint after this age, before it is forgotten: far longer than a request of a
/// fenced writer can stay in flight (object_store gives up retrying after 3 minutes).
pub const ORPHAN_GRACE: Duration = Duration::from_secs(600);

/// Objects of one batch written at the same time.
const PARALLEL_PUTS: usize = 8;

/// The intent file of releases before leases (`state/ingest/pending/…`), honoured on
/// the first acquisition after an upgrade.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LegacyIntent {
    last: i64,
    objects: Vec<String>,
}

fn legacy_intent_path(topic: &str, partition: i32) -> String {
    format!("state/ingest/pending/{}/{partition}.json", sanitize(topic))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A partition this process owns: its state as last written, and the version to write
/// the next one against.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The assignment it was acquired for.
    pub generation: u64,
    /// The state as written.
    pub state: PartitionState,
    version: Version,
}

/// What the broker says about a partition's offsets, for [`acquire`]'s checks.
#[derive(Debug, Clone, Default)]
pub struct KafkaFacts {
    /// The cluster id (`None`: the broker did not say).
    pub cluster_id: Option<String>,
    /// The low watermark (first offset still in the log).
    pub low_watermark: Option<i64>,
}

/// Why a partition's offsets cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainError {
    /// `cluster_changed`, `retention_gap`, `topic_recreated`, `offset_reset`.
    pub reason: &'static str,
    /// What was found, for people.
    pub detail: String,
}

/// The outcome of [`acquire`].
#[derive(Debug)]
pub enum Acquired {
    /// The lease is ours (boxed: the state it holds is much larger than a refusal).
    Owned(Box<Lease>),
    /// The partition's offsets are not the ones the checkpoint counts: not owned, the
    /// state left unchanged.
    Refused(DomainError),
}

fn encode(rel: &str, state: &PartitionState) -> Result<Bytes, Error> {
    serde_json::to_vec_pretty(state)
        .map(Bytes::from)
        .map_err(|e| {
            Error::Core(spectra_core::Error::Json {
                path: rel.to_owned(),
                source: e,
            })
        })
}

fn decode(rel: &str, data: &[u8]) -> Result<PartitionState, Error> {
    serde_json::from_slice(data).map_err(|e| {
        Error::Core(spectra_core::Error::Json {
            path: rel.to_owned(),
            source: e,
        })
    })
}

/// Takes the lease of a partition (see the module docs): checks the offset domain,
/// bumps the epoch with a conditional write (fencing the previous owner), then deletes
/// what the previous owner left unfinished.
pub async fn acquire(
    storage: &Storage,
    topic: &str,
    partition: i32,
    generation: u64,
    owner: &str,
    facts: &KafkaFacts,
    metrics: &IngestMetrics,
) -> Result<Acquired, Error> {
    let rel = checkpoint_path(topic, partition);
    let legacy = storage
        .get_json::<LegacyIntent>(&legacy_intent_path(topic, partition))
        .await?;
    let lease = loop {
        let (state, cond) = match storage.get_versioned(&rel).await? {
            Some((b, v)) => (decode(&rel, &b)?, Condition::Matches(v)),
            None => (PartitionState::default(), Condition::Absent),
        };
        if let (Some(was), Some(now)) = (&state.cluster_id, &facts.cluster_id) {
            if was != now {
                return Ok(Acquired::Refused(DomainError {
                    reason: "cluster_changed",
                    detail: format!(
                        "the checkpoint (next offset {:?}) was written for Kafka cluster `{was}`, the brokers are cluster `{now}`",
                        state.next_offset
                    ),
                }));
            }
        }
        if let (Some(n), Some(low)) = (state.next_offset, facts.low_watermark) {
            if low > n {
                return Ok(Acquired::Refused(DomainError {
                    reason: "retention_gap",
                    detail: format!(
                        "the checkpoint's next offset is {n} but the broker's log now starts at {low}: messages {n}..{} expired before ingest read them",
                        low - 1
                    ),
                }));
            }
        }
        let mut new = state.clone();
        new.epoch = state.epoch + 1;
        new.owner = owner.to_owned();
        if new.cluster_id.is_none() {
            new.cluster_id = facts.cluster_id.clone();
        }
        let covered = |last: i64| state.next_offset.is_some_and(|n| n > last);
        let since_ms = now_ms();
        let mut unfinished = 0;
        if let Some(i) = new.pending.take() {
            if !covered(i.last) {
                unfinished += 1;
                new.replay(i, since_ms);
            }
        }
        if let Some(i) = &legacy {
            if !covered(i.last) {
                unfinished += 1;
                new.orphans.extend(i.objects.iter().map(|path| Orphan {
                    path: path.clone(),
                    since_ms,
                }));
            }
        }
        match storage.put_if(&rel, encode(&rel, &new)?, &cond).await? {
            PutOutcome::Written(version) => {
                if unfinished > 0 {
                    metrics.recovered_batches.inc_by(unfinished);
                }
                break Lease {
                    generation,
                    state: new,
                    version,
                };
            }
            // Another process took the lease between our read and write: read again
            // (the group gives the partition to one of us; the other is fenced).
            PutOutcome::Conflict => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    // Only now, holding the lease, remove what an earlier owner left unfinished.
    for o in &lease.state.orphans {
        storage.delete(&o.path).await?;
    }
    if legacy.is_some() {
        storage
            .delete(&legacy_intent_path(topic, partition))
            .await?;
    }
    if let Some(first) = lease.state.orphans.first() {
        tracing::warn!(
            topic,
            partition,
            objects = lease.state.orphans.len(),
            first = %first.path,
            "removed objects of an unfinished batch of an earlier owner; replaying it"
        );
    }
    tracing::info!(topic, partition, epoch = lease.state.epoch, next_offset = ?lease.state.next_offset, "lease taken");
    Ok(Acquired::Owned(Box::new(lease)))
}

/// What a conditional write of the state did.
enum Cas {
    Done,
    Fenced,
}

/// Writes `new` over the lease's state, conditional on the version the lease holds.
async fn cas(
    storage: &Storage,
    rel: &str,
    lease: &mut Lease,
    new: PartitionState,
) -> Result<Cas, Error> {
    let data = encode(rel, &new)?;
    match storage
        .put_if(rel, data, &Condition::Matches(lease.version.clone()))
        .await?
    {
        PutOutcome::Written(v) => {
            lease.version = v;
            lease.state = new;
            Ok(Cas::Done)
        }
        PutOutcome::Conflict => {
            // An earlier attempt of this very write may have landed though its answer
            // was lost (a retried request): only the holder of this epoch writes it. A
            // retry remade the state at another time, so the orphans it prunes may
            // differ: the stored one is taken as it is.
            if let Some((b, v)) = storage.get_versioned(rel).await? {
                if let Ok(stored) = decode(rel, &b) {
                    let same = |a: &PartitionState| PartitionState {
                        orphans: Vec::new(),
                        ..a.clone()
                    };
                    if same(&stored) == same(&new) {
                        lease.version = v;
                        lease.state = stored;
                        return Ok(Cas::Done);
                    }
                }
            }
            Ok(Cas::Fenced)
        }
    }
}

/// Resets partitions' checkpoints so that the next ingest re-reads them from the
/// beginning of the topic as it is now (after a refusal of the offset domain): the
/// epoch is bumped (fencing a running ingest), the offset and the recorded domain are
/// forgotten, the totals are kept. `partition: None` resets every partition with a
/// checkpoint. Returns one line per partition, saying what was reset.
pub async fn reset_checkpoint(
    storage: &Storage,
    topic: &str,
    partition: Option<i32>,
) -> Result<Vec<String>, Error> {
    let partitions: Vec<i32> = match partition {
        Some(p) => vec![p],
        None => storage
            .list(&format!("state/ingest/checkpoints/{}/", sanitize(topic)))
            .await?
            .iter()
            .filter_map(|l| {
                l.path
                    .rsplit('/')
                    .next()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect(),
    };
    let mut out = Vec::new();
    for p in partitions {
        let rel = checkpoint_path(topic, p);
        loop {
            let Some((b, v)) = storage.get_versioned(&rel).await? else {
                out.push(format!("{topic}:{p}: no checkpoint (nothing to reset)"));
                break;
            };
            let old = decode(&rel, &b)?;
            let mut new = old.clone();
            new.epoch += 1;
            new.owner = "reset-checkpoint".into();
            new.next_offset = None;
            new.last_timestamp_ms = None;
            new.cluster_id = None;
            if let Some(i) = new.pending.take() {
                new.replay(i, now_ms());
            }
            match storage
                .put_if(&rel, encode(&rel, &new)?, &Condition::Matches(v))
                .await?
            {
                PutOutcome::Written(_) => {
                    out.push(format!(
                        "{topic}:{p}: checkpoint reset (was next offset {:?}, cluster {:?}); the next ingest reads the partition from its beginning",
                        old.next_offset, old.cluster_id
                    ));
                    break;
                }
                PutOutcome::Conflict => continue,
            }
        }
    }
    Ok(out)
}

/// What [`BatchWriter::write`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Durable and checkpointed; the next offset to read.
    Committed(i64),
    /// Another owner holds the partition now: nothing of the batch remains.
    Fenced,
}

/// Writes batches durably (steps 1–4 above).
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
    /// Makes one batch durable under `lease`. Failures of an external system (storage,
    /// the broker) are retried with a doubling backoff, `attempts` times in all, each
    /// counted in `spectra_ingest_write_retries`; then, or at once for a failure no retry
    /// can mend (the dead-letter topic is missing), the error stops ingest loudly and
    /// the batch is replayed from the checkpoint by the next run. Being fenced is not an
    /// error: the batch is dropped (its new owner replays it).
    pub async fn write(&self, job: &FlushJob, lease: &mut Lease) -> Result<Written, Error> {
        let mut delay = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            match self.try_write(job, lease).await {
                Ok(w) => return Ok(w),
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

    async fn try_write(&self, job: &FlushJob, lease: &mut Lease) -> Result<Written, Error> {
        let rel = checkpoint_path(&job.topic, job.partition);
        if job.epoch != lease.state.epoch {
            return Ok(Written::Fenced);
        }
        let objects: Vec<String> = job.objects.iter().map(|(p, _)| p.clone()).collect();
        if !objects.is_empty() || !job.dead.is_empty() {
            let intent = Intent {
                epoch: job.epoch,
                first: job.first,
                last: job.last,
                objects: objects.clone(),
            };
            if lease.state.pending.as_ref() != Some(&intent) {
                let mut new = lease.state.clone();
                new.pending = Some(intent);
                if let Cas::Fenced = cas(&self.storage, &rel, lease, new).await? {
                    return Ok(self.fenced(job, &[]).await);
                }
            }
        }
        self.send_dead_letters(&job.dead).await?;
        // A batch spans many days (one object each): encode them on every core and
        // write them side by side — each durable write waits on its own sync.
        let encoded: Vec<(&String, Bytes)> = job
            .objects
            .par_iter()
            .map(|(path, batches)| {
                // The parse pool's chunks each gave a record batch of this object's
                // rows, in read order: the object is encoded from them as one.
                let schema = batches[0].schema();
                let rows = arrow::compute::concat_batches(&schema, batches)
                    .map_err(spectra_core::Error::from)?;
                Ok((path, to_parquet(schema, std::slice::from_ref(&rows))?))
            })
            .collect::<Result<_, Error>>()?;
        futures::stream::iter(encoded)
            .map(|(path, data)| async move {
                self.storage.put(path, data).await?;
                self.metrics.objects_written.inc();
                Ok::<_, Error>(())
            })
            .buffer_unordered(PARALLEL_PUTS)
            .try_collect::<Vec<()>>()
            .await?;
        let mut new = lease.state.clone();
        new.next_offset = Some(job.last + 1);
        new.last_timestamp_ms = Some(job.last_timestamp_ms);
        new.pending = None;
        new.lines_written += job.rows as u64;
        new.messages_written += job.messages;
        new.dead_letters += job.dead.len() as u64;
        let aged = now_ms() - ORPHAN_GRACE.as_millis() as i64;
        if new.orphans.iter().any(|o| o.since_ms < aged) {
            for o in new.orphans.iter().filter(|o| o.since_ms < aged) {
                self.storage.delete(&o.path).await?;
            }
            new.orphans.retain(|o| o.since_ms >= aged);
        }
        if let Cas::Fenced = cas(&self.storage, &rel, lease, new).await? {
            if self.committed_before_fenced(&rel, job).await? {
                return Ok(Written::Fenced);
            }
            return Ok(self.fenced(job, &objects).await);
        }
        self.metrics
            .rows_written
            .get_or_create(&TopicLabels {
                topic: job.topic.clone(),
            })
            .inc_by(job.rows as u64);
        for (currency, value) in &job.value_by_currency {
            self.metrics
                .net_value
                .get_or_create(&crate::metrics::CurrencyLabels {
                    currency: currency.clone(),
                })
                .inc_by(*value);
        }
        self.metrics
            .flush_seconds
            .observe(job.closed.elapsed().as_secs_f64());
        tracing::debug!(topic = %job.topic, partition = job.partition, first = job.first,
            last = job.last, rows = job.rows, objects = job.objects.len(), "batch durable");
        Ok(Written::Committed(job.last + 1))
    }

    /// Whether a batch whose checkpoint was refused is committed all the same: an
    /// earlier attempt of the checkpoint landed though its answer was lost, and the
    /// owner that took the partition since resumed after it. Its objects are then the
    /// only copy of its lines and must stay. The new owner records every batch it
    /// found unfinished and replays ([`PartitionState::replayed`]): a batch covered by
    /// the stored offset and not among them was committed by its own writer (its intent
    /// had landed, so an owner that acquired before the checkpoint saw it unfinished).
    async fn committed_before_fenced(&self, rel: &str, job: &FlushJob) -> Result<bool, Error> {
        let Some(b) = self.storage.get(rel).await? else {
            return Ok(false);
        };
        let stored = decode(rel, &b)?;
        let replayed = stored
            .replayed
            .iter()
            .any(|r| (r.epoch, r.first, r.last) == (job.epoch, job.first, job.last));
        let committed = stored.next_offset.is_some_and(|n| n > job.last) && !replayed;
        if committed {
            tracing::warn!(topic = %job.topic, partition = job.partition, epoch = job.epoch,
                first = job.first, last = job.last,
                "fenced after an earlier attempt of the checkpoint landed: the batch is committed and its objects stay");
        }
        Ok(committed)
    }

    /// Another owner took the partition: remove what this batch wrote (names of this
    /// epoch: no other owner writes them) and drop it.
    async fn fenced(&self, job: &FlushJob, written: &[String]) -> Written {
        self.metrics.fenced_batches.inc();
        for o in written {
            if let Err(e) = self.storage.delete(o).await {
                // The new owner's orphan list covers it (it was named in our intent).
                tracing::warn!(object = %o, error = %e, "could not remove an object of a fenced batch");
            }
        }
        tracing::warn!(topic = %job.topic, partition = job.partition, epoch = job.epoch,
            first = job.first, last = job.last,
            "fenced: another ingest process owns the partition now; batch dropped (it replays it)");
        Written::Fenced
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

#[cfg(test)]
mod fencing_tests;
