//! Command-line arguments. Every subcommand takes the common flags; `--help` explains
//! each one.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use spectra_ingest::load::Kind;

/// Spectra: segments retail outlets by what they buy, continuously.
#[derive(Debug, Parser)]
#[command(name = "spectra", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes. Configuration layers: defaults, then `--config`, then
/// `SPECTRA__SECTION__KEY` environment variables, then these flags.
#[derive(Debug, Args, Clone, Default)]
pub struct Common {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers, `host:port[,host:port…]` (kafka.brokers).
    #[arg(long, value_name = "HOST:PORT")]
    pub brokers: Option<String>,
    /// Storage URL: `file:///path`, `s3://bucket/prefix` or `memory://` (storage.url).
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// Admin server address for /healthz, /readyz, /metrics (admin.listen).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Log format: plain or json (log.format).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Any setting as `section.key=value`, e.g. `--set ingest.flush_rows=1000`.
    #[arg(long, value_name = "SECTION.KEY=VALUE", value_parser = setting)]
    pub set: Vec<Setting>,
}

/// A `--set` value as a `(key path, value)` override: `section.key=value` with a key
/// (the value as JSON when it reads as JSON, else as text), else a usage error (exit 2)
/// rather than a setting silently not made.
fn setting(s: &str) -> Result<Setting, String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => {
            let v = serde_json::from_str(v).unwrap_or_else(|_| serde_json::json!(v));
            Ok((k.trim().to_owned(), v))
        }
        _ => Err(format!(
            "`{s}` is not SECTION.KEY=VALUE (e.g. ingest.flush_rows=1000)"
        )),
    }
}

/// A `--set` override: key path and value.
pub type Setting = (String, serde_json::Value);

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Service: invoices and master data from Kafka into raw Parquet.
    Ingest {
        #[command(flatten)]
        common: Common,
        /// Run until every partition has reached its end, then exit.
        #[arg(long)]
        once: bool,
        /// Do not ingest: forget the checkpoint of TOPIC (every partition) or of one
        /// partition, so that the next ingest re-reads it from the beginning of the topic
        /// as it is now. The deliberate answer to an offset-domain refusal (a recreated
        /// topic, a retention gap); see README "Offset domain". Stop ingest first.
        #[arg(long, value_name = "TOPIC[:PARTITION]")]
        reset_checkpoint: Option<String>,
    },
    /// Service: raw Parquet into daily roll-ups and feature tables with DataFusion.
    Aggregate {
        #[command(flatten)]
        common: Common,
        /// Run one pass (roll up what landed, write every segmentation's features), then exit.
        #[arg(long)]
        once: bool,
        /// Last day of the feature window, YYYY-MM-DD (default: the latest day with a normal volume of lines, see README "Tables").
        #[arg(long, value_name = "DATE")]
        as_of: Option<chrono::NaiveDate>,
        /// Only this segmentation's features (as named in the config).
        #[arg(long, value_name = "NAME")]
        segmentation: Option<String>,
        /// Forget the aggregator's state and rebuild the daily tables from all raw data.
        #[arg(long)]
        full: bool,
    },
    /// Service: re-cluster each segmentation when its schedule says it is due.
    Segment {
        #[command(flatten)]
        common: Common,
        /// Run every due segmentation once (by its `schedule`), then exit.
        #[arg(long)]
        once: bool,
        /// With --once: run every segmentation that has features, due or not.
        #[arg(long, requires = "once")]
        all: bool,
        /// Only this segmentation (as named in the config).
        #[arg(long, value_name = "NAME")]
        segmentation: Option<String>,
    },
    /// Service: changed assignments, profiles and recommendations to Kafka; the HTTP API
    /// and web console (with /healthz, /readyz, /metrics) on publish.listen.
    Publish {
        #[command(flatten)]
        common: Common,
        /// Publish every segmentation's latest run once, print a JSON summary, then exit.
        #[arg(long)]
        once: bool,
        /// Repair the output topics: read each one's compacted view, send the accepted
        /// run's value for every key that differs or is missing and a tombstone for
        /// every key it no longer has, record the state, print a JSON summary, exit.
        #[arg(long, conflicts_with = "once")]
        reconcile: bool,
    },
    /// A segmentation's latest run to a CSV or XLSX file: outlets, segments, names, tags,
    /// value.
    Export {
        #[command(flatten)]
        common: Common,
        /// The segmentation (as named in the config).
        #[arg(long, value_name = "NAME")]
        segmentation: String,
        /// File format: csv or xlsx.
        #[arg(long, default_value = "csv", value_parser = ["csv", "xlsx"])]
        format: String,
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// The whole pipeline on this machine with nothing installed: an embedded
    /// Kafka-protocol broker, a local store, a generated feed, all services, the console.
    Demo {
        #[command(flatten)]
        feed: FeedArgs,
        /// Run the story once (before, at and after the drift) and exit with a summary.
        #[arg(long)]
        once: bool,
        /// Console address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Keep the tables here (default: a fresh temporary directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Wall-clock milliseconds per simulated day (interactive mode).
        #[arg(long, default_value_t = 1000)]
        day_ms: u64,
        /// TOML config file over the demo's own settings (segmentations, topic names,
        /// tokens, …; `SPECTRA__SECTION__KEY` variables too). The embedded broker, the
        /// store and the console address stay the demo's.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Any setting as `section.key=value`, over the config file.
        #[arg(long, value_name = "SECTION.KEY=VALUE", value_parser = setting)]
        set: Vec<Setting>,
    },
    /// A synthetic distributor feed with planted segments, to Kafka or to files.
    Generate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        feed: FeedArgs,
        /// Write JSON-lines files and truth.csv into this directory instead of Kafka.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// With Kafka: also write the planted truth to this CSV file.
        #[arg(long, value_name = "FILE")]
        truth: Option<PathBuf>,
        /// With Kafka: send only the days from this one (counted from --start) of the
        /// same feed: earlier days are generated and skipped, so a later call continues
        /// the feed of an earlier one (a daily increment). Master data only from day 0.
        #[arg(long, default_value_t = 0)]
        from_day: u32,
        /// With Kafka: send only the days before this one (default: --days).
        #[arg(long)]
        to_day: Option<u32>,
    },
    /// CSV, spreadsheet or JSON-lines files (invoices, outlets, SKUs) onto the input
    /// topics.
    Load {
        #[command(flatten)]
        common: Common,
        /// What the files hold: invoices, outlets or skus.
        #[arg(long, default_value = "invoices")]
        kind: Kind,
        /// A named column mapping: online-retail.
        #[arg(long)]
        preset: Option<String>,
        /// Column mapping `field=EXPR`: EXPR is a column, `=literal`, `A*B` or `@seq`;
        /// `attributes.NAME=…` fills an outlet or SKU attribute; `outlet.FIELD=…` and
        /// `sku.FIELD=…` map derived master data. An unknown field is refused.
        #[arg(long, value_name = "FIELD=EXPR")]
        map: Vec<String>,
        /// Also send the outlets and SKUs seen in invoice files to the master topics.
        #[arg(long)]
        derive_master: bool,
        /// Write rejected rows (file, row, reason) to this CSV file.
        #[arg(long, value_name = "FILE")]
        rejects: Option<PathBuf>,
        /// Hide the progress bar.
        #[arg(long)]
        no_progress: bool,
        /// The sheet of spreadsheet files (default: the first).
        #[arg(long)]
        sheet: Option<String>,
        /// Files: .csv, .jsonl (optionally .gz), .xlsx, .xls, .xlsb, .ods.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Prints where and from what this binary was built (JSON). Used by the tests to
    /// make sure they drive a binary built from the sources under test.
    #[command(hide = true)]
    BuildInfo,
}

