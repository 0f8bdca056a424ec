//! The export endpoints (`export.csv`, `export.xlsx`), streamed: the file is written on
//! a blocking thread into a channel of a few chunks that the response body drains, so
//! a million outlets cost those chunks in memory, not the whole file. At most
//! `publish.max_concurrent_exports` are written at once; a client that takes nothing
//! for `publish.request_timeout_seconds`, or leaves, stops its export.

use std::io::{self, BufWriter, Write};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::{snapshot, ApiError, ApiResult, AppState};
use crate::export::{segments, write_csv, write_or_fail, write_xlsx, ExportRows};
use crate::Error;

const CSV: &str = "text/csv; charset=utf-8";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

pub(super) async fn export_csv(
    State(s): State<AppState>,
    method: Method,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let snap = snapshot(&s, &name).await?;
    let file = format!("{name}.csv");
    if method == Method::HEAD {
        return Ok(attachment(CSV, &file, Body::empty()));
    }
    let metadata = s.metadata.clone();
    streamed(&s, CSV, &file, move |out, _| {
        write_csv(ExportRows::new(&snap, &metadata).iter(), out)
    })
    .await
}

pub(super) async fn export_xlsx(
    State(s): State<AppState>,
    method: Method,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let snap = snapshot(&s, &name).await?;
    let file = format!("{name}.xlsx");
    if method == Method::HEAD {
        return Ok(attachment(XLSX, &file, Body::empty()));
    }
    let metadata = s.metadata.clone();
    streamed(&s, XLSX, &file, move |out, stopped| {
        let rows = ExportRows::new(&snap, &metadata);
        let segments = segments(&snap, &metadata);
        write_xlsx(rows.iter(), &segments, &name, out, stopped)
    })
    .await
}

/// Chunks in flight between the writer and the client.
const CHUNKS: usize = 4;

/// Bytes a chunk holds.
const CHUNK_BYTES: usize = 1 << 16;

/// An attachment whose body `write` makes on a blocking thread, in one of the export
/// slots; `write` may ask whether the client is gone (the XLSX sheets are written
/// before any byte goes out). The response waits for the first bytes (a slot, then
/// the XLSX's sheets: both within the request's timeout), so a failure before them is
/// an HTTP error. After them the body ends only with the writer's outcome: a failure,
/// a panic included, ends it with an error, so the client sees a broken download
/// rather than a short file that looks whole.
async fn streamed(
    s: &AppState,
    content_type: &'static str,
    file: &str,
    write: impl FnOnce(&mut BufWriter<ChunkSender>, &dyn Fn() -> bool) -> Result<(), Error>
        + Send
        + 'static,
) -> ApiResult<Response> {
    let slot = s
        .exports
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "exports are closed"))?;
    let (tx, mut rx) = mpsc::channel(CHUNKS);
    let (outcome, outcome_rx) = oneshot::channel::<Result<(), String>>();
    let sender = ChunkSender {
        tx: tx.clone(),
        rt: Handle::current(),
        wait: Duration::from_secs(s.cfg.publish.request_timeout_seconds.max(1)),
    };
    let file_name = file.to_owned();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let stopped = || tx.is_closed();
        let mut out = BufWriter::with_capacity(CHUNK_BYTES, sender);
        let done = write_or_fail(|| {
            write(&mut out, &stopped)
                .and_then(|()| out.flush().map_err(|e| Error::Io(e.to_string())))
        });
        // What is still buffered after a failure is not sent.
        drop(out.into_parts());
        if let Err(e) = &done {
            tracing::warn!(file = %file_name, error = %e, "export stopped");
        }
        let _ = outcome.send(done.map_err(|e| e.to_string()));
    });
    let first = match rx.recv().await {
        Some(chunk) => chunk,
        None => {
            let why = match outcome_rx.await {
                Ok(Err(e)) => e,
                _ => "it ended without a byte".to_owned(),
            };
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the export of {file} failed: {why}"),
            ));
        }
    };
    // Every chunk, then the outcome: the body ends cleanly only when the writer did.
    let rest = futures::stream::unfold((rx, Some(outcome_rx)), |(mut rx, outcome)| async move {
        if let Some(chunk) = rx.recv().await {
            return Some((Ok(chunk), (rx, outcome)));
        }
        let failed = match outcome?.await {
            Ok(Ok(())) => return None,
            Ok(Err(e)) => e,
            Err(_) => "the export stopped".to_owned(),
        };
        Some((Err(io::Error::other(failed)), (rx, None)))
    });
    let body = futures::stream::once(async { Ok::<_, io::Error>(first) }).chain(rest);
    Ok(attachment(content_type, file, Body::from_stream(body)))
}

fn attachment(content_type: &'static str, file: &str, body: Body) -> Response {
    let disposition = format!("attachment; filename=\"{}\"", file.replace('"', ""));
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// The writing end of a streamed body: each write waits for room in the channel, at
/// most `wait`; it fails once the client is gone or has taken nothing for that long,
/// which stops the export.
pub(super) struct ChunkSender {
    tx: mpsc::Sender<Bytes>,
    rt: Handle,
    wait: Duration,
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let chunk = Bytes::copy_from_slice(buf);
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
