//! The overview routes: segmentations with their latest runs (and the run the circuit
//! breaker holds, if any), the segment movement of a
//! run, and the pipeline status (last runs and their quality, freshness and lag,
//! dead-letter counts).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{json, Value};

use super::{snapshot, ApiResult, AppState};
use crate::hold::HeldRun;
use crate::snapshot::Snapshot;
use crate::tables;
use spectra_core::config::SegmentationConfig;

fn summary(
    name: &str,
    definition: Option<&SegmentationConfig>,
    snap: Option<&Snapshot>,
    cycle: &crate::state::CycleState,
    held: Option<&HeldRun>,
) -> Value {
    let c = definition;
    json!({
        "name": name,
        "configured": c.is_some(),
        "level": c.map(|c| c.level.clone()),
        "window_days": c.map(|c| c.window_days),
        "latest": snap.map(|s| json!({"run_id": s.run.latest.run_id, "as_of": s.run.latest.as_of.to_string()})),
        "outlets": snap.map(|s| s.run.assignments.len()),
        "segments": snap.map(|s| s.profiles.len()),
        "quality": snap.map(|s| json!(s.run.model.quality)),
        "published": (!cycle.run_id.is_empty()).then(|| json!({"run_id": cycle.run_id, "published_at": cycle.published_at})),
        "held": held.map(|h| {
            let mut v = json!(h);
            v["release"] = json!(format!("/api/segmentations/{name}/runs/{}/release", h.run));
            v
        }),
    })
}

/// `GET /api/segmentations`.
pub(super) async fn segmentations(State(s): State<AppState>) -> ApiResult<Json<Vec<Value>>> {
    let mut out = Vec::new();
    for (n, definition) in tables::published(&s.cfg, s.snapshots.storage()).await? {
        // A segmentation whose run cannot be read is listed with its error; the others
        // are listed as usual.
        let snap = match s.snapshots.get(&n).await {
            Ok(snap) => snap,
            Err(e) => {
                out.push(json!({"name": n, "error": e.to_string()}));
                continue;
            }
        };
        let cycle = crate::state::load_cycle(s.snapshots.storage(), &n).await?;
        let held = s.snapshots.held(&n).await?;
        out.push(summary(
            &n,
            definition.as_ref(),
            snap.as_deref(),
            &cycle,
            held.as_ref(),
        ));
    }
    Ok(Json(out))
}

/// `GET /api/segmentations/{name}/movement`.
pub(super) async fn movement(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let snap = snapshot(&s, &name).await?;
    let names: serde_json::Map<String, Value> = snap
        .profiles
        .iter()
        .map(|p| {
            (
                p.segment_id.clone(),
                json!(snap.label(&s.metadata, &p.segment_id).name),
            )
        })
        .collect();
    let moved = snap
        .run
        .assignments
        .iter()
        .filter(|a| a.change == tables::Change::Moved)
        .count();
    let new = snap
        .run
        .assignments
        .iter()
        .filter(|a| a.change == tables::Change::New)
        .count();
    Ok(Json(json!({
        "segmentation": name,
        "run_id": snap.run.latest.run_id,
        "as_of": snap.run.latest.as_of.to_string(),
        "outlets": snap.run.assignments.len(),
        "moved": moved,
        "new": new,
        "segments": names,
        "flows": snap.movement(),
    })))
}

/// The latest `date=` partition under a folder.
async fn newest(s: &AppState, folder: &str) -> ApiResult<Option<String>> {
    let dates = spectra_core::tables::features::partitions(s.snapshots.storage(), folder).await?;
    Ok(dates
        .into_iter()
        .map(|(d, _)| d)
        .max()
        .map(|d| d.to_string()))
}

