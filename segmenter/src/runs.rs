//! A segmentation's runs in storage:
//!
//! ```text
//! segmentations/{name}/runs/{as_of}.{seq}/assignments.parquet
//!                                         outlet_gaps.parquet
//!                                         movements.parquet
//!                                         profiles.json
//!                                         model.json
//! segmentations/{name}/latest.json        {"run_id", "as_of", "path", "held"?} — written last
//! segmentations/{name}/releases/{as_of}.{seq}.json   a held run's release (the publisher)
//! ```
//!
//! A run the circuit breaker held names in `latest.json` the baseline it was compared
//! with; until the run is released (or the configuration allows its change), that
//! baseline stays the accepted run: the one published and the one the next run starts
//! from ([`accepted`]).
//!
//! The run id is `{name}/{as_of}/{seq}`; `seq` counts the runs of one as-of date from
//! 1 and never reuses a folder, so a run that crashed before `latest.json` leaves an
//! orphan folder the next run skips over, and readers only ever see complete runs.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use spectra_core::hold::{Hold, RunPointer};
use spectra_core::schema::{from_parquet, to_parquet};
use spectra_core::Storage;

use crate::gaps::GapRow;
use crate::model::ModelFile;
use crate::pipeline::{AssignmentRow, PreviousRun, RunOutput};
use crate::Error;

/// `segmentations/{name}/latest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    /// Run id, `{name}/{as_of}/{seq}`.
    pub run_id: String,
    /// As-of date of the run's features.
    pub as_of: NaiveDate,
    /// The run's folder, relative to the storage root.
    pub path: String,
    /// Set when the circuit breaker held the run (see `spectra_core::hold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
}

impl Latest {
    /// The run as a pointer.
    pub fn pointer(&self) -> RunPointer {
        RunPointer {
            run_id: self.run_id.clone(),
            as_of: self.as_of,
            path: self.path.clone(),
        }
    }
}

/// The accepted run of a segmentation: its latest run unless that one is held and
/// neither released nor allowed by `max_change_share`, in which case the held run's
/// baseline. Also returns the latest run when it is held and not accepted.
pub async fn accepted(
    storage: &Storage,
    segmentation: &str,
    max_change_share: f64,
) -> Result<Option<(RunPointer, Option<Latest>)>, Error> {
    let Some(latest) = latest(storage, segmentation).await? else {
        return Ok(None);
    };
    let Some(hold) = &latest.held else {
        return Ok(Some((latest.pointer(), None)));
    };
    let release = spectra_core::hold::load_release(storage, segmentation, &latest.run_id).await?;
    if spectra_core::hold::accepted(Some(hold), release.as_ref(), max_change_share) {
        Ok(Some((latest.pointer(), None)))
    } else {
        Ok(Some((hold.baseline.clone(), Some(latest))))
    }
}

/// The folder of run `seq` of `as_of`.
pub fn run_folder(segmentation: &str, as_of: NaiveDate, seq: u32) -> String {
    format!("segmentations/{segmentation}/runs/{as_of}.{seq}")
}

/// The path of `latest.json`.
pub fn latest_path(segmentation: &str) -> String {
    format!("segmentations/{segmentation}/latest.json")
}

/// The latest complete run, if any.
pub async fn latest(storage: &Storage, segmentation: &str) -> Result<Option<Latest>, Error> {
    Ok(storage.get_json(&latest_path(segmentation)).await?)
}

/// The next free `seq` for `as_of` (1 for the first run of the date).
pub async fn next_seq(
    storage: &Storage,
    segmentation: &str,
    as_of: NaiveDate,
) -> Result<u32, Error> {
    let root = format!("segmentations/{segmentation}/runs/");
    let prefix = format!("{as_of}.");
    let used = storage
        .list(&root)
        .await?
        .iter()
        .filter_map(|l| {
            let dir = l.path.strip_prefix(&root)?.split('/').next()?;
            dir.strip_prefix(&prefix)?.parse::<u32>().ok()
        })
        .max();
    Ok(used.map_or(1, |s| s + 1))
}