/// The synthetic feed's shape (`spectra generate`, `spectra demo`).
#[derive(Debug, Args, Clone)]
pub struct FeedArgs {
    /// Seed of every random choice.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Outlets.
    #[arg(long, default_value_t = 600)]
    pub outlets: usize,
    /// Planted segments.
    #[arg(long, default_value_t = 5)]
    pub segments: usize,
    /// SKUs in the catalogue.
    #[arg(long, default_value_t = 160)]
    pub skus: usize,
    /// Days of invoices.
    #[arg(long, default_value_t = 120)]
    pub days: u32,
    /// First invoice date.
    #[arg(long, default_value = "2026-06-01")]
    pub start: chrono::NaiveDate,
    /// Share of outlets that change behaviour from --drift-day on.
    #[arg(long, default_value_t = 0.0)]
    pub drift_share: f64,
    /// Day (counted from --start) at which the drift begins.
    #[arg(long, default_value_t = 90)]
    pub drift_day: u32,
    /// Share of invoice messages delivered twice.
    #[arg(long, default_value_t = 0.03)]
    pub redelivery_share: f64,
    /// Share of broken messages (they go to the dead-letter topic).
    #[arg(long, default_value_t = 0.005)]
    pub bad_share: f64,
}

impl FeedArgs {
    /// The generator's options.
    pub fn options(&self) -> spectra_ingest::generate::FeedOptions {
        spectra_ingest::generate::FeedOptions {
            seed: self.seed,
            outlets: self.outlets,
            segments: self.segments.max(2),
            skus: self.skus.max(10),
            distributors: 3,
            start: self.start,
            days: self.days,
            visits_per_week: 1.5,
            redelivery_share: self.redelivery_share,
            bad_share: self.bad_share,
            drift_share: self.drift_share,
            drift_day: self.drift_day,
        }
    }
}
