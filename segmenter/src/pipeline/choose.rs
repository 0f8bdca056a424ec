//! How a run clusters: cold with k chosen (first run), warm from the previous model
//! (aligned by feature name), re-seeded when the configured k or most features changed,
//! and — for `k = "auto"` — a split/merge re-evaluation when the sampled silhouette fell
//! more than [`DEGRADED_BY`] below the one at the last evaluation, or every
//! [`RECHECK_RUNS`] runs. Segment ids always come from the core's matching, so they are
//! never reused.

use std::collections::HashSet;

use ndarray::ArrayView2;
use spectra_core::config::{KSpec, SegmentationConfig};

use super::{PreviousRun, SILHOUETTE_SAMPLE};
use crate::cluster::metrics::silhouette;
use crate::cluster::{
    choose_k, fit, match_centroids, propose_restructure, run, AutoKConfig, ClusterError, Init,
    KMeansConfig, Previous, Restructure, RestructureKind, RunConfig, RunOutcome, SegmentModel,
};
use crate::model::{KCheck, KSelectionReport, ModelExt, RestructureReport};
use crate::Error;
use spectra_core::tables::definitions::Operation;

/// Silhouette drop (absolute) since the last evaluation of k that triggers a new one.
pub const DEGRADED_BY: f64 = 0.05;
/// Runs after which k is re-evaluated anyway.
pub const RECHECK_RUNS: u32 = 30;
/// A previous model is reused only if it knows at least this share of the features.
const MIN_FEATURE_OVERLAP: f64 = 0.5;
/// k-means++ starts of a cold clustering (a first run, a re-seed); the lowest inertia
/// is kept. On hard-overlapping segments one start settles in a poor local optimum
/// (two segments merged, another split) often enough to matter for years of warm runs
/// after it: on the movement benchmark's planted feeds, agreement with the planted
/// truth ranged 0.66–0.86 over seeds with one start (`bench/movement/RESULTS.md`).
/// The first start uses the segmentation's seed, so a start that was best stays.
pub const COLD_STARTS: u64 = 8;

/// The clustering of a run and how it was reached.
pub(super) struct Clustered {
    /// The core's outcome.
    pub outcome: RunOutcome,
    /// Ids that are new against the previous run.
    pub created: Vec<String>,
    /// Previous ids that are gone.
    pub retired: Vec<String>,
    /// The k search (first run, `k = "auto"`).
    pub k_selection: Option<KSelectionReport>,
    /// A split or merge applied.
    pub restructure: Option<RestructureReport>,
    /// Whether k was evaluated in this run.
    evaluated: bool,
    /// After a merge or split by hand: the centroids of the segments it made (the
    /// kept one of a merge; both halves of a split), which decide where the outlets
    /// of the segments involved go.
    pub by_hand: Vec<(String, ndarray::Array1<f64>)>,
}

impl Clustered {
    /// The re-evaluation state to store, given this run's silhouette.
    pub fn k_check(&self, silhouette: f64, previous: Option<&PreviousRun>) -> KCheck {
        match previous {
            Some(p) if !self.evaluated => KCheck {
                silhouette: p.model.k_check.silhouette,
                runs_since: p.model.k_check.runs_since + 1,
            },
            _ => KCheck {
                silhouette,
                runs_since: 0,
            },
        }
    }
}

