//! Re-evaluating k of a fitted segmentation: propose splitting the loosest segment
//! (highest mean distance of its outlets to the centroid) or merging the two closest
//! centroids, whichever improves the sampled silhouette more. Ids follow the matching
//! rules: on a split the larger half keeps the id and the other half gets a fresh one;
//! on a merge the larger segment keeps its id and the other id is retired.

use ndarray::{concatenate, Array2, ArrayView2, Axis};

use super::AutoKConfig;
use crate::cluster::incremental::SegmentModel;
use crate::cluster::kmeans::{fit, nearest, Init, KMeansConfig};
use crate::cluster::metrics::silhouette;
use crate::cluster::ClusterError;

/// What a [`Restructure`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestructureKind {
    /// Split `segment_id`; its smaller half becomes `new_id`.
    Split {
        /// The segment split (keeps its id for the larger half).
        segment_id: String,
        /// Id of the new segment.
        new_id: String,
    },
    /// Merge `retired` into `kept`.
    Merge {
        /// The larger segment, whose id survives.
        kept: String,
        /// The id that disappears.
        retired: String,
    },
}

/// A proposed change of k; apply it by passing `model` as the previous model of the
/// next run (which refines the centroids and keeps these ids).
#[derive(Debug, Clone, PartialEq)]
pub struct Restructure {
    /// Split or merge.
    pub kind: RestructureKind,
    /// The model after the change.
    pub model: SegmentModel,
    /// Sampled silhouette of the current model.
    pub silhouette_before: f64,
    /// Sampled silhouette after the change.
    pub silhouette_after: f64,
}

/// Returns the split or merge that improves the sampled silhouette most, or `None`
/// when neither improves it.
pub fn propose_restructure(
    x: ArrayView2<f64>,
    weights: Option<&[f64]>,
    model: &SegmentModel,
    config: &AutoKConfig,
) -> Result<Option<Restructure>, ClusterError> {
    let k = model.centroids.nrows();
    let near = nearest(x, model.centroids.view())?;
    let score = |centroids: &Array2<f64>| -> Result<f64, ClusterError> {
        let labels = nearest(x, centroids.view())?.labels();
        Ok(silhouette(
            x,
            &labels,
            config.sample_size,
            config.kmeans.seed,
        ))
    };
    let before = silhouette(x, &near.labels(), config.sample_size, config.kmeans.seed);
    let w = |i: usize| weights.map_or(1.0, |w| w[i]);
    let mut mass = vec![0.0; k];
    let mut spread = vec![0.0; k];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for i in 0..near.len() {
        let l = near.label(i);
        mass[l] += w(i);
        spread[l] += w(i) * near.distance(i);
        members[l].push(i);
    }
    let mut options = Vec::new();

    // Split the loosest segment with 2-means on its members.
    let loosest = (0..k)
        .filter(|&j| members[j].len() >= 2)
        .max_by(|&a, &b| (spread[a] / mass[a]).total_cmp(&(spread[b] / mass[b])));
    if let Some(j) = loosest {
        let rows = x.select(Axis(0), &members[j]);
        let sub_w: Option<Vec<f64>> = weights.map(|_| members[j].iter().map(|&i| w(i)).collect());
        let cfg = KMeansConfig {
            k: 2,
            ..config.kmeans.clone()
        };
        let halves = fit(rows.view(), sub_w.as_deref(), &Init::KMeansPlusPlus, &cfg)?;
        let mut half_mass = [0.0; 2];
        for (r, l) in halves.nearest.labels().into_iter().enumerate() {
            half_mass[l] += sub_w.as_ref().map_or(1.0, |v| v[r]);
        }
        let (big, small) = if half_mass[0] >= half_mass[1] {
            (0, 1)
        } else {
            (1, 0)
        };
        let mut centroids = model.centroids.clone();
        centroids.row_mut(j).assign(&halves.centroids.row(big));
        let centroids = concatenate(
            Axis(0),
            &[
                centroids.view(),
                halves.centroids.slice(ndarray::s![small..=small, ..]),
            ],
        )
        .expect("same width");
        let mut ids = model.ids;
        let new_id = ids.allocate();
        let mut segment_ids = model.segment_ids.clone();
        segment_ids.push(new_id.clone());
        let after = score(&centroids)?;
        options.push(Restructure {
            kind: RestructureKind::Split {
                segment_id: model.segment_ids[j].clone(),
                new_id,
            },
            model: SegmentModel {
                segment_ids,
                centroids,
                ids,
            },
            silhouette_before: before,
            silhouette_after: after,
        });
    }

    // Merge the closest pair (needs at least 2 segments left for a silhouette).
    if k >= 3 {
        let mut pair = (0, 1, f64::INFINITY);
        for a in 0..k {
            for b in a + 1..k {
                let d = (&model.centroids.row(a) - &model.centroids.row(b))
                    .mapv(|v| v * v)
                    .sum();
                if d < pair.2 {
                    pair = (a, b, d);
                }
            }
        }
        let (a, b, _) = pair;
        let (keep, drop) = if mass[a] >= mass[b] { (a, b) } else { (b, a) };
        let total = (mass[keep] + mass[drop]).max(f64::MIN_POSITIVE);
        let merged = (&model.centroids.row(keep) * mass[keep]
            + &model.centroids.row(drop) * mass[drop])
            / total;
        let mut centroids = model.centroids.clone();
        centroids.row_mut(keep).assign(&merged);
        let rows: Vec<usize> = (0..k).filter(|&j| j != drop).collect();
        let centroids = centroids.select(Axis(0), &rows);
        let segment_ids: Vec<String> = rows.iter().map(|&j| model.segment_ids[j].clone()).collect();
        let after = score(&centroids)?;
        options.push(Restructure {
            kind: RestructureKind::Merge {
                kept: model.segment_ids[keep].clone(),
                retired: model.segment_ids[drop].clone(),
            },
            model: SegmentModel {
                segment_ids,
                centroids,
                ids: model.ids,
            },
            silhouette_before: before,
            silhouette_after: after,
        });
    }
    Ok(options
        .into_iter()
        .filter(|o| o.silhouette_after > before)
        .max_by(|a, b| a.silhouette_after.total_cmp(&b.silhouette_after)))
}

