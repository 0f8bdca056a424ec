//! Ingest's partition state, `state/ingest/checkpoints/{topic}/{p}.json`: the checkpoint,
//! the lease and the record of which raw and master objects are committed.
//!
//! Ingest alone writes it (`spectra_ingest::writer`, whose docs tell how a batch is made
//! durable and fenced). It is defined here because one other reader needs one fact from
//! it: the aggregator rolls up only *committed* objects. An object ingest wrote is
//! committed once the checkpoint of its batch lands; until then its batch is the
//! state's `pending` intent, and if its writer crashed or was fenced the next owner
//! moves its objects to `orphans` and deletes them (the lines are replayed into objects
//! of its own). Every object is named in the intent before it is written, so an object
//! that is listed in storage is committed exactly when its partition's state names it
//! neither as pending nor as an orphan ([`uncommitted`]).

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::{Result, Storage};

/// The durable state of one partition (see the module docs).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionState {
    /// The next offset to read; `None`: nothing stored yet, start at the beginning.
    pub next_offset: Option<i64>,
    /// Timestamp (ms) of the message at `next_offset - 1`, re-read on assignment to
    /// recognise the topic.
    #[serde(default)]
    pub last_timestamp_ms: Option<i64>,
    /// The lease epoch of the current owner.
    #[serde(default)]
    pub epoch: u64,
    /// Who holds the lease (`host:pid`), for people.
    #[serde(default)]
    pub owner: String,
    /// The Kafka cluster the offsets belong to.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// The batch being written, if any.
    #[serde(default)]
    pub pending: Option<Intent>,
    /// Objects of fenced writers, deleted again until ingest's grace period has passed
    /// (`spectra_ingest::writer::ORPHAN_GRACE`).
    #[serde(default)]
    pub orphans: Vec<Orphan>,
    /// The unfinished batches of earlier owners that later owners replayed (the
    /// latest [`REPLAYED_KEPT`]): a writer whose checkpoint was refused looks its batch
    /// up here to learn whether its objects are a replayed batch's (to remove) or the
    /// committed ones (its checkpoint landed though its answer was lost).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replayed: Vec<Replayed>,
    /// Rows written in all (invoice lines, master records).
    #[serde(default)]
    pub lines_written: u64,
    /// Messages covered by checkpoints in all.
    #[serde(default)]
    pub messages_written: u64,
    /// Messages sent to the dead-letter topic in all.
    #[serde(default)]
    pub dead_letters: u64,
}

/// A batch about to be written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Intent {
    /// The epoch of its writer.
    pub epoch: u64,
    /// First offset of the batch.
    pub first: i64,
    /// Last offset of the batch.
    pub last: i64,
    /// Objects the batch writes.
    pub objects: Vec<String>,
}

/// A batch an owner found unfinished and replayed: its writer's epoch and offsets.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Replayed {
    /// The epoch it was written under.
    pub epoch: u64,
    /// Its first offset.
    pub first: i64,
    /// Its last offset.
    pub last: i64,
}

/// Replayed batches a partition's state remembers.
pub const REPLAYED_KEPT: usize = 64;

impl PartitionState {
    /// Gives up an earlier owner's unfinished batch `i` (found at `since_ms`): it is
    /// recorded as replayed (the latest [`REPLAYED_KEPT`]), and its objects as orphans.
    pub fn replay(&mut self, i: Intent, since_ms: i64) {
        self.replayed.push(Replayed {
            epoch: i.epoch,
            first: i.first,
            last: i.last,
        });
        let excess = self.replayed.len().saturating_sub(REPLAYED_KEPT);
        self.replayed.drain(..excess);
        self.orphans
            .extend(i.objects.into_iter().map(|path| Orphan { path, since_ms }));
    }

    /// The objects this state names as not committed: its pending batch's and the
    /// orphans still to delete.
    pub fn uncommitted(&self) -> impl Iterator<Item = &str> {
        let pending = self.pending.iter().flat_map(|i| i.objects.iter());
        pending
            .map(String::as_str)
            .chain(self.orphans.iter().map(|o| o.path.as_str()))
    }
}

/// An object that may have been written by a fenced writer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Orphan {
    /// Its path.
    pub path: String,
    /// When it was found (ms since the epoch).
    pub since_ms: i64,
}

/// The state object's path.
pub fn checkpoint_path(topic: &str, partition: i32) -> String {
    format!(
        "state/ingest/checkpoints/{}/{partition}.json",
        sanitize(topic)
    )
}

