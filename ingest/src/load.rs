//! `spectra load`: CSV, spreadsheet (XLSX, XLS, ODS: read with `calamine`) or
//! JSON-lines files of invoices, outlets or SKUs onto the input topics, with a column
//! mapping for other layouts.
//!
//! A mapping is `field=EXPR` where EXPR is a column name, `=literal` (a constant),
//! `A*B` (the product of two numeric columns, e.g. quantity × unit price) or `@seq`
//! (the line's position within its invoice, counted in file order). `field` is one of
//! the message's fields (contract §2), `attributes.NAME` for an outlet or SKU
//! attribute, and `outlet.…` / `sku.…` for master data derived from invoice files; any
//! other field is refused before anything is sent. A spreadsheet's first sheet (or
//! `--sheet`) is read as a CSV file would be: its first row names the columns, dates
//! become ISO dates, whole numbers have no `.0`. The preset
//! `online-retail` maps the UCI Online Retail file (CustomerID → outlet, StockCode →
//! SKU, Quantity × UnitPrice → net value). Rows that cannot become a valid message are
//! not sent; they are counted by reason and, with `--rejects FILE`, written out.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde_json::{Map, Value};
use spectra_core::kafka::client_config;
use spectra_core::message::{parse_invoice_message, Limits};
use spectra_core::Config;

use crate::Error;

/// What the files hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Invoice lines (→ the invoices topic).
    Invoices,
    /// Outlet master records (→ the outlets topic).
    Outlets,
    /// SKU master records (→ the SKUs topic).
    Skus,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "invoices" => Ok(Kind::Invoices),
            "outlets" => Ok(Kind::Outlets),
            "skus" => Ok(Kind::Skus),
            o => Err(format!("unknown kind `{o}`: use invoices, outlets or skus")),
        }
    }
}

/// Options of one load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// What the files hold.
    pub kind: Kind,
    /// The files (`.csv`, `.jsonl`, `.json`, optionally `.gz`).
    pub files: Vec<PathBuf>,
    /// A named mapping (`online-retail`).
    pub preset: Option<String>,
    /// `field=EXPR` mappings, applied over the preset.
    pub maps: Vec<String>,
    /// Also send the outlets and SKUs seen in an invoice file to the master topics
    /// (with `outlet.FIELD=EXPR` / `sku.FIELD=EXPR` mappings).
    pub derive_master: bool,
    /// Write rejected rows (file, row, reason) to this CSV.
    pub rejects: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
    /// The sheet of spreadsheet files (default: the first).
    pub sheet: Option<String>,
}

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadSummary {
    /// Messages delivered to the broker.
    pub sent: u64,
    /// Rows rejected, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Master records derived and sent.
    pub master_sent: u64,
}

/// How a message field is computed from a CSV row.
#[derive(Debug, Clone)]
pub enum Expr {
    /// The column of this name.
    Column(String),
    /// This text.
    Literal(String),
    /// The product of two numeric columns.
    Product(String, String),
    /// 1, 2, 3… per invoice (`@seq`): the line number within the row's invoice.
    Seq,
}

/// Reads a mapping expression: `=literal`, `@seq`, `A*B` or a column name.
pub fn parse_expr(e: &str) -> Expr {
    if let Some(l) = e.strip_prefix('=') {
        Expr::Literal(l.to_owned())
    } else if e == "@seq" {
        Expr::Seq
    } else if let Some((a, b)) = e.split_once('*') {
        Expr::Product(a.trim().to_owned(), b.trim().to_owned())
    } else {
        Expr::Column(e.to_owned())
    }
}

/// One CSV row mapped to a message: the record for the topic, and the outlet and SKU
/// master fields (`outlet.…`, `sku.…` mappings) it carries.
#[derive(Debug, Default, PartialEq)]
pub struct MappedRow {
    /// The message's fields.
    pub record: Map<String, Value>,
    /// `outlet.…` fields.
    pub outlet: Map<String, Value>,
    /// `sku.…` fields.
    pub sku: Map<String, Value>,
}

/// Maps CSV rows to messages by a mapping (`field=COLUMN`, `=literal`, `A*B`, `@seq`),
/// its columns resolved once against the header row.
pub struct RowMapper {
    plan: Vec<(String, Expr, Vec<usize>)>,
    invoice_col: Option<usize>,
    seq: HashMap<String, i64>,
}

