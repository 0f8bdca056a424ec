//! One aggregation pass: list the raw files, absorb the new ones, re-roll the days
//! they touch, commit the state, then write every segmentation's window features.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use spectra_core::checkpoint;
use spectra_core::config::SegmentationConfig;
use spectra_core::service::{catch_panic, SegmentationFailure};
use spectra_core::tables::features::partitions;
use spectra_core::tables::{layout, rolling};
use spectra_core::{Config, Storage};

use crate::index::{self, IdentityIndex};
use crate::lease::{self, Lease};
use crate::metrics::{AggregateMetrics, SegmentationLabels};
use crate::state::{robust_as_of, AsOfRule, State, STATE_VERSION};
use crate::superseded::{Superseded, SUPERSEDED_PATH};
use crate::{absorb, days_of, features, master, rollup, session, AggregateOptions, Error};
use crate::{SegmentationSummary, Summary};

/// Raw Parquet read per re-roll query (whole days; at least one); bounds the memory of
/// a full rebuild. Raw lines take about 15 bytes each compressed and a hundred times
/// that once a query holds them: 16 MiB is about a million lines per query (128 MiB
/// made a first roll-up of 91 days at 100k outlets one query of 9M lines, 3.3 GiB).
const CHUNK_BYTES: u64 = 16 << 20;

/// The raw files by path (size), and the master files: what has landed so far.
pub(crate) async fn landed(storage: &Storage) -> Result<BTreeMap<String, u64>, Error> {
    let mut all = BTreeMap::new();
    for dir in ["raw/invoices/", "master/outlets/", "master/skus/"] {
        for o in storage.list(dir).await? {
            if o.path.ends_with(".parquet") {
                all.insert(o.path, o.size);
            }
        }
    }
    Ok(all)
}

/// Removes the daily files (`features/daily/`, `features/outlet_daily/`) of the days a
/// full rebuild did not roll up: days whose raw objects are all gone. The window
/// features read only the days `state.json` names, but the recommendations and the
/// 360 view list the files, so without this the lines whose loss the rebuild accepts
/// would still count there. Done before the rebuild commits: one that stops part-way
/// leaves a full rebuild to the next pass, which removes them then. Returns the days
/// removed (`YYYY-MM-DD`).
async fn remove_days_without_raw(
    storage: &Storage,
    state: &State,
    lease: &Lease,
) -> Result<Vec<String>, Error> {
    let mut removed = BTreeSet::new();
    for folder in [layout::DAILY, layout::OUTLET_DAILY] {
        for (date, path) in partitions(storage, folder).await? {
            let day = crate::date_text(days_of(date));
            if !state.days.contains_key(&day) {
                lease.check().await?;
                storage.delete(&path).await?;
                removed.insert(day);
            }
        }
    }
    if !removed.is_empty() {
        tracing::warn!(days = ?removed, "the full rebuild removed the daily files of days without raw objects");
    }
    Ok(removed.into_iter().collect())
}

/// The invoice date of a raw file from its Hive folder `date=YYYY-MM-DD`.
fn raw_date(path: &str) -> Option<i32> {
    let seg = path.split('/').find_map(|s| s.strip_prefix("date="))?;
    seg.parse().ok().map(days_of)
}

/// The error of a pass whose write of the daily tables' re-roll marker found another
/// pass's marker there (it was taken over: its write came late).
fn marker_fenced(what: &str) -> Error {
    Error::Fenced(format!(
        "cannot {what} `{}`: another pass wrote it since this pass read it",
        layout::DAILY_ROLLING
    ))
}

