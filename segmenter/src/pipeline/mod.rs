//! One run of one segmentation, from a feature set and the previous run to the run's
//! artifacts — pure computation (no storage), so it is tested directly.
//!
//! Steps: pick the outlets to assign (value ≥ `min_value`, some positive spend); build
//! the Hellinger features (plus weighted KPI columns); cluster — cold with k chosen by
//! silhouette on the first run, warm from the previous model (aligned by feature name)
//! afterwards, re-seeded when the fixed k or the features changed, with a split/merge
//! re-evaluation when `k = "auto"` and the fit degraded; the change detector then
//! decides who moves (outlets whose own behaviour changed and fits another segment
//! clearly better), each move explained, and places a new outlet whose behaviour had
//! already changed where a rerun would not move it; then profiles, names and gaps.

mod choose;
mod detect;

pub use detect::{
    DriverRow, MovementRow, REASON_CHANGED, REASON_NEARER, REASON_PINNED, REASON_PROMOTED,
    REASON_RESTRUCTURED, REASON_RETIRED,
};
use rayon::prelude::*;
use spectra_core::tables::definitions::Operation;

use std::collections::{HashMap, HashSet};

use spectra_core::config::{KSpec, SegmentationConfig};

use crate::cluster::metrics::{adjusted_rand_index, silhouette};
use crate::cluster::transform::{features_of_rows, row_shares, SpectrumTransform};
use crate::cluster::{Change, KMeansConfig, RunConfig, RunOutcome};
use crate::features::FeatureSet;
use crate::gaps::{median, outlet_gaps, potential, segment_orders, tiers};
use crate::model::{ModelFile, ModelSegment, Parameters, Quality, Transform};
use crate::naming::{stable_name, top_features};
use crate::patterns::purchasing_patterns;
use crate::profile::{profile_parts, segment_shares};
use crate::Error;
use bytes::Bytes;
use spectra_core::tables::profile::SegmentProfile;
use spectra_core::tables::runs::Baseline;

/// Outlets in the silhouette sample.
pub const SILHOUETTE_SAMPLE: usize = 2000;
/// KPI columns appended when `kpi_weight > 0` (as `ln(1 + x)`, standardised).
pub const KPI_COLUMNS: [&str; 4] = [
    "kpi:net_value",
    "kpi:invoices_per_month",
    "kpi:avg_invoice_value",
    "kpi:distinct_skus",
];

/// The previous complete run of a segmentation, as the next run needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviousRun {
    /// Its run id.
    pub run_id: String,
    /// Where it lives (the baseline a held run names).
    pub pointer: spectra_core::hold::RunPointer,
    /// Its model.json.
    pub model: ModelFile,
    /// Segment id per assigned outlet.
    pub assignments: HashMap<String, String>,
    /// What the change detector moved an outlet with, per outlet that has one (see
    /// [`spectra_core::tables::runs::Baseline`]).
    pub baselines: HashMap<String, Baseline>,
    /// `(name, name_features)` per segment id, from its profiles.json.
    pub names: HashMap<String, (String, Vec<String>)>,
    /// Set when `model` is a promoted draft's (its segment ids matched to this run's,
    /// see [`crate::runs::promoted_previous`]): the run takes the draft's partition —
    /// no hysteresis; the change detector places every outlet, as in the draft's first
    /// run — and `names` holds the live run's segments.
    pub repartition: bool,
    /// A merge or split by hand to apply to `model` before the run
    /// ([`choose`]); like a promotion, the run then goes without the change detector.
    pub operation: Option<spectra_core::tables::definitions::Operation>,
}

