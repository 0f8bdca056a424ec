//! `model.json` of a run (written by the segmenter): what a run leaves for the next
//! one — features, transform, centroids with their segment ids, the id counter — and
//! what it reports about itself: parameters, quality, the k selection, the change
//! detector, a hold.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

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
    /// (see `crate::hold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<crate::hold::Hold>,
    /// The change detector's run: its settings, the over-dispersion it estimated, and
    /// each segment's own drift (absent when the detector did not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub movement: Option<MovementReport>,
    /// What the recommendations could read, and why a list is empty for every outlet
    /// (absent in runs written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendations: Option<RecommendationReport>,
}

/// What a run's recommendations were computed from (model.json `recommendations`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecommendationReport {
    /// Days of daily purchases found in the last four weeks.
    pub recent_days: usize,
    /// Earlier years whose coming four weeks had purchases (`seasonal_soon`).
    pub seasonal_years: Vec<i32>,
    /// Per list left empty for every outlet by missing data: why, in one sentence.
    pub notes: std::collections::BTreeMap<String, String>,
}

/// What the change detector saw in a run (model.json `movement`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovementReport {
    /// Days of the recent window.
    pub recent_days: u32,
    /// Score from which a change is significant.
    pub change_score: f64,
    /// Log Bayes factor by which another segment must explain the recent purchases
    /// better than the outlet's own past.
    pub fit_score: f64,
    /// Over-dispersion φ of the spend reading, estimated from the population and
    /// divided out.
    pub dispersion: f64,
    /// The same for the lines reading (lines per feature), when the features had
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_dispersion: Option<f64>,
    /// Outlets tested (a segment before the detector, enough lines in both periods).
    pub outlets_tested: usize,
    /// Outlets whose change was significant.
    pub outlets_changed: usize,
    /// Outlets the detector moved.
    pub outlets_moved: usize,
    /// Outlets without a previous segment in the run's model (new ones, every outlet of
    /// a first run, those of a retired segment; every outlet of a promotion's run)
    /// whose recent behaviour had already changed and fits another segment than the
    /// run's choice clearly better: the detector placed them there, where a rerun
    /// would otherwise move them.
    #[serde(default)]
    pub outlets_placed: usize,
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
    /// The same two in the lines reading (its members' pooled invoice lines per
    /// feature), when the features had them: what a segment buys can change in lines
    /// while its spend shares, carried by a few large lines, do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_drift: Option<f64>,
    /// `own_drift` in the lines reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_own_drift: Option<f64>,
    /// `drift ≥ 0.1` in either reading: the segment's profile itself drifted.
    pub drifted: bool,
    /// The features whose share changed most, in the reading that drifted more:
    /// `{feature, reading, earlier_share, recent_share}` (`reading`: `spend` or
    /// `lines`).
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
