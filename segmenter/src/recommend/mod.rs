//! Outlet recommendations (contract §3.3), computed once per run where their inputs
//! are read (the window's SKU spend and the daily table's recent and seasonal days)
//! and stored with the run (`recommendations.parquet`): four SKU lists per outlet,
//! each item with a score, a quantity for the next four weeks and a one-sentence reason.
//! The rules, one per list (the README's "Recommendations" repeats them):
//!
//! - `should_have`: bought by at least half of the segment's outlets in the window,
//!   not bought here in the last four weeks (in the window, when the daily table has
//!   no purchase of the segment in the last four weeks); score = penetration.
//! - `new_for_outlet`: bought by at least a tenth (and less than half, or already on
//!   `should_have`'s side of the rule) of the segment, never bought here in the window;
//!   score = penetration.
//! - `popular_in_segment`: rising now — the segment's spend on it in the last four
//!   weeks at least 1.1 × its four-weekly average over the window, bought by at least
//!   two of its outlets lately, not bought here lately; score = that ratio.
//! - `seasonal_soon`: what the segment bought in the coming four weeks of up to three
//!   earlier years, at least 1% of its spend then and at least 1.2 × its share of the
//!   segment's spend now; score = that lift (at most 10).
//!
//! Quantities: the segment's typical order — the median, over the segment's outlets
//! that bought the SKU, of their four-weekly quantity (for `seasonal_soon`, of what
//! they bought in those weeks, per year) — times the outlet's scale: its size (its value
//! over the segment's median outlet value) × (1 + the share of its potential in its
//! value plus potential), between ¼ and 4. An outlet that buys all it could keeps its
//! size; one that realises little of its potential gets up to twice it. At least one
//! unit.
//!
//! A list that is empty for every outlet because the data cannot fill it (no earlier
//! year in the daily table, no recent day) says so in the run's `model.json`
//! (`recommendations.notes`), which the 360 view shows.

use std::collections::BTreeMap;

use foldhash::HashMap;

use bytes::Bytes;
use chrono::{Duration, NaiveDate};
use spectra_core::tables::features as tables;
use spectra_core::tables::model::RecommendationReport;
use spectra_core::tables::runs::{AssignmentRow, RecItem, Recommendations};
use spectra_core::tables::{recommendations, rolling};
use spectra_core::Storage;

use crate::features::{Bought, FeatureSet};
use crate::gaps::median;
use crate::Error;

mod purchases;

pub use purchases::Daily;
use purchases::{Purchases, SkuStat};

/// Items per list.
pub const LIST_LEN: usize = 10;
/// "Lately" and "the coming weeks": four weeks.
pub const HORIZON_DAYS: i64 = 28;
/// Earlier years looked at for `seasonal_soon`.
pub const SEASONAL_YEARS: i64 = 3;

/// How long a run waits for an aggregation pass that moves lines between days to finish
/// its re-roll before it fails (and is tried again at the next poll): longer than a daily
/// pass takes, short enough that a run (and the service's shutdown, which lets a run
/// end) is not held for long by a full rebuild or by a pass that stopped part-way.
pub const DAILY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

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

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A share as a whole percentage for a sentence.
fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// Every outlet's recommendations and what they were computed from.
pub type Computed = (BTreeMap<String, Recommendations>, RecommendationReport);

