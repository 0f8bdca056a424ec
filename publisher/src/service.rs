//! The publish service: topics checked, names loaded from `segment-metadata`, the HTTP
//! server started on `publish.listen`, then a cycle per segmentation every
//! `publish.poll_seconds` (and at once when a name or tag changes) until shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use spectra_core::kafka::{check_compacted, ensure_topics, Retention};
use spectra_core::service::{catch_panic, Context, SegmentationFailure};
use spectra_core::{Config, Storage};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::cycle::{CycleEnv, CycleReport};
use crate::metadata::MetadataStore;
use crate::metrics::{PublishMetrics, SegmentationLabels};
use crate::snapshot::Snapshots;
use crate::Error;

/// How `run` behaves.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// One cycle per segmentation, then return (no HTTP server).
    pub once: bool,
    /// Instead of a cycle: read each output topic's compacted view, repair every key
    /// that differs from the accepted run, record the state, then return (implies
    /// `once`).
    pub reconcile: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Cycles run (one segmentation each).
    pub cycles: u64,
    /// Messages acknowledged.
    pub messages: u64,
    /// The last cycle of each segmentation.
    pub segmentations: Vec<CycleReport>,
    /// Segmentations whose last cycle failed (the others were published).
    pub failures: Vec<SegmentationFailure>,
}

/// A started publish service.
pub struct Service {
    addr: Option<SocketAddr>,
    task: tokio::task::JoinHandle<Result<Summary, Error>>,
}

impl Service {
    /// The HTTP server's address (`None` with `once`).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Waits for the service to stop (shutdown, or the end of a `once` run).
    pub async fn wait(self) -> Result<Summary, Error> {
        self.task
            .await
            .map_err(|e| Error::Io(format!("publish loop panicked: {e}")))?
    }
}

fn max_change_shares(cfg: &Config) -> HashMap<String, f64> {
    cfg.segmentation
        .iter()
        .map(|s| (s.name.clone(), s.max_change_share))
        .collect()
}

fn windows(cfg: &Config) -> HashMap<String, u32> {
    cfg.segmentation
        .iter()
        .map(|s| (s.name.clone(), s.window_days))
        .collect()
}

/// The segmentations to publish ([`crate::tables::published`]); `snapshots` takes
/// their current windows and circuit-breaker shares.
async fn segmentation_names(
    cfg: &Config,
    storage: &Storage,
    snapshots: &Snapshots,
) -> Result<Vec<String>, Error> {
    spectra_core::tables::definitions::seed(storage, cfg).await?;
    let listed = crate::tables::published(cfg, storage).await?;
    snapshots.set_definitions(listed.iter().filter_map(|(_, d)| d.as_ref()));
    Ok(listed.into_iter().map(|(n, _)| n).collect())
}

/// Loads `segment-metadata` to its end; the feed keeps tailing until `shutdown`.
async fn load_metadata(
    cfg: &Config,
    store: &MetadataStore,
    changed: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let rx = crate::kafka::spawn_metadata_feed(cfg, store.clone(), changed, shutdown)?;
    match tokio::time::timeout(Duration::from_secs(120), rx).await {
        Ok(Ok(r)) => r.map(|_| ()),
        Ok(Err(_)) => Err(Error::Io(
            "the segment-metadata feed stopped before loading".into(),
        )),
        Err(_) => Err(Error::Io(format!(
            "reading topic `{}` to its end took over 120 s; is the broker at `{}` reachable?",
            cfg.kafka.topics.metadata, cfg.kafka.brokers
        ))),
    }
}

