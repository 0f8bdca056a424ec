//! What every service's `run` entry receives besides its configuration.

use tokio_util::sync::CancellationToken;

use crate::admin::{AdminState, Health};
use crate::telemetry::Metrics;

/// The process-wide handles a service runs with.
#[derive(Clone)]
pub struct Context {
    /// Metrics registry (shared by the services of one process).
    pub metrics: Metrics,
    /// Readiness of the process's components.
    pub health: Health,
    /// Cancelled on SIGTERM: stop taking work, drain, commit, return.
    pub shutdown: CancellationToken,
}

impl Context {
    /// A context with a fresh registry and its own token.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            metrics: Metrics::new(),
            health: Health::default(),
            shutdown,
        }
    }

    /// The admin server's view of this context.
    pub fn admin_state(&self) -> AdminState {
        AdminState {
            metrics: self.metrics.clone(),
            health: self.health.clone(),
        }
    }
}
