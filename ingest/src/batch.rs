//! Per-partition micro-batches: messages are staged as they arrive in chunks; a full
//! chunk is parsed on a pool of threads into record batches (one per invoice date for
//! invoices) while the next one fills, and the chunks' rows are kept in offset order; a
//! batch covers a contiguous range of offsets of one partition, rejected messages
//! included, and becomes the objects of one [`FlushJob`].

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Instant;

use arrow::array::RecordBatch;
use spectra_core::checkpoint::object_name;
use spectra_core::master::{parse_outlet, parse_sku};
use spectra_core::message::{days_to_date, parse_invoice_message, InvoiceLine, Limits};
use spectra_core::schema::{OutletBuilder, RawInvoiceBuilder, SkuBuilder, Source};
use spectra_core::tables::layout;

/// Which table a topic feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// Invoice lines → `raw/invoices/`.
    Invoices,
    /// Outlet master data → `master/outlets/`.
    Outlets,
    /// SKU master data → `master/skus/`.
    Skus,
}

/// A message bound for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value, bytes unchanged.
    pub value: Option<Vec<u8>>,
    /// Why (the `spectra-error` header).
    pub error: String,
    /// `topic/partition/offset` (the `spectra-source` header).
    pub source: String,
    /// Reason class, for metrics.
    pub class: &'static str,
}

/// The open batch of one partition.
pub struct PartitionBatch {
    /// Topic (shared with the chunks on the parse pool).
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// The lease epoch of the partition's owner that reads it (part of object names).
    pub epoch: u64,
    /// The assignment it was read under (a batch of an earlier one is discarded).
    pub generation: u64,
    /// Timestamp of the last message (recorded in the checkpoint, to recognise the
    /// topic when the partition is next assigned).
    pub last_timestamp_ms: i64,
    /// First offset covered.
    pub first: i64,
    /// Last offset covered.
    pub last: i64,
    /// When the first message arrived.
    pub opened: Instant,
    kind: TopicKind,
    /// What the parsed chunks made, in offset order: record batches by invoice date
    /// for invoices (Arrow `Date32` days), under 0 for master data.
    parts: BTreeMap<i32, Vec<RecordBatch>>,
    row_count: usize,
    bytes: usize,
    /// Memory of the record batches in `parts`: a whole invoice repeats its header's
    /// ids on each of its lines, so its rows can hold far more than its bytes.
    row_bytes: usize,
    /// Bytes of the messages whose rows `row_bytes` counts.
    absorbed_bytes: usize,
    messages: u64,
    /// Rejected messages of this batch.
    pub dead: Vec<DeadLetter>,
    /// Net value of its invoice lines by the currency they arrived in.
    value_by_currency: BTreeMap<String, f64>,
    /// The chunk being filled: messages taken and not yet handed to the pool.
    staging: Chunk,
    /// Chunks on the parse pool, oldest first.
    inflight: VecDeque<Inflight>,
    /// Messages in `inflight`.
    inflight_messages: usize,
    /// Emptied chunks the pool gave back, to be filled again.
    spare: Vec<Chunk>,
}

/// Messages parsed together: a chunk large enough that handing it to the pool costs
/// little beside parsing it (a couple of milliseconds of work) and that its rows of one
/// day are not a sliver of a record batch (the writer concatenates an object's),
/// small enough to keep the pool's threads busy side by side.
const STAGE_MESSAGES: usize = 4096;

/// Bytes of messages parsed together at most (a chunk is handed over at
/// [`STAGE_MESSAGES`] or at this, whichever comes first): 4,096 usual messages fit.
const STAGE_BYTES: usize = 1 << 20;

/// A message this large (a whole invoice of hundreds of lines) is handed over as soon
/// as it is taken, with the chunk it closes. A whole invoice's rows repeat its header's
/// ids (up to four of 256 characters) on each of up to 10,000 lines, so a message can
/// expand hundreds of times: one such message to a chunk keeps a chunk well under a
/// string column's 2 GiB, and [`PartitionBatch::bytes`] sees what it made before the
/// batch takes much more. (Handing every 256 KiB over instead made the usual feed's
/// chunks a quarter as large, and ingest a fifth slower.)
const LARGE_MESSAGE: usize = 64 << 10;

