//! Choosing the number of segments. At the first run [`choose_k`] fits every k of a
//! range and reports both the silhouette (on a seeded sample) and the elbow of the
//! inertia curve, picking by silhouette. Later, [`propose_restructure`] checks whether
//! splitting the loosest segment or merging the closest pair would improve the
//! silhouette, keeping ids stable.

mod restructure;

pub use restructure::{propose_restructure, Restructure, RestructureKind};

use std::ops::RangeInclusive;

use ndarray::ArrayView2;

use super::kmeans::{fit, Init, KMeansConfig};
use super::metrics::silhouette;
use super::ClusterError;

/// Settings of the k search and of restructuring proposals.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoKConfig {
    /// k-means settings (its `k` is ignored).
    pub kmeans: KMeansConfig,
    /// Rows in the silhouette sample.
    pub sample_size: usize,
}

impl Default for AutoKConfig {
    fn default() -> Self {
        Self {
            kmeans: KMeansConfig::default(),
            sample_size: 2000,
        }
    }
}

/// Quality of one k.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KCandidate {
    /// Number of clusters.
    pub k: usize,
    /// k-means inertia (weighted sum of squared distances).
    pub inertia: f64,
    /// Mean silhouette on the sample.
    pub silhouette: f64,
}

/// Result of [`choose_k`].
#[derive(Debug, Clone, PartialEq)]
pub struct KSelection {
    /// Every k tried, in increasing order.
    pub candidates: Vec<KCandidate>,
    /// The k with the highest silhouette (the choice).
    pub best_k: usize,
    /// The elbow of the inertia curve (largest gap below the chord from the first to
    /// the last point, both axes scaled to [0, 1]), for comparison.
    pub elbow_k: usize,
}

/// Fits k-means for each k in `k_range` (cold, same seed) and picks k by silhouette.
pub fn choose_k(
    x: ArrayView2<f64>,
    weights: Option<&[f64]>,
    k_range: RangeInclusive<usize>,
    config: &AutoKConfig,
) -> Result<KSelection, ClusterError> {
    let (lo, hi) = (*k_range.start(), *k_range.end());
    if lo < 2 || hi < lo {
        return Err(ClusterError::InvalidParameter {
            name: "k_range",
            reason: format!("[{lo}, {hi}] must have 2 ≤ low ≤ high"),
        });
    }
    let mut candidates = Vec::new();
    for k in k_range {
        let cfg = KMeansConfig {
            k,
            ..config.kmeans.clone()
        };
        let f = fit(x, weights, &Init::KMeansPlusPlus, &cfg)?;
        let s = silhouette(x, &f.nearest.labels(), config.sample_size, cfg.seed);
        candidates.push(KCandidate {
            k,
            inertia: f.inertia,
            silhouette: s,
        });
    }
    let best_k = candidates
        .iter()
        .max_by(|a, b| a.silhouette.total_cmp(&b.silhouette).then(b.k.cmp(&a.k)))
        .map_or(lo, |c| c.k);
    Ok(KSelection {
        elbow_k: elbow(&candidates),
        candidates,
        best_k,
    })
}

/// Kneedle-style elbow of a decreasing inertia curve.
fn elbow(c: &[KCandidate]) -> usize {
    let (first, last) = (c[0], c[c.len() - 1]);
    let span_k = (last.k - first.k).max(1) as f64;
    let span_i = (first.inertia - last.inertia).abs().max(f64::MIN_POSITIVE);
    c.iter()
        .map(|p| {
            let x = (p.k - first.k) as f64 / span_k;
            let y = (p.inertia - last.inertia) / span_i;
            (p.k, (1.0 - x) - y)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map_or(first.k, |(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};

    /// `k` well-separated Gaussian blobs in 4 dimensions.
    pub(crate) fn blobs(k: usize, per: usize, seed: u64) -> Array2<f64> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        Array2::from_shape_fn((k * per, 4), |(i, c)| {
            let centre = if c == i / per % 4 {
                10.0 * (1 + i / per / 4) as f64
            } else {
                0.0
            };
            centre + rng.gen_range(-1.0..1.0)
        })
    }

    #[test]
    fn picks_the_planted_k() {
        let x = blobs(4, 100, 3);
        let sel = choose_k(x.view(), None, 2..=7, &AutoKConfig::default()).unwrap();
        assert_eq!(sel.best_k, 4, "{sel:?}");
        assert_eq!(sel.elbow_k, 4, "{sel:?}");
        assert_eq!(sel.candidates.len(), 6);
        let bad = choose_k(x.view(), None, 1..=3, &AutoKConfig::default());
        assert!(bad.is_err());
    }
}