/// Streams the daily files the recommendations of a run at `as_of` need (the last
/// four weeks and the coming four weeks of earlier years), computes them for every
/// assigned outlet and encodes them as the run's `recommendations.parquet`, an outlet
/// at a time.
pub async fn for_run(
    storage: &Storage,
    as_of: NaiveDate,
    assignments: &[AssignmentRow],
    fs: &FeatureSet,
    window_days: u32,
) -> Result<(Bytes, RecommendationReport), Error> {
    let (recent, seasonal) = daily_ranges(as_of);
    let mut ranges = recent.clone();
    ranges.extend(seasonal.iter().copied());
    let in_ranges = |r: &[DateRange], d: NaiveDate| r.iter().any(|(a, b)| *a <= d && d <= *b);
    let columns = ["outlet_id", "sku_id", "net_value", "quantity"];
    // Read while no aggregation pass is moving lines between days (and again if one
    // did meanwhile): a moved line is counted on one day, never on both or neither.
    let (ranges, columns, recent_days, seasonal) = (&ranges, &columns, &recent, &seasonal);
    let daily = rolling::settled(storage, DAILY_PATIENCE, move || async move {
        let mut daily = Daily::new(fs);
        tables::stream_daily(storage, ranges, Some(columns), |date, c| {
            let recent = in_ranges(recent_days, date);
            if !recent && !in_ranges(seasonal, date) {
                return Ok(());
            }
            let (o, s) = (c.id_strings("outlet_id")?, c.id_strings("sku_id")?);
            let (v, q) = (c.float("net_value")?, c.float("quantity")?);
            for k in 0..c.len() {
                daily.add(recent, date, o.value(k), s.value(k), v[k], q[k]);
            }
            Ok(())
        })
        .await?;
        Ok::<_, spectra_core::Error>(daily)
    })
    .await?
    .map_err(Error::DailyUnsettled)?;
    let (encoded, report) = each_outlet(assignments, fs, daily, window_days, |lists| {
        recommendations::encode(lists)
    });
    Ok((encoded?, report))
}

/// One segment as its outlets' lists see it: each list's candidates ranked once, by
/// their SKU-side score (penetration, growth, lift), which no outlet changes. An
/// outlet's list is then the first [`LIST_LEN`] candidates that pass its outlet-side
/// test, read off the ranking: the same ten a sort of the outlet's own candidates
/// would keep, at a cost that does not grow with the catalogue.
struct Segment {
    has_recent: bool,
    /// SKUs bought by at least a tenth of the segment (`should_have`,
    /// `new_for_outlet`): (candidate, penetration).
    by_penetration: Vec<(Candidate, f64)>,
    /// Rising SKUs (`popular_in_segment`).
    rising: Vec<Candidate>,
    /// Seasonal SKUs (`seasonal_soon`; no outlet-side test: the first ten only).
    seasonal: Vec<Candidate>,
}

/// Totals of one segment the SKU-side rules compare with.
struct Totals {
    value: f64,
    seasonal_total: f64,
    has_recent: bool,
    window_weeks4: f64,
}

impl Totals {
    /// The segment's spend on a SKU in the last four weeks over its four-weekly
    /// average, when the segment has recent days, the SKU a rate and two recent buyers.
    fn growth(&self, s: &SkuStat) -> Option<f64> {
        let rate = s.value.max(0.0) / self.window_weeks4;
        (self.has_recent && rate > 0.0 && s.recent_buyers >= 2).then(|| s.recent_value / rate)
    }

    /// `(share, lift)` of a SKU that is seasonal soon: its share of the segment's spend
    /// in the coming four weeks of earlier years (≥ 1%) over its share now (lift ≥ 1.2,
    /// at most 10).
    fn seasonal_lift(&self, s: &SkuStat) -> Option<(f64, f64)> {
        if self.seasonal_total <= 0.0 || s.seasonal_value <= 0.0 {
            return None;
        }
        let share = s.seasonal_value / self.seasonal_total;
        let now = if self.value > 0.0 {
            s.value.max(0.0) / self.value
        } else {
            0.0
        };
        let lift = if now > 0.0 {
            (share / now).min(10.0)
        } else {
            10.0
        };
        (share >= 0.01 && lift >= 1.2).then_some((share, lift))
    }
}

