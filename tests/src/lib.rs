//! Helpers for Spectra's end-to-end tests: the test broker (started by
//! `scripts/test.sh`), fresh topic names, the `spectra` binary as a child process,
//! producing and consuming, and reading the tables back.

pub mod fixture;
pub mod prometheus;
pub mod served;
pub mod services;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// The broker address `scripts/test.sh` exported.
pub fn brokers() -> String {
    std::env::var("SPECTRA_TEST_BROKERS").unwrap_or_else(|_| {
        panic!("SPECTRA_TEST_BROKERS is not set: run the tests with scripts/test.sh, which starts the test broker")
    })
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn fresh(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `spectra` binary built beside the test executables, in the profile directory the
/// test itself runs from (`target/<profile>/deps/<test>` → `target/<profile>/spectra`;
/// `release` under the README's test command), checked to be built from the sources
/// under test.
///
/// `cargo test --release --workspace` (what the README's test command runs) always
/// rebuilds it first: the `spectra` package's own integration test (`cli/tests/binary.rs`)
/// makes Cargo build the binary before any test runs. Run another way
/// (`cargo test --release -p spectra-tests`), a missing binary, one built from another
/// checkout sharing the target directory, or one older than the sources it is made of
/// stops the test with what to run.
pub fn spectra_bin() -> PathBuf {
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| {
            // target/<profile>/deps/<test> → target/<profile>
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().unwrap().parent().unwrap();
            let bin = dir.join("spectra");
            if let Err(why) = check_binary(&bin) {
                panic!(
                    "{}: {why}; run the tests with `cargo test --release --workspace` (scripts/test.sh does), which rebuilds it",
                    bin.display()
                );
            }
            bin
        })
        .clone()
}

/// Why `bin` is not a build of this checkout's current sources, if it is not.
fn check_binary(bin: &Path) -> Result<(), String> {
    let built = std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .map_err(|_| "the binary is missing".to_owned())?;
    let out = Command::new(bin)
        .arg("build-info")
        .output()
        .map_err(|e| format!("cannot run it ({e})"))?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| "it does not answer `build-info` (built from older sources)".to_owned())?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cli = workspace.join("cli");
    if info["package_dir"].as_str() != Some(cli.to_str().unwrap()) {
        return Err(format!(
            "it was built from {}, not from this checkout ({})",
            info["package_dir"],
            cli.display()
        ));
    }
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut dirs: Vec<PathBuf> = [
        "core",
        "ingest",
        "aggregator",
        "segmenter",
        "publisher",
        "cli",
    ]
    .iter()
    .map(|c| workspace.join(c).join("src"))
    .collect();
    let mut files = vec![workspace.join("Cargo.lock")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    for f in files {
        let t = std::fs::metadata(&f)
            .and_then(|m| m.modified())
            .map_err(|e| format!("{}: {e}", f.display()))?;
        if newest.as_ref().is_none_or(|(n, _)| t > *n) {
            newest = Some((t, f));
        }
    }
    match newest {
        Some((t, f)) if t > built => Err(format!(
            "it is older than {} (stale)",
            f.strip_prefix(workspace).unwrap_or(&f).display()
        )),
        _ => Ok(()),
    }
}

/// Topic names and settings of one test, passed to `spectra` as flags.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Broker address.
    pub brokers: String,
    /// Storage URL (`file://…`).
    pub storage: String,
    /// The storage directory.
    pub dir: PathBuf,
    /// Invoices topic.
    pub invoices: String,
    /// Outlets topic.
    pub outlets: String,
    /// SKUs topic.
    pub skus: String,
    /// Dead-letter topic.
    pub dlq: String,
    /// Consumer group of ingest.
    pub group: String,
    /// More `--set section.key=value` settings every command of this test takes.
    pub settings: Vec<String>,
}

impl Setup {
    /// Fresh topics and group; storage under `dir`.
    pub fn new(dir: &Path) -> Self {
        let id = fresh("t");
        Self {
            brokers: brokers(),
            storage: format!("file://{}", dir.display()),
            dir: dir.to_owned(),
            invoices: format!("{id}.invoices"),
            outlets: format!("{id}.outlets"),
            skus: format!("{id}.skus"),
            dlq: format!("{id}.invoices.dlq"),
            group: format!("{id}.ingest"),
            settings: Vec::new(),
        }
    }

