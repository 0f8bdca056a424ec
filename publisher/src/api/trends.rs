//! `GET /api/segmentations/{name}/trends?runs=N&features=F`: each segment's size,
//! value and spectrum over the segmentation's last `N` runs (default 30, at most 400),
//! oldest first. Read from each run's own `profiles.json`, so a trend shows what each
//! run computed; a segment absent from a run (not yet created, or retired) is `null`
//! there. The spectrum follows the segment's `F` strongest features in its newest run
//! (default 5, at most 50).

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use spectra_core::tables::layout::run_files;
use spectra_core::tables::profile::SegmentProfile;
use spectra_core::tables::runs::{read_model, run_folders};

use super::{ApiError, ApiResult, AppState};

/// Runs by default, and at most.
pub const RUNS: (usize, usize) = (30, 400);
/// Features followed per segment by default, and at most.
pub const FEATURES: (usize, usize) = (5, 50);

/// The query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrendQuery {
    runs: Option<usize>,
    features: Option<usize>,
}

/// `GET /api/segmentations/{name}/trends`.
pub(super) async fn trends(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<TrendQuery>,
) -> ApiResult<Json<Value>> {
    let storage = s.snapshots.storage();
    let n = q.runs.unwrap_or(RUNS.0).clamp(1, RUNS.1);
    let f = q.features.unwrap_or(FEATURES.0).clamp(1, FEATURES.1);
    let folders = run_folders(storage, &name).await?;
    if folders.is_empty() {
        return Err(ApiError::not_found(format!(
            "segmentation `{name}` has no run"
        )));
    }
    let mut runs: Vec<(String, Value, Vec<SegmentProfile>)> = Vec::new();
    for (run_id, folder) in folders.into_iter().take(n).rev() {
        let profiles: Option<Vec<SegmentProfile>> = storage
            .get_json(&format!("{folder}/{}", run_files::PROFILES))
            .await?;
        let Some(profiles) = profiles else {
            continue;
        };
        let model = read_model(storage, &folder).await?;
        let run = json!({
            "run_id": run_id,
            "as_of": model.as_ref().map(|m| m.as_of.to_string()),
            "held": model.as_ref().is_some_and(|m| m.hold.is_some()),
            "segments": profiles.len(),
            "outlets": profiles.iter().map(|p| p.outlets).sum::<usize>(),
            "value": profiles.iter().map(|p| p.value).sum::<f64>(),
        });
        runs.push((run_id, run, profiles));
    }
    let ids: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.2.iter().map(|p| p.segment_id.as_str()))
        .collect();
    let snap = s.snapshots.get(&name).await?;
    let mut segments = Vec::new();
    for id in ids {
        let series: Vec<Option<&SegmentProfile>> = runs
            .iter()
            .map(|r| r.2.iter().find(|p| p.segment_id == id))
            .collect();
        let newest = series.iter().rev().flatten().next().expect("in some run");
        let label = snap
            .as_deref()
            .filter(|sn| sn.profiles.iter().any(|p| p.segment_id == id))
            .map_or_else(|| newest.name.clone(), |sn| sn.label(&s.metadata, id).name);
        let of = |g: &dyn Fn(&SegmentProfile) -> Value| -> Vec<Value> {
            series.iter().map(|p| p.map_or(Value::Null, g)).collect()
        };
        let features: Vec<&str> = newest
            .spectrum
            .iter()
            .take(f)
            .map(|x| x.feature.as_str())
            .collect();
        let spectrum: Vec<Value> = features
            .iter()
            .map(|feature| {
                json!({
                    "feature": feature,
                    "share": of(&|p: &SegmentProfile| {
                        json!(p
                            .spectrum
                            .iter()
                            .find(|x| x.feature == *feature)
                            .map_or(0.0, |x| x.share))
                    }),
                })
            })
            .collect();
        segments.push(json!({
            "segment_id": id,
            "name": label,
            "outlets": of(&|p: &SegmentProfile| json!(p.outlets)),
            "outlet_share": of(&|p: &SegmentProfile| json!(p.outlet_share)),
            "value": of(&|p: &SegmentProfile| json!(p.value)),
            "value_share": of(&|p: &SegmentProfile| json!(p.value_share)),
            "spectrum": spectrum,
        }));
    }
    Ok(Json(json!({
        "segmentation": name,
        "runs": runs.into_iter().map(|r| r.1).collect::<Vec<_>>(),
        "segments": segments,
    })))
}