impl Segment {
    /// A segment of `outlets` outlets with these SKU statistics; `window_weeks4` four-week
    /// periods in the window, `years` earlier years read; `skus` names the SKU indices
    /// (ties of a score are ranked by SKU id).
    fn new(
        stats: &[SkuStat],
        skus: &[String],
        outlets: f64,
        has_recent: bool,
        window_weeks4: f64,
        years: f64,
    ) -> Self {
        // Each SKU's typical quantity: the median over its buyers, once per segment (a
        // median per outlet × SKU made the lists quadratic in the segment's outlets).
        let per = |q: &[f32], d: f64| median(q.iter().map(|&x| f64::from(x) / d).collect());
        let totals = Totals {
            value: stats.iter().map(|s| s.value.max(0.0)).sum(),
            seasonal_total: stats.iter().map(|s| s.seasonal_value.max(0.0)).sum(),
            has_recent,
            window_weeks4,
        };
        let candidate = |sku: u32, score: f64, typical: f64, why: Why| Candidate {
            sku,
            score: round2(score),
            typical,
            why,
        };
        let (mut by_penetration, mut rising, mut seasonal) = (Vec::new(), Vec::new(), Vec::new());
        for (sku, s) in (0u32..).zip(stats) {
            let pen = f64::from(s.buyers) / outlets;
            let rate = || per(&s.quantity, window_weeks4);
            if pen >= 0.1 {
                let c = candidate(sku, pen, rate(), Why::Share(pen, ""));
                by_penetration.push((c, pen));
            }
            if let Some(growth) = totals.growth(s).filter(|g| *g >= 1.1) {
                let why = Why::Rising(growth, s.recent_buyers);
                rising.push(candidate(sku, growth, rate(), why));
            }
            if let Some((share, lift)) = totals.seasonal_lift(s) {
                let typical = if s.seasonal_quantity.is_empty() {
                    0.0
                } else {
                    per(&s.seasonal_quantity, years)
                };
                seasonal.push(candidate(sku, lift, typical, Why::Seasonal(share, lift)));
            }
        }
        let rank = |a: &Candidate, b: &Candidate| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| skus[a.sku as usize].cmp(&skus[b.sku as usize]))
        };
        by_penetration.sort_by(|a, b| rank(&a.0, &b.0));
        rising.sort_by(rank);
        seasonal.sort_by(rank);
        seasonal.truncate(LIST_LEN);
        Segment {
            has_recent,
            by_penetration,
            rising,
            seasonal,
        }
    }
}