/// Chunks of one batch on the parse pool at most: four per thread of the pool (so
/// every thread has work), and the poll thread waits for the oldest beyond them, so
/// that what the batch holds unparsed (and unmeasured) stays bounded.
fn max_inflight() -> usize {
    4 * parse_pool().current_num_threads().max(1)
}

/// Messages taken and not yet parsed: their keys and values in one arena.
#[derive(Default)]
struct Chunk {
    staged: Vec<Staged>,
    arena: Vec<u8>,
    /// The limits the chunk is parsed under (those of its first message).
    limits: Option<Limits>,
}

/// A message taken and not yet parsed.
struct Staged {
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    offset: i64,
    timestamp_ms: i64,
}

/// A chunk on the parse pool: its messages, and where its result arrives.
struct Inflight {
    messages: usize,
    /// Bytes of its messages.
    bytes: usize,
    done: mpsc::Receiver<std::thread::Result<Parsed>>,
}

/// What a chunk parsed into (its rows keyed as [`PartitionBatch`]'s `parts`), with the
/// chunk itself, emptied, to be filled again.
struct Parsed {
    parts: Vec<(i32, RecordBatch)>,
    dead: Vec<DeadLetter>,
    value_by_currency: BTreeMap<String, f64>,
    emptied: Chunk,
}

/// The threads that parse staged messages: their own pool, so that parsing never
/// waits behind the writer's Parquet encoding on rayon's global one.
fn parse_pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("ingest-parse-{i}"))
            .build()
            .expect("the parse pool starts")
    })
}

/// Everything needed to make one batch durable.
pub struct FlushJob {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The lease epoch it was read under.
    pub epoch: u64,
    /// The assignment it was read under.
    pub generation: u64,
    /// Timestamp of the last message.
    pub last_timestamp_ms: i64,
    /// Messages the batch took (rows and dead letters).
    pub messages: u64,
    /// First offset covered.
    pub first: i64,
    /// Last offset covered.
    pub last: i64,
    /// Objects to write: path relative to the storage root, and its rows (record
    /// batches of one schema, in offset order; at least one).
    pub objects: Vec<(String, Vec<RecordBatch>)>,
    /// Rows in all objects.
    pub rows: usize,
    /// Messages for the dead-letter topic.
    pub dead: Vec<DeadLetter>,
    /// Net value of the invoice lines (in the base currency) by the currency they
    /// arrived in ([`crate::metrics::CurrencyLabels`]).
    pub value_by_currency: BTreeMap<String, f64>,
    /// When the batch was closed.
    pub closed: Instant,
}

impl PartitionBatch {
    /// Opens a batch at `offset`, read under lease `epoch` in assignment `generation`.
    pub fn new(
        kind: TopicKind,
        topic: &str,
        partition: i32,
        offset: i64,
        epoch: u64,
        generation: u64,
    ) -> Self {
        Self {
            topic: Arc::from(topic),
            partition,
            epoch,
            generation,
            last_timestamp_ms: 0,
            messages: 0,
            first: offset,
            last: offset - 1,
            opened: Instant::now(),
            kind,
            parts: BTreeMap::new(),
            row_count: 0,
            bytes: 0,
            row_bytes: 0,
            absorbed_bytes: 0,
            dead: Vec::new(),
            value_by_currency: BTreeMap::new(),
            staging: Chunk::default(),
            inflight: VecDeque::new(),
            inflight_messages: 0,
            spare: Vec::new(),
        }
    }

    /// Bytes the batch holds: those of the messages taken so far (keys and values),
    /// or, when more, the memory of the rows parsed so far (a whole invoice repeats its
    /// header on each line).
    pub fn bytes(&self) -> usize {
        self.bytes.max(self.row_bytes)
    }