impl RowMapper {
    /// Resolves `maps` against `headers`; an unknown column is an error naming it.
    pub fn new(headers: &csv::StringRecord, maps: &[(String, Expr)]) -> Result<Self, String> {
        let col = |name: &str| -> Result<usize, String> {
            headers
                .iter()
                .position(|h| h.trim() == name)
                .ok_or_else(|| {
                    format!(
                    "the mapping names column `{name}`, which the file does not have (columns: {})",
                    headers.iter().collect::<Vec<_>>().join(", ")
                )
                })
        };
        let mut plan: Vec<(String, Expr, Vec<usize>)> = Vec::new();
        for (f, e) in maps {
            let idx = match e {
                Expr::Column(c) => vec![col(c)?],
                Expr::Product(a, b) => vec![col(a)?, col(b)?],
                _ => vec![],
            };
            plan.push((f.clone(), e.clone(), idx));
        }
        let invoice_col = plan
            .iter()
            .find(|(f, _, _)| f == "invoice_id")
            .and_then(|(_, _, i)| i.first().copied());
        Ok(Self {
            plan,
            invoice_col,
            seq: HashMap::new(),
        })
    }

    /// Maps one row, or says why it cannot be (`class: sentence naming the column`).
    pub fn map(&mut self, record: &csv::StringRecord) -> Result<MappedRow, String> {
        let mut out = MappedRow::default();
        let mut bad: Option<String> = None;
        let seq = &mut self.seq;
        let invoice_col = self.invoice_col;
        for (f, e, idx) in &self.plan {
            let (target, path) = match f.split_once('.') {
                Some(("outlet", x)) => (&mut out.outlet, x),
                Some(("sku", x)) => (&mut out.sku, x),
                _ => (&mut out.record, f.as_str()),
            };
            // `attributes.NAME` goes into the record's `attributes` object.
            let (field, attribute) = match path.split_once('.') {
                Some(("attributes", a)) => ("attributes", Some(a)),
                _ => (path, None),
            };
            let v = match e {
                Expr::Literal(l) => Value::String(l.clone()),
                Expr::Seq => {
                    let inv = invoice_col
                        .and_then(|i| record.get(i))
                        .unwrap_or("")
                        .to_owned();
                    let n = seq.entry(inv).or_insert(0);
                    *n += 1;
                    Value::from(*n)
                }
                Expr::Column(c) => {
                    let raw = record.get(idx[0]).unwrap_or("").trim();
                    if raw.is_empty() {
                        if !f.contains('.') && REQUIRED.contains(&field) {
                            bad.get_or_insert(format!(
                                "empty_{field}: column {c} is empty, so the row has no {field}"
                            ));
                        }
                        continue;
                    }
                    if NUMERIC.contains(&field) {
                        match raw.parse::<f64>() {
                            // A line number is a whole number: 3.5 is a mapping
                            // error, not line 3 (which would merge two lines).
                            Ok(x) if field == "line_no" => {
                                if x.fract() != 0.0 || !(0.0..9.0e15).contains(&x) {
                                    bad.get_or_insert(format!(
                                        "bad_line_no: column {c} is `{raw}`, not a whole number ≥ 0"
                                    ));
                                    continue;
                                }
                                Value::from(x as i64)
                            }
                            Ok(x) if x.is_finite() => Value::from(x),
                            _ => {
                                bad.get_or_insert(format!(
                                    "bad_{field}: column {c} is `{raw}`, not a finite number"
                                ));
                                continue;
                            }
                        }
                    } else {
                        Value::String(raw.to_owned())
                    }
                }
                Expr::Product(a, b) => {
                    let x = record.get(idx[0]).unwrap_or("").trim().parse::<f64>();
                    let y = record.get(idx[1]).unwrap_or("").trim().parse::<f64>();
                    match (x, y) {
                        (Ok(x), Ok(y)) if (x * y).is_finite() => Value::from(x * y),
                        _ => {
                            bad.get_or_insert(format!(
                                "bad_{field}: {a} × {b} is not a finite product of two numbers"
                            ));
                            continue;
                        }
                    }
                }
            };
            match attribute {
                Some(a) => {
                    let v = match v {
                        Value::String(t) if matches!(e, Expr::Column(_)) => attribute_value(&t),
                        v => v,
                    };
                    if let Value::Object(m) = target
                        .entry("attributes")
                        .or_insert_with(|| Value::Object(Map::new()))
                    {
                        m.insert(a.to_owned(), v);
                    }
                }
                None => {
                    target.insert(field.to_owned(), v);
                }
            }
        }
        match bad {
            Some(reason) => Err(reason),
            None => Ok(out),
        }
    }
}

