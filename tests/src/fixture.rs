//! The publisher's fixture: a small seeded distributor feed run through the real
//! pipeline. Outlets with three planted tastes buy for 60 days; the feed goes onto fresh
//! topics of the test broker, the real ingest lands it (`once`), the real aggregator
//! rolls it up and the real segmenter makes run 1. Then 30 more days arrive in which
//! some outlets change taste, a few stop buying and new ones open; ingest, aggregate and
//! segment again make run 2. Nothing of the segmenter's output is written here: every
//! table the tests read is what the services wrote.
//!
//! The fixture is built once per test binary ([`fixture`]); each test copies it into a
//! store of its own ([`Fixture::store`]) so that what the publisher writes there (its
//! state, releases) never meets another test's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{json, Value};
use spectra_core::service::Context;
use spectra_core::tables::read_rows;
use spectra_core::tables::runs::AssignmentRow;
use spectra_core::Config;
use tokio_util::sync::CancellationToken;

mod feed;
use feed::{buy, catalogue, outlet_message, outlets, round2, sku_message, Feed};

/// The fixture's one segmentation.
pub const SEGMENTATION: &str = "mix";

/// Its configuration, as a `spectra.toml` holds it. `min_value` is below zero so that an
/// outlet whose credit notes exceed its purchases stays assigned (exports show negative
/// values).
pub const CONFIG_TOML: &str = r#"[[segmentation]]
name = "mix"
level = "category"
window_days = 56
k = 3
seed = 11
min_value = -1000000.0
"#;

/// The categories outlets buy now (the features of the segmentation).
pub const FEATURES: [&str; 6] = ["coffee", "tea", "snacks", "beer", "dairy", "water"];
/// The category bought only a year before, in the weeks after run 2's as-of date.
pub const SEASONAL: &str = "ice-cream";
/// SKUs per category.
pub const SKUS_PER_CATEGORY: usize = 4;
/// Planted tastes: taste `t` buys mostly `FEATURES[2t]` and `FEATURES[2t + 1]`.
pub const TASTES: usize = 3;
/// Outlets buying from the first day.
pub const OUTLETS: usize = 240;
/// Outlets that open on the first day of step 2.
pub const JOINERS: usize = 10;
/// The first invoice date.
pub const START: (i32, u32, u32) = (2026, 8, 3);
/// Days of step 1 (run 1's as-of is the last of them).
pub const STEP1_DAYS: u32 = 60;
/// Days of step 2 (run 2's as-of is the last of them).
pub const STEP2_DAYS: u32 = 30;
/// Mean invoices per outlet and day.
const VISIT_P: f64 = 0.25;
/// Seed of the feed.
const SEED: u64 = 20_261_101;

/// The date of day `day` of the feed.
pub fn day(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(START.0, START.1, START.2).unwrap() + chrono::Days::new(day.into())
}

/// The two favourite categories (indices into [`FEATURES`]) of a taste.
pub fn favourites(taste: usize) -> [usize; 2] {
    [2 * taste, 2 * taste + 1]
}

/// An outlet of the feed and its planted truth.
#[derive(Debug, Clone)]
pub struct Outlet {
    /// Id.
    pub id: String,
    /// Name (one of them formula-like, as spreadsheets would run it).
    pub name: String,
    /// Region.
    pub region: String,
    /// Channel.
    pub channel: String,
    /// Attribute `size` (S, M, L).
    pub size: String,
    /// Attribute `postcode`: nearly one per outlet (far more than 30 values).
    pub postcode: String,
    /// Attribute `staff`, a number.
    pub staff: u32,
    /// The planted taste (0..TASTES).
    pub taste: usize,
    /// The taste it switches to on the first day of step 2.
    pub drifts_to: Option<usize>,
    /// Stops buying after day 30 (leaves the segmentation in run 2).
    pub churns: bool,
    /// Opens on the first day of step 2 (new in run 2).
    pub joins: bool,
    /// Gets a credit note larger than its purchases in step 2 (negative value in run 2).
    pub returner: bool,
}

