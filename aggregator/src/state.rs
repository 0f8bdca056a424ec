//! The aggregator's own bookkeeping, `state/aggregate/state.json`: which raw files are
//! already rolled up, which days the daily table holds, and where the identity index
//! stands. Written last in a run, after every object it describes, so a crash leaves
//! the previous state naming only complete objects; the next run redoes the rest, and
//! every step of a run is idempotent (the index merges by maximum version, the daily
//! files are rewritten whole). A full rebuild also writes it first, as a document of
//! no format version (read as no state), before it removes what the previous state
//! names: a rebuild that stops part-way leaves a rebuild to the next run.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use spectra_core::storage::{Condition, PutOutcome, Version};
use spectra_core::Storage;

use crate::Error;

/// Where the state document lives.
pub const STATE_PATH: &str = "state/aggregate/state.json";

/// Format version of the state; a mismatch forces a full rebuild.
pub const STATE_VERSION: u32 = 1;

/// The aggregator's state between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// Raw files already rolled up: path (relative to the storage root) → size in bytes.
    pub files: BTreeMap<String, u64>,
    /// Days of the daily table: `YYYY-MM-DD` → rows (outlet × SKU) in that day's file.
    pub days: BTreeMap<String, u64>,
    /// Days holding more than one version of some identity (`YYYY-MM-DD`): their
    /// re-rolls deduplicate; other days are summed directly.
    pub duplicated: BTreeSet<String>,
    /// The identity index's bookkeeping.
    pub index: IndexState,
    /// Runs completed so far.
    pub runs: u64,
    /// Raw objects absorbed earlier that are gone from `raw/invoices/`: path → size.
    /// Their days are held (not re-rolled without them) until a full rebuild.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub missing: BTreeMap<String, u64>,
}

/// Bookkeeping of the identity index (see [`crate::index`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IndexState {
    /// Number of hash buckets of the base files.
    pub buckets: u32,
    /// Delta files written since the last compaction, oldest first.
    pub deltas: Vec<String>,
    /// Sequence number of the next delta file.
    pub next_delta: u64,
    /// (identity, date) entries in the base files, the merged level and the deltas (an
    /// upper bound: deltas may repeat an entry with a newer version).
    pub entries: u64,
    /// Of those, entries in the merged level (see [`crate::index`]; an upper bound).
    #[serde(default)]
    pub merged_entries: u64,
}

impl State {
    /// Reads the state; a missing document or another format version gives `None`.
    pub async fn load(storage: &Storage) -> Result<Option<Self>, Error> {
        let s: Option<State> = storage.get_json(STATE_PATH).await?;
        Ok(s.filter(|s| s.version == STATE_VERSION))
    }

    /// Reads the state with its version (for [`State::commit`]); the state is `None`
    /// when missing or of another format version, the version `None` when missing.
    pub async fn load_versioned(
        storage: &Storage,
    ) -> Result<(Option<Self>, Option<Version>), Error> {
        let Some((data, version)) = storage.get_versioned(STATE_PATH).await? else {
            return Ok((None, None));
        };
        let s: State = serde_json::from_slice(&data)
            .map_err(|e| Error::Corrupt(format!("{STATE_PATH}: {e}; run with --full")))?;
        Ok((
            Some(s).filter(|s| s.version == STATE_VERSION),
            Some(version),
        ))
    }

    /// Writes the state (the run's commit point), conditionally on the version read at
    /// the start of the pass: a pass that another pass committed over fails with
    /// [`Error::Fenced`] instead of landing.
    pub async fn commit(&self, storage: &Storage, read: Option<Version>) -> Result<Version, Error> {
        let data = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Corrupt(format!("{STATE_PATH}: {e}")))?;
        let cond = match read {
            Some(v) => Condition::Matches(v),
            None => Condition::Absent,
        };
        match storage.put_if(STATE_PATH, data.into(), &cond).await? {
            PutOutcome::Written(v) => Ok(v),
            PutOutcome::Conflict => Err(Error::Fenced(format!(
                "{STATE_PATH} changed since this pass read it (another pass committed)"
            ))),
        }
    }

    /// The latest day holding at least one row.
    pub fn latest_day(&self) -> Option<&str> {
        self.days
            .iter()
            .rev()
            .find(|(_, rows)| **rows > 0)
            .map(|(d, _)| d.as_str())
    }

    /// The rows of every day of the daily table, by day (days since the epoch).
    pub fn day_rows(&self) -> BTreeMap<i32, u64> {
        self.days
            .iter()
            .filter_map(|(d, r)| Some((crate::days_of(d.parse().ok()?), *r)))
            .collect()
    }
}

