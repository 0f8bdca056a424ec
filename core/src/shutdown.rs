//! Graceful shutdown: the first SIGTERM or Ctrl-C cancels the token (services turn
//! readiness off, drain and commit what is durably written); a second one exits at once.

use tokio_util::sync::CancellationToken;

/// Exit code after a second signal.
pub const FORCED_EXIT_CODE: i32 = 130;

/// Installs the signal handlers and returns the token they cancel.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_signal().await;
        tracing::info!("shutdown requested: draining (send the signal again to exit at once)");
        t.cancel();
        wait_signal().await;
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(FORCED_EXIT_CODE);
    });
    token
}

async fn wait_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
