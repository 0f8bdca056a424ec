//! The `spectra segment` service: which segmentations are due, one run of one
//! segmentation end to end, and the loop.
//!
//! Schedule (`schedule`, read in `timezone`; see [`spectra_core::schedule`]): a
//! segmentation is due when its current features (`current.json` and the folder's
//! manifest, see [`crate::features::current`]) are not the ones its latest run read —
//! another as-of date, or the same date with another `content_hash` (late or corrected
//! lines) — and
//! - `daily`: the as-of date changed (newer, or earlier after the data was corrected),
//!   so one run per change of the as-of date whatever the poll interval; a correction
//!   of the same date runs at the next local midnight;
//! - a cron expression: the schedule fired since the latest run (and, in service mode,
//!   since the service last looked at a fire). The first run of a segmentation does not
//!   wait for a fire.
//!
//! With `once` the due segmentations run and the command returns; with `all` as well,
//! every segmentation with features runs, due or not. The time comes from
//! [`SegmentOptions::clock`] (the system clock by default).
//!
//! Circuit breaker: a run is compared with the accepted run it started from; when it
//! would move or drop more than `max_change_share` of that run's outlets it is written
//! but held (`latest.json` `held`), and the publisher leaves it alone until it is
//! released (see `spectra_core::hold`).
//!
//! Isolation: one segmentation's error or panic is recorded and the others run; with
//! `once`, [`Summary::failures`] lists them all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use spectra_core::config::SegmentationConfig;
use spectra_core::schedule::{system_clock, Clock, Schedule};
use spectra_core::service::Context;
use spectra_core::tables::definitions::{self, Active, DefinitionVersion};
use spectra_core::tables::features::{current_manifest, Manifest};
use spectra_core::tables::runs::Latest;
use spectra_core::tables::{layout, master, sku_gaps};
use spectra_core::{Config, Storage};

use spectra_core::hold::{decide, Hold};
use spectra_core::service::{catch_panic, panic_message, SegmentationFailure};

use crate::features::{Columns, FeatureSet};
use crate::metrics::SegmentMetrics;
use crate::pipeline::compute;
use crate::runs::{next_seq, read_previous, run_folder, write_run};
use crate::Error;

/// How [`run`] behaves.
#[derive(Debug, Clone, Default)]
pub struct SegmentOptions {
    /// Run every due segmentation once, then return.
    pub once: bool,
    /// With `once`: run every segmentation that has features, due or not.
    pub all: bool,
    /// Only this segmentation (it must be configured).
    pub segmentation: Option<String>,
    /// Where the time comes from (schedules, `ran_at`); the system clock when `None`.
    pub clock: Option<Arc<dyn Clock>>,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// `{name}/{as_of}/{seq}`.
    pub run_id: String,
    /// Segments in the model.
    pub segments: usize,
    /// Outlets assigned.
    pub outlets: usize,
    /// Outlets assigned for the first time.
    pub new: usize,
    /// Outlets that changed segment.
    pub moved: usize,
    /// Outlets that left the segmentation.
    pub left: usize,
    /// Segment ids created.
    pub created: Vec<String>,
    /// Segment ids retired.
    pub retired: Vec<String>,
    /// k-means inertia.
    pub inertia: f64,
    /// Sampled silhouette.
    pub silhouette: f64,
    /// Milliseconds from reading features to writing `latest.json`.
    pub duration_ms: u64,
    /// Set when the circuit breaker held the run (it is not published until released).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
}

/// What [`run`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Runs written, in order.
    pub runs: Vec<RunSummary>,
    /// Segmentations that were up to date (or had no features yet) in the last cycle.
    pub up_to_date: Vec<String>,
    /// Segmentations that failed in the last cycle (the others ran).
    pub failures: Vec<SegmentationFailure>,
}

/// The configured segmentations (the ones `--segmentation` picks), or every problem
/// with the configuration at once. The segmentations that run are the stored
/// definitions these seed ([`spectra_core::tables::definitions::active`]), so one
/// created through the API runs without being configured.
pub fn validate<'a>(
    cfg: &'a Config,
    opts: &SegmentOptions,
) -> Result<Vec<&'a SegmentationConfig>, Error> {
    let mut problems = Vec::new();
    let chosen: Vec<&SegmentationConfig> = cfg
        .segmentation
        .iter()
        .filter(|s| opts.segmentation.as_ref().is_none_or(|n| *n == s.name))
        .collect();
    for s in &chosen {
        if let Err(e) = Schedule::parse(&s.schedule, &s.timezone) {
            problems.push(format!("segmentation `{}`: {e}", s.name));
        }
    }
    if opts.all && !opts.once {
        problems.push("`all` runs every segmentation once; it needs `once`".into());
    }
    if problems.is_empty() {
        Ok(chosen)
    } else {
        Err(Error::Config(problems))
    }
}