/// Clusters `x` (rows = assigned outlets, columns `names`), outlets' previous ids
/// `before`.
pub(super) fn cluster(
    seg: &SegmentationConfig,
    x: ArrayView2<f64>,
    names: &[String],
    before: &[Option<String>],
    previous: Option<&PreviousRun>,
    config: &RunConfig,
) -> Result<Clustered, Error> {
    let n = x.nrows();
    let [lo, hi] = seg.k_range;
    let too_few = |needed: usize| Error::TooFewOutlets {
        segmentation: seg.name.clone(),
        eligible: n,
        needed,
    };
    let err = |source: ClusterError| Error::Cluster {
        segmentation: seg.name.clone(),
        source,
    };
    let auto = AutoKConfig {
        kmeans: config.kmeans.clone(),
        sample_size: SILHOUETTE_SAMPLE,
    };
    let with_k = |k: usize| RunConfig {
        kmeans: KMeansConfig {
            k,
            ..config.kmeans.clone()
        },
        ..config.clone()
    };
    // k chosen by silhouette over `k_range` (a first "auto" run, or one whose k left
    // the range).
    let over_range = || -> Result<(usize, KSelectionReport), Error> {
        if n <= lo {
            return Err(too_few(lo + 1));
        }
        let s = choose_k(x, None, lo..=hi.min(n - 1), &auto).map_err(err)?;
        Ok((s.best_k, KSelectionReport::from(&s)))
    };
    let prev = previous.filter(|p| !p.model.segments.is_empty());
    let Some(p) = prev else {
        // First run: k fixed, or chosen by silhouette over the range.
        let (k, selection) = match seg.k {
            KSpec::Fixed(k) => (k, None),
            KSpec::Auto(_) => {
                let (k, report) = over_range()?;
                (k, Some(report))
            }
        };
        if n < k.max(1) {
            return Err(too_few(k.max(1)));
        }
        let mut outcome: Option<RunOutcome> = None;
        for start in 0..COLD_STARTS {
            let mut config = with_k(k);
            config.kmeans.seed = config.kmeans.seed.wrapping_add(start);
            let o = run(x, None, None, &config).map_err(err)?;
            if outcome.as_ref().is_none_or(|b| o.inertia < b.inertia) {
                outcome = Some(o);
            }
        }
        let outcome = outcome.expect("at least one start");
        return Ok(Clustered {
            created: outcome.model.segment_ids.clone(),
            retired: Vec::new(),
            outcome,
            k_selection: selection,
            restructure: None,
            evaluated: true,
            by_hand: Vec::new(),
        });
    };

    let aligned = p.model.segment_model(names);
    // The number of segments the previous model has once a merge or split by hand is
    // applied (the definition fixed k to it).
    let old_k = match &p.operation {
        Some(Operation::Merge { .. }) => aligned.segment_ids.len().saturating_sub(1),
        Some(Operation::Split { .. }) => aligned.segment_ids.len() + 1,
        None => aligned.segment_ids.len(),
    };
    let fixed = match seg.k {
        KSpec::Fixed(k) => Some(k),
        KSpec::Auto(_) => None,
    };
    // "auto" with a previous k outside `k_range` (the range was edited, or a fixed k
    // became "auto"): k chosen over the range as in a first run, the segments re-seeded
    // at it. A re-evaluation alone would step one segment at a time, and only within
    // the range: never back into it.
    let mut selection = None;
    let target = match fixed {
        Some(k) => Some(k),
        None if !(lo..=hi).contains(&old_k) => {
            let (k, report) = over_range()?;
            selection = Some(report);
            Some(k)
        }
        None => None,
    };
    let reseed =
        target.is_some_and(|k| k != old_k) || p.model.feature_overlap(names) < MIN_FEATURE_OVERLAP;
    let k = target.unwrap_or(old_k);
    if n < k {
        return Err(too_few(k));
    }
    let start = if reseed {
        // Fresh centroids, ids carried over by matching wherever a segment survived.
        let mut best: Option<crate::cluster::KMeansFit> = None;
        for start in 0..COLD_STARTS {
            let mut kmeans = with_k(k).kmeans;
            kmeans.seed = kmeans.seed.wrapping_add(start);
            let f = fit(x, None, &Init::KMeansPlusPlus, &kmeans).map_err(err)?;
            if best.as_ref().is_none_or(|b| f.inertia < b.inertia) {
                best = Some(f);
            }
        }
        let cold = best.expect("at least one start");
        let mut ids = aligned.ids;
        let m = match_centroids(
            aligned.centroids.view(),
            &aligned.segment_ids,
            cold.centroids.view(),
            config.max_match_distance,
            &mut ids,
        );
        SegmentModel {
            segment_ids: m.ids,
            centroids: cold.centroids,
            ids,
        }
    } else {
        aligned
    };
    let mut by_hand = Vec::new();
    let start = match &p.operation {
        Some(op) => {
            let old_ids = start.segment_ids.clone();
            let m = restructure_by_hand(op, start, p, x, before, seg.seed).map_err(|message| {
                Error::Operation {
                    segmentation: seg.name.clone(),
                    message,
                }
            })?;
            let made: Vec<&str> = match op {
                Operation::Merge { kept, .. } => vec![kept.as_str()],
                Operation::Split { segment_id } => std::iter::once(segment_id.as_str())
                    .chain(
                        m.segment_ids
                            .iter()
                            .filter(|id| !old_ids.contains(id))
                            .map(String::as_str),
                    )
                    .collect(),
            };
            for id in made {
                if let Some(j) = m.segment_ids.iter().position(|s| s == id) {
                    by_hand.push((id.to_owned(), m.centroids.row(j).to_owned()));
                }
            }
            m
        }
        None => start,
    };
    let previous_of = |model| Previous {
        model,
        assignment: before,
    };
    // A promotion takes the draft's segments as they were reviewed: its centroids as
    // they are (a re-fit from them drifts from the reviewed partition wherever the
    // draft's fit stopped short of a fixed point), unless k or the features changed
    // since and they were re-seeded.
    let warm = if p.repartition && !reseed {
        RunConfig {
            kmeans: KMeansConfig {
                max_iter: 0,
                ..config.kmeans.clone()
            },
            ..config.clone()
        }
    } else {
        config.clone()
    };
    let mut outcome = run(x, None, Some(previous_of(&start)), &warm).map_err(err)?;
    let mut restructure = None;
    // k chosen over the range above is this run's evaluation.
    let mut evaluated = selection.is_some();
    if fixed.is_none() && selection.is_none() {
        let labels: Vec<usize> = outcome.assignments.iter().map(|a| a.segment).collect();
        let now = silhouette(x, &labels, SILHOUETTE_SAMPLE, seg.seed);
        let check = &p.model.k_check;
        if check.silhouette - now > DEGRADED_BY || check.runs_since + 1 >= RECHECK_RUNS {
            evaluated = true;
            // Proposed from the previous centroids: a new kind of outlet that a warm
            // start pulled into a segment splits off without costing that segment its id.
            let proposal = propose_restructure(x, None, &start, &auto).map_err(err)?;
            if let Some(mut r) = proposal.filter(|r| {
                let k = r.model.segment_ids.len();
                (lo..=hi).contains(&k) && k < n && r.silhouette_after > now
            }) {
                keep_id_with_nearer_half(&start, &mut r);
                let (kind, a, b) = match &r.kind {
                    RestructureKind::Split { segment_id, new_id } => ("split", segment_id, new_id),
                    RestructureKind::Merge { kept, retired } => ("merge", kept, retired),
                };
                tracing::info!(segmentation = %seg.name, kind, a, b,
                    before = r.silhouette_before, after = r.silhouette_after, "k re-evaluated");
                restructure = Some(RestructureReport {
                    kind: kind.into(),
                    segment_id: a.clone(),
                    other_id: b.clone(),
                    silhouette_before: r.silhouette_before,
                    silhouette_after: r.silhouette_after,
                });
                outcome = run(x, None, Some(previous_of(&r.model)), config).map_err(err)?;
            }
        }
    }
    // Against the segments published before: a promoted draft's model carries the
    // draft's segments, the live run's are in `names`.
    let mut old: Vec<&String> = if p.repartition {
        p.names.keys().collect()
    } else {
        p.model.segments.iter().map(|s| &s.segment_id).collect()
    };
    old.sort();
    let new: HashSet<&String> = outcome.model.segment_ids.iter().collect();
    let created = outcome
        .model
        .segment_ids
        .iter()
        .filter(|id| !old.contains(id))
        .cloned()
        .collect();
    let retired = old
        .into_iter()
        .filter(|id| !new.contains(id))
        .cloned()
        .collect();
    Ok(Clustered {
        outcome,
        created,
        retired,
        k_selection: selection,
        restructure,
        evaluated,
        by_hand,
    })
}

