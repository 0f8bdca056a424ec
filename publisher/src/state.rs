//! The publisher's record of what it published, per segmentation:
//! `state/publisher/{name}/published.parquet` (one row per outlet) and
//! `state/publisher/{name}/cycle.json` (the run and segment profiles last published),
//! both written only after every delivery of a cycle was acknowledged; and
//! `state/publisher/{name}/pending.json`, written before a cycle delivers anything and
//! removed once the cycle is recorded: the keys whose last attempt is not recorded.
//! Whatever a crash left on the topics for those keys, the next cycle sends their
//! current values again (or tombstones), so a delivery acknowledged before a crash and
//! followed by a different run, or a rename back, is still corrected.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, ListBuilder, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use spectra_core::Storage;

use crate::diff::Published;
use crate::Error;
use spectra_core::tables::Columns;

/// The schema of `published.parquet`.
pub fn published_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("outlet_id", DataType::Utf8, false),
        Field::new("segment_id", DataType::Utf8, false),
        Field::new("segment_name", DataType::Utf8, false),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

/// What a segment's last published profile said about its name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileStamp {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
}

/// `cycle.json`: the last completed cycle of a segmentation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CycleState {
    /// The run whose profiles and recommendations were published.
    pub run_id: String,
    /// The segments whose profiles were published, with their names.
    pub profiles: BTreeMap<String, ProfileStamp>,
    /// When the cycle finished (RFC 3339).
    pub published_at: String,
}

/// One key of a cycle's deliveries, recorded before they are sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingKey {
    /// The topic.
    pub topic: String,
    /// The message key.
    pub key: String,
    /// For an assignment, the segment sent (`None`: a tombstone, or another topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<String>,
}

/// `pending.json`: a cycle's deliveries not yet recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The run the cycle published.
    pub run_id: String,
    /// Every key it sent or was about to send.
    pub keys: Vec<PendingKey>,
}

fn pending_path(segmentation: &str) -> String {
    format!("state/publisher/{segmentation}/pending.json")
}

/// Reads `pending.json`: `None` when the last cycle was recorded.
pub async fn load_pending(storage: &Storage, segmentation: &str) -> Result<Option<Pending>, Error> {
    Ok(storage.get_json(&pending_path(segmentation)).await?)
}

/// Writes `pending.json` before a cycle delivers.
pub async fn save_pending(
    storage: &Storage,
    segmentation: &str,
    pending: &Pending,
) -> Result<(), Error> {
    Ok(storage
        .put_json(&pending_path(segmentation), pending)
        .await?)
}

/// Removes `pending.json` once the cycle is recorded.
pub async fn clear_pending(storage: &Storage, segmentation: &str) -> Result<(), Error> {
    Ok(storage.delete(&pending_path(segmentation)).await?)
}

fn published_path(segmentation: &str) -> String {
    format!("state/publisher/{segmentation}/published.parquet")
}

fn cycle_path(segmentation: &str) -> String {
    format!("state/publisher/{segmentation}/cycle.json")
}

/// Reads what was last published; empty before the first cycle.
pub async fn load_published(
    storage: &Storage,
    segmentation: &str,
) -> Result<HashMap<String, Published>, Error> {
    let file = published_path(segmentation);
    let Some(batches) = spectra_core::tables::read_batches(storage, &file).await? else {
        return Ok(HashMap::new());
    };
    let mut out = HashMap::new();
    for b in &batches {
        let c = Columns::new(b, &file);
        let (o, s, n, r) = (
            c.ids("outlet_id")?,
            c.ids("segment_id")?,
            c.ids("segment_name")?,
            c.ids("run_id")?,
        );
        let tags = c.text_list("tags")?;
        for (i, tags) in tags.into_iter().enumerate() {
            out.insert(
                o[i].clone(),
                Published {
                    outlet_id: o[i].clone(),
                    segment_id: s[i].clone(),
                    segment_name: n[i].clone(),
                    tags,
                    run_id: r[i].clone(),
                },
            );
        }
    }
    Ok(out)
}

/// Encodes the published rows as a record batch.
pub fn published_batch(rows: &[Published]) -> RecordBatch {
    let col = |f: fn(&Published) -> &str| -> ArrayRef {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
    };
    let mut tags = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for t in &r.tags {
            tags.values().append_value(t);
        }
        tags.append(true);
    }
    let tags: ArrayRef = Arc::new(tags.finish());
    RecordBatch::try_new(
        published_schema(),
        vec![
            col(|r| &r.outlet_id),
            col(|r| &r.segment_id),
            col(|r| &r.segment_name),
            tags,
            col(|r| &r.run_id),
        ],
    )
    .expect("columns match the schema")
}

/// Records what a cycle published: the rows first, then `cycle.json`.
pub async fn record(
    storage: &Storage,
    segmentation: &str,
    rows: &[Published],
    cycle: &CycleState,
) -> Result<(), Error> {
    let data = spectra_core::schema::to_parquet(published_schema(), &[published_batch(rows)])?;
    storage.put(&published_path(segmentation), data).await?;
    storage.put_json(&cycle_path(segmentation), cycle).await?;
    Ok(())
}

/// Reads `cycle.json`; default before the first cycle.
pub async fn load_cycle(storage: &Storage, segmentation: &str) -> Result<CycleState, Error> {
    Ok(storage
        .get_json(&cycle_path(segmentation))
        .await?
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn state_round_trips() {
        let s = Storage::from_url("memory://").unwrap();
        assert!(load_published(&s, "mix").await.unwrap().is_empty());
        let rows = vec![
            Published {
                outlet_id: "A".into(),
                segment_id: "S1".into(),
                segment_name: "One".into(),
                tags: vec!["#x".into(), "#y".into()],
                run_id: "mix/2026-01-01/1".into(),
            },
            Published {
                outlet_id: "B".into(),
                segment_id: "S2".into(),
                segment_name: "Two".into(),
                tags: vec![],
                run_id: "mix/2026-01-01/1".into(),
            },
        ];
        let cycle = CycleState {
            run_id: "mix/2026-01-01/1".into(),
            ..Default::default()
        };
        record(&s, "mix", &rows, &cycle).await.unwrap();
        let back = load_published(&s, "mix").await.unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back["A"], rows[0]);
        assert_eq!(back["B"], rows[1]);
        assert_eq!(load_cycle(&s, "mix").await.unwrap(), cycle);
    }
}
