//! Layered configuration: defaults → TOML file (`--config`) → `SPECTRA__SECTION__KEY`
//! environment variables → command-line flags. Unknown keys are rejected and every
//! problem is reported at once.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

mod filter;
mod segmentation;

pub use filter::{filter_columns, FILTER_FUNCTIONS};
pub use segmentation::{AttributeType, KSpec, SegmentationConfig};

/// The whole configuration of every Spectra service.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka connection and topic names.
    pub kafka: KafkaConfig,
    /// Where tables live.
    pub storage: StorageConfig,
    /// The admin HTTP server (`/healthz`, `/readyz`, `/metrics`).
    pub admin: AdminConfig,
    /// Logging.
    pub log: LogConfig,
    /// The ingest service.
    pub ingest: IngestConfig,
    /// The aggregate service.
    pub aggregate: AggregateConfig,
    /// The segment service.
    pub segment: SegmentConfig,
    /// The publish service.
    pub publish: PublishConfig,
    /// The configured segmentations (contract §4).
    pub segmentation: Vec<SegmentationConfig>,
}

/// Kafka connection and topic names (contract §1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Topic names.
    pub topics: Topics,
    /// Create missing topics (when the broker allows it) instead of failing.
    pub create_topics: bool,
    /// Partitions of topics Spectra creates.
    pub partitions: i32,
    /// Replication factor of topics Spectra creates.
    pub replication: i32,
    /// Consumer session timeout, ms.
    pub session_timeout_ms: u32,
    /// How long the broker may hold a fetch waiting for data, ms (keep low for Tansu).
    pub fetch_wait_max_ms: u32,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*` …) for every client.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            topics: Topics::default(),
            create_topics: true,
            partitions: 3,
            replication: 1,
            session_timeout_ms: 10_000,
            fetch_wait_max_ms: 10,
            properties: BTreeMap::new(),
        }
    }
}

/// Topic names (contract §1); each is configurable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Invoice lines in.
    pub invoices: String,
    /// Outlet master data in (compacted).
    pub outlets: String,
    /// SKU master data in (compacted).
    pub skus: String,
    /// Rejected input out.
    pub dlq: String,
    /// Segment assignments out (compacted).
    pub assignments: String,
    /// Segment profiles out (compacted).
    pub profiles: String,
    /// Outlet recommendations out (compacted).
    pub recommendations: String,
    /// Segment names, descriptions and tags (compacted, in and out).
    pub metadata: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            invoices: "invoices".into(),
            outlets: "outlets".into(),
            skus: "skus".into(),
            dlq: "invoices.dlq".into(),
            assignments: "segment-assignments".into(),
            profiles: "segment-profiles".into(),
            recommendations: "outlet-recommendations".into(),
            metadata: "segment-metadata".into(),
        }
    }
}

/// Where tables live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `file:///path`, `s3://bucket/prefix` or `memory://`.
    pub url: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "file:///var/lib/spectra".into(),
        }
    }
}

