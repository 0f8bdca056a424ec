//! One run of a segmentation. The first run seeds k-means with k-means++; later runs
//! warm-start from the previous run's centroids, carry the segment ids over by
//! matching centroids, and apply hysteresis: an outlet keeps its previous segment
//! unless another fits it clearly better (`new < (1 − margin) × current` distance), so
//! that with unchanged data nothing moves.

use std::collections::HashMap;

use ndarray::{Array2, ArrayView2};

use super::kmeans::{fit, Init, KMeansConfig};
use super::matching::{match_centroids, IdAllocator};
use super::ClusterError;

/// The segments of a segmentation after a run: what the next run starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentModel {
    /// Segment id of each centroid row.
    pub segment_ids: Vec<String>,
    /// Centroids, `k × D`, in the feature space of the run.
    pub centroids: Array2<f64>,
    /// Allocator of the next fresh id (never reuses an id).
    pub ids: IdAllocator,
}

/// The previous run, as input to the next.
#[derive(Debug, Clone, Copy)]
pub struct Previous<'a> {
    /// The previous run's model.
    pub model: &'a SegmentModel,
    /// Previous segment id of each current outlet (same row order as the features);
    /// `None` for outlets new to the segmentation.
    pub assignment: &'a [Option<String>],
}

/// Parameters of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// k-means settings; `k` is used only for a cold (first) run.
    pub kmeans: KMeansConfig,
    /// Relative margin of the hysteresis: an outlet moves only when the best
    /// segment's distance is below `(1 − margin)` times its current segment's.
    pub hysteresis_margin: f64,
    /// Largest centroid shift (Euclidean, in feature units) for a segment to keep its
    /// id; a centroid farther than this from every old one is a new segment. The
    /// default suits Hellinger features, whose rows have unit norm.
    pub max_match_distance: f64,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            kmeans: KMeansConfig::default(),
            hysteresis_margin: 0.1,
            max_match_distance: 0.3,
        }
    }
}

/// How an outlet's segment changed in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The outlet had no segment before.
    New,
    /// The outlet moved to another segment (or its segment was retired).
    Moved,
    /// Same segment as before.
    Unchanged,
}

/// One outlet's segment after the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Row of the segment in the model's centroids.
    pub segment: usize,
    /// Segment id.
    pub segment_id: String,
    /// Segment id before this run.
    pub previous_segment_id: Option<String>,
    /// What changed.
    pub change: Change,
    /// Euclidean distance to the segment's centroid.
    pub distance: f64,
    /// In [0, 1]: `1 − distance / distance to the nearest other centroid`; 0 on a
    /// boundary (or when hysteresis kept a slightly worse segment), 1 on the centroid.
    pub confidence: f64,
}

/// Result of [`run`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// The new model (to pass as [`Previous::model`] next time).
    pub model: SegmentModel,
    /// One assignment per outlet row.
    pub assignments: Vec<Assignment>,
    /// Ids of segments that appeared in this run.
    pub created: Vec<String>,
    /// Ids of segments that disappeared in this run (never reused).
    pub retired: Vec<String>,
    /// Outlets whose segment changed ([`Change::Moved`]).
    pub moved: usize,
    /// k-means inertia.
    pub inertia: f64,
    /// k-means iterations.
    pub iterations: usize,
}