/// Why a SKU is on a list: the numbers its one sentence is made of.
#[derive(Clone, Copy)]
enum Why {
    /// Penetration in the segment, and since when the outlet lacks it.
    Share(f64, &'static str),
    /// Growth and the segment's outlets that bought it lately.
    Rising(f64, u32),
    /// Share of the coming weeks' spend in earlier years, and its lift.
    Seasonal(f64, f64),
}

impl Why {
    fn sentence(self) -> String {
        match self {
            Why::Share(pen, when) => {
                format!("{} of the segment's outlets buy it; {when}", percent(pen))
            }
            Why::Rising(growth, buyers) => format!(
                "the segment's spend on it in the last four weeks is {growth:.1}× its four-weekly average; {buyers} of its outlets bought it lately, not this one"
            ),
            Why::Seasonal(share, lift) => format!(
                "{:.1}% of the segment's spend in the coming four weeks of earlier years, {lift:.1}× its share now",
                share * 100.0
            ),
        }
    }
}

/// The sentences written so far, by reason: a run at a million outlets has about 30M
/// items and a few hundred distinct reasons, so each is formatted once and copied.
#[derive(Default)]
struct Sentences(HashMap<(u8, u64, u64, &'static str), String>);

impl Sentences {
    fn say(&mut self, why: Why) -> String {
        let key = match why {
            Why::Share(pen, when) => (0, pen.to_bits(), 0, when),
            Why::Rising(growth, buyers) => (1, growth.to_bits(), u64::from(buyers), ""),
            Why::Seasonal(share, lift) => (2, share.to_bits(), lift.to_bits(), ""),
        };
        self.0.entry(key).or_insert_with(|| why.sentence()).clone()
    }
}

/// A SKU that may enter a list: its sentence is written only if it is kept.
#[derive(Clone, Copy)]
struct Candidate {
    sku: u32,
    /// The rank score, rounded to two decimals as the item shows it.
    score: f64,
    typical: f64,
    why: Why,
}

/// The four lists of one outlet of `seg`; `scale` (its value and potential against
/// the segment's median outlet) scales the segment's typical quantities; `skus` names
/// the SKU indices. Each list takes the first ten of the segment's ranking that pass
/// the outlet's test; only those become items with an id and a sentence.
fn outlet_lists(
    seg: &Segment,
    skus: &[String],
    bought_here: impl Fn(u32) -> bool,
    bought_lately: impl Fn(u32) -> bool,
    scale: f64,
    said: &mut Sentences,
) -> Recommendations {
    let never = "never bought here in the window";
    let (mut should_have, mut new_for_outlet) = (Vec::new(), Vec::new());
    for &(c, pen) in &seg.by_penetration {
        if should_have.len() == LIST_LEN && new_for_outlet.len() == LIST_LEN {
            break;
        }
        let missing = if seg.has_recent {
            !bought_lately(c.sku)
        } else {
            !bought_here(c.sku)
        };
        if pen >= 0.5 && missing {
            if should_have.len() < LIST_LEN {
                let when = if seg.has_recent && bought_here(c.sku) {
                    "not bought here in the last four weeks"
                } else {
                    never
                };
                should_have.push(Candidate {
                    why: Why::Share(pen, when),
                    ..c
                });
            }
        } else if new_for_outlet.len() < LIST_LEN && !bought_here(c.sku) {
            new_for_outlet.push(Candidate {
                why: Why::Share(pen, never),
                ..c
            });
        }
    }
    let popular_in_segment = seg
        .rising
        .iter()
        .filter(|c| !bought_lately(c.sku))
        .take(LIST_LEN)
        .copied();
    let mut items = |list: &mut dyn Iterator<Item = Candidate>| -> Vec<RecItem> {
        list.map(|c| RecItem {
            sku_id: skus[c.sku as usize].clone(),
            score: c.score,
            suggested_quantity: (c.typical * scale).round().max(1.0),
            reason: said.say(c.why),
        })
        .collect()
    };
    Recommendations {
        new_for_outlet: items(&mut new_for_outlet.into_iter()),
        should_have: items(&mut should_have.into_iter()),
        popular_in_segment: items(&mut popular_in_segment.into_iter()),
        seasonal_soon: items(&mut seg.seasonal.iter().copied()),
    }
}

/// Why lists stay empty for every outlet: what the daily table lacked.
fn report(p: &Purchases, assigned: bool) -> RecommendationReport {
    let mut notes = BTreeMap::new();
    if assigned && p.years.is_empty() {
        notes.insert(
            "seasonal_soon".to_owned(),
            format!(
                "the daily table holds no purchase in the coming four weeks of the last {SEASONAL_YEARS} years; the list fills once the history reaches a year back"
            ),
        );
    }
    if assigned && p.recent_days.is_empty() {
        notes.insert(
            "popular_in_segment".to_owned(),
            "the daily table holds no purchase in the last four weeks; nothing can be rising"
                .to_owned(),
        );
    }
    RecommendationReport {
        recent_days: p.recent_days.len(),
        seasonal_years: p.years.iter().copied().collect(),
        notes,
    }
}

/// Computes every assigned outlet's recommendations from the window's SKU spend (in
/// `fs`) and the daily table's purchases (`daily`), all held at once (tests; a run
/// streams them, [`each_outlet`]).
pub fn compute(
    assignments: &[AssignmentRow],
    fs: &FeatureSet,
    daily: Daily<'_>,
    window_days: u32,
) -> Computed {
    each_outlet(assignments, fs, daily, window_days, |lists| {
        lists.collect::<BTreeMap<_, _>>()
    })
}

/// Hands `take` every assigned outlet's recommendations, in outlet id order, each
/// computed as it is pulled: a run encodes them a few hundred outlets at a time and
/// never holds every outlet's lists (about 7 KiB an outlet, with their sentences).
pub fn each_outlet<R>(
    assignments: &[AssignmentRow],
    fs: &FeatureSet,
    daily: Daily<'_>,
    window_days: u32,
    take: impl FnOnce(&mut dyn Iterator<Item = (String, Recommendations)>) -> R,
) -> (R, RecommendationReport) {
    // Segments in id order, each with its members as (assignment, row).
    let mut members: BTreeMap<&str, Vec<(&AssignmentRow, Option<usize>)>> = BTreeMap::new();
    for a in assignments {
        members
            .entry(&a.segment_id)
            .or_default()
            .push((a, fs.row(&a.outlet_id)));
    }
    let mut seg_of: Vec<Option<usize>> = vec![None; fs.outlets.len()];
    for (s, list) in members.values().enumerate() {
        for &(_, row) in list {
            if let Some(row) = row {
                seg_of[row] = Some(s);
            }
        }
    }
    let value_of = |a: &AssignmentRow, row: Option<usize>| {
        row.map_or(a.value, |i| fs.outlets[i].kpis.net_value)
    };
    let p = Purchases::gather(&seg_of, members.len(), fs, daily);
    // Per segment: its statistics and its median outlet value.
    let segments: Vec<(Segment, f64)> = members
        .values()
        .enumerate()
        .map(|(s, outlets)| {
            let seg = Segment::new(
                &p.stats[s],
                &p.skus,
                outlets.len().max(1) as f64,
                p.segments_with_recent[s],
                (f64::from(window_days.max(1)) / HORIZON_DAYS as f64).max(1.0 / 4.0),
                p.years.len().max(1) as f64,
            );
            let values: Vec<f64> = outlets.iter().map(|&(a, row)| value_of(a, row)).collect();
            (seg, median(values).max(0.0))
        })
        .collect();
    let mut order: Vec<(usize, &AssignmentRow, Option<usize>)> = members
        .values()
        .enumerate()
        .flat_map(|(s, outlets)| outlets.iter().map(move |&(a, row)| (s, a, row)))
        .collect();
    order.sort_by(|a, b| a.1.outlet_id.cmp(&b.1.outlet_id));
    let mut said = Sentences::default();
    let mut lists = order.into_iter().map(|(s, a, row)| {
        let (seg, middle) = &segments[s];
        let (v, pot) = (value_of(a, row).max(0.0), a.potential.max(0.0));
        let scale = if *middle > 0.0 {
            let reach = if v + pot > 0.0 { pot / (v + pot) } else { 0.0 };
            (v / middle * (1.0 + reach)).clamp(0.25, 4.0)
        } else {
            1.0
        };
        let here: &[Bought] = row.map_or(&[], |i| fs.sku_spend[i].as_slice());
        let lately: &[u32] = row.map_or(&[], |i| p.recent_bought[i].as_slice());
        let bought_here = |sku: u32| {
            here.binary_search_by_key(&sku, |b| b.sku)
                .is_ok_and(|k| here[k].value > 0.0 || here[k].quantity > 0.0)
        };
        let r = outlet_lists(
            seg,
            &p.skus,
            bought_here,
            |sku| lately.binary_search(&sku).is_ok(),
            scale,
            &mut said,
        );
        (a.outlet_id.clone(), r)
    });
    let taken = take(&mut lists);
    (taken, report(&p, !assignments.is_empty()))
}

#[cfg(test)]
mod tests {
    //! One test per rule, each with its expected lists worked out by hand in the
    //! comments: penetration, growth and lift from the purchases below, quantities as
    //! the median buyer's four-weekly quantity × value / median value × (1 + potential
    //! / (value + potential)), between ¼ and 4.

    use spectra_core::tables::features::KpiRow;
    use spectra_core::tables::runs::Change;

    use super::*;

    /// A small segment `S1`: each outlet's value and potential, and its window spend
    /// (`outlet, sku, value, quantity`).
    struct World {
        assignments: Vec<AssignmentRow>,
        features: FeatureSet,
    }

    fn world(outlets: &[(&str, f64, f64)], spend: &[(&str, &str, f64, f64)]) -> World {
        let assignments = outlets
            .iter()
            .map(|&(o, value, potential)| AssignmentRow {
                outlet_id: o.into(),
                segment_id: "S1".into(),
                previous_segment_id: None,
                change: Change::New,
                distance: 0.0,
                confidence: 1.0,
                value,
                lines: 1,
                potential,
                tier: String::new(),
                baseline: None,
            })
            .collect();
        let kpis = outlets
            .iter()
            .map(|&(o, value, _)| KpiRow {
                outlet_id: o.into(),
                net_value: value,
                ..Default::default()
            })
            .collect();
        let date = "2026-06-28".parse().unwrap();
        World {
            assignments,
            features: FeatureSet::from_rows(date, kpis, &[], spend),
        }
    }

    /// One daily row: `(outlet, sku, date, value, quantity)`.
    type Day<'a> = (&'a str, &'a str, &'a str, f64, f64);

    fn day<'a>(outlet: &'a str, sku: &'a str, date: &'a str, value: f64, quantity: f64) -> Day<'a> {
        (outlet, sku, date, value, quantity)
    }