    /// Takes one message: its rows are appended, or it is recorded as a dead letter,
    /// when its chunk is parsed — every [`STAGE_MESSAGES`] messages or [`STAGE_BYTES`],
    /// and after a message of [`LARGE_MESSAGE`], a chunk goes to the parse pool while
    /// the next one fills (waiting for the oldest when more than [`max_inflight`] are
    /// out), and the last when the batch closes —
    /// under the `limits` of the chunk's first message (invoice lines beyond them are
    /// rejected).
    pub fn push(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        offset: i64,
        timestamp_ms: i64,
        limits: &Limits,
    ) {
        self.last = offset;
        self.last_timestamp_ms = timestamp_ms;
        self.messages += 1;
        self.bytes += key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
        let large = value.is_some_and(|v| v.len() >= LARGE_MESSAGE);
        let chunk = &mut self.staging;
        if chunk.staged.is_empty() {
            chunk.limits = Some(limits.clone());
        }
        let mut keep = |bytes: Option<&[u8]>| {
            bytes.map(|b| {
                let start = chunk.arena.len();
                chunk.arena.extend_from_slice(b);
                start..chunk.arena.len()
            })
        };
        let (key, value) = (keep(key), keep(value));
        chunk.staged.push(Staged {
            key,
            value,
            offset,
            timestamp_ms,
        });
        if chunk.staged.len() >= STAGE_MESSAGES || chunk.arena.len() >= STAGE_BYTES || large {
            self.dispatch();
            self.absorb_done();
            // Only while the rows made so far outgrow their messages (or none are made
            // yet): the usual feed's rows are smaller than its messages, and it never
            // waits (waiting on it cost a tenth of ingest's speed).
            while self.inflight.len() > max_inflight()
                && (self.absorbed_bytes == 0 || self.row_bytes > self.absorbed_bytes)
            {
                self.absorb_front();
            }
        }
    }

    /// Messages taken so far: rows appended, dead letters and messages not yet parsed
    /// (what the batch's row bound counts).
    pub fn taken(&self) -> usize {
        self.row_count + self.dead.len() + self.staging.staged.len() + self.inflight_messages
    }

    /// Hands the chunk being filled to the parse pool; the next fills meanwhile.
    fn dispatch(&mut self) {
        if self.staging.staged.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut self.staging, self.spare.pop().unwrap_or_default());
        let (messages, bytes) = (chunk.staged.len(), chunk.arena.len());
        let (kind, topic, partition) = (self.kind, self.topic.clone(), self.partition);
        let (tx, done) = mpsc::sync_channel(1);
        parse_pool().spawn(move || {
            let parsed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                parse_chunk(kind, &topic, partition, chunk)
            }));
            // The batch may have been dropped meanwhile (its partition revoked).
            let _ = tx.send(parsed);
        });
        self.inflight.push_back(Inflight {
            messages,
            bytes,
            done,
        });
        self.inflight_messages += messages;
    }

    /// Appends the chunks the pool has finished, oldest first, stopping at the first
    /// still being parsed (offset order).
    fn absorb_done(&mut self) {
        while let Some(front) = self.inflight.front() {
            match front.done.try_recv() {
                Ok(parsed) => {
                    let front = self.inflight.pop_front().expect("the front chunk");
                    self.absorb(front.messages, front.bytes, parsed);
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => unreachable!("a chunk always answers"),
            }
        }
    }

    /// Waits for every chunk on the pool and appends them in order.
    fn absorb_all(&mut self) {
        while !self.inflight.is_empty() {
            self.absorb_front();
        }
    }

    /// Waits for the oldest chunk on the pool and appends it.
    fn absorb_front(&mut self) {
        let front = self.inflight.pop_front().expect("a chunk in flight");
        let parsed = front.done.recv().expect("a chunk always answers");
        self.absorb(front.messages, front.bytes, parsed);
    }

    /// Appends one chunk's rows, dead letters and values (the next in offset order).
    fn absorb(&mut self, messages: usize, bytes: usize, parsed: std::thread::Result<Parsed>) {
        // A panic while parsing is the poll thread's, as when it parsed itself.
        let parsed = parsed.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        self.inflight_messages -= messages;
        self.absorbed_bytes += bytes;
        self.dead.extend(parsed.dead);
        for (currency, value) in parsed.value_by_currency {
            *self.value_by_currency.entry(currency).or_default() += value;
        }
        for (key, batch) in parsed.parts {
            self.row_count += batch.num_rows();
            self.row_bytes += used_bytes(&batch);
            self.parts.entry(key).or_default().push(batch);
        }
        self.spare.push(parsed.emptied);
    }

    /// Closes the batch into the objects it writes. Object names derive from the
    /// topic, partition, offset range and the owner's lease epoch: two owners of a
    /// partition (one of them fenced) never write the same name.
    pub fn close(mut self) -> FlushJob {
        self.dispatch();
        self.absorb_all();
        let stem = object_name(
            &self.topic,
            self.partition,
            self.first,
            self.last,
            self.epoch,
        );
        let kind = self.kind;
        let objects = self
            .parts
            .into_iter()
            .map(|(key, batches)| {
                let path = match kind {
                    TopicKind::Invoices => layout::raw_invoices_object(days_to_date(key), &stem),
                    TopicKind::Outlets => layout::master_outlets_object(&stem),
                    TopicKind::Skus => layout::master_skus_object(&stem),
                };
                (path, batches)
            })
            .collect();
        FlushJob {
            topic: self.topic.to_string(),
            partition: self.partition,
            epoch: self.epoch,
            generation: self.generation,
            last_timestamp_ms: self.last_timestamp_ms,
            messages: self.messages,
            first: self.first,
            last: self.last,
            objects,
            rows: self.row_count,
            dead: self.dead,
            value_by_currency: self.value_by_currency,
            closed: Instant::now(),
        }
    }
}