/// How the default as-of date is chosen ([`robust_as_of`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AsOfRule {
    /// The latest day later than this one (days since the epoch: today + tolerance)
    /// cannot be the as-of, unless every day is.
    pub cutoff: i32,
    /// Share of the typical day's volume a day needs to be the as-of.
    pub min_share: f64,
    /// Most recent days with data whose median volume is the typical day.
    pub reference_days: usize,
}

/// The default as-of date: among the days with rows up to `rule.cutoff` (all days with
/// rows when none is that early), the latest whose rows are at least `min_share` of
/// the median rows of the `reference_days` most recent of them. Computed from the
/// daily table as it is now, so a corrected or emptied day moves the as-of back, and a
/// dozen stray lines on a far date never become it. Returns the as-of and the later
/// days with rows it passed over.
pub fn robust_as_of(days: &BTreeMap<i32, u64>, rule: &AsOfRule) -> Option<(i32, Vec<i32>)> {
    let with_rows: Vec<(i32, u64)> = days
        .iter()
        .filter(|(_, r)| **r > 0)
        .map(|(d, r)| (*d, *r))
        .collect();
    let early: Vec<(i32, u64)> = with_rows
        .iter()
        .copied()
        .filter(|(d, _)| *d <= rule.cutoff)
        .collect();
    let candidates = if early.is_empty() { &with_rows } else { &early };
    let mut recent: Vec<u64> = candidates
        .iter()
        .rev()
        .take(rule.reference_days.max(1))
        .map(|(_, r)| *r)
        .collect();
    recent.sort_unstable();
    let n = recent.len();
    if n == 0 {
        return None;
    }
    let median = if n % 2 == 1 {
        recent[n / 2] as f64
    } else {
        (recent[n / 2 - 1] + recent[n / 2]) as f64 / 2.0
    };
    let threshold = rule.min_share * median;
    let (as_of, _) = candidates
        .iter()
        .rev()
        .find(|(_, r)| *r as f64 >= threshold)?;
    let skipped = with_rows
        .iter()
        .filter(|(d, _)| d > as_of)
        .map(|(d, _)| *d)
        .collect();
    Some((*as_of, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(cutoff: i32) -> AsOfRule {
        AsOfRule {
            cutoff,
            min_share: 0.1,
            reference_days: 28,
        }
    }

    #[test]
    fn a_few_stray_rows_never_become_the_as_of() {
        let mut days: BTreeMap<i32, u64> =
            (100..160).map(|d| (d, 800 + (d as u64 % 7) * 40)).collect();
        assert_eq!(robust_as_of(&days, &rule(1000)), Some((159, vec![])));
        // A dozen rows on a later day inside the tolerance, and far in the future.
        days.insert(161, 12);
        days.insert(80_000, 12);
        assert_eq!(
            robust_as_of(&days, &rule(1000)),
            Some((159, vec![161, 80_000]))
        );
        // Far future beyond the cutoff is ignored even with a real volume.
        days.insert(90_000, 5000);
        assert_eq!(robust_as_of(&days, &rule(1000)).unwrap().0, 159);
        // The latest day emptied by corrections: the as-of moves back.
        days.insert(159, 0);
        assert_eq!(robust_as_of(&days, &rule(1000)).unwrap().0, 158);
        // A quiet but real day (a fifth of the usual) still counts.
        days.insert(159, 170);
        assert_eq!(robust_as_of(&days, &rule(1000)).unwrap().0, 159);
        // Every day after the cutoff (a skewed clock): the volume rule alone decides.
        assert_eq!(robust_as_of(&days, &rule(0)).unwrap().0, 90_000);
        assert_eq!(robust_as_of(&BTreeMap::new(), &rule(0)), None);
        assert_eq!(
            robust_as_of(&BTreeMap::from([(5, 3)]), &rule(0)),
            Some((5, vec![]))
        );
    }
}
