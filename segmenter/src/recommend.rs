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
    let mut members: HashMap<&str, Vec<&str>> = HashMap::new();
    for a in assignments {
        members.entry(&a.segment_id).or_default().push(&a.outlet_id);
    }
    let value: HashMap<&str, f64> = f
        .kpis
        .iter()
        .map(|k| (k.outlet_id.as_str(), k.net_value))
        .collect();
    let value_of = |o: &str| {
        value.get(o).copied().unwrap_or_else(|| {
            assignments
                .iter()
                .find(|a| a.outlet_id == o)
                .map_or(0.0, |a| a.value)
        })
    };

    // Per segment, per SKU statistics.
    let mut stats: HashMap<&str, BTreeMap<&str, SkuStat<'_>>> = HashMap::new();
    let mut bought: HashMap<&str, HashSet<&str>> = HashMap::new();
    for s in &f.sku_spend {
        let Some(seg) = seg_of.get(s.outlet_id.as_str()) else {
            continue;
        };
        let st = stats.entry(seg).or_default().entry(&s.sku_id).or_default();
        st.value += s.net_value;
        if s.net_value > 0.0 || s.quantity > 0.0 {
            st.buyers.insert(&s.outlet_id);
            st.quantity += s.quantity.max(0.0);
            bought.entry(&s.outlet_id).or_default().insert(&s.sku_id);
        }
    }
    let mut recent_bought: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut segments_with_recent: HashSet<&str> = HashSet::new();
    for d in recent {
        let Some(seg) = seg_of.get(d.outlet_id.as_str()) else {
            continue;
        };
        segments_with_recent.insert(seg);
        let st = stats.entry(seg).or_default().entry(&d.sku_id).or_default();
        st.recent_value += d.net_value;
        if d.net_value > 0.0 {
            st.recent_buyers.insert(&d.outlet_id);
            recent_bought
                .entry(&d.outlet_id)
                .or_default()
                .insert(&d.sku_id);
        }
    }
    let years: HashSet<i32> = seasonal
        .iter()
        .map(|d| chrono::Datelike::year(&d.date))
        .collect();
    for d in seasonal {
        let Some(seg) = seg_of.get(d.outlet_id.as_str()) else {
            continue;
        };
        let st = stats.entry(seg).or_default().entry(&d.sku_id).or_default();
        st.seasonal_value += d.net_value;
        st.seasonal_quantity += d.quantity.max(0.0);
        st.seasonal_buyers.insert(&d.outlet_id);
    }
    let window_weeks4 = (f64::from(window_days.max(1)) / HORIZON_DAYS as f64).max(1.0 / 4.0);
    let n_years = years.len().max(1) as f64;

    let mut out = BTreeMap::new();
    for (seg, outlets) in &members {
        let empty = BTreeMap::new();
        let st = stats.get(seg).unwrap_or(&empty);
        let n = outlets.len().max(1) as f64;
        let mut values: Vec<f64> = outlets.iter().map(|o| value_of(o)).collect();
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2].max(0.0);
        let seg_value: f64 = st.values().map(|s| s.value.max(0.0)).sum();
        let seasonal_total: f64 = st.values().map(|s| s.seasonal_value.max(0.0)).sum();
        let has_recent = segments_with_recent.contains(seg);
        for o in outlets {
            let size = if median > 0.0 {
                (value_of(o) / median).clamp(0.25, 4.0)
            } else {
                1.0
            };
            let qty = |per_buyer_4w: f64| (per_buyer_4w * size).round().max(1.0);
            let here = bought.get(o);
            let here_recent = recent_bought.get(o);
            let bought_here = |sku: &str| here.is_some_and(|h| h.contains(sku));
            let bought_lately = |sku: &str| here_recent.is_some_and(|h| h.contains(sku));
            let per_buyer =
                |s: &SkuStat<'_>| s.quantity / s.buyers.len().max(1) as f64 / window_weeks4;
            let mut r = Recommendations::default();
            for (sku, s) in st {
                let pen = s.buyers.len() as f64 / n;
                if pen >= 0.5
                    && (if has_recent {
                        !bought_lately(sku)
                    } else {
                        !bought_here(sku)
                    })
                {
                    r.should_have.push(RecItem {
                        sku_id: sku.to_string(),
                        score: round2(pen),
                        suggested_quantity: qty(per_buyer(s)),
                    });
                } else if pen >= 0.1 && !bought_here(sku) {
                    r.new_for_outlet.push(RecItem {
                        sku_id: sku.to_string(),
                        score: round2(pen),
                        suggested_quantity: qty(per_buyer(s)),
                    });
                }
                let rate = s.value.max(0.0) / window_weeks4;
                if has_recent && rate > 0.0 && s.recent_buyers.len() >= 2 && !bought_lately(sku) {
                    let growth = s.recent_value / rate;
                    if growth >= 1.1 {
                        r.popular_in_segment.push(RecItem {
                            sku_id: sku.to_string(),
                            score: round2(growth),
                            suggested_quantity: qty(per_buyer(s)),
                        });
                    }
                }
                if seasonal_total > 0.0 && s.seasonal_value > 0.0 {
                    let share = s.seasonal_value / seasonal_total;
                    let now = if seg_value > 0.0 {
                        s.value.max(0.0) / seg_value
                    } else {
                        0.0
                    };
                    let lift = if now > 0.0 {
                        (share / now).min(10.0)
                    } else {
                        10.0
                    };
                    if share >= 0.01 && lift >= 1.2 {
                        let q =
                            s.seasonal_quantity / s.seasonal_buyers.len().max(1) as f64 / n_years;
                        r.seasonal_soon.push(RecItem {
                            sku_id: sku.to_string(),
                            score: round2(lift),
                            suggested_quantity: qty(q),
                        });
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
            out.insert(o.to_string(), r);
        }
    }
    out
}