/// The mapping of a preset (if any) with `field=EXPR` flags over it (a flag replaces the
/// preset's expression for its field).
pub fn mapping(preset_name: Option<&str>, flags: &[String]) -> Result<Vec<(String, Expr)>, Error> {
    let mut maps: Vec<(String, Expr)> = Vec::new();
    if let Some(p) = preset_name {
        for (f, e) in preset(p)? {
            maps.push((f.to_owned(), parse_expr(e)));
        }
    }
    for m in flags {
        let (f, e) = m
            .split_once('=')
            .ok_or_else(|| Error::Load(format!("mapping `{m}` is not field=EXPR")))?;
        let f = f.trim();
        maps.retain(|(g, _)| g != f);
        maps.push((f.to_owned(), parse_expr(e.trim())));
    }
    Ok(maps)
}

/// The fields a mapping may fill, per kind of file (contract §2). Every invoice field
/// but the last (`currency`) is required.
const INVOICE_FIELDS: &[&str] = &spectra_core::message::FIELDS;
const OUTLET_FIELDS: &[&str] = &["outlet_id", "name", "region", "channel"];
const SKU_FIELDS: &[&str] = &["sku_id", "name", "category", "subcategory", "brand"];

/// Refuses a mapping to a field the kind of file has no place for (it would be sent
/// and then ignored): `attributes.NAME` fills an outlet's or SKU's attributes,
/// `outlet.…` and `sku.…` the master data derived from invoice files.
pub fn check_fields(kind: Kind, maps: &[(String, Expr)]) -> Result<(), Error> {
    let master = |fields: &[&str], f: &str| {
        fields.contains(&f) || f.strip_prefix("attributes.").is_some_and(|a| !a.is_empty())
    };
    for (f, _) in maps {
        let ok = match kind {
            Kind::Invoices => match f.split_once('.') {
                Some(("outlet", x)) => master(OUTLET_FIELDS, x),
                Some(("sku", x)) => master(SKU_FIELDS, x),
                _ => INVOICE_FIELDS.contains(&f.as_str()),
            },
            Kind::Outlets => master(OUTLET_FIELDS, f),
            Kind::Skus => master(SKU_FIELDS, f),
        };
        if !ok {
            let (known, extra) = match kind {
                Kind::Invoices => (
                    INVOICE_FIELDS,
                    ", outlet.FIELD and sku.FIELD (with attributes.NAME) for --derive-master",
                ),
                Kind::Outlets => (OUTLET_FIELDS, ", attributes.NAME"),
                Kind::Skus => (SKU_FIELDS, ", attributes.NAME"),
            };
            return Err(Error::Load(format!(
                "mapping names field `{f}`, which {kind:?} messages do not have; known: {}{extra}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// An attribute's value from text: a number when the text is one exactly as written
/// (`4`, `12.5`), text otherwise (`007`, `12.50`, `M`), so no code loses a digit.
pub fn attribute_value(raw: &str) -> Value {
    match raw.parse::<f64>() {
        Ok(x) if x.is_finite() && number_text(x) == raw => Value::from(x),
        _ => Value::String(raw.to_owned()),
    }
}

/// A number as a spreadsheet shows it: whole numbers without a fraction.
fn number_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

/// A spreadsheet cell as text: dates as ISO dates (with the time when it is not
/// midnight), whole numbers without `.0`, an error cell as its code (`#N/A`).
pub fn cell_text(c: &calamine::Data) -> String {
    use calamine::Data;
    match c {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Bool(b) => b.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => number_text(*f),
        Data::DateTime(d) if d.is_datetime() => {
            let (y, m, day, h, min, sec, _) = d.to_ymd_hms_milli();
            if (h, min, sec) == (0, 0, 0) {
                format!("{y:04}-{m:02}-{day:02}")
            } else {
                format!("{y:04}-{m:02}-{day:02}T{h:02}:{min:02}:{sec:02}")
            }
        }
        Data::DateTime(d) => number_text(d.as_f64()),
        Data::Error(e) => e.to_string(),
    }
}

fn preset(name: &str) -> Result<Vec<(&'static str, &'static str)>, Error> {
    match name {
        "online-retail" => Ok(vec![
            ("distributor_id", "=UK-ONLINE"),
            ("invoice_id", "InvoiceNo"),
            ("line_no", "@seq"),
            ("invoice_date", "InvoiceDate"),
            ("outlet_id", "CustomerID"),
            ("sku_id", "StockCode"),
            ("quantity", "Quantity"),
            ("net_value", "Quantity*UnitPrice"),
            ("currency", "=GBP"),
            ("outlet.outlet_id", "CustomerID"),
            ("outlet.region", "Country"),
            ("sku.sku_id", "StockCode"),
            ("sku.name", "Description"),
        ]),
        o => Err(Error::Load(format!(
            "unknown preset `{o}`; known: online-retail"
        ))),
    }
}

const NUMERIC: &[&str] = &["line_no", "quantity", "net_value"];
const REQUIRED: &[&str] = INVOICE_FIELDS.split_at(INVOICE_FIELDS.len() - 1).0;

/// Counts deliveries and failures reported by the broker.
#[derive(Default)]
struct Counting {
    ok: AtomicU64,
    failed: AtomicU64,
}

struct LoadContext(Arc<Counting>);
impl ClientContext for LoadContext {}
impl ProducerContext for LoadContext {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.0.ok.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                tracing::warn!(error = %e, "delivery failed");
                self.0.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

fn open(path: &Path) -> Result<Box<dyn Read>, Error> {
    let f = std::fs::File::open(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(
            f,
        ))))
    } else {
        Ok(Box::new(BufReader::new(f)))
    }
}

fn is_jsonl(path: &Path) -> bool {
    let name = path.to_string_lossy();
    let name = name.trim_end_matches(".gz");
    name.ends_with(".jsonl") || name.ends_with(".json") || name.ends_with(".ndjson")
}

fn is_spreadsheet(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "xlsx" | "xlsm" | "xlsb" | "xls" | "ods"
        )
    })
}

/// The rows of a spreadsheet's sheet (`sheet`, or the first) as text records, the
/// first one being the header.
fn spreadsheet_rows(file: &Path, sheet: Option<&str>) -> Result<Vec<csv::StringRecord>, Error> {
    use calamine::Reader;
    let err = |e: String| Error::Load(format!("{}: {e}", file.display()));
    let mut wb = calamine::open_workbook_auto(file).map_err(|e| err(e.to_string()))?;
    let names = wb.sheet_names();
    let name = match sheet {
        Some(s) if names.iter().any(|n| n == s) => s.to_owned(),
        Some(s) => {
            return Err(err(format!(
                "no sheet `{s}` (sheets: {})",
                names.join(", ")
            )))
        }
        None => names
            .first()
            .cloned()
            .ok_or_else(|| err("the workbook has no sheet".to_owned()))?,
    };
    let range = wb
        .worksheet_range(&name)
        .map_err(|e| err(format!("sheet `{name}`: {e}")))?;
    Ok(range
        .rows()
        .map(|r| r.iter().map(cell_text).collect::<csv::StringRecord>())
        .collect())
}

/// Loads the files onto the topic of their kind.
pub async fn run(cfg: &Config, opts: LoadOptions) -> Result<LoadSummary, Error> {
    let t = &cfg.kafka.topics;
    spectra_core::kafka::ensure_topics(
        cfg,
        &[
            (t.invoices.as_str(), spectra_core::kafka::Retention::Delete),
            (t.outlets.as_str(), spectra_core::kafka::Retention::Compact),
            (t.skus.as_str(), spectra_core::kafka::Retention::Compact),
        ],
    )
    .await?;
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || load_blocking(&cfg, &opts))
        .await
        .expect("load task does not panic")
}

