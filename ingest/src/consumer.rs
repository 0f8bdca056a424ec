//! The consume loop: one blocking thread polls Kafka, parses messages into
//! per-partition batches and hands closed batches to a writer thread, which makes them
//! durable ([`crate::writer`]) and reports the offsets to commit.
//!
//! Rebalances are handled in the consumer context: on assignment each partition resumes
//! from its storage checkpoint (after removing a half-written batch); on revocation the
//! partition's open batch is flushed and made durable before the partition is given up.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
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

use crate::batch::{FlushJob, PartitionBatch, TopicKind};
use crate::metrics::{IngestMetrics, PartitionLabels, TopicLabels};
use crate::writer::{recover, BatchWriter};
use crate::{Error, IngestOptions, Summary};

/// What the writer thread receives.
pub enum WriterMsg {
    /// A batch to make durable.
    Job(FlushJob),
    /// Reply once every earlier job is durable.
    Barrier(SyncSender<()>),
    /// Every job is done: the thread exits.
    Stop,
}

/// A partition this consumer owns.
#[derive(Debug, Clone)]
struct Owned {
    next_offset: Option<i64>,
    end: Option<i64>,
}

/// State shared by the poll loop, the rebalance callback and the writer.
pub struct Shared {
    topics: Vec<(String, TopicKind)>,
    batches: Mutex<HashMap<(usize, i32), PartitionBatch>>,
    owned: Mutex<HashMap<(usize, i32), Owned>>,
    to_writer: SyncSender<WriterMsg>,
    committable: Mutex<Vec<(String, i32, i64)>>,
    fatal: Mutex<Option<Error>>,
    storage: spectra_core::Storage,
    handle: Handle,
    metrics: IngestMetrics,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Shared {
    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.topics.iter().position(|(t, _)| t == topic)
    }

