//! The publisher's Kafka side: an idempotent producer whose every delivery is awaited
//! before a cycle is recorded, and the `segment-metadata` feed (read from the
//! beginning at start, then tailed).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use spectra_core::kafka::client_config;
use spectra_core::Config;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::metadata::{MetadataStore, SegmentMetadata};
use crate::metrics::PublishMetrics;
use crate::Error;

/// The producer, idempotent unless `kafka.properties."enable.idempotence"` says
/// otherwise (for brokers that refuse `InitProducerId`).
pub fn producer(cfg: &Config) -> Result<FutureProducer, Error> {
    let mut c = client_config(cfg);
    for (k, v) in [
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("message.timeout.ms", "60000"),
        ("linger.ms", "5"),
        ("compression.type", "zstd"),
    ] {
        if !cfg.kafka.properties.contains_key(k) {
            c.set(k, v);
        }
    }
    Ok(c.create()?)
}

/// A message to produce.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The topic.
    pub topic: String,
    /// The key.
    pub key: String,
    /// The value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// The metrics label: `new`, `moved`, `renamed`, `tombstone`, `profile`,
    /// `recommendation`, `metadata`.
    pub change: &'static str,
}

impl Outgoing {
    /// The record that produces it.
    fn record(&self) -> FutureRecord<'_, str, [u8]> {
        let rec = FutureRecord::to(&self.topic).key(self.key.as_str());
        match &self.value {
            Some(v) => rec.payload(v.as_slice()),
            None => rec,
        }
    }
}

/// A test hook: `SPECTRA_TEST_ABORT_AFTER_ACKS=N` aborts the process once `N` messages
/// are acknowledged — a crash between delivering and recording, as a SIGKILL at that
/// moment would leave it (no shutdown, no state written). Unset in production: nothing.
fn abort_after_acks() -> Option<u64> {
    static N: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("SPECTRA_TEST_ABORT_AFTER_ACKS")
            .ok()?
            .parse()
            .ok()
    })
}

/// Messages acknowledged in this process (for [`abort_after_acks`]).
static ACKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Messages produced and not yet acknowledged, at most: a sender waits for the oldest
/// beyond this, so a cycle of a million messages holds a few thousand at a time
/// whatever the producer's own queue allows.
pub const MAX_IN_FLIGHT: usize = 4096;

/// What is left of a sent message: enough to name it in an error and count it.
struct Sent {
    topic: String,
    key: String,
    change: &'static str,
}

/// Messages on their way: [`Delivery::send`] produces one (waiting for the oldest
/// when [`MAX_IN_FLIGHT`] are out), [`Delivery::finish`] waits for every
/// acknowledgement. The value is handed to the producer and not kept.
pub struct Delivery<'a> {
    producer: &'a FutureProducer,
    metrics: &'a PublishMetrics,
    in_flight: VecDeque<(DeliveryFuture, Sent)>,
    acked: u64,
}

impl<'a> Delivery<'a> {
    /// Nothing sent yet.
    pub fn new(producer: &'a FutureProducer, metrics: &'a PublishMetrics) -> Self {
        Self {
            producer,
            metrics,
            in_flight: VecDeque::new(),
            acked: 0,
        }
    }

    /// Produces `m` (waiting while the producer's queue is full).
    pub async fn send(&mut self, m: &Outgoing) -> Result<(), Error> {
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.ack_oldest().await?;
        }
        loop {
            match self.producer.send_result(m.record()) {
                Ok(f) => {
                    let sent = Sent {
                        topic: m.topic.clone(),
                        key: m.key.clone(),
                        change: m.change,
                    };
                    self.in_flight.push_back((f, sent));
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if self.in_flight.is_empty() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    } else {
                        self.ack_oldest().await?;
                    }
                }
                Err((e, _)) => {
                    return Err(Error::Deliver {
                        topic: m.topic.clone(),
                        key: m.key.clone(),
                        source: Box::new(e),
                    });
                }
            }
        }
    }

    /// Waits for every acknowledgement; the number of messages acknowledged.
    pub async fn finish(mut self) -> Result<u64, Error> {
        while !self.in_flight.is_empty() {
            self.ack_oldest().await?;
        }
        Ok(self.acked)
    }

    async fn ack_oldest(&mut self) -> Result<(), Error> {
        let Some((f, m)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let err = |source: KafkaError| Error::Deliver {
            topic: m.topic.clone(),
            key: m.key.clone(),
            source: Box::new(source),
        };
        match f.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(err(e)),
            Err(_) => return Err(err(KafkaError::Canceled)),
        }
        self.metrics.published(&m.topic, m.change);
        self.acked += 1;
        let total = ACKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if abort_after_acks().is_some_and(|n| total >= n) {
            eprintln!("test hook: aborting after {total} acknowledged messages");
            std::process::abort();
        }
        Ok(())
    }
}