    /// Accepts invoice dates as old as the Online Retail file's (2010–2011): the default
    /// floor of ingest is ten years before the day of ingest.
    pub fn accepting_history(mut self) -> Self {
        self.settings
            .push(format!("ingest.max_age_days={}", 365 * 40));
        self
    }

    /// The flags every `spectra` command of this test takes.
    pub fn flags(&self) -> Vec<String> {
        let mut v = vec![
            "--brokers".into(),
            self.brokers.clone(),
            "--storage".into(),
            self.storage.clone(),
            "--admin-listen".into(),
            "127.0.0.1:0".into(),
        ];
        for (k, val) in [
            ("kafka.topics.invoices", &self.invoices),
            ("kafka.topics.outlets", &self.outlets),
            ("kafka.topics.skus", &self.skus),
            ("kafka.topics.dlq", &self.dlq),
            ("ingest.group_id", &self.group),
        ] {
            v.push("--set".into());
            v.push(format!("{k}={val}"));
        }
        v.push("--set".into());
        v.push("kafka.session_timeout_ms=6000".into());
        for kv in &self.settings {
            v.push("--set".into());
            v.push(kv.clone());
        }
        v
    }

    /// A `spectra` command with this test's flags after the subcommand.
    pub fn command(&self, sub: &str, extra: &[&str]) -> Command {
        let mut c = Command::new(spectra_bin());
        c.arg(sub).args(self.flags()).args(extra);
        c.env("RUST_LOG", "warn,spectra_ingest=info");
        c
    }

    /// Runs `spectra ingest --once` to completion; panics unless it exits 0.
    pub fn ingest_once(&self, extra: &[&str]) -> String {
        let mut args = vec!["--once"];
        args.extend_from_slice(extra);
        let out = self.command("ingest", &args).output().unwrap();
        assert!(
            out.status.success(),
            "ingest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `spectra load --preset online-retail --derive-master --no-progress
    /// {extra…} {file}` to completion; panics unless it exits 0; returns its stdout.
    pub fn load_retail(&self, file: &Path, extra: &[&str]) -> Vec<u8> {
        let mut args = vec![
            "--preset",
            "online-retail",
            "--derive-master",
            "--no-progress",
        ];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        let out = self.command("load", &args).output().unwrap();
        assert!(
            out.status.success(),
            "load failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Starts `spectra ingest` (the service) as a child process.
    pub fn spawn_ingest(&self, extra: &[&str]) -> Child {
        self.command("ingest", extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Creates the input and dead-letter topics with `partitions` partitions.
    pub fn create_topics(&self, partitions: i32) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut cfg = spectra_core::Config::default();
        cfg.kafka.brokers = self.brokers.clone();
        cfg.kafka.partitions = partitions;
        use spectra_core::kafka::Retention::*;
        rt.block_on(spectra_core::kafka::ensure_topics(
            &cfg,
            &[
                (&self.invoices, Delete),
                (&self.outlets, Compact),
                (&self.skus, Compact),
                (&self.dlq, Delete),
            ],
        ))
        .unwrap();
    }
}

/// The S3-compatible server (moto) `scripts/test.sh` started.
pub fn s3_endpoint() -> String {
    std::env::var("SPECTRA_TEST_S3")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            panic!("SPECTRA_TEST_S3 is not set: run the tests with scripts/test.sh, which starts the S3 server (scripts/s3.sh)")
        })
}

/// The environment an S3 client (a test's and `spectra`'s) needs for the server.
pub fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT", endpoint.to_owned()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "spectra-test".into()),
        ("AWS_SECRET_ACCESS_KEY", "spectra-test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// A fresh bucket on the S3 server, its name returned; the S3 environment is set in
/// this process too (the test's own `Storage` reads), as well as returned for children.
pub fn s3_bucket(endpoint: &str) -> (String, Vec<(&'static str, String)>) {
    let bucket = fresh("spectra").to_lowercase().replace('.', "-");
    let status = block_on(async {
        reqwest::Client::new()
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success(), "creating bucket {bucket}: {status}");
    let env = s3_env(endpoint);
    for (k, v) in &env {
        std::env::set_var(k, v);
    }
    (bucket, env)
}

/// Runs `f` to completion on a runtime of its own (a test's storage reads).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A producer to the test broker.
pub fn producer() -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

/// Sends a message (key, value; `None` value = null) and retries while the queue is full.
pub fn send(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    if let Some(v) = value {
        rec = rec.payload(v);
    }
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                std::thread::sleep(Duration::from_millis(2));
                rec = r;
            }
        }
    }
}

/// Waits until everything sent was delivered.
pub fn flush(p: &ThreadedProducer<DefaultProducerContext>) {
    p.flush(Duration::from_secs(60)).unwrap();
}

/// A consumed message with its headers.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers as (name, value) strings.
    pub headers: Vec<(String, String)>,
}

/// Reads a topic from the beginning to its current end (every partition's EOF; the
/// test broker's ListOffsets answer is not relied on).
pub fn read_topic(topic: &str) -> Vec<Consumed> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", fresh("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut at_end = std::collections::HashMap::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
            .unwrap();
        at_end.insert(p.id(), false);
    }
    assert!(!at_end.is_empty(), "topic {topic} has no partitions");
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while at_end.values().any(|d| !d) {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} timed out"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_owned(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Consumed {
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
                at_end.insert(m.partition(), false);
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p, true);
            }
            Some(Err(e)) => eprintln!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The compacted view of a topic, as its consumers see it: the last value per key as