/// Takes the aggregator's lease ([`crate::lease`]): at once when it is free; when a
/// live pass holds it, `--once` waits up to the lease's TTL, the service does not wait
/// ([`Error::Busy`]: it retries at its next poll).
async fn acquire(cfg: &Config, storage: &Storage, opts: &AggregateOptions) -> Result<Lease, Error> {
    let ttl = std::time::Duration::from_secs(cfg.aggregate.lease_seconds.max(1));
    let owner = lease::owner_id();
    let deadline = Instant::now() + ttl;
    loop {
        match Lease::try_acquire(storage, &owner, ttl).await? {
            Ok(l) => return Ok(l),
            Err(holder) => {
                if !opts.once || Instant::now() >= deadline {
                    return Err(Error::Busy {
                        owner: holder.owner,
                        epoch: holder.epoch,
                        expires_at: holder.expires_at.to_rfc3339(),
                    });
                }
                tracing::info!(holder = %holder.owner, epoch = holder.epoch, "another aggregation pass holds the lease; waiting");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

/// Runs one pass (see the module docs) under the aggregator's lease.
pub async fn run_once(
    cfg: &Config,
    storage: &Storage,
    opts: &AggregateOptions,
    metrics: &AggregateMetrics,
) -> Result<Summary, Error> {
    let lease = acquire(cfg, storage, opts).await?;
    let keep = lease.keep_alive();
    let result = pass(cfg, storage, opts, metrics, &lease).await;
    keep.abort();
    lease.release().await;
    if let Err(Error::Fenced(why)) = &result {
        metrics.fenced.inc();
        tracing::error!(%why, "aggregation pass fenced: another pass took the lease over; nothing more of this pass lands");
    }
    result
}

async fn pass(
    cfg: &Config,
    storage: &Storage,
    opts: &AggregateOptions,
    metrics: &AggregateMetrics,
    lease: &Lease,
) -> Result<Summary, Error> {
    let started = Instant::now();
    let epoch = lease.epoch().await;
    // The stored definitions (the config file seeds them; the API edits them, and
    // opens drafts, which get features like any segmentation).
    let active: Vec<_> = spectra_core::tables::definitions::active(storage, cfg)
        .await?
        .into_iter()
        .map(|a| a.definition)
        .collect();
    let segmentations: Vec<_> = match &opts.segmentation {
        Some(name) => vec![active
            .into_iter()
            .find(|s| s.name == *name)
            .ok_or_else(|| Error::UnknownSegmentation(name.clone()))?],
        None => active,
    };
    let ctx = session::context(storage, cfg.aggregate.query_memory_mb)?;
    // The daily tables' re-roll marker as this pass finds it. Left set by a pass that
    // stopped part-way through moving lines between days, it is cleared once this pass
    // has committed: a stopped pass's files are new again to this one, whose re-roll
    // moves the same lines.
    let marker = rolling::load_marked(storage).await?;
    let (loaded, mut state_version) = State::load_versioned(storage).await?;
    let previous = if opts.full { None } else { loaded };
    let full = previous.is_none();
    let mut state = previous.unwrap_or_else(|| State {
        version: STATE_VERSION,
        ..State::default()
    });
    let mut raw: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut sizes = BTreeMap::new();
    for o in storage.list("raw/invoices/").await? {
        if let (true, Some(d)) = (o.path.ends_with(".parquet"), raw_date(&o.path)) {
            raw.entry(d).or_default().push(o.path.clone());
            sizes.insert(o.path, o.size);
        }
    }
    // Objects ingest has not committed (their batch's checkpoint has not landed, or
    // their writer stopped and the next owner deletes them and replays the lines) are
    // left out of everything this pass does, their days' re-rolls included: absorbed,
    // an uncommitted object would be held as missing once deleted, its lines counted
    // besides their replay's. A later pass takes them once committed.
    let deferred = checkpoint::uncommitted(
        storage,
        sizes
            .keys()
            .filter(|p| !state.files.contains_key(*p))
            .map(String::as_str),
    )
    .await?;
    if !deferred.is_empty() {
        sizes.retain(|p, _| !deferred.contains(p));
        raw.values_mut()
            .for_each(|files| files.retain(|p| !deferred.contains(p)));
        raw.retain(|_, files| !files.is_empty());
        tracing::info!(
            objects = deferred.len(),
            "raw objects ingest has not committed yet are left for a later pass"
        );
    }
    // Raw objects absorbed earlier and gone now (retention, a deletion): their days are
    // held as they are, never re-rolled from the remaining files, until a full rebuild.
    let gone: Vec<(String, u64)> = state
        .files
        .iter()
        .filter(|(p, _)| !sizes.contains_key(*p))
        .map(|(p, s)| (p.clone(), *s))
        .collect();
    if !gone.is_empty() {
        tracing::error!(
            objects = ?gone.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            "raw objects the aggregator rolled up are gone from raw/invoices/; their days are \
             kept as they are and not re-rolled without them; `spectra aggregate --once --full` \
             rebuilds from the raw data as it is now"
        );
    }
    let was_held: BTreeSet<i32> = state.missing.keys().filter_map(|p| raw_date(p)).collect();
    state.missing.extend(gone);
    // An object restored under its name is absorbed again (idempotent) and unheld.
    state.missing.retain(|p, _| !sizes.contains_key(p));
    let held: BTreeSet<i32> = state.missing.keys().filter_map(|p| raw_date(p)).collect();
    let new_files: Vec<String> = sizes
        .iter()
        .filter(|(p, s)| state.files.get(*p) != Some(s))
        .map(|(p, _)| p.clone())
        .collect();
    let mut summary = Summary {
        full,
        files_new: new_files.len() as u64,
        missing_raw_objects: state.missing.keys().cloned().collect(),
        missing_days: held.iter().map(|d| crate::date_text(*d)).collect(),
        deferred_raw_objects: deferred.into_iter().collect(),
        lease_epoch: epoch,
        ..Summary::default()
    };
    metrics.raw_missing_objects.set(state.missing.len() as i64);

    let mut begun = None;
    if full {
        lease.check().await?;
        // The rebuild removes the index and the superseded lines the committed state
        // names. First the state says that a rebuild is under way (a document of no
        // format version, which every reader takes as none), so a pass that stops
        // part-way leaves the next pass a full rebuild, never a state whose index and
        // superseded lines are gone (its moved lines would count twice).
        let rebuilding = State {
            version: 0,
            ..State::default()
        };
        state_version = Some(rebuilding.commit(storage, state_version).await?);
        index::remove_all(storage).await?;
        storage.delete(SUPERSEDED_PATH).await?;
        state.days.clear();
        state.duplicated.clear();
    }
    if !new_files.is_empty() || full {
        let mut idx = if full {
            IdentityIndex::empty(storage.clone())
        } else {
            IdentityIndex::open(storage.clone(), state.index.clone()).await?
        };
        idx.set_epoch(epoch);
        let mut superseded = if full {
            Superseded::default()
        } else {
            Superseded::load(storage).await?
        };
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "pass prepared: state, raw listing, index and superseded lines loaded"
        );
        let t = Instant::now();
        lease.check().await?;
        let absorbed = absorb::absorb(
            &ctx,
            storage,
            &new_files,
            &mut idx,
            &mut superseded,
            cfg.aggregate.absorb_memory_mb << 20,
        )
        .await?;
        let absorb_ms = t.elapsed().as_millis() as u64;
        let t = Instant::now();
        summary.rows_read = absorbed.rows;
        summary.lines_moved = absorbed.moved;
        summary.absorb_groups = absorbed.groups;
        state
            .duplicated
            .extend(absorbed.duplicated.iter().map(|d| crate::date_text(*d)));
        let duplicated: BTreeSet<i32> = state
            .duplicated
            .iter()
            .filter_map(|d| d.parse().ok().map(days_of))
            .collect();
        let mut days: BTreeSet<i32> = absorbed.days;
        if full {
            days.extend(raw.keys());
        }
        // Re-roll in chunks of about CHUNK_BYTES of raw Parquet.
        let mut chunk: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        let mut bytes = 0;
        let todo: Vec<i32> = days.difference(&held).copied().collect();
        // Lines moved between days, a held day released (a move recorded while it was
        // held lands now), or a rebuild: the re-roll writes their days one after the
        // other, so readers of the daily tables are told it is under way.
        if absorbed.moved > 0 || full || todo.iter().any(|d| was_held.contains(d)) {
            lease.check().await?;
            let marked = rolling::begin(storage, &marker, epoch).await?;
            begun = Some(marked.ok_or_else(|| marker_fenced("mark"))?);
        }
        if days.iter().any(|d| held.contains(d)) {
            tracing::warn!(
                days = ?days.intersection(&held).map(|d| crate::date_text(*d)).collect::<Vec<_>>(),
                "new lines for days whose raw objects are missing: the days are held, not re-rolled"
            );
        }
        for (n, day) in todo.iter().enumerate() {
            let files = raw.get(day).cloned().unwrap_or_default();
            bytes += files.iter().map(|f| sizes[f]).sum::<u64>();
            chunk.insert(*day, files);
            if bytes >= CHUNK_BYTES || n + 1 == todo.len() {
                lease.check().await?;
                let rows = rollup::reroll(&ctx, storage, &chunk, &duplicated, &superseded).await?;
                for (d, r) in rows {
                    summary.rows_written += r;
                    state.days.insert(crate::date_text(d), r);
                }
                chunk.clear();
                bytes = 0;
            }
        }
        summary.days_rerolled = todo.len() as u64;
        if full {
            summary.days_removed = remove_days_without_raw(storage, &state, lease).await?;
        }
        lease.check().await?;
        superseded.save(storage).await?;
        state.index = idx.state().clone();
        state.files = sizes;
        state.runs += 1;
        lease.check().await?;
        state.commit(storage, state_version).await?;
        tracing::info!(
            full,
            files_new = summary.files_new,
            rows_read = summary.rows_read,
            days_rerolled = summary.days_rerolled,
            lines_moved = summary.lines_moved,
            absorb_groups = summary.absorb_groups,
            absorb_ms,
            reroll_ms = t.elapsed().as_millis() as u64,
            "daily roll-up done"
        );
        metrics.files_new.inc_by(summary.files_new);
        metrics.rows_read.inc_by(summary.rows_read);
        metrics.days_rerolled.inc_by(summary.days_rerolled);
        metrics.lines_moved.inc_by(summary.lines_moved);
    } else if state.files.len() != sizes.len() {
        // Only deletions: record them (the commit point, conditional as above).
        state.files = sizes;
        lease.check().await?;
        state.commit(storage, state_version).await?;
    }
    if let Some(m) = begun.as_ref().or(marker.marker.rolling.then_some(&marker)) {
        lease.check().await?;
        if !rolling::end(storage, m).await? {
            return Err(marker_fenced("clear"));
        }
    }
    lease.check().await?;
    let status = spectra_core::status::AggregatorStatus {
        last_pass_at: Some(chrono::Utc::now()),
        last_pass_full: full,
        lease_epoch: epoch,
        runs: state.runs,
        raw_objects: state.files.len() as u64,
        days: state.days.len() as u64,
        missing_raw_objects: summary.missing_raw_objects.clone(),
        missing_days: summary.missing_days.clone(),
    };
    spectra_core::status::write_aggregator(storage, &status).await?;

    let as_of = match opts.as_of {
        Some(d) => Some(days_of(d)),
        None => default_as_of(cfg, &state, &mut summary),
    };
    if let (Some(as_of), false) = (as_of, segmentations.is_empty()) {
        summary.as_of = Some(crate::date_text(as_of));
        let days: BTreeSet<i32> = state
            .days
            .keys()
            .filter_map(|d| d.parse().ok().map(days_of))
            .collect();
        let skus = master::current(storage, "master/skus/", "sku_id").await?;
        let outlets = master::current(storage, "master/outlets/", "outlet_id").await?;
        // One segmentation's bad filter, error or panic never stops the others.
        for seg in &segmentations {
            lease.check().await?;
            let t = Instant::now();
            let built = catch_panic(segmentation_features(
                &ctx, storage, &days, as_of, seg, &skus, &outlets,
            ))
            .await;
            let labels = SegmentationLabels {
                segmentation: seg.name.clone(),
            };
            let (manifest, rows) = match built {
                Ok(Ok(built)) => built,
                Ok(Err(e)) => {
                    fail(&mut summary, metrics, &labels, e.to_string());
                    continue;
                }
                Err(panic) => {
                    fail(&mut summary, metrics, &labels, panic);
                    continue;
                }
            };
            metrics
                .unknown_skus
                .get_or_create(&labels)
                .set(manifest.unknown_skus as i64);
            metrics
                .unknown_outlets
                .get_or_create(&labels)
                .set(manifest.unknown_outlets as i64);
            tracing::info!(
                segmentation = %seg.name,
                as_of = %manifest.as_of,
                outlets = manifest.outlets,
                features = manifest.features,
                unknown_skus = manifest.unknown_skus,
                unknown_outlets = manifest.unknown_outlets,
                ms = t.elapsed().as_millis() as u64,
                "features written"
            );
            summary.rows_written += rows;
            summary.segmentations.push(SegmentationSummary { manifest });
        }
    }
    metrics.rows_written.inc_by(summary.rows_written);
    metrics.runs.inc();
    let elapsed = started.elapsed();
    metrics.run_seconds.observe(elapsed.as_secs_f64());
    summary.duration_ms = elapsed.as_millis() as u64;
    Ok(summary)
}

/// The as-of date by the robust rule ([`crate::state::robust_as_of`]), logging the later
/// days it passed over.
fn default_as_of(cfg: &Config, state: &State, summary: &mut Summary) -> Option<i32> {
    let a = &cfg.aggregate;
    let today = days_of(chrono::Utc::now().date_naive());
    let rule = AsOfRule {
        cutoff: today + a.as_of_future_days as i32,
        min_share: a.as_of_min_share,
        reference_days: a.as_of_reference_days,
    };
    let (as_of, skipped) = robust_as_of(&state.day_rows(), &rule)?;
    if !skipped.is_empty() {
        let rows: Vec<String> = skipped
            .iter()
            .map(|d| {
                let day = crate::date_text(*d);
                let r = state.days.get(&day).copied().unwrap_or_default();
                format!("{day} ({r} rows)")
            })
            .collect();
        tracing::warn!(
            as_of = %crate::date_text(as_of),
            later_days = ?rows,
            "later invoice dates hold too few lines or lie after today + aggregate.as_of_future_days; \
             they are kept in the daily table but are not the as-of date"
        );
        summary.as_of_passed_over = skipped.iter().map(|d| crate::date_text(*d)).collect();
    }
    Some(as_of)
}

/// Records a segmentation whose features failed.
fn fail(
    summary: &mut Summary,
    metrics: &AggregateMetrics,
    labels: &SegmentationLabels,
    error: String,
) {
    metrics.failures.get_or_create(labels).inc();
    tracing::error!(segmentation = %labels.segmentation, %error,
        "features of this segmentation failed; the other segmentations go on");
    summary.failures.push(SegmentationFailure {
        segmentation: labels.segmentation.clone(),
        error,
    });
}

/// One segmentation's features: the master tables typed for its filter, then
/// [`features::build`].
async fn segmentation_features(
    ctx: &datafusion::execution::context::SessionContext,
    storage: &Storage,
    days: &BTreeSet<i32>,
    as_of: i32,
    seg: &SegmentationConfig,
    skus: &master::Current,
    outlets: &master::Current,
) -> Result<(features::Manifest, u64), Error> {
    let referenced = features::filter_columns(seg)?;
    let outlet_table = master::outlet_table(outlets, &seg.attribute_types, &referenced)?;
    let sku_table = master::sku_features(skus, &seg.level)?;
    features::build(ctx, storage, days, as_of, seg, sku_table, outlet_table).await
}
