//! The consume loop: one thread polls Kafka, takes messages into per-partition
//! batches (which parse them a chunk at a time on their own pool of threads, see
//! [`crate::batch`]) and hands closed batches to a writer thread, which makes them durable under
//! the partition's lease ([`crate::writer`]) and reports the offsets to commit.
//!
//! The poll thread never waits on storage, so a storage stall cannot evict this member
//! from the group:
//! - on assignment, partitions are assigned *paused*; the writer thread takes each
//!   partition's lease and reads its checkpoint, and the poll loop then seeks to it and
//!   resumes (after re-reading the last stored message, to check the offset domain);
//! - on revocation (or a lost assignment) the partitions' open batches are discarded
//!   and the partitions forgotten: the writer drops queued batches of an assignment
//!   that is over (their next owner replays them from the checkpoint), and a batch
//!   already being written either lands before the next owner takes the lease or is
//!   fenced by it;
//! - when the writer falls behind, the partitions are paused (and resumed when it
//!   caught up) while polling goes on.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;

use spectra_core::config::IngestConfig;
use spectra_core::message::Limits;
use spectra_core::status::PartitionStatus;

use crate::batch::{FlushJob, PartitionBatch, TopicKind};
use crate::metrics::{DomainLabels, IngestMetrics, PartitionLabels, TopicLabels};
use crate::writer::{acquire, Acquired, BatchWriter, DomainError, KafkaFacts, Lease, Written};
use crate::{Error, IngestOptions, Summary};

mod context;
mod writer_thread;
pub use context::{context, IngestContext};
pub use writer_thread::{spawn_writer, FactsFn};

/// Closed batches waiting for the writer above which the partitions are paused.
const MAX_QUEUED_JOBS: usize = 4;

/// What the writer thread receives.
pub enum WriterMsg {
    /// Take the lease of a partition for an assignment.
    Acquire {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The assignment.
        generation: u64,
    },
    /// A batch to make durable.
    Job(FlushJob),
    /// Reply once every earlier job is durable.
    Barrier(SyncSender<()>),
    /// Every job is done: the thread exits.
    Stop,
}

/// What the writer tells the poll loop.
enum Event {
    Acquired {
        key: (usize, i32),
        generation: u64,
        epoch: u64,
        next: Option<i64>,
        last_timestamp_ms: Option<i64>,
    },
    Fenced {
        key: (usize, i32),
        generation: u64,
    },
    Refused {
        key: (usize, i32),
        generation: u64,
        error: DomainError,
    },
}

/// Where an owned partition stands.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Assigned (paused); the writer is taking the lease.
    Acquiring,
    /// The lease is ours; seek to `to`, then verify (the message at this offset must
    /// carry this timestamp) or read.
    Seek {
        to: Offset,
        verify: Option<(i64, i64)>,
    },
    /// Waiting for the message at `offset` (the last stored), whose timestamp must be
    /// `timestamp_ms`.
    Verifying { offset: i64, timestamp_ms: i64 },
    /// Reading.
    Ready,
    /// Another process took the lease; the lease is taken again after a while if the
    /// group still gives the partition to this process.
    Fenced { since: Instant },
    /// Stopped: the offset domain does not match the checkpoint.
    Stopped,
}

/// A partition this consumer owns.
#[derive(Debug, Clone)]
struct Owned {
    generation: u64,
    phase: Phase,
    epoch: u64,
    /// The next offset to take (`None`: from the beginning).
    next_offset: Option<i64>,
    /// The checkpoint the lease was taken at.
    checkpoint: Option<i64>,
    end: Option<i64>,
}

/// State shared by the poll loop, the rebalance callback and the writer.
pub struct Shared {
    topics: Vec<(String, TopicKind)>,
    batches: Mutex<HashMap<(usize, i32), PartitionBatch>>,
    owned: Mutex<HashMap<(usize, i32), Owned>>,
    paused: Mutex<HashSet<(usize, i32)>>,
    to_writer: Sender<WriterMsg>,
    queued: AtomicUsize,
    events: Mutex<Vec<Event>>,
    committable: Mutex<Vec<(String, i32, i64)>>,
    fatal: Mutex<Option<Error>>,
    high_watermarks: Mutex<HashMap<(usize, i32), i64>>,
    stopped: Mutex<HashMap<(usize, i32), String>>,
    generation: AtomicU64,
    handle: Handle,
    metrics: IngestMetrics,
    shutdown: tokio_util::sync::CancellationToken,
    once: bool,
}

