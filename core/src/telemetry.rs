//! Logs (plain or JSON, via tracing) and the Prometheus metrics registry shared by every
//! service running in a process.

use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Starts logging to stderr; `format` is `plain` or `json`. Safe to call twice (the
/// second call is ignored), so tests and the demo can share a process.
pub fn init_logging(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if cfg.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The process's metrics registry; services register their metrics at start-up and the
/// admin server encodes it on every scrape.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    /// A registry whose metrics all carry the `spectra_` prefix.
    pub fn new() -> Self {
        Self {
            registry: Arc::new(Mutex::new(Registry::with_prefix("spectra"))),
        }
    }

    /// Locks the registry to register metrics or encode them.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The registry in Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }
}
