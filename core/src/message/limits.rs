//! The bounds an invoice message must keep beyond its shape (`[ingest]` settings).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;

use super::{MAX_YEAR, MIN_YEAR};
use crate::config::CurrencyConfig;

/// What an accepted invoice message may carry beyond its shape: how far its dates may
/// lie from the day of ingest, how large its values and how many its lines may be.
/// Every field that arrives from outside has a bound, so no sum downstream can become
/// infinite and one message cannot expand into an unbounded number of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// The earliest invoice date accepted.
    pub earliest: NaiveDate,
    /// The latest invoice date accepted.
    pub latest: NaiveDate,
    /// Largest `|quantity|`.
    pub max_abs_quantity: f64,
    /// Largest `|net_value|`.
    pub max_abs_net_value: f64,
    /// Most lines in one message.
    pub max_lines: usize,
    /// Conversion into the base currency (`ingest.currency`); `None`: values as sent.
    pub currency: Option<Arc<Conversion>>,
    /// The latest Kafka timestamp (ms since the epoch) a message may carry: a day
    /// ahead of ingest's clock ([`Limits::check_timestamp`]).
    pub latest_timestamp_ms: i64,
}

/// How far ahead of ingest's clock a message's Kafka timestamp may be: a clock set a
/// time zone off stays within it.
pub const TIMESTAMP_AHEAD_MS: i64 = 24 * 3600 * 1000;

/// The base currency and the dated rates into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// The base currency, upper-case.
    pub base: String,
    /// Per currency (upper-case), its rates by first date, in date order.
    rates: BTreeMap<String, Vec<(NaiveDate, f64)>>,
}

impl Conversion {
    /// The conversion `cfg` configures; `None` without a base currency.
    pub fn new(cfg: &CurrencyConfig) -> Option<Self> {
        let base = cfg.base.as_ref()?.trim().to_ascii_uppercase();
        let mut rates: BTreeMap<String, Vec<(NaiveDate, f64)>> = BTreeMap::new();
        for r in &cfg.rates {
            rates
                .entry(r.currency.trim().to_ascii_uppercase())
                .or_default()
                .push((r.from, r.rate));
        }
        rates.values_mut().for_each(|v| v.sort_by_key(|r| r.0));
        Some(Self { base, rates })
    }

    /// Units of the base per unit of `currency` (`None`: the base) on `date`; `None`
    /// when the currency has no rate in force that day.
    pub fn rate(&self, currency: Option<&str>, date: NaiveDate) -> Option<f64> {
        let Some(code) = currency.map(|c| c.trim().to_ascii_uppercase()) else {
            return Some(1.0);
        };
        if code == self.base {
            return Some(1.0);
        }
        let rates = self.rates.get(&code)?;
        let n = rates.partition_point(|r| r.0 <= date);
        n.checked_sub(1).map(|i| rates[i].1)
    }
}

impl Limits {
    /// The limits of `cfg` for lines ingested on `today`.
    pub fn new(cfg: &crate::config::IngestConfig, today: NaiveDate) -> Self {
        Self {
            earliest: today - chrono::Days::new(u64::from(cfg.max_age_days)),
            latest: today + chrono::Days::new(u64::from(cfg.max_future_days)),
            max_abs_quantity: cfg.max_abs_quantity,
            max_abs_net_value: cfg.max_abs_net_value,
            max_lines: cfg.max_lines_per_message,
            currency: Conversion::new(&cfg.currency).map(Arc::new),
            // A day after the end of `today`.
            latest_timestamp_ms: (today + chrono::Days::new(1))
                .and_hms_opt(0, 0, 0)
                .map_or(i64::MAX, |t| t.and_utc().timestamp_millis())
                .saturating_add(TIMESTAMP_AHEAD_MS),
        }
    }

    /// The limits of `cfg` for lines ingested now (UTC).
    pub fn today(cfg: &crate::config::IngestConfig) -> Self {
        let now = chrono::Utc::now();
        Self {
            latest_timestamp_ms: now.timestamp_millis().saturating_add(TIMESTAMP_AHEAD_MS),
            ..Self::new(cfg, now.date_naive())
        }
    }

    /// A message's Kafka timestamp must not lie ahead of [`Limits::latest_timestamp_ms`]:
    /// of two deliveries of one line the one with the later timestamp is kept (README,
    /// raw/invoices; master records the same), so a line stamped in the future would
    /// outrank every correction sent after it.
    pub fn check_timestamp(&self, timestamp_ms: i64) -> Result<(), super::Rejection> {
        if timestamp_ms <= self.latest_timestamp_ms {
            return Ok(());
        }
        let when = chrono::DateTime::from_timestamp_millis(timestamp_ms)
            .map_or_else(|| format!("{timestamp_ms} ms"), |t| t.to_rfc3339());
        Err(super::Rejection::new(
            super::Reason::FutureTimestamp,
            format!(
                "the message's Kafka timestamp {when} is more than a day ahead of ingest's clock: \
                 the delivery with the latest timestamp is the one kept, so a message stamped in \
                 the future would outrank every correction sent after it; set the producer's \
                 clock right and send it again"
            ),
        ))
    }

    /// Only the shape is checked: any date of the accepted years, any finite value.
    pub fn unbounded() -> Self {
        Self {
            earliest: NaiveDate::from_ymd_opt(MIN_YEAR, 1, 1).expect("valid date"),
            latest: NaiveDate::from_ymd_opt(MAX_YEAR, 12, 31).expect("valid date"),
            max_abs_quantity: f64::MAX,
            max_abs_net_value: f64::MAX,
            max_lines: usize::MAX,
            currency: None,
            latest_timestamp_ms: i64::MAX,
        }
    }
}