impl Outlet {
    /// Its taste on day `d`, `None` when it does not buy then.
    pub fn taste_on(&self, d: u32) -> Option<usize> {
        if (self.joins && d < STEP1_DAYS) || (self.churns && d > 30) {
            return None;
        }
        Some(match self.drifts_to {
            Some(t) if d >= STEP1_DAYS => t,
            _ => self.taste,
        })
    }
}

/// A SKU of the catalogue.
#[derive(Debug, Clone)]
pub struct Sku {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Brand.
    pub brand: String,
    /// Unit price.
    pub price: f64,
}

/// One invoice line as it stands after every redelivery and correction (the version
/// that must count, once).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Distributor.
    pub distributor: String,
    /// Invoice.
    pub invoice: String,
    /// Line number.
    pub line_no: i64,
    /// Outlet.
    pub outlet: String,
    /// SKU.
    pub sku: String,
    /// Invoice date.
    pub date: NaiveDate,
    /// Quantity.
    pub quantity: f64,
    /// Net value.
    pub value: f64,
}

/// One row of a run's `assignments.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Segment.
    pub segment_id: String,
    /// Segment in the previous run.
    pub previous_segment_id: Option<String>,
    /// `new`, `moved` or `same`.
    pub change: String,
    /// Confidence.
    pub confidence: f64,
    /// Net value in the window.
    pub value: f64,
    /// Lines in the window.
    pub lines: i64,
    /// Potential.
    pub potential: f64,
    /// `A`, `B` or `C` by potential within the segment.
    pub tier: String,
}

/// A run as the segmenter wrote it.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// `mix/{as_of}/{seq}`.
    pub run_id: String,
    /// As-of date.
    pub as_of: NaiveDate,
    /// The run folder, relative to the storage root.
    pub path: String,
    /// Outlet → assignment.
    pub assignments: BTreeMap<String, Assignment>,
    /// `profiles.json`.
    pub profiles: Vec<Value>,
    /// `model.json`.
    pub model: Value,
}

impl RunInfo {
    /// The segment ids, in order.
    pub fn segments(&self) -> BTreeSet<String> {
        self.assignments
            .values()
            .map(|a| a.segment_id.clone())
            .collect()
    }

    /// The outlets of a segment.
    pub fn members(&self, segment: &str) -> Vec<&str> {
        self.assignments
            .iter()
            .filter(|(_, a)| a.segment_id == segment)
            .map(|(o, _)| o.as_str())
            .collect()
    }

    /// Outlets with `change` equal to `change`.
    pub fn with_change(&self, change: &str) -> BTreeSet<&str> {
        self.assignments
            .iter()
            .filter(|(_, a)| a.change == change)
            .map(|(o, _)| o.as_str())
            .collect()
    }

    /// Outlet → segment.
    pub fn segment_of(&self) -> BTreeMap<String, String> {
        self.assignments
            .iter()
            .map(|(o, a)| (o.clone(), a.segment_id.clone()))
            .collect()
    }

    /// The name the segmenter proposed for a segment (`profiles.json`).
    pub fn proposed_name(&self, segment: &str) -> String {
        self.profiles
            .iter()
            .find(|p| p["segment_id"] == segment)
            .and_then(|p| p["name"].as_str())
            .unwrap_or_else(|| panic!("no proposed name for {segment} in {}", self.run_id))
            .to_owned()
    }
}

/// The fixture: the planted truth, the lines that count, and the two runs.
#[derive(Debug)]
pub struct Fixture {
    /// Every outlet (joiners last).
    pub outlets: Vec<Outlet>,
    /// The catalogue.
    pub skus: Vec<Sku>,
    /// The lines that count (latest version per identity).
    pub lines: Vec<Line>,
    /// Invoice messages produced (redeliveries and corrections included).
    pub messages: usize,
    /// Messages delivered twice.
    pub redelivered: usize,
    /// Invoices re-sent with corrected values.
    pub corrected: usize,
    /// Run 1.
    pub run1: RunInfo,
    /// Run 2.
    pub run2: RunInfo,
    /// How long building took.
    pub build_time: Duration,
    /// The input topics and the ingest consumer group the fixture was built with.
    pub inputs: (spectra_core::config::Topics, String),
    snap1: PathBuf,
    snap2: PathBuf,
}

