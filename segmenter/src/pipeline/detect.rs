//! The change detector inside a run: from the features folder's recent-window columns
//! to the detector's decisions ([`crate::cluster::movement`]), applied to the run's
//! assignments, with every move explained (movements.parquet) and each segment's own
//! drift reported (model.json `movement`).
//!
//! Outlets without a previous segment in the run's model (new outlets, every outlet of
//! a first run, outlets of a retired segment) and every outlet of a promotion's run
//! are tested too, from the segment the run gave them: one whose recent behaviour had
//! already changed and fits another segment clearly better is placed there. Otherwise
//! the next run, on the same data, would move it — a move nothing new explains.

use std::collections::HashMap;

use ndarray::ArrayView2;
use spectra_core::config::SegmentationConfig;
use spectra_core::tables::runs::Baseline;

use super::{AssignmentRow, PreviousRun};
use crate::cluster::movement::{
    apply, detect, shares_of, Decision, DetectorConfig, MovedWith, Reading, SpendHistory,
};
use crate::cluster::{Change, RunOutcome};
use crate::features::FeatureSet;
use crate::model::{ModelExt, MovementReport, SegmentDriftReport};

/// Why an outlet moved.
pub const REASON_CHANGED: &str = "changed";
/// Its segment was retired (the outlet went to the nearest remaining one).
pub const REASON_RETIRED: &str = "segment_retired";
/// The detector did not run (`recent_days = 0`, or a features folder without the
/// recent-window columns): the outlet moved on distance and `move_margin` alone.
pub const REASON_NEARER: &str = "nearer_segment";
/// Pinned by hand to its segment ([`SegmentationConfig::pins`]).
pub const REASON_PINNED: &str = "pinned";
/// A draft was promoted: the run took the draft's segments (ids carried over where a
/// draft segment corresponds to a live one).
pub const REASON_PROMOTED: &str = "promoted";
/// Its segment was merged into another or split, by hand.
pub const REASON_RESTRUCTURED: &str = "restructured";

pub use spectra_core::tables::runs::{Driver as DriverRow, MovementRow};

/// What the detector did in a run.
pub(super) struct Detected {
    /// The moved outlets with their evidence.
    pub movements: Vec<MovementRow>,
    /// Every outlet the detector moved or placed (see [`detect_moves`]): the segment
    /// id and the baseline the next runs test a further move against.
    pub baselines: HashMap<String, (String, Baseline)>,
    /// For model.json.
    pub report: MovementReport,
}

fn spectrum(features: &[String], shares: &[f64]) -> std::collections::BTreeMap<String, f64> {
    features
        .iter()
        .zip(shares)
        .filter(|(_, s)| **s > 0.0)
        .map(|(f, s)| (f.clone(), *s))
        .collect()
}

