//! `GET /api/segmentations/{name}/compare?draft={draft}` — a draft's latest run against
//! the live (published) run — or `?a={run_id}&b={run_id}`, any two runs of the
//! segmentation or its drafts. What changes if `b` goes live:
//!
//! - `ari`: agreement of the two partitions on the outlets both assign;
//! - `crosswalk`: outlets and value per pair of segments (`a` or `b` null for outlets
//!   only one run assigns) — its outlets sum to every outlet either run assigns;
//! - `matches`: which `b` segment takes which `a` segment's id on promotion
//!   ([`spectra_core::crosswalk`], the rule the segmenter applies);
//! - `spectrum`: per matched pair on the same level, the features whose share differs
//!   most;
//! - `movers`: the outlets whose segment would change, their count and value, the
//!   largest first — between two runs of one segmentation, whose ids are stable, the
//!   outlets whose segment id differs; each with why when `b`'s own
//!   `movements.parquet` moved it from its `a` segment (`b` is `a`'s next run):
//!   `reason`, `score`, `fit`, `drivers`.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use spectra_core::crosswalk::{Crosswalk, Member};
use spectra_core::tables::definitions;
use spectra_core::tables::layout::{self, run_files};
use spectra_core::tables::profile::SegmentProfile;
use spectra_core::tables::read_rows;

use super::{snapshot, ApiError, ApiResult, AppState};
use crate::tables::{AssignmentRow, MovementRow};

/// Movers listed in a comparison (the largest by value).
const MOVERS_LISTED: usize = 200;
/// Features listed per matched pair.
const FEATURES_LISTED: usize = 8;

#[derive(Debug, Deserialize)]
pub(super) struct CompareQuery {
    draft: Option<String>,
    a: Option<String>,
    b: Option<String>,
}

/// One side of a comparison.
struct Side {
    run_id: String,
    segmentation: String,
    level: String,
    assignments: Vec<AssignmentRow>,
    profiles: Vec<SegmentProfile>,
    /// Segment id → name people see.
    names: HashMap<String, String>,
    /// The run's own moves, by outlet (`movements.parquet`).
    movements: HashMap<String, MovementRow>,
}

impl Side {
    fn members(&self) -> BTreeMap<String, Member> {
        self.assignments
            .iter()
            .map(|a| {
                (
                    a.outlet_id.clone(),
                    Member {
                        segment: a.segment_id.clone(),
                        value: a.value,
                    },
                )
            })
            .collect()
    }

    fn header(&self) -> Value {
        json!({
            "run_id": self.run_id,
            "segmentation": self.segmentation,
            "level": self.level,
            "outlets": self.assignments.len(),
            "segments": self.profiles.iter().map(|p| json!({
                "segment_id": p.segment_id,
                "name": self.names.get(&p.segment_id).unwrap_or(&p.name),
                "outlets": p.outlets,
                "value": p.value,
            })).collect::<Vec<_>>(),
        })
    }
}

fn not_found(m: String) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, m)
}

/// The run `run_id` of `name` or one of its drafts, read from its folder.
async fn read_side(s: &AppState, name: &str, run_id: &str) -> ApiResult<Side> {
    let segmentation = run_id.split('/').next().unwrap_or_default().to_owned();
    let ours = segmentation == name || definitions::draft_parent(&segmentation) == Some(name);
    let folder = layout::run_of_id(run_id)
        .filter(|_| ours)
        .ok_or_else(|| {
            not_found(format!(
                "`{run_id}` is not a run id of `{name}` or its drafts ({{segmentation}}/{{as_of}}/{{seq}})"
            ))
        })?;
    let storage = s.snapshots.storage();
    let assignments: Vec<AssignmentRow> =
        read_rows(storage, &format!("{folder}/{}", run_files::ASSIGNMENTS))
            .await?
            .ok_or_else(|| not_found(format!("run `{run_id}` does not exist")))?;
    let profiles: Vec<SegmentProfile> = storage
        .get_json(&format!("{folder}/{}", run_files::PROFILES))
        .await?
        .ok_or_else(|| not_found(format!("run `{run_id}` has no profiles")))?;
    let movements: Vec<MovementRow> =
        read_rows(storage, &format!("{folder}/{}", run_files::MOVEMENTS))
            .await?
            .unwrap_or_default();
    let level = spectra_core::tables::runs::read_model(storage, &folder)
        .await?
        .map(|m| m.level)
        .unwrap_or_default();
    let names = profiles
        .iter()
        .map(|p| {
            let label = s
                .metadata
                .get(&segmentation, &p.segment_id)
                .map_or_else(|| p.name.clone(), |m| m.name);
            (p.segment_id.clone(), label)
        })
        .collect();
    Ok(Side {
        run_id: run_id.to_owned(),
        segmentation,
        level,
        assignments,
        profiles,
        names,
        movements: movements
            .into_iter()
            .map(|m| (m.outlet_id.clone(), m))
            .collect(),
    })
}

/// The live side: the run published and served now.
async fn live_side(s: &AppState, name: &str) -> ApiResult<Side> {
    let snap = snapshot(s, name).await?;
    Ok(Side {
        run_id: snap.run.latest.run_id.clone(),
        segmentation: name.to_owned(),
        level: snap.run.model.level.clone(),
        assignments: snap.run.assignments.clone(),
        profiles: snap.profiles.clone(),
        names: snap
            .profiles
            .iter()
            .map(|p| {
                (
                    p.segment_id.clone(),
                    snap.label(&s.metadata, &p.segment_id).name,
                )
            })
            .collect(),
        movements: snap
            .run
            .movements
            .iter()
            .map(|m| (m.outlet_id.clone(), m.clone()))
            .collect(),
    })
}