/// JSON, a null value removing the key.
pub fn compacted(topic: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut m = std::collections::BTreeMap::new();
    for c in read_topic(topic) {
        let k = String::from_utf8(c.key.expect("every message has a key")).unwrap();
        match c.value {
            None => {
                m.remove(&k);
            }
            Some(v) => {
                m.insert(k, serde_json::from_slice(&v).unwrap());
            }
        }
    }
    m
}

/// Reads every Parquet file under `dir` (recursively).
pub fn read_parquet_dir(dir: &Path) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let data = bytes::Bytes::from(std::fs::read(&p).unwrap());
                out.extend(spectra_core::schema::from_parquet(data).unwrap());
            }
        }
    }
    out
}

/// The project's copy of the UCI Online Retail file (see `tests/data/online-retail/`).
pub fn online_retail_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/online-retail/online_retail.csv.gz")
}

/// The Online Retail CSV, decompressed.
pub fn online_retail_text() -> String {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(online_retail_file()).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// One row of the Online Retail CSV, as the tests compare against it.
#[derive(Debug, Clone)]
pub struct RetailRow {
    /// CustomerID, trimmed; empty when the row has none.
    pub customer: String,
    /// StockCode.
    pub stock_code: String,
    /// Quantity (negative on cancellations).
    pub quantity: f64,
    /// UnitPrice.
    pub unit_price: f64,
    /// InvoiceNo.
    pub invoice: String,
    /// The date part of InvoiceDate (`YYYY-MM-DD`).
    pub date: String,
}

/// Every row of the Online Retail file, straight from the CSV (no Spectra code involved).
pub fn online_retail_rows() -> Vec<RetailRow> {
    let text = online_retail_text();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (cust, code, qty, price) = (
        col("CustomerID"),
        col("StockCode"),
        col("Quantity"),
        col("UnitPrice"),
    );
    let (invoice, date) = (col("InvoiceNo"), col("InvoiceDate"));
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let c = rec[cust].trim();
            RetailRow {
                customer: if c == "NA" {
                    String::new()
                } else {
                    c.to_owned()
                },
                stock_code: rec[code].to_owned(),
                quantity: rec[qty].parse().unwrap(),
                unit_price: rec[price].parse().unwrap(),
                invoice: rec[invoice].to_owned(),
                date: rec[date].get(..10).unwrap_or_default().to_owned(),
            }
        })
        .collect()
}
