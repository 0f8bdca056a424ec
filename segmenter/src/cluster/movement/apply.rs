//! The detector's decisions applied to a run's assignments.

use ndarray::ArrayView2;

use super::{Decision, Detection};
use crate::cluster::incremental::{Assignment, Change, RunOutcome};

/// Replaces the distance-based decisions of a run by the detector's. `current[i]` is
/// where the detector started outlet `i` from: the row of its previous segment in
/// `outcome`'s model, or, for an outlet the run places rather than moves (a new
/// outlet, one whose segment was retired, every outlet of a promotion), the run's own
/// choice. The outlet ends in the segment the decision names, and its change is
/// against its previous segment id ([`Assignment::previous_segment_id`]): a new outlet
/// stays new. Outlets with no `current` keep the run's choice.
pub fn apply(
    outcome: &mut RunOutcome,
    features: ArrayView2<f64>,
    current: &[Option<usize>],
    detection: &Detection,
) {
    let centroids = &outcome.model.centroids;
    let ids = &outcome.model.segment_ids;
    let distance = |i: usize, s: usize| -> f64 {
        (&features.row(i) - &centroids.row(s))
            .mapv(|v| v * v)
            .sum()
            .sqrt()
    };
    for (i, a) in outcome.assignments.iter_mut().enumerate() {
        let Some(c) = current[i] else {
            continue;
        };
        let target = match &detection.decisions[i] {
            Decision::Move(e) => e.best,
            _ => c,
        };
        let own = distance(i, target);
        let other = (0..centroids.nrows())
            .filter(|&s| s != target)
            .map(|s| distance(i, s))
            .fold(f64::INFINITY, f64::min);
        let change = match &a.previous_segment_id {
            None => Change::New,
            Some(p) if *p == ids[target] => Change::Unchanged,
            Some(_) => Change::Moved,
        };
        *a = Assignment {
            segment: target,
            segment_id: ids[target].clone(),
            previous_segment_id: a.previous_segment_id.clone(),
            change,
            distance: own,
            confidence: if other.is_finite() && other > 0.0 {
                (1.0 - own / other).clamp(0.0, 1.0)
            } else {
                1.0
            },
        };
    }
    outcome.moved = outcome
        .assignments
        .iter()
        .filter(|a| a.change == Change::Moved)
        .count();
}