    /// Closes the batches of the given partitions (all when `None`), sends them to the
    /// writer and waits until they are durable.
    fn flush_and_wait(&self, which: Option<&HashSet<(usize, i32)>>) {
        let jobs: Vec<FlushJob> = {
            let mut b = self.batches.lock().expect("batches lock");
            let keys: Vec<_> = b
                .keys()
                .filter(|k| which.is_none_or(|w| w.contains(k)))
                .copied()
                .collect();
            keys.into_iter()
                .filter_map(|k| b.remove(&k))
                .map(PartitionBatch::close)
                .collect()
        };
        for j in jobs {
            let _ = self.to_writer.send(WriterMsg::Job(j));
        }
        let (tx, rx) = sync_channel(1);
        if self.to_writer.send(WriterMsg::Barrier(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

/// The consumer context: rebalances go through the storage checkpoints.
pub struct IngestContext {
    shared: Arc<Shared>,
}

impl ClientContext for IngestContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // End of partition is an event `--once` relies on, not an error.
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || matches!(&error, KafkaError::Global(c) if *c == rdkafka::types::RDKafkaErrorCode::PartitionEOF);
        if !eof {
            tracing::error!(error = %error, reason, "kafka client error");
        }
    }

    /// librdkafka's statistics carry each partition's consumer lag.
    /// Their `hi_offset` (from fetch responses) is also the end `--once` waits for: some
    /// brokers (Tansu) answer ListOffsets with a wrong high watermark.
    fn stats(&self, stats: rdkafka::Statistics) {
        for (topic, t) in &stats.topics {
            let Some(ti) = self.shared.topic_index(topic) else {
                continue;
            };
            for (p, part) in &t.partitions {
                if *p < 0 {
                    continue;
                }
                if part.hi_offset < 0 {
                    continue;
                }
                // Lag is measured from what this consumer has read (the Kafka commit
                // trails the storage checkpoint, so librdkafka's own lag would overstate it).
                let lag = {
                    let mut owned = self.shared.owned.lock().expect("owned lock");
                    let Some(o) = owned.get_mut(&(ti, *p)) else {
                        continue;
                    };
                    o.end.get_or_insert(part.hi_offset);
                    (part.hi_offset - o.next_offset.unwrap_or(part.lo_offset.max(0))).max(0)
                };
                self.shared
                    .metrics
                    .consumer_lag
                    .get_or_create(&PartitionLabels {
                        topic: topic.clone(),
                        partition: p.to_string(),
                    })
                    .set(lag);
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let s = &self.shared;
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut owned = HashMap::new();
                let parts: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                for (topic, p) in parts {
                    let next = loop {
                        match s
                            .handle
                            .block_on(recover(&s.storage, &topic, p, &s.metrics))
                        {
                            Ok(n) => break n,
                            Err(e) if s.shutdown.is_cancelled() => {
                                tracing::error!(error = %e, "cannot read checkpoint during shutdown");
                                break None;
                            }
                            Err(e) => {
                                tracing::warn!(topic, partition = p, error = %e, "cannot read checkpoint; retrying");
                                std::thread::sleep(Duration::from_secs(1));
                            }
                        }
                    };
                    if let Some(i) = s.topic_index(&topic) {
                        owned.insert(
                            (i, p),
                            Owned {
                                next_offset: next,
                                end: None,
                            },
                        );
                    }
                    let _ = tpl.set_partition_offset(
                        &topic,
                        p,
                        next.map(Offset::Offset).unwrap_or(Offset::Beginning),
                    );
                    tracing::info!(topic, partition = p, resume_at = ?next, "partition assigned");
                }
                {
                    // An open batch of a newly assigned partition is stale: its lines
                    // are replayed from the checkpoint.
                    let mut b = s.batches.lock().expect("batches lock");
                    b.retain(|k, _| !owned.contains_key(k));
                }
                s.owned.lock().expect("owned lock").extend(owned);
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked: HashSet<(usize, i32)> = tpl
                    .elements()
                    .iter()
                    .filter_map(|e| s.topic_index(e.topic()).map(|i| (i, e.partition())))
                    .collect();
                s.flush_and_wait(Some(&revoked));
                commit(consumer, s, CommitMode::Sync);
                let mut owned = s.owned.lock().expect("owned lock");
                owned.retain(|k, _| !revoked.contains(k));
                tracing::info!(
                    partitions = revoked.len(),
                    "partitions revoked after flushing"
                );
                drop(owned);
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => tracing::error!(error = ?other, "rebalance error"),
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

/// Starts the writer thread.
pub fn spawn_writer(
    writer: BatchWriter,
    rx: Receiver<WriterMsg>,
    shared: Arc<Shared>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("ingest-writer".into())
        .spawn(move || {
            for msg in rx {
                match msg {
                    WriterMsg::Barrier(reply) => {
                        let _ = reply.send(());
                    }
                    WriterMsg::Stop => break,
                    WriterMsg::Job(job) => {
                        if shared.fatal.lock().expect("fatal lock").is_some() {
                            continue;
                        }
                        match shared.handle.block_on(writer.write(&job)) {
                            Ok(cp) => shared.committable.lock().expect("commit lock").push((
                                job.topic.clone(),
                                job.partition,
                                cp.next_offset,
                            )),
                            Err(e) => {
                                tracing::error!(topic = %job.topic, partition = job.partition, error = %e,
                                    "batch could not be made durable; stopping (it will be replayed)");
                                *shared.fatal.lock().expect("fatal lock") = Some(e);
                                shared.shutdown.cancel();
                            }
                        }
                    }
                }
            }
        })
        .expect("spawn writer thread")
}

/// Builds the shared state and the channel to the writer.
#[allow(clippy::too_many_arguments)]
pub fn shared(
    topics: Vec<(String, TopicKind)>,
    storage: spectra_core::Storage,
    handle: Handle,
    metrics: IngestMetrics,
    shutdown: tokio_util::sync::CancellationToken,
) -> (Arc<Shared>, Receiver<WriterMsg>) {
    let (tx, rx) = sync_channel(4);
    let s = Shared {
        topics,
        batches: Mutex::new(HashMap::new()),
        owned: Mutex::new(HashMap::new()),
        to_writer: tx,
        committable: Mutex::new(Vec::new()),
        fatal: Mutex::new(None),
        storage,
        handle,
        metrics,
        shutdown,
    };
    (Arc::new(s), rx)
}

/// The context for a consumer sharing `shared`.
pub fn context(shared: Arc<Shared>) -> IngestContext {
    IngestContext { shared }
}

/// Polls until shutdown (or, with `--once`, until every owned partition reached the
/// end it had when it was assigned), then flushes and commits.
pub fn poll_loop(
    consumer: &BaseConsumer<IngestContext>,
    s: &Arc<Shared>,
    opts: &IngestOptions,
    cfg: &IngestConfig,
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
                {
                    // Only partitions we own, and never an offset already taken: a
                    // message still queued from before a revocation, or delivered again
                    // after a seek, must not enter a batch twice.
                    let mut owned = s.owned.lock().expect("owned lock");
                    match owned.get_mut(&(ti, p)) {
                        Some(o) if o.next_offset.is_none_or(|n| off >= n) => {
                            o.next_offset = Some(off + 1);
                        }
                        _ => continue,
                    }
                }
                read[ti].inc();
                summary.messages += 1;
                let full = {
                    let mut b = s.batches.lock().expect("batches lock");
                    let batch = b
                        .entry((ti, p))
                        .or_insert_with(|| PartitionBatch::new(s.topics[ti].1, m.topic(), p, off));
                    let ts = m.timestamp().to_millis().unwrap_or(0);
                    let before = batch.rows();
                    let rejected = batch.push(m.key(), m.payload(), off, ts, &limits);
                    summary.rows += (batch.rows() - before) as u64;
                    if let Some(r) = rejected {
                        summary.rejected += 1;
                        tracing::debug!(topic = m.topic(), partition = p, offset = off, reason = %r, "rejected to DLQ");
                    }
                    if batch.rows() + batch.dead.len() >= flush_rows || batch.bytes() >= flush_bytes
                    {
                        b.remove(&(ti, p)).map(PartitionBatch::close)
                    } else {
                        None
                    }
                };
                if let Some(job) = full {
                    let _ = s.to_writer.send(WriterMsg::Job(job));
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
                let _ = s.to_writer.send(WriterMsg::Job(job));
            }
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
    s.flush_and_wait(None);
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
/// is not "the end of its topics") and each has reached the end it had when assigned.
fn caught_up(consumer: &BaseConsumer<IngestContext>, s: &Shared, expected: usize) -> bool {
    let owned = s.owned.lock().expect("owned lock");
    if owned.is_empty() || owned.len() < expected {
        return false;
    }
    let position = consumer.position().ok();
    owned.iter().all(|((ti, p), o)| {
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
