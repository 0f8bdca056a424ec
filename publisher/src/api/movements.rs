//! `GET /api/segmentations/{name}/movements`: every outlet that moved in the latest
//! run, with the evidence the segmenter stored in the run's `movements.parquet` (the
//! change score, the fit of the new segment, the lines and invoices behind it, the
//! features that drove it, earlier and recent spend shares), and each segment's own
//! drift from model.json — a segment whose profile drifts is a different event from
//! outlets moving.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::{snapshot, ApiResult, AppState};
use crate::tables::run_dir;

/// The JSON columns of movements.parquet, parsed back into objects.
const JSON_COLUMNS: [&str; 3] = ["drivers", "earlier_spectrum", "recent_spectrum"];

/// Rows of a run's movements.parquet as JSON objects (none for a run written before
/// the file existed).
async fn read_movements(s: &AppState, dir: &str) -> Result<Vec<Value>, crate::Error> {
    let file = format!("{dir}/movements.parquet");
    let Some(bytes) = s.snapshots.storage().get(&file).await? else {
        return Ok(Vec::new());
    };
    let bad = |reason: String| crate::Error::Table {
        file: file.clone(),
        reason,
    };
    let batches = spectra_core::schema::from_parquet(bytes).map_err(|e| bad(e.to_string()))?;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for b in &batches {
        writer.write(b).map_err(|e| bad(e.to_string()))?;
    }
    writer.finish().map_err(|e| bad(e.to_string()))?;
    let text = writer.into_inner();
    let mut rows: Vec<Value> = if text.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?
    };
    for r in &mut rows {
        for c in JSON_COLUMNS {
            if let Some(Value::String(t)) = r.get(c) {
                let parsed = serde_json::from_str(t).unwrap_or(Value::Null);
                r[c] = parsed;
            }
        }
    }
    Ok(rows)
}

/// `GET /api/segmentations/{name}/movements`.
pub(super) async fn movements(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let snap = snapshot(&s, &name).await?;
    let dir = run_dir(&name, &snap.run.latest);
    let moves = read_movements(&s, &dir).await?;
    let detector = snap.run.model.get("movement").cloned();
    let segment_drift = detector
        .as_ref()
        .and_then(|m| m.get("segments").cloned())
        .unwrap_or_else(|| json!([]));
    Ok(Json(json!({
        "segmentation": name,
        "run_id": snap.run.latest.run_id,
        "as_of": snap.run.latest.as_of.to_string(),
        "moved": moves.len(),
        "movements": moves,
        "detector": detector.map(|mut m| {
            if let Some(o) = m.as_object_mut() {
                o.remove("segments");
            }
            m
        }),
        "segment_drift": segment_drift,
    })))
}
