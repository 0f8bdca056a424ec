//! Ingest's published status: `status/ingest/{consumer_group}.json`, owned and written
//! by ingest after its checkpoint rounds (at most about once a second), read by whoever
//! shows the pipeline (the publisher's pipeline page) instead of ingest's private
//! checkpoints.
//!
//! Several ingest processes of one group share the document: each merges its own
//! partitions into it with a conditional write (see [`crate::storage`]), so one
//! process's entries never erase another's. An entry is only as fresh as its
//! `updated_at`; a partition whose owner died keeps its last entry until the next owner
//! writes it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::storage::PutOutcome;
use crate::{Result, Storage};

/// The status document of one consumer group.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IngestStatus {
    /// The consumer group.
    pub consumer_group: String,
    /// When any entry last changed.
    pub updated_at: Option<DateTime<Utc>>,
    /// One entry per topic partition, sorted by topic then partition.
    pub partitions: Vec<PartitionStatus>,
}

/// The status of one topic partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PartitionStatus {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to read: everything below it is stored (the checkpoint).
    pub next_offset_stored: Option<i64>,
    /// The partition's high watermark as last seen in a fetch (`None`: not seen yet).
    pub high_watermark: Option<i64>,
    /// `high_watermark - next_offset_stored` (0 when not known).
    pub lag: i64,
    /// Rows (invoice lines, master records) written since the partition's first checkpoint.
    pub lines_written: u64,
    /// Messages covered by checkpoints since the partition's first checkpoint.
    pub messages_written: u64,
    /// Messages sent to the dead-letter topic since the partition's first checkpoint.
    pub dead_letters: u64,
    /// `ok`, or why ingest of the partition is stopped (`offset_domain: …`).
    pub state: String,
    /// When this entry was written.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The document's path for a consumer group.
pub fn path(consumer_group: &str) -> String {
    let safe: String = consumer_group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("status/ingest/{safe}.json")
}

/// Reads a group's status; `None` before ingest wrote it.
pub async fn read(storage: &Storage, consumer_group: &str) -> Result<Option<IngestStatus>> {
    storage.get_json(&path(consumer_group)).await
}

/// Merges `entries` into the group's document (replacing the entries of the same topic
/// partitions) with a conditional write, retried a few times when another process of
/// the group wrote in between.
pub async fn write(
    storage: &Storage,
    consumer_group: &str,
    entries: &[PartitionStatus],
) -> Result<IngestStatus> {
    let rel = path(consumer_group);
    let mut last = None;
    for _ in 0..5 {
        let (mut doc, cond): (IngestStatus, _) = storage.get_json_versioned(&rel).await?;
        doc.consumer_group = consumer_group.to_owned();
        for e in entries {
            match doc
                .partitions
                .iter_mut()
                .find(|p| p.topic == e.topic && p.partition == e.partition)
            {
                // Progress only moves forward: an entry from a process that lost the
                // partition never replaces a newer owner's.
                Some(p) if e.next_offset_stored >= p.next_offset_stored || e.state != "ok" => {
                    *p = e.clone()
                }
                Some(_) => {}
                None => doc.partitions.push(e.clone()),
            }
        }
        doc.partitions
            .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        doc.updated_at = Some(Utc::now());
        match storage.put_json_if(&rel, &doc, &cond).await? {
            PutOutcome::Written(_) => return Ok(doc),
            PutOutcome::Conflict => last = Some(doc),
        }
    }
    // Another process keeps winning: its next round carries its entries, ours follow.
    Ok(last.unwrap_or_default())
}

/// Where the aggregator publishes its status.
pub const AGGREGATOR_PATH: &str = "status/aggregator.json";

/// The aggregator's published status, `status/aggregator.json`: owned and written by
/// the aggregator at the end of each pass (under its lease), read by whoever shows the
/// pipeline instead of the aggregator's private state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AggregatorStatus {
    /// When the last pass committed.
    pub last_pass_at: Option<DateTime<Utc>>,
    /// True when that pass was a full rebuild.
    pub last_pass_full: bool,
    /// The lease epoch of that pass.
    pub lease_epoch: u64,
    /// Passes committed so far (since the last full rebuild).
    pub runs: u64,
    /// Raw objects rolled up and still present.
    pub raw_objects: u64,
    /// Days in the daily table.
    pub days: u64,
    /// Raw objects the aggregator absorbed that are gone from `raw/invoices/`.
    pub missing_raw_objects: Vec<String>,
    /// Their days (`YYYY-MM-DD`): held as they were, not re-rolled, until
    /// `spectra aggregate --once --full`.
    pub missing_days: Vec<String>,
}

/// Reads the aggregator's status; `None` before its first pass.
pub async fn read_aggregator(storage: &Storage) -> Result<Option<AggregatorStatus>> {
    storage.get_json(AGGREGATOR_PATH).await
}

/// Writes the aggregator's status (its one writer is the pass holding the lease).
pub async fn write_aggregator(storage: &Storage, status: &AggregatorStatus) -> Result<()> {
    storage.put_json(AGGREGATOR_PATH, status).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_writers_merge_their_partitions() {
        let s = Storage::memory();
        assert!(read(&s, "g").await.unwrap().is_none());
        let e = |p: i32, n: i64| PartitionStatus {
            topic: "invoices".into(),
            partition: p,
            next_offset_stored: Some(n),
            state: "ok".into(),
            ..PartitionStatus::default()
        };
        write(&s, "g", &[e(1, 10)]).await.unwrap();
        write(&s, "g", &[e(0, 5)]).await.unwrap();
        write(&s, "g", &[e(1, 12)]).await.unwrap();
        let doc = read(&s, "g").await.unwrap().unwrap();
        assert_eq!(doc.consumer_group, "g");
        let got: Vec<_> = doc
            .partitions
            .iter()
            .map(|p| (p.partition, p.next_offset_stored))
            .collect();
        assert_eq!(got, [(0, Some(5)), (1, Some(12))]);
        assert_eq!(path("a/b"), "status/ingest/a_b.json");
    }
}
