//! Every outlet's weekly history for the outlet 360 view: net value and invoice lines
//! per week over the [`WEEKS`] weeks ending at a date, from `features/outlet_daily/`.
//! Built once per end date by streaming the days' tables (three columns decoded), then
//! answered from memory: a 360 request costs a search of the sorted ids instead of
//! reading 182 daily tables. The index costs 10 bytes per outlet and week (the net
//! value, and the lines in 16 bits, a week past 65,534 lines kept aside at its full
//! count), plus the outlet's id in one Arrow column, whatever the number of days behind it:
//! about 280 MiB at a million outlets.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, StringArray};

use chrono::{Duration, NaiveDate};
use spectra_core::tables::features::partitions;
use spectra_core::tables::{find_sorted, for_each_batch, layout, rolling, search_sorted};
use spectra_core::Storage;

use crate::Error;

/// Weeks of history in the 360 view.
pub const WEEKS: usize = 26;

/// Every outlet's [`WEEKS`] weeks ending at [`History::to`].
pub struct History {
    from: NaiveDate,
    to: NaiveDate,
    /// The outlets, sorted, as one Arrow column (row `r` is `ids.value(r)`). A hash map
    /// of `String`s took about 70 bytes an outlet more.
    ids: StringArray,
    /// Net value per outlet row and week, `rows × WEEKS`.
    values: Vec<f64>,
    /// Invoice lines per outlet row and week; [`LINES_ASIDE`] where the count is in
    /// `aside`.
    lines: Vec<u16>,
    /// The weeks (index into `lines`) with [`LINES_ASIDE`] lines or more.
    aside: HashMap<u32, u32>,
}

/// A week's lines from which the count is kept aside (`History::aside`).
const LINES_ASIDE: u16 = u16::MAX;

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
        let rows = outlets.len();
        let ids = StringArray::from(outlets);
        let mut h = History {
            from,
            to,
            ids,
            values: vec![0.0; rows * WEEKS],
            lines: vec![0; rows * WEEKS],
            aside: HashMap::new(),
        };
        for (date, path) in partitions(storage, layout::OUTLET_DAILY).await? {
            if date < from || to < date {
                continue;
            }
            let week = ((date - from).num_days() / 7) as usize;
            let columns = ["outlet_id", "net_value", "lines"];
            // The files are sorted by outlet: each lookup starts where the last ended.
            let mut hint = 0;
            for_each_batch(storage, &path, Some(&columns), |c| {
                let (ids, values, lines) = (
                    c.id_strings("outlet_id")?,
                    c.float("net_value")?,
                    c.int("lines")?,
                );
                for (k, id) in ids.iter().enumerate() {
                    let Some(row) = h.row(id.unwrap_or_default(), &mut hint) else {
                        continue;
                    };
                    let i = row * WEEKS + week;
                    h.values[i] += values[k];
                    h.add_lines(i, lines[k].clamp(0, u32::MAX as i64) as u32);
                }
                Ok(())
            })
            .await?;
        }
        Ok(h)
    }

    /// Outlets held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no outlet is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row of `id`, searched from `hint` onwards first (galloping: ids asked for
    /// in order cost a step each), then before it; `hint` becomes where the next
    /// lookup in order starts.
    fn row(&self, id: &str, hint: &mut usize) -> Option<usize> {
        let n = self.len();
        let start = (*hint).min(n);
        let rows = match (start < n).then(|| self.ids.value(start).cmp(id)) {
            Some(Ordering::Less) => {
                // The first row at or past `id` lies within a doubling step.
                let mut step = 1;
                while start + step < n && self.ids.value(start + step) < id {
                    step *= 2;
                }
                start + step / 2 + 1..(start + step + 1).min(n)
            }
            Some(Ordering::Equal) => start..start + 1,
            // Before the hint (an unsorted file), or past the end.
            _ => 0..start,
        };
        match search_sorted(&self.ids, id, rows) {
            Ok(at) => {
                *hint = at + 1;
                Some(at)
            }
            Err(at) => {
                *hint = at;
                None
            }
        }
    }

    fn add_lines(&mut self, i: usize, n: u32) {
        let total = self.lines_at(i).saturating_add(n);
        match u16::try_from(total) {
            Ok(t) if t < LINES_ASIDE => self.lines[i] = t,
            _ => {
                self.lines[i] = LINES_ASIDE;
                self.aside.insert(i as u32, total);
            }
        }
    }

    fn lines_at(&self, i: usize) -> u32 {
        match self.lines[i] {
            LINES_ASIDE => self.aside[&(i as u32)],
            n => u32::from(n),
        }
    }

    /// The last day of the history.
    pub fn to(&self) -> NaiveDate {
        self.to
    }

    /// An outlet's weeks, oldest first (zeros for an outlet with no day in them).
    pub fn weeks(&self, outlet_id: &str) -> Vec<Week> {
        let row = find_sorted(&self.ids, outlet_id).map(|r| r * WEEKS);
        (0..WEEKS)
            .map(|w| Week {
                start: self.from + Duration::days(7 * w as i64),
                value: row.map_or(0.0, |r| self.values[r + w]),
                lines: row.map_or(0, |r| i64::from(self.lines_at(r + w))),
            })
            .collect()
    }
}

