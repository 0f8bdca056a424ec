//! Outlet recommendations (contract §3.3), computed once per run where their inputs
//! are read (the window's SKU spend and the daily table's recent and seasonal days)
//! and stored with the run (`recommendations.parquet`): four SKU lists per outlet, each item with a
//! score and a quantity suggested for four weeks, scaled to the outlet's size (its
//! value against the segment's median outlet).
//!
//! - `new_for_outlet`: bought by many of the segment, never bought here in the window;
//!   score = the segment's penetration.
//! - `should_have`: bought by most (≥ half) of the segment, not bought here in the last
//!   four weeks; score = penetration.
//! - `popular_in_segment`: rising now: the segment's last four weeks against its
//!   window's four-weekly rate; score = that ratio.
//! - `seasonal_soon`: what the segment bought in the coming four weeks of earlier
//!   years, over-represented against the current window; score = that lift. Empty when
//!   the daily table holds no earlier years.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{Duration, NaiveDate};
use spectra_core::tables::features::{self as tables, DailyRow, WindowFeatures};
use spectra_core::tables::runs::{AssignmentRow, RecItem, Recommendations};
use spectra_core::Storage;

use crate::Error;

/// Items per list.
pub const LIST_LEN: usize = 10;
/// "Lately" and "the coming weeks": four weeks.
pub const HORIZON_DAYS: i64 = 28;
/// Earlier years looked at for `seasonal_soon`.
pub const SEASONAL_YEARS: i64 = 3;

/// An inclusive range of days.
pub type DateRange = (NaiveDate, NaiveDate);

/// The daily-table date ranges recommendations read: the last four weeks up to the
/// as-of date, and the coming four weeks of each earlier year.
pub fn daily_ranges(as_of: NaiveDate) -> (Vec<DateRange>, Vec<DateRange>) {
    let recent = vec![(as_of - Duration::days(HORIZON_DAYS - 1), as_of)];
    let seasonal = (1..=SEASONAL_YEARS)
        .map(|y| {
            let start = as_of + Duration::days(1) - Duration::days(365 * y);
            (start, start + Duration::days(HORIZON_DAYS - 1))
        })
        .collect();
    (recent, seasonal)
}

#[derive(Default)]
struct SkuStat<'a> {
    buyers: HashSet<&'a str>,
    quantity: f64,
    value: f64,
    recent_value: f64,
    recent_buyers: HashSet<&'a str>,
    seasonal_value: f64,
    seasonal_quantity: f64,
    seasonal_buyers: HashSet<&'a str>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Reads the daily rows the recommendations of a run at `as_of` need and computes
/// them for every assigned outlet.
pub async fn for_run(
    storage: &Storage,
    as_of: NaiveDate,
    assignments: &[AssignmentRow],
    f: &WindowFeatures,
    window_days: u32,
) -> Result<BTreeMap<String, Recommendations>, Error> {
    let (recent, seasonal) = daily_ranges(as_of);
    let mut ranges = recent.clone();
    ranges.extend(seasonal.iter().copied());
    let daily = tables::read_daily(storage, &ranges).await?;
    let in_ranges = |r: &[DateRange], d: NaiveDate| r.iter().any(|(a, b)| *a <= d && d <= *b);
    let (recent_rows, other): (Vec<DailyRow>, Vec<DailyRow>) =
        daily.into_iter().partition(|d| in_ranges(&recent, d.date));
    let seasonal_rows: Vec<DailyRow> = other
        .into_iter()
        .filter(|d| in_ranges(&seasonal, d.date))
        .collect();
    Ok(compute(
        assignments,
        f,
        &recent_rows,
        &seasonal_rows,
        window_days,
    ))
}

/// Per segment, per SKU: what the segment's outlets bought in the window, lately and
/// in the coming weeks of earlier years; and what each outlet bought.
#[derive(Default)]
struct Purchases<'a> {
    stats: HashMap<&'a str, BTreeMap<&'a str, SkuStat<'a>>>,
    bought: HashMap<&'a str, HashSet<&'a str>>,
    recent_bought: HashMap<&'a str, HashSet<&'a str>>,
    segments_with_recent: HashSet<&'a str>,
    years: HashSet<i32>,
}

