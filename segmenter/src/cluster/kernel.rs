//! The hot loop shared by seeding and Lloyd iterations: squared Euclidean distances
//! from blocks of rows to a few centres as `‖x‖² − 2 x·c + ‖c‖²`, with the `x·c` part
//! done by a matrix product on row blocks.
//!
//! Rows are split into fixed groups of [`GROUP_ROWS`] that rayon spreads over the
//! cores; each group returns its own partial result and the caller folds them in
//! group order, so results do not depend on the number of threads or on scheduling.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Rows per unit of parallel work (and per partial sum).
pub(crate) const GROUP_ROWS: usize = 16_384;
/// Rows per matrix product inside a group: small enough to stay in cache.
pub(crate) const BLOCK_ROWS: usize = 256;

/// Feature matrix in the form the kernels want: `f32`, row-major, tiny values
/// flushed to zero, with squared row norms and optional sample weights.
pub(crate) struct Prepared {
    /// Rows = samples, columns = features.
    pub x: Array2<f32>,
    /// `‖x_i‖²` per row.
    pub sq_norms: Vec<f32>,
    /// Sample weights, `None` meaning all ones.
    pub weights: Option<Vec<f32>>,
    /// Mean over features of the per-feature variance (unweighted, the scale of
    /// scikit-learn's tolerance).
    pub mean_variance: f64,
}

impl Prepared {
    /// Converts `x` to `f32` and checks it. Values whose magnitude is below
    /// `1e-6 × max|x|` become zero: arithmetic on them would produce denormal floats,
    /// which are several times slower. Returns the first row holding a non-finite
    /// value as the error.
    pub fn new(x: ArrayView2<f64>, weights: Option<&[f64]>) -> Result<Self, usize> {
        let (n, d) = x.dim();
        let mut out = Array2::<f32>::zeros((n, d));
        // Pass 1: convert, and find the largest magnitude and any non-finite value.
        let scan: Vec<(f32, bool)> = out
            .axis_chunks_iter_mut(Axis(0), GROUP_ROWS)
            .into_par_iter()
            .zip(x.axis_chunks_iter(Axis(0), GROUP_ROWS).into_par_iter())
            .map(|(mut dst, src)| {
                let (mut max, mut bad) = (0.0_f32, false);
                for (mut o, i) in dst.rows_mut().into_iter().zip(src.rows()) {
                    for (o, &v) in o.iter_mut().zip(i) {
                        bad |= !v.is_finite();
                        *o = v as f32;
                        max = max.max(o.abs());
                    }
                }
                (max, bad)
            })
            .collect();
        if let Some(g) = scan.iter().position(|s| s.1) {
            let rows = x.slice(s![g * GROUP_ROWS.., ..]);
            let r = rows
                .rows()
                .into_iter()
                .position(|r| r.iter().any(|v| !v.is_finite()));
            return Err(g * GROUP_ROWS + r.unwrap_or(0));
        }
        let cutoff = scan.iter().fold(0.0_f32, |m, s| m.max(s.0)) * 1e-6;
        // Pass 2: flush tiny values, squared norms and column sums.
        let mut sq_norms = vec![0.0_f32; n];
        let sums: Vec<(Vec<f64>, f64)> = out
            .axis_chunks_iter_mut(Axis(0), GROUP_ROWS)
            .into_par_iter()
            .zip(sq_norms.par_chunks_mut(GROUP_ROWS))
            .map(|(mut rows, norms)| {
                let (mut col, mut sq_total) = (vec![0.0_f64; d], 0.0_f64);
                for (mut row, norm) in rows.rows_mut().into_iter().zip(norms) {
                    let mut sq = 0.0_f32;
                    for (o, c) in row.iter_mut().zip(col.iter_mut()) {
                        if o.abs() < cutoff {
                            *o = 0.0;
                        }
                        sq += *o * *o;
                        *c += f64::from(*o);
                    }
                    *norm = sq;
                    sq_total += f64::from(sq);
                }
                (col, sq_total)
            })
            .collect();
        let (mut col, mut sq_total) = (vec![0.0; d], 0.0);
        for (c, t) in sums {
            col.iter_mut().zip(c).for_each(|(a, b)| *a += b);
            sq_total += t;
        }
        // mean_j Var(x_j) = (mean ‖x‖² − ‖mean x‖²) / D
        let nf = n.max(1) as f64;
        let mean_sq: f64 = col.iter().map(|c| (c / nf).powi(2)).sum();
        let mean_variance = ((sq_total / nf - mean_sq) / d.max(1) as f64).max(0.0);
        Ok(Self {
            x: out,
            sq_norms,
            weights: weights.map(|w| w.iter().map(|&v| v as f32).collect()),
            mean_variance,
        })
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.x.nrows()
    }

    /// Weight of row `i`.
    #[inline]
    pub fn weight(&self, i: usize) -> f32 {
        self.weights.as_ref().map_or(1.0, |w| w[i])
    }
}