/// Starts the service: checks the topics, loads the names, starts the HTTP server
/// (unless `once`) and the publish loop.
pub async fn start(cfg: Config, ctx: Context, opts: PublishOptions) -> Result<Service, Error> {
    let storage = Storage::from_url(&cfg.storage.url)?;
    // The config file's definitions are stored before the API answers (its reads do
    // not seed; every publish cycle seeds again).
    spectra_core::tables::definitions::seed(&storage, &cfg).await?;
    let t = &cfg.kafka.topics;
    ensure_topics(
        &cfg,
        &[
            (t.assignments.as_str(), Retention::Compact),
            (t.profiles.as_str(), Retention::Compact),
            (t.recommendations.as_str(), Retention::Compact),
            (t.metadata.as_str(), Retention::Compact),
        ],
    )
    .await?;
    // Output topics must keep the last value per key for good.
    if cfg.publish.require_compacted_topics {
        let outputs = [&t.assignments, &t.profiles, &t.recommendations, &t.metadata];
        check_compacted(&cfg, &outputs.map(String::as_str)).await?;
    } else {
        tracing::warn!("publish.require_compacted_topics is off: the output topics' cleanup.policy is not checked");
    }
    let metrics = PublishMetrics::register(&ctx.metrics);
    ctx.health.register("publish");
    let metadata = MetadataStore::default();
    let changed = Arc::new(Notify::new());
    load_metadata(&cfg, &metadata, changed.clone(), ctx.shutdown.clone()).await?;
    let producer = crate::kafka::producer(&cfg)?;
    let snapshots = Snapshots::new(storage.clone(), windows(&cfg))
        .with_max_change_shares(max_change_shares(&cfg));
    let cfg = Arc::new(cfg);
    let mut addr = None;
    if !opts.once && !opts.reconcile {
        let state = AppState {
            cfg: cfg.clone(),
            snapshots: snapshots.clone(),
            metadata: metadata.clone(),
            producer: producer.clone(),
            metrics: metrics.clone(),
            changed: changed.clone(),
            metadata_edit: Arc::default(),
            exports: Arc::new(tokio::sync::Semaphore::new(
                cfg.publish.max_concurrent_exports.max(1),
            )),
        };
        let router =
            crate::api::router(state).merge(spectra_core::admin::router(ctx.admin_state()));
        let a = spectra_core::admin::serve(&cfg.publish.listen, router, ctx.shutdown.clone())
            .await
            .map_err(|e| Error::Io(e.to_string()))?;
        tracing::info!(%a, "publish: console, API and admin routes");
        addr = Some(a);
    }
    ctx.health.set_ready("publish", true);
    let task = tokio::spawn(async move {
        let mut summary = Summary::default();
        let env = CycleEnv {
            cfg: &cfg,
            snapshots: &snapshots,
            metadata: &metadata,
            producer: &producer,
            metrics: &metrics,
        };
        let poll = Duration::from_secs(cfg.publish.poll_seconds.max(1));
        loop {
            let mut reports = Vec::new();
            summary.failures.clear();
            for name in segmentation_names(&cfg, &storage, &snapshots).await? {
                // One segmentation's error or panic never stops the others.
                let step = async {
                    if opts.reconcile {
                        crate::cycle::reconcile(&env, &name).await
                    } else {
                        crate::cycle::publish(&env, &name).await
                    }
                };
                let cycle = match catch_panic(step).await {
                    Ok(r) => r,
                    Err(message) => Err(Error::Io(format!("publish cycle {message}"))),
                };
                match cycle {
                    Ok(r) => {
                        summary.cycles += 1;
                        summary.messages +=
                            r.assignments.values().sum::<u64>() + r.profiles + r.recommendations;
                        reports.push(r);
                    }
                    Err(e) => {
                        metrics
                            .cycle_errors
                            .get_or_create(&SegmentationLabels {
                                segmentation: name.clone(),
                            })
                            .inc();
                        tracing::error!(segmentation = %name, error = %e, "publish cycle failed; the others go on, this one is retried at the next poll");
                        summary.failures.push(SegmentationFailure {
                            segmentation: name.clone(),
                            error: e.to_string(),
                        });
                    }
                }
            }
            summary.segmentations = reports;
            if opts.once || opts.reconcile {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = changed.notified() => {}
                _ = ctx.shutdown.cancelled() => break,
            }
        }
        ctx.health.set_ready("publish", false);
        Ok(summary)
    });
    Ok(Service { addr, task })
}