/// The producer of a load, with its delivery counts.
struct Sender<'a> {
    producer: ThreadedProducer<LoadContext>,
    counting: Arc<Counting>,
    topic: &'a str,
    attempted: u64,
}

impl Sender<'_> {
    /// Queues one message on `topic` (the load's own topic by default), waiting while
    /// the producer's queue is full; other errors are counted as failed deliveries.
    fn send_to(&mut self, topic: &str, key: Option<&str>, payload: &[u8]) {
        let mut rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(payload);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        self.attempted += 1;
        loop {
            match self.producer.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        std::thread::sleep(Duration::from_millis(5));
                        rec = r;
                    } else {
                        tracing::error!(error = %e, "produce failed");
                        self.counting.failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }

    fn send(&mut self, key: Option<&str>, payload: &[u8]) {
        let topic = self.topic;
        self.send_to(topic, key, payload);
    }

    /// Waits for every delivery; an error unless each was acknowledged.
    fn finish(self) -> Result<u64, Error> {
        self.producer.flush(Duration::from_secs(120))?;
        let failed = self.counting.failed.load(Ordering::Relaxed);
        let ok = self.counting.ok.load(Ordering::Relaxed);
        if failed > 0 || ok < self.attempted {
            return Err(Error::Load(format!(
                "{failed} messages could not be delivered ({ok} of {} acknowledged); run the load again (redeliveries are harmless)",
                self.attempted
            )));
        }
        Ok(ok)
    }
}