#[cfg(test)]
mod tests {
    use super::super::tests::blobs;
    use super::*;
    use crate::cluster::incremental::{run, RunConfig};

    fn fitted(x: ArrayView2<f64>, k: usize) -> SegmentModel {
        let mut cfg = RunConfig::default();
        cfg.kmeans.k = k;
        run(x, None, None, &cfg).unwrap().model
    }

    #[test]
    fn proposes_split_when_k_is_too_small() {
        let x = blobs(4, 100, 5);
        let model = fitted(x.view(), 3);
        let p = propose_restructure(x.view(), None, &model, &AutoKConfig::default())
            .unwrap()
            .expect("a split should help");
        assert!(matches!(&p.kind, RestructureKind::Split { new_id, .. } if new_id == "S4"));
        assert_eq!(p.model.segment_ids.len(), 4);
        assert_eq!(p.model.ids.next_id, 5);
        assert!(p.silhouette_after > p.silhouette_before);
    }

    #[test]
    fn proposes_merge_when_k_is_too_large() {
        let x = blobs(3, 150, 6);
        let model = fitted(x.view(), 4);
        let p = propose_restructure(x.view(), None, &model, &AutoKConfig::default())
            .unwrap()
            .expect("a merge should help");
        let RestructureKind::Merge { kept, retired } = &p.kind else {
            panic!("expected a merge, got {:?}", p.kind);
        };
        assert!(p.model.segment_ids.contains(kept) && !p.model.segment_ids.contains(retired));
        assert_eq!(p.model.ids, model.ids, "a merge allocates no id");
        let good = fitted(x.view(), 3);
        assert!(
            propose_restructure(x.view(), None, &good, &AutoKConfig::default())
                .unwrap()
                .is_none()
        );
    }
}
