//! `GET /api/segmentations/{name}/movements`: every outlet that moved in the latest
//! run, with the evidence the segmenter stored in the run's `movements.parquet` (the
//! change score, the fit of the new segment, the lines and invoices behind it, the
//! features that drove it, earlier and recent spend shares), and each segment's own
//! drift from model.json — a segment whose profile drifts is a different event from
//! outlets moving. The moves come a page at a time (`?limit=`, 1 to [`MAX_LIMIT`],
//! default [`DEFAULT_LIMIT`]; `?offset=`; `?run_id=` the run the earlier pages were
//! of), in outlet id order: a run over a million outlets can move tens of thousands.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use spectra_core::tables::runs::MovementRow;

use super::{snapshot, ApiError, ApiResult, AppState};

/// A row of movements.parquet as the API shows it (here and in the outlet 360 view).
pub(super) fn movement_json(m: &MovementRow) -> Value {
    json!({
        "outlet_id": m.outlet_id,
        "previous_segment_id": m.previous_segment_id,
        "segment_id": m.segment_id,
        "reason": m.reason,
        "score": m.score,
        "fit": m.fit,
        "earlier_lines": m.earlier_lines,
        "recent_lines": m.recent_lines,
        "recent_invoices": m.recent_invoices,
        "drivers": m.drivers,
        "earlier_spectrum": m.earlier_spectrum,
        "recent_spectrum": m.recent_spectrum,
    })
}

/// Moves in a page when `?limit=` is not given.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest page.
pub const MAX_LIMIT: usize = 10_000;

/// `?limit=&offset=&run_id=`.
#[derive(Debug, Deserialize)]
pub(super) struct Page {
    limit: Option<usize>,
    offset: Option<usize>,
    /// The run the pages before were of: a page of another (a newer run came in
    /// between) is a 409, not a page of a different list.
    run_id: Option<String>,
}

/// `GET /api/segmentations/{name}/movements`.
pub(super) async fn movements(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<Value>> {
    let snap = snapshot(&s, &name).await?;
    if let Some(run) = page.run_id.as_deref() {
        if run != snap.run.latest.run_id {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "the latest run of `{name}` is now {}; read its moves from offset 0",
                    snap.run.latest.run_id
                ),
            ));
        }
    }
    let all = &snap.run.movements;
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let offset = page.offset.unwrap_or(0).min(all.len());
    let moves: Vec<Value> = all[offset..]
        .iter()
        .take(limit)
        .map(movement_json)
        .collect();
    let next = offset + moves.len();
    let detector = snap.run.model.movement.as_ref();
    Ok(Json(json!({
        "segmentation": name,
        "run_id": snap.run.latest.run_id,
        "as_of": snap.run.latest.as_of.to_string(),
        "moved": all.len(),
        "offset": offset,
        "limit": limit,
        "next_offset": (next < all.len()).then_some(next),
        "movements": moves,
        "detector": detector.map(|m| {
            let mut v = json!(m);
            if let Some(o) = v.as_object_mut() {
                o.remove("segments");
            }
            v
        }),
        "segment_drift": detector.map_or_else(|| json!([]), |m| json!(m.segments)),
    })))
}