/// The stored definitions that run (see [`validate`]), only `--segmentation`'s when
/// given; an unknown `--segmentation` or, with `once`, nothing at all is an error.
async fn active(
    storage: &Storage,
    cfg: &Config,
    opts: &SegmentOptions,
) -> Result<Vec<Active>, Error> {
    let all = definitions::active(storage, cfg).await?;
    let names: Vec<&str> = all.iter().map(Active::name).collect();
    if let Some(name) = &opts.segmentation {
        if !names.contains(&name.as_str()) {
            return Err(Error::Config(vec![format!(
                "--segmentation `{name}` is not configured (configured: {})",
                names.join(", ")
            )]));
        }
    } else if all.is_empty() && opts.once {
        return Err(Error::Config(vec![
            "no [[segmentation]] is configured or stored; add one to the --config file or create one through the API".into(),
        ]));
    }
    Ok(all
        .into_iter()
        .filter(|a| opts.segmentation.as_ref().is_none_or(|n| n == a.name()))
        .collect())
}

/// Whether a segmentation whose current features are `features` and latest run is
/// `latest` is due at `now` by `schedule` (the rules are in the module's docs).
/// `checked` is the latest fire the caller already looked at without running (service
/// mode): a change after it waits for the next fire.
pub fn is_due(
    schedule: &Schedule,
    features: &Manifest,
    latest: Option<&Latest>,
    checked: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    let Some(latest) = latest else {
        return true;
    };
    let new_date = latest.as_of != features.as_of;
    let new_content = matches!(
        (&latest.features_hash, &features.content_hash),
        (Some(a), Some(b)) if a != b
    );
    if !(new_date || new_content) {
        return false;
    }
    if new_date && schedule.is_daily() {
        return true;
    }
    let Some(fire) = schedule.last_fire(now) else {
        return false;
    };
    latest.ran_at.is_none_or(|r| r < fire) && checked.is_none_or(|c| c < fire)
}

/// The as-of date to run `seg` for at `now`, if it is due by `schedule` ([`is_due`])
/// or its definition changed since its latest run (an edit, a promotion: due at once);
/// with `all`, whenever it has features. Features rolled up for another definition
/// (the level, window or filter was just edited) are never run: the aggregator's next
/// pass rolls them up again.
pub async fn due(
    storage: &Storage,
    seg: &SegmentationConfig,
    schedule: &Schedule,
    checked: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    all: bool,
) -> Result<Option<NaiveDate>, Error> {
    let Some(features) = current_manifest(storage, &seg.name).await? else {
        return Ok(None);
    };
    if features
        .definition
        .as_ref()
        .is_some_and(|d| *d != seg.features_fingerprint())
    {
        tracing::info!(segmentation = %seg.name, as_of = %features.as_of,
            "features were rolled up for an earlier definition; waiting for the aggregator");
        return Ok(None);
    }
    let last = crate::runs::latest(storage, &seg.name).await?;
    let redefined = last
        .as_ref()
        .and_then(|l| l.definition_hash.as_ref())
        .is_some_and(|h| *h != seg.run_fingerprint());
    Ok(
        (all || redefined || is_due(schedule, &features, last.as_ref(), checked, now))
            .then_some(features.as_of),
    )
}

/// A task's result, or the run's failure when it panicked (or was cancelled).
fn joined<T>(segmentation: &str, r: Result<T, tokio::task::JoinError>) -> Result<T, Error> {
    r.map_err(|e| Error::Panicked {
        segmentation: segmentation.to_owned(),
        message: match e.try_into_panic() {
            Ok(p) => panic_message(p.as_ref()),
            Err(e) => e.to_string(),
        },
    })
}

/// `f`'s result and how long it took, in milliseconds.
fn timed<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_millis() as u64)
}

/// Runs `seg` on its features of `as_of`, from its latest run; writes the run folder
/// and then `latest.json`.
pub async fn run_segmentation(
    storage: &Storage,
    seg: &SegmentationConfig,
    as_of: NaiveDate,
    now: DateTime<Utc>,
) -> Result<RunSummary, Error> {
    run_definition(storage, seg, None, as_of, now).await
}