/// Produces every message and waits until each is acknowledged. Returns the number
/// acknowledged.
pub async fn deliver(
    producer: &FutureProducer,
    messages: &[Outgoing],
    metrics: &PublishMetrics,
) -> Result<u64, Error> {
    let mut d = Delivery::new(producer, metrics);
    for m in messages {
        d.send(m).await?;
    }
    d.finish().await
}

/// Produces one message and waits for its acknowledgement: its offset on the topic.
pub async fn deliver_one(
    producer: &FutureProducer,
    m: &Outgoing,
    metrics: &PublishMetrics,
) -> Result<i64, Error> {
    let delivered = producer
        .send(m.record(), Duration::from_secs(30))
        .await
        .map_err(|(e, _)| Error::Deliver {
            topic: m.topic.clone(),
            key: m.key.clone(),
            source: Box::new(e),
        })?;
    metrics.published(&m.topic, m.change);
    Ok(delivered.offset)
}

/// The compacted view of a topic's keys starting with `prefix`, as its consumers see
/// it: read from the beginning to every partition's end, the last value per key
/// (a tombstone removes it).
pub async fn read_compacted(
    cfg: &Config,
    topic: &str,
    prefix: &str,
) -> Result<HashMap<String, Vec<u8>>, Error> {
    let consumer: BaseConsumer = client_config(cfg)
        .set(
            "group.id",
            format!("spectra-publish-reconcile-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let (topic, prefix) = (topic.to_owned(), prefix.to_owned());
    tokio::task::spawn_blocking(move || {
        let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        let mut at_end: HashMap<i32, bool> = HashMap::new();
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)?;
            at_end.insert(p.id(), false);
        }
        consumer.assign(&tpl)?;
        let mut view: HashMap<String, Vec<u8>> = HashMap::new();
        while at_end.values().any(|e| !e) {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let Some(k) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                        continue;
                    };
                    if !k.starts_with(&prefix) {
                        continue;
                    }
                    match m.payload() {
                        Some(v) => view.insert(k.to_owned(), v.to_vec()),
                        None => view.remove(k),
                    };
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p, true);
                }
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
        }
        Ok(view)
    })
    .await
    .map_err(|e| Error::Io(e.to_string()))?
}

/// Starts the `segment-metadata` feed on a thread: reads the topic from the beginning
/// into `store`, resolves the returned receiver once every partition was read to its
/// end, then keeps tailing it (waking `changed` on each real change) until `shutdown`.
pub fn spawn_metadata_feed(
    cfg: &Config,
    store: MetadataStore,
    changed: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<oneshot::Receiver<Result<usize, Error>>, Error> {
    let topic = cfg.kafka.topics.metadata.clone();
    let consumer: BaseConsumer = client_config(cfg)
        .set(
            "group.id",
            format!("spectra-publish-metadata-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", cfg.kafka.fetch_wait_max_ms.to_string())
        .create()?;
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("metadata-feed".into())
        .spawn(move || {
            let mut tx = Some(tx);
            let md = match consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)) {
                Ok(md) => md,
                Err(e) => {
                    let _ = tx.take().map(|t| t.send(Err(e.into())));
                    return;
                }
            };
            let mut tpl = TopicPartitionList::new();
            let mut at_end: HashMap<i32, bool> = HashMap::new();
            for p in md.topics().iter().flat_map(|t| t.partitions()) {
                let _ = tpl.add_partition_offset(&topic, p.id(), Offset::Beginning);
                at_end.insert(p.id(), false);
            }
            if let Err(e) = consumer.assign(&tpl) {
                let _ = tx.take().map(|t| t.send(Err(e.into())));
                return;
            }
            let mut read = 0usize;
            if at_end.is_empty() {
                let _ = tx.take().map(|t| t.send(Ok(0)));
            }
            while !shutdown.is_cancelled() {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        read += 1;
                        let key = m.key().and_then(|k| std::str::from_utf8(k).ok()).unwrap_or_default().to_owned();
                        let value = match m.payload() {
                            None => None,
                            Some(b) => match serde_json::from_slice::<SegmentMetadata>(b) {
                                Ok(v) => Some(v),
                                Err(e) => {
                                    tracing::warn!(topic = %topic, key, offset = m.offset(), error = %e, "skipping unreadable segment metadata");
                                    continue;
                                }
                            },
                        };
                        if store.apply(&key, value, m.offset()) && tx.is_none() {
                            tracing::info!(key, "segment metadata changed");
                            changed.notify_one();
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        at_end.insert(p, true);
                        if tx.is_some() && at_end.values().all(|d| *d) {
                            tracing::info!(topic = %topic, messages = read, "segment metadata loaded");
                            let _ = tx.take().map(|t| t.send(Ok(read)));
                        }
                    }
                    Some(Err(e)) => tracing::warn!(topic = %topic, error = %e, "reading segment metadata"),
                    None => {}
                }
            }
        })
        .map_err(|e| Error::Io(e.to_string()))?;
    Ok(rx)
}