/// The admin HTTP server every service starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address (`0.0.0.0:9464`; port 0 picks a free port).
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `plain` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `spectra_ingest=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "plain".into(),
            level: "info".into(),
        }
    }
}

/// The ingest service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Consumer group id.
    pub group_id: String,
    /// Flush a partition's batch when it holds this many lines.
    pub flush_rows: usize,
    /// Flush every batch at least this often, ms.
    pub flush_age_ms: u64,
    /// Flush a partition's batch when the messages it holds reach this many bytes, so
    /// memory stays bounded whatever the messages' size.
    pub flush_bytes: usize,
    /// Invoice dates more than this many days after the day of ingest are rejected.
    pub max_future_days: u32,
    /// Invoice dates more than this many days before the day of ingest are rejected
    /// (default ten years; raise it to load older history).
    pub max_age_days: u32,
    /// Largest `|quantity|` of a line.
    pub max_abs_quantity: f64,
    /// Largest `|net_value|` of a line.
    pub max_abs_net_value: f64,
    /// Most lines one whole-invoice message may carry.
    pub max_lines_per_message: usize,
    /// Largest dead letter (key, value and headers) sent as is; a larger rejected
    /// message is dead-lettered as a truncated copy whose headers give the original
    /// size and SHA-256. Keep it under the DLQ topic's `max.message.bytes`.
    pub dlq_max_message_bytes: usize,
    /// Attempts at making a batch durable (storage, DLQ) before ingest stops; the wait
    /// between attempts doubles from 0.5 s.
    pub write_attempts: u32,
    /// Conversion of every line's `net_value` into one base currency.
    pub currency: CurrencyConfig,
}

/// `[ingest.currency]`: the base currency and dated exchange rates into it. With a
/// `base`, each line's `net_value` is converted on its invoice date (a line without
/// `currency` is in the base already) and a line in a currency without a rate for that
/// date goes to the dead-letter topic; without one, values are taken as they arrive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CurrencyConfig {
    /// The base currency (ISO 4217 code, e.g. `PLN`).
    pub base: Option<String>,
    /// Rates into the base: `{currency = "EUR", from = "2026-01-01", rate = 4.31}` —
    /// one unit of `currency` is `rate` units of the base on and after `from`, until
    /// the next rate of that currency.
    pub rates: Vec<FxRate>,
}

/// One dated exchange rate into the base currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FxRate {
    /// The currency converted (ISO 4217 code).
    pub currency: String,
    /// First invoice date the rate applies to.
    pub from: NaiveDate,
    /// Units of the base per unit of `currency`.
    pub rate: f64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            group_id: "spectra-ingest".into(),
            flush_rows: 200_000,
            flush_age_ms: 5_000,
            flush_bytes: 64 << 20,
            max_future_days: 7,
            max_age_days: 3653,
            max_abs_quantity: 1e9,
            max_abs_net_value: 1e12,
            max_lines_per_message: 10_000,
            dlq_max_message_bytes: 900_000,
            write_attempts: 6,
            currency: CurrencyConfig::default(),
        }
    }
}

/// The aggregate service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregateConfig {
    /// How often to look for newly landed raw data, seconds.
    pub poll_seconds: u64,
    /// The default as-of date is the latest day whose volume (rows of the daily table:
    /// outlet × SKU pairs with a line) is at least this share of the typical day (the
    /// median of the recent days), so a handful of stray lines cannot become the as-of.
    pub as_of_min_share: f64,
    /// How many of the most recent days with data make the typical day's volume.
    pub as_of_reference_days: usize,
    /// Days after today (UTC, wall clock) that can still be the default as-of date;
    /// later invoice dates are ignored for it (unless every date is later).
    pub as_of_future_days: u32,
    /// Time to live of the aggregator's lease (`state/aggregate/lease.json`), seconds:
    /// a pass holds it, renewing it every third of it; another pass waits while it is
    /// live, and takes it over (fencing the holder) once it expired.
    pub lease_seconds: u64,
    /// Memory the roll-up's queries (sorts, groupings) may hold, MiB; past it they
    /// spill to temporary files (the OS temporary directory) instead of growing.
    pub query_memory_mb: u64,
    /// Memory the absorb step may hold in line identities, MiB (48 bytes a line); past
    /// it they are spilled to temporary files by hash bucket and absorbed a group of
    /// buckets at a time, so a first roll-up of a national history fits.
    pub absorb_memory_mb: u64,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        Self {
            poll_seconds: 60,
            as_of_min_share: 0.1,
            as_of_reference_days: 28,
            as_of_future_days: 7,
            lease_seconds: 300,
            query_memory_mb: 4096,
            absorb_memory_mb: 1024,
        }
    }
}

/// The segment service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentConfig {
    /// How often to look for new features, seconds.
    pub poll_seconds: u64,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        Self { poll_seconds: 60 }
    }
}

/// The publish service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Listen address of the HTTP API and console.
    pub listen: String,
    /// Bearer token required by `PUT` routes; empty disables editing.
    pub api_token: String,
    /// Bearer token required by the read routes (`GET /api/…`, the exports) when set;
    /// `api_token` is accepted there too. Empty leaves them open. The console page and
    /// its files, `/healthz`, `/readyz` and `/metrics` are always open.
    pub read_token: String,
    /// How often to look for new runs, seconds.
    pub poll_seconds: u64,
    /// Longest an HTTP request may take, seconds, waiting for a free slot included;
    /// a slower one is answered `503`. Raise it for exports of very large segmentations.
    pub request_timeout_seconds: u64,
    /// HTTP requests served at once (console and API; the admin routes are not
    /// counted); further ones wait for a slot within `request_timeout_seconds`.
    pub max_concurrent_requests: usize,
    /// Largest request body accepted, bytes; a larger one is answered `413`.
    pub max_body_bytes: usize,
    /// Exports (`export.csv`, `export.xlsx`) written at once; further ones wait for
    /// one to finish, within `request_timeout_seconds`. Each holds its run and, for
    /// XLSX, a temporary file of about 0.85 KB an outlet.
    pub max_concurrent_exports: usize,
    /// Refuse to start unless every output topic has `cleanup.policy=compact` (read
    /// with the admin API): on a delete-policy topic current assignments would expire.
    /// Turn off only for a broker that cannot describe or compact topics (the demo's
    /// embedded one).
    pub require_compacted_topics: bool,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            api_token: String::new(),
            read_token: String::new(),
            poll_seconds: 30,
            request_timeout_seconds: 60,
            max_concurrent_requests: 64,
            max_body_bytes: 64 * 1024,
            max_concurrent_exports: 2,
            require_compacted_topics: true,
        }
    }
}

impl CurrencyConfig {
    fn problems(&self, out: &mut Vec<String>) {
        let code_ok =
            |c: &str| (3..=16).contains(&c.len()) && c.chars().all(|ch| ch.is_ascii_alphanumeric());
        if let Some(b) = &self.base {
            if !code_ok(b) {
                out.push(format!("ingest.currency.base `{b}` is not a currency code (3–16 letters or digits, e.g. `PLN`)"));
            }
        } else if !self.rates.is_empty() {
            out.push("ingest.currency.rates are given without ingest.currency.base; set the currency they convert into".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.rates {
            if !code_ok(&r.currency) {
                out.push(format!(
                    "ingest.currency.rates: `{}` is not a currency code",
                    r.currency
                ));
            }
            if !(r.rate.is_finite() && r.rate > 0.0) {
                out.push(format!(
                    "ingest.currency.rates: the rate of {} from {} must be a number > 0",
                    r.currency, r.from
                ));
            }
            if !seen.insert((r.currency.to_ascii_uppercase(), r.from)) {
                out.push(format!(
                    "ingest.currency.rates: {} from {} is given twice",
                    r.currency, r.from
                ));
            }
            if self
                .base
                .as_deref()
                .is_some_and(|b| b.eq_ignore_ascii_case(&r.currency))
            {
                out.push(format!(
                    "ingest.currency.rates: {} is the base currency; it needs no rate",
                    r.currency
                ));
            }
        }
    }
}

/// The `SPECTRA__SECTION__KEY` environment variables.
fn environment() -> Env {
    Env::prefixed("SPECTRA__").split("__")
}

/// Rounds of [`Config::extract`] at most: more than the text settings.
const MAX_TEXT_ROUNDS: usize = 256;

/// The text a number or boolean was given as for the setting `key` (`section.key`):
/// the last `--set` of it, else its environment variable; `None` when neither gave
/// it (a TOML file's number stays a number).
fn text_given(key: &str, flags: &[(String, serde_json::Value)]) -> Option<String> {
    if let Some((_, value)) = flags.iter().rev().find(|(k, _)| k.trim() == key) {
        return match value {
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
    }
    environment()
        .iter()
        .find(|(k, _)| k.as_str().eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

impl Config {
    /// Loads the layers: defaults, the TOML file (if any), `SPECTRA__…` environment
    /// variables, then `overrides` (the command line's flags, serialized; `None`
    /// fields are skipped). Reports every problem at once.
    pub fn load<T: Serialize>(file: Option<&Path>, overrides: &T) -> Result<Self> {
        Self::extract(
            Self::layers(file)?.merge(Serialized::defaults(overrides)),
            &[],
        )
    }

    /// Like [`Config::load`], with the overrides as `(key path, value)` pairs
    /// (`("kafka.topics.invoices", "x")`): figment nests each key path itself.
    pub fn load_flags(file: Option<&Path>, flags: &[(String, serde_json::Value)]) -> Result<Self> {
        Self::load_flags_over(Config::default(), file, flags)
    }

    /// Like [`Config::load_flags`], over `base` instead of the defaults (the demo's
    /// own settings).
    pub fn load_flags_over(
        base: Config,
        file: Option<&Path>,
        flags: &[(String, serde_json::Value)],
    ) -> Result<Self> {
        let fig = flags
            .iter()
            .fold(Self::layers_over(base, file)?, |fig, (key, value)| {
                fig.merge(Serialized::default(key, value))
            });
        Self::extract(fig, flags)
    }

    /// Defaults, the TOML file, the environment.
    fn layers(file: Option<&Path>) -> Result<Figment> {
        Self::layers_over(Config::default(), file)
    }

    /// `base`, the TOML file, the environment.
    fn layers_over(base: Config, file: Option<&Path>) -> Result<Figment> {
        let mut fig = Figment::from(Serialized::defaults(base));
        if let Some(f) = file {
            if !f.exists() {
                return Err(Error::Config(vec![format!(
                    "config file `{}` does not exist",
                    f.display()
                )]));
            }
            fig = fig.merge(Toml::file(f));
        }
        Ok(fig.merge(environment()))
    }

    /// The configuration the layers give (`flags`: the command line's `--set` pairs,
    /// merged last). A text setting given a number or `true`/`false` on the command
    /// line or in the environment (`SPECTRA__PUBLISH__API_TOKEN=123456`) is that text:
    /// both are read for their type before the setting's type is known, and a numeric
    /// token or topic name is text to its user. The environment's text is taken as
    /// written (`007` stays `007`); a flag's as JSON writes the number (`1.50` is
    /// `1.5`: quote it, `'"1.50"'`, to keep it). A TOML file's values keep the type
    /// they were written with.
    fn extract(mut fig: Figment, flags: &[(String, serde_json::Value)]) -> Result<Self> {
        let problems =
            |e: figment::Error| Error::Config(e.into_iter().map(|e| e.to_string()).collect());
        // Each round gives every text setting that failed its text (serde stops at a
        // struct's first error, so a round can find one); bounded by the settings.
        let mut round = 0;
        loop {
            let errors = match fig.extract::<Config>() {
                Ok(cfg) => {
                    cfg.validate()?;
                    return Ok(cfg);
                }
                Err(e) => e,
            };
            let texts: Vec<(String, String)> = errors
                .clone()
                .into_iter()
                .filter_map(|e| {
                    let figment::error::Kind::InvalidType(actual, expected) = &e.kind else {
                        return None;
                    };
                    use figment::error::Actual;
                    let scalar = matches!(
                        actual,
                        Actual::Bool(_)
                            | Actual::Unsigned(_)
                            | Actual::Signed(_)
                            | Actual::Float(_)
                    );
                    let key = e.path.join(".");
                    (scalar && expected == "a string")
                        .then(|| text_given(&key, flags))
                        .flatten()
                        .map(|text| (key, text))
                })
                .collect();
            round += 1;
            if texts.is_empty() || round > MAX_TEXT_ROUNDS {
                return Err(problems(errors));
            }
            for (key, text) in texts {
                fig = fig.merge(Serialized::default(&key, text));
            }
        }
    }

    /// Checks values that parse but make no sense, all at once.
    pub fn validate(&self) -> Result<()> {
        let mut p = Vec::new();
        if self.kafka.brokers.trim().is_empty() {
            p.push("kafka.brokers is empty; give host:port[,host:port…]".into());
        }
        if self.ingest.flush_rows == 0 {
            p.push("ingest.flush_rows must be at least 1".into());
        }
        if self.ingest.flush_age_ms == 0 {
            p.push("ingest.flush_age_ms must be at least 1".into());
        }
        if self.ingest.flush_bytes == 0 {
            p.push("ingest.flush_bytes must be at least 1".into());
        }
        for (name, v) in [
            ("max_abs_quantity", self.ingest.max_abs_quantity),
            ("max_abs_net_value", self.ingest.max_abs_net_value),
        ] {
            // The bound keeps every sum finite: a billion lines at the bound stay far
            // below f64::MAX.
            if !(v > 0.0 && v <= 1e200) {
                p.push(format!("ingest.{name} must be a positive number ≤ 1e200"));
            }
        }
        if self.ingest.max_lines_per_message == 0 {
            p.push("ingest.max_lines_per_message must be at least 1".into());
        }
        if self.ingest.dlq_max_message_bytes < 1024 {
            p.push("ingest.dlq_max_message_bytes must be at least 1024".into());
        }
        self.ingest.currency.problems(&mut p);
        if self.ingest.write_attempts == 0 {
            p.push("ingest.write_attempts must be at least 1".into());
        }
        if self.kafka.partitions < 1 {
            p.push("kafka.partitions must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.aggregate.as_of_min_share) {
            p.push("aggregate.as_of_min_share must be in [0, 1]".into());
        }
        if self.aggregate.as_of_reference_days == 0 {
            p.push("aggregate.as_of_reference_days must be at least 1".into());
        }
        if self.publish.request_timeout_seconds == 0 {
            p.push("publish.request_timeout_seconds must be at least 1".into());
        }
        if self.publish.max_concurrent_requests == 0 {
            p.push("publish.max_concurrent_requests must be at least 1".into());
        }
        if self.publish.max_concurrent_exports == 0 {
            p.push("publish.max_concurrent_exports must be at least 1".into());
        }
        if self.publish.max_body_bytes < 1024 {
            p.push("publish.max_body_bytes must be at least 1024 (a name, description and tags need room)".into());
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.segmentation {
            s.problems(&mut p);
            if !names.insert(s.name.clone()) {
                p.push(format!("segmentation `{}` is defined twice", s.name));
            }
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(p))
        }
    }

    /// The librdkafka properties every client shares.
    pub fn client_properties(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("bootstrap.servers".into(), self.kafka.brokers.clone());
        for (k, v) in &self.kafka.properties {
            m.insert(k.clone(), v.clone());
        }
        m
    }

    /// The segmentation of this name.
    pub fn segmentation(&self, name: &str) -> Option<&SegmentationConfig> {
        self.segmentation.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Default)]
    struct NoFlags {}

    /// A number or boolean given to a text setting in the environment or with `--set`
    /// is its text (it was an error: "found unsigned int, expected a string"); the
    /// environment's as written. Given to a numeric setting, still a number; a TOML
    /// file's number for a text setting, still an error naming the key.
    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn numbers_given_to_text_settings_are_their_text() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SPECTRA__PUBLISH__API_TOKEN", "007123");
            jail.set_env("SPECTRA__KAFKA__TOPICS__INVOICES", "2024");
            jail.set_env("SPECTRA__PUBLISH__READ_TOKEN", "true");
            jail.set_env("SPECTRA__INGEST__FLUSH_ROWS", "10");
            let c = Config::load_flags(None, &[]).unwrap();
            assert_eq!(c.publish.api_token, "007123");
            assert_eq!(c.kafka.topics.invoices, "2024");
            assert_eq!(c.publish.read_token, "true");
            assert_eq!(c.ingest.flush_rows, 10);
            let flags = [
                ("kafka.topics.invoices".to_owned(), serde_json::json!(31)),
                ("ingest.flush_rows".to_owned(), serde_json::json!(20)),
                ("kafka.topics.dlq".to_owned(), serde_json::json!(false)),
            ];
            let c = Config::load_flags(None, &flags).unwrap();
            assert_eq!(c.kafka.topics.invoices, "31");
            assert_eq!(c.kafka.topics.dlq, "false");
            assert_eq!(c.publish.api_token, "007123");
            assert_eq!(c.ingest.flush_rows, 20);
            // A numeric setting given text stays an error, as does a TOML number.
            jail.set_env("SPECTRA__INGEST__FLUSH_ROWS", "many");
            let e = Config::load_flags(None, &[]).unwrap_err().to_string();
            assert!(e.contains("FLUSH_ROWS"), "{e}");
            jail.set_env("SPECTRA__INGEST__FLUSH_ROWS", "10");
            jail.create_file("typed.toml", "[publish]\nlisten = 8080\n")?;
            let e = Config::load_flags(Some(Path::new("typed.toml")), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("listen"), "{e}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn layers_and_every_problem_at_once() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "spectra.toml",
                r#"
                [kafka]
                brokers = "file:9092"
                [[segmentation]]
                name = "category-mix"
                k = "auto"
                [[segmentation]]
                name = "brands"
                level = "brand"
                k = 5
                "#,
            )?;
            jail.set_env("SPECTRA__KAFKA__BROKERS", "env:9092");
            jail.set_env("SPECTRA__INGEST__FLUSH_ROWS", "10");
            jail.set_env("SPECTRA__PUBLISH__READ_TOKEN", "r3ad");
            let c = Config::load(Some(Path::new("spectra.toml")), &NoFlags {}).unwrap();
            assert_eq!(c.kafka.brokers, "env:9092");
            assert_eq!(c.publish.read_token, "r3ad");
            assert_eq!(c.publish.max_concurrent_requests, 64);
            assert_eq!(c.ingest.flush_rows, 10);
            assert_eq!(c.segmentation.len(), 2);
            assert_eq!(c.segmentation[1].k, KSpec::Fixed(5));
            assert_eq!(c.segmentation[0].window_days, 91);

            #[derive(Serialize)]
            struct Flags {
                kafka: BTreeMap<&'static str, &'static str>,
            }
            let flags = Flags {
                kafka: [("brokers", "flag:9092")].into(),
            };
            let c = Config::load(Some(Path::new("spectra.toml")), &flags).unwrap();
            assert_eq!(c.kafka.brokers, "flag:9092");

            jail.create_file(
                "bad.toml",
                r#"
                [[segmentation]]
                name = "x y"
                level = "colour"
                window_days = 0
                k_range = [5, 2]
                [publish]
                max_concurrent_requests = 0
                "#,
            )?;
            let e = Config::load(Some(Path::new("bad.toml")), &NoFlags {})
                .unwrap_err()
                .to_string();
            for want in [
                "name `x y`",
                "level `colour`",
                "window_days",
                "k_range",
                "max_concurrent_requests",
            ] {
                assert!(e.contains(want), "{want} not in {e}");
            }
            // Values a run cannot live with: non-finite numbers (stored as JSON they
            // would become null and every later read of the definitions fail), windows
            // past any date, more segments than a run can fit.
            jail.create_file(
                "unbounded.toml",
                &format!(
                    r#"
                    [[segmentation]]
                    name = "a"
                    level = "sku"
                    min_value = nan
                    kpi_weight = inf
                    window_days = 3000000000
                    recent_days = 40000
                    k = 5000
                    [[segmentation]]
                    name = "b"
                    level = "sku"
                    k_range = [2, 500]
                    filter = "{}"
                    "#,
                    "x".repeat(3000)
                ),
            )?;
            let e = Config::load(Some(Path::new("unbounded.toml")), &NoFlags {})
                .unwrap_err()
                .to_string();
            for want in [
                "`a`: min_value must be finite",
                "`a`: kpi_weight must be finite",
                "`a`: window_days must be between 1 and 36600",
                "`a`: recent_days must be at most 36600",
                "`a`: k must be between 1 and 1000",
                "`b`: k_range [2, 500]",
                "`b`: filter must be at most 2000 bytes",
            ] {
                assert!(e.contains(want), "{want} not in {e}");
            }
            jail.create_file("unknown.toml", "[kafka]\nbrokerz = \"x\"\n")?;
            let e = Config::load(Some(Path::new("unknown.toml")), &NoFlags {})
                .unwrap_err()
                .to_string();
            assert!(e.contains("brokerz"), "{e}");
            Ok(())
        });
    }
}