impl<'a> Purchases<'a> {
    fn gather(
        seg_of: &HashMap<&'a str, &'a str>,
        f: &'a WindowFeatures,
        recent: &'a [DailyRow],
        seasonal: &'a [DailyRow],
    ) -> Self {
        let mut p = Purchases::default();
        for s in &f.sku_spend {
            let Some(seg) = seg_of.get(s.outlet_id.as_str()) else {
                continue;
            };
            let st = p
                .stats
                .entry(seg)
                .or_default()
                .entry(&s.sku_id)
                .or_default();
            st.value += s.net_value;
            if s.net_value > 0.0 || s.quantity > 0.0 {
                st.buyers.insert(&s.outlet_id);
                st.quantity += s.quantity.max(0.0);
                p.bought.entry(&s.outlet_id).or_default().insert(&s.sku_id);
            }
        }
        for d in recent {
            let Some(seg) = seg_of.get(d.outlet_id.as_str()) else {
                continue;
            };
            p.segments_with_recent.insert(seg);
            let st = p
                .stats
                .entry(seg)
                .or_default()
                .entry(&d.sku_id)
                .or_default();
            st.recent_value += d.net_value;
            if d.net_value > 0.0 {
                st.recent_buyers.insert(&d.outlet_id);
                p.recent_bought
                    .entry(&d.outlet_id)
                    .or_default()
                    .insert(&d.sku_id);
            }
        }
        for d in seasonal {
            let Some(seg) = seg_of.get(d.outlet_id.as_str()) else {
                continue;
            };
            p.years.insert(chrono::Datelike::year(&d.date));
            let st = p
                .stats
                .entry(seg)
                .or_default()
                .entry(&d.sku_id)
                .or_default();
            st.seasonal_value += d.net_value;
            st.seasonal_quantity += d.quantity.max(0.0);
            st.seasonal_buyers.insert(&d.outlet_id);
        }
        p
    }
}

/// One segment as its outlets' lists see it.
struct Segment<'s, 'a> {
    stats: &'s BTreeMap<&'a str, SkuStat<'a>>,
    outlets: f64,
    value: f64,
    seasonal_total: f64,
    has_recent: bool,
    window_weeks4: f64,
    years: f64,
}

/// The four lists of one outlet of `seg`; `size` scales the quantities.
fn outlet_lists(
    seg: &Segment<'_, '_>,
    bought_here: impl Fn(&str) -> bool,
    bought_lately: impl Fn(&str) -> bool,
    size: f64,
) -> Recommendations {
    let qty = |per_buyer_4w: f64| (per_buyer_4w * size).round().max(1.0);
    let per_buyer = |s: &SkuStat<'_>| s.quantity / s.buyers.len().max(1) as f64 / seg.window_weeks4;
    let item = |sku: &str, score: f64, quantity: f64| RecItem {
        sku_id: sku.to_owned(),
        score: round2(score),
        suggested_quantity: qty(quantity),
    };
    let mut r = Recommendations::default();
    for (sku, s) in seg.stats {
        let pen = s.buyers.len() as f64 / seg.outlets;
        let missing = if seg.has_recent {
            !bought_lately(sku)
        } else {
            !bought_here(sku)
        };
        if pen >= 0.5 && missing {
            r.should_have.push(item(sku, pen, per_buyer(s)));
        } else if pen >= 0.1 && !bought_here(sku) {
            r.new_for_outlet.push(item(sku, pen, per_buyer(s)));
        }
        let rate = s.value.max(0.0) / seg.window_weeks4;
        if seg.has_recent && rate > 0.0 && s.recent_buyers.len() >= 2 && !bought_lately(sku) {
            let growth = s.recent_value / rate;
            if growth >= 1.1 {
                r.popular_in_segment.push(item(sku, growth, per_buyer(s)));
            }
        }
        if seg.seasonal_total > 0.0 && s.seasonal_value > 0.0 {
            let share = s.seasonal_value / seg.seasonal_total;
            let now = if seg.value > 0.0 {
                s.value.max(0.0) / seg.value
            } else {
                0.0
            };
            let lift = if now > 0.0 {
                (share / now).min(10.0)
            } else {
                10.0
            };
            if share >= 0.01 && lift >= 1.2 {
                let q = s.seasonal_quantity / s.seasonal_buyers.len().max(1) as f64 / seg.years;
                r.seasonal_soon.push(item(sku, lift, q));
            }
        }
    }
    for list in [
        &mut r.new_for_outlet,
        &mut r.should_have,
        &mut r.popular_in_segment,
        &mut r.seasonal_soon,
    ] {
        list.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.sku_id.cmp(&b.sku_id)));
        list.truncate(LIST_LEN);
    }
    r
}