/// Master records derived from invoice rows (`--derive-master`), first seen wins.
#[derive(Default)]
struct Derived {
    outlets: BTreeMap<String, Map<String, Value>>,
    skus: BTreeMap<String, Map<String, Value>>,
}

/// Sends a JSON-lines file as it is, one message per line, keyed by its outlet or SKU.
fn load_jsonl(
    file: &Path,
    kind: Kind,
    sender: &mut Sender<'_>,
    bar: &ProgressBar,
) -> Result<(), Error> {
    let reader = BufReader::new(open(file)?);
    for line in reader.lines() {
        let line = line.map_err(|e| Error::Io {
            path: file.display().to_string(),
            source: e,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let field = match kind {
            Kind::Invoices | Kind::Outlets => "outlet_id",
            Kind::Skus => "sku_id",
        };
        let key = serde_json::from_str::<Value>(&line).ok().and_then(|v| {
            v.get(field).map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| x.to_string())
            })
        });
        sender.send(key.as_deref(), line.as_bytes());
        bar.inc(1);
    }
    Ok(())
}

/// Maps and sends a CSV file or a spreadsheet's sheet row by row; a row that breaks a
/// rule goes to `reject`.
#[allow(clippy::too_many_arguments)] // the load's parts, each used once
fn load_csv(
    file: &Path,
    opts: &LoadOptions,
    maps: &[(String, Expr)],
    limits: &Limits,
    sender: &mut Sender<'_>,
    derived: &mut Derived,
    reject: &mut dyn FnMut(u64, String),
    bar: &ProgressBar,
) -> Result<(), Error> {
    // A spreadsheet is read whole (the reader holds its sheet anyway); a CSV file row
    // by row.
    let mut sheet: Option<std::vec::IntoIter<csv::StringRecord>> = None;
    let mut rdr = None;
    let headers = if is_spreadsheet(file) {
        let mut rows = spreadsheet_rows(file, opts.sheet.as_deref())?.into_iter();
        let headers = rows
            .next()
            .ok_or_else(|| Error::Load(format!("{}: the sheet is empty", file.display())))?;
        sheet = Some(rows);
        headers
    } else {
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(open(file)?);
        let headers = r
            .headers()
            .map_err(|e| {
                Error::Load(format!(
                    "{}: cannot read the header row: {e}",
                    file.display()
                ))
            })?
            .clone();
        rdr = Some(r);
        headers
    };
    let mut mapper = RowMapper::new(&headers, maps)
        .map_err(|e| Error::Load(format!("{}: {e}", file.display())))?;
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    let mut next = |record: &mut csv::StringRecord, row: u64| -> Result<bool, Error> {
        if let Some(rows) = sheet.as_mut() {
            return Ok(rows.next().map(|r| *record = r).is_some());
        }
        rdr.as_mut()
            .expect("a CSV reader")
            .read_record(record)
            .map_err(|e| Error::Load(format!("{}: row {}: {e}", file.display(), row + 2)))
    };
    while next(&mut record, row)? {
        row += 1;
        bar.inc(1);
        let (obj, outlet, sku) = match mapper.map(&record) {
            Ok(m) => (m.record, m.outlet, m.sku),
            Err(reason) => {
                reject(row + 1, reason);
                continue;
            }
        };
        let payload = serde_json::to_vec(&Value::Object(obj.clone())).expect("json");
        let id = |field: &str| obj.get(field).and_then(Value::as_str).map(str::to_owned);
        let key = match opts.kind {
            Kind::Invoices => {
                // Validate with the ingest rules so a bad row is reported here, by row.
                if let Err(r) = parse_invoice_message(Some(&payload), limits) {
                    reject(row + 1, format!("{}: {r}", r.class()));
                    continue;
                }
                if opts.derive_master {
                    if let Some(Value::String(o)) = outlet.get("outlet_id") {
                        derived.outlets.entry(o.clone()).or_insert(outlet);
                    }
                    if let Some(Value::String(s)) = sku.get("sku_id") {
                        derived.skus.entry(s.clone()).or_insert(sku);
                    }
                }
                id("outlet_id")
            }
            Kind::Outlets => id("outlet_id"),
            Kind::Skus => id("sku_id"),
        };
        sender.send(key.as_deref(), &payload);
    }
    Ok(())
}