impl Shared {
    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.topics.iter().position(|(t, _)| t == topic)
    }

    fn send_job(&self, job: FlushJob) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.to_writer.send(WriterMsg::Job(job)).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// True when the assignment `generation` of `key` is still current.
    fn current(&self, key: (usize, i32), generation: u64) -> bool {
        self.owned
            .lock()
            .expect("owned lock")
            .get(&key)
            .is_some_and(|o| o.generation == generation)
    }

    /// Closes the batches of every partition being read, sends them to the writer and
    /// waits until they are durable (at the end of a run only).
    fn flush_and_wait(&self, summary: &mut Summary) {
        let jobs: Vec<FlushJob> = {
            let mut b = self.batches.lock().expect("batches lock");
            b.drain().map(|(_, v)| v.close()).collect()
        };
        for j in jobs {
            summary.count(&j);
            self.send_job(j);
        }
        let (tx, rx) = sync_channel(1);
        if self.to_writer.send(WriterMsg::Barrier(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Stops a partition whose offsets do not match its checkpoint: loudly, counted,
    /// with what to do; with `--once`, ingest ends with the error.
    fn refuse(&self, key: (usize, i32), error: DomainError) {
        let topic = &self.topics[key.0].0;
        let (partition, reason) = (key.1, error.reason);
        self.metrics
            .offset_domain_errors
            .get_or_create(&DomainLabels {
                topic: topic.clone(),
                partition: partition.to_string(),
                reason: reason.to_owned(),
            })
            .inc();
        tracing::error!(topic, partition, reason, detail = %error.detail,
            "offset domain mismatch: ingest of this partition is stopped, nothing of it is skipped silently; \
             to re-ingest deliberately, stop ingest and run `spectra ingest --reset-checkpoint {topic}:{partition}`");
        if let Some(o) = self.owned.lock().expect("owned lock").get_mut(&key) {
            o.phase = Phase::Stopped;
        }
        self.batches.lock().expect("batches lock").remove(&key);
        self.stopped.lock().expect("stopped lock").insert(
            key,
            format!("stopped: offset domain ({reason}): {}", error.detail),
        );
        if self.once {
            let mut fatal = self.fatal.lock().expect("fatal lock");
            if fatal.is_none() {
                *fatal = Some(Error::OffsetDomain {
                    topic: topic.clone(),
                    partition,
                    reason,
                    detail: error.detail,
                });
            }
            self.shutdown.cancel();
        }
    }
}

fn commit(consumer: &BaseConsumer<IngestContext>, s: &Shared, mode: CommitMode) {
    let items: Vec<_> = std::mem::take(&mut *s.committable.lock().expect("commit lock"));
    if items.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in items {
        let _ = tpl.set_partition_offset(&t, p, Offset::Offset(o));
        if tpl.find_partition(&t, p).is_none() {
            let _ = tpl.add_partition_offset(&t, p, Offset::Offset(o));
        }
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        // Offsets live in storage checkpoints; the Kafka commit only feeds lag tooling.
        tracing::debug!(error = %e, "offset commit failed (storage checkpoint is authoritative)");
    }
}

/// Builds the shared state and the channel to the writer.
pub fn shared(
    topics: Vec<(String, TopicKind)>,
    handle: Handle,
    metrics: IngestMetrics,
    shutdown: tokio_util::sync::CancellationToken,
    once: bool,
) -> (Arc<Shared>, Receiver<WriterMsg>) {
    let (tx, rx) = channel();
    let s = Shared {
        topics,
        batches: Mutex::new(HashMap::new()),
        owned: Mutex::new(HashMap::new()),
        paused: Mutex::new(HashSet::new()),
        to_writer: tx,
        queued: AtomicUsize::new(0),
        events: Mutex::new(Vec::new()),
        committable: Mutex::new(Vec::new()),
        fatal: Mutex::new(None),
        high_watermarks: Mutex::new(HashMap::new()),
        stopped: Mutex::new(HashMap::new()),
        generation: AtomicU64::new(0),
        handle,
        metrics,
        shutdown,
        once,
    };
    (Arc::new(s), rx)
}

/// Applies the writer's news: leases taken (seek next), refused, fenced.
fn take_events(s: &Shared, fence_retry: Duration) {
    let events: Vec<Event> = std::mem::take(&mut *s.events.lock().expect("events lock"));
    for e in events {
        match e {
            Event::Acquired {
                key,
                generation,
                epoch,
                next,
                last_timestamp_ms,
            } => {
                let mut owned = s.owned.lock().expect("owned lock");
                let Some(o) = owned.get_mut(&key).filter(|o| o.generation == generation) else {
                    continue;
                };
                o.epoch = epoch;
                o.checkpoint = next;
                o.next_offset = next;
                o.phase = match (next, last_timestamp_ms) {
                    // Re-read the last stored message to check it is the same topic.
                    (Some(n), Some(ts)) if n > 0 => Phase::Seek {
                        to: Offset::Offset(n - 1),
                        verify: Some((n - 1, ts)),
                    },
                    (Some(n), _) => Phase::Seek {
                        to: Offset::Offset(n),
                        verify: None,
                    },
                    (None, _) => Phase::Seek {
                        to: Offset::Beginning,
                        verify: None,
                    },
                };
            }
            Event::Fenced { key, generation } => {
                let mut owned = s.owned.lock().expect("owned lock");
                if let Some(o) = owned.get_mut(&key).filter(|o| o.generation == generation) {
                    o.phase = Phase::Fenced {
                        since: Instant::now(),
                    };
                    drop(owned);
                    s.batches.lock().expect("batches lock").remove(&key);
                }
            }
            Event::Refused {
                key,
                generation,
                error,
            } => {
                if s.current(key, generation) {
                    s.refuse(key, error);
                }
            }
        }
    }
    // A fenced partition the group still gives us: take the lease again after a while
    // (if another process is the rightful owner, the group revokes it from us first).
    let retry: Vec<((usize, i32), u64)> = {
        let mut owned = s.owned.lock().expect("owned lock");
        owned
            .iter_mut()
            .filter(|(_, o)| matches!(o.phase, Phase::Fenced { since } if since.elapsed() >= fence_retry))
            .map(|(k, o)| {
                o.generation = s.generation.fetch_add(1, Ordering::SeqCst) + 1;
                o.phase = Phase::Acquiring;
                (*k, o.generation)
            })
            .collect()
    };
    for (k, generation) in retry {
        let _ = s.to_writer.send(WriterMsg::Acquire {
            topic: s.topics[k.0].0.clone(),
            partition: k.1,
            generation,
        });
    }
}

/// Seeks partitions whose lease was taken, and pauses or resumes partitions: only
/// partitions being read or verified fetch, and none while the writer is behind.
fn steer(consumer: &BaseConsumer<IngestContext>, s: &Shared, throttled: bool) {
    let mut owned = s.owned.lock().expect("owned lock");
    for (k, o) in owned.iter_mut() {
        let Phase::Seek { to, verify } = o.phase.clone() else {
            continue;
        };
        let topic = &s.topics[k.0].0;
        // The partition's fetcher may not have started yet (the seek is refused):
        // the next round tries again.
        match consumer.seek(topic, k.1, to, Duration::from_millis(200)) {
            Ok(()) => {
                o.phase = match verify {
                    Some((offset, timestamp_ms)) => Phase::Verifying {
                        offset,
                        timestamp_ms,
                    },
                    None => Phase::Ready,
                };
                tracing::info!(topic, partition = k.1, epoch = o.epoch, at = ?to, "partition resumed from its checkpoint");
            }
            Err(e) => tracing::debug!(topic, partition = k.1, error = %e, "seek not possible yet"),
        }
    }
    let want: HashSet<(usize, i32)> = owned
        .iter()
        .filter(|(_, o)| match o.phase {
            Phase::Ready => throttled,
            Phase::Verifying { .. } => false,
            _ => true,
        })
        .map(|(k, _)| *k)
        .collect();
    drop(owned);
    let mut paused = s.paused.lock().expect("paused lock");
    let tpl = |keys: &mut dyn Iterator<Item = &(usize, i32)>| {
        let mut t = TopicPartitionList::new();
        for k in keys {
            t.add_partition(&s.topics[k.0].0, k.1);
        }
        t
    };
    let to_pause: Vec<_> = want.difference(&paused).copied().collect();
    let to_resume: Vec<_> = paused.difference(&want).copied().collect();
    if !to_pause.is_empty() {
        let _ = consumer.pause(&tpl(&mut to_pause.iter()));
    }
    if !to_resume.is_empty() {
        let _ = consumer.resume(&tpl(&mut to_resume.iter()));
    }
    *paused = want;
}

/// Polls until shutdown (or, with `--once`, until every owned partition reached the
/// end it had when it was assigned), then flushes and commits.
pub fn poll_loop(
    consumer: &BaseConsumer<IngestContext>,
    s: &Arc<Shared>,
    opts: &IngestOptions,
    cfg: &IngestConfig,
    fence_retry: Duration,
) -> Result<Summary, Error> {
    let flush_rows = cfg.flush_rows;
    let flush_bytes = cfg.flush_bytes;
    let flush_age = Duration::from_millis(cfg.flush_age_ms);
    // Dates are bounded relative to the day of ingest; refreshed with the clock below.
    let mut limits = Limits::today(cfg);
    let mut summary = Summary::default();
    let expected_partitions = partition_count(consumer, s);
    let mut last_tick = Instant::now();
    let mut ticks: u32 = 0;
    let mut throttled = false;
    let started = Instant::now();
    let read: Vec<_> = s
        .topics
        .iter()
        .map(|(t, _)| {
            s.metrics
                .messages_read
                .get_or_create(&TopicLabels { topic: t.clone() })
                .clone()
        })
        .collect();
    loop {
        if s.shutdown.is_cancelled() {
            break;
        }
        let mut idle = false;
        match consumer.poll(Duration::from_millis(50)) {
            None => idle = true,
            Some(Ok(m)) => {
                let Some(ti) = s.topic_index(m.topic()) else {
                    continue;
                };
                let (p, off) = (m.partition(), m.offset());
                let ts = m.timestamp().to_millis().unwrap_or(0);
                let (generation, epoch) = {
                    // Only partitions we read, and never an offset already taken: a
                    // message still queued from before a revocation, or delivered again
                    // after a seek, must not enter a batch twice.
                    let mut owned = s.owned.lock().expect("owned lock");
                    let Some(o) = owned.get_mut(&(ti, p)) else {
                        continue;
                    };
                    if let Phase::Verifying {
                        offset,
                        timestamp_ms,
                    } = o.phase
                    {
                        let refused = if off < offset {
                            Some(DomainError {
                                reason: "offset_reset",
                                detail: format!(
                                    "asked for offset {offset} (the last stored message), the broker delivered offset {off}: the partition's offsets are now below the checkpoint {} (the topic was recreated or its log truncated)",
                                    offset + 1
                                ),
                            })
                        } else if off == offset && ts != timestamp_ms {
                            Some(DomainError {
                                reason: "topic_recreated",
                                detail: format!(
                                    "the message at offset {offset} is not the one stored there (timestamp {ts} ms, stored {timestamp_ms} ms): the topic was deleted and recreated, or its offsets reset"
                                ),
                            })
                        } else {
                            None
                        };
                        if let Some(e) = refused {
                            drop(owned);
                            s.refuse((ti, p), e);
                            continue;
                        }
                        // The last stored message is where it was (or compacted away):
                        // read on from the checkpoint.
                        o.phase = Phase::Ready;
                        o.next_offset = Some(offset + 1);
                        tracing::info!(
                            topic = m.topic(),
                            partition = p,
                            offset,
                            "checkpoint verified against the broker"
                        );
                    }
                    match o.phase {
                        Phase::Ready if o.next_offset.is_none_or(|n| off >= n) => {
                            o.next_offset = Some(off + 1);
                            (o.generation, o.epoch)
                        }
                        _ => continue,
                    }
                };
                read[ti].inc();
                summary.messages += 1;
                let full = {
                    let mut b = s.batches.lock().expect("batches lock");
                    let batch = b.entry((ti, p)).or_insert_with(|| {
                        PartitionBatch::new(s.topics[ti].1, m.topic(), p, off, epoch, generation)
                    });
                    batch.push(m.key(), m.payload(), off, ts, &limits);
                    if batch.taken() >= flush_rows || batch.bytes() >= flush_bytes {
                        b.remove(&(ti, p)).map(PartitionBatch::close)
                    } else {
                        None
                    }
                };
                if let Some(job) = full {
                    summary.count(&job);
                    s.send_job(job);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
        }
        // Reading the clock on every message showed in profiles: look every 1024 messages
        // or when the queue is empty.
        ticks = ticks.wrapping_add(1);
        if (idle || ticks.is_multiple_of(1024)) && last_tick.elapsed() >= Duration::from_millis(100)
        {
            last_tick = Instant::now();
            limits = Limits::today(cfg);
            take_events(s, fence_retry);
            let aged: Vec<FlushJob> = {
                let mut b = s.batches.lock().expect("batches lock");
                let keys: Vec<_> = b
                    .iter()
                    .filter(|(_, v)| v.opened.elapsed() >= flush_age)
                    .map(|(k, _)| *k)
                    .collect();
                keys.into_iter()
                    .filter_map(|k| b.remove(&k))
                    .map(PartitionBatch::close)
                    .collect()
            };
            for job in aged {
                summary.count(&job);
                s.send_job(job);
            }
            // Backpressure without blocking: pause while the writer is behind.
            let queued = s.queued.load(Ordering::SeqCst);
            if !throttled && queued >= MAX_QUEUED_JOBS {
                throttled = true;
                s.metrics.backpressure_pauses.inc();
                tracing::debug!(queued, "writer behind: pausing partitions");
            } else if throttled && queued <= 1 {
                throttled = false;
            }
            steer(consumer, s, throttled);
            commit(consumer, s, CommitMode::Async);
            if opts.once && caught_up(consumer, s, expected_partitions) {
                tracing::info!("caught up with the end of every partition");
                break;
            }
            if opts.once
                && s.owned.lock().expect("owned lock").is_empty()
                && started.elapsed() > Duration::from_secs(120)
            {
                tracing::warn!("no partition was assigned within 120 s; giving up");
                break;
            }
        }
    }
    // Drain: everything read becomes durable before we return.
    take_events(s, fence_retry);
    s.flush_and_wait(&mut summary);
    commit(consumer, s, CommitMode::Sync);
    let _ = s.to_writer.send(WriterMsg::Stop);
    if let Some(e) = s.fatal.lock().expect("fatal lock").take() {
        return Err(e);
    }
    Ok(summary)
}

/// Partitions of the topics this consumer reads, from the cluster's metadata.
fn partition_count(consumer: &BaseConsumer<IngestContext>, s: &Shared) -> usize {
    s.topics
        .iter()
        .map(|(t, _)| {
            consumer
                .fetch_metadata(Some(t), Duration::from_secs(10))
                .map(|md| md.topics().first().map_or(0, |t| t.partitions().len()))
                .unwrap_or(0)
        })
        .sum()
}

/// True when this consumer owns every partition of its topics (`expected` of them: a
/// partial assignment, e.g. while a killed instance's membership has not expired yet,
/// is not "the end of its topics"), reads each, and each has reached the end it had
/// when assigned.
fn caught_up(consumer: &BaseConsumer<IngestContext>, s: &Shared, expected: usize) -> bool {
    let owned = s.owned.lock().expect("owned lock");
    if owned.is_empty() || owned.len() < expected {
        return false;
    }
    let position = consumer.position().ok();
    owned.iter().all(|((ti, p), o)| {
        if o.phase != Phase::Ready {
            return false;
        }
        let Some(end) = o.end else { return false };
        let pos = position
            .as_ref()
            .and_then(|tpl| tpl.find_partition(&s.topics[*ti].0, *p))
            .and_then(|e| match e.offset() {
                Offset::Offset(x) => Some(x),
                _ => None,
            });
        let at = o.next_offset.max(pos).unwrap_or(0);
        at >= end
    })
}