/// The history built, shared by requests, for an end date and the runs it was built
/// for (the latest run of every segmentation served: a new run, from a re-rolled day
/// included, builds it again). Only the latest is held, and it is let go before the
/// next is built: at a million outlets a history is about 280 MiB, and two side by
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
        // The guard first: dropped while waiting below, it still counts the cycle off.
        let guard = Publishing {
            cycles: self.cycles.clone(),
        };
        self.forget().await;
        guard
    }

    /// The history ending at `to` as of the runs `runs` (their ids), built when needed
    /// for the outlets `outlets` gives — unless `current` says those runs are no longer
    /// the ones served (a request that read them before a new run loaded), or a publish
    /// cycle is at work ([`Later::Busy`]: rather than a history built beside the new run
    /// or the cycle), or an aggregation pass is moving lines between days
    /// ([`Later::Rerolling`]: a moved line would count in both weeks or neither).
    pub async fn get<'a>(
        &self,
        storage: &Storage,
        to: NaiveDate,
        runs: &str,
        outlets: impl FnOnce() -> Vec<&'a str>,
        current: impl FnOnce() -> bool,
    ) -> Result<Result<Arc<History>, Later>, Error> {
        let key = format!("{to} {runs}");
        let mut latest = self.latest.lock().await;
        if let Some((k, h)) = &*latest {
            if *k == key {
                return Ok(Ok(h.clone()));
            }
        }
        if !current() || self.cycles.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            return Ok(Err(Later::Busy));
        }
        // Let go first (a request still answering from the old one keeps it until then).
        *latest = None;
        let started = std::time::Instant::now();
        // Built while no pass moves lines between days (again if one did meanwhile); a
        // request does not wait for one under way.
        let outlets = outlets();
        let built = rolling::settled(storage, std::time::Duration::ZERO, || {
            History::build(storage, to, outlets.clone())
        })
        .await?;
        let h = match built {
            Ok(h) => Arc::new(h),
            Err(why) => {
                tracing::info!(%why, "the outlets' weekly history waits for the re-roll");
                return Ok(Err(Later::Rerolling));
            }
        };
        tracing::info!(%to, runs, outlets = h.len(), ms = started.elapsed().as_millis() as u64,
            "built the outlets' weekly history");
        *latest = Some((key, h.clone()));
        Ok(Ok(h))
    }
}

/// Why [`Histories::get`] gave no history now; the 360 view says it in `history_note`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Later {
    /// A publish cycle is at work, or the runs asked for are no longer served.
    Busy,
    /// An aggregation pass is part-way through moving lines between days (or through a
    /// rebuild).
    Rerolling,
}

