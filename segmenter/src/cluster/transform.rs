//! Turning an outlet's spend into clustering features.
//!
//! The spectrum (share of spend per feature) goes through the Hellinger transform —
//! the square root of the shares — so Euclidean distance between outlets becomes the
//! Hellinger distance between their spectra (small categories count, but a category
//! shared by everyone does not dominate). KPI columns (value, invoices per month…)
//! can be appended standardised and scaled by a weight, so size can matter without
//! swamping the mix. [`log1p_standardise`] is the classic alternative for raw spend.

use ndarray::{concatenate, Array2, ArrayView2, Axis};

/// Spend (rows = outlets, columns = features; negative values count as 0) → shares
/// per row summing to 1. A row with no positive spend stays all zero.
pub fn shares(spend: ArrayView2<f64>) -> Array2<f64> {
    let mut out = spend.to_owned();
    into_shares(&mut out);
    out
}

/// [`shares`] in place: the same numbers without a second outlets × features array.
pub fn into_shares(spend: &mut Array2<f64>) {
    spend.mapv_inplace(|v| v.max(0.0));
    for mut row in spend.rows_mut() {
        let total: f64 = row.sum();
        if total > 0.0 {
            row.mapv_inplace(|v| v / total);
        }
    }
}

/// Hellinger features: the square root of each share.
pub fn hellinger(shares: ArrayView2<f64>) -> Array2<f64> {
    shares.mapv(|v| v.max(0.0).sqrt())
}

/// Each column shifted to mean 0 and scaled to standard deviation 1 (population);
/// constant columns become 0.
pub fn standardise(columns: ArrayView2<f64>) -> Array2<f64> {
    let n = columns.nrows().max(1) as f64;
    let mut out = columns.to_owned();
    for mut col in out.columns_mut() {
        let mean = col.sum() / n;
        let sd = (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        col.mapv_inplace(|v| if sd > 0.0 { (v - mean) / sd } else { 0.0 });
    }
    out
}

/// `ln(1 + max(v, 0))` per value, then [`standardise`]: the usual features for raw
/// spend with a long right tail.
pub fn log1p_standardise(spend: ArrayView2<f64>) -> Array2<f64> {
    standardise(spend.mapv(|v| v.max(0.0).ln_1p()).view())
}

/// How [`spectrum_features`] builds the matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpectrumTransform {
    /// Scale of the standardised KPI columns relative to the Hellinger part. A
    /// Hellinger row has norm 1, so a weight of `w` on `m` KPI columns gives them
    /// about `w √m` of spread; 0 leaves the KPIs out.
    pub kpi_weight: f64,
}

impl Default for SpectrumTransform {
    fn default() -> Self {
        Self { kpi_weight: 0.0 }
    }
}

/// Features of a segmentation: Hellinger of the spend shares, then (if `kpis` is given
/// and the weight is positive) the standardised KPI columns times `kpi_weight`.
pub fn spectrum_features(
    spend: ArrayView2<f64>,
    kpis: Option<ArrayView2<f64>>,
    transform: &SpectrumTransform,
) -> Array2<f64> {
    features_of_shares(shares(spend).view(), kpis, transform)
}

/// [`spectrum_features`] of spend already turned into [`shares`].
pub fn features_of_shares(
    shares: ArrayView2<f64>,
    kpis: Option<ArrayView2<f64>>,
    transform: &SpectrumTransform,
) -> Array2<f64> {
    let spectrum = hellinger(shares);
    match kpis {
        Some(k) if transform.kpi_weight > 0.0 && k.ncols() > 0 => {
            assert_eq!(k.nrows(), shares.nrows(), "one KPI row per outlet");
            let scaled = standardise(k) * transform.kpi_weight;
            concatenate(Axis(1), &[spectrum.view(), scaled.view()])
                .expect("row counts checked above")
        }
        _ => spectrum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn shares_and_hellinger() {
        let spend = array![[1.0, 3.0], [0.0, 0.0], [-2.0, 4.0]];
        let s = shares(spend.view());
        assert_eq!(s, array![[0.25, 0.75], [0.0, 0.0], [0.0, 1.0]]);
        let h = hellinger(s.view());
        assert!((h[[0, 0]] - 0.5).abs() < 1e-12);
        // Hellinger rows of a non-empty spectrum have unit norm.
        assert!((h.row(0).dot(&h.row(0)) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn standardise_gives_zero_mean_unit_sd() {
        let z = standardise(array![[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]].view());
        assert!(z.column(0).sum().abs() < 1e-12);
        let sd = (z.column(0).mapv(|v| v * v).sum() / 3.0).sqrt();
        assert!((sd - 1.0).abs() < 1e-12);
        assert_eq!(z.column(1).sum(), 0.0);
    }

    #[test]
    fn kpis_are_appended_at_their_weight() {
        let spend = array![[1.0, 1.0], [1.0, 0.0]];
        let kpis = array![[10.0], [20.0]];
        let t = SpectrumTransform { kpi_weight: 0.5 };
        let f = spectrum_features(spend.view(), Some(kpis.view()), &t);
        assert_eq!(f.dim(), (2, 3));
        assert!((f[[0, 2]] + 0.5).abs() < 1e-12 && (f[[1, 2]] - 0.5).abs() < 1e-12);
        let plain = spectrum_features(spend.view(), Some(kpis.view()), &Default::default());
        assert_eq!(plain.ncols(), 2);
    }
}
