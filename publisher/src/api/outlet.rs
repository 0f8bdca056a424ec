//! The outlet views: the 360 view (`GET /api/outlets/{id}`: the outlet's spectrum
//! against its segment's, its potential and the SKUs it has the most to win on, its
//! recent history and its recommendations, in every segmentation that assigns it),
//! outlet search, and a segment's outlets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::Datelike;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{snapshot, ApiError, ApiResult, AppState};
use crate::snapshot::{Definition, Snapshot};

/// `?limit=`, `?q=`, `?segmentation=` and `?sort=` (`value`, the default, `potential`
/// or `tier`: largest first).
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    limit: Option<usize>,
    q: Option<String>,
    segmentation: Option<String>,
    sort: Option<String>,
}

fn outlet_row(snap: &Snapshot, a: &crate::tables::AssignmentRow) -> Value {
    let k = snap.kpi_brief(&a.outlet_id);
    json!({
        "outlet_id": a.outlet_id,
        "name": k.and_then(|k| k.name),
        "region": k.and_then(|k| k.region),
        "channel": k.and_then(|k| k.channel),
        "segmentation": snap.segmentation(),
        "segment_id": a.segment_id,
        "value": k.map_or(a.value, |k| k.net_value),
        "confidence": a.confidence,
        "change": a.change,
        "potential": a.potential,
        "tier": a.tier,
    })
}

pub(super) async fn segment_outlets(
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Value>>> {
    let snap = snapshot(&s, &name).await?;
    if !snap.profiles.iter().any(|p| p.segment_id == id) {
        return Err(ApiError::not_found(format!(
            "segmentation `{name}` has no segment `{id}`"
        )));
    }
    let mut rows: Vec<_> = snap
        .run
        .assignments
        .iter()
        .filter(|a| a.segment_id == id)
        .collect();
    match q.sort.as_deref().unwrap_or("value") {
        "value" => rows.sort_by(|a, b| {
            b.value
                .total_cmp(&a.value)
                .then(a.outlet_id.cmp(&b.outlet_id))
        }),
        // Largest potential first; `tier`: tier A first, by potential within a tier
        // (what a rep visits first; runs without tiers sort by potential alone).
        by @ ("potential" | "tier") => {
            let tiered = by == "tier";
            rows.sort_by(|a, b| {
                fn tier(x: &crate::tables::AssignmentRow, tiered: bool) -> &str {
                    if tiered {
                        &x.tier
                    } else {
                        ""
                    }
                }
                tier(a, tiered)
                    .cmp(tier(b, tiered))
                    .then(b.potential.total_cmp(&a.potential))
                    .then(a.outlet_id.cmp(&b.outlet_id))
            })
        }
        other => {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                format!("sort `{other}` is not one of value, potential, tier"),
            ))
        }
    }
    let limit = q.limit.unwrap_or(50).min(1000);
    Ok(Json(
        rows.into_iter()
            .take(limit)
            .map(|a| outlet_row(&snap, a))
            .collect(),
    ))
}

/// The published segmentations' snapshots (those with a run), each with its stored
/// definition ([`crate::snapshot::Snapshots::served`]); only `only` when given.
async fn all_snapshots(
    s: &AppState,
    only: Option<&str>,
) -> ApiResult<Vec<(std::sync::Arc<Snapshot>, Definition)>> {
    let mut served = s.snapshots.served(&s.cfg).await?;
    served.retain(|(snap, _)| only.is_none_or(|o| o == snap.segmentation()));
    Ok(served)
}

/// `GET /api/outlets?q=…`: outlets whose id or name contains `q`.
pub(super) async fn search(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Value>>> {
    let needle = q.q.unwrap_or_default().trim().to_lowercase();
    if needle.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "give `q`, part of an outlet id or name",
        ));
    }
    let limit = q.limit.unwrap_or(20).min(200);
    let mut out = Vec::new();
    for (snap, _) in all_snapshots(&s, q.segmentation.as_deref()).await? {
        for a in &snap.run.assignments {
            let name = snap
                .kpi_brief(&a.outlet_id)
                .and_then(|k| k.name)
                .unwrap_or_default();
            if a.outlet_id.to_lowercase().contains(&needle) || name.to_lowercase().contains(&needle)
            {
                out.push(outlet_row(&snap, a));
                if out.len() >= limit {
                    return Ok(Json(out));
                }
            }
        }
    }
    Ok(Json(out))
}

