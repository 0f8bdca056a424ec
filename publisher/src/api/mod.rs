//! The HTTP API (contract §6): JSON with proper status codes, errors as
//! `{"error": "…"}` sentences. Segmentations and their profiles, the editing of names
//! and tags (bearer token), the release of a run the circuit breaker holds ([`release`],
//! bearer token), the outlet 360 view ([`outlet`]), the segment movement and
//! pipeline views ([`pipeline`]), each move with its evidence ([`movements`]), the
//! exports, and the console at `/`. Tokens, limits and security headers are in
//! [`guard`].

mod compare;
mod context;
mod download;
pub mod guard;
mod movements;
mod outlet;
mod pipeline;
mod release;
mod steer;
mod trends;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rdkafka::producer::FutureProducer;
use serde_json::{json, Value};
use spectra_core::Config;
use tokio::sync::Notify;

use crate::kafka::{deliver_one, Outgoing};
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
    /// Held by an edit of a segment's name, description or tags from reading the
    /// current label to applying the new one: two edits at once of different fields
    /// each keep the other's.
    pub metadata_edit: Arc<tokio::sync::Mutex<()>>,
    /// Slots of the exports being written (`publish.max_concurrent_exports`).
    pub exports: Arc<tokio::sync::Semaphore>,
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

impl From<spectra_core::Error> for ApiError {
    fn from(e: spectra_core::Error) -> Self {
        crate::Error::from(e).into()
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
/// The read routes need `publish.read_token` when it is set; every route runs under
/// the request deadline, the concurrency limit and the body limit, and every response
/// carries the security headers ([`guard`]).
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    let publish = &state.cfg.publish;
    let tokens = guard::Tokens::new(publish);
    let limits = guard::Limits::new(publish);
    let body_limit = publish.max_body_bytes;
    let api = Router::new()
        .route(
            "/api/segmentations",
            get(pipeline::segmentations).post(steer::create),
        )
        .route(
            "/api/segmentations/{name}/definition",
            get(steer::definition)
                .put(steer::edit)
                .delete(steer::retire),
        )
        .route(
            "/api/segmentations/{name}/drafts",
            get(steer::drafts).post(steer::open_draft),
        )
        .route(
            "/api/segmentations/{name}/drafts/{draft}/promote",
            post(steer::promote),
        )
        .route(
            "/api/segmentations/{name}/drafts/{draft}/discard",
            post(steer::discard),
        )
        .route("/api/segmentations/{name}/compare", get(compare::compare))
        .route("/api/segmentations/{name}/pins", get(steer::pins))
        .route(
            "/api/segmentations/{name}/segments/{id}/merge",
            post(steer::merge),
        )
        .route(
            "/api/segmentations/{name}/segments/{id}/split",
            post(steer::split),
        )
        .route(
            "/api/segmentations/{name}/pins/{outlet}",
            axum::routing::put(steer::pin).delete(steer::unpin),
        )
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
            "/api/segmentations/{name}/segments/{id}/context",
            get(context::context),
        )
        .route(
            "/api/segmentations/{name}/movement",
            get(pipeline::movement),
        )
        .route(
            "/api/segmentations/{name}/runs/{run}/release",
            post(release::release),
        )
        .route(
            "/api/segmentations/{name}/movements",
            get(movements::movements),
        )
        .route("/api/segmentations/{name}/trends", get(trends::trends))
        .route(
            "/api/segmentations/{name}/export.csv",
            get(download::export_csv),
        )
        .route(
            "/api/segmentations/{name}/export.xlsx",
            get(download::export_xlsx),
        )
        .route("/api/outlets", get(outlet::search))
        .route("/api/outlets/{id}", get(outlet::outlet))
        .route("/api/pipeline", get(pipeline::pipeline))
        .route_layer(middleware::from_fn_with_state(tokens, guard::require_read));
    Router::new()
        .route("/", get(crate::console::index))
        .route("/console/{file}", get(crate::console::asset))
        .merge(api)
        .route_layer(middleware::from_fn_with_state(metrics, track))
        .route_layer(middleware::from_fn_with_state(
            state.snapshots.clone(),
            forget_served_on_write,
        ))
        .fallback(|| async {
            ApiError::not_found("no such route; see GET / for the console and /api/segmentations")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(limits, guard::limit))
        .layer(middleware::from_fn(guard::security_headers))
        .with_state(state)
}

/// After a request that wrote (any but `GET` and `HEAD` that succeeded: a definition,
/// a pin, a release), the served runs are found again on the next read
/// ([`Snapshots::forget_served`]); a refused one (401, 400, …) changed nothing, and
/// anybody could send those to make every read find them again.
async fn forget_served_on_write(
    State(snapshots): State<Snapshots>,
    req: Request,
    next: Next,
) -> Response {
    let writes = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let resp = next.run(req).await;
    if writes && resp.status().is_success() {
        snapshots.forget_served();
    }
    resp
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

async fn put_segment(
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<SegmentMetadata>> {
    guard::Tokens::new(&s.cfg.publish).authorize_write(&headers)?;
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
    let _edit = s.metadata_edit.lock().await;
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
    let offset = deliver_one(&s.producer, &msg, &s.metrics).await?;
    s.metadata.apply(&msg.key, Some(next.clone()), offset);
    s.changed.notify_one();
    tracing::info!(segmentation = %name, segment_id = %id, name = %next.name, tags = ?next.tags, by = %next.updated_by, "segment metadata set");
    Ok(Json(next))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use reqwest::StatusCode;
    use spectra_core::service::Context;
    use spectra_core::Storage;
    use tokio_util::sync::CancellationToken;

    use super::*;

    /// The real router (no broker needed: the producer connects lazily) on a free port.
    async fn serve(read_token: &str) -> (String, CancellationToken) {
        let mut cfg = Config::default();
        cfg.publish.api_token = "wr1te".into();
        cfg.publish.read_token = read_token.into();
        cfg.publish.max_body_bytes = 4096;
        let ctx = Context::new(CancellationToken::new());
        let state = AppState {
            producer: crate::kafka::producer(&cfg).unwrap(),
            cfg: Arc::new(cfg),
            snapshots: Snapshots::new(Storage::memory(), HashMap::new()),
            metadata: MetadataStore::default(),
            metrics: PublishMetrics::register(&ctx.metrics),
            changed: Arc::new(Notify::new()),
            metadata_edit: Arc::default(),
            exports: Arc::new(tokio::sync::Semaphore::new(1)),
        };
        let app = router(state).merge(spectra_core::admin::router(ctx.admin_state()));
        let addr = spectra_core::admin::serve("127.0.0.1:0", app, ctx.shutdown.clone())
            .await
            .unwrap();
        (format!("http://{addr}"), ctx.shutdown)
    }

    async fn status(req: reqwest::RequestBuilder) -> StatusCode {
        req.send().await.unwrap().status()
    }

    #[tokio::test]
    async fn read_token_guards_the_api_and_exports_but_not_the_console_or_admin() {
        let (base, stop) = serve("r3ad").await;
        let c = reqwest::Client::new();
        let reads = [
            "/api/segmentations",
            "/api/pipeline",
            "/api/outlets?q=x",
            "/api/segmentations/mix/segments",
            "/api/segmentations/mix/export.csv",
            "/api/segmentations/mix/export.xlsx",
        ];
        for path in reads {
            let url = format!("{base}{path}");
            let r = c.get(&url).send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{path} without a token"
            );
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            assert_eq!(
                status(c.get(&url).bearer_auth("wrong")).await,
                StatusCode::UNAUTHORIZED,
                "{path} with a wrong token"
            );
            if path == "/api/pipeline" {
                continue; // past the guard it asks the broker, which this test has not
            }
            for good in ["Bearer r3ad", "bearer r3ad", "BEARER wr1te"] {
                let s = status(c.get(&url).header("authorization", good)).await;
                assert!(
                    s == StatusCode::OK || s == StatusCode::NOT_FOUND,
                    "{path} with `{good}`: {s}"
                );
            }
        }
        for open in [
            "/",
            "/console/app.js",
            "/console/style.css",
            "/healthz",
            "/metrics",
        ] {
            assert_eq!(
                status(c.get(format!("{base}{open}"))).await,
                StatusCode::OK,
                "{open} stays open"
            );
        }
        // Writing takes the write token only.
        let put = |t: &str| {
            c.put(format!("{base}/api/segmentations/mix/segments/S1"))
                .bearer_auth(t)
                .json(&json!({"name": "x"}))
        };
        assert_eq!(status(put("r3ad")).await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(put("wr1te")).await,
            StatusCode::NOT_FOUND,
            "no run yet"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn without_a_read_token_reads_are_open() {
        let (base, stop) = serve("").await;
        let r = reqwest::get(format!("{base}/api/segmentations"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        stop.cancel();
    }

    #[tokio::test]
    async fn security_headers_on_every_response_and_a_body_limit() {
        let (base, stop) = serve("").await;
        let c = reqwest::Client::new();
        for path in ["/", "/console/app.js", "/api/segmentations", "/nope"] {
            let r = c.get(format!("{base}{path}")).send().await.unwrap();
            let h = r.headers();
            assert_eq!(
                h["content-security-policy"],
                guard::CONTENT_SECURITY_POLICY,
                "{path}"
            );
            assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(h["x-frame-options"], "DENY", "{path}");
        }
        let big = json!({"name": "x", "description": "d".repeat(5000)});
        let r = c
            .put(format!("{base}/api/segmentations/mix/segments/S1"))
            .bearer_auth("wr1te")
            .json(&big)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        stop.cancel();
    }
}
