//! Every outlet's weekly history for the outlet 360 view: net value and invoice lines
//! per week over the [`WEEKS`] weeks ending at a date, from `features/outlet_daily/`.
//! Built once per end date by streaming the days' tables (three columns decoded), then
//! answered from memory: a 360 request costs a hash lookup instead of reading 182
//! daily tables, and the index costs 12 bytes per outlet and week, whatever the
//! number of days behind it.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use spectra_core::tables::features::partitions;
use spectra_core::tables::{for_each_batch, layout};
use spectra_core::Storage;

use crate::Error;

/// Weeks of history in the 360 view.
pub const WEEKS: usize = 26;

/// Every outlet's [`WEEKS`] weeks ending at [`History::to`].
pub struct History {
    from: NaiveDate,
    to: NaiveDate,
    rows: HashMap<String, u32>,
    /// Net value per outlet row and week, `rows × WEEKS`.
    values: Vec<f64>,
    /// Invoice lines per outlet row and week.
    lines: Vec<u32>,
}

/// One week of an outlet's history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Week {
    /// Its first day.
    pub start: NaiveDate,
    /// Net value.
    pub value: f64,
    /// Invoice lines.
    pub lines: i64,
}

impl History {
    /// Reads the days of `features/outlet_daily/` in the [`WEEKS`] weeks ending at `to`,
    /// in date order (each week's value is summed day by day, as a reader of the daily
    /// rows would).
    pub async fn build(storage: &Storage, to: NaiveDate) -> Result<Self, Error> {
        let from = to - Duration::days(7 * WEEKS as i64 - 1);
        let mut h = History {
            from,
            to,
            rows: HashMap::new(),
            values: Vec::new(),
            lines: Vec::new(),
        };
        for (date, path) in partitions(storage, layout::OUTLET_DAILY).await? {
            if date < from || to < date {
                continue;
            }
            let week = ((date - from).num_days() / 7) as usize;
            let columns = ["outlet_id", "net_value", "lines"];
            for_each_batch(storage, &path, Some(&columns), |c| {
                let (ids, values, lines) = (
                    c.id_strings("outlet_id")?,
                    c.float("net_value")?,
                    c.int("lines")?,
                );
                for (k, id) in ids.iter().enumerate() {
                    let i = h.row(id.unwrap_or_default()) * WEEKS + week;
                    h.values[i] += values[k];
                    h.lines[i] =
                        h.lines[i].saturating_add(lines[k].clamp(0, u32::MAX as i64) as u32);
                }
                Ok(())
            })
            .await?;
        }
        h.rows.shrink_to_fit();
        h.values.shrink_to_fit();
        h.lines.shrink_to_fit();
        Ok(h)
    }

    fn row(&mut self, outlet_id: &str) -> usize {
        if let Some(r) = self.rows.get(outlet_id) {
            return *r as usize;
        }
        let r = self.rows.len();
        self.rows.insert(outlet_id.to_owned(), r as u32);
        self.values.resize(self.values.len() + WEEKS, 0.0);
        self.lines.resize(self.lines.len() + WEEKS, 0);
        r
    }

    /// The last day of the history.
    pub fn to(&self) -> NaiveDate {
        self.to
    }

    /// An outlet's weeks, oldest first (zeros for an outlet with no day in them).
    pub fn weeks(&self, outlet_id: &str) -> Vec<Week> {
        let row = self.rows.get(outlet_id).map(|r| *r as usize * WEEKS);
        (0..WEEKS)
            .map(|w| Week {
                start: self.from + Duration::days(7 * w as i64),
                value: row.map_or(0.0, |r| self.values[r + w]),
                lines: row.map_or(0, |r| i64::from(self.lines[r + w])),
            })
            .collect()
    }
}

/// Histories built, shared by requests: the two most recently used, each for an end
/// date and the runs it was built for (the latest run of every segmentation served: a
/// new run, from a re-rolled day included, builds it again). One build at a time:
/// concurrent requests for a new one wait for the first.
#[derive(Clone, Default)]
pub struct Histories {
    recent: Arc<tokio::sync::Mutex<Vec<Built>>>,
}

/// A history with its key: end date and runs.
type Built = (String, Arc<History>);

impl Histories {
    /// The history ending at `to` as of the runs `runs` (their ids).
    pub async fn get(
        &self,
        storage: &Storage,
        to: NaiveDate,
        runs: &str,
    ) -> Result<Arc<History>, Error> {
        let key = format!("{to} {runs}");
        let mut recent = self.recent.lock().await;
        if let Some(i) = recent.iter().position(|(k, _)| *k == key) {
            let hit = recent.remove(i);
            let h = hit.1.clone();
            recent.insert(0, hit);
            return Ok(h);
        }
        let started = std::time::Instant::now();
        let h = Arc::new(History::build(storage, to).await?);
        tracing::info!(%to, runs, outlets = h.rows.len(), ms = started.elapsed().as_millis() as u64,
            "built the outlets' weekly history");
        recent.insert(0, (key, h.clone()));
        recent.truncate(2);
        Ok(h)
    }
}