/// [`run_segmentation`] of a stored definition `version`. Its first run (while the
/// latest run is of another definition) applies what the version carries: after a
/// promotion it starts from the promoted draft's model, its ids matched to the live
/// segments ([`crate::runs::promoted_previous`]); after a merge or split by hand, from
/// the accepted model with the operation applied.
pub async fn run_definition(
    storage: &Storage,
    seg: &SegmentationConfig,
    version: Option<&DefinitionVersion>,
    as_of: NaiveDate,
    now: DateTime<Utc>,
) -> Result<RunSummary, Error> {
    let start = Instant::now();
    // The previous run is read on another worker while this one builds the feature
    // set (which decodes and places the window's rows without awaiting).
    let previous = {
        let (storage, name, share) = (storage.clone(), seg.name.clone(), seg.max_change_share);
        tokio::spawn(async move { read_previous(&storage, &name, share).await })
    };
    let (features, features_hash) =
        FeatureSet::read(storage, &seg.name, as_of, Columns::of(seg)).await?;
    let mut previous = joined(&seg.name, previous.await)??;
    let fingerprint = seg.run_fingerprint();
    let first_of_version = match version {
        Some(_) => crate::runs::latest(storage, &seg.name)
            .await?
            .is_none_or(|l| l.definition_hash.as_deref() != Some(fingerprint.as_str())),
        None => false,
    };
    if let (true, Some(v)) = (first_of_version, version) {
        if let Some(p) = &v.promoted_from {
            tracing::info!(segmentation = %seg.name, draft = %p.draft, draft_run = %p.run_id,
                "promotion: the run starts from the draft's segments");
            previous = Some(crate::runs::promoted_previous(storage, previous, &p.run_id).await?);
        }
        if let (Some(op), Some(prev)) = (&v.operation, previous.as_mut()) {
            tracing::info!(segmentation = %seg.name, operation = ?op, "segments restructured by hand");
            prev.operation = Some(op.clone());
        }
    }
    let seq = next_seq(storage, &seg.name, as_of).await?;
    let run_id = format!("{}/{as_of}/{seq}", seg.name);
    let owned = seg.clone();
    let id = run_id.clone();
    // The contexts' product levels come from the current SKU master.
    let skus = master::current(storage, layout::MASTER_SKUS, "sku_id").await?;
    let read_ms = start.elapsed().as_millis() as u64;
    // Contexts, SKU gaps and recommendations each read the assignments and the
    // features and nothing of each other: they run side by side once the assignments
    // are known (the recommendations, which stream the daily table, on a thread of
    // their own that drives their reads on this runtime).
    let runtime = tokio::runtime::Handle::current();
    let store = storage.clone();
    let window_days = seg.window_days;
    let ran = tokio::task::spawn_blocking(move || {
        let mut phases = [0u64; 5];
        let (out, compute_ms) = timed(|| compute(&owned, &features, previous.as_ref(), &id));
        phases[0] = compute_ms;
        let out = out.and_then(|mut out| {
            let (a, fs) = (&out.assignments, &features);
            let ((contexts, gaps, recommended), side_by_side_ms) = timed(|| {
                std::thread::scope(|s| {
                    let rec = s.spawn(|| {
                        timed(|| {
                            let run = crate::recommend::for_run(&store, as_of, a, fs, window_days);
                            runtime.block_on(run)
                        })
                    });
                    let contexts = timed(|| crate::context::for_assignments(fs, a, &skus));
                    let gaps = timed(|| crate::gaps::each_sku_gap(fs, a, sku_gaps::encode));
                    let rec = rec.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                    (contexts, gaps, rec)
                })
            });
            phases[1..].copy_from_slice(&[contexts.1, gaps.1, recommended.1, side_by_side_ms]);
            out.contexts = contexts.0;
            out.sku_gaps = gaps.0?;
            let (recommendations, report) = recommended.0?;
            out.recommendations = Some(recommendations);
            out.model.recommendations = Some(report);
            Ok(out)
        });
        (out, previous, features, phases)
    })
    .await;
    let (out, previous, features, phases) = joined(&seg.name, ran)?;
    let mut out = out?;
    let t = Instant::now();
    drop(features);
    out.model.quality.duration_ms = start.elapsed().as_millis() as u64;
    let q = &out.model.quality;
    out.model.hold = decide(
        previous.as_ref().map(|p| &p.pointer),
        previous.as_ref().map_or(0, |p| p.assignments.len()),
        q.outlets_moved,
        q.outlets_left,
        seg.max_change_share,
    );
    let folder = run_folder(&seg.name, as_of, seq);
    let (_, model) = write_run(
        storage,
        &seg.name,
        &folder,
        out,
        now,
        features_hash,
        fingerprint,
    )
    .await?;
    let [compute_ms, contexts_ms, sku_gaps_ms, recommend_ms, side_by_side_ms] = phases;
    tracing::info!(segmentation = %seg.name, read_ms, compute_ms, contexts_ms, sku_gaps_ms,
        recommend_ms, side_by_side_ms, write_ms = t.elapsed().as_millis() as u64, "run phases");
    let q = &model.quality;
    let summary = RunSummary {
        run_id,
        segments: model.segments.len(),
        outlets: q.outlets_assigned,
        new: q.outlets_new,
        moved: q.outlets_moved,
        left: q.outlets_left,
        created: model.created.clone(),
        retired: model.retired.clone(),
        inertia: q.inertia,
        silhouette: q.silhouette,
        duration_ms: start.elapsed().as_millis() as u64,
        held: model.hold.clone(),
    };
    if let Some(h) = &summary.held {
        tracing::warn!(run_id = %summary.run_id, baseline = %h.baseline.run_id,
            moved = h.moved, left = h.left, change_share = h.change_share,
            max_change_share = h.max_change_share,
            "run held by the circuit breaker: it is not published until released");
    }
    tracing::info!(
        run_id = %summary.run_id,
        segments = summary.segments,
        outlets = summary.outlets,
        new = summary.new,
        moved = summary.moved,
        left = summary.left,
        created = ?summary.created,
        retired = ?summary.retired,
        inertia = q.inertia,
        silhouette = q.silhouette,
        ari_previous = ?q.ari_previous,
        duration_ms = summary.duration_ms,
        "segmentation run written"
    );
    Ok(summary)
}