impl PreviousRun {
    /// A run just computed, as the next run's predecessor, without reading it back from
    /// storage (simulations, benchmarks): its folder is left empty.
    pub fn from_output(out: &RunOutput) -> Self {
        Self {
            run_id: out.run_id.clone(),
            pointer: spectra_core::hold::RunPointer {
                run_id: out.run_id.clone(),
                as_of: out.model.as_of,
                path: String::new(),
            },
            model: out.model.clone(),
            assignments: out
                .assignments
                .iter()
                .map(|a| (a.outlet_id.clone(), a.segment_id.clone()))
                .collect(),
            baselines: out
                .assignments
                .iter()
                .filter_map(|a| Some((a.outlet_id.clone(), a.baseline.clone()?)))
                .collect(),
            names: out
                .profiles
                .iter()
                .map(|p| {
                    (
                        p.segment_id.clone(),
                        (p.name.clone(), p.name_features.clone()),
                    )
                })
                .collect(),
            repartition: false,
            operation: None,
        }
    }
}

pub use spectra_core::tables::runs::AssignmentRow;
use spectra_core::tables::runs::Change as Changed;

/// Everything a run writes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutput {
    /// `{name}/{as_of}/{seq}`.
    pub run_id: String,
    /// model.json.
    pub model: ModelFile,
    /// assignments.parquet rows, by outlet id.
    pub assignments: Vec<AssignmentRow>,
    /// outlet_gaps.parquet, encoded.
    pub gaps: Bytes,
    /// profiles.json.
    pub profiles: Vec<SegmentProfile>,
    /// recommendations.parquet, encoded: each assigned outlet's lists (filled in by
    /// [`crate::recommend`], which reads the tables they need).
    pub recommendations: Option<bytes::Bytes>,
    /// Outlets assigned in the previous run and not in this one.
    pub left: Vec<String>,
    /// movements.parquet rows: every outlet that moved, with the evidence.
    pub movements: Vec<MovementRow>,
    /// contexts.parquet rows (filled in by [`crate::context`], which reads the SKU
    /// master).
    pub contexts: Vec<spectra_core::tables::context::ContextRow>,
    /// sku_gaps.parquet, encoded (filled in with the contexts,
    /// [`crate::gaps::each_sku_gap`]).
    pub sku_gaps: Bytes,
}

/// The value an outlet is judged by: its KPI net value, or its summed spend when the
/// outlet has no KPI row.
fn outlet_value(fs: &FeatureSet, i: usize) -> f64 {
    let v = fs.outlets[i].kpis.net_value;
    if v != 0.0 {
        v
    } else {
        fs.spend.row(i).sum()
    }
}

/// The clustered matrix of the outlets `rows`: Hellinger spectrum features, plus the
/// weighted KPI columns when `kpi_weight > 0`, with the column names.
fn feature_matrix(
    seg: &SegmentationConfig,
    fs: &FeatureSet,
    rows: &[usize],
) -> (ndarray::Array2<f64>, Vec<String>) {
    let mut names = fs.features.clone();
    let kpis = (seg.kpi_weight > 0.0).then(|| {
        names.extend(KPI_COLUMNS.iter().map(|c| c.to_string()));
        ndarray::Array2::from_shape_fn((rows.len(), KPI_COLUMNS.len()), |(r, c)| {
            let k = fs.outlets[rows[r]].kpis;
            let v = [
                k.net_value,
                k.invoices_per_month,
                k.avg_invoice_value,
                k.distinct_skus,
            ][c];
            v.max(0.0).ln_1p()
        })
    });
    let transform = SpectrumTransform {
        kpi_weight: seg.kpi_weight,
    };
    let x = features_of_rows(
        fs.spend.view(),
        rows,
        kpis.as_ref().map(|k| k.view()),
        &transform,
    );
    (x, names)
}

/// The adjusted Rand index of this run's `labels` against the previous run's
/// segments `before`, on the outlets both runs assigned (0 when there are none).
fn ari_against(before: &[Option<String>], labels: &[usize]) -> f64 {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (r, was) in before.iter().enumerate() {
        if let Some(was) = was {
            let n = ids.len();
            a.push(*ids.entry(was.as_str()).or_insert(n));
            b.push(labels[r]);
        }
    }
    if a.is_empty() {
        0.0
    } else {
        adjusted_rand_index(&a, &b)
    }
}

