//! Per-partition micro-batches: messages are staged as they arrive, parsed a chunk at
//! a time on a pool of threads and appended in offset order to Arrow builders (one
//! per invoice date for invoices); a batch covers a contiguous
//! range of offsets of one partition, rejected messages included, and becomes the
//! objects of one [`FlushJob`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::OnceLock;
use std::time::Instant;

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use rayon::prelude::*;
use spectra_core::master::{parse_outlet, parse_sku, Outlet, Sku};
use spectra_core::message::{days_to_date, parse_invoice_message, InvoiceLine, Limits, Rejection};
use spectra_core::schema::{OutletBuilder, RawInvoiceBuilder, SkuBuilder, Source};

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

enum Rows {
    Invoices(BTreeMap<i32, RawInvoiceBuilder>),
    Outlets(OutletBuilder),
    Skus(SkuBuilder),
}

/// The open batch of one partition.
pub struct PartitionBatch {
    /// Topic.
    pub topic: String,
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
    rows: Rows,
    row_count: usize,
    bytes: usize,
    messages: u64,
    /// Rejected messages of this batch.
    pub dead: Vec<DeadLetter>,
    /// Net value of its invoice lines by the currency they arrived in.
    value_by_currency: BTreeMap<String, f64>,
    /// Messages taken but not yet parsed, their keys and values in `arena`.
    staged: Vec<Staged>,
    arena: Vec<u8>,
    /// The limits the staged messages are parsed under.
    limits: Option<Limits>,
}

/// Messages parsed together: a chunk large enough that the parse pool's threads
/// share it at little cost (about a millisecond of parsing), small enough to keep
/// the batch's row bound close.
const STAGE_MESSAGES: usize = 1024;

/// A message taken and not yet parsed.
struct Staged {
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    offset: i64,
    timestamp_ms: i64,
}