    /// [`compute`] with these daily rows of the last four weeks and of earlier years.
    fn run(w: &World, recent: &[Day<'_>], seasonal: &[Day<'_>], window_days: u32) -> Computed {
        let mut daily = Daily::new(&w.features);
        for (days, is_recent) in [(recent, true), (seasonal, false)] {
            for &(o, sku, date, value, quantity) in days {
                daily.add(is_recent, date.parse().unwrap(), o, sku, value, quantity);
            }
        }
        compute(&w.assignments, &w.features, daily, window_days)
    }

    fn rec(sku: &str, score: f64, quantity: f64, reason: &str) -> RecItem {
        RecItem {
            sku_id: sku.into(),
            score,
            suggested_quantity: quantity,
            reason: reason.into(),
        }
    }

    /// `should_have`: milk is bought by all four outlets, tea by a, b and c (8, 12 and
    /// 16 units in a four-week window: typical 12). d lacks tea: penetration 3/4. Its
    /// scale: value 200 over the median value 100 = 2, × (1 + 50 / 250) = 2.4, so
    /// 12 × 2.4 = 28.8: 29 units. a, b and c get nothing: they buy both.
    #[test]
    fn should_have_what_most_of_the_segment_buys() {
        let w = world(
            &[
                ("a", 100.0, 0.0),
                ("b", 100.0, 0.0),
                ("c", 100.0, 0.0),
                ("d", 200.0, 50.0),
            ],
            &[
                ("a", "milk", 50.0, 10.0),
                ("b", "milk", 50.0, 10.0),
                ("c", "milk", 50.0, 10.0),
                ("d", "milk", 200.0, 40.0),
                ("a", "tea", 50.0, 8.0),
                ("b", "tea", 50.0, 12.0),
                ("c", "tea", 50.0, 16.0),
            ],
        );
        let (recs, report) = run(&w, &[], &[], 28);
        assert_eq!(
            recs["d"].should_have,
            vec![rec(
                "tea",
                0.75,
                29.0,
                "75% of the segment's outlets buy it; never bought here in the window"
            )]
        );
        assert!(recs["d"].new_for_outlet.is_empty());
        for o in ["a", "b", "c"] {
            assert_eq!(recs[o], Recommendations::default(), "{o}");
        }
        // Without a daily table nothing is rising or seasonal, and the run says why.
        assert_eq!(report.recent_days, 0);
        assert!(report.seasonal_years.is_empty());
        assert_eq!(
            report.notes.keys().collect::<Vec<_>>(),
            ["popular_in_segment", "seasonal_soon"]
        );
        assert!(report.notes["seasonal_soon"].contains("coming four weeks"));
    }

