//! Turning an outlet's spend into clustering features.
//!
//! The spectrum (share of spend per feature) goes through the Hellinger transform —
//! the square root of the shares — so Euclidean distance between outlets becomes the
//! Hellinger distance between their spectra (small categories count, but a category
//! shared by everyone does not dominate). KPI columns (value, invoices per month…)
//! can be appended standardised and scaled by a weight, so size can matter without
//! swamping the mix. [`log1p_standardise`] is the classic alternative for raw spend.

use ndarray::{s, Array2, ArrayView1, ArrayView2, ArrayViewMut1};

/// Spend (rows = outlets, columns = features; negative values count as 0) → shares
/// per row summing to 1. A row with no positive spend stays all zero.
pub fn shares(spend: ArrayView2<f64>) -> Array2<f64> {
    let mut out = spend.to_owned();
    for row in out.rows_mut() {
        into_row_shares(row);
    }
    out
}

/// One outlet's spend → its shares, in place (what [`shares`] makes of each row).
pub fn into_row_shares(mut row: ArrayViewMut1<f64>) {
    row.mapv_inplace(|v| v.max(0.0));
    let total: f64 = row.sum();
    if total > 0.0 {
        row.mapv_inplace(|v| v / total);
    }
}

/// One outlet's shares of its spend row, as [`shares`] makes them.
pub fn row_shares(spend: ArrayView1<f64>) -> Vec<f64> {
    let mut row = spend.to_vec();
    into_row_shares(ArrayViewMut1::from(&mut row[..]));
    row
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
    let rows: Vec<usize> = (0..spend.nrows()).collect();
    features_of_rows(spend, &rows, kpis, transform)
}

/// [`spectrum_features`] of the rows `rows` of `spend` (`kpis`: one row per entry of
/// `rows`). The one outlets × columns array made is the result: each row's shares are
/// made where its features go, then turned into their square roots (the numbers
/// [`hellinger`] of [`shares`] gives, without the shares as an array of their own).
pub fn features_of_rows(
    spend: ArrayView2<f64>,
    rows: &[usize],
    kpis: Option<ArrayView2<f64>>,
    transform: &SpectrumTransform,
) -> Array2<f64> {
    let d = spend.ncols();
    let kpis = kpis.filter(|k| transform.kpi_weight > 0.0 && k.ncols() > 0);
    let mut x = Array2::zeros((rows.len(), d + kpis.map_or(0, |k| k.ncols())));
    for (mut out, &i) in x.rows_mut().into_iter().zip(rows) {
        let mut spectrum = out.slice_mut(s![..d]);
        spectrum.assign(&spend.row(i));
        into_row_shares(spectrum.view_mut());
        spectrum.mapv_inplace(|v| v.max(0.0).sqrt());
    }
    if let Some(k) = kpis {
        assert_eq!(k.nrows(), rows.len(), "one KPI row per outlet");
        let scaled = standardise(k) * transform.kpi_weight;
        x.slice_mut(s![.., d..]).assign(&scaled);
    }
    x
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
    fn features_of_rows_are_the_hellinger_of_the_shares_to_the_bit() {
        // Spend with returns (negative), an empty row and a row of one value; the
        // features of some rows, in another order, with and without KPI columns.
        let spend = array![
            [1.5, 3.25, 0.0, 7.0],
            [0.0, 0.0, 0.0, 0.0],
            [-2.0, 4.0, 0.1, 0.3],
            [0.0, 0.0, 9.0, 0.0],
            [1e-9, 3e7, 0.7, 12.5],
        ];
        let rows = [4, 0, 2, 3];
        let picked = spend.select(ndarray::Axis(0), &rows);
        let spectrum = hellinger(shares(picked.view()).view());
        let plain = features_of_rows(spend.view(), &rows, None, &Default::default());
        assert_eq!(plain, spectrum);
        assert!(rows
            .iter()
            .enumerate()
            .all(|(r, &i)| row_shares(spend.row(i)) == shares(picked.view()).row(r).to_vec()));

        let kpis = array![[1.0, 2.0], [3.0, 5.0], [4.0, 4.0], [0.5, 9.0]];
        let t = SpectrumTransform { kpi_weight: 0.3 };
        let with = features_of_rows(spend.view(), &rows, Some(kpis.view()), &t);
        let scaled = standardise(kpis.view()) * 0.3;
        let expected =
            ndarray::concatenate(ndarray::Axis(1), &[spectrum.view(), scaled.view()]).unwrap();
        assert_eq!(with, expected);
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