/// Centres ready for the kernel: transposed `f32` copy and squared norms.
pub(crate) struct Centres {
    /// `D × k`, so that `x_block · t` gives dot products.
    pub t: Array2<f32>,
    /// `‖c_j‖²`.
    pub sq_norms: Vec<f32>,
}

impl Centres {
    /// Builds the kernel form of `centres` (`k × D`).
    pub fn new(centres: ArrayView2<f64>) -> Self {
        let c32 = centres.mapv(|v| v as f32);
        let sq_norms = c32.rows().into_iter().map(|r| r.dot(&r)).collect();
        Self {
            t: c32.t().as_standard_layout().into_owned(),
            sq_norms,
        }
    }

    /// Number of centres.
    pub fn len(&self) -> usize {
        self.sq_norms.len()
    }
}

/// Runs `visit(global_row, squared_distances_to_each_centre)` over every row, one
/// group per rayon task, and returns each group's result in group order.
/// `per_row` is a mutable per-row output slice of `stride` values per row.
pub(crate) fn for_each_group<T, O, F>(
    data: &Prepared,
    centres: &Centres,
    per_row: &mut [O],
    stride: usize,
    init: impl Fn() -> T + Sync,
    visit: F,
) -> Vec<T>
where
    T: Send,
    O: Send,
    F: Fn(&mut T, usize, &[f32], &mut [O]) + Sync,
{
    let n = data.n_rows();
    let k = centres.len();
    debug_assert_eq!(per_row.len(), n * stride);
    per_row
        .par_chunks_mut(GROUP_ROWS * stride)
        .enumerate()
        .map(|(g, out)| {
            let mut acc = init();
            let start = g * GROUP_ROWS;
            let end = (start + GROUP_ROWS).min(n);
            let mut dist = vec![0.0_f32; BLOCK_ROWS * k];
            let mut dots = Array2::<f32>::zeros((BLOCK_ROWS, k));
            let mut b = start;
            while b < end {
                let e = (b + BLOCK_ROWS).min(end);
                let block = data.x.slice(s![b..e, ..]);
                block_sq_distances(block, &data.sq_norms[b..e], centres, &mut dots, &mut dist);
                for r in 0..(e - b) {
                    let i = b + r;
                    let o = (i - start) * stride;
                    visit(
                        &mut acc,
                        i,
                        &dist[r * k..(r + 1) * k],
                        &mut out[o..o + stride],
                    );
                }
                b = e;
            }
            acc
        })
        .collect()
}

/// Fills `out` (row-major, `rows × k`) with clamped squared distances.
fn block_sq_distances(
    block: ArrayView2<f32>,
    sq: &[f32],
    centres: &Centres,
    dots: &mut Array2<f32>,
    out: &mut [f32],
) {
    let k = centres.len();
    let rows = block.nrows();
    let mut g = dots.slice_mut(s![..rows, ..]);
    general_mat_mul(1.0, &block, &centres.t, 0.0, &mut g);
    for r in 0..rows {
        let xr = sq[r];
        let dst = &mut out[r * k..(r + 1) * k];
        for ((o, &gv), &c) in dst.iter_mut().zip(g.row(r).iter()).zip(&centres.sq_norms) {
            *o = (xr - 2.0 * gv + c).max(0.0);
        }
    }
}

/// Scratch space to compute distances for a scattered set of rows.
pub(crate) struct Gather {
    rows: Array2<f32>,
    norms: Vec<f32>,
    dots: Array2<f32>,
    /// Squared distances, row-major `rows × k`, after [`Gather::distances`].
    pub dist: Vec<f32>,
}

impl Gather {
    /// Scratch for up to [`BLOCK_ROWS`] rows of `d` features and `k` centres.
    pub fn new(d: usize, k: usize) -> Self {
        Self {
            rows: Array2::zeros((BLOCK_ROWS, d)),
            norms: vec![0.0; BLOCK_ROWS],
            dots: Array2::zeros((BLOCK_ROWS, k)),
            dist: vec![0.0; BLOCK_ROWS * k],
        }
    }

    /// Squared distances from rows `idx` (at most [`BLOCK_ROWS`]) to every centre.
    pub fn distances(&mut self, data: &Prepared, idx: &[usize], centres: &Centres) {
        let m = idx.len();
        if m > 0 && idx[m - 1] - idx[0] == m - 1 {
            // A contiguous run of rows needs no copy.
            let (a, b) = (idx[0], idx[m - 1] + 1);
            let rows = data.x.slice(s![a..b, ..]);
            let norms = &data.sq_norms[a..b];
            block_sq_distances(rows, norms, centres, &mut self.dots, &mut self.dist);
            return;
        }
        for (r, &i) in idx.iter().enumerate() {
            self.rows.row_mut(r).assign(&data.x.row(i));
            self.norms[r] = data.sq_norms[i];
        }
        block_sq_distances(
            self.rows.slice(s![..m, ..]),
            &self.norms[..m],
            centres,
            &mut self.dots,
            &mut self.dist,
        );
    }
}
