//! The publisher's record of what it published, per segmentation:
//! `state/publisher/{name}/published.parquet` (one row per outlet) and
//! `state/publisher/{name}/cycle.json` (the run and segment profiles last published),
//! both written only after every delivery of a cycle was acknowledged, in that order
//! (`published.parquet`'s footer holds the same `cycle.json`, so a stop between the
//! two writes loses neither); and
//! `state/publisher/{name}/pending.json`, written before a cycle delivers anything and
//! removed once the cycle is recorded: the keys whose last attempt is not recorded.
//! Whatever a crash left on the topics for those keys, the next cycle sends their
//! current values again (or tombstones), so a delivery acknowledged before a crash and
//! followed by a different run, or a rename back, is still corrected.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use spectra_core::tables::find_sorted;
use spectra_core::Storage;

use crate::diff::{Current, Published};
use crate::Error;

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

impl From<crate::snapshot::Label> for ProfileStamp {
    fn from(l: crate::snapshot::Label) -> Self {
        Self {
            name: l.name,
            description: l.description,
            tags: l.tags,
        }
    }
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
    /// [`crate::snapshot::Snapshot::sku_names_digest`] of the SKU names the
    /// recommendations were sent with: under other names every outlet's lists go out
    /// again, not only those whose items changed. `None` in records written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku_names: Option<u64>,
    /// The [`Pending::cycle`] of the deliveries this record completes: a
    /// `pending.json` that carries it was recorded, only not removed (the process
    /// stopped, or the removal failed, between the two), and has nothing to repair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<String>,
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

/// An assignment key of a cycle's deliveries, recorded before they are sent: the
/// outlet (the key is `{segmentation}:{outlet_id}`) and the segment sent (`None` for a
/// tombstone). Written as a pair, `["PL-1","S3"]`: a first cycle lists a million.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAssignment<'a>(pub Cow<'a, str>, pub Option<Cow<'a, str>>);

/// `pending.json`: a cycle's deliveries not yet recorded. Assignment and
/// recommendation keys are held as outlet ids on the configured topics (a first cycle
/// sends a million of each); `keys` holds the rest (profiles), and every key of a
/// record written before the lists existed. Borrowed from the cycle when it is written
/// (a first cycle's million keys are not copied), owned when it is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending<'a> {
    /// The run the cycle published.
    pub run_id: String,
    /// This cycle's own mark, recorded in `cycle.json` ([`CycleState::cycle`]) with
    /// what it published. `None` in records written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<String>,
    /// Every other key it sent or was about to send.
    #[serde(default)]
    pub keys: Vec<PendingKey>,
    /// The assignments it sent or was about to send.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignments: Vec<PendingAssignment<'a>>,
    /// The outlets whose recommendations (or tombstones) it sent or was about to send.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<Cow<'a, str>>,
}

fn pending_path(segmentation: &str) -> String {
    format!("state/publisher/{segmentation}/pending.json")
}

/// Reads `pending.json`: `None` when the last cycle was recorded. A record that
/// `recorded` (the last `cycle.json`) completed was recorded and only not removed:
/// it is removed now, and `None` returned. So is one that `published.parquet`
/// completed (the process stopped between its write and `cycle.json`'s): its footer
/// holds the `cycle.json` it was recorded with, written now, and `recorded` becomes it.
pub async fn load_pending(
    storage: &Storage,
    segmentation: &str,
    recorded: &mut CycleState,
) -> Result<Option<Pending<'static>>, Error> {
    let pending: Option<Pending<'static>> = storage.get_json(&pending_path(segmentation)).await?;
    let p = match pending {
        Some(p) if p.cycle.is_some() => p,
        other => return Ok(other),
    };
    if p.cycle != recorded.cycle {
        let path = published_path(segmentation);
        let noted = spectra_core::tables::footer_value(storage, &path, CYCLE_NOTE).await?;
        let cycle: Option<CycleState> =
            noted
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|source| spectra_core::Error::Json { path, source })?;
        match cycle {
            Some(c) if c.cycle == p.cycle => {
                tracing::info!(run_id = %p.run_id,
                    "the last cycle was recorded in published.parquet but not in cycle.json: completing it");
                storage.put_json(&cycle_path(segmentation), &c).await?;
                *recorded = c;
            }
            _ => return Ok(Some(p)),
        }
    } else {
        tracing::info!(run_id = %p.run_id,
            "the last cycle was recorded but its pending record not removed: removing it");
    }
    clear_pending(storage, segmentation).await?;
    Ok(None)
}

/// The key of `published.parquet`'s footer that holds the `cycle.json` written with it.
const CYCLE_NOTE: &str = "spectra.cycle";

