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
    /// rows would), for `outlets` (the served runs' outlets: the 360 view answers no
    /// other). Sized once from them: the weeks are allocated zeroed, never grown and
    /// copied.
    pub async fn build(
        storage: &Storage,
        to: NaiveDate,
        mut outlets: Vec<&str>,
    ) -> Result<Self, Error> {
        let from = to - Duration::days(7 * WEEKS as i64 - 1);
        // Several segmentations assign the same outlets: once each.
        outlets.sort_unstable();
        outlets.dedup();
        let mut rows: HashMap<String, u32> = HashMap::with_capacity(outlets.len());
        for (row, id) in outlets.into_iter().enumerate() {
            rows.insert(id.to_owned(), row as u32);
        }
        let mut h = History {
            from,
            to,
            values: vec![0.0; rows.len() * WEEKS],
            lines: vec![0; rows.len() * WEEKS],
            rows,
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
                    let Some(&row) = h.rows.get(id.unwrap_or_default()) else {
                        continue;
                    };
                    let i = row as usize * WEEKS + week;
                    h.values[i] += values[k];
                    h.lines[i] =
                        h.lines[i].saturating_add(lines[k].clamp(0, u32::MAX as i64) as u32);
                }
                Ok(())
            })
            .await?;
        }
        Ok(h)
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

/// The history built, shared by requests, for an end date and the runs it was built
/// for (the latest run of every segmentation served: a new run, from a re-rolled day
/// included, builds it again). Only the latest is held, and it is let go before the
/// next is built: at a million outlets a history is about 420 MiB, and two side by
/// side beside a publish cycle would not fit the publisher's 1 GiB. One build at a
/// time: concurrent requests for a new one wait for the first.
///
/// Nor is one held beside a publish cycle's work ([`Histories::publishing`]): at 810k
/// outlets a history built while the service published a new run took it to 1,099 MiB.
#[derive(Clone, Default)]
pub struct Histories {
    latest: Arc<tokio::sync::Mutex<Option<Built>>>,
    /// Publish cycles at work: while one is, no history is built.
    cycles: Arc<std::sync::atomic::AtomicUsize>,
}

/// A publish cycle at work ([`Histories::publishing`]), until dropped.
pub struct Publishing {
    cycles: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for Publishing {
    fn drop(&mut self) {
        self.cycles
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A history with its key: end date and runs.
type Built = (String, Arc<History>);

impl Histories {
    /// Lets the history go (a new run is about to load).
    pub async fn forget(&self) {
        *self.latest.lock().await = None;
    }

    /// A publish cycle starts its work: the history is let go (once a build under way
    /// has finished), and none is built until the returned guard is dropped — a 360
    /// view answers without weeks meanwhile ([`Histories::get`]).
    pub async fn publishing(&self) -> Publishing {
        self.cycles
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.forget().await;
        Publishing {
            cycles: self.cycles.clone(),
        }
    }

    /// The history ending at `to` as of the runs `runs` (their ids), built when needed
    /// for the outlets `outlets` gives — unless `current` says those runs are no longer
    /// the ones served (a request that read them before a new run loaded), or a publish
    /// cycle is at work: `None` then, rather than a history built beside the new run
    /// or the cycle.
    pub async fn get<'a>(
        &self,
        storage: &Storage,
        to: NaiveDate,
        runs: &str,
        outlets: impl FnOnce() -> Vec<&'a str>,
        current: impl FnOnce() -> bool,
    ) -> Result<Option<Arc<History>>, Error> {
        let key = format!("{to} {runs}");
        let mut latest = self.latest.lock().await;
        if let Some((k, h)) = &*latest {
            if *k == key {
                return Ok(Some(h.clone()));
            }
        }
        if !current() || self.cycles.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            return Ok(None);
        }
        // Let go first (a request still answering from the old one keeps it until then).
        *latest = None;
        let started = std::time::Instant::now();
        let h = Arc::new(History::build(storage, to, outlets()).await?);
        tracing::info!(%to, runs, outlets = h.rows.len(), ms = started.elapsed().as_millis() as u64,
            "built the outlets' weekly history");
        *latest = Some((key, h.clone()));
        Ok(Some(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One history held: asked again for the same runs, the same one; for other runs
    /// (a new run), the old one let go before the new one is built; forgotten, built
    /// again. Outlets with no day in the weeks have zeros.
    #[tokio::test]
    async fn the_latest_history_only_is_held() {
        let storage = Storage::memory();
        let to = NaiveDate::from_ymd_opt(2026, 6, 8).unwrap();
        let histories = Histories::default();
        let first = histories
            .get(
                &storage,
                to,
                "a/2026-06-08/1",
                || vec!["O2", "O1", "O2"],
                || true,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.rows.len(), 2);
        assert_eq!(first.values.len(), 2 * WEEKS);
        let again = histories
            .get(
                &storage,
                to,
                "a/2026-06-08/1",
                || panic!("built again"),
                || true,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let weeks = first.weeks("O2");
        assert_eq!(weeks.len(), WEEKS);
        assert_eq!(weeks[WEEKS - 1].start, to - Duration::days(6));
        assert!(weeks.iter().all(|w| w.value == 0.0 && w.lines == 0));
        let old = Arc::downgrade(&first);
        drop((first, again));
        let next = to + Duration::days(1);
        let newer = histories
            .get(&storage, next, "a/2026-06-09/1", || vec!["O1"], || true)
            .await
            .unwrap()
            .unwrap();
        assert!(old.upgrade().is_none(), "the old history is let go");
        assert_eq!((newer.to(), newer.rows.len()), (next, 1));
        let newer_weak = Arc::downgrade(&newer);
        drop(newer);
        histories.forget().await;
        assert!(newer_weak.upgrade().is_none(), "forgotten");
        let rebuilt = histories
            .get(&storage, next, "a/2026-06-09/1", || vec!["O3"], || true)
            .await
            .unwrap()
            .unwrap();
        assert!(rebuilt.rows.contains_key("O3"));
        // A request that read the runs before a newer one loaded builds nothing.
        let stale = histories
            .get(&storage, to, "a/2026-06-08/1", || panic!("built"), || false)
            .await
            .unwrap();
        assert!(stale.is_none());
        let kept = histories
            .get(
                &storage,
                next,
                "a/2026-06-09/1",
                || panic!("built"),
                || true,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&kept, &rebuilt), "the served one is kept");
        // While a publish cycle works: the history let go, none built; after it, built.
        let held = Arc::downgrade(&kept);
        drop((kept, rebuilt));
        let cycle = histories.publishing().await;
        assert!(held.upgrade().is_none(), "let go when a cycle starts");
        let during = histories
            .get(
                &storage,
                next,
                "a/2026-06-09/1",
                || panic!("built"),
                || true,
            )
            .await
            .unwrap();
        assert!(during.is_none());
        drop(cycle);
        let after = histories
            .get(&storage, next, "a/2026-06-09/1", || vec!["O4"], || true)
            .await
            .unwrap()
            .unwrap();
        assert!(after.rows.contains_key("O4"));
    }
}
