//! One segmentation's definition (contract §4): what the config file's
//! `[[segmentation]]` tables, the stored definitions (`crate::tables::definitions`)
//! and the API's edits all are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Number of segments: a fixed number or `"auto"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KSpec {
    /// A fixed number of segments.
    Fixed(usize),
    /// Chosen over `k_range` (`"auto"`).
    Auto(String),
}

/// One segmentation ("experiment", contract §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentationConfig {
    /// Name, unique, used in topic keys and paths.
    pub name: String,
    /// `category`, `subcategory`, `brand`, `sku` or `attribute:<name>`.
    #[serde(default = "default_level")]
    pub level: String,
    /// Days in the feature window ending at the as-of date.
    #[serde(default = "default_window")]
    pub window_days: u32,
    /// Optional recency weighting: a line `half_life_days` old counts half.
    #[serde(default)]
    pub half_life_days: Option<f64>,
    /// Number of segments.
    #[serde(default = "default_k")]
    pub k: KSpec,
    /// Range searched when `k = "auto"`.
    #[serde(default = "default_k_range")]
    pub k_range: [usize; 2],
    /// Outlets below this net value in the window are not assigned.
    #[serde(default)]
    pub min_value: f64,
    /// Optional SQL predicate over outlet fields (`outlet_id`, `name`, `region`, `channel`,
    /// and attributes by name).
    #[serde(default)]
    pub filter: Option<String>,
    /// When the segmentation runs (see [`crate::schedule`]): `daily` — a run per new
    /// as-of date of the features, and a same-date correction at the next midnight — or
    /// a cron expression (`"0 6 * * 1-5"`: 06:00 on weekdays; an optional leading
    /// seconds field), at whose fire times it runs when its features changed since its
    /// latest run.
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// IANA time zone the schedule is read in (`Europe/Warsaw`); `UTC` by default.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Relative margin by which a new segment must fit better before an outlet moves.
    #[serde(default = "default_margin")]
    pub move_margin: f64,
    /// Weight of standardised KPI columns appended to the spectrum (0 = spectrum only).
    #[serde(default)]
    pub kpi_weight: f64,
    /// Seed of the clustering's random choices.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Days at the end of the window that count as the outlet's recent behaviour, which
    /// the change detector compares with its earlier behaviour (the rest of the
    /// window). 0, or a value not below `window_days`, turns the detector off (outlets
    /// then move on distance and `move_margin` alone).
    #[serde(default = "default_recent_days")]
    pub recent_days: u32,
    /// Score (a standard normal quantile, after the population's over-dispersion is
    /// divided out) above which an outlet's recent spend shares, or its recent lines
    /// per feature, differ significantly from its earlier ones (the larger of the two
    /// readings' scores, corrected for testing two). 3.5 ≈ a one-sided p of 2·10⁻⁴.
    #[serde(default = "default_change_score")]
    pub change_score: f64,
    /// Log Bayes factor (nats) by which another segment must explain the outlet's
    /// recent purchases better than its own past does before it moves: the recent
    /// month as a member of that segment buys it against as the outlet bought
    /// before, each with the spread the population shows.
    #[serde(default = "default_fit_score")]
    pub fit_score: f64,
    /// Types of outlet attributes as the `filter` sees them (`number` or `text`);
    /// attributes not listed are numbers when every value is a number, else text.
    #[serde(default)]
    pub attribute_types: BTreeMap<String, AttributeType>,
    /// Circuit breaker: a run that would move or drop more than this share of the
    /// outlets its predecessor assigned is held (written, not published) until released
    /// through the API; 1.0 never holds. The first run is never held.
    #[serde(default = "default_max_change_share")]
    pub max_change_share: f64,
    /// Values of the level left out of the spectrum the segments are made from (a
    /// category every outlet buys, a brand being delisted): the outlets are clustered
    /// on the rest of their spend, and an outlet that bought only excluded values is
    /// not assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Outlets pinned to a segment by hand (outlet id → segment id): kept there by every
    /// run until unpinned, whatever their behaviour; a pin to a segment the run does not
    /// have is ignored (and reported).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: BTreeMap<String, String>,
    /// Most values of the level the segments are made from: when the level has more
    /// (`sku` at 20,000 SKUs), the `max_features` values with the most spend in the
    /// window are kept and the rest summed into one `(other)` value, so a run's memory
    /// and time follow this number, not the catalogue. Each outlet's SKU spend (gaps,
    /// recommendations) is kept whole.
    #[serde(
        default = "default_max_features",
        skip_serializing_if = "is_default_max_features"
    )]
    pub max_features: usize,
}