    /// `new_for_outlet`: ten outlets of value 100 (scale 1). bread: o0–o5 (6/10 ≥ ½ —
    /// `should_have` where missing); juice: o0–o2 with 2, 4 and 6 units (3/10, typical
    /// 4); water: o0 alone with 7 units (1/10, typical 7); gum: nobody. o9 gets juice
    /// and water, strongest first, and bread as `should_have`; o3 (buys bread) gets
    /// juice and water only; o0 (buys all three) nothing.
    #[test]
    fn new_for_outlet_what_a_tenth_or_more_of_the_segment_buys() {
        let outlets: Vec<String> = (0..10).map(|i| format!("o{i}")).collect();
        let list: Vec<(&str, f64, f64)> =
            outlets.iter().map(|o| (o.as_str(), 100.0, 0.0)).collect();
        let mut spend: Vec<(&str, &str, f64, f64)> = Vec::new();
        for o in &outlets[..6] {
            spend.push((o, "bread", 10.0, 5.0));
        }
        for (o, q) in outlets[..3].iter().zip([2.0, 4.0, 6.0]) {
            spend.push((o, "juice", 10.0, q));
        }
        spend.push(("o0", "water", 10.0, 7.0));
        let w = world(&list, &spend);
        let (recs, _) = run(&w, &[], &[], 28);
        let never = "of the segment's outlets buy it; never bought here in the window";
        let expected_new = vec![
            rec("juice", 0.3, 4.0, &format!("30% {never}")),
            rec("water", 0.1, 7.0, &format!("10% {never}")),
        ];
        assert_eq!(recs["o9"].new_for_outlet, expected_new);
        assert_eq!(
            recs["o9"].should_have,
            vec![rec("bread", 0.6, 5.0, &format!("60% {never}"))]
        );
        assert_eq!(recs["o3"].new_for_outlet, expected_new);
        assert!(recs["o3"].should_have.is_empty());
        assert_eq!(recs["o0"], Recommendations::default());
    }