/// `start` with a merge or split by hand applied ([`Operation`]), or why it cannot be.
fn restructure_by_hand(
    op: &Operation,
    mut start: SegmentModel,
    p: &PreviousRun,
    x: ArrayView2<f64>,
    before: &[Option<String>],
    seed: u64,
) -> Result<SegmentModel, String> {
    let row = |m: &SegmentModel, id: &str| {
        m.segment_ids
            .iter()
            .position(|s| s == id)
            .ok_or_else(|| format!("segment `{id}` is not in the run the operation applies to"))
    };
    match op {
        Operation::Merge { kept, retired } => {
            let (a, b) = (row(&start, kept)?, row(&start, retired)?);
            if a == b {
                return Err("a segment cannot be merged into itself".into());
            }
            let weight = |id: &str| {
                p.model
                    .segments
                    .iter()
                    .find(|s| s.segment_id == id)
                    .map_or(1.0, |s| s.outlets.max(1) as f64)
            };
            let (wa, wb) = (weight(kept), weight(retired));
            let merged = (&start.centroids.row(a) * wa + &start.centroids.row(b) * wb) / (wa + wb);
            start.centroids.row_mut(a).assign(&merged);
            let keep: Vec<usize> = (0..start.segment_ids.len()).filter(|&j| j != b).collect();
            start.centroids = start.centroids.select(ndarray::Axis(0), &keep);
            start.segment_ids.remove(b);
            Ok(start)
        }
        Operation::Split { segment_id } => {
            let j = row(&start, segment_id)?;
            let members: Vec<usize> = before
                .iter()
                .enumerate()
                .filter(|(_, b)| b.as_deref() == Some(segment_id.as_str()))
                .map(|(r, _)| r)
                .collect();
            if members.len() < 2 {
                return Err(format!(
                    "segment `{segment_id}` has {} outlet(s) in this run; a split needs 2",
                    members.len()
                ));
            }
            let sub = x.select(ndarray::Axis(0), &members);
            let config = KMeansConfig {
                k: 2,
                seed,
                ..KMeansConfig::default()
            };
            let halves =
                fit(sub.view(), None, &Init::KMeansPlusPlus, &config).map_err(|e| e.to_string())?;
            let old = start.centroids.row(j).to_owned();
            let d = |h: usize| (&halves.centroids.row(h) - &old).mapv(|v| v * v).sum();
            let nearer = usize::from(d(1) < d(0));
            start
                .centroids
                .row_mut(j)
                .assign(&halves.centroids.row(nearer));
            let other = halves
                .centroids
                .row(1 - nearer)
                .insert_axis(ndarray::Axis(0));
            start.centroids =
                ndarray::concatenate(ndarray::Axis(0), &[start.centroids.view(), other])
                    .map_err(|e| e.to_string())?;
            let id = start.ids.allocate();
            start.segment_ids.push(id);
            Ok(start)
        }
    }
}

/// On a split, the id stays with the half nearer the segment's previous centroid (the
/// core keeps it with the heavier half; with a newcomer group as large as the old
/// segment, that could hand the old outlets the new id).
fn keep_id_with_nearer_half(start: &SegmentModel, r: &mut Restructure) {
    let RestructureKind::Split { segment_id, new_id } = &r.kind else {
        return;
    };
    let row = |m: &SegmentModel, id: &str| m.segment_ids.iter().position(|s| s == id);
    let (Some(old), Some(kept), Some(new)) = (
        row(start, segment_id),
        row(&r.model, segment_id),
        row(&r.model, new_id),
    ) else {
        return;
    };
    let d = |j: usize| {
        let c = &r.model.centroids;
        (&c.row(j) - &start.centroids.row(old))
            .mapv(|v| v * v)
            .sum()
    };
    if d(new) < d(kept) {
        let (a, b) = (
            r.model.centroids.row(kept).to_owned(),
            r.model.centroids.row(new).to_owned(),
        );
        r.model.centroids.row_mut(kept).assign(&b);
        r.model.centroids.row_mut(new).assign(&a);
    }
}