/// Writes `pending.json` before a cycle delivers.
pub async fn save_pending(
    storage: &Storage,
    segmentation: &str,
    pending: &Pending<'_>,
) -> Result<(), Error> {
    // Compact, not pretty: a first cycle lists a million outlets twice.
    let path = pending_path(segmentation);
    let guess = 256 + 32 * pending.assignments.len() + 16 * pending.recommendations.len();
    let mut data = Vec::with_capacity(guess);
    serde_json::to_writer(&mut data, pending).map_err(|source| spectra_core::Error::Json {
        path: path.clone(),
        source,
    })?;
    Ok(storage.put(&path, data.into()).await?)
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

/// What was last published for some outlets: their segment, its name and tags, and
/// the run (the same for most outlets, so held once as a [`Stamp`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// The published segment.
    pub segment_id: String,
    /// Its published name.
    pub segment_name: String,
    /// Its published tags.
    pub tags: Vec<String>,
    /// The run whose cycle published it.
    pub run_id: String,
}

/// `published.parquet` as the diff reads it: the outlet ids as Arrow holds them, sorted,
/// each with the index of its [`Stamp`] — a few bytes an outlet where a map of
/// [`Published`] rows took hundreds.
#[derive(Debug)]
pub struct PublishedView {
    outlets: StringArray,
    /// Row → stamp.
    stamp: Vec<u32>,
    stamps: Vec<Stamp>,
}

impl Default for PublishedView {
    fn default() -> Self {
        Self {
            outlets: StringArray::from(Vec::<&str>::new()),
            stamp: Vec::new(),
            stamps: Vec::new(),
        }
    }
}

impl PublishedView {
    /// Outlets published.
    pub fn len(&self) -> usize {
        self.stamp.len()
    }

    /// Whether nothing was published.
    pub fn is_empty(&self) -> bool {
        self.stamp.is_empty()
    }

    /// What was published for an outlet.
    pub fn get(&self, outlet_id: &str) -> Option<&Stamp> {
        find_sorted(&self.outlets, outlet_id).map(|row| &self.stamps[self.stamp[row] as usize])
    }

    /// The published outlets, in id order.
    pub fn outlets(&self) -> impl Iterator<Item = &str> {
        self.outlets.iter().flatten()
    }

    /// The view of some rows (any order; an outlet given twice keeps its last row).
    pub fn from_rows(rows: &[Published]) -> Self {
        let mut sorted: BTreeMap<&str, &Published> = BTreeMap::new();
        for r in rows {
            sorted.insert(&r.outlet_id, r);
        }
        let mut v = Self::default();
        let mut index = HashMap::new();
        let mut outlets = Vec::new();
        for (o, r) in sorted {
            outlets.push(o);
            let stamp = Stamp {
                segment_id: r.segment_id.clone(),
                segment_name: r.segment_name.clone(),
                tags: r.tags.clone(),
                run_id: r.run_id.clone(),
            };
            let i = v.intern(&mut index, stamp);
            v.stamp.push(i);
        }
        v.outlets = StringArray::from(outlets);
        v
    }

    fn intern(&mut self, index: &mut HashMap<Stamp, u32>, stamp: Stamp) -> u32 {
        *index.entry(stamp).or_insert_with_key(|s| {
            self.stamps.push(s.clone());
            (self.stamps.len() - 1) as u32
        })
    }
}

/// Whether `published.parquet` exists (an operator who removes it makes the next cycle
/// publish every assignment again).
pub async fn published_exists(storage: &Storage, segmentation: &str) -> Result<bool, Error> {
    Ok(storage.exists(&published_path(segmentation)).await?)
}

