//! `POST /api/segmentations/{name}/runs/{run}/release` (bearer token): releases the
//! run the circuit breaker holds, so the next cycle publishes it. `{run}` is
//! `{as_of}.{seq}` as `/api/segmentations` shows it under `held.run`; the optional JSON
//! body `{"released_by": "…", "note": "…"}` is recorded in the release document.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use spectra_core::hold::Release;

use super::{guard, ApiError, ApiResult, AppState};

/// The optional body of a release.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    released_by: Option<String>,
    note: Option<String>,
}

pub(super) async fn release(
    State(s): State<AppState>,
    Path((name, run)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Release>> {
    guard::Tokens::new(&s.cfg.publish).authorize_write(&headers)?;
    let b: ReleaseBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReleaseBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not a valid release ({e}); send nothing, or JSON like {{\"released_by\": \"jan\", \"note\": \"distributor D7 re-sent its history\"}}"),
            )
        })?
    };
    let by = b.released_by.unwrap_or_else(|| "api".into());
    let note = b.note.unwrap_or_default();
    if by.chars().count() > 200 || note.chars().count() > 2000 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "`released_by` is limited to 200 characters and `note` to 2000",
        ));
    }
    let storage = s.snapshots.storage();
    let r = crate::hold::release(
        s.snapshots.max_change_share(&name),
        storage,
        &name,
        &run,
        &by,
        &note,
    )
    .await?
    .map_err(|m| ApiError::new(StatusCode::CONFLICT, m))?;
    s.metrics.set_held(&name, false);
    s.changed.notify_one();
    tracing::warn!(segmentation = %name, run_id = %r.run_id, by = %r.released_by, note = %r.note,
        "held run released; the next cycle publishes it");
    Ok(Json(r))
}