/// The bytes `batch`'s rows take in its buffers, without the room a builder keeps
/// for more (a builder of one row holds room for a thousand).
fn used_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum()
}

/// Parses one chunk (on the parse pool): its rows into record batches (one per
/// invoice date for invoices), its rejected messages into dead letters, in offset
/// order.
fn parse_chunk(kind: TopicKind, topic: &str, partition: i32, mut chunk: Chunk) -> Parsed {
    let limits = chunk.limits.take().expect("a chunk keeps its limits");
    let arena = &chunk.arena;
    let bytes = |r: &Option<Range<usize>>| r.clone().map(|r| &arena[r]);
    let mut by_date: BTreeMap<i32, RawInvoiceBuilder> = BTreeMap::new();
    let mut outlets = OutletBuilder::default();
    let mut skus = SkuBuilder::default();
    let mut dead = Vec::new();
    let mut value_by_currency: BTreeMap<String, f64> = BTreeMap::new();
    for m in &chunk.staged {
        let source = Source {
            topic,
            partition,
            offset: m.offset,
            timestamp_ms: m.timestamp_ms,
        };
        let parsed = limits
            .check_timestamp(m.timestamp_ms)
            .and_then(|()| match kind {
                TopicKind::Invoices => {
                    parse_invoice_message(bytes(&m.value), &limits).map(|lines| {
                        for (i, line) in lines.iter().enumerate() {
                            by_date
                                .entry(line.date32())
                                .or_default()
                                .append(line, &source, i as i32);
                            add_value(&mut value_by_currency, &limits, line);
                        }
                    })
                }
                TopicKind::Outlets => parse_outlet(bytes(&m.key), bytes(&m.value))
                    .map(|o| outlets.append(&o, &source)),
                TopicKind::Skus => {
                    parse_sku(bytes(&m.key), bytes(&m.value)).map(|sku| skus.append(&sku, &source))
                }
            });
        if let Err(rejection) = parsed {
            tracing::debug!(topic, partition, offset = m.offset, reason = %rejection,
                "rejected to DLQ");
            dead.push(DeadLetter {
                key: bytes(&m.key).map(<[u8]>::to_vec),
                value: bytes(&m.value).map(<[u8]>::to_vec),
                error: rejection.text.clone(),
                source: format!("{topic}/{partition}/{}", m.offset),
                class: rejection.class(),
            });
        }
    }
    let parts = match kind {
        TopicKind::Invoices => by_date
            .into_iter()
            .map(|(d, mut b)| (d, b.finish()))
            .collect(),
        TopicKind::Outlets if !outlets.is_empty() => vec![(0, outlets.finish())],
        TopicKind::Skus if !skus.is_empty() => vec![(0, skus.finish())],
        _ => Vec::new(),
    };
    chunk.staged.clear();
    chunk.arena.clear();
    Parsed {
        parts,
        dead,
        value_by_currency,
        emptied: chunk,
    }
}

