//! Each outlet against its segment: per feature the outlet's share of spend, the
//! segment's share and the gap between them (`segment − outlet`), and the outlet's
//! potential.
//!
//! **Potential** = `Σ_f max(0, segment_share_f × V* − outlet_share_f × V)` with `V` the
//! outlet's value and `V* = max(V, the segment's median outlet value)`: the spend the
//! outlet would add if it bought every feature at its segment's share of at least a
//! typical member's volume, keeping what it buys beyond that. For an outlet at or above
//! the median it is the mix gap alone (the total-variation distance between the two
//! spectra × its value: 0 when it buys like its segment); one that buys exactly like its
//! segment at a tenth of the median's volume has nine tenths of the median left to win.
//!
//! **Per SKU** ([`sku_gaps`]): the same potential SKU by SKU — for each of the
//! segment's [`SKU_CANDIDATES`] largest SKUs, `segment_share × V* − max(outlet spend,
//! 0)` — and each outlet's [`SKU_GAPS_PER_OUTLET`] largest positive ones, with the SKU's
//! penetration in the segment: what a rep could add to the order, by product.
//!
//! **Tiers**: within each segment, an ABC analysis of potential — outlets sorted by
//! potential, largest first; `A` while the potential before them is under half of the
//! segment's, `B` under 80%, `C` after (and every outlet without potential).

use std::collections::BTreeMap;

use foldhash::HashMap;

use ndarray::ArrayView2;
use spectra_core::tables::profile::OTHER;
use spectra_core::tables::runs::AssignmentRow;
use spectra_core::tables::sku_gaps::SkuGapRow;

use crate::features::{Bought, FeatureSet};

/// The segment's SKUs (largest share of its spend first) each outlet is compared on.
pub const SKU_CANDIDATES: usize = 50;
/// SKUs kept per outlet: the largest positive potentials.
pub const SKU_GAPS_PER_OUTLET: usize = 10;

/// Features listed per outlet besides those it buys: the segment's largest.
pub const SEGMENT_TOP_FEATURES: usize = 100;

pub use spectra_core::tables::runs::GapRow;

/// The median of `values` (the mean of the middle two for an even count; 0 when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[m - 1] + values[m]) / 2.0
    } else {
        values[m]
    }
}

/// Share of a segment's potential held by its `A` outlets, and by `A` and `B`.
pub const TIER_SHARES: (f64, f64) = (0.5, 0.8);

/// The potential of an outlet with spectrum `outlet` and value `value` in a segment
/// with spectrum `segment` (both shares summing to 1 or all zero) whose median outlet
/// has value `typical`.
pub fn potential(outlet: &[f64], segment: &[f64], value: f64, typical: f64) -> f64 {
    let v = value.max(0.0);
    let target = v.max(typical);
    outlet
        .iter()
        .zip(segment)
        .map(|(o, s)| (s * target - o * v).max(0.0))
        .sum()
}

/// The tier of each outlet of one segment from `(outlet_id, potential)` pairs, in the
/// given order: `A`, `B` or `C` (see the module's documentation).
pub fn tiers(members: &[(&str, f64)]) -> Vec<&'static str> {
    let total: f64 = members.iter().map(|m| m.1.max(0.0)).sum();
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| {
        members[b]
            .1
            .total_cmp(&members[a].1)
            .then(members[a].0.cmp(members[b].0))
    });
    let mut out = vec!["C"; members.len()];
    let mut before = 0.0;
    for i in order {
        let p = members[i].1.max(0.0);
        if p <= 0.0 || total <= 0.0 {
            continue;
        }
        out[i] = if before < TIER_SHARES.0 * total {
            "A"
        } else if before < TIER_SHARES.1 * total {
            "B"
        } else {
            "C"
        };
        before += p;
    }
    out
}

/// Gap rows for one outlet: every feature it buys, and the segment's top
/// [`SEGMENT_TOP_FEATURES`] features (`segment_order` = the segment's features by share,
/// largest first).
pub fn outlet_gaps(
    outlet_id: &str,
    segment_id: &str,
    features: &[String],
    outlet: &[f64],
    segment: &[f64],
    segment_order: &[usize],
) -> Vec<GapRow> {
    let mut listed = vec![false; features.len()];
    for (j, &o) in outlet.iter().enumerate() {
        listed[j] = o > 0.0;
    }
    for &j in segment_order.iter().take(SEGMENT_TOP_FEATURES) {
        listed[j] |= segment[j] > 0.0;
    }
    // The values beyond `max_features`, summed, are no gap a rep can act on.
    for (j, f) in features.iter().enumerate() {
        listed[j] &= f != OTHER;
    }
    (0..features.len())
        .filter(|&j| listed[j])
        .map(|j| GapRow {
            outlet_id: outlet_id.to_owned(),
            segment_id: segment_id.to_owned(),
            feature: features[j].clone(),
            outlet_share: outlet[j],
            segment_share: segment[j],
            gap: segment[j] - outlet[j],
        })
        .collect()
}