    /// `popular_in_segment`: a 56-day window (two four-week periods). ice: 400 in the
    /// window (a 10, b 20, c 30 units: 5, 10, 15 a four-week period, typical 10), 300
    /// of it in the last four weeks, by a and b: 300 / (400 / 2) = 1.5 ≥ 1.1, so c,
    /// which did not buy it lately, gets it (and, as everyone bought it in the window
    /// but c not lately, as `should_have`). tea: 400 and 200 lately — 1.0, not rising.
    /// cola: all its 200 lately but by a alone — fewer than two buyers.
    #[test]
    fn popular_in_segment_what_rises_now() {
        let w = world(
            &[("a", 100.0, 0.0), ("b", 100.0, 0.0), ("c", 100.0, 0.0)],
            &[
                ("a", "ice", 100.0, 10.0),
                ("b", "ice", 200.0, 20.0),
                ("c", "ice", 100.0, 30.0),
                ("a", "tea", 200.0, 4.0),
                ("c", "tea", 200.0, 4.0),
                ("a", "cola", 200.0, 8.0),
            ],
        );
        let recent = [
            day("a", "ice", "2026-06-20", 100.0, 10.0),
            day("b", "ice", "2026-06-21", 200.0, 20.0),
            day("a", "tea", "2026-06-20", 100.0, 2.0),
            day("c", "tea", "2026-06-22", 100.0, 2.0),
            day("a", "cola", "2026-06-20", 200.0, 8.0),
        ];
        let (recs, report) = run(&w, &recent, &[], 56);
        assert_eq!(
            recs["c"].popular_in_segment,
            vec![rec(
                "ice",
                1.5,
                10.0,
                "the segment's spend on it in the last four weeks is 1.5× its four-weekly average; 2 of its outlets bought it lately, not this one"
            )]
        );
        assert_eq!(
            recs["c"].should_have,
            vec![rec(
                "ice",
                1.0,
                10.0,
                "100% of the segment's outlets buy it; not bought here in the last four weeks"
            )]
        );
        assert!(recs["a"].popular_in_segment.is_empty());
        assert!(recs["b"].popular_in_segment.is_empty(), "tea is not rising");
        assert_eq!(report.recent_days, 3);
        assert!(!report.notes.contains_key("popular_in_segment"));
    }