/// Makes a topic name safe as part of an object name (no `-`, which separates the
/// parts of an object's name).
pub fn sanitize(topic: &str) -> String {
    topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The file name of an object of one batch: topic, partition, offset range and its
/// writer's lease epoch (`{topic}-{p}-{first}-{last}-e{epoch}.parquet`), so two owners
/// of a partition (one of them fenced) never write the same name.
pub fn object_name(topic: &str, partition: i32, first: i64, last: i64, epoch: u64) -> String {
    format!(
        "{}-{partition}-{first:020}-{last:020}-e{epoch}.parquet",
        sanitize(topic)
    )
}

/// The (sanitized) topic and partition of an object named by [`object_name`], from
/// its path; `None` for other names (objects of releases before leases, files put
/// there by other tools).
pub fn object_partition(path: &str) -> Option<(String, i32)> {
    let name = path.rsplit('/').next()?.strip_suffix(".parquet")?;
    let mut parts = name.rsplitn(5, '-');
    let epoch = parts.next()?.strip_prefix('e')?;
    let (last, first) = (parts.next()?, parts.next()?);
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(epoch) && digits(last) && digits(first) && !topic.is_empty())
        .then(|| (topic.to_owned(), partition))
}

/// Partition states read at once by [`uncommitted`].
const PARALLEL_READS: usize = 16;

/// The objects among `paths` (listed in storage *before* this call) that ingest has
/// not committed: named by their partition's state as its pending batch or as
/// orphans. One read per partition among them; objects of other names, and of
/// partitions without a state, count as committed.
pub async fn uncommitted<'a>(
    storage: &Storage,
    paths: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeSet<String>> {
    let mut by_partition: BTreeMap<(String, i32), Vec<&str>> = BTreeMap::new();
    for p in paths {
        if let Some(key) = object_partition(p) {
            by_partition.entry(key).or_default().push(p);
        }
    }
    // Owned keys and a storage handle per read: a future borrowing the map's keys is
    // not `Send` for every lifetime, which a spawned service needs.
    let keys: Vec<(String, i32)> = by_partition.keys().cloned().collect();
    let states: Vec<Option<PartitionState>> = futures::stream::iter(keys)
        .map(|(topic, p)| {
            let storage = storage.clone();
            async move {
                storage
                    .get_json::<PartitionState>(&checkpoint_path(&topic, p))
                    .await
            }
        })
        .buffered(PARALLEL_READS)
        .try_collect()
        .await?;
    let mut out = BTreeSet::new();
    for (paths, state) in by_partition.values().zip(states) {
        let Some(state) = state else { continue };
        let named: BTreeSet<&str> = state.uncommitted().collect();
        out.extend(
            paths
                .iter()
                .filter(|p| named.contains(**p))
                .map(|p| (*p).to_owned()),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_give_their_partition_back() {
        let name = object_name("t1.in-voices", 12, 100, 102, 3);
        assert_eq!(
            name,
            "t1.in_voices-12-00000000000000000100-00000000000000000102-e3.parquet"
        );
        assert_eq!(
            object_partition(&format!("raw/invoices/date=2026-11-20/{name}")),
            Some(("t1.in_voices".to_owned(), 12))
        );
        assert_eq!(sanitize("t1.in_voices"), "t1.in_voices");
        for other in [
            "raw/invoices/date=2026-11-20/invoices-2-100-102.parquet",
            "raw/invoices/date=2026-11-20/a.parquet",
            "raw/invoices/date=2026-11-20/x-1-2-3-e.parquet",
            "raw/invoices/date=2026-11-20/x-p-2-3-e4.parquet",
            "raw/invoices/date=2026-11-20/-1-2-3-e4.parquet",
            "raw/invoices/date=2026-11-20/x-1-2-3-e4.json",
        ] {
            assert_eq!(object_partition(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn pending_and_orphaned_objects_are_uncommitted() {
        let s = Storage::memory();
        let obj = |p: i32, first: i64, epoch: u64| {
            format!(
                "raw/invoices/date=2026-11-20/{}",
                object_name("inv", p, first, first + 9, epoch)
            )
        };
        let (committed, pending, orphan) = (obj(0, 0, 1), obj(0, 10, 2), obj(0, 10, 1));
        let mut state = PartitionState {
            next_offset: Some(10),
            epoch: 2,
            pending: Some(Intent {
                epoch: 2,
                first: 10,
                last: 19,
                objects: vec![pending.clone()],
            }),
            ..PartitionState::default()
        };
        state.orphans.push(Orphan {
            path: orphan.clone(),
            since_ms: 0,
        });
        s.put_json(&checkpoint_path("inv", 0), &state)
            .await
            .unwrap();
        let other = obj(1, 0, 1); // a partition without a state
        let got = uncommitted(
            &s,
            [
                &committed,
                &pending,
                &orphan,
                &other,
                "raw/invoices/x.parquet",
            ]
            .iter()
            .map(|p| p.as_ref()),
        )
        .await
        .unwrap();
        assert_eq!(got, BTreeSet::from([pending, orphan]));
    }
}
