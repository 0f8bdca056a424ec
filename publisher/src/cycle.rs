//! One publish cycle of one segmentation: the latest run against what was last
//! published → the changed assignments, the profiles and the recommendations → Kafka →
//! every delivery acknowledged → the state recorded. A crash before the record makes
//! the next cycle compute and produce the same values again; nothing is lost and
//! nothing contradicts the latest run. A run the circuit breaker holds is skipped: the
//! cycle works on the run before it, so nothing new goes out until it is released.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use rdkafka::producer::FutureProducer;
use serde::Serialize;
use spectra_core::Config;

use crate::diff::{self, RunRef};
use crate::kafka::{deliver, Delivery, Outgoing};
use crate::lists::{published_digests, same_lists, ChangedLists};
use crate::metadata::MetadataStore;
use crate::metrics::{PublishMetrics, SegmentationLabels};
use crate::snapshot::Snapshots;
use crate::snapshot::{Label, Snapshot};
use crate::state::{self, CycleState, Pending, PendingAssignment, PendingKey, ProfileStamp};
use crate::Error;
use spectra_core::tables::recommendations::{OutletLists, Recommendations, RecommendationsFile};

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
    /// Outlets of a new run whose lists are those already published: not sent again.
    pub recommendations_unchanged: u64,
    /// Messages sent again because the last cycle stopped before it was recorded.
    pub repaired: u64,
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
    let mut previous = state::load_cycle(storage, segmentation).await?;
    let pending = state::load_pending(storage, segmentation, &mut previous).await?;
    // The run and every label as the last cycle recorded them, nothing pending: what
    // was published is what the run says (the service polls; a million outlets need
    // not be read and compared to learn that nothing changed).
    if pending.is_none()
        && settled(&snap, env.metadata, &previous)
        && state::published_exists(storage, segmentation).await?
    {
        report.outlets = snap.run.assignments.len() as u64;
        return Ok(report);
    }
    // From here the cycle holds the published state and its messages: the 360 view's
    // history is let go and not built until the cycle ends (the two together took the
    // publisher past its 1 GiB at 810k outlets).
    let _publishing = env.snapshots.histories().publishing().await;
    let published = state::load_published(storage, segmentation).await?;
    let labels = snap.labels(env.metadata);
    let current = snap.currents(&labels);
    let as_of = run.as_of.to_string();
    let run_ref = RunRef {
        segmentation,
        run_id: &run.run_id,
        as_of: &as_of,
    };
    let changes = diff::diff(&published, &current);
    let key = |id: &str| format!("{segmentation}:{id}");
    for c in &changes {
        *report.assignments.entry(c.label().to_owned()).or_default() += 1;
    }

    // Profiles: all of them for a new run, else those whose name or tags changed.
    let new_run = previous.run_id != run.run_id;
    let mut stamps = BTreeMap::new();
    let mut profiles: Vec<Outgoing> = Vec::new();
    for p in &snap.profiles {
        // The labels the assignments were diffed with (the metadata can change while
        // the cycle runs: the stamps recorded must be what this cycle sent).
        let label = label_of(&snap, env, &labels, &p.segment_id);
        let stamp = ProfileStamp::from(label.clone());
        if new_run || previous.profiles.get(&p.segment_id) != Some(&stamp) {
            profiles.push(Outgoing {
                topic: topics.profiles.clone(),
                key: key(&p.segment_id),
                value: Some(json(&snap.labelled_profile_message(label, p))),
                change: "profile",
            });
        }
        stamps.insert(p.segment_id.clone(), stamp);
    }
    for retired in previous
        .profiles
        .keys()
        .filter(|s| !stamps.contains_key(*s))
    {
        profiles.push(Outgoing {
            topic: topics.profiles.clone(),
            key: key(retired),
            value: None,
            change: "tombstone",
        });
    }
    report.profiles += profiles.len() as u64;

    // Recommendations, for a new run: the lists of the assigned outlets whose lists
    // changed since the run published last, or whose assignment changed (streamed from
    // the run's file when delivered: only their ids are held, sorted); empty lists for
    // outlets whose lists emptied; tombstones for outlets that left.
    let sku_names = snap.sku_names_digest();
    let (recs_file, lists) = match new_run {
        true => {
            let f = RecommendationsFile::fetch(storage, &snap.recommendations_file()).await?;
            let baseline = match previous.sku_names == Some(sku_names) {
                true => published_digests(storage, &previous.run_id).await?,
                false => None,
            };
            let reassigned = |o: &str| {
                changes
                    .binary_search_by(|c| c.outlet_id.cmp(o))
                    .is_ok_and(|i| changes[i].to.is_some())
            };
            let assigned = |o: &str| snap.assignment(o).is_some();
            let lists = ChangedLists::new(f.digests()?, baseline, assigned, reassigned);
            (Some(f), lists)
        }
        false => (None, ChangedLists::default()),
    };
    let ChangedLists {
        changed: mut recommended,
        emptied,
        unchanged,
    } = lists;
    recommended.extend(emptied.iter().cloned());
    recommended.sort_unstable();
    let left = || changes.iter().filter(|c| c.to.is_none());
    report.recommendations += (recommended.len() + left().count()) as u64;
    report.recommendations_unchanged = unchanged;

    // Keys a crashed cycle sent (or was about to send) without recording them: their
    // current values again, whatever the diff says.
    let mut repaired = Vec::new();
    if let Some(p) = &pending {
        let sending = Sending {
            changes: &changes,
            profiles: &profiles,
            recommended: &recommended,
        };
        repaired = repairs(env, &snap, &run_ref, &current, &labels, p, &sending).await?;
        if !repaired.is_empty() {
            tracing::warn!(keys = repaired.len(), crashed_run = %p.run_id,
                "the last cycle stopped before it was recorded: sending its keys' current values again");
        }
        report.repaired = repaired.len() as u64;
    }

    report.outlets = current.len() as u64;
    if changes.is_empty() && profiles.is_empty() && recommended.is_empty() && repaired.is_empty() {
        if pending.is_some() {
            state::clear_pending(storage, segmentation).await?;
        }
        return Ok(report);
    }
    // What is about to be sent, by key: assignments and recommendations as outlet ids.
    let prefix = format!("{segmentation}:");
    let mark = format!(
        "{}@{}",
        run.run_id,
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    );
    let mut record = Pending {
        run_id: run.run_id.clone(),
        cycle: Some(mark.clone()),
        keys: Vec::new(),
        assignments: changes
            .iter()
            .map(|c| {
                PendingAssignment(
                    Cow::Borrowed(c.outlet_id),
                    c.to.map(|t| Cow::Borrowed(t.current.segment_id)),
                )
            })
            .collect(),
        recommendations: recommended
            .iter()
            .map(|o| Cow::Borrowed(o.as_str()))
            .collect(),
    };
    record
        .recommendations
        .extend(left().map(|c| Cow::Borrowed(c.outlet_id)));
    for m in profiles.iter().chain(&repaired) {
        let id = m.key.strip_prefix(&prefix).unwrap_or(&m.key);
        if m.topic == topics.assignments {
            record.assignments.push(PendingAssignment(
                Cow::Borrowed(id),
                m.value
                    .as_ref()
                    .and_then(|_| diff::find(&current, id))
                    .map(|c| Cow::Borrowed(c.segment_id)),
            ));
        } else if m.topic == topics.recommendations {
            record.recommendations.push(Cow::Borrowed(id));
        } else {
            record.keys.push(PendingKey {
                topic: m.topic.clone(),
                key: m.key.clone(),
                segment_id: None,
            });
        }
    }
    state::save_pending(storage, segmentation, &record).await?;
    drop(record);
    // In the order the keys were recorded: assignments and profiles, the new run's
    // recommendations a file batch at a time, then tombstones and repairs.
    let mut delivery = Delivery::new(env.producer, env.metrics);
    for c in &changes {
        let m = Outgoing {
            topic: topics.assignments.clone(),
            key: key(c.outlet_id),
            value: c.message(&run_ref).as_ref().map(json),
            change: c.label(),
        };
        delivery.send(&m).await?;
    }
    for m in &profiles {
        delivery.send(m).await?;
    }
    if let Some(f) = &recs_file {
        // The file's lists that changed, a batch at a time, then the emptied ones.
        let mut stream = f.lists()?;
        let mut emptied = Some(emptied);
        loop {
            let outlets = match stream.next_outlets()? {
                Some(mut outlets) => {
                    outlets.retain(|(o, _)| recommended.binary_search(o).is_ok());
                    outlets
                }
                None => match emptied.take() {
                    Some(e) => e
                        .into_iter()
                        .map(|o| (o, Recommendations::default()))
                        .collect(),
                    None => break,
                },
            };
            for (outlet, v) in snap.recommendation_messages(outlets) {
                let m = Outgoing {
                    topic: topics.recommendations.clone(),
                    key: key(&outlet),
                    value: Some(v),
                    change: "recommendation",
                };
                delivery.send(&m).await?;
            }
        }
    }
    for c in left() {
        let m = Outgoing {
            topic: topics.recommendations.clone(),
            key: key(c.outlet_id),
            value: None,
            change: "tombstone",
        };
        delivery.send(&m).await?;
    }
    for m in &repaired {
        delivery.send(m).await?;
    }
    delivery.finish().await?;
    let cycle = CycleState {
        run_id: run.run_id.clone(),
        profiles: stamps,
        published_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        // Lists last went out with these names, or (not a new run) with those recorded.
        sku_names: match new_run {
            true => Some(sku_names),
            false => previous.sku_names,
        },
        cycle: Some(mark),
    };
    state::record(storage, segmentation, &current, &cycle).await?;
    state::clear_pending(storage, segmentation).await?;
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
        recommendations_unchanged = report.recommendations_unchanged,
        outlets = report.outlets,
        ms = started.elapsed().as_millis() as u64,
        "published"
    );
    Ok(report)
}