/// Runs a segmentation over `features` (rows = outlets, already transformed), with
/// optional outlet weights, from the previous run if there is one.
pub fn run(
    features: ArrayView2<f64>,
    weights: Option<&[f64]>,
    previous: Option<Previous<'_>>,
    config: &RunConfig,
) -> Result<RunOutcome, ClusterError> {
    if !(0.0..1.0).contains(&config.hysteresis_margin) {
        return Err(ClusterError::InvalidParameter {
            name: "hysteresis_margin",
            reason: format!("{} is not in [0, 1)", config.hysteresis_margin),
        });
    }
    if let Some(p) = previous {
        if p.assignment.len() != features.nrows() {
            return Err(ClusterError::DimensionMismatch {
                what: "previous assignments",
                expected: features.nrows(),
                found: p.assignment.len(),
            });
        }
    }
    let init = previous.map_or(Init::KMeansPlusPlus, |p| {
        Init::Centroids(p.model.centroids.clone())
    });
    let result = fit(features, weights, &init, &config.kmeans)?;
    let (segment_ids, created, retired, ids) = match previous {
        Some(p) => {
            let mut ids = p.model.ids;
            let m = match_centroids(
                p.model.centroids.view(),
                &p.model.segment_ids,
                result.centroids.view(),
                config.max_match_distance,
                &mut ids,
            );
            (m.ids, m.created, m.retired, ids)
        }
        None => {
            let mut ids = IdAllocator::default();
            let new: Vec<String> = (0..result.centroids.nrows())
                .map(|_| ids.allocate())
                .collect();
            (new.clone(), new, Vec::new(), ids)
        }
    };
    let index: HashMap<&str, usize> = segment_ids
        .iter()
        .enumerate()
        .map(|(j, id)| (id.as_str(), j))
        .collect();
    let near = &result.nearest;
    let keep = 1.0 - config.hysteresis_margin;
    let mut moved = 0;
    let assignments = (0..features.nrows())
        .map(|i| {
            let before = previous.and_then(|p| p.assignment[i].clone());
            let best = near.label(i);
            let current = before.as_deref().and_then(|id| index.get(id).copied());
            let (segment, distance, other) = match current {
                Some(c) if c != best => {
                    let d = distance(features.row(i).iter(), result.centroids.row(c).iter());
                    if near.distance(i) < keep * d {
                        (best, near.distance(i), near.second_distance(i))
                    } else {
                        (c, d, near.distance(i))
                    }
                }
                _ => (best, near.distance(i), near.second_distance(i)),
            };
            let change = match (&before, current) {
                (None, _) => Change::New,
                (Some(_), Some(c)) if c == segment => Change::Unchanged,
                (Some(_), _) => Change::Moved,
            };
            moved += usize::from(change == Change::Moved);
            Assignment {
                segment,
                segment_id: segment_ids[segment].clone(),
                previous_segment_id: before,
                change,
                distance,
                confidence: confidence(distance, other),
            }
        })
        .collect();
    Ok(RunOutcome {
        model: SegmentModel {
            segment_ids,
            centroids: result.centroids,
            ids,
        },
        assignments,
        created,
        retired,
        moved,
        inertia: result.inertia,
        iterations: result.iterations,
    })
}

fn distance<'a>(a: impl Iterator<Item = &'a f64>, b: impl Iterator<Item = &'a f64>) -> f64 {
    a.zip(b).map(|(p, q)| (p - q) * (p - q)).sum::<f64>().sqrt()
}

/// `1 − own / other`, clamped to [0, 1]; 1 when there is no other centroid.
fn confidence(own: f64, other: f64) -> f64 {
    if !other.is_finite() || other <= 0.0 {
        return if other.is_infinite() { 1.0 } else { 0.0 };
    }
    (1.0 - own / other).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    fn config(k: usize) -> RunConfig {
        let mut c = RunConfig::default();
        c.kmeans.k = k;
        c
    }

    #[test]
    fn first_run_allocates_ids_in_order() {
        let x = Array2::from_shape_fn((40, 2), |(i, c)| (i % 4 * 10 + c) as f64);
        let out = run(x.view(), None, None, &config(4)).unwrap();
        assert_eq!(out.model.segment_ids, vec!["S1", "S2", "S3", "S4"]);
        assert_eq!(out.model.ids.next_id, 5);
        assert!(out.assignments.iter().all(|a| a.change == Change::New));
        assert!(out
            .assignments
            .iter()
            .all(|a| (0.0..=1.0).contains(&a.confidence)));
    }

    #[test]
    fn rejects_mismatched_previous_assignment() {
        let x = Array2::from_shape_fn((10, 2), |(i, c)| (i * 2 + c) as f64);
        let first = run(x.view(), None, None, &config(2)).unwrap();
        let prev = Previous {
            model: &first.model,
            assignment: &[None],
        };
        assert!(matches!(
            run(x.view(), None, Some(prev), &config(2)),
            Err(ClusterError::DimensionMismatch { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn rerun_on_identical_data_moves_nothing(
            seed in any::<u64>(),
            n in 20_usize..200,
            d in 1_usize..6,
            k in 1_usize..6,
        ) {
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
            let x = Array2::from_shape_fn((n, d), |_| rng.gen_range(0.0..1.0));
            let mut cfg = config(k);
            cfg.kmeans.seed = seed;
            let first = run(x.view(), None, None, &cfg).unwrap();
            let before: Vec<Option<String>> =
                first.assignments.iter().map(|a| Some(a.segment_id.clone())).collect();
            let prev = Previous { model: &first.model, assignment: &before };
            let second = run(x.view(), None, Some(prev), &cfg).unwrap();
            prop_assert_eq!(second.moved, 0);
            prop_assert_eq!(&second.model.segment_ids, &first.model.segment_ids);
            prop_assert!(second.created.is_empty() && second.retired.is_empty());
            prop_assert_eq!(second.model.ids, first.model.ids);
            for (a, b) in second.assignments.iter().zip(&first.assignments) {
                prop_assert_eq!(&a.segment_id, &b.segment_id);
                prop_assert_eq!(a.change, Change::Unchanged);
            }
        }
    }
}
