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

/// One segmentation that failed in a pass or cycle while the others went on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentationFailure {
    /// The segmentation.
    pub segmentation: String,
    /// What went wrong (a panic's message included).
    pub error: String,
}

impl std::fmt::Display for SegmentationFailure {
    /// `segmentation `name`: error`, the name once (many errors name it already).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let own = format!("segmentation `{}`: ", self.segmentation);
        if self.error.starts_with(&own) {
            f.write_str(&self.error)
        } else {
            write!(f, "{own}{}", self.error)
        }
    }
}

/// Awaits `work`, turning a panic inside it into `Err(message)`: one segmentation's
/// bug must not take the others down with it.
pub async fn catch_panic<T>(work: impl std::future::Future<Output = T>) -> Result<T, String> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|p| panic_message(p.as_ref()))
}

/// The text of a panic payload, as [`catch_panic`] reports it.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    format!(
        "panicked: {} (a bug; the other segmentations went on)",
        panic_text(p)
    )
}

/// What a panic payload says.
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_and_the_caller_goes_on() {
        assert_eq!(catch_panic(async { 7 }).await, Ok(7));
        let e = catch_panic(async {
            if std::hint::black_box(true) {
                panic!("boom in `mix`");
            }
        })
        .await
        .unwrap_err();
        assert!(e.contains("boom in `mix`") && e.contains("a bug"), "{e}");
        let f = SegmentationFailure {
            segmentation: "mix".into(),
            error: e,
        };
        assert!(f
            .to_string()
            .starts_with("segmentation `mix`: panicked: boom"));
        // An error that names its segmentation is not prefixed twice.
        let named = SegmentationFailure {
            segmentation: "mix".into(),
            error: "segmentation `mix`: 3 outlets pass min_value".into(),
        };
        assert_eq!(
            named.to_string(),
            "segmentation `mix`: 3 outlets pass min_value"
        );
    }
}