    /// `seasonal_soon`: the segment spends 900 on tea and 100 on ice now (shares 0.9
    /// and 0.1). In the coming four weeks of 2025 it spent 300 on each: ice 0.5 of
    /// that, a lift of 0.5 / 0.1 = 5.0; tea 0.5 / 0.9 < 1.2, not seasonal. Ice's
    /// seasonal buyers took 6 and 10 units in that one year: typical 8. Both outlets
    /// get it, as they buy ice now too (the list is the segment's, not a gap).
    #[test]
    fn seasonal_soon_what_the_coming_weeks_sold_in_earlier_years() {
        let w = world(
            &[("a", 500.0, 0.0), ("b", 500.0, 0.0)],
            &[
                ("a", "tea", 450.0, 45.0),
                ("b", "tea", 450.0, 45.0),
                ("a", "ice", 50.0, 5.0),
                ("b", "ice", 50.0, 5.0),
            ],
        );
        let seasonal = [
            day("a", "ice", "2025-07-10", 120.0, 6.0),
            day("b", "ice", "2025-07-12", 180.0, 10.0),
            day("a", "tea", "2025-07-10", 150.0, 15.0),
            day("b", "tea", "2025-07-11", 150.0, 15.0),
        ];
        let (recs, report) = run(&w, &[], &seasonal, 28);
        let expected = vec![rec(
            "ice",
            5.0,
            8.0,
            "50.0% of the segment's spend in the coming four weeks of earlier years, 5.0× its share now",
        )];
        assert_eq!(recs["a"].seasonal_soon, expected);
        assert_eq!(recs["b"].seasonal_soon, expected);
        assert_eq!(report.seasonal_years, [2025]);
        assert!(!report.notes.contains_key("seasonal_soon"));
    }

    /// Quantities: the median buyer, not the mean (one outlet buying 100 units does
    /// not inflate everyone's), scaled by value and potential between ¼ and 4, and at
    /// least one unit. Typical of beer: median(1, 2, 100) = 2; the median outlet value
    /// 100. e (value 50, no potential): ½ → 1 unit; f (value 100, potential 700): 1 ×
    /// (1 + 700 / 800) = 1.875 → 3.75, 4 units; g (value 900, potential 900): 9 × 1.5,
    /// capped at 4 → 8 units.
    #[test]
    fn quantities_follow_the_typical_order_size_and_potential() {
        let w = world(
            &[
                ("a", 100.0, 0.0),
                ("b", 100.0, 0.0),
                ("c", 100.0, 0.0),
                ("e", 50.0, 0.0),
                ("f", 100.0, 700.0),
                ("g", 900.0, 900.0),
            ],
            &[
                ("a", "beer", 10.0, 1.0),
                ("b", "beer", 10.0, 2.0),
                ("c", "beer", 10.0, 100.0),
            ],
        );
        let (recs, _) = run(&w, &[], &[], 28);
        let q = |o: &str| recs[o].should_have[0].suggested_quantity;
        assert_eq!((q("e"), q("f"), q("g")), (1.0, 4.0, 8.0));
    }
}