/// Whether the last recorded cycle published this run with the labels in force now:
/// the same run, and for every segment of its profiles and assignments the same name,
/// description and tags as recorded (a segment retired or added is a change).
fn settled(
    snap: &Snapshot,
    metadata: &crate::metadata::MetadataStore,
    previous: &CycleState,
) -> bool {
    let stamp = |segment_id: &str| ProfileStamp::from(snap.label(metadata, segment_id));
    previous.run_id == snap.run.latest.run_id
        && previous.profiles.len() == snap.profiles.len()
        && snap
            .profiles
            .iter()
            .all(|p| previous.profiles.get(&p.segment_id) == Some(&stamp(&p.segment_id)))
        && snap
            .run
            .assignments
            .iter()
            .all(|a| previous.profiles.contains_key(&a.segment_id))
}

/// What a cycle sends anyway, so a crashed cycle's key needs no repair: every changed
/// assignment (a tombstone also clears the outlet's recommendations), the profiles,
/// and the recommendations of every outlet in `recommended` (sorted).
struct Sending<'a> {
    changes: &'a [diff::AssignmentChange<'a>],
    profiles: &'a [Outgoing],
    recommended: &'a [String],
}

impl<'a> Sending<'a> {
    fn assignment(&self, outlet_id: &str) -> Option<&diff::AssignmentChange<'a>> {
        self.changes
            .binary_search_by(|c| c.outlet_id.cmp(outlet_id))
            .ok()
            .map(|i| &self.changes[i])
    }

    fn recommendations(&self, outlet_id: &str) -> bool {
        self.recommended
            .binary_search_by(|o| o.as_str().cmp(outlet_id))
            .is_ok()
            || self.assignment(outlet_id).is_some_and(|c| c.to.is_none())
    }
}