/// Runs the publish service until shutdown (or one cycle, with `once`).
pub async fn run(cfg: Config, ctx: Context, opts: PublishOptions) -> Result<Summary, Error> {
    let once = opts.once || opts.reconcile;
    let token = ctx.shutdown.clone();
    let r = start(cfg, ctx, opts).await?.wait().await;
    if once {
        // Stops the metadata feed.
        token.cancel();
    }
    r
}

/// What `spectra export` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// The file.
    pub path: PathBuf,
    /// The run exported.
    pub run_id: String,
    /// Rows (outlets).
    pub rows: usize,
    /// Sum of `value`.
    pub value: f64,
}

/// Writes a segmentation's latest run to `out` as `csv` or `xlsx`, with the names and
/// tags read from `segment-metadata`.
pub async fn export_file(
    cfg: &Config,
    segmentation: &str,
    format: &str,
    out: &Path,
) -> Result<ExportSummary, Error> {
    if !matches!(format, "csv" | "xlsx") {
        return Err(Error::Export(format!(
            "format `{format}` is not one of csv, xlsx"
        )));
    }
    let storage = Storage::from_url(&cfg.storage.url)?;
    let metadata = MetadataStore::default();
    let stop = CancellationToken::new();
    let loaded = load_metadata(cfg, &metadata, Arc::new(Notify::new()), stop.clone()).await;
    stop.cancel();
    loaded?;
    let snapshots =
        Snapshots::new(storage, windows(cfg)).with_max_change_shares(max_change_shares(cfg));
    let snap = snapshots
        .get(segmentation)
        .await?
        .ok_or_else(|| Error::NoRun(segmentation.to_owned()))?;
    let rows = crate::export::ExportRows::new(&snap, &metadata);
    let segments = crate::export::segments(&snap, &metadata);
    let mut value = 0.0;
    write_file(out, |file| {
        let written = rows.iter().inspect(|r| value += r.value);
        match format {
            "csv" => crate::export::write_csv(written, file),
            _ => crate::export::write_xlsx(written, &segments, segmentation, file, &|| false),
        }
    })?;
    Ok(ExportSummary {
        path: out.to_owned(),
        run_id: snap.run.latest.run_id.clone(),
        rows: rows.len(),
        value,
    })
}

/// Writes `out` with `write`. A regular file (or a new one) is written beside itself
/// (`.NAME.PID.partial`) and renamed into place once whole, with the permissions of the
/// file it replaces: a failure, a panic included, leaves no half file. Anything else
/// (`/dev/stdout`, a pipe, a symbolic link) is written in place.
fn write_file(
    out: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<(), Error>,
) -> Result<(), Error> {
    let cannot = |e: std::io::Error| Error::Io(format!("cannot write `{}`: {e}", out.display()));
    let existing = std::fs::symlink_metadata(out).ok();
    let in_place = existing.as_ref().is_some_and(|m| !m.file_type().is_file());
    let partial = match in_place {
        true => out.to_owned(),
        false => out.with_file_name(format!(
            ".{}.{}.partial",
            out.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        )),
    };
    let file = std::fs::File::create(&partial).map_err(cannot)?;
    let mut file = std::io::BufWriter::with_capacity(1 << 16, file);
    let done = crate::export::write_or_fail(|| write(&mut file)).and_then(|()| {
        let file = file.into_inner().map_err(|e| cannot(e.into_error()))?;
        if in_place {
            return Ok(());
        }
        file.sync_all().map_err(cannot)?;
        if let Some(m) = &existing {
            std::fs::set_permissions(&partial, m.permissions()).map_err(cannot)?;
        }
        std::fs::rename(&partial, out).map_err(cannot)
    });
    if done.is_err() && !in_place {
        let _ = std::fs::remove_file(&partial);
    }
    done
}
