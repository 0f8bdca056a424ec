//! Each outlet against its segment: per feature the outlet's share of spend, the
//! segment's share and the gap between them (`segment − outlet`), and the outlet's
//! potential.
//!
//! **Potential** = `Σ_f max(0, segment_share_f − outlet_share_f) × outlet value`: the
//! spend the outlet would add if it kept what it buys today and raised every feature it
//! under-buys to its segment's share of the outlet's current value. The sum of the
//! positive gaps is the total-variation distance between the two spectra, so the
//! potential is "how far from its segment, in money": 0 for an outlet that buys exactly
//! like its segment, at most its own value for one that buys nothing the segment does.

use ndarray::{Array2, ArrayView2};

/// Features listed per outlet besides those it buys: the segment's largest.
pub const SEGMENT_TOP_FEATURES: usize = 100;

pub use spectra_core::tables::runs::GapRow;

/// The potential of an outlet with spectrum `outlet` in a segment with spectrum
/// `segment` (both shares summing to 1 or all zero) and value `value`.
pub fn potential(outlet: &[f64], segment: &[f64], value: f64) -> f64 {
    let tv: f64 = outlet
        .iter()
        .zip(segment)
        .map(|(o, s)| (s - o).max(0.0))
        .sum();
    tv * value.max(0.0)
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

/// Shares of spend per row of `spend` (negative spend counts as 0).
pub fn outlet_shares(spend: ArrayView2<f64>) -> Array2<f64> {
    crate::cluster::transform::shares(spend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn potential_is_the_positive_gap_times_value() {
        // Outlet buys only coffee; segment 50/50 coffee/tea: half the value is missing.
        assert!((potential(&[1.0, 0.0], &[0.5, 0.5], 200.0) - 100.0).abs() < 1e-9);
        assert_eq!(potential(&[0.5, 0.5], &[0.5, 0.5], 200.0), 0.0);
        assert!((potential(&[0.0, 0.0, 1.0], &[0.5, 0.5, 0.0], 10.0) - 10.0).abs() < 1e-9);
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
}
