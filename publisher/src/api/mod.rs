//! The HTTP API (contract §6): JSON with proper status codes, errors as
//! `{"error": "…"}` sentences. Segmentations and their profiles, the editing of names
//! and tags (bearer token), the outlet 360 view ([`outlet`]), the segment movement and
//! pipeline views ([`pipeline`]), each move with its evidence ([`movements`]), the exports, and the console at `/`.

mod movements;
mod outlet;
mod pipeline;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rdkafka::producer::FutureProducer;
use serde_json::{json, Value};
use spectra_core::Config;
use tokio::sync::Notify;

use crate::kafka::{deliver, Outgoing};
use crate::metadata::{MetadataStore, MetadataUpdate, SegmentMetadata};
use crate::metrics::{PublishMetrics, RequestLabels};
use crate::snapshot::{Snapshot, Snapshots};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Configuration (token, topics).
    pub cfg: Arc<Config>,
    /// The runs.
    pub snapshots: Snapshots,
    /// Names and tags.
    pub metadata: MetadataStore,
    /// Producer for `segment-metadata`.
    pub producer: FutureProducer,
    /// Metrics.
    pub metrics: PublishMetrics,
    /// Wakes the publish loop (a name or tag changed).
    pub changed: Arc<Notify>,
}

/// An error response: a status and a sentence.
#[derive(Debug)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// A response with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        tracing::error!(error = %e, "API request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({"error": self.message}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// The whole router: API, exports and console (merge the admin routes beside it).
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route("/", get(crate::console::index))
        .route("/console/{file}", get(crate::console::asset))
        .route("/api/segmentations", get(pipeline::segmentations))
        .route("/api/segmentations/{name}/segments", get(segments))
        .route(
            "/api/segmentations/{name}/segments/{id}",
            get(segment).put(put_segment),
        )
        .route(
            "/api/segmentations/{name}/segments/{id}/outlets",
            get(outlet::segment_outlets),
        )
        .route(
            "/api/segmentations/{name}/movement",
            get(pipeline::movement),
        )
        .route(
            "/api/segmentations/{name}/movements",
            get(movements::movements),
        )
        .route("/api/segmentations/{name}/export.csv", get(export_csv))
        .route("/api/segmentations/{name}/export.xlsx", get(export_xlsx))
        .route("/api/outlets", get(outlet::search))
        .route("/api/outlets/{id}", get(outlet::outlet))
        .route("/api/pipeline", get(pipeline::pipeline))
        .route_layer(middleware::from_fn_with_state(metrics, track))
        .fallback(|| async {
            ApiError::not_found("no such route; see GET / for the console and /api/segmentations")
        })
        .with_state(state)
}

async fn track(State(m): State<PublishMetrics>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let resp = next.run(req).await;
    m.requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}

/// The latest run of a segmentation, or 404.
async fn snapshot(s: &AppState, name: &str) -> ApiResult<Arc<Snapshot>> {
    s.snapshots.get(name).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "segmentation `{name}` has no run yet (or does not exist)"
        ))
    })
}

async fn segments(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    let snap = snapshot(&s, &name).await?;
    Ok(Json(
        snap.profiles
            .iter()
            .map(|p| snap.profile_message(&s.metadata, p))
            .collect(),
    ))
}

async fn segment(
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let snap = snapshot(&s, &name).await?;
    let p = snap
        .profiles
        .iter()
        .find(|p| p.segment_id == id)
        .ok_or_else(|| {
            ApiError::not_found(format!("segmentation `{name}` has no segment `{id}`"))
        })?;
    Ok(Json(snap.profile_message(&s.metadata, p)))
}

/// Checks `Authorization: Bearer …` against `publish.api_token`.
fn authorize(cfg: &Config, headers: &HeaderMap) -> ApiResult<()> {
    let token = cfg.publish.api_token.as_bytes();
    if token.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "editing is disabled: set publish.api_token (SPECTRA__PUBLISH__API_TOKEN) to enable it",
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing `Authorization: Bearer <token>` header",
            )
        })?
        .as_bytes();
    // Constant-time comparison.
    let same = given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not valid",
        ))
    }
}

async fn put_segment(
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<SegmentMetadata>> {
    authorize(&s.cfg, &headers)?;
    let snap = snapshot(&s, &name).await?;
    if !snap.profiles.iter().any(|p| p.segment_id == id) {
        return Err(ApiError::not_found(format!(
            "segmentation `{name}` has no segment `{id}` in its latest run"
        )));
    }
    let update: MetadataUpdate = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not a valid update ({e}); send JSON like {{\"name\": \"Coffee-led convenience\", \"description\": \"…\", \"tags\": [\"#premium\"]}}"),
        )
    })?;
    let current = s.metadata.get(&name, &id).unwrap_or_else(|| {
        let l = snap.label(&s.metadata, &id);
        SegmentMetadata {
            segmentation: name.clone(),
            segment_id: id.clone(),
            name: l.name,
            description: l.description,
            tags: l.tags,
            updated_by: String::new(),
            updated_at: String::new(),
        }
    });
    let next = update
        .validate(current)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let msg = Outgoing {
        topic: s.cfg.kafka.topics.metadata.clone(),
        key: next.key(),
        value: Some(serde_json::to_vec(&next).expect("metadata serializes")),
        change: "metadata",
    };
    deliver(&s.producer, std::slice::from_ref(&msg), &s.metrics, None).await?;
    s.metadata.apply(&msg.key, Some(next.clone()));
    s.changed.notify_one();
    tracing::info!(segmentation = %name, segment_id = %id, name = %next.name, tags = ?next.tags, by = %next.updated_by, "segment metadata set");
    Ok(Json(next))
}

async fn export_csv(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let snap = snapshot(&s, &name).await?;
    let data = crate::export::to_csv(&crate::export::rows(&snap, &s.metadata))?;
    Ok(attachment(
        "text/csv; charset=utf-8",
        &format!("{name}.csv"),
        data,
    ))
}

async fn export_xlsx(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let snap = snapshot(&s, &name).await?;
    let data = crate::export::to_xlsx(&crate::export::rows(&snap, &s.metadata), &name)?;
    Ok(attachment(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        &format!("{name}.xlsx"),
        data,
    ))
}

fn attachment(content_type: &'static str, file: &str, data: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{}\"", file.replace('"', ""));
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        data,
    )
        .into_response()
}