/// The run's assignment rows, its `outlet_gaps.parquet` (encoded as the rows are made,
/// a row group at a time: about 8 rows an outlet are never all held), and the outlets
/// per segment. Each outlet's shares of spend are made from its row as it is read.
fn assignment_rows(
    fs: &FeatureSet,
    rows: &[usize],
    outcome: &RunOutcome,
    values: &[f64],
    seg_shares: ndarray::ArrayView2<f64>,
) -> Result<(Vec<AssignmentRow>, Bytes, Vec<usize>), Error> {
    let k = outcome.model.segment_ids.len();
    let orders = segment_orders(seg_shares);
    // Each segment's median outlet value (the volume a typical member buys).
    let mut member_values: Vec<Vec<f64>> = vec![Vec::new(); k];
    for (r, a) in outcome.assignments.iter().enumerate() {
        member_values[a.segment].push(values[r].max(0.0));
    }
    let typical: Vec<f64> = member_values.into_iter().map(median).collect();
    // Rows are in outlet id order, and so are the gap rows made from them.
    let gap_rows = outcome.assignments.iter().enumerate().flat_map(|(r, a)| {
        outlet_gaps(
            &fs.outlets[rows[r]].outlet_id,
            &a.segment_id,
            &fs.features,
            &row_shares(fs.spend.row(rows[r])),
            &seg_shares.row(a.segment).to_vec(),
            &orders[a.segment],
        )
    });
    let gaps = spectra_core::tables::runs::encode_outlet_gaps(gap_rows)?;
    let mut counts = vec![0usize; k];
    let mut assignments = Vec::with_capacity(rows.len());
    for (r, a) in outcome.assignments.iter().enumerate() {
        let o = &fs.outlets[rows[r]];
        counts[a.segment] += 1;
        let outlet = row_shares(fs.spend.row(rows[r]));
        let segment = seg_shares.row(a.segment).to_vec();
        assignments.push(AssignmentRow {
            outlet_id: o.outlet_id.clone(),
            segment_id: a.segment_id.clone(),
            previous_segment_id: a.previous_segment_id.clone(),
            change: match a.change {
                Change::New => Changed::New,
                Change::Moved => Changed::Moved,
                Change::Unchanged => Changed::Same,
            },
            distance: a.distance,
            confidence: a.confidence,
            value: values[r],
            lines: o.kpis.lines as i64,
            potential: potential(&outlet, &segment, values[r], typical[a.segment]),
            tier: String::new(),
            baseline: None,
        });
    }
    // Tiers within each segment, by potential.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (r, a) in outcome.assignments.iter().enumerate() {
        members[a.segment].push(r);
    }
    for rows in members {
        let pairs: Vec<(&str, f64)> = rows
            .iter()
            .map(|&r| (assignments[r].outlet_id.as_str(), assignments[r].potential))
            .collect();
        let tiers: Vec<String> = tiers(&pairs).into_iter().map(str::to_owned).collect();
        for (r, t) in rows.into_iter().zip(tiers) {
            assignments[r].tier = t;
        }
    }
    Ok((assignments, gaps, counts))
}

/// Every segment's profile: its parts, its (stable) name and its purchasing patterns.
#[allow(clippy::too_many_arguments)] // the run's inputs, each used once
fn segment_profiles(
    seg: &SegmentationConfig,
    fs: &FeatureSet,
    rows: &[usize],
    labels: &[usize],
    values: &[f64],
    outcome: &RunOutcome,
    previous: Option<&PreviousRun>,
    run_id: &str,
) -> Vec<SegmentProfile> {
    let k = outcome.model.segment_ids.len();
    let parts = profile_parts(fs, rows, labels, values, k);
    // Each segment's patterns are a clustering of its own members: segments side by
    // side on the thread pool.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (&row, &label) in rows.iter().zip(labels) {
        if let Some(m) = members.get_mut(label) {
            m.push(row);
        }
    }
    let patterns: Vec<_> = members
        .par_iter()
        .map(|m| purchasing_patterns(fs, m, seg.seed))
        .collect();
    let mut profiles: Vec<SegmentProfile> = parts
        .into_iter()
        .zip(patterns)
        .enumerate()
        .map(|(s, (p, patterns))| {
            let id = &outcome.model.segment_ids[s];
            let was = previous
                .and_then(|pr| pr.names.get(id))
                .map(|(n, f)| (n.as_str(), f.as_slice()));
            let (name, name_features) = stable_name(&top_features(&p.spectrum), was);
            SegmentProfile {
                segmentation: seg.name.clone(),
                run_id: run_id.to_owned(),
                as_of: fs.as_of,
                segment_id: id.clone(),
                name,
                name_features,
                description: String::new(),
                tags: Vec::new(),
                outlets: p.outlets,
                outlet_share: p.outlet_share,
                value: p.value,
                value_share: p.value_share,
                spectrum: p.spectrum,
                penetration: p.penetration,
                patterns,
                kpis: p.kpis,
                attributes: p.attributes,
            }
        })
        .collect();
    dedupe_names(&mut profiles);
    profiles
}