/// Which state of the pipeline a store starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// After step 1: run 1 is the latest run.
    Run1,
    /// After step 2: run 2 is the latest run.
    Run2,
}

/// A test's own copy of the fixture's storage.
#[derive(Debug)]
pub struct Store {
    _dir: tempfile::TempDir,
    /// The storage root.
    pub root: PathBuf,
    /// Its `file://` URL.
    pub url: String,
    /// A `spectra.toml` with the fixture's segmentation.
    pub config_file: PathBuf,
}

impl Store {
    /// Brings the store to run 2, as the services of step 2 would have left it
    /// (`latest.json` last); what the publisher wrote stays.
    pub fn advance_to_run2(&self) {
        copy_tree(&fixture().snap2, &self.root);
    }

    /// A configuration for the publisher (and `spectra` commands) on this store: the
    /// test broker, output topics named `{prefix}.…`, the input topics and ingest group
    /// the fixture was built with (the pipeline page reads ingest's status of them), the
    /// API on a free port with the token `s3cret`, a cycle a second.
    pub fn config(&self, prefix: &str) -> Config {
        let mut cfg = Config::load(Some(&self.config_file), &json!({})).unwrap();
        cfg.kafka.brokers = crate::brokers();
        cfg.kafka.partitions = 3;
        cfg.kafka.session_timeout_ms = 6000;
        cfg.storage.url = self.url.clone();
        let t = &mut cfg.kafka.topics;
        t.assignments = format!("{prefix}.segment-assignments");
        t.profiles = format!("{prefix}.segment-profiles");
        t.recommendations = format!("{prefix}.outlet-recommendations");
        t.metadata = format!("{prefix}.segment-metadata");
        let (inputs, group) = &fixture().inputs;
        t.invoices = inputs.invoices.clone();
        t.outlets = inputs.outlets.clone();
        t.skus = inputs.skus.clone();
        t.dlq = inputs.dlq.clone();
        cfg.ingest.group_id = group.clone();
        cfg.publish.listen = "127.0.0.1:0".into();
        cfg.publish.api_token = "s3cret".into();
        cfg.publish.poll_seconds = 1;
        cfg
    }

    /// The flags a `spectra` command takes to run as `cfg` on this store.
    pub fn flags(&self, cfg: &Config) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "--config".into(),
            self.config_file.display().to_string(),
            "--brokers".into(),
            cfg.kafka.brokers.clone(),
            "--storage".into(),
            self.url.clone(),
        ];
        let t = &cfg.kafka.topics;
        for (k, val) in [
            ("assignments", &t.assignments),
            ("profiles", &t.profiles),
            ("recommendations", &t.recommendations),
            ("metadata", &t.metadata),
            ("invoices", &t.invoices),
            ("outlets", &t.outlets),
            ("skus", &t.skus),
            ("dlq", &t.dlq),
        ] {
            v.push("--set".into());
            v.push(format!("kafka.topics.{k}={val}"));
        }
        v.push("--set".into());
        v.push(format!("ingest.group_id={}", cfg.ingest.group_id));
        v
    }
}