/// The recommendations messages of the assigned outlets among `wanted`, read in one
/// pass over the run's file; outlets not assigned or without a list are absent.
async fn recommendation_messages(
    storage: &spectra_core::Storage,
    snap: &Snapshot,
    wanted: &HashSet<&str>,
) -> Result<HashMap<String, Vec<u8>>, Error> {
    let mut out = HashMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let mut lists = OutletLists::open(storage, &snap.recommendations_file()).await?;
    while let Some(outlets) = lists.next_outlets()? {
        for (outlet, v) in snap.recommendation_messages(outlets) {
            if wanted.contains(outlet.as_str()) {
                out.insert(outlet, v);
            }
        }
    }
    Ok(out)
}

/// A segment's label as the cycle read it (`labels`, read once, for the segments with
/// outlets), else as the metadata says now.
fn label_of(
    snap: &Snapshot,
    env: &CycleEnv<'_>,
    labels: &HashMap<String, Label>,
    segment_id: &str,
) -> Label {
    match labels.get(segment_id) {
        Some(l) => l.clone(),
        None => snap.label(env.metadata, segment_id),
    }
}

/// The messages that put back the current value (or a tombstone) of every key of an
/// unrecorded cycle (`pending`) that this cycle does not send anyway (`sending`).
async fn repairs(
    env: &CycleEnv<'_>,
    snap: &Snapshot,
    run: &RunRef<'_>,
    current: &[diff::Current<'_>],
    labels: &HashMap<String, Label>,
    pending: &Pending<'_>,
    sending: &Sending<'_>,
) -> Result<Vec<Outgoing>, Error> {
    let topics = &env.cfg.kafka.topics;
    let prefix = format!("{}:", run.segmentation);
    // Every key of the record as (topic, id, segment sent), the lists' keys on the
    // configured topics.
    let keys = pending
        .keys
        .iter()
        .filter_map(|k| {
            let id = k.key.strip_prefix(&prefix)?;
            Some((k.topic.as_str(), id, k.segment_id.as_deref()))
        })
        .chain(
            pending
                .assignments
                .iter()
                .map(|a| (topics.assignments.as_str(), a.0.as_ref(), a.1.as_deref())),
        )
        .chain(
            pending
                .recommendations
                .iter()
                .map(|o| (topics.recommendations.as_str(), o.as_ref(), None)),
        );
    let to_repair: Vec<(&str, &str, Option<&str>)> = keys
        .filter(|&(topic, id, _)| {
            if topic == topics.assignments {
                sending.assignment(id).is_none()
            } else if topic == topics.recommendations {
                !sending.recommendations(id)
            } else {
                let key = format!("{prefix}{id}");
                !sending
                    .profiles
                    .iter()
                    .any(|m| m.topic == topic && m.key == key)
            }
        })
        .collect();
    // The current lists of the outlets whose recommendations are repaired.
    let wanted: HashSet<&str> = to_repair
        .iter()
        .filter(|(topic, id, _)| {
            *topic == topics.recommendations && diff::find(current, id).is_some()
        })
        .map(|&(_, id, _)| id)
        .collect();
    let mut lists = recommendation_messages(env.snapshots.storage(), snap, &wanted).await?;
    let mut repaired = Vec::new();
    let mut seen = HashSet::new();
    for (topic, id, segment_id) in to_repair {
        if !seen.insert((topic, id)) {
            continue; // listed twice (a repair of a repair)
        }
        let value = if topic == topics.assignments {
            diff::find(current, id).map(|c| {
                let (change, previous) = match segment_id {
                    None => ("new", None),
                    Some(s) if s != c.segment_id => ("moved", Some(s.to_owned())),
                    Some(s) => ("renamed", Some(s.to_owned())),
                };
                json(&diff::message(run, c, change, previous))
            })
        } else if topic == topics.profiles {
            snap.profiles
                .iter()
                .find(|p| p.segment_id == id)
                .map(|p| json(&snap.labelled_profile_message(label_of(snap, env, labels, id), p)))
        } else if topic == topics.recommendations {
            lists.remove(id)
        } else {
            continue; // a topic no longer configured
        };
        repaired.push(Outgoing {
            topic: topic.to_owned(),
            key: format!("{prefix}{id}"),
            change: if value.is_some() {
                "repair"
            } else {
                "tombstone"
            },
            value,
        });
    }
    Ok(repaired)
}

/// Repairs the output topics of `segmentation` from what they hold: reads each topic's
/// compacted view of the segmentation's keys, compares it with what the accepted run
/// says now (assignments by segment, name and tags; profiles and recommendations by
/// value), sends the current value of every key that differs or is missing and a
/// tombstone for every key the run no longer has, then records the state as published.
pub async fn reconcile(env: &CycleEnv<'_>, segmentation: &str) -> Result<CycleReport, Error> {
    let mut report = CycleReport {
        segmentation: segmentation.to_owned(),
        ..Default::default()
    };
    let Some(snap) = env.snapshots.get(segmentation).await? else {
        return Ok(report);
    };
    let storage = env.snapshots.storage();
    let topics = &env.cfg.kafka.topics;
    let run = &snap.run.latest;
    report.run_id = run.run_id.clone();
    let as_of = run.as_of.to_string();
    let run_ref = RunRef {
        segmentation,
        run_id: &run.run_id,
        as_of: &as_of,
    };
    let prefix = format!("{segmentation}:");
    let key = |id: &str| format!("{prefix}{id}");
    let labels = snap.labels(env.metadata);
    let current = snap.currents(&labels);
    let mut out = Vec::new();

    // Assignments: the same segment, name and tags.
    let on_topic = crate::kafka::read_compacted(env.cfg, &topics.assignments, &prefix).await?;
    let parsed = |v: &[u8]| serde_json::from_slice::<diff::AssignmentMessage>(v).ok();
    for c in &current {
        let was = on_topic.get(&key(c.outlet_id)).and_then(|v| parsed(v));
        let (change, previous) = match &was {
            None => ("new", None),
            Some(m) if m.segment_id != c.segment_id => ("moved", Some(m.segment_id.clone())),
            Some(m) if m.segment_name != c.label.name || m.tags != c.label.tags => {
                ("renamed", Some(m.segment_id.clone()))
            }
            Some(_) => continue,
        };
        *report.assignments.entry(change.to_owned()).or_default() += 1;
        out.push(Outgoing {
            topic: topics.assignments.clone(),
            key: key(c.outlet_id),
            value: Some(json(&diff::message(&run_ref, c, change, previous))),
            change,
        });
    }
    let expected: HashSet<String> = current.iter().map(|c| key(c.outlet_id)).collect();
    let extra = |view: &HashMap<String, Vec<u8>>,
                 expected: &HashSet<String>,
                 topic: &str|
     -> Vec<Outgoing> {
        let mut keys: Vec<&String> = view.keys().filter(|k| !expected.contains(*k)).collect();
        keys.sort();
        keys.into_iter()
            .map(|k| Outgoing {
                topic: topic.to_owned(),
                key: k.clone(),
                value: None,
                change: "tombstone",
            })
            .collect()
    };
    let stale = extra(&on_topic, &expected, &topics.assignments);
    *report.assignments.entry("tombstone".into()).or_default() += stale.len() as u64;
    out.extend(stale);

    // Profiles and recommendations: the same values.
    let mut stamps = BTreeMap::new();
    let profiles_view = crate::kafka::read_compacted(env.cfg, &topics.profiles, &prefix).await?;
    let mut expected_profiles = HashSet::new();
    for p in &snap.profiles {
        stamps.insert(
            p.segment_id.clone(),
            ProfileStamp::from(snap.label(env.metadata, &p.segment_id)),
        );
        let k = key(&p.segment_id);
        let v = json(&snap.profile_message(env.metadata, p));
        if profiles_view.get(&k) != Some(&v) {
            out.push(Outgoing {
                topic: topics.profiles.clone(),
                key: k.clone(),
                value: Some(v),
                change: "profile",
            });
            report.profiles += 1;
        }
        expected_profiles.insert(k);
    }
    let stale = extra(&profiles_view, &expected_profiles, &topics.profiles);
    report.profiles += stale.len() as u64;
    out.extend(stale);
    let recs_view = crate::kafka::read_compacted(env.cfg, &topics.recommendations, &prefix).await?;
    let mut expected_recs = HashSet::new();
    let mut lists = OutletLists::open(storage, &snap.recommendations_file()).await?;
    while let Some(outlets) = lists.next_outlets()? {
        for (outlet, v) in snap.recommendation_messages(outlets) {
            let k = key(&outlet);
            if !same_lists(recs_view.get(&k), &v) {
                out.push(Outgoing {
                    topic: topics.recommendations.clone(),
                    key: k.clone(),
                    value: Some(v),
                    change: "recommendation",
                });
                report.recommendations += 1;
            }
            expected_recs.insert(k);
        }
    }
    let stale = extra(&recs_view, &expected_recs, &topics.recommendations);
    report.recommendations += stale.len() as u64;
    out.extend(stale);

    report.outlets = current.len() as u64;
    report.repaired = out.len() as u64;
    if !out.is_empty() {
        deliver(env.producer, &out, env.metrics).await?;
    }
    let cycle = CycleState {
        run_id: run.run_id.clone(),
        profiles: stamps,
        published_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        sku_names: Some(snap.sku_names_digest()),
        cycle: None,
    };
    state::record(storage, segmentation, &current, &cycle).await?;
    state::clear_pending(storage, segmentation).await?;
    tracing::info!(run_id = %run.run_id, repaired = report.repaired, "reconciled the output topics with the accepted run");
    Ok(report)
}