/// Reads the accepted run (see [`accepted`]) the next run starts from and is compared
/// with: its model, assignments and segment names.
pub async fn read_previous(
    storage: &Storage,
    segmentation: &str,
    max_change_share: f64,
) -> Result<Option<PreviousRun>, Error> {
    let Some((latest, _)) = accepted(storage, segmentation, max_change_share).await? else {
        return Ok(None);
    };
    let missing = |file: &str| Error::PreviousRun {
        path: format!("{}/{file}", latest.path),
        reason: "missing, though latest.json names the run".into(),
    };
    let model: ModelFile = storage
        .get_json(&format!("{}/model.json", latest.path))
        .await?
        .ok_or_else(|| missing("model.json"))?;
    let path = format!("{}/assignments.parquet", latest.path);
    let bytes = storage
        .get(&path)
        .await?
        .ok_or_else(|| missing("assignments.parquet"))?;
    let mut assignments = HashMap::new();
    for b in from_parquet(bytes)? {
        let col = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>().cloned())
                .ok_or_else(|| Error::PreviousRun {
                    path: path.clone(),
                    reason: format!("no utf8 column `{name}`"),
                })
        };
        let (o, s) = (col("outlet_id")?, col("segment_id")?);
        for i in 0..b.num_rows() {
            assignments.insert(o.value(i).to_owned(), s.value(i).to_owned());
        }
    }
    /// The part of a profile the next run needs.
    #[derive(Deserialize)]
    struct Named {
        segment_id: String,
        name: String,
        #[serde(default)]
        name_features: Vec<String>,
    }
    let named: Vec<Named> = storage
        .get_json(&format!("{}/profiles.json", latest.path))
        .await?
        .ok_or_else(|| missing("profiles.json"))?;
    Ok(Some(PreviousRun {
        run_id: latest.run_id.clone(),
        pointer: latest,
        model,
        assignments,
        names: named
            .into_iter()
            .map(|n| (n.segment_id, (n.name, n.name_features)))
            .collect(),
    }))
}

/// Schema of `assignments.parquet`.
pub fn assignments_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("outlet_id", DataType::Utf8, false),
        Field::new("segment_id", DataType::Utf8, false),
        Field::new("previous_segment_id", DataType::Utf8, true),
        Field::new("change", DataType::Utf8, false),
        Field::new("distance", DataType::Float64, false),
        Field::new("confidence", DataType::Float64, false),
        Field::new("value", DataType::Float64, false),
        Field::new("lines", DataType::Int64, false),
        Field::new("potential", DataType::Float64, false),
    ]))
}

/// Schema of `outlet_gaps.parquet`.
pub fn gaps_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("outlet_id", DataType::Utf8, false),
        Field::new("segment_id", DataType::Utf8, false),
        Field::new("feature", DataType::Utf8, false),
        Field::new("outlet_share", DataType::Float64, false),
        Field::new("segment_share", DataType::Float64, false),
        Field::new("gap", DataType::Float64, false),
    ]))
}

fn assignments_batch(rows: &[AssignmentRow]) -> Result<RecordBatch, Error> {
    let s = |f: fn(&AssignmentRow) -> Option<&str>| -> Arc<dyn Array> {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let f = |g: fn(&AssignmentRow) -> f64| -> Arc<dyn Array> {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(g)))
    };
    Ok(RecordBatch::try_new(
        assignments_schema(),
        vec![
            s(|r| Some(&r.outlet_id)),
            s(|r| Some(&r.segment_id)),
            s(|r| r.previous_segment_id.as_deref()),
            s(|r| Some(r.change)),
            f(|r| r.distance),
            f(|r| r.confidence),
            f(|r| r.value),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.lines))),
            f(|r| r.potential),
        ],
    )?)
}

fn gaps_batch(rows: &[GapRow]) -> Result<RecordBatch, Error> {
    let s = |f: fn(&GapRow) -> &str| -> Arc<dyn Array> {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
    };
    let f = |g: fn(&GapRow) -> f64| -> Arc<dyn Array> {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(g)))
    };
    Ok(RecordBatch::try_new(
        gaps_schema(),
        vec![
            s(|r| &r.outlet_id),
            s(|r| &r.segment_id),
            s(|r| &r.feature),
            f(|r| r.outlet_share),
            f(|r| r.segment_share),
            f(|r| r.gap),
        ],
    )?)
}

/// Writes a run's folder, then `latest.json` naming it.
pub async fn write_run(
    storage: &Storage,
    segmentation: &str,
    folder: &str,
    out: &RunOutput,
) -> Result<Latest, Error> {
    let a = to_parquet(
        assignments_schema(),
        &[assignments_batch(&out.assignments)?],
    )?;
    storage
        .put(&format!("{folder}/assignments.parquet"), a)
        .await?;
    let g = to_parquet(gaps_schema(), &[gaps_batch(&out.gaps)?])?;
    storage
        .put(&format!("{folder}/outlet_gaps.parquet"), g)
        .await?;
    let m = to_parquet(
        crate::movements::movements_schema(),
        &[crate::movements::movements_batch(&out.movements)?],
    )?;
    storage
        .put(&format!("{folder}/movements.parquet"), m)
        .await?;
    storage
        .put_json(&format!("{folder}/profiles.json"), &out.profiles)
        .await?;
    storage
        .put_json(&format!("{folder}/model.json"), &out.model)
        .await?;
    let latest = Latest {
        run_id: out.run_id.clone(),
        as_of: out.model.as_of,
        path: folder.to_owned(),
        held: out.model.hold.clone(),
    };
    storage
        .put_json(&latest_path(segmentation), &latest)
        .await?;
    Ok(latest)
}