/// Reads what was last published; empty before the first cycle. The file is written
/// sorted by outlet ([`record`]); one that is not is an error naming it.
pub async fn load_published(storage: &Storage, segmentation: &str) -> Result<PublishedView, Error> {
    let file = published_path(segmentation);
    let mut v = PublishedView::default();
    let mut index = HashMap::new();
    let mut outlets = Vec::new();
    spectra_core::tables::for_each_batch(storage, &file, None, |c| {
        let (o, s, n, r) = (
            c.id_strings("outlet_id")?,
            c.ids("segment_id")?,
            c.ids("segment_name")?,
            c.ids("run_id")?,
        );
        let tags = c.text_list("tags")?;
        for (i, tags) in tags.into_iter().enumerate() {
            let stamp = Stamp {
                segment_id: s[i].clone(),
                segment_name: n[i].clone(),
                tags,
                run_id: r[i].clone(),
            };
            let k = v.intern(&mut index, stamp);
            v.stamp.push(k);
        }
        outlets.push(o);
        Ok(())
    })
    .await?;
    let arrays: Vec<&dyn Array> = outlets.iter().map(|a| a as &dyn Array).collect();
    if !arrays.is_empty() {
        let all = arrow::compute::concat(&arrays).map_err(|e| spectra_core::Error::Table {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        v.outlets = all.as_string::<i32>().clone();
    }
    drop(outlets);
    if !v.outlets.iter().flatten().is_sorted_by(|a, b| a < b) {
        return Err(spectra_core::Error::Table {
            file,
            reason: "outlets out of order or repeated (it is written sorted by outlet)".into(),
        }
        .into());
    }
    Ok(v)
}

/// Encodes what a cycle published as a batch of `published.parquet`: the current
/// assignment (sorted by outlet) with its segment's name and tags, under `run_id`.
pub fn published_batch(run_id: &str, current: &[Current<'_>]) -> RecordBatch {
    let outlets: ArrayRef = Arc::new(
        current
            .iter()
            .map(|c| Some(c.outlet_id))
            .collect::<StringArray>(),
    );
    let segments: ArrayRef = Arc::new(
        current
            .iter()
            .map(|c| Some(c.segment_id))
            .collect::<StringArray>(),
    );
    let names: ArrayRef = Arc::new(
        current
            .iter()
            .map(|c| Some(c.label.name.as_str()))
            .collect::<StringArray>(),
    );
    let mut tags = ListBuilder::new(StringBuilder::new());
    for c in current {
        for t in &c.label.tags {
            tags.values().append_value(t);
        }
        tags.append(true);
    }
    let tags: ArrayRef = Arc::new(tags.finish());
    let runs: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
        run_id,
        current.len(),
    )));
    RecordBatch::try_new(
        published_schema(),
        vec![outlets, segments, names, tags, runs],
    )
    .expect("columns match the schema")
}

/// Records what a cycle published (every assignment of `current`, sorted by outlet, as
/// of `cycle.run_id`): the rows first, then `cycle.json`.
pub async fn record(
    storage: &Storage,
    segmentation: &str,
    current: &[Current<'_>],
    cycle: &CycleState,
) -> Result<(), Error> {
    // A batch of 64k outlets at a time, encoded before the next is made.
    let batches = current
        .chunks(1 << 16)
        .map(|c| Ok(published_batch(&cycle.run_id, c)));
    // The cycle document in the rows' footer too: a stop between the two writes
    // leaves it where the next cycle finds it (`load_pending`).
    let note = serde_json::to_string(cycle).map_err(|source| spectra_core::Error::Json {
        path: published_path(segmentation),
        source,
    })?;
    let data = spectra_core::schema::encode_parquet_noting(
        published_schema(),
        &[(CYCLE_NOTE, &note)],
        batches,
    )?;
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
    use crate::snapshot::Label;

    /// Round trip through storage, over more rows than one read batch holds: every
    /// outlet is found with its stamp, in id order, and an absent one is not.
    #[tokio::test]
    async fn state_round_trips() {
        let s = Storage::from_url("memory://").unwrap();
        assert!(load_published(&s, "mix").await.unwrap().is_empty());
        let one = Label {
            name: "One".into(),
            description: String::new(),
            tags: vec!["#x".into(), "#y".into()],
        };
        let two = Label {
            name: "Two".into(),
            ..Default::default()
        };
        let ids: Vec<String> = (0..20_000).map(|i| format!("PL-{i:06}")).collect();
        let current: Vec<Current> = ids
            .iter()
            .enumerate()
            .map(|(i, o)| Current {
                outlet_id: o,
                segment_id: if i % 3 == 0 { "S1" } else { "S2" },
                label: if i % 3 == 0 { &one } else { &two },
                confidence: 0.5,
                evidence: None,
            })
            .collect();
        let cycle = CycleState {
            run_id: "mix/2026-01-01/1".into(),
            ..Default::default()
        };
        record(&s, "mix", &current, &cycle).await.unwrap();
        let back = load_published(&s, "mix").await.unwrap();
        assert_eq!(back.len(), ids.len());
        assert!(back.outlets().eq(ids.iter().map(String::as_str)));
        for c in &current {
            let p = back.get(c.outlet_id).unwrap();
            assert_eq!(
                (
                    p.segment_id.as_str(),
                    &p.segment_name,
                    &p.tags,
                    p.run_id.as_str()
                ),
                (
                    c.segment_id,
                    &c.label.name,
                    &c.label.tags,
                    "mix/2026-01-01/1"
                )
            );
        }
        assert!(back.get("PL-0").is_none() && back.get("PL-999999").is_none());
        assert_eq!(back.stamps.len(), 2);
        assert_eq!(load_cycle(&s, "mix").await.unwrap(), cycle);
    }
}