/// The aggregator's last pass and the raw objects it misses, from the status document
/// the aggregator publishes (`status/aggregator.json`), not its private state.
async fn aggregator_status(s: &AppState) -> Value {
    let storage = s.snapshots.storage();
    // A re-roll that moves lines between days under way (or left by a pass that
    // stopped): readers of the daily tables wait for it (`core/src/tables/rolling.rs`).
    let rerolling = match spectra_core::tables::rolling::load(storage).await {
        Ok(m) if m.rolling => json!({"since": m.since, "lease_epoch": m.epoch}),
        Ok(_) => Value::Null,
        Err(e) => json!({"error": format!("re-roll marker: {e}")}),
    };
    match spectra_core::status::read_aggregator(storage).await {
        Ok(Some(st)) => json!({
            "last_pass_at": st.last_pass_at,
            "last_pass_full": st.last_pass_full,
            "lease_epoch": st.lease_epoch,
            "runs": st.runs,
            "raw_objects": st.raw_objects,
            "days": st.days,
            "missing_raw_objects": st.missing_raw_objects,
            "missing_days": st.missing_days,
            "rerolling": rerolling,
        }),
        Ok(None) => Value::Null,
        Err(e) => json!({"error": format!("aggregator status: {e}")}),
    }
}

/// Ingest's progress per partition, from the status document ingest publishes
/// (`status/ingest/{group}.json`: what it stored, what it wrote, its own view of the
/// lag), with the lag against the broker's high watermark now when the broker answers;
/// and the dead-letter topic's size, as the broker reports it.
async fn kafka_status(s: &AppState) -> Value {
    let cfg = s.cfg.clone();
    let status = spectra_core::status::read(s.snapshots.storage(), &cfg.ingest.group_id).await;
    let status = match status {
        Ok(st) => st,
        Err(e) => return json!({"error": format!("ingest status: {e}")}),
    };
    let task = tokio::task::spawn_blocking(move || -> Result<Value, rdkafka::error::KafkaError> {
        let c: BaseConsumer = spectra_core::kafka::client_config(&cfg).create()?;
        let t = Duration::from_secs(3);
        let mut lag = Vec::new();
        for p in status.iter().flat_map(|st| &st.partitions) {
            let high = c
                .fetch_watermarks(&p.topic, p.partition, t)
                .ok()
                .map(|w| w.1);
            let live = match (high, p.next_offset_stored) {
                (Some(h), Some(n)) => (h - n).max(0),
                _ => p.lag,
            };
            lag.push(json!({"topic": p.topic, "partition": p.partition, "next_offset": p.next_offset_stored,
                "high_watermark": high.or(p.high_watermark), "lag": live, "lines_written": p.lines_written,
                "messages_written": p.messages_written, "dead_letters_sent": p.dead_letters, "state": p.state,
                "updated_at": p.updated_at}));
        }
        let md = c.fetch_metadata(Some(&cfg.kafka.topics.dlq), t)?;
        let mut dead = 0i64;
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = c.fetch_watermarks(&cfg.kafka.topics.dlq, p.id(), t)?;
            dead += (high - low).max(0);
        }
        Ok(
            json!({"ingest_lag": lag, "ingest_status_updated_at": status.as_ref().and_then(|s| s.updated_at),
            "dead_letters": dead, "dead_letter_topic": cfg.kafka.topics.dlq}),
        )
    });
    match task.await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => json!({"error": format!("kafka at `{}`: {e}", s.cfg.kafka.brokers)}),
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// `GET /api/pipeline`.
pub(super) async fn pipeline(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let today = chrono::Utc::now().date_naive();
    let mut segs = Vec::new();
    for (n, definition) in tables::published(&s.cfg, s.snapshots.storage()).await? {
        let snap = s.snapshots.get(&n).await?;
        let cycle = crate::state::load_cycle(s.snapshots.storage(), &n).await?;
        let runs = tables::run_history(s.snapshots.storage(), &n, 10).await?;
        let held = s.snapshots.held(&n).await?;
        let mut v = summary(
            &n,
            definition.as_ref(),
            snap.as_deref(),
            &cycle,
            held.as_ref(),
        );
        v["runs"] = json!(runs);
        v["days_since_as_of"] = json!(snap
            .as_ref()
            .map(|s| (today - s.run.latest.as_of).num_days()));
        v["published_behind"] = json!(snap
            .as_ref()
            .is_some_and(|s| s.run.latest.run_id != cycle.run_id));
        segs.push(v);
    }
    Ok(Json(json!({
        "now": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "raw_latest_date": newest(&s, spectra_core::tables::layout::RAW_INVOICES).await?,
        "features_latest_date": newest(&s, spectra_core::tables::layout::DAILY).await?,
        "segmentations": segs,
        "kafka": kafka_status(&s).await,
        "aggregator": aggregator_status(&s).await,
    })))
}