/// Runs the segment service until shutdown (or one pass over the due segmentations,
/// with `once`).
pub async fn run(cfg: Config, ctx: Context, opts: SegmentOptions) -> Result<Summary, Error> {
    validate(&cfg, &opts)?;
    let clock = opts.clock.clone().unwrap_or_else(system_clock);
    // Per segmentation, the latest fire looked at without running (nothing changed).
    let mut checked: HashMap<String, DateTime<Utc>> = HashMap::new();
    let storage = Storage::from_url(&cfg.storage.url)?;
    let metrics = SegmentMetrics::register(&ctx.metrics);
    let first = active(&storage, &cfg, &opts).await?;
    ctx.health.register("segment");
    ctx.health.set_ready("segment", true);
    let names: Vec<&str> = first.iter().map(Active::name).collect();
    names.iter().for_each(|n| metrics.known(n));
    tracing::info!(segmentations = ?names, once = opts.once, "segment started");
    let poll = Duration::from_secs(cfg.segment.poll_seconds.max(1));
    let mut summary = Summary::default();
    let mut segmentations = Some(first);
    loop {
        summary.up_to_date.clear();
        summary.failures.clear();
        // The definitions are read again every poll: an edit, a new draft or a
        // promotion through the API takes effect without a restart.
        let current = match segmentations.take() {
            Some(s) => s,
            None => match active(&storage, &cfg, &opts).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the segmentations' definitions; retried at the next poll");
                    Vec::new()
                }
            },
        };
        for a in &current {
            let seg = &a.definition;
            if ctx.shutdown.is_cancelled() {
                break;
            }
            metrics.known(&seg.name);
            let now = clock.now();
            let last_checked = checked.get(&seg.name).copied();
            let schedule = Schedule::parse(&seg.schedule, &seg.timezone)
                .map_err(|e| format!("segmentation `{}`: {e}", seg.name));
            let work = async {
                let schedule = schedule
                    .as_ref()
                    .map_err(|m| Error::Config(vec![m.clone()]))?;
                match due(&storage, seg, schedule, last_checked, now, opts.all).await? {
                    Some(as_of) => run_definition(&storage, seg, Some(&a.version), as_of, now)
                        .await
                        .map(Some),
                    None => Ok(None),
                }
            };
            let result = match catch_panic(work).await {
                Ok(r) => r,
                Err(message) => Err(Error::Panicked {
                    segmentation: seg.name.clone(),
                    message,
                }),
            };
            match result {
                Ok(Some(r)) => {
                    metrics.record(&seg.name, &r);
                    summary.runs.push(r);
                }
                Ok(None) => {
                    if let Some(fire) = schedule.as_ref().ok().and_then(|s| s.last_fire(now)) {
                        checked.insert(seg.name.clone(), fire);
                    }
                    summary.up_to_date.push(seg.name.clone());
                }
                Err(e) => {
                    metrics.failed(&seg.name);
                    tracing::error!(segmentation = %seg.name, error = %e,
                        "segmentation run failed; the others go on, this one is retried at the next poll");
                    summary.failures.push(SegmentationFailure {
                        segmentation: seg.name.clone(),
                        error: e.to_string(),
                    });
                }
            }
            // A release (through the publisher's API) or a configuration change clears
            // the hold: the gauge follows the stored documents.
            if let Ok(Some((_, held))) =
                crate::runs::accepted(&storage, &seg.name, seg.max_change_share).await
            {
                metrics.set_held(&seg.name, held.is_some());
            }
        }
        if opts.once {
            break;
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = tokio::time::sleep(poll) => {}
        }
    }
    ctx.health.set_ready("segment", false);
    tracing::info!(runs = summary.runs.len(), "segment stopped");
    Ok(summary)
}
