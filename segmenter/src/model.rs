//! `model.json`: what a run leaves for the next one (features, transform, centroids
//! with their segment ids, the id counter) and what it reports about itself
//! (parameters, quality, the k selection). The next run starts from it, aligning
//! centroid columns by feature name: a feature that is new since gets 0 in the old
//! centroids, a feature that disappeared is dropped.

use std::collections::HashMap;

use chrono::NaiveDate;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::cluster::{IdAllocator, KSelection, SegmentModel};

/// The whole `model.json` of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Segmentation name.
    pub segmentation: String,
    /// Run id, `{name}/{as_of}/{seq}`.
    pub run_id: String,
    /// As-of date of the features clustered.
    pub as_of: NaiveDate,
    /// The segmentation's level.
    pub level: String,
    /// Feature folder read, relative to the storage root.
    pub features_folder: String,
    /// Names of the clustering columns, in centroid order (`kpi:…` for KPI columns).
    pub features: Vec<String>,
    /// How spend became clustering columns.
    pub transform: Transform,
    /// The segments with their centroids, in centroid order (`centroids` in the JSON).
    #[serde(rename = "centroids")]
    pub segments: Vec<ModelSegment>,
    /// Number the next fresh segment id will carry (ids are never reused).
    pub next_id: u64,
    /// Ids created in this run.
    pub created: Vec<String>,
    /// Ids retired in this run (never given again).
    pub retired: Vec<String>,
    /// The parameters the run used.
    pub parameters: Parameters,
    /// Quality of the run.
    pub quality: Quality,
    /// The k search, on the run that chose k (`k = "auto"`).
    pub k_selection: Option<KSelectionReport>,
    /// A split or merge applied in this run (`k = "auto"` re-evaluation).
    pub restructure: Option<RestructureReport>,
    /// State of the `k = "auto"` re-evaluation.
    pub k_check: KCheck,
    /// The circuit breaker held this run: it changes too many outlets of its baseline
    /// (see `spectra_core::hold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<spectra_core::hold::Hold>,
    /// The change detector's run: its settings, the over-dispersion it estimated, and
    /// each segment's own drift (absent when the detector did not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub movement: Option<MovementReport>,
}

/// What the change detector saw in a run (model.json `movement`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovementReport {
    /// Days of the recent window.
    pub recent_days: u32,
    /// Score from which a change is significant.
    pub change_score: f64,
    /// Log-likelihood ratio another segment must fit the recent spend by.
    pub fit_score: f64,
    /// Over-dispersion φ estimated from the population and divided out.
    pub dispersion: f64,
    /// Outlets tested (a previous segment, enough lines in both periods).
    pub outlets_tested: usize,
    /// Outlets whose change was significant.
    pub outlets_changed: usize,
    /// Outlets the detector moved.
    pub outlets_moved: usize,
    /// Per segment: its own drift between the earlier and the recent window — a
    /// segment whose profile drifts is a different event from outlets moving.
    pub segments: Vec<SegmentDriftReport>,
}

/// One segment's drift between the earlier and the recent part of the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentDriftReport {
    /// Segment id.
    pub segment_id: String,
    /// Hellinger distance between its members' pooled earlier and recent spend shares.
    pub drift: f64,
    /// The same after the drift of all outlets is taken out (what is its own).
    pub own_drift: f64,
    /// `drift ≥ 0.1`: the segment's profile itself drifted.
    pub drifted: bool,
    /// The features whose share changed most: `{feature, earlier_share, recent_share}`.
    pub drivers: Vec<serde_json::Value>,
    /// Euclidean shift of its centroid since the previous run (0 for a new segment).
    pub centroid_shift: f64,
}

/// How spend became clustering columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    /// `hellinger`: the square root of each share of spend.
    pub kind: String,
    /// Weight of the standardised `ln(1 + x)` KPI columns (0 = none).
    pub kpi_weight: f64,
    /// The KPI columns appended, in order.
    pub kpi_columns: Vec<String>,
}

/// One segment of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSegment {
    /// Stable segment id (`S1`, `S2`…).
    pub segment_id: String,
    /// Outlets assigned in this run.
    pub outlets: usize,
    /// Centroid, one value per entry of [`ModelFile::features`].
    pub centroid: Vec<f64>,
}

/// The parameters of a run (from the segmentation's configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    /// `"auto"` or the fixed k.
    pub k: serde_json::Value,
    /// Range searched when k is `"auto"`.
    pub k_range: [usize; 2],
    /// Outlets below this value are not assigned.
    pub min_value: f64,
    /// Hysteresis margin.
    pub move_margin: f64,
    /// Largest centroid shift for a segment to keep its id.
    pub max_match_distance: f64,
    /// Seed of the random choices.
    pub seed: u64,
    /// Feature window, days.
    pub window_days: u32,
    /// Recency half-life, days.
    pub half_life_days: Option<f64>,
}

