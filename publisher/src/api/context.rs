//! `GET /api/segmentations/{name}/segments/{id}/context[?region=|?channel=|?distributor=]`:
//! the segment in context, from the published run's `contexts.parquet`
//! ([`spectra_core::tables::context`]):
//! - `product`: per product level (category, subcategory, brand, sku, each SKU
//!   attribute), each listed value's spend, share of the segment's spend, the same
//!   share over all outlets (`average`), the index (100 = average), the outlets that
//!   bought it and the penetration;
//! - `outlet`: per outlet field (region, channel, distributor, each attribute, numeric
//!   ones binned), each value's outlets, share of the segment's outlets, average, index
//!   and value.
//!
//! At most one filter: the segment and the average are then both taken over the
//! outlets with that region, channel or main distributor. `filters` lists the values
//! each can take.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use spectra_core::tables::context::{self, ContextRow, FILTER_FIELDS, OUTLET, PRODUCT, TOTAL};
use spectra_core::tables::profile::index;

use super::{snapshot, ApiError, ApiResult, AppState};

/// `GET …/segments/{id}/context`.
pub(super) async fn context(
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    if let Some(k) = q.keys().find(|k| !FILTER_FIELDS.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown parameter `{k}`: filter by one of {}",
            FILTER_FIELDS.join(", ")
        )));
    }
    if q.len() > 1 {
        return Err(bad(
            "one filter at a time (region, channel or distributor)".into()
        ));
    }
    let filter = q
        .iter()
        .next()
        .map(|(k, v)| format!("{k}={v}"))
        .unwrap_or_default();
    let snap = snapshot(&s, &name).await?;
    if !snap.profiles.iter().any(|p| p.segment_id == id) {
        return Err(ApiError::not_found(format!(
            "segmentation `{name}` has no segment `{id}`"
        )));
    }
    let latest = &snap.run.latest;
    let Some(ctx) = context::read(s.snapshots.storage(), latest, &filter, &id).await? else {
        return Err(ApiError::not_found(format!(
            "run {} has no contexts (it was written before they existed); the next run has them",
            latest.run_id
        )));
    };
    let total = |seg: &str| {
        ctx.rows
            .iter()
            .find(|r| r.dimension == TOTAL && r.segment_id == seg)
            .map_or((0, 0.0), |r| (r.outlets, r.spend))
    };
    let (all_outlets, all_value) = total("");
    if !filter.is_empty() && all_outlets == 0 {
        let (field, value) = q.iter().next().expect("one filter");
        let listed = ctx
            .filters
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, v)| v.join(", "))
            .unwrap_or_default();
        return Err(ApiError::not_found(format!(
            "no outlet of run {} has {field} `{value}`; it has: {listed}",
            latest.run_id
        )));
    }
    let (outlets, value) = total(&id);
    let dims = |prefix: &str| -> Vec<Value> {
        let mut names: Vec<&str> = Vec::new();
        for r in &ctx.rows {
            if let Some(d) = r.dimension.strip_prefix(prefix) {
                if !names.contains(&d) {
                    names.push(d);
                }
            }
        }
        names
            .into_iter()
            .map(|d| {
                let full = format!("{prefix}{d}");
                let of = |seg: &str| -> Vec<&ContextRow> {
                    ctx.rows
                        .iter()
                        .filter(|r| r.dimension == full && r.segment_id == seg)
                        .collect()
                };
                let values = dimension(prefix == PRODUCT, &of(&id), &of(""), outlets, |v| {
                    (d == "sku")
                        .then(|| snap.sku_names.get(v).cloned())
                        .flatten()
                });
                json!({"dimension": d, "values": values})
            })
            .collect()
    };
    let filters: serde_json::Map<String, Value> = ctx
        .filters
        .iter()
        .map(|(f, v)| ((*f).to_owned(), json!(v)))
        .collect();
    Ok(Json(json!({
        "segmentation": name,
        "run_id": latest.run_id,
        "as_of": latest.as_of,
        "segment_id": id,
        "filter": q.iter().next().map(|(k, v)| json!({"field": k, "value": v})),
        "filters": filters,
        "outlets": outlets,
        "value": value,
        "all_outlets": all_outlets,
        "all_value": all_value,
        "product": dims(PRODUCT),
        "outlet": dims(OUTLET),
    })))
}

/// One dimension's values, the segment's largest share first. Product levels share
/// spend (and carry buyers and penetration); outlet fields share outlets (and carry
/// their value).
fn dimension(
    product: bool,
    seg: &[&ContextRow],
    all: &[&ContextRow],
    seg_outlets: i64,
    name: impl Fn(&str) -> Option<String>,
) -> Vec<Value> {
    let weight = |r: &ContextRow| if product { r.spend } else { r.outlets as f64 };
    let sum = |rows: &[&ContextRow]| rows.iter().map(|r| weight(r)).sum::<f64>();
    let (seg_total, all_total) = (sum(seg), sum(all));
    let ratio = |x: f64, t: f64| if t != 0.0 { x / t } else { 0.0 };
    let mut out: Vec<(f64, Value)> = all
        .iter()
        .map(|a| {
            let s = seg.iter().find(|r| r.value == a.value);
            let share = ratio(s.map_or(0.0, |r| weight(r)), seg_total);
            let average = ratio(weight(a), all_total);
            let (buyers, spend) = s.map_or((0, 0.0), |r| (r.outlets, r.spend));
            let mut v = json!({
                "value": a.value,
                "share": share,
                "average": average,
                "index": index(share, average),
                "outlets": buyers,
            });
            if product {
                v["spend"] = json!(spend);
                v["penetration"] = json!(ratio(buyers as f64, seg_outlets as f64));
                if let Some(n) = name(&a.value) {
                    v["name"] = json!(n);
                }
            } else {
                v["outlet_value"] = json!(spend);
            }
            (share, v)
        })
        .collect();
    out.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1["value"].as_str().cmp(&b.1["value"].as_str()))
    });
    out.into_iter().map(|x| x.1).collect()
}