/// Computes every assigned outlet's recommendations.
pub fn compute(
    assignments: &[AssignmentRow],
    f: &WindowFeatures,
    recent: &[DailyRow],
    seasonal: &[DailyRow],
    window_days: u32,
) -> BTreeMap<String, Recommendations> {
    let seg_of: HashMap<&str, &str> = assignments
        .iter()
        .map(|a| (a.outlet_id.as_str(), a.segment_id.as_str()))
        .collect();
    let mut members: BTreeMap<&str, Vec<&AssignmentRow>> = BTreeMap::new();
    for a in assignments {
        members.entry(&a.segment_id).or_default().push(a);
    }
    let value: HashMap<&str, f64> = f
        .kpis
        .iter()
        .map(|k| (k.outlet_id.as_str(), k.net_value))
        .collect();
    let value_of = |a: &AssignmentRow| value.get(a.outlet_id.as_str()).copied().unwrap_or(a.value);
    let p = Purchases::gather(&seg_of, f, recent, seasonal);
    let empty = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (seg_id, outlets) in &members {
        let stats = p.stats.get(seg_id).unwrap_or(&empty);
        let seg = Segment {
            stats,
            outlets: outlets.len().max(1) as f64,
            value: stats.values().map(|s| s.value.max(0.0)).sum(),
            seasonal_total: stats.values().map(|s| s.seasonal_value.max(0.0)).sum(),
            has_recent: p.segments_with_recent.contains(seg_id),
            window_weeks4: (f64::from(window_days.max(1)) / HORIZON_DAYS as f64).max(1.0 / 4.0),
            years: p.years.len().max(1) as f64,
        };
        let mut values: Vec<f64> = outlets.iter().map(|a| value_of(a)).collect();
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2].max(0.0);
        for a in outlets {
            let o = a.outlet_id.as_str();
            let size = if median > 0.0 {
                (value_of(a) / median).clamp(0.25, 4.0)
            } else {
                1.0
            };
            let here = p.bought.get(o);
            let lately = p.recent_bought.get(o);
            let r = outlet_lists(
                &seg,
                |sku| here.is_some_and(|h| h.contains(sku)),
                |sku| lately.is_some_and(|h| h.contains(sku)),
                size,
            );
            out.insert(o.to_owned(), r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use spectra_core::tables::features::{KpiRow, SkuSpendRow};
    use spectra_core::tables::runs::Change;

    use super::*;

    fn assign(o: &str, value: f64) -> AssignmentRow {
        AssignmentRow {
            outlet_id: o.into(),
            segment_id: "S1".into(),
            previous_segment_id: None,
            change: Change::New,
            distance: 0.0,
            confidence: 1.0,
            value,
            lines: 1,
            potential: 0.0,
        }
    }

    fn spend(o: &str, sku: &str, value: f64, quantity: f64) -> SkuSpendRow {
        SkuSpendRow {
            outlet_id: o.into(),
            sku_id: sku.into(),
            feature: "f".into(),
            net_value: value,
            quantity,
            lines: 1,
        }
    }

    /// Four outlets buy `milk`, three of them `tea`; the fourth (twice as big as the
    /// median) lacks `tea`: it should have it, with a quantity scaled to its size; an
    /// outlet never gets what it already buys.
    #[test]
    fn what_most_of_the_segment_buys_is_recommended_where_missing() {
        let outlets = ["a", "b", "c", "d"];
        let assignments: Vec<AssignmentRow> = outlets
            .iter()
            .map(|o| assign(o, if *o == "d" { 200.0 } else { 100.0 }))
            .collect();
        let mut f = WindowFeatures::default();
        for o in outlets {
            f.sku_spend.push(spend(o, "milk", 50.0, 10.0));
            if o != "d" {
                f.sku_spend.push(spend(o, "tea", 50.0, 13.0));
            }
            f.kpis.push(KpiRow {
                outlet_id: o.into(),
                net_value: if o == "d" { 200.0 } else { 100.0 },
                ..Default::default()
            });
        }
        let recs = compute(&assignments, &f, &[], &[], 28);
        let d = &recs["d"];
        assert_eq!(d.should_have.len(), 1, "{d:?}");
        assert_eq!(d.should_have[0].sku_id, "tea");
        assert_eq!(d.should_have[0].score, 0.75, "three of four outlets buy it");
        // 13 units per buyer per four weeks, times d's size (2× the median).
        assert_eq!(d.should_have[0].suggested_quantity, 26.0);
        for o in ["a", "b", "c"] {
            let r = &recs[o];
            assert!(
                r.should_have.is_empty() && r.new_for_outlet.is_empty(),
                "{o}: {r:?}"
            );
        }
        assert!(
            recs.values().all(|r| r.seasonal_soon.is_empty()),
            "no earlier years, no seasonal list"
        );
    }
}