fn load_blocking(cfg: &Config, opts: &LoadOptions) -> Result<LoadSummary, Error> {
    // The bounds ingest applies, so a row beyond them is reported here, by row.
    let limits = Limits::today(&cfg.ingest);
    let maps = mapping(opts.preset.as_deref(), &opts.maps)?;
    check_fields(opts.kind, &maps)?;
    let counting = Arc::new(Counting::default());
    let producer: ThreadedProducer<LoadContext> = client_config(cfg)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "60000")
        .create_with_context(LoadContext(counting.clone()))?;
    let topic = match opts.kind {
        Kind::Invoices => &cfg.kafka.topics.invoices,
        Kind::Outlets => &cfg.kafka.topics.outlets,
        Kind::Skus => &cfg.kafka.topics.skus,
    };
    let mut sender = Sender {
        producer,
        counting,
        topic,
        attempted: 0,
    };
    let mut summary = LoadSummary::default();
    let mut rejects = match &opts.rejects {
        Some(p) => Some(
            csv::Writer::from_path(p).map_err(|e| Error::Load(format!("{}: {e}", p.display())))?,
        ),
        None => None,
    };
    let bar = if opts.progress {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} {human_pos} rows {per_sec} {msg}")
                .expect("valid template"),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut derived = Derived::default();
    for file in &opts.files {
        bar.set_message(file.display().to_string());
        if is_jsonl(file) && maps.is_empty() {
            load_jsonl(file, opts.kind, &mut sender, &bar)?;
            continue;
        }
        if maps.is_empty() {
            return Err(Error::Load(format!(
                "{}: a CSV or spreadsheet file needs a mapping (--preset or --map field=COLUMN)",
                file.display()
            )));
        }
        let mut reject = |row: u64, reason: String| {
            let class = reason.split(':').next().unwrap_or("").to_owned();
            *summary.rejected.entry(class).or_default() += 1;
            if let Some(w) = rejects.as_mut() {
                let _ = w.write_record([file.display().to_string(), row.to_string(), reason]);
            }
        };
        load_csv(
            file,
            opts,
            &maps,
            &limits,
            &mut sender,
            &mut derived,
            &mut reject,
            &bar,
        )?;
    }
    for (topic, records) in [
        (&cfg.kafka.topics.outlets, &derived.outlets),
        (&cfg.kafka.topics.skus, &derived.skus),
    ] {
        for (id, rec) in records {
            let payload = serde_json::to_vec(&Value::Object(rec.clone())).expect("json");
            sender.send_to(topic, Some(id), &payload);
            summary.master_sent += 1;
        }
    }
    let ok = sender.finish()?;
    bar.finish_and_clear();
    if let Some(mut w) = rejects {
        let _ = w.flush();
    }
    summary.sent = ok - summary.master_sent;
    let _ = std::io::stderr().flush();
    Ok(summary)
}

#[cfg(test)]
mod tests;