/// The type of an outlet attribute in a segmentation's `filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeType {
    /// A float64 column; values that are not numbers are null.
    Number,
    /// A utf8 column; numbers as their JSON text.
    Text,
}

fn default_level() -> String {
    "category".into()
}
fn default_window() -> u32 {
    91
}
fn default_k() -> KSpec {
    KSpec::Auto("auto".into())
}
fn default_k_range() -> [usize; 2] {
    [3, 12]
}
fn default_schedule() -> String {
    crate::schedule::DAILY.into()
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_margin() -> f64 {
    0.1
}
fn default_seed() -> u64 {
    42
}
fn default_recent_days() -> u32 {
    28
}
fn default_change_score() -> f64 {
    3.5
}
fn default_fit_score() -> f64 {
    4.0
}
/// The default of [`SegmentationConfig::max_features`].
pub const DEFAULT_MAX_FEATURES: usize = 64;
fn default_max_features() -> usize {
    DEFAULT_MAX_FEATURES
}
fn is_default_max_features(v: &usize) -> bool {
    *v == DEFAULT_MAX_FEATURES
}
fn default_max_change_share() -> f64 {
    crate::hold::DEFAULT_MAX_CHANGE_SHARE
}

impl SegmentationConfig {
    /// A segmentation with this name and every other setting at its default.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            level: default_level(),
            window_days: default_window(),
            half_life_days: None,
            k: default_k(),
            k_range: default_k_range(),
            min_value: 0.0,
            filter: None,
            schedule: default_schedule(),
            timezone: default_timezone(),
            move_margin: default_margin(),
            kpi_weight: 0.0,
            seed: default_seed(),
            attribute_types: BTreeMap::new(),
            max_change_share: default_max_change_share(),
            recent_days: default_recent_days(),
            change_score: default_change_score(),
            fit_score: default_fit_score(),
            exclude: Vec::new(),
            pins: BTreeMap::new(),
            max_features: default_max_features(),
        }
    }

    /// Why this definition's `filter` is not one predicate over one outlet's fields
    /// ([`super::filter_columns`]), naming it; `None` for a blank filter or none. Not
    /// one of [`Self::check`]'s problems: a config file's segmentation with such a
    /// filter fails alone, at the aggregator's pass, where a problem would stop the
    /// file and every segmentation in it; the API refuses such a filter when written.
    pub fn filter_problem(&self) -> Option<String> {
        let f = self
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())?;
        super::filter_columns(f)
            .err()
            .map(|why| format!("segmentation `{}`: filter `{f}`: {why}", self.name))
    }

    /// Every problem with this definition, as sentences naming it (empty when valid).
    pub fn check(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.problems(&mut out);
        out
    }

    /// SHA-256 (hex) of what the aggregator's features of this segmentation depend on:
    /// the level, the window, the half-life, the filter and the attribute types. The
    /// features manifest records it, so the segmenter knows whether the features it
    /// reads were rolled up for the definition it runs.
    pub fn features_fingerprint(&self) -> String {
        fingerprint(&serde_json::json!({
            "level": self.level,
            "window_days": self.window_days,
            "half_life_days": self.half_life_days,
            "filter": self.filter,
            "attribute_types": self.attribute_types,
        }))
    }

    /// SHA-256 (hex) of everything a run's result depends on (the schedule, time zone
    /// and circuit breaker are not among them): a run records it, and a definition
    /// whose fingerprint differs from its latest run's is due at once.
    pub fn run_fingerprint(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            for k in ["name", "schedule", "timezone", "max_change_share"] {
                m.remove(k);
            }
        }
        fingerprint(&v)
    }
}