/// The outlet's spectrum against its segment's (its rows of `outlet_gaps.parquet`),
/// with the average over all assigned outlets (the segment's profile).
async fn spectrum(
    storage: &spectra_core::Storage,
    snap: &Snapshot,
    outlet_id: &str,
    segment_id: &str,
) -> Result<Vec<Value>, crate::Error> {
    // The segment's share and the all-outlet average per feature, from one profile.
    let avg: HashMap<&str, f64> = snap
        .profiles
        .iter()
        .find(|p| p.segment_id == segment_id)
        .map(|p| {
            p.spectrum
                .iter()
                .map(|f| (f.feature.as_str(), f.average))
                .collect()
        })
        .unwrap_or_default();
    let gaps =
        spectra_core::tables::runs::read_outlet_gaps(storage, &snap.run.latest, outlet_id).await?;
    let rows: BTreeMap<&str, (f64, f64)> = gaps
        .iter()
        .map(|g| (g.feature.as_str(), (g.outlet_share, g.segment_share)))
        .collect();
    let mut v: Vec<Value> = rows
        .into_iter()
        .map(|(feature, (o, sg))| {
            let a = avg.get(feature).copied().unwrap_or(0.0);
            json!({
                "feature": feature,
                "outlet_share": o,
                "segment_share": sg,
                "average": a,
                "gap": sg - o,
                "index_vs_segment": if sg > 0.0 { (1000.0 * o / sg).round() / 10.0 } else { 0.0 },
                "index": if a > 0.0 { (1000.0 * o / a).round() / 10.0 } else { 0.0 },
            })
        })
        .collect();
    v.sort_by(|a, b| {
        b["segment_share"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&a["segment_share"].as_f64().unwrap_or(0.0))
    });
    Ok(v)
}

