//! When a segmentation runs: its `schedule` (`daily` or a cron expression, read in its
//! `timezone`) and the clock the segment service reads the time from.
//!
//! A schedule *fires* at instants; a segmentation is due at a fire when its features
//! changed since its latest run (the rule lives in the segmenter's service, which owns
//! runs). `daily` keeps its older meaning as well: a new as-of date runs at once, and
//! a correction of an as-of date already segmented runs at the next local midnight.
//!
//! Cron expressions are parsed by [`croner`] (POSIX/Vixie cron: five fields, an
//! optional leading seconds field, `L`, `#`, `W`, names, `@daily`-style macros); time
//! zones are IANA names ([`chrono_tz`]). Both are checked when the configuration
//! loads, so a service never starts with a schedule it cannot follow.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// The `daily` schedule's name in the configuration.
pub const DAILY: &str = "daily";

/// Where the time comes from. Services take it as a parameter, so a test can move time
/// by hand instead of waiting for it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock, shared.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A parsed schedule and its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    timezone: Tz,
}

#[derive(Debug, Clone)]
enum Kind {
    Daily(Box<Cron>),
    Cron(Box<Cron>),
}

/// Five fields, or six with seconds first.
fn parse_cron(text: &str) -> Result<Cron, String> {
    Cron::from_str(text).map_err(|e| e.to_string())
}

impl Schedule {
    /// Parses `schedule` (`daily` or a cron expression) and `timezone` (an IANA name such
    /// as `Europe/Warsaw`, or `UTC`). The error is a sentence naming what is wrong.
    pub fn parse(schedule: &str, timezone: &str) -> Result<Self, String> {
        let timezone = Tz::from_str(timezone).map_err(|_| {
            format!("timezone `{timezone}` is not an IANA time zone name (for example `UTC` or `Europe/Warsaw`)")
        })?;
        let kind = if schedule.trim() == DAILY {
            Kind::Daily(Box::new(
                parse_cron("0 0 * * *").expect("midnight is a valid cron expression"),
            ))
        } else {
            Kind::Cron(Box::new(parse_cron(schedule.trim()).map_err(|e| {
                format!(
                    "schedule `{schedule}` is neither \"daily\" nor a valid cron expression: {e}"
                )
            })?))
        };
        Ok(Self { kind, timezone })
    }

    /// `daily`: a new as-of date of the features runs at once.
    pub fn is_daily(&self) -> bool {
        matches!(self.kind, Kind::Daily(_))
    }

    /// The time zone the schedule is read in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    fn cron(&self) -> &Cron {
        match &self.kind {
            Kind::Daily(c) | Kind::Cron(c) => c,
        }
    }

    /// The latest instant at or before `now` when the schedule fired (local midnight for
    /// `daily`); `None` when it never fired in the searchable past.
    pub fn last_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron()
            .find_previous_occurrence(&now.with_timezone(&self.timezone), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The first instant strictly after `after` when the schedule fires.
    pub fn next_fire(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron()
            .find_next_occurrence(&after.with_timezone(&self.timezone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn a_cron_expression_fires_in_its_time_zone() {
        // 06:00 in Warsaw is 05:00 UTC in winter (CET, +1).
        let s = Schedule::parse("0 6 * * *", "Europe/Warsaw").unwrap();
        assert!(!s.is_daily());
        assert_eq!(
            s.last_fire(utc(2026, 11, 30, 5, 30)),
            Some(utc(2026, 11, 30, 5, 0))
        );
        assert_eq!(
            s.last_fire(utc(2026, 11, 30, 4, 59)),
            Some(utc(2026, 11, 29, 5, 0))
        );
        assert_eq!(
            s.next_fire(utc(2026, 11, 30, 5, 0)),
            Some(utc(2026, 12, 1, 5, 0))
        );
        // In summer (CEST, +2) the same local time is 04:00 UTC.
        assert_eq!(
            s.last_fire(utc(2026, 7, 1, 12, 0)),
            Some(utc(2026, 7, 1, 4, 0))
        );
    }

    #[test]
    fn daily_fires_at_local_midnight_and_seconds_are_optional() {
        let s = Schedule::parse("daily", "UTC").unwrap();
        assert!(s.is_daily());
        assert_eq!(
            s.last_fire(utc(2026, 11, 30, 13, 7)),
            Some(utc(2026, 11, 30, 0, 0))
        );
        let every_ten_seconds = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 30, 13, 7, 25).unwrap();
        assert_eq!(
            every_ten_seconds.last_fire(t),
            Some(Utc.with_ymd_and_hms(2026, 11, 30, 13, 7, 20).unwrap())
        );
    }

    #[test]
    fn bad_schedules_and_zones_say_what_is_wrong() {
        let e = Schedule::parse("every day", "UTC").unwrap_err();
        assert!(e.contains("schedule `every day`"), "{e}");
        let e = Schedule::parse("0 6 * * *", "Mars/Olympus").unwrap_err();
        assert!(e.contains("timezone `Mars/Olympus`"), "{e}");
        assert!(Schedule::parse("0 25 * * *", "UTC").is_err());
    }
}