/// Quality of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// k-means inertia (sum of squared distances to the nearest centroid).
    pub inertia: f64,
    /// Mean silhouette of the assignment on a seeded sample of outlets.
    pub silhouette: f64,
    /// Outlets in the silhouette sample.
    pub silhouette_sample: usize,
    /// Adjusted Rand index against the previous run on the outlets both assigned.
    pub ari_previous: Option<f64>,
    /// Outlets assigned in this run.
    pub outlets_assigned: usize,
    /// Outlets assigned for the first time.
    pub outlets_new: usize,
    /// Outlets that changed segment.
    pub outlets_moved: usize,
    /// Outlets assigned before but not now (below `min_value` or gone).
    pub outlets_left: usize,
    /// k-means iterations.
    pub iterations: usize,
    /// Wall time of the run's computation and writes, milliseconds.
    pub duration_ms: u64,
}

/// The k search of a `k = "auto"` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KSelectionReport {
    /// Each k tried: `{k, inertia, silhouette}`.
    pub candidates: Vec<serde_json::Value>,
    /// k with the best sampled silhouette (the choice).
    pub best_k: usize,
    /// Elbow of the inertia curve, for comparison.
    pub elbow_k: usize,
}

impl From<&KSelection> for KSelectionReport {
    fn from(s: &KSelection) -> Self {
        Self {
            candidates: s
                .candidates
                .iter()
                .map(|c| serde_json::json!({"k": c.k, "inertia": c.inertia, "silhouette": c.silhouette}))
                .collect(),
            best_k: s.best_k,
            elbow_k: s.elbow_k,
        }
    }
}

/// A split or merge applied by a `k = "auto"` re-evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestructureReport {
    /// `split` or `merge`.
    pub kind: String,
    /// Split: the segment split; merge: the segment kept.
    pub segment_id: String,
    /// Split: the new segment; merge: the retired one.
    pub other_id: String,
    /// Sampled silhouette before.
    pub silhouette_before: f64,
    /// Sampled silhouette after.
    pub silhouette_after: f64,
}

/// When `k = "auto"` is re-evaluated: after `runs_since` reaches a limit, or when the
/// silhouette falls clearly below the one measured at the last evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KCheck {
    /// Sampled silhouette at the last evaluation of k.
    pub silhouette: f64,
    /// Runs since the last evaluation.
    pub runs_since: u32,
}

impl ModelFile {
    /// The model as the clustering core's [`SegmentModel`], its centroid columns
    /// aligned to `features`: a feature the model did not have gets 0.
    pub fn segment_model(&self, features: &[String]) -> SegmentModel {
        let old: HashMap<&str, usize> = self
            .features
            .iter()
            .enumerate()
            .map(|(j, f)| (f.as_str(), j))
            .collect();
        let centroids = Array2::from_shape_fn((self.segments.len(), features.len()), |(s, j)| {
            old.get(features[j].as_str())
                .and_then(|&o| self.segments[s].centroid.get(o).copied())
                .unwrap_or(0.0)
        });
        SegmentModel {
            segment_ids: self.segments.iter().map(|s| s.segment_id.clone()).collect(),
            centroids,
            ids: IdAllocator {
                next_id: self.next_id,
            },
        }
    }

    /// Share of the current features the model knows (0 when it knows none).
    pub fn feature_overlap(&self, features: &[String]) -> f64 {
        if features.is_empty() {
            return 0.0;
        }
        let old: std::collections::HashSet<&str> =
            self.features.iter().map(String::as_str).collect();
        features.iter().filter(|f| old.contains(f.as_str())).count() as f64 / features.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centroids_align_by_feature_name() {
        let m = ModelFile {
            segmentation: "x".into(),
            run_id: "x/2026-01-01/1".into(),
            as_of: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            level: "category".into(),
            features_folder: String::new(),
            features: vec!["coffee".into(), "tea".into(), "milk".into()],
            transform: Transform {
                kind: "hellinger".into(),
                kpi_weight: 0.0,
                kpi_columns: vec![],
            },
            segments: vec![ModelSegment {
                segment_id: "S4".into(),
                outlets: 3,
                centroid: vec![0.1, 0.2, 0.3],
            }],
            next_id: 7,
            created: vec![],
            retired: vec![],
            parameters: Parameters {
                k: serde_json::json!(1),
                k_range: [2, 3],
                min_value: 0.0,
                move_margin: 0.1,
                max_match_distance: 0.3,
                seed: 1,
                window_days: 91,
                half_life_days: None,
            },
            quality: Quality {
                inertia: 0.0,
                silhouette: 0.0,
                silhouette_sample: 0,
                ari_previous: None,
                outlets_assigned: 3,
                outlets_new: 3,
                outlets_moved: 0,
                outlets_left: 0,
                iterations: 1,
                duration_ms: 0,
            },
            k_selection: None,
            restructure: None,
            k_check: KCheck {
                silhouette: 0.5,
                runs_since: 0,
            },
            hold: None,
            movement: None,
        };
        let now = ["juice", "milk", "coffee"].map(String::from);
        let sm = m.segment_model(&now);
        assert_eq!(sm.centroids.row(0).to_vec(), vec![0.0, 0.3, 0.1]);
        assert_eq!(sm.segment_ids, vec!["S4"]);
        assert_eq!(sm.ids.next_id, 7);
        assert!((m.feature_overlap(&now) - 2.0 / 3.0).abs() < 1e-12);
        let back: ModelFile = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
