//! The export endpoints (`export.csv`, `export.xlsx`), streamed: the file is written on
//! a blocking thread into a channel of a few chunks that the response body drains, so
//! a million outlets cost those chunks in memory, not the whole file. At most
//! `publish.max_concurrent_exports` are written at once; a client that takes nothing
//! for `publish.request_timeout_seconds`, or leaves, stops its export.

use std::io::{self, BufWriter, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::{snapshot, ApiError, ApiResult, AppState};
use crate::export::{segments, write_csv, write_xlsx, ExportRows};
use crate::Error;

pub(super) async fn export_csv(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let snap = snapshot(&s, &name).await?;
    let metadata = s.metadata.clone();
    streamed(
        &s,
        "text/csv; charset=utf-8",
        &format!("{name}.csv"),
        move |out, _| write_csv(ExportRows::new(&snap, &metadata).iter(), out),
    )
    .await
}

pub(super) async fn export_xlsx(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let snap = snapshot(&s, &name).await?;
    let metadata = s.metadata.clone();
    streamed(
        &s,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        &format!("{name}.xlsx"),
        move |out, stopped| {
            let rows = ExportRows::new(&snap, &metadata);
            write_xlsx(
                rows.iter(),
                &segments(&snap, &metadata),
                &name,
                out,
                stopped,
            )
        },
    )
    .await
}

/// Chunks in flight between the writer and the client.
const CHUNKS: usize = 4;

/// Bytes a chunk holds.
const CHUNK_BYTES: usize = 1 << 16;

/// An attachment whose body `write` makes on a blocking thread, in one of the export
/// slots; `write` may ask whether the client is gone (the XLSX sheets are written
/// before any byte goes out). The response waits for the first bytes, so a failure before them is an
/// HTTP error; a failure after them ends the body with an error, so the client sees a
/// broken download rather than a short file that looks whole.
async fn streamed(
    s: &AppState,
    content_type: &'static str,
    file: &str,
    write: impl FnOnce(&mut BufWriter<ChunkSender>, &dyn Fn() -> bool) -> Result<(), Error>
        + Send
        + 'static,
) -> ApiResult<Response> {
    let slot = s.exports.clone().acquire_owned().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
    })?;
    let wait = Duration::from_secs(s.cfg.publish.request_timeout_seconds.max(1));
    let (tx, mut rx) = mpsc::channel(CHUNKS);
    let sender = ChunkSender {
        tx: tx.clone(),
        rt: Handle::current(),
        wait,
    };
    let file_name = file.to_owned();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let stopped = || tx.is_closed();
        let mut out = BufWriter::with_capacity(CHUNK_BYTES, sender);
        let done = catch_unwind(AssertUnwindSafe(|| {
            write(&mut out, &stopped)
                .and_then(|()| out.flush().map_err(|e| Error::Io(e.to_string())))
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            Err(Error::Export(format!("the export failed: {what}")))
        });
        if let Err(e) = done {
            // What is still buffered is not sent after the error.
            let (sender, _) = out.into_parts();
            tracing::warn!(file = %file_name, error = %e, "export stopped");
            let failed = io::Error::other(e.to_string());
            let _ = sender
                .rt
                .block_on(tokio::time::timeout(wait, tx.send(Err(failed))));
        }
    });
    let first = match rx.recv().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the export of {file} failed: {e}"),
            ))
        }
        None => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the export of {file} ended without a byte"),
            ))
        }
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let body = Body::from_stream(futures::stream::once(async { Ok(first) }).chain(rest));
    let disposition = format!("attachment; filename=\"{}\"", file.replace('"', ""));
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// The writing end of a streamed body: each write waits for room in the channel, at
/// most `wait`; it fails once the client is gone or has taken nothing for that long,
/// which stops the export.
pub(super) struct ChunkSender {
    tx: mpsc::Sender<io::Result<Bytes>>,
    rt: Handle,
    wait: Duration,
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let chunk = Ok(Bytes::copy_from_slice(buf));
        match self
            .rt
            .block_on(tokio::time::timeout(self.wait, self.tx.send(chunk)))
        {
            Ok(Ok(())) => Ok(buf.len()),
            Ok(Err(_)) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the client left")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took nothing for {} s", self.wait.as_secs()),
            )),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