/// `GET /api/segmentations/{name}/compare`.
pub(super) async fn compare(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<CompareQuery>,
) -> ApiResult<Json<Value>> {
    let (a, b) = match (&q.draft, &q.a, &q.b) {
        (Some(draft), None, None) => {
            let full = definitions::draft_full_name(&name, draft);
            if definitions::draft_parent(&full) != Some(name.as_str()) {
                return Err(not_found(format!("`{full}` is not a draft of `{name}`")));
            }
            let latest = crate::tables::latest(s.snapshots.storage(), &full)
                .await?
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::CONFLICT,
                        format!("draft `{full}` has no run yet; `spectra segment` computes it after the aggregator's next pass"),
                    )
                })?;
            (
                live_side(&s, &name).await?,
                read_side(&s, &name, &latest.run_id).await?,
            )
        }
        (None, Some(a), Some(b)) => (
            read_side(&s, &name, a).await?,
            read_side(&s, &name, b).await?,
        ),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give `draft` (compared with the live run), or `a` and `b` (two run ids)",
            ))
        }
    };
    Ok(Json(comparison(&a, &b)))
}

fn comparison(a: &Side, b: &Side) -> Value {
    let (ma, mb) = (a.members(), b.members());
    let cw = Crosswalk::new(&ma, &mb);
    let name = |side: &Side, id: &Option<String>| {
        id.as_ref()
            .map(|id| side.names.get(id).cloned().unwrap_or_else(|| id.clone()))
    };
    let crosswalk: Vec<Value> = cw
        .cells
        .iter()
        .map(|c| {
            json!({
                "a": c.a, "a_name": name(a, &c.a),
                "b": c.b, "b_name": name(b, &c.b),
                "outlets": c.outlets, "value": c.value,
            })
        })
        .collect();
    // Movers: outlets in both whose b segment does not continue their a segment —
    // the same id, between runs of one segmentation (ids are stable there); the
    // segment the crosswalk matches, between a draft and the live run.
    let same = a.segmentation == b.segmentation;
    let continues = |x: &str, y: &str| {
        if same {
            x == y
        } else {
            cw.a_of(y) == Some(x)
        }
    };
    let mut movers: Vec<(f64, &str, &str, &str)> = ma
        .iter()
        .filter_map(|(o, x)| {
            let y = mb.get(o)?;
            (!continues(&x.segment, &y.segment)).then_some((
                y.value,
                o.as_str(),
                x.segment.as_str(),
                y.segment.as_str(),
            ))
        })
        .collect();
    movers.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(y.1)));
    let mover_value: f64 = movers.iter().map(|m| m.0).sum();
    let same_level = a.level == b.level;
    let spectrum: Vec<Value> = cw
        .matches
        .iter()
        .filter(|_| same_level)
        .filter_map(|m| {
            let pa = a.profiles.iter().find(|p| p.segment_id == m.a)?;
            let pb = b.profiles.iter().find(|p| p.segment_id == m.b)?;
            let shares = |p: &SegmentProfile| -> HashMap<String, f64> {
                p.spectrum
                    .iter()
                    .map(|f| (f.feature.clone(), f.share))
                    .collect()
            };
            let (sa, sb) = (shares(pa), shares(pb));
            let mut features: Vec<(String, f64, f64)> = sa
                .keys()
                .chain(sb.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|f| {
                    (
                        f.clone(),
                        sa.get(f).copied().unwrap_or(0.0),
                        sb.get(f).copied().unwrap_or(0.0),
                    )
                })
                .collect();
            features.sort_by(|x, y| (y.2 - y.1).abs().total_cmp(&(x.2 - x.1).abs()));
            features.truncate(FEATURES_LISTED);
            Some(json!({
                "a": m.a, "b": m.b,
                "features": features.iter().map(|(f, x, y)| json!({
                    "feature": f, "a": x, "b": y, "difference": y - x,
                })).collect::<Vec<_>>(),
            }))
        })
        .collect();
    let only_a = ma.keys().filter(|o| !mb.contains_key(*o)).count();
    let only_b = mb.keys().filter(|o| !ma.contains_key(*o)).count();
    json!({
        "a": a.header(),
        "b": b.header(),
        "outlets": {"a": ma.len(), "b": mb.len(), "both": cw.common, "only_a": only_a, "only_b": only_b},
        "ari": cw.ari,
        "crosswalk": crosswalk,
        "matches": cw.matches,
        "same_level": same_level,
        "spectrum": spectrum,
        "movers": {
            "outlets": movers.len(),
            "value": mover_value,
            "listed": movers.iter().take(MOVERS_LISTED).map(|(v, o, x, y)| {
                let mut m = json!({"outlet_id": o, "from": x, "to": y, "value": v});
                // Why, when b's run itself moved it out of its a segment.
                if let Some(e) = b.movements.get(*o).filter(|e| {
                    e.previous_segment_id == *x && e.segment_id == *y
                }) {
                    m["reason"] = json!(e.reason);
                    m["score"] = json!(e.score);
                    m["fit"] = json!(e.fit);
                    m["drivers"] = json!(e.drivers);
                }
                m
            }).collect::<Vec<_>>(),
        },
    })
}
