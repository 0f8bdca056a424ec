//! The aggregator's own bookkeeping, `state/aggregate/state.json`: which raw files are
//! already rolled up, which days the daily table holds, and where the identity index
//! stands. Written last in a run, after every object it describes, so a crash leaves
//! the previous state naming only complete objects; the next run redoes the rest, and
//! every step of a run is idempotent (the index merges by maximum version, the daily
//! files are rewritten whole).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
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
    /// (identity, date) entries in the base files and deltas (an upper bound: deltas may
    /// repeat an entry with a newer version).
    pub entries: u64,
}

impl State {
    /// Reads the state; a missing document or another format version gives `None`.
    pub async fn load(storage: &Storage) -> Result<Option<Self>, Error> {
        let s: Option<State> = storage.get_json(STATE_PATH).await?;
        Ok(s.filter(|s| s.version == STATE_VERSION))
    }

    /// Writes the state (the run's commit point).
    pub async fn save(&self, storage: &Storage) -> Result<(), Error> {
        storage.put_json(STATE_PATH, self).await?;
        Ok(())
    }

    /// The latest day holding at least one row: the default as-of date.
    pub fn latest_day(&self) -> Option<&str> {
        self.days
            .iter()
            .rev()
            .find(|(_, rows)| **rows > 0)
            .map(|(d, _)| d.as_str())
    }
}
