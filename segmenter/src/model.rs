//! `model.json`: what a run leaves for the next one (features, transform, centroids
//! with their segment ids, the id counter) and what it reports about itself
//! (parameters, quality, the k selection). The next run starts from it, aligning
//! centroid columns by feature name: a feature that is new since gets 0 in the old
//! centroids, a feature that disappeared is dropped.

use std::collections::HashMap;

use ndarray::Array2;

use crate::cluster::{IdAllocator, KSelection, SegmentModel};

pub use spectra_core::tables::model::{
    KCheck, KSelectionReport, ModelFile, ModelSegment, MovementReport, Parameters, Quality,
    RestructureReport, SegmentDriftReport, Transform,
};

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

/// What the clustering core needs of a stored model.
pub trait ModelExt {
    /// The model as the clustering core's [`SegmentModel`], its centroid columns
    /// aligned to `features`: a feature the model did not have gets 0.
    fn segment_model(&self, features: &[String]) -> SegmentModel;
    /// Share of the current features the model knows (0 when it knows none).
    fn feature_overlap(&self, features: &[String]) -> f64;
}

impl ModelExt for ModelFile {
    fn segment_model(&self, features: &[String]) -> SegmentModel {
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

    fn feature_overlap(&self, features: &[String]) -> f64 {
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
    use chrono::NaiveDate;

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
            recommendations: None,
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
