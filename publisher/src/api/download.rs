//! The export endpoints (`export.csv`, `export.xlsx`), streamed: the file is written on
//! a blocking thread into a channel of a few chunks that the response body drains, so
//! a million outlets cost those chunks in memory, not the whole file; a slow client
//! holds the writer back, a client that leaves stops it.

use std::io::{self, BufWriter, Write};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::{snapshot, ApiResult, AppState};
use crate::export::{segments, write_csv, write_xlsx, ExportRows};
use crate::Error;

pub(super) async fn export_csv(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let snap = snapshot(&s, &name).await?;
    let metadata = s.metadata.clone();
    Ok(streamed(
        "text/csv; charset=utf-8",
        &format!("{name}.csv"),
        move |out| write_csv(ExportRows::new(&snap, &metadata).iter(), out),
    ))
}

pub(super) async fn export_xlsx(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let snap = snapshot(&s, &name).await?;
    let metadata = s.metadata.clone();
    Ok(streamed(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        &format!("{name}.xlsx"),
        move |out| {
            let rows = ExportRows::new(&snap, &metadata);
            write_xlsx(rows.iter(), &segments(&snap, &metadata), &name, out)
        },
    ))
}

/// Chunks in flight between the writer and the client.
const CHUNKS: usize = 4;

/// Bytes a chunk holds.
const CHUNK_BYTES: usize = 1 << 16;

/// An attachment whose body `write` makes on a blocking thread. A failure half way
/// ends the body with an error, so the client sees a broken download rather than a
/// short file that looks whole.
fn streamed<F>(content_type: &'static str, file: &str, write: F) -> Response
where
    F: FnOnce(&mut BufWriter<ChunkSender>) -> Result<(), Error> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHUNKS);
    let failed = tx.clone();
    let file_name = file.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut out = BufWriter::with_capacity(CHUNK_BYTES, ChunkSender(tx));
        let done = write(&mut out).and_then(|()| out.flush().map_err(|e| Error::Io(e.to_string())));
        if let Err(e) = done {
            tracing::warn!(file = %file_name, error = %e, "export stopped");
            let _ = failed.blocking_send(Err(io::Error::other(e.to_string())));
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
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

/// The writing end of a streamed body: each write waits for room in the channel; once
/// the client is gone it fails, which stops the export.
pub(super) struct ChunkSender(mpsc::Sender<io::Result<Bytes>>);

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client left"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