impl Fixture {
    /// A fresh copy of the storage at `stage`, with a config file beside it.
    pub fn store(&self, stage: Stage) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        copy_tree(
            match stage {
                Stage::Run1 => &self.snap1,
                Stage::Run2 => &self.snap2,
            },
            &root,
        );
        let config_file = dir.path().join("spectra.toml");
        std::fs::write(&config_file, CONFIG_TOML).unwrap();
        Store {
            url: format!("file://{}", root.display()),
            root,
            config_file,
            _dir: dir,
        }
    }

    /// An outlet by id.
    pub fn outlet(&self, id: &str) -> &Outlet {
        self.outlets
            .iter()
            .find(|o| o.id == id)
            .unwrap_or_else(|| panic!("no outlet {id} in the fixture"))
    }

    /// The name the SKU master gives an SKU id (as the API serves it: a JSON string).
    pub fn sku_name(&self, id: &Value) -> Value {
        let id = id.as_str().unwrap();
        Value::from(
            self.skus
                .iter()
                .find(|s| s.id == id)
                .unwrap_or_else(|| panic!("{id} in the catalogue"))
                .name
                .clone(),
        )
    }

    /// The outlets that change taste in step 2.
    pub fn drifted(&self) -> Vec<&Outlet> {
        self.outlets
            .iter()
            .filter(|o| o.drifts_to.is_some())
            .collect()
    }

    /// The window of a run: its first and last day.
    pub fn window(&self, run: &RunInfo) -> (NaiveDate, NaiveDate) {
        let days = config().segmentation[0].window_days;
        (
            run.as_of - chrono::Days::new(u64::from(days) - 1),
            run.as_of,
        )
    }

    /// Per outlet: net value and lines in a run's window, from the lines fed in.
    pub fn window_totals(&self, run: &RunInfo) -> BTreeMap<String, (f64, i64)> {
        let (from, to) = self.window(run);
        let mut m: BTreeMap<String, (f64, i64)> = BTreeMap::new();
        for l in self.lines.iter().filter(|l| l.date >= from && l.date <= to) {
            let e = m.entry(l.outlet.clone()).or_default();
            e.0 += l.value;
            e.1 += 1;
        }
        m
    }

    /// The segment most of a taste's outlets are in (at the run's as-of; drifted
    /// outlets left out).
    pub fn segment_of_taste(&self, run: &RunInfo, taste: usize) -> String {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &self.outlets {
            if o.taste != taste || o.drifts_to.is_some() {
                continue;
            }
            if let Some(a) = run.assignments.get(&o.id) {
                *count.entry(a.segment_id.as_str()).or_default() += 1;
            }
        }
        count
            .into_iter()
            .max_by_key(|c| c.1)
            .map(|c| c.0.to_owned())
            .unwrap_or_else(|| panic!("no outlet of taste {taste} in {}", run.run_id))
    }
}

/// The configuration the fixture ran the services with (its segmentation; every other
/// setting at its default).
pub fn config() -> Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("spectra.toml");
            std::fs::write(&file, CONFIG_TOML).unwrap();
            Config::load(Some(&file), &json!({})).unwrap()
        })
        .clone()
}

/// The fixture of this test binary, built on first use (a few tens of seconds).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Its own thread and runtime: the caller may be inside a runtime.
        match std::thread::spawn(build).join() {
            Ok(f) => f,
            Err(e) => std::panic::resume_unwind(e),
        }
    })
}

/// Copies every file under `from` to `to`, the `latest.json` files last.
fn copy_tree(from: &Path, to: &Path) {
    let mut last = Vec::new();
    let mut stack = vec![from.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(from).unwrap().to_owned();
            if rel.file_name().is_some_and(|n| n == "latest.json") {
                last.push(rel);
            } else {
                copy_file(&p, &to.join(rel));
            }
        }
    }
    for rel in last {
        copy_file(&from.join(&rel), &to.join(&rel));
    }
}

fn copy_file(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
}