/// Adds a line's net value (in the base currency) under the currency it arrived in.
/// Labels stay bounded: with a base, only currencies with a rate get here; without
/// one, every line is `as_sent`.
fn add_value(values: &mut BTreeMap<String, f64>, limits: &Limits, line: &InvoiceLine<'_>) {
    let upper;
    let label = match (&limits.currency, line.currency.as_deref()) {
        (None, _) => "as_sent",
        (Some(c), None) => c.base.as_str(),
        (Some(_), Some(sent)) => {
            let sent = sent.trim();
            if sent.bytes().any(|b| b.is_ascii_lowercase()) {
                upper = sent.to_ascii_uppercase();
                upper.as_str()
            } else {
                sent
            }
        }
    };
    match values.get_mut(label) {
        Some(v) => *v += line.net_value,
        None => {
            values.insert(label.to_owned(), line.net_value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    /// The per-currency value the metric reports: in the base, by the currency sent.
    #[test]
    fn a_batch_sums_its_value_by_the_currency_lines_arrived_in() {
        let cfg: spectra_core::config::IngestConfig = serde_json::from_value(serde_json::json!({
            "max_age_days": 3650,
            "currency": {"base": "PLN", "rates": [{"currency": "EUR", "from": "2026-01-01", "rate": 4.0}]},
        }))
        .unwrap();
        let limits = Limits::new(&cfg, NaiveDate::from_ymd_opt(2026, 11, 29).unwrap());
        let mut b = PartitionBatch::new(TopicKind::Invoices, "invoices", 0, 0, 1, 1);
        let msg = br#"{"distributor_id":"D","invoice_id":"I","invoice_date":"2026-11-20","outlet_id":"O","currency":"eur",
            "lines":[{"line_no":1,"sku_id":"A","quantity":1,"net_value":2.5},{"line_no":2,"sku_id":"B","quantity":1,"net_value":7,"currency":"PLN"},
                     {"line_no":3,"sku_id":"C","quantity":-1,"net_value":-1}]}"#;
        b.push(None, Some(msg), 0, 0, &limits);
        let job = b.close();
        assert!(job.dead.is_empty());
        assert_eq!(
            job.value_by_currency,
            BTreeMap::from([("EUR".to_owned(), 6.0), ("PLN".to_owned(), 7.0)])
        );
        let mut b = PartitionBatch::new(TopicKind::Invoices, "invoices", 0, 0, 1, 1);
        b.push(None, Some(msg), 0, 0, &Limits::unbounded());
        assert_eq!(
            b.close().value_by_currency,
            BTreeMap::from([("as_sent".to_owned(), 8.5)])
        );
    }

    #[test]
    fn a_batch_splits_by_date_and_keeps_rejects() {
        let mut b = PartitionBatch::new(TopicKind::Invoices, "invoices", 2, 100, 3, 1);
        let limits = Limits::unbounded();
        let line = |date: &str, id: &str| {
            format!(
                r#"{{"distributor_id":"D","invoice_id":"{id}","line_no":1,"invoice_date":"{date}","outlet_id":"O","sku_id":"S","quantity":1,"net_value":2}}"#
            )
        };
        b.push(
            None,
            Some(line("2026-11-20", "A").as_bytes()),
            100,
            0,
            &limits,
        );
        b.push(None, Some(b"nope"), 101, 0, &limits);
        b.push(
            None,
            Some(line("2026-11-21", "B").as_bytes()),
            102,
            0,
            &limits,
        );
        assert_eq!(b.taken(), 3);
        assert_eq!(
            b.bytes(),
            line("2026-11-20", "A").len() + 4 + line("2026-11-21", "B").len()
        );
        let job = b.close();
        assert_eq!((job.first, job.last, job.rows), (100, 102, 2));
        let names: Vec<_> = job.objects.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "raw/invoices/date=2026-11-20/invoices-2-00000000000000000100-00000000000000000102-e3.parquet",
                "raw/invoices/date=2026-11-21/invoices-2-00000000000000000100-00000000000000000102-e3.parquet"
            ]
        );
        assert_eq!(job.dead.len(), 1);
        assert_eq!(job.dead[0].source, "invoices/2/101");
        assert_eq!(job.dead[0].value.as_deref(), Some(&b"nope"[..]));
    }

    /// A whole invoice repeats its header's ids on each of its lines: 10,000 lines
    /// under four ids of 256 four-byte characters are a message of about 170 KB and
    /// rows of about 40 MB. The batch counts the rows it made, so a 64 MiB bound closes
    /// it after a few such messages (fewer than 64), not after 64 MiB of them (about 15 GiB of rows,
    /// past a string column's 2 GiB of offsets), and no line is lost.
    #[test]
    fn whole_invoices_count_as_the_rows_they_make() {
        let id = "\u{1F600}".repeat(256);
        let lines: Vec<String> = (0..10_000)
            .map(|n| format!(r#"{{"line_no":{n}}}"#))
            .collect();
        let msg = format!(
            r#"{{"distributor_id":"{id}","invoice_id":"{id}","outlet_id":"{id}","sku_id":"{id}","quantity":1,"net_value":1,"invoice_date":"2026-11-20","lines":[{}]}}"#,
            lines.join(",")
        );
        let limit: usize = 64 << 20;
        let limits = Limits::unbounded();
        let memory = |job: &FlushJob| -> usize {
            job.objects
                .iter()
                .flat_map(|(_, batches)| batches)
                .map(used_bytes)
                .sum()
        };
        // The rows of one such message, as the builders hold them.
        let mut one = PartitionBatch::new(TopicKind::Invoices, "invoices", 0, 0, 1, 1);
        one.push(None, Some(msg.as_bytes()), 0, 0, &limits);
        let per_message = memory(&one.close());
        assert!(per_message > 40_000_000, "{per_message}");
        let mut b = PartitionBatch::new(TopicKind::Invoices, "invoices", 0, 0, 1, 1);
        let mut pushed = 0;
        while b.bytes() < limit {
            b.push(None, Some(msg.as_bytes()), pushed, 0, &limits);
            pushed += 1;
            assert!(pushed < 64, "the rows made are not counted");
        }
        let job = b.close();
        assert!(
            job.dead.is_empty(),
            "{:?}",
            job.dead.first().map(|d| &d.error)
        );
        assert_eq!(job.rows, pushed as usize * 10_000);
        assert!(pushed as usize * msg.len() < limit / 8, "{pushed} messages");
        // At most the bound, the chunk that crossed it, the chunks in flight and the
        // one filling: each one such message (it is larger than LARGE_MESSAGE).
        assert!(msg.len() >= LARGE_MESSAGE);
        let per_chunk = per_message;
        let rows = memory(&job);
        assert!(
            rows <= limit + (max_inflight() + 2) * per_chunk,
            "{rows} bytes of rows, {per_chunk} a chunk"
        );
    }

    /// Messages parsed a chunk at a time on the pool land as if each had been parsed
    /// on arrival: rows in offset order within each day, dead letters in order with
    /// their own offsets, over several chunks and a partial last one.
    #[test]
    fn staged_chunks_keep_offset_order_and_dead_letters() {
        use arrow::array::{Array, Int64Array, StringArray};
        let n = 2 * STAGE_MESSAGES + 37;
        let mut b = PartitionBatch::new(TopicKind::Invoices, "invoices", 1, 500, 2, 1);
        let limits = Limits::unbounded();
        let mut expected_dead = Vec::new();
        for i in 0..n {
            let offset = 500 + i as i64;
            if i % 97 == 5 {
                b.push(None, Some(b"{\"lines\": 3"), offset, offset, &limits);
                expected_dead.push(format!("invoices/1/{offset}"));
                continue;
            }
            let msg = format!(
                r#"{{"distributor_id":"D","invoice_id":"I{i}","line_no":1,"invoice_date":"2026-11-{:02}","outlet_id":"O","sku_id":"S","quantity":1,"net_value":2}}"#,
                10 + i % 3
            );
            b.push(None, Some(msg.as_bytes()), offset, offset, &limits);
        }
        assert_eq!(b.taken(), n);
        let job = b.close();
        assert_eq!(job.rows + job.dead.len(), n);
        let dead: Vec<_> = job.dead.iter().map(|d| d.source.clone()).collect();
        assert_eq!(dead, expected_dead);
        assert!(
            job.dead.iter().all(|d| d.class == "not_json"),
            "{:?}",
            job.dead[0]
        );
        assert_eq!(job.objects.len(), 3);
        let mut seen = 0;
        for (name, batches) in &job.objects {
            let batch = &arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap();
            let col = |c: &str| batch.column_by_name(c).expect("column").clone();
            let offsets = col("source_offset");
            let offsets = offsets.as_any().downcast_ref::<Int64Array>().expect("i64");
            let ids = col("invoice_id");
            let ids = ids.as_any().downcast_ref::<StringArray>().expect("utf8");
            assert!(offsets.values().windows(2).all(|w| w[0] < w[1]), "{name}");
            for r in 0..batch.num_rows() {
                assert_eq!(ids.value(r), format!("I{}", offsets.value(r) - 500));
            }
            seen += batch.num_rows();
        }
        assert_eq!(seen, job.rows);
    }
}
