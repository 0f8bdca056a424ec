//! The admin HTTP server every service starts: `/healthz` (liveness), `/readyz`
//! (readiness: 503 until every component of the process says it is ready) and
//! `/metrics` (Prometheus text).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::telemetry::Metrics;

/// Readiness of the components running in this process.
#[derive(Clone, Default)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Health {
    /// Registers a component as not ready yet.
    pub fn register(&self, name: &str) {
        self.lock().insert(name.to_owned(), false);
    }

    /// Sets a component's readiness.
    pub fn set_ready(&self, name: &str, ready: bool) {
        self.lock().insert(name.to_owned(), ready);
    }

    /// True when at least one component is registered and all are ready.
    pub fn is_ready(&self) -> bool {
        let c = self.lock();
        !c.is_empty() && c.values().all(|r| *r)
    }

    /// Each component's readiness.
    pub fn snapshot(&self) -> BTreeMap<String, bool> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        self.components.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the admin routes serve from.
#[derive(Clone, Default)]
pub struct AdminState {
    /// The process's metrics.
    pub metrics: Metrics,
    /// The process's readiness.
    pub health: Health,
}

/// The three admin routes, to serve alone or merge into a larger router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let code = if s.health.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(s.health.snapshot()))
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// Serves `router` on `listen` until `shutdown` is cancelled; returns the bound address.
pub async fn serve(
    listen: &str,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on `{listen}`: {e}")))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let r = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_all_components_are() {
        let h = Health::default();
        assert!(!h.is_ready());
        h.register("ingest");
        h.register("publish");
        h.set_ready("ingest", true);
        assert!(!h.is_ready());
        h.set_ready("publish", true);
        assert!(h.is_ready());
    }
}