/// Computes a run of `seg` over `fs` from `previous`.
pub fn compute(
    seg: &SegmentationConfig,
    fs: &FeatureSet,
    previous: Option<&PreviousRun>,
    run_id: &str,
) -> Result<RunOutput, Error> {
    let rows: Vec<usize> = (0..fs.outlets.len())
        .filter(|&i| {
            outlet_value(fs, i) >= seg.min_value && fs.spend.row(i).iter().any(|&v| v > 0.0)
        })
        .collect();
    // The clustered matrix is the run's one outlets × columns array: each outlet's
    // shares of spend are made where its features go, and again for its gaps.
    let (x, names) = feature_matrix(seg, fs, &rows);
    let before: Vec<Option<String>> = rows
        .iter()
        .map(|&i| previous.and_then(|p| p.assignments.get(&fs.outlets[i].outlet_id).cloned()))
        .collect();

    let repartition = previous.is_some_and(|p| p.repartition);
    let operation = previous.and_then(|p| p.operation.as_ref());
    let defaults = RunConfig::default();
    let config = RunConfig {
        hysteresis_margin: if repartition || operation.is_some() {
            0.0
        } else {
            seg.move_margin
        },
        kmeans: KMeansConfig {
            seed: seg.seed,
            // A merge or split by hand takes the centroids it made as they are.
            max_iter: if operation.is_some() {
                0
            } else {
                defaults.kmeans.max_iter
            },
            ..defaults.kmeans.clone()
        },
        ..defaults
    };
    // A split by hand divides the segment's outlets that are not pinned (a pinned
    // outlet stays where it is pinned, so it must not shape the halves).
    let unpinned: Vec<Option<String>> = before
        .iter()
        .zip(&rows)
        .map(|(b, &i)| {
            b.clone()
                .filter(|_| !seg.pins.contains_key(&fs.outlets[i].outlet_id))
        })
        .collect();
    let split = matches!(operation, Some(Operation::Split { .. }));
    let mut clustered = choose::cluster(
        seg,
        x.view(),
        &names,
        if split { &unpinned } else { &before },
        previous,
        &config,
    )?;
    // A merge or split by hand moves outlets by hand only; a promotion takes the
    // draft's partition, whose outlets the detector places as in the draft's runs.
    let detected = if operation.is_some() {
        None
    } else {
        detect::detect_moves(
            seg,
            fs,
            &rows,
            &before,
            x.view(),
            &mut clustered.outcome,
            previous,
            &names,
            repartition,
        )
    };
    let restructured = match operation {
        Some(op) => by_hand(op, &mut clustered, x.view(), &before),
        None => Vec::new(),
    };
    let restructured: HashSet<String> = restructured
        .into_iter()
        .map(|r| fs.outlets[rows[r]].outlet_id.clone())
        .collect();
    let pinned = apply_pins(seg, fs, &rows, &before, x.view(), &mut clustered.outcome);
    let outcome = &clustered.outcome;
    let k = outcome.model.segment_ids.len();
    let labels: Vec<usize> = outcome.assignments.iter().map(|a| a.segment).collect();
    let sil = silhouette(x.view(), &labels, SILHOUETTE_SAMPLE, seg.seed);

    // ARI against the previous run on the outlets both runs assigned.
    let ari_previous = previous.map(|_| ari_against(&before, &labels));

    let values: Vec<f64> = rows.iter().map(|&i| outlet_value(fs, i)).collect();
    let seg_shares = segment_shares(fs, &rows, &labels, k);
    let (assignments, gaps, counts) =
        assignment_rows(fs, &rows, outcome, &values, seg_shares.view())?;
    let profiles = segment_profiles(seg, fs, &rows, &labels, &values, outcome, previous, run_id);

    let assigned: HashSet<&str> = assignments.iter().map(|a| a.outlet_id.as_str()).collect();
    let mut left: Vec<String> = previous
        .map(|p| {
            p.assignments
                .keys()
                .filter(|o| !assigned.contains(o.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    left.sort();
    let count = |c: Changed| assignments.iter().filter(|a| a.change == c).count();
    let model = ModelFile {
        segmentation: seg.name.clone(),
        run_id: run_id.to_owned(),
        as_of: fs.as_of,
        level: seg.level.clone(),
        features_folder: spectra_core::tables::layout::features(&seg.name, fs.as_of),
        transform: Transform {
            kind: "hellinger".into(),
            kpi_weight: seg.kpi_weight,
            kpi_columns: names[fs.features.len()..].to_vec(),
        },
        features: names,
        segments: (0..k)
            .map(|s| ModelSegment {
                segment_id: outcome.model.segment_ids[s].clone(),
                outlets: counts[s],
                centroid: outcome.model.centroids.row(s).to_vec(),
            })
            .collect(),
        next_id: outcome.model.ids.next_id,
        created: clustered.created.clone(),
        retired: clustered.retired.clone(),
        parameters: Parameters {
            k: match &seg.k {
                KSpec::Fixed(k) => serde_json::json!(k),
                KSpec::Auto(_) => serde_json::json!("auto"),
            },
            k_range: seg.k_range,
            min_value: seg.min_value,
            move_margin: seg.move_margin,
            max_match_distance: config.max_match_distance,
            seed: seg.seed,
            window_days: seg.window_days,
            half_life_days: seg.half_life_days,
        },
        quality: Quality {
            inertia: outcome.inertia,
            silhouette: sil,
            silhouette_sample: rows.len().min(SILHOUETTE_SAMPLE),
            ari_previous,
            outlets_assigned: assignments.len(),
            outlets_new: count(Changed::New),
            outlets_moved: count(Changed::Moved),
            outlets_left: left.len(),
            iterations: outcome.iterations,
            duration_ms: 0,
        },
        k_selection: clustered.k_selection.clone(),
        restructure: clustered.restructure.clone(),
        k_check: clustered.k_check(sil, previous),
        hold: None,
        movement: detected.as_ref().map(|d| d.report.clone()),
        recommendations: None,
    };
    let (found, baselines) = detected
        .map(|d| (d.movements, d.baselines))
        .unwrap_or_default();
    let movements = detect::explain_moves(&assignments, found, |a| {
        if pinned.contains(&a.outlet_id) {
            REASON_PINNED
        } else if restructured.contains(&a.outlet_id) {
            REASON_RESTRUCTURED
        } else if repartition {
            REASON_PROMOTED
        } else {
            REASON_NEARER
        }
    });
    let mut assignments = assignments;
    detect::set_baselines(
        &mut assignments,
        &baselines,
        previous,
        fs.as_of,
        seg.window_days,
    );
    Ok(RunOutput {
        run_id: run_id.to_owned(),
        model,
        assignments,
        gaps,
        profiles,
        recommendations: Default::default(),
        left,
        movements,
        contexts: Vec::new(),
        sku_gaps: Bytes::new(),
    })
}

/// A merge or split by hand changes its segments' outlets only. The segments it made
/// keep the centroids it gave them ([`choose::Clustered::by_hand`]) and the outlets
/// of the segments involved go to the nearest of those (a merge's to the kept
/// segment, a split's to the nearer half); every other outlet keeps its segment.
/// Returns the rows it moved.
fn by_hand(
    op: &Operation,
    clustered: &mut choose::Clustered,
    x: ndarray::ArrayView2<f64>,
    before: &[Option<String>],
) -> Vec<usize> {
    let affected: Vec<&str> = match op {
        Operation::Merge { kept, retired } => vec![kept, retired],
        Operation::Split { segment_id } => vec![segment_id],
    };
    let made = std::mem::take(&mut clustered.by_hand);
    let outcome = &mut clustered.outcome;
    for (id, c) in &made {
        if let Some(j) = outcome.model.segment_ids.iter().position(|s| s == id) {
            outcome.model.centroids.row_mut(j).assign(c);
        }
    }
    let mut moved = Vec::new();
    for (r, b) in before.iter().enumerate() {
        let Some(b) = b else { continue };
        let target = if affected.contains(&b.as_str()) {
            made.iter()
                .map(|(id, c)| {
                    let d: f64 = x.row(r).iter().zip(c).map(|(p, q)| (p - q) * (p - q)).sum();
                    (d, id.as_str())
                })
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, id)| id)
        } else {
            Some(b.as_str())
        };
        if let Some(t) = target {
            if force_segment(outcome, x, before, r, t) {
                moved.push(r);
            }
        }
    }
    moved
}

/// Puts every pinned outlet ([`SegmentationConfig::pins`]) of `rows` in its pinned
/// segment; returns the outlets a pin moved. A pin to a segment the run does not have
/// is ignored, with a warning.
fn apply_pins(
    seg: &SegmentationConfig,
    fs: &FeatureSet,
    rows: &[usize],
    before: &[Option<String>],
    x: ndarray::ArrayView2<f64>,
    outcome: &mut RunOutcome,
) -> HashSet<String> {
    let mut moved = HashSet::new();
    if seg.pins.is_empty() {
        return moved;
    }
    for (r, &i) in rows.iter().enumerate() {
        let outlet = &fs.outlets[i].outlet_id;
        let Some(pin) = seg.pins.get(outlet) else {
            continue;
        };
        if !outcome.model.segment_ids.contains(pin) {
            tracing::warn!(segmentation = %seg.name, outlet = %outlet, segment = %pin,
                "outlet pinned to a segment this run does not have; the pin is ignored");
            continue;
        }
        if force_segment(outcome, x, before, r, pin) {
            moved.insert(outlet.clone());
        }
    }
    moved
}

/// Puts row `r` in segment `id` (one of the model's), its distance and change updated;
/// whether that moved it from its previous segment. Confidence is 0: it is not where
/// the distances alone would put it.
fn force_segment(
    outcome: &mut RunOutcome,
    x: ndarray::ArrayView2<f64>,
    before: &[Option<String>],
    r: usize,
    id: &str,
) -> bool {
    let Some(j) = outcome.model.segment_ids.iter().position(|s| s == id) else {
        return false;
    };
    let a = &mut outcome.assignments[r];
    let was_moved = a.change == Change::Moved;
    if a.segment != j {
        let c = outcome.model.centroids.row(j);
        a.distance = x
            .row(r)
            .iter()
            .zip(c.iter())
            .map(|(p, q)| (p - q) * (p - q))
            .sum::<f64>()
            .sqrt();
        a.confidence = 0.0;
        a.segment = j;
        a.segment_id = id.to_owned();
        a.change = match &before[r] {
            None => Change::New,
            Some(b) if b == id => Change::Unchanged,
            Some(_) => Change::Moved,
        };
    }
    let moved = a.change == Change::Moved;
    outcome.moved = outcome.moved + usize::from(moved) - usize::from(was_moved);
    moved
}

/// Two segments with the same new name: the later ones get their id appended.
fn dedupe_names(profiles: &mut [SegmentProfile]) {
    let mut seen: HashSet<String> = HashSet::new();
    for p in profiles.iter_mut() {
        if !seen.insert(p.name.clone()) {
            p.name = format!("{} ({})", p.name, p.segment_id);
            seen.insert(p.name.clone());
        }
    }
}
