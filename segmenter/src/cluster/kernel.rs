//! The hot loop shared by seeding and Lloyd iterations: squared Euclidean distances
//! from blocks of rows to a few centres (by the register tiles of `tiles.rs`).
//!
//! Rows are split into fixed groups of [`GROUP_ROWS`] that rayon spreads over the
//! cores; each group returns its own partial result and the caller folds them in
//! group order, so results do not depend on the number of threads or on scheduling.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

pub(crate) use super::tiles::Centres;
use super::tiles::{sq_distances, Points};

/// Rows per unit of parallel work (and per partial sum).
pub(crate) const GROUP_ROWS: usize = 16_384;
/// Rows per distance block inside a group: small enough to stay in cache.
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
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let group = GROUP_ROWS * d.max(1);
        // Pass 1, reading only: the largest magnitude, and whether any value is
        // not finite. Eight lanes, so that it runs at the speed of memory.
        let scan: Vec<(f64, bool)> = xs
            .par_chunks(group)
            .map(|chunk| {
                let (mut max, mut finite) = ([0.0_f64; 8], [true; 8]);
                let mut lanes = chunk.chunks_exact(8);
                for values in &mut lanes {
                    for l in 0..8 {
                        let a = values[l].abs();
                        finite[l] &= a <= f64::MAX;
                        max[l] = if a > max[l] { a } else { max[l] };
                    }
                }
                for &v in lanes.remainder() {
                    let a = v.abs();
                    finite[0] &= a <= f64::MAX;
                    max[0] = if a > max[0] { a } else { max[0] };
                }
                (max.into_iter().fold(0.0, f64::max), finite.contains(&false))
            })
            .collect();
        if let Some(g) = scan.iter().position(|s| s.1) {
            let row = xs[g * group..]
                .iter()
                .position(|v| !v.is_finite())
                .map_or(0, |p| p / d);
            return Err(g * GROUP_ROWS + row);
        }
        let cutoff = scan.iter().fold(0.0_f64, |m, s| m.max(s.0)) as f32 * 1e-6;
        // Pass 2: convert, flush tiny values, squared norms and column sums.
        let mut out = vec![0.0_f32; n * d];
        let mut sq_norms = vec![0.0_f32; n];
        let sums: Vec<(Vec<f64>, f64)> = out
            .par_chunks_mut(group)
            .zip(xs.par_chunks(group))
            .zip(sq_norms.par_chunks_mut(GROUP_ROWS))
            .map(|((dst, src), norms)| {
                let (mut col, mut sq_total) = (vec![0.0_f64; d], 0.0_f64);
                for ((o, i), norm) in dst.chunks_mut(d).zip(src.chunks(d)).zip(norms) {
                    let mut sq = [0.0_f32; 8];
                    let convert = |o: &mut f32, v: f64, s: &mut f64, q: &mut f32| {
                        let v = v as f32;
                        let v = if v.abs() < cutoff { 0.0 } else { v };
                        *o = v;
                        *q += v * v;
                        *s += f64::from(v);
                    };
                    let (o8, o_rest) = o.as_chunks_mut::<8>();
                    let (i8, i_rest) = i.as_chunks::<8>();
                    let (c8, c_rest) = col.as_chunks_mut::<8>();
                    for ((o, i), s) in o8.iter_mut().zip(i8).zip(c8.iter_mut()) {
                        for l in 0..8 {
                            convert(&mut o[l], i[l], &mut s[l], &mut sq[l]);
                        }
                    }
                    for ((o, &v), s) in o_rest.iter_mut().zip(i_rest).zip(c_rest) {
                        convert(o, v, s, &mut sq[0]);
                    }
                    *norm = sq.iter().sum();
                    sq_total += f64::from(*norm);
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
            x: Array2::from_shape_vec((n, d), out).expect("n × d values"),
            sq_norms,
            weights: weights.map(|w| w.iter().map(|&v| v as f32).collect()),
            mean_variance,
        })
    }

    /// The rows and their norms, for the distance tiles.
    pub fn points(&self) -> Points<'_> {
        Points {
            x: self.x.as_slice().expect("prepared data is row-major"),
            d: self.x.ncols(),
            norms: &self.sq_norms,
        }
    }

    /// Weight of row `i`.
    #[inline]
    pub fn weight(&self, i: usize) -> f32 {
        self.weights.as_ref().map_or(1.0, |w| w[i])
    }
}

/// Runs `visit(first_row, squared_distances, outputs)` over blocks of at most
/// [`BLOCK_ROWS`] rows (distances row-major, `rows × k`; outputs `stride` values per
/// row), one group of blocks per rayon task, and returns each group's result in
/// group order.
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
    let n = data.x.nrows();
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
            let mut idx = Vec::with_capacity(BLOCK_ROWS);
            let mut b = start;
            while b < end {
                let e = (b + BLOCK_ROWS).min(end);
                idx.clear();
                idx.extend(b..e);
                let dist = &mut dist[..(e - b) * k];
                sq_distances(data.points(), &idx, centres, dist);
                let o = (b - start) * stride;
                visit(&mut acc, b, dist, &mut out[o..o + (e - b) * stride]);
                b = e;
            }
            acc
        })
        .collect()
}

/// Scratch space to compute distances for a scattered set of rows.
pub(crate) struct Gather {
    /// Squared distances, row-major `rows × k`, after [`Gather::distances`].
    pub dist: Vec<f32>,
}

impl Gather {
    /// Scratch for up to [`BLOCK_ROWS`] rows and `k` centres.
    pub fn new(k: usize) -> Self {
        Self {
            dist: vec![0.0; BLOCK_ROWS * k],
        }
    }

    /// Squared distances from rows `idx` (at most [`BLOCK_ROWS`]) to every centre.
    pub fn distances(&mut self, data: &Prepared, idx: &[usize], centres: &Centres) {
        let dist = &mut self.dist[..idx.len() * centres.len()];
        sq_distances(data.points(), idx, centres, dist);
    }
}
