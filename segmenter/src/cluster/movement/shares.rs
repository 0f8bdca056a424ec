//! An outlet's purchases as the detector reads them: shares of one reading (spend or
//! lines per feature) made from the history in place, and the pooled shares of
//! segments.

use ndarray::ArrayView2;

use super::Reading;

/// The tested outlets' shares of one reading (spend, or lines) per feature (negative
/// values count as 0), read from the history where it lies: each made when it is
/// read, from its row's total. At a million outlets and 65 features a copy of the
/// shares would be 0.5 GB a period.
pub(super) struct Shares<'a, T> {
    values: ArrayView2<'a, T>,
    rows: &'a [usize],
    totals: Vec<f64>,
}

/// A row's positive total, what its shares are of.
fn positive_total<T: Copy + Into<f64>>(row: ndarray::ArrayView1<T>) -> f64 {
    row.iter().map(|&v| v.into().max(0.0)).sum()
}

/// The share of value `v` in a row whose positive total is `total` (negative values
/// count as 0; a row without a positive total has no shares).
fn share(v: f64, total: f64) -> f64 {
    if total > 0.0 {
        v.max(0.0) / total
    } else {
        0.0
    }
}

/// A row's shares of spend, as the detector reads them.
pub fn shares_of<T: Copy + Into<f64>>(row: ndarray::ArrayView1<T>) -> Vec<f64> {
    let total = positive_total(row);
    row.iter().map(|&v| share(v.into(), total)).collect()
}

impl<'a, T: Copy + Into<f64>> Shares<'a, T> {
    pub(super) fn new(values: ArrayView2<'a, T>, rows: &'a [usize]) -> Self {
        let totals = rows
            .iter()
            .map(|&i| positive_total(values.row(i)))
            .collect();
        Self {
            values,
            rows,
            totals,
        }
    }

    /// Outlet `i`'s shares (all 0 when it has no positive total).
    pub(super) fn row(&self, i: usize) -> impl Iterator<Item = f64> + '_ {
        let total = self.totals[i];
        self.values
            .row(self.rows[i])
            .into_iter()
            .map(move |&v| share(v.into(), total))
    }

    /// Outlet `i`'s share of feature `f`.
    pub(super) fn get(&self, i: usize, f: usize) -> f64 {
        self.row(i).nth(f).unwrap_or(0.0)
    }
}

/// One reading of what the outlets bought (spend or lines), earlier and recent.
pub(super) struct Periods<'a, T> {
    pub(super) which: Reading,
    pub(super) earlier: Shares<'a, T>,
    pub(super) recent: Shares<'a, T>,
}

impl<'a, T: Copy + Into<f64>> Periods<'a, T> {
    pub(super) fn new(
        which: Reading,
        (earlier, recent): (ArrayView2<'a, T>, ArrayView2<'a, T>),
        rows: &'a [usize],
    ) -> Self {
        Self {
            which,
            earlier: Shares::new(earlier, rows),
            recent: Shares::new(recent, rows),
        }
    }
}

pub(super) fn normalise(v: &mut [f64]) {
    let t: f64 = v.iter().sum();
    if t > 0.0 {
        v.iter_mut().for_each(|x| *x /= t);
    }
}

pub(super) fn hellinger(a: &[f64], b: &[f64]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
        .sum();
    (s / 2.0).sqrt()
}

/// Pooled shares (weighted by lines) of the outlets `kept`, all of them and per
/// segment (`None`: the segment has no member kept), in one sweep over the outlets.
pub(super) fn pooled<T: Copy + Into<f64>>(
    shares: &Shares<T>,
    lines: &[f64],
    kept: impl Fn(usize) -> bool,
    current: &[Option<usize>],
    (k, d): (usize, usize),
) -> (Vec<f64>, Vec<Option<Vec<f64>>>) {
    let mut all = vec![0.0; d];
    let mut segments: Vec<Option<Vec<f64>>> = vec![None; k];
    for (i, c) in current.iter().enumerate() {
        if !kept(i) {
            continue;
        }
        let segment = c
            .filter(|&c| c < k)
            .map(|c| segments[c].get_or_insert_with(|| vec![0.0; d]));
        let w = lines[i];
        if w <= 0.0 {
            continue;
        }
        // The outlet's shares are made once, for both sums.
        match segment {
            Some(out) => {
                for ((a, o), s) in all.iter_mut().zip(out.iter_mut()).zip(shares.row(i)) {
                    *a += w * s;
                    *o += w * s;
                }
            }
            None => {
                for (a, s) in all.iter_mut().zip(shares.row(i)) {
                    *a += w * s;
                }
            }
        }
    }
    normalise(&mut all);
    for out in segments.iter_mut().flatten() {
        normalise(out);
    }
    (all, segments)
}