/// Runs the detector over the `outcome` of the outlets `rows` of `fs` (their previous
/// segment ids `before`, features `x`) and applies its decisions; `None` when it does
/// not run (detector off, or a folder without the columns). An outlet without a
/// previous segment in the run's model — and every outlet of a promotion's run
/// (`repartition`: the previous segments are the live run's, not the draft's) — is
/// tested from the segment the run gave it and placed, not moved.
#[allow(clippy::too_many_arguments)] // the run's inputs, each used once
pub(super) fn detect_moves(
    seg: &SegmentationConfig,
    fs: &FeatureSet,
    rows: &[usize],
    before: &[Option<String>],
    x: ArrayView2<f64>,
    outcome: &mut RunOutcome,
    previous: Option<&PreviousRun>,
    names: &[String],
    repartition: bool,
) -> Option<Detected> {
    let history = fs.history.as_ref()?;
    if seg.recent_days == 0 || seg.recent_days >= seg.window_days {
        return None;
    }
    let ids = outcome.model.segment_ids.clone();
    // Where each outlet starts from: its previous segment, else the run's choice (the
    // outlet is then placed, not moved).
    let (placing, current): (Vec<bool>, Vec<Option<usize>>) = before
        .iter()
        .zip(&outcome.assignments)
        .map(|(b, a)| {
            let previous = b
                .as_deref()
                .and_then(|b| ids.iter().position(|id| id == b))
                .filter(|_| !repartition);
            (previous.is_none(), previous.or(Some(a.segment)))
        })
        .unzip();
    let config = DetectorConfig {
        change_score: seg.change_score,
        fit_score: seg.fit_score,
        margin: seg.move_margin,
    };
    // What the previous runs' detector moved each outlet with, over this run's
    // features (carried only while the outlet stays where it was moved).
    let moved_with: Vec<Option<MovedWith>> = rows
        .iter()
        .zip(&placing)
        .map(|(&i, &placed)| {
            let b = previous?.baselines.get(&fs.outlets[i].outlet_id)?;
            MovedWith::over(b, &fs.features).filter(|_| !placed)
        })
        .collect();
    let detection = detect(
        &SpendHistory {
            earlier: history.earlier.view(),
            recent: history.recent.view(),
            earlier_lines: &history.earlier_lines,
            recent_lines: &history.recent_lines,
            counts: Some((history.earlier_counts.view(), history.recent_counts.view())),
            rows,
            moved_with: &moved_with,
        },
        &current,
        ids.len(),
        &config,
    );
    apply(outcome, x, &current, &detection);

    let features = &fs.features;
    let mut movements = Vec::new();
    let mut baselines = HashMap::new();
    let (mut changed, mut moved, mut placed) = (0, 0, 0);
    for (r, a) in outcome.assignments.iter().enumerate() {
        let evidence = match &detection.decisions[r] {
            Decision::Move(e) | Decision::Keep(e) => Some(e),
            Decision::Untested => None,
        };
        changed += usize::from(evidence.is_some_and(|e| e.score >= seg.change_score));
        if let Decision::Move(e) = &detection.decisions[r] {
            if placing[r] {
                placed += 1;
            } else {
                moved += 1;
            }
            let baseline = Baseline {
                since: fs.as_of,
                lines: history.recent_lines[rows[r]],
                spectrum: spectrum(features, &e.recent),
            };
            baselines.insert(
                fs.outlets[rows[r]].outlet_id.clone(),
                (a.segment_id.clone(), baseline),
            );
        }
        // A promotion's moves are the draft's partition's (reason `promoted`, given
        // with the run's other moves).
        if a.change != Change::Moved || (placing[r] && repartition) {
            continue;
        }
        let (e_shares, r_shares) = match evidence {
            Some(e) if !e.earlier.is_empty() => (e.earlier.clone(), e.recent.clone()),
            _ => (
                shares_of(history.earlier.row(rows[r])),
                shares_of(history.recent.row(rows[r])),
            ),
        };
        movements.push(MovementRow {
            outlet_id: fs.outlets[rows[r]].outlet_id.clone(),
            previous_segment_id: a.previous_segment_id.clone().unwrap_or_default(),
            segment_id: a.segment_id.clone(),
            // Placed: its segment was retired.
            reason: if placing[r] {
                REASON_RETIRED
            } else {
                REASON_CHANGED
            }
            .to_owned(),
            score: evidence.map(|e| e.score),
            fit: evidence.map(|e| e.fit),
            earlier_lines: history.earlier_lines[rows[r]],
            recent_lines: history.recent_lines[rows[r]],
            recent_invoices: history.recent_invoices[rows[r]],
            drivers: evidence
                .map(|e| {
                    e.drivers
                        .iter()
                        .map(|d| DriverRow {
                            feature: features[d.feature].clone(),
                            reading: d.reading,
                            earlier_share: d.earlier_share,
                            recent_share: d.recent_share,
                            contribution: d.contribution,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            earlier_spectrum: spectrum(features, &e_shares),
            recent_spectrum: spectrum(features, &r_shares),
        });
    }

    let old = previous.map(|p| p.model.segment_model(names));
    let segments = detection
        .segments
        .iter()
        .map(|s| {
            let id = &ids[s.segment];
            let centroid_shift = old
                .as_ref()
                .and_then(|old| Some((old, old.segment_ids.iter().position(|o| o == id)?)))
                .map_or(0.0, |(old, o)| {
                    (&old.centroids.row(o) - &outcome.model.centroids.row(s.segment))
                        .mapv(|v| v * v)
                        .sum()
                        .sqrt()
                });
            // The drivers are of the reading that drifted more.
            let lines = s.in_lines.as_deref();
            let (reading, shares) = match lines {
                Some(l) if l.drift > s.drift => (Reading::Lines, l),
                _ => (Reading::Spend, s),
            };
            let mut order: Vec<usize> = (0..features.len()).collect();
            let delta = |f: usize| (shares.recent[f] - shares.earlier[f]).abs();
            order.sort_by(|a, b| delta(*b).total_cmp(&delta(*a)));
            SegmentDriftReport {
                segment_id: id.clone(),
                drift: s.drift,
                own_drift: s.own_drift,
                line_drift: lines.map(|l| l.drift),
                line_own_drift: lines.map(|l| l.own_drift),
                drifted: s.drifted,
                drivers: order
                    .into_iter()
                    .take(3)
                    .map(|f| {
                        serde_json::json!({"feature": features[f], "reading": reading,
                            "earlier_share": shares.earlier[f], "recent_share": shares.recent[f]})
                    })
                    .collect(),
                centroid_shift,
            }
        })
        .collect();
    let report = MovementReport {
        recent_days: seg.recent_days,
        change_score: seg.change_score,
        fit_score: seg.fit_score,
        dispersion: detection.dispersion,
        line_dispersion: detection.line_dispersion,
        outlets_tested: detection.tested,
        outlets_changed: changed,
        outlets_moved: moved,
        outlets_placed: placed,
        segments,
    };
    Some(Detected {
        movements,
        baselines,
        report,
    })
}

/// Sets each assignment's baseline: what the detector moved or placed it with in this
/// run (`baselines`, while it is in that segment: a pin may have put it elsewhere),
/// else — for an outlet that stayed in its segment — the previous run's while the
/// window (`window_days` to `as_of`) still reaches back before that move.
pub(super) fn set_baselines(
    assignments: &mut [AssignmentRow],
    baselines: &HashMap<String, (String, Baseline)>,
    previous: Option<&PreviousRun>,
    as_of: chrono::NaiveDate,
    window_days: u32,
) {
    for a in assignments.iter_mut() {
        let detected = baselines
            .get(&a.outlet_id)
            .filter(|(segment, _)| *segment == a.segment_id)
            .map(|(_, b)| b.clone());
        a.baseline = detected.or_else(|| match a.change {
            spectra_core::tables::runs::Change::Same => previous
                .and_then(|p| p.baselines.get(&a.outlet_id))
                .filter(|b| (as_of - b.since).num_days() < i64::from(window_days))
                .cloned(),
            _ => None,
        });
    }
}

/// The moves of a run that `explained` (the detector's rows) does not cover, each with
/// the reason `reason_of` gives it and no evidence; the detector's rows for outlets a
/// pin kept in place are dropped.
pub(super) fn explain_moves(
    assignments: &[AssignmentRow],
    explained: Vec<MovementRow>,
    reason_of: impl Fn(&AssignmentRow) -> &'static str,
) -> Vec<MovementRow> {
    let moved: HashMap<&str, &AssignmentRow> = assignments
        .iter()
        .filter(|a| a.change == spectra_core::tables::runs::Change::Moved)
        .map(|a| (a.outlet_id.as_str(), a))
        .collect();
    let mut out: Vec<MovementRow> = explained
        .into_iter()
        .filter(|m| {
            moved
                .get(m.outlet_id.as_str())
                .is_some_and(|a| a.segment_id == m.segment_id)
        })
        .collect();
    let covered: std::collections::HashSet<String> =
        out.iter().map(|m| m.outlet_id.clone()).collect();
    out.extend(
        assignments
            .iter()
            .filter(|a| {
                a.change == spectra_core::tables::runs::Change::Moved
                    && !covered.contains(&a.outlet_id)
            })
            .map(|a| MovementRow {
                outlet_id: a.outlet_id.clone(),
                previous_segment_id: a.previous_segment_id.clone().unwrap_or_default(),
                segment_id: a.segment_id.clone(),
                reason: reason_of(a).to_owned(),
                score: None,
                fit: None,
                earlier_lines: 0.0,
                recent_lines: 0.0,
                recent_invoices: 0.0,
                drivers: Vec::new(),
                earlier_spectrum: Default::default(),
                recent_spectrum: Default::default(),
            }),
    );
    out.sort_by(|a, b| a.outlet_id.cmp(&b.outlet_id));
    out
}
