//! The bounds an invoice message must keep beyond its shape (`[ingest]` settings).

use chrono::NaiveDate;

use super::{MAX_YEAR, MIN_YEAR};

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
        }
    }

    /// The limits of `cfg` for lines ingested now (UTC).
    pub fn today(cfg: &crate::config::IngestConfig) -> Self {
        Self::new(cfg, chrono::Utc::now().date_naive())
    }

    /// Only the shape is checked: any date of the accepted years, any finite value.
    pub fn unbounded() -> Self {
        Self {
            earliest: NaiveDate::from_ymd_opt(MIN_YEAR, 1, 1).expect("valid date"),
            latest: NaiveDate::from_ymd_opt(MAX_YEAR, 12, 31).expect("valid date"),
            max_abs_quantity: f64::MAX,
            max_abs_net_value: f64::MAX,
            max_lines: usize::MAX,
        }
    }
}