/// Each segment's features ordered by share, largest first.
pub fn segment_orders(segment_shares: ArrayView2<f64>) -> Vec<Vec<usize>> {
    segment_shares
        .rows()
        .into_iter()
        .map(|r| {
            let mut o: Vec<usize> = (0..r.len()).collect();
            o.sort_by(|&a, &b| r[b].total_cmp(&r[a]).then(a.cmp(&b)));
            o
        })
        .collect()
}

/// Per-SKU gaps of every assigned outlet: `assignments` are outlets of `fs` with their
/// segment and value (see the module's documentation); all held at once (tests; a run
/// streams them, [`each_sku_gap`]).
pub fn sku_gaps(fs: &FeatureSet, assignments: &[AssignmentRow]) -> Vec<SkuGapRow> {
    each_sku_gap(fs, assignments, |rows| rows.collect())
}

/// One segment as its outlets' per-SKU gaps see it.
struct SkuSegment {
    /// The median outlet value.
    typical: f64,
    /// Its largest SKUs: (SKU, share of the segment's spend, buyers).
    top: Vec<(u32, f64, usize)>,
    /// Its outlets.
    outlets: f64,
}

/// Hands `take` every assigned outlet's per-SKU gap rows, in outlet id order (each
/// outlet's largest potential first), made as they are pulled: a run encodes them a
/// row group at a time and never holds them all (10 rows an outlet).
pub fn each_sku_gap<R>(
    fs: &FeatureSet,
    assignments: &[AssignmentRow],
    take: impl FnOnce(&mut dyn Iterator<Item = SkuGapRow>) -> R,
) -> R {
    // The assigned outlets of `fs` (with their rows) in outlet id order, the order the
    // rows are made in.
    let mut order: Vec<(&AssignmentRow, usize)> = assignments
        .iter()
        .filter_map(|a| fs.row(&a.outlet_id).map(|i| (a, i)))
        .collect();
    order.sort_by(|a, b| a.0.outlet_id.cmp(&b.0.outlet_id));
    let mut members: BTreeMap<&str, Vec<(usize, f64)>> = BTreeMap::new();
    for &(a, i) in &order {
        members
            .entry(a.segment_id.as_str())
            .or_default()
            .push((i, a.value));
    }
    let segments: HashMap<&str, SkuSegment> = members
        .iter()
        .filter_map(|(&segment, members)| {
            // The segment's positive spend and buyers per SKU, by SKU index: summed in
            // one order, so a rerun gives the same shares to the bit (a hash map's
            // order differs between maps).
            let mut spend: Vec<(f64, usize)> = vec![(0.0, 0); fs.skus.len()];
            for &(i, _) in members {
                for &Bought {
                    sku: k, value: v, ..
                } in &fs.sku_spend[i]
                {
                    let e = &mut spend[k as usize];
                    e.0 += v.max(0.0);
                    e.1 += 1;
                }
            }
            let total: f64 = spend.iter().map(|e| e.0).sum();
            if total <= 0.0 {
                return None;
            }
            let mut top: Vec<(u32, f64, usize)> = (0..)
                .zip(spend)
                .filter(|(_, e)| e.0 > 0.0)
                .map(|(k, e)| (k, e.0 / total, e.1))
                .collect();
            top.sort_by(|a, b| {
                b.1.total_cmp(&a.1)
                    .then_with(|| fs.skus[a.0 as usize].cmp(&fs.skus[b.0 as usize]))
            });
            top.truncate(SKU_CANDIDATES);
            let seg = SkuSegment {
                typical: median(members.iter().map(|m| m.1.max(0.0)).collect()),
                top,
                outlets: members.len() as f64,
            };
            Some((segment, seg))
        })
        .collect();
    let mut rows = order.into_iter().flat_map(|(a, i)| {
        let Some(seg) = segments.get(a.segment_id.as_str()) else {
            return Vec::new();
        };
        let target = a.value.max(0.0).max(seg.typical);
        let own = &fs.sku_spend[i];
        let mut rows: Vec<SkuGapRow> = seg
            .top
            .iter()
            .filter_map(|&(k, share, buyers)| {
                let spent = own
                    .binary_search_by_key(&k, |b| b.sku)
                    .map_or(0.0, |j| own[j].value);
                let p = share * target - spent.max(0.0);
                (p > 0.0).then(|| SkuGapRow {
                    outlet_id: a.outlet_id.clone(),
                    segment_id: a.segment_id.clone(),
                    sku_id: fs.skus[k as usize].clone(),
                    outlet_spend: spent,
                    segment_share: share,
                    penetration: buyers as f64 / seg.outlets,
                    potential: p,
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            b.potential
                .total_cmp(&a.potential)
                .then_with(|| a.sku_id.cmp(&b.sku_id))
        });
        rows.truncate(SKU_GAPS_PER_OUTLET);
        rows
    });
    take(&mut rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::bought;
    use ndarray::Array2;

    #[test]
    fn potential_is_the_positive_gap_times_value() {
        // At or above the median outlet's value, the mix gap alone. Outlet buys only
        // coffee; segment 50/50 coffee/tea: half the value is missing.
        assert!((potential(&[1.0, 0.0], &[0.5, 0.5], 200.0, 100.0) - 100.0).abs() < 1e-9);
        assert_eq!(potential(&[0.5, 0.5], &[0.5, 0.5], 200.0, 200.0), 0.0);
        assert!((potential(&[0.0, 0.0, 1.0], &[0.5, 0.5, 0.0], 10.0, 0.0) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn potential_counts_volume_below_the_median_outlet() {
        // Buys exactly like its segment at a tenth of the median's 1,000: 900 to win.
        assert!((potential(&[0.5, 0.5], &[0.5, 0.5], 100.0, 1000.0) - 900.0).abs() < 1e-9);
        // Only coffee, 100 of it, against 50/50 at 1,000: 500 − 100 of coffee is
        // 400, plus 500 of tea.
        assert!((potential(&[1.0, 0.0], &[0.5, 0.5], 100.0, 1000.0) - 900.0).abs() < 1e-9);
        // Over-buying coffee at a small volume still leaves tea to win: 600 coffee of
        // 700 is over the segment's 30% of 1,000; tea 70% of 1,000 − 100.
        assert!(
            (potential(&[6.0 / 7.0, 1.0 / 7.0], &[0.3, 0.7], 700.0, 1000.0) - 600.0).abs() < 1e-9
        );
        // A negative value (returns) counts as none.
        assert!((potential(&[0.0, 0.0], &[0.5, 0.5], -50.0, 100.0) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn tiers_split_the_segment_potential_a_half_then_thirty_percent() {
        // Potentials 50, 20, 15, 10, 5, 0 (total 100): a holds the first half (A); b
        // starts at 50 (B), c at 70 (B); d at 85, e at 95 (C); f has none (C).
        let members = [
            ("c", 15.0),
            ("f", 0.0),
            ("a", 50.0),
            ("e", 5.0),
            ("b", 20.0),
            ("d", 10.0),
        ];
        assert_eq!(tiers(&members), ["B", "C", "A", "C", "B", "C"]);
        // Ties go by outlet id; no potential at all: every outlet C.
        assert_eq!(tiers(&[("y", 10.0), ("x", 10.0)]), ["B", "A"]);
        assert_eq!(tiers(&[("x", 0.0), ("y", 0.0)]), ["C", "C"]);
    }

    #[test]
    fn gaps_list_bought_and_segment_features() {
        let features = ["a", "b", "c"].map(String::from);
        let rows = outlet_gaps(
            "o1",
            "S1",
            &features,
            &[1.0, 0.0, 0.0],
            &[0.6, 0.4, 0.0],
            &[0, 1, 2],
        );
        assert_eq!(rows.len(), 2);
        assert!((rows[1].gap - 0.4).abs() < 1e-12 && rows[1].feature == "b");
        assert!((rows[0].gap + 0.4).abs() < 1e-12);
    }

    /// The segment's SKU shares are sums over its members' SKU spend: made twice from
    /// the same features they are the same to the bit (summed by SKU, not in the order
    /// of a hash map, which differs from map to map).
    #[test]
    fn sku_gaps_are_the_same_on_every_call() {
        use crate::features::{Bought, FeatureSet, OutletRecord};
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(4);
        let (n, skus) = (40, 300);
        let fs = FeatureSet {
            as_of: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            features: vec!["f".into()],
            outlets: (0..n)
                .map(|i| OutletRecord {
                    outlet_id: format!("O{i:03}"),
                    ..Default::default()
                })
                .collect(),
            spend: Array2::zeros((n, 1)),
            skus: (0..skus).map(|k| format!("K{k:03}")).collect(),
            sku_spend: (0..n)
                .map(|_| {
                    let mut list = Vec::new();
                    for sku in 0..skus as u32 {
                        if rng.gen_bool(0.5) {
                            let value = rng.gen_range(0.01..100.0);
                            list.push(Bought {
                                sku,
                                quantity: 1.0,
                                value,
                            });
                        }
                    }
                    list
                })
                .collect(),
            history: None,
        };
        let assignments: Vec<AssignmentRow> = fs
            .outlets
            .iter()
            .map(|o| AssignmentRow {
                outlet_id: o.outlet_id.clone(),
                segment_id: "S1".into(),
                previous_segment_id: None,
                change: spectra_core::tables::runs::Change::New,
                distance: 0.0,
                confidence: 1.0,
                value: 1000.0,
                lines: 1,
                potential: 0.0,
                tier: String::new(),
                baseline: None,
            })
            .collect();
        let first = sku_gaps(&fs, &assignments);
        assert!(!first.is_empty());
        for _ in 0..10 {
            assert!(sku_gaps(&fs, &assignments) == first);
        }
    }

    #[test]
    fn sku_gaps_are_the_segment_share_of_the_larger_volume_minus_what_is_spent() {
        use crate::features::{FeatureSet, OutletRecord};
        // One segment of three outlets. SKU spend: a = {k1: 60, k2: 40},
        // b = {k1: 30}, c = {k2: 10, k3: -5}. Segment spend (positive parts):
        // k1 90, k2 50, k3 0 → shares 90/140, 50/140; k3 is no candidate.
        // Values 100, 30, 5 → median 30.
        let fs = FeatureSet {
            as_of: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            features: vec!["f".into()],
            outlets: ["a", "b", "c"]
                .iter()
                .map(|id| OutletRecord {
                    outlet_id: (*id).into(),
                    ..Default::default()
                })
                .collect(),
            spend: Array2::zeros((3, 1)),
            skus: vec!["k1".into(), "k2".into(), "k3".into()],
            sku_spend: bought(&[
                &[(0, 60.0), (1, 40.0)],
                &[(0, 30.0)],
                &[(1, 10.0), (2, -5.0)],
            ]),
            history: None,
        };
        let a = |id: &str, value: f64| AssignmentRow {
            outlet_id: id.into(),
            segment_id: "S1".into(),
            previous_segment_id: None,
            change: spectra_core::tables::runs::Change::New,
            distance: 0.0,
            confidence: 1.0,
            value,
            lines: 1,
            potential: 0.0,
            tier: String::new(),
            baseline: None,
        };
        let rows = sku_gaps(&fs, &[a("a", 100.0), a("b", 30.0), a("c", 5.0)]);
        let got: Vec<(&str, &str, f64)> = rows
            .iter()
            .map(|r| (r.outlet_id.as_str(), r.sku_id.as_str(), r.potential))
            .collect();
        let (s1, s2) = (90.0 / 140.0, 50.0 / 140.0);
        // a: k1 100·s1 − 60 = 4.29 > 0, k2 100·s2 − 40 < 0.
        // b (V* = 30): k2 30·s2 = 10.71, k1 30·s1 − 30 < 0.
        // c (V* = 30): k1 30·s1 = 19.29, k2 30·s2 − 10 = 0.71.
        let want = [
            ("a", "k1", 100.0 * s1 - 60.0),
            ("b", "k2", 30.0 * s2),
            ("c", "k1", 30.0 * s1),
            ("c", "k2", 30.0 * s2 - 10.0),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0, g.1), (w.0, w.1));
            assert!((g.2 - w.2).abs() < 1e-9, "{g:?} vs {w:?}");
        }
        let c1 = &rows[2];
        assert_eq!(c1.outlet_spend, 0.0);
        assert!((c1.penetration - 2.0 / 3.0).abs() < 1e-12);
        assert!((rows[3].penetration - 2.0 / 3.0).abs() < 1e-12);
    }
}