/// SHA-256 (hex) of a JSON value's text (object keys sorted: `serde_json`'s map is a
/// `BTreeMap` here).
fn fingerprint(v: &serde_json::Value) -> String {
    Sha256::digest(v.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The longest window (and recent window) a segmentation may ask for: a hundred years,
/// far past any history (`ingest.max_age_days` may be raised to load old files), and
/// every date arithmetic of a window stays in range.
pub const MAX_WINDOW_DAYS: u32 = 36_600;
/// The most segments a fixed `k` may ask for.
pub const MAX_K: usize = 1000;
/// The highest `k_range` bound: "auto" fits k-means once for every k of the range.
pub const MAX_AUTO_K: usize = 100;
/// The longest `filter`.
pub const MAX_FILTER_BYTES: usize = 2000;

impl SegmentationConfig {
    pub(super) fn problems(&self, out: &mut Vec<String>) {
        let n = &self.name;
        if n.is_empty()
            || n.len() > 64
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            out.push(format!(
                "segmentation.name `{n}`: use 1–64 letters, digits, `-` or `_`"
            ));
        }
        let level_ok = matches!(
            self.level.as_str(),
            "category" | "subcategory" | "brand" | "sku"
        ) || self
            .level
            .strip_prefix("attribute:")
            .is_some_and(|a| !a.is_empty());
        if !level_ok {
            out.push(format!(
                "segmentation `{n}`: level `{}` is not one of category, subcategory, brand, sku, attribute:<name>",
                self.level
            ));
        }
        if !(1..=MAX_WINDOW_DAYS).contains(&self.window_days) {
            out.push(format!(
                "segmentation `{n}`: window_days must be between 1 and {MAX_WINDOW_DAYS}"
            ));
        }
        if self.recent_days > MAX_WINDOW_DAYS {
            out.push(format!(
                "segmentation `{n}`: recent_days must be at most {MAX_WINDOW_DAYS}"
            ));
        }
        if !self.min_value.is_finite() {
            out.push(format!("segmentation `{n}`: min_value must be finite"));
        }
        if self
            .filter
            .as_ref()
            .is_some_and(|f| f.len() > MAX_FILTER_BYTES)
        {
            out.push(format!(
                "segmentation `{n}`: filter must be at most {MAX_FILTER_BYTES} bytes"
            ));
        }
        if let Some(h) = self.half_life_days {
            if h.is_nan() || h <= 0.0 {
                out.push(format!(
                    "segmentation `{n}`: half_life_days must be positive"
                ));
            }
        }
        match &self.k {
            KSpec::Fixed(k) if !(1..=MAX_K).contains(k) => out.push(format!(
                "segmentation `{n}`: k must be between 1 and {MAX_K}"
            )),
            KSpec::Auto(s) if s != "auto" => out.push(format!(
                "segmentation `{n}`: k is `{s}`; use a number or \"auto\""
            )),
            _ => {}
        }
        if self.k_range[0] < 2 || self.k_range[0] > self.k_range[1] || self.k_range[1] > MAX_AUTO_K
        {
            out.push(format!(
                "segmentation `{n}`: k_range {:?} must be [low, high] with 2 ≤ low ≤ high ≤ {MAX_AUTO_K}",
                self.k_range
            ));
        }
        if !(0.0..1.0).contains(&self.move_margin) {
            out.push(format!("segmentation `{n}`: move_margin must be in [0, 1)"));
        }
        if !(0.0..=1.0).contains(&self.max_change_share) {
            out.push(format!(
                "segmentation `{n}`: max_change_share must be in [0, 1] (1.0 never holds a run)"
            ));
        }
        if !self.change_score.is_finite() || !self.fit_score.is_finite() || self.fit_score < 0.0 {
            out.push(format!(
                "segmentation `{n}`: change_score must be finite and fit_score finite and ≥ 0"
            ));
        }
        if !self.kpi_weight.is_finite() || self.kpi_weight < 0.0 {
            out.push(format!(
                "segmentation `{n}`: kpi_weight must be finite and ≥ 0"
            ));
        }
        if self.exclude.len() > 1000 || self.exclude.iter().any(|v| v.is_empty() || v.len() > 200) {
            out.push(format!(
                "segmentation `{n}`: exclude lists at most 1000 values of the level, each 1–200 characters"
            ));
        }
        if !(2..=4096).contains(&self.max_features) {
            out.push(format!(
                "segmentation `{n}`: max_features must be between 2 and 4096"
            ));
        }
        if let Err(e) = crate::schedule::Schedule::parse(&self.schedule, &self.timezone) {
            out.push(format!("segmentation `{n}`: {e}"));
        }
    }
}