impl Later {
    /// The sentence the 360 view shows instead of the weeks.
    pub fn note(self) -> &'static str {
        match self {
            Later::Busy => {
                "The weekly history is not built while a new run is loaded or published; ask again in a moment."
            }
            Later::Rerolling => {
                "The weekly history is not built while the aggregator re-rolls days that corrections moved lines between (or rebuilds the daily tables); ask again in a moment."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spectra_core::tables::features::OutletDailyRow;

    fn day(outlet: &str, date: NaiveDate, net_value: f64, lines: i64) -> OutletDailyRow {
        OutletDailyRow {
            outlet_id: outlet.into(),
            date,
            net_value,
            quantity: 1.0,
            lines,
            invoices: 1,
            returns_value: 0.0,
            distinct_skus: 1,
            distributor_id: None,
        }
    }

    /// Built from `outlet_daily` tables as the aggregator writes them: each served
    /// outlet's weeks summed day by day, outlets not served skipped, a file out of
    /// outlet order read alike, a week of more than 65,534 lines at its full count,
    /// days outside the 26 weeks left out; every served outlet found among many.
    #[tokio::test]
    async fn weeks_are_summed_from_the_daily_tables() {
        let storage = Storage::memory();
        let to = NaiveDate::from_ymd_opt(2026, 6, 28).unwrap();
        let write = |date: NaiveDate, rows: Vec<OutletDailyRow>| {
            let storage = storage.clone();
            async move {
                spectra_core::tables::write_rows(&storage, &layout::outlet_daily(date), &rows)
                    .await
                    .unwrap()
            }
        };
        let (d1, d2) = (to - Duration::days(1), to - Duration::days(2));
        write(
            d2,
            vec![
                day("A", d2, 10.5, 3),
                day("B", d2, 1.0, 40_000),
                day("Q", d2, 99.0, 1),
                day("Z", d2, 2.0, 1),
            ],
        )
        .await;
        // Out of outlet order.
        write(
            d1,
            vec![
                day("Z", d1, 3.0, 2),
                day("B", d1, 2.0, 30_000),
                day("A", d1, 0.25, 1),
            ],
        )
        .await;
        let old = to - Duration::days(7 * WEEKS as i64);
        write(old, vec![day("A", old, 1000.0, 5)]).await;
        let early = to - Duration::days(7 * WEEKS as i64 - 1);
        write(early, vec![day("A", early, 7.0, 2)]).await;
        let many: Vec<String> = (0..5000).map(|i| format!("N{i:05}")).collect();
        let mut served: Vec<&str> = many.iter().map(String::as_str).collect();
        served.extend(["Z", "A", "B", "A"]);
        let h = History::build(&storage, to, served).await.unwrap();
        assert_eq!(h.len(), 5003);
        let last = |o: &str| *h.weeks(o).last().unwrap();
        assert_eq!((last("A").value, last("A").lines), (10.75, 4));
        assert_eq!((last("B").value, last("B").lines), (3.0, 70_000));
        assert_eq!((last("Z").value, last("Z").lines), (5.0, 3));
        assert_eq!(
            last("Q"),
            Week {
                start: last("A").start,
                value: 0.0,
                lines: 0
            },
            "not served"
        );
        let first = h.weeks("A")[0];
        assert_eq!((first.start, first.value, first.lines), (early, 7.0, 2));
        assert!(many.iter().all(|o| h.weeks(o).iter().all(|w| w.lines == 0)));
        assert!(many
            .iter()
            .enumerate()
            .all(|(i, o)| h.row(o, &mut 0) == Some(i + 2)));
        assert_eq!(h.row("N", &mut 0), None);
        assert_eq!(h.row("ZZ", &mut 0), None);
    }

    /// One history held: asked again for the same runs, the same one; for other runs
    /// (a new run), the old one let go before the new one is built; forgotten, built
    /// again; none built during a publish cycle, or while an aggregation pass moves
    /// lines between days. Outlets with no day in the weeks have zeros.
    #[tokio::test]
    async fn the_latest_history_only_is_held() {
        let (histories, storage) = (Histories::default(), Storage::memory());
        // `get` over a store without days, building from `outlets` (`None`: it must
        // not build), the runs asked for served or not (`current`).
        let get = |to: NaiveDate,
                   runs: &'static str,
                   outlets: Option<Vec<&'static str>>,
                   current: bool| {
            let (histories, storage) = (histories.clone(), storage.clone());
            async move {
                histories
                    .get(&storage, to, runs, || outlets.expect("built"), || current)
                    .await
                    .unwrap()
            }
        };
        let to = NaiveDate::from_ymd_opt(2026, 6, 8).unwrap();
        let first = get(to, "a/2026-06-08/1", Some(vec!["O2", "O1", "O2"]), true)
            .await
            .unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first.values.len(), 2 * WEEKS);
        let again = get(to, "a/2026-06-08/1", None, true).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let weeks = first.weeks("O2");
        assert_eq!(weeks.len(), WEEKS);
        assert_eq!(weeks[WEEKS - 1].start, to - Duration::days(6));
        assert!(weeks.iter().all(|w| w.value == 0.0 && w.lines == 0));
        let old = Arc::downgrade(&first);
        drop((first, again));
        let next = to + Duration::days(1);
        let newer = get(next, "a/2026-06-09/1", Some(vec!["O1"]), true)
            .await
            .unwrap();
        assert!(old.upgrade().is_none(), "the old history is let go");
        assert_eq!((newer.to(), newer.len()), (next, 1));
        let newer_weak = Arc::downgrade(&newer);
        drop(newer);
        histories.forget().await;
        assert!(newer_weak.upgrade().is_none(), "forgotten");
        let rebuilt = get(next, "a/2026-06-09/1", Some(vec!["O3"]), true)
            .await
            .unwrap();
        assert!(rebuilt.row("O3", &mut 0).is_some());
        // A request that read the runs before a newer one loaded builds nothing.
        assert_eq!(
            get(to, "a/2026-06-08/1", None, false).await.err(),
            Some(Later::Busy)
        );
        let kept = get(next, "a/2026-06-09/1", None, true).await.unwrap();
        assert!(Arc::ptr_eq(&kept, &rebuilt), "the served one is kept");
        // While a publish cycle works: the history let go, none built; after it, built.
        let held = Arc::downgrade(&kept);
        drop((kept, rebuilt));
        let cycle = histories.publishing().await;
        assert!(held.upgrade().is_none(), "let go when a cycle starts");
        assert_eq!(
            get(next, "a/2026-06-09/1", None, true).await.err(),
            Some(Later::Busy)
        );
        drop(cycle);
        let after = get(next, "a/2026-06-09/1", Some(vec!["O4"]), true)
            .await
            .unwrap();
        assert!(after.row("O4", &mut 0).is_some());
        // While an aggregation pass moves lines between days: none built; once the
        // pass has ended, built.
        let seen = rolling::load_marked(&storage).await.unwrap();
        let pass = rolling::begin(&storage, &seen, 3).await.unwrap().unwrap();
        let later = next + Duration::days(1);
        assert_eq!(
            get(later, "a/2026-06-10/1", Some(vec!["O5"]), true)
                .await
                .err(),
            Some(Later::Rerolling)
        );
        assert!(rolling::end(&storage, &pass).await.unwrap());
        let last = get(later, "a/2026-06-10/1", Some(vec!["O5"]), true)
            .await
            .unwrap();
        assert_eq!((last.to(), last.len()), (later, 1));
    }
}