/// Removes the fixture folders of test processes that are gone (a static is never
/// dropped, so a process leaves its fixture behind).
fn sweep_stale(tmp: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("spectra-fixture-")
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn produce(topic: &str, messages: &[(String, String)]) {
    let p = crate::producer();
    for (k, v) in messages {
        crate::send(&p, topic, Some(k.as_bytes()), Some(v.as_bytes()));
    }
    crate::flush(&p);
}

/// Ingest (`once`), aggregate (as of `as_of`), segment: the real services.
async fn pipeline(cfg: &Config, as_of: NaiveDate) -> spectra_segmenter::RunSummary {
    let ctx = || Context::new(CancellationToken::new());
    let s = spectra_ingest::run(
        cfg.clone(),
        ctx(),
        spectra_ingest::IngestOptions { once: true },
    )
    .await
    .expect("ingest");
    assert_eq!(s.rejected, 0, "the fixture's feed is all valid: {s:?}");
    let a = spectra_aggregator::run(
        cfg.clone(),
        ctx(),
        spectra_aggregator::AggregateOptions {
            once: true,
            as_of: Some(as_of),
            ..Default::default()
        },
    )
    .await
    .expect("aggregate");
    assert!(a.failures.is_empty(), "{a:?}");
    let s = spectra_segmenter::run(
        cfg.clone(),
        ctx(),
        spectra_segmenter::SegmentOptions {
            once: true,
            ..Default::default()
        },
    )
    .await
    .expect("segment");
    assert_eq!(s.runs.len(), 1, "one run per step: {s:?}");
    s.runs.into_iter().next().unwrap()
}

fn build() -> Fixture {
    let started = Instant::now();
    let tmp = std::env::temp_dir();
    sweep_stale(&tmp);
    let base = tmp.join(crate::fresh("spectra-fixture"));
    let (snap1, snap2) = (base.join("run1"), base.join("store"));
    std::fs::create_dir_all(&snap2).unwrap();
    let mut cfg = config();
    let prefix = crate::fresh("fx");
    cfg.kafka.brokers = crate::brokers();
    cfg.kafka.partitions = 3;
    cfg.kafka.session_timeout_ms = 6000;
    cfg.storage.url = format!("file://{}", snap2.display());
    cfg.kafka.topics.invoices = format!("{prefix}.invoices");
    cfg.kafka.topics.outlets = format!("{prefix}.outlets");
    cfg.kafka.topics.skus = format!("{prefix}.skus");
    cfg.kafka.topics.dlq = format!("{prefix}.invoices.dlq");
    cfg.ingest.group_id = format!("{prefix}.ingest");

    let mut rng = Xoshiro256PlusPlus::seed_from_u64(SEED);
    let outlets = outlets(&mut rng);
    let skus = catalogue(&mut rng);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use spectra_core::kafka::Retention::*;
        let t = &cfg.kafka.topics;
        spectra_core::kafka::ensure_topics(
            &cfg,
            &[
                (&t.invoices, Delete),
                (&t.outlets, Compact),
                (&t.skus, Compact),
                (&t.dlq, Delete),
            ],
        )
        .await
        .unwrap();
    });
    let topics = cfg.kafka.topics.clone();

    // Step 1: master data, 60 days, and last year's weeks after run 2's as-of (ice
    // cream for everyone: the seasonal recommendation).
    let (steps1, steps2) = (0..STEP1_DAYS, STEP1_DAYS..STEP1_DAYS + STEP2_DAYS);
    let as_of1 = day(STEP1_DAYS - 1);
    let as_of2 = day(STEP1_DAYS + STEP2_DAYS - 1);
    produce(
        &topics.skus,
        &skus.iter().map(sku_message).collect::<Vec<_>>(),
    );
    produce(
        &topics.outlets,
        &outlets
            .iter()
            .filter(|o| !o.joins)
            .map(outlet_message)
            .collect::<Vec<_>>(),
    );
    let mut feed = Feed::default();
    let seasonal: Vec<&Sku> = skus.iter().filter(|s| s.category == SEASONAL).collect();
    let last_year = as_of2 + chrono::Days::new(1) - chrono::Days::new(365);
    for o in outlets.iter().filter(|o| !o.joins) {
        for _ in 0..2 {
            let date = last_year + chrono::Days::new(rng.gen_range(0..28));
            let lines = [(seasonal[0], 10.0), (seasonal[rng.gen_range(1..4)], 4.0)];
            feed.invoice(&mut rng, &o.id, date, &lines);
        }
    }
    buy(&mut feed, &mut rng, &outlets, &skus, steps1);
    feed.corrections(&mut rng);
    produce(&topics.invoices, &feed.messages);
    let mut messages = std::mem::take(&mut feed.messages).len();
    let r1 = rt.block_on(pipeline(&cfg, as_of1));
    assert!(r1.held.is_none(), "{r1:?}");
    copy_tree(&snap2, &snap1);

    // Step 2: joiners' master data; 30 days in which the drifted outlets buy like the
    // next taste; the returner's credit note.
    produce(
        &topics.outlets,
        &outlets
            .iter()
            .filter(|o| o.joins)
            .map(outlet_message)
            .collect::<Vec<_>>(),
    );
    buy(&mut feed, &mut rng, &outlets, &skus, steps2);
    let returner = outlets.iter().find(|o| o.returner).unwrap();
    let window_from = as_of2 - chrono::Days::new(u64::from(cfg.segmentation[0].window_days) - 1);
    let spent: f64 = feed
        .lines
        .values()
        .filter(|l| l.outlet == returner.id && l.date >= window_from)
        .map(|l| l.value)
        .sum();
    // A category it rarely buys, so that its spend shares hardly change.
    let rare = FEATURES[(favourites(returner.taste)[1] + 1) % FEATURES.len()];
    let other = skus.iter().find(|s| s.category == rare).unwrap();
    let credit = Sku {
        price: round2(1.5 * spent / 50.0),
        ..other.clone()
    };
    feed.invoice(
        &mut rng,
        &returner.id,
        day(STEP1_DAYS + 25),
        &[(&credit, -50.0)],
    );
    feed.corrections(&mut rng);
    produce(&topics.invoices, &feed.messages);
    messages += feed.messages.len();
    let r2 = rt.block_on(pipeline(&cfg, as_of2));
    assert!(
        r2.held.is_none(),
        "run 2 must not be held (the fixture's drift is below the breaker): {r2:?}"
    );

    let storage = spectra_core::Storage::from_url(&cfg.storage.url).unwrap();
    let run1 = rt.block_on(read_run(&storage, &r1.run_id));
    let run2 = rt.block_on(read_run(&storage, &r2.run_id));
    let f = Fixture {
        outlets,
        skus,
        lines: feed.lines.into_values().collect(),
        messages,
        redelivered: feed.redelivered,
        corrected: feed.corrected,
        run1,
        run2,
        build_time: started.elapsed(),
        inputs: (cfg.kafka.topics.clone(), cfg.ingest.group_id.clone()),
        snap1,
        snap2,
    };
    eprintln!(
        "fixture: {} outlets, {} lines ({} messages, {} redelivered, {} invoices corrected); \
         {} ({} outlets), {} ({} outlets, {} moved, {} new); built in {:.1} s",
        f.outlets.len(),
        f.lines.len(),
        f.messages,
        f.redelivered,
        f.corrected,
        f.run1.run_id,
        f.run1.assignments.len(),
        f.run2.run_id,
        f.run2.assignments.len(),
        f.run2.with_change("moved").len(),
        f.run2.with_change("new").len(),
        f.build_time.as_secs_f64()
    );
    f
}

