//! One publish cycle of one segmentation: the latest run against what was last
//! published → the changed assignments, the profiles and the recommendations → Kafka →
//! every delivery acknowledged → the state recorded. A crash before the record makes
//! the next cycle compute and produce the same values again; nothing is lost and
//! nothing contradicts the latest run. A run the circuit breaker holds is skipped: the
//! cycle works on the run before it, so nothing new goes out until it is released.

use std::collections::BTreeMap;

use rdkafka::producer::FutureProducer;
use serde::Serialize;
use spectra_core::Config;

use crate::diff::{self, RunRef};
use crate::kafka::{deliver, Outgoing};
use crate::metadata::MetadataStore;
use crate::metrics::{PublishMetrics, SegmentationLabels};
use crate::snapshot::Snapshots;
use crate::state::{self, CycleState, ProfileStamp};
use crate::Error;

/// What a cycle published for one segmentation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CycleReport {
    /// The segmentation.
    pub segmentation: String,
    /// The run published (empty when there is none yet).
    pub run_id: String,
    /// Assignment messages by change (`new`, `moved`, `renamed`, `tombstone`).
    pub assignments: BTreeMap<String, u64>,
    /// Profile messages (tombstones included).
    pub profiles: u64,
    /// Recommendation messages (tombstones included).
    pub recommendations: u64,
    /// Outlets in the published view after the cycle.
    pub outlets: u64,
    /// The latest run, when the circuit breaker holds it: nothing of it is published
    /// until it is released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// What a cycle needs.
pub struct CycleEnv<'a> {
    /// Configuration (topic names).
    pub cfg: &'a Config,
    /// The runs.
    pub snapshots: &'a Snapshots,
    /// Names and tags.
    pub metadata: &'a MetadataStore,
    /// The producer.
    pub producer: &'a FutureProducer,
    /// Metrics.
    pub metrics: &'a PublishMetrics,
    /// Fault injection for crash tests: stop after this many acknowledged messages,
    /// before the state is recorded.
    pub crash_after: Option<u64>,
}

fn json(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(v).expect("messages serialize")
}

/// Runs one cycle of `segmentation`.
#[tracing::instrument(skip_all, fields(segmentation))]
pub async fn publish(env: &CycleEnv<'_>, segmentation: &str) -> Result<CycleReport, Error> {
    let started = std::time::Instant::now();
    let mut report = CycleReport {
        segmentation: segmentation.to_owned(),
        ..Default::default()
    };
    let held = env.snapshots.held(segmentation).await?;
    env.metrics.set_held(segmentation, held.is_some());
    if let Some(h) = &held {
        tracing::warn!(held = %h.run_id, baseline = %h.hold.baseline.run_id, change_share = h.hold.change_share,
            "the latest run is held by the circuit breaker: publishing stays at its baseline until it is released");
    }
    report.held = held.map(|h| h.run_id);
    let Some(snap) = env.snapshots.get(segmentation).await? else {
        tracing::debug!("no run yet");
        return Ok(report);
    };
    let storage = env.snapshots.storage();
    let topics = &env.cfg.kafka.topics;
    let run = &snap.run.latest;
    report.run_id = run.run_id.clone();
    let published = state::load_published(storage, segmentation).await?;
    let previous = state::load_cycle(storage, segmentation).await?;
    let current = snap.currents(env.metadata);
    let as_of = run.as_of.to_string();
    let changes = diff::diff(
        &RunRef {
            segmentation,
            run_id: &run.run_id,
            as_of: &as_of,
        },
        &published,
        &current,
    );
    let key = |id: &str| format!("{segmentation}:{id}");
    let mut out: Vec<Outgoing> = Vec::new();
    for c in &changes {
        let change = c
            .message
            .as_ref()
            .map_or("tombstone", |m| match m.change.as_str() {
                "new" => "new",
                "moved" => "moved",
                _ => "renamed",
            });
        *report.assignments.entry(change.to_owned()).or_default() += 1;
        out.push(Outgoing {
            topic: topics.assignments.clone(),
            key: key(&c.outlet_id),
            value: c.message.as_ref().map(json),
            change,
        });
    }

    // Profiles: all of them for a new run, else those whose name or tags changed.
    let new_run = previous.run_id != run.run_id;
    let mut stamps = BTreeMap::new();
    for p in &snap.profiles {
        let l = snap.label(env.metadata, &p.segment_id);
        let stamp = ProfileStamp {
            name: l.name,
            description: l.description,
            tags: l.tags,
        };
        if new_run || previous.profiles.get(&p.segment_id) != Some(&stamp) {
            out.push(Outgoing {
                topic: topics.profiles.clone(),
                key: key(&p.segment_id),
                value: Some(json(&snap.profile_message(env.metadata, p))),
                change: "profile",
            });
            report.profiles += 1;
        }
        stamps.insert(p.segment_id.clone(), stamp);
    }
    for retired in previous
        .profiles
        .keys()
        .filter(|s| !stamps.contains_key(*s))
    {
        out.push(Outgoing {
            topic: topics.profiles.clone(),
            key: key(retired),
            value: None,
            change: "tombstone",
        });
        report.profiles += 1;
    }

    // Recommendations: every outlet of a new run; tombstones for outlets that left.
    if new_run {
        for c in &current {
            if let Some(v) = snap.recommendation_message(&c.outlet_id) {
                out.push(Outgoing {
                    topic: topics.recommendations.clone(),
                    key: key(&c.outlet_id),
                    value: Some(json(&v)),
                    change: "recommendation",
                });
                report.recommendations += 1;
            }
        }
    }
    for c in changes.iter().filter(|c| c.message.is_none()) {
        out.push(Outgoing {
            topic: topics.recommendations.clone(),
            key: key(&c.outlet_id),
            value: None,
            change: "tombstone",
        });
        report.recommendations += 1;
    }

    report.outlets = current.len() as u64;
    if out.is_empty() {
        return Ok(report);
    }
    deliver(env.producer, &out, env.metrics, env.crash_after).await?;
    let rows = diff::next_state(&run.run_id, &current);
    let cycle = CycleState {
        run_id: run.run_id.clone(),
        profiles: stamps,
        published_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    state::record(storage, segmentation, &rows, &cycle).await?;
    env.metrics
        .outlets
        .get_or_create(&SegmentationLabels {
            segmentation: segmentation.to_owned(),
        })
        .set(current.len() as i64);
    env.metrics
        .cycle_seconds
        .observe(started.elapsed().as_secs_f64());
    tracing::info!(
        run_id = %run.run_id,
        assignments = ?report.assignments,
        profiles = report.profiles,
        recommendations = report.recommendations,
        outlets = report.outlets,
        ms = started.elapsed().as_millis() as u64,
        "published"
    );
    Ok(report)
}