/// What a staged message parsed into.
enum Parsed<'a> {
    Lines(Vec<InvoiceLine<'a>>),
    Outlet(Outlet),
    Sku(Sku),
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
    /// Objects to write: path relative to the storage root, and rows.
    pub objects: Vec<(String, RecordBatch)>,
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
            topic: topic.to_owned(),
            partition,
            epoch,
            generation,
            last_timestamp_ms: 0,
            messages: 0,
            first: offset,
            last: offset - 1,
            opened: Instant::now(),
            rows: match kind {
                TopicKind::Invoices => Rows::Invoices(BTreeMap::new()),
                TopicKind::Outlets => Rows::Outlets(OutletBuilder::default()),
                TopicKind::Skus => Rows::Skus(SkuBuilder::default()),
            },
            row_count: 0,
            bytes: 0,
            dead: Vec::new(),
            value_by_currency: BTreeMap::new(),
            staged: Vec::new(),
            arena: Vec::new(),
            limits: None,
        }
    }

    /// Bytes of the messages taken so far (keys and values): what the batch's rows
    /// and dead letters hold in memory, give or take the builders' overhead.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes one message: its rows are appended, or it is recorded as a dead letter,
    /// when the staged messages are parsed — every [`STAGE_MESSAGES`] messages and
    /// when the batch closes — under the `limits` of the first message of each chunk
    /// (invoice lines beyond them are rejected).
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
        if self.staged.is_empty() {
            self.limits = Some(limits.clone());
        }
        let mut keep = |bytes: Option<&[u8]>| {
            bytes.map(|b| {
                let start = self.arena.len();
                self.arena.extend_from_slice(b);
                start..self.arena.len()
            })
        };
        let (key, value) = (keep(key), keep(value));
        self.staged.push(Staged {
            key,
            value,
            offset,
            timestamp_ms,
        });
        if self.staged.len() >= STAGE_MESSAGES {
            self.parse_staged();
        }
    }

    /// Messages taken so far: rows appended, dead letters and messages not yet parsed
    /// (what the batch's row bound counts).
    pub fn taken(&self) -> usize {
        self.row_count + self.dead.len() + self.staged.len()
    }

    /// Parses the staged messages on the parse pool, then appends their rows (or
    /// dead letters) in offset order, as if each had been parsed on arrival.
    fn parse_staged(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let limits = self
            .limits
            .take()
            .expect("staged messages keep their limits");
        let (staged, arena) = (&self.staged, &self.arena);
        let bytes = |r: &Option<Range<usize>>| r.clone().map(|r| &arena[r]);
        let kind = match &self.rows {
            Rows::Invoices(_) => TopicKind::Invoices,
            Rows::Outlets(_) => TopicKind::Outlets,
            Rows::Skus(_) => TopicKind::Skus,
        };
        let parsed: Vec<Result<Parsed<'_>, Rejection>> = parse_pool().install(|| {
            staged
                .par_iter()
                .map(|m| match kind {
                    TopicKind::Invoices => {
                        parse_invoice_message(bytes(&m.value), &limits).map(Parsed::Lines)
                    }
                    TopicKind::Outlets => {
                        parse_outlet(bytes(&m.key), bytes(&m.value)).map(Parsed::Outlet)
                    }
                    TopicKind::Skus => parse_sku(bytes(&m.key), bytes(&m.value)).map(Parsed::Sku),
                })
                .collect()
        });
        for (m, result) in staged.iter().zip(parsed) {
            let source = Source {
                topic: &self.topic,
                partition: self.partition,
                offset: m.offset,
                timestamp_ms: m.timestamp_ms,
            };
            let rows = match (result, &mut self.rows) {
                (Ok(Parsed::Lines(lines)), Rows::Invoices(by_date)) => {
                    let values = &mut self.value_by_currency;
                    for (i, line) in lines.iter().enumerate() {
                        by_date
                            .entry(line.date32())
                            .or_default()
                            .append(line, &source, i as i32);
                        // Labels stay bounded: with a base, only currencies with a
                        // rate get here; without one, every line is `as_sent`.
                        let label = match &limits.currency {
                            Some(c) => line
                                .currency
                                .as_deref()
                                .map_or_else(|| c.base.clone(), |s| s.trim().to_ascii_uppercase()),
                            None => "as_sent".to_owned(),
                        };
                        *values.entry(label).or_default() += line.net_value;
                    }
                    lines.len()
                }
                (Ok(Parsed::Outlet(o)), Rows::Outlets(b)) => {
                    b.append(&o, &source);
                    1
                }
                (Ok(Parsed::Sku(sku)), Rows::Skus(b)) => {
                    b.append(&sku, &source);
                    1
                }
                (Ok(_), _) => unreachable!("parsed as the batch's kind"),
                (Err(rejection), _) => {
                    tracing::debug!(topic = %self.topic, partition = self.partition,
                        offset = m.offset, reason = %rejection, "rejected to DLQ");
                    self.dead.push(DeadLetter {
                        key: bytes(&m.key).map(<[u8]>::to_vec),
                        value: bytes(&m.value).map(<[u8]>::to_vec),
                        error: rejection.text.clone(),
                        source: format!("{}/{}/{}", self.topic, self.partition, m.offset),
                        class: rejection.class(),
                    });
                    0
                }
            };
            self.row_count += rows;
        }
        self.staged.clear();
        self.arena.clear();
    }

    /// Closes the batch into the objects it writes. Object names derive from the
    /// topic, partition, offset range and the owner's lease epoch: two owners of a
    /// partition (one of them fenced) never write the same name.
    pub fn close(mut self) -> FlushJob {
        self.parse_staged();
        let stem = format!(
            "{}-{}-{:020}-{:020}-e{}.parquet",
            sanitize(&self.topic),
            self.partition,
            self.first,
            self.last,
            self.epoch
        );
        let objects = match self.rows {
            Rows::Invoices(by_date) => by_date
                .into_iter()
                .map(|(days, mut b)| {
                    let date: NaiveDate = days_to_date(days);
                    (format!("raw/invoices/date={date}/{stem}"), b.finish())
                })
                .collect(),
            Rows::Outlets(mut b) if !b.is_empty() => {
                vec![(format!("master/outlets/{stem}"), b.finish())]
            }
            Rows::Skus(mut b) if !b.is_empty() => vec![(format!("master/skus/{stem}"), b.finish())],
            _ => Vec::new(),
        };
        FlushJob {
            topic: self.topic,
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

/// Makes a topic name safe as part of an object name.
pub fn sanitize(topic: &str) -> String {
    topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for (name, batch) in &job.objects {
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