/// Reads a run folder back.
pub async fn read_run(storage: &spectra_core::Storage, run_id: &str) -> RunInfo {
    let mut p = run_id.splitn(3, '/');
    let (name, as_of, seq) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
    let path = format!("segmentations/{name}/runs/{as_of}.{seq}");
    // The table layer's reader: the same definition the services write with.
    let rows: Vec<AssignmentRow> = read_rows(storage, &format!("{path}/assignments.parquet"))
        .await
        .unwrap()
        .expect("assignments");
    let assignments = rows
        .into_iter()
        .map(|a| {
            let row = Assignment {
                segment_id: a.segment_id,
                previous_segment_id: a.previous_segment_id,
                change: a.change.as_str().to_owned(),
                confidence: a.confidence,
                value: a.value,
                lines: a.lines,
                potential: a.potential,
                tier: a.tier,
            };
            (a.outlet_id, row)
        })
        .collect();
    let json = |f: &str| {
        let path = format!("{path}/{f}");
        async move {
            storage
                .get_json::<Value>(&path)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{path} missing"))
        }
    };
    let profiles = json("profiles.json").await.as_array().unwrap().clone();
    let model = json("model.json").await;
    RunInfo {
        run_id: run_id.to_owned(),
        as_of: as_of.parse().unwrap(),
        path,
        assignments,
        profiles,
        model,
    }
}