/// `GET /api/outlets/{id}`.
pub(super) async fn outlet(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let mut snaps = s.snapshots.served(&s.cfg).await?;
    // One weekly history for every outlet and segmentation: the weeks ending at the
    // latest as-of of the runs served, built again when any of those runs changes (keyed
    // by one segmentation's run, requests for others' outlets built it again each time:
    // at a million outlets, seconds a request under one lock).
    let history_of = snaps
        .iter()
        .map(|(snap, _)| snap.run.latest.as_of)
        .max()
        .map(|to| {
            let mut runs: Vec<&str> = snaps
                .iter()
                .map(|(snap, _)| snap.run.latest.run_id.as_str())
                .collect();
            runs.sort_unstable();
            (to, runs.join(" "))
        });
    // The history covers every served run's outlets, whichever this request shows.
    let served: Vec<Arc<Snapshot>> = snaps.iter().map(|(snap, _)| snap.clone()).collect();
    let only = q.segmentation.as_deref();
    snaps.retain(|(snap, _)| only.is_none_or(|o| o == snap.segmentation()));
    let mut master = None;
    let mut views = Vec::new();
    for (snap, definition) in &snaps {
        let k = snap.kpi(&id);
        if master.is_none() {
            master = k.clone();
        }
        let k = k.as_ref();
        let Some(a) = snap.assignment(&id) else {
            continue;
        };
        let l = snap.label(&s.metadata, &a.segment_id);
        let seg = snap.profiles.iter().find(|p| p.segment_id == a.segment_id);
        // Pinned by hand (the stored definition's pins; a segmentation that no longer
        // runs keeps those of its last definition: see `Snapshots::served`).
        let pinned_to = definition.as_ref().and_then(|d| d.pins.get(&id).cloned());
        // The three per-outlet tables at once (a request each for the outlet's pages).
        // Per SKU: where the outlet has the most to win against its segment (null for
        // runs older than `sku_gaps.parquet`).
        let storage = s.snapshots.storage();
        let (spectrum, sku_gaps, recommendations) = tokio::try_join!(
            spectrum(storage, snap, &id, &a.segment_id),
            async {
                spectra_core::tables::sku_gaps::read_outlet(storage, &snap.run.latest, &id)
                    .await
                    .map_err(crate::Error::from)
            },
            snap.read_recommendation_message(storage, &id),
        )?;
        let sku_gaps = sku_gaps.map(|rows| {
            rows.iter()
                .map(|g| {
                    json!({
                        "sku_id": g.sku_id,
                        "sku_name": snap.sku_names.get(&g.sku_id),
                        "outlet_spend": g.outlet_spend,
                        "segment_share": g.segment_share,
                        "penetration": g.penetration,
                        "potential": g.potential,
                    })
                })
                .collect::<Vec<_>>()
        });
        views.push(json!({
            "pinned": pinned_to.as_deref() == Some(a.segment_id.as_str()),
            "pinned_to": pinned_to,
            "segmentation": snap.segmentation(),
            "run_id": snap.run.latest.run_id,
            "as_of": snap.run.latest.as_of.to_string(),
            "segment_id": a.segment_id,
            "segment_name": l.name,
            "tags": l.tags,
            "previous_segment_id": a.previous_segment_id,
            "change": a.change,
            // Why it moved in this run: its movements.parquet row (null otherwise; the
            // rows are in outlet id order, as the movements route pages them).
            "movement": snap.run.movements.binary_search_by(|m| m.outlet_id.as_str().cmp(&id))
                .ok().map(|i| super::movements::movement_json(&snap.run.movements[i])),
            "confidence": a.confidence,
            "value": k.map_or(a.value, |k| k.net_value),
            "lines": k.map_or(a.lines, |k| k.lines),
            "potential": a.potential,
            "tier": a.tier,
            "kpis": k.map(|k| json!({
                "net_value": k.net_value, "lines": k.lines, "invoices": k.invoices,
                "invoices_per_month": k.invoices_per_month, "avg_invoice_value": k.avg_invoice_value,
                "distinct_skus": k.distinct_skus, "days_since_last_invoice": k.days_since_last_invoice,
                "active_weeks": k.active_weeks, "return_share": k.return_share,
            })),
            "segment_kpis": seg.map(|p| &p.kpis),
            "spectrum": spectrum,
            "sku_gaps": sku_gaps,
            "recommendations": recommendations,
            // Why a list is empty for every outlet of the run (no earlier year, no
            // recent day in the daily table).
            "recommendation_notes": snap.run.model.recommendations.as_ref().map(|r| &r.notes),
        }));
    }
    if views.is_empty() {
        return Err(ApiError::not_found(format!(
            "outlet `{id}` is not assigned in any segmentation's latest run"
        )));
    }
    let m = master.unwrap_or_default();
    let mut history_note = None;
    let history = match history_of {
        // No weeks when a request read the runs before a newer one loaded, during a publish
        // cycle, or while the aggregator moves lines between days (`Later`).
        Some((to, runs)) => s
            .snapshots
            .histories()
            .get(
                s.snapshots.storage(),
                to,
                &runs,
                || {
                    served
                        .iter()
                        .flat_map(|snap| snap.run.assignments.iter().map(|a| a.outlet_id.as_str()))
                        .collect()
                },
                || served.iter().all(|snap| s.snapshots.is_cached(snap)),
            )
            .await?
            .map(|h| h.weeks(&id))
            .unwrap_or_else(|later| {
                // Why no weeks ([`crate::history::Histories::get`]).
                history_note = Some(later.note());
                Vec::new()
            })
            .into_iter()
            .map(|w| json!({"week": w.start.to_string(), "iso_week": w.start.iso_week().week(), "value": w.value, "lines": w.lines}))
            .collect(),
        None => Vec::new(),
    };
    Ok(Json(json!({
        "outlet_id": id,
        "name": m.name,
        "region": m.region,
        "channel": m.channel,
        "attributes": m.attributes,
        "history": history,
        "history_note": history_note,
        "segmentations": views,
    })))
}
