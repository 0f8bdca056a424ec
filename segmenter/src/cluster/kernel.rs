//! The hot loop shared by seeding and Lloyd iterations: squared Euclidean distances
//! from blocks of rows to a few centres (by the register tiles of `tiles.rs`).
//!
//! Rows are split into fixed groups of [`GROUP_ROWS`] that rayon spreads over the
//! cores; each group returns its own partial result and the caller folds them in
//! group order, so results do not depend on the number of threads or on scheduling.

use ndarray::{ArrayView2, CowArray, Ix2};
use rayon::prelude::*;

use super::rows::RowBuffer;
use super::tiles::sq_distances;
pub(crate) use super::tiles::Centres;
pub(crate) use super::tiles::Points;

/// Rows per unit of parallel work (and per partial sum).
pub(crate) const GROUP_ROWS: usize = 16_384;
/// Rows per distance block inside a group: small enough to stay in cache.
pub(crate) const BLOCK_ROWS: usize = 256;

/// How [`Prepared`] keeps the rows it hands to the tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storage {
    /// Converted to `f32` once, into a matrix of their own: for fits, which read
    /// every row at least twice (k-means++ seeding and Lloyd iterations, or a warm
    /// start's two full passes).
    Converted,
    /// Left in the caller's `f64` matrix and converted block by block, into cache-
    /// sized scratch, when read: for one pass over the rows (the nearest centres).
    /// No `n × D` copy is allocated — at 1M × 100, 400 MB to fault in (70 ms in
    /// 4 KiB pages; see `rows.rs`) — and each read gives the same `f32` values a
    /// converted matrix would hold. (Two passes already cost more: reading `f64`
    /// twice takes longer than converting once.)
    Streamed,
}

/// Feature matrix in the form the kernels want: `f32`, row-major, tiny values
/// flushed to zero, with squared row norms and optional sample weights.
pub(crate) struct Prepared<'a> {
    rows: Rows<'a>,
    d: usize,
    /// `‖x_i‖²` per row.
    pub sq_norms: Vec<f32>,
    /// Sample weights, `None` meaning all ones.
    pub weights: Option<Vec<f32>>,
    /// Mean over features of the per-feature variance (unweighted, the scale of
    /// scikit-learn's tolerance).
    pub mean_variance: f64,
}

enum Rows<'a> {
    Converted(RowBuffer),
    Streamed(CowArray<'a, f64, Ix2>),
}

impl<'a> Prepared<'a> {
    /// Checks `x` and computes its row norms and its variance, in one pass over `x`;
    /// with [`Storage::Converted`] the same pass writes the `f32` rows. Values whose
    /// magnitude is below `1e-6 ×` the largest magnitude of their row become zero:
    /// arithmetic on them would produce denormal floats, which are several times
    /// slower, and next to the row's largest value they are below `f32`'s precision
    /// in its norm. (The threshold is the row's, not the matrix's: a row is read
    /// once, from the cache, for its maximum and its conversion — a matrix-wide
    /// maximum took a pass of its own over all of `x` — and one large row elsewhere
    /// does not erase a small row's values.) Returns the first row holding a
    /// non-finite value as the error.
    pub fn new(
        x: ArrayView2<'a, f64>,
        weights: Option<&[f64]>,
        storage: Storage,
    ) -> Result<Self, usize> {
        let (n, d) = x.dim();
        let x: CowArray<'a, f64, Ix2> = if x.is_standard_layout() {
            x.into()
        } else {
            x.as_standard_layout().into_owned().into()
        };
        let xs = x.as_slice().expect("standard layout");
        let group = GROUP_ROWS * d.max(1);
        let mut out = match storage {
            Storage::Converted => RowBuffer::zeroed(n * d),
            Storage::Streamed => RowBuffer::Heap(Vec::new()),
        };
        let mut sq_norms = vec![0.0_f32; n];
        // Per group of rows: convert, flush tiny values, squared norms and column
        // sums. A streamed matrix converts each row into one row of scratch.
        let pass = |g: usize, mut dst: Option<&mut [f32]>, src: &[f64], norms: &mut [f32]| {
            let (mut col, mut sq_total) = (vec![0.0_f64; d], 0.0_f64);
            let mut scratch = vec![0.0_f32; if dst.is_some() { 0 } else { d }];
            for (r, (i, norm)) in src.chunks(d).zip(norms).enumerate() {
                let o = match dst.as_deref_mut() {
                    Some(dst) => &mut dst[r * d..(r + 1) * d],
                    None => &mut scratch[..],
                };
                *norm = convert_row(i, o).ok_or(g * GROUP_ROWS + r)?;
                col.iter_mut()
                    .zip(o.iter())
                    .for_each(|(c, &v)| *c += f64::from(v));
                sq_total += f64::from(*norm);
            }
            Ok((col, sq_total))
        };
        let sums: Vec<Result<(Vec<f64>, f64), usize>> = match storage {
            Storage::Converted => out
                .as_mut_slice()
                .par_chunks_mut(group)
                .zip(xs.par_chunks(group))
                .zip(sq_norms.par_chunks_mut(GROUP_ROWS))
                .enumerate()
                .map(|(g, ((dst, src), norms))| pass(g, Some(dst), src, norms))
                .collect(),
            Storage::Streamed => xs
                .par_chunks(group)
                .zip(sq_norms.par_chunks_mut(GROUP_ROWS))
                .enumerate()
                .map(|(g, (src, norms))| pass(g, None, src, norms))
                .collect(),
        };
        let sums = sums.into_iter().collect::<Result<Vec<_>, usize>>()?;
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
            rows: match storage {
                Storage::Converted => Rows::Converted(out),
                Storage::Streamed => Rows::Streamed(x),
            },
            d,
            sq_norms,
            weights: weights.map(|w| w.iter().map(|&v| v as f32).collect()),
            mean_variance,
        })
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.sq_norms.len()
    }

    /// Values per row.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Rows `idx` as the tiles read them: in place when converted, else converted
    /// into `block`. Returns the points and the positions of the rows in them.
    pub fn rows<'s>(&'s self, idx: &'s [usize], block: &'s mut Block) -> (Points<'s>, &'s [usize]) {
        let d = self.d;
        match &self.rows {
            Rows::Converted(x) => (
                Points {
                    x: x.as_slice(),
                    d,
                    norms: &self.sq_norms,
                },
                idx,
            ),
            Rows::Streamed(src) => {
                let xs = src.as_slice().expect("standard layout");
                block.x.resize(idx.len() * d, 0.0);
                block.norms.clear();
                block.idx.clear();
                for (r, (&i, o)) in idx.iter().zip(block.x.chunks_mut(d)).enumerate() {
                    convert_row(&xs[i * d..(i + 1) * d], o).expect("checked when prepared");
                    block.norms.push(self.sq_norms[i]);
                    block.idx.push(r);
                }
                (
                    Points {
                        x: &block.x,
                        d,
                        norms: &block.norms,
                    },
                    &block.idx,
                )
            }
        }
    }

    /// Row `i` as the tiles read it, in `f64`.
    pub fn row(&self, i: usize) -> Vec<f64> {
        let mut block = Block::default();
        let (points, at) = self.rows(std::slice::from_ref(&i), &mut block);
        points.row(at[0]).iter().map(|&v| f64::from(v)).collect()
    }

    /// Weight of row `i`.
    #[inline]
    pub fn weight(&self, i: usize) -> f32 {
        self.weights.as_ref().map_or(1.0, |w| w[i])
    }
}

/// Scratch holding the rows of a block of a streamed matrix, converted.
#[derive(Default)]
pub(crate) struct Block {
    x: Vec<f32>,
    norms: Vec<f32>,
    idx: Vec<usize>,
}

/// Converts one row to `f32` into `out`, flushing the values below `1e-6 ×` the
/// row's largest magnitude to zero; returns the row's squared norm, or `None` when
/// a value is not finite. Every reader of a row converts it here, so a row has the
/// same values whether converted once or on each read.
#[inline(always)]
fn convert_row(row: &[f64], out: &mut [f32]) -> Option<f32> {
    let cutoff = row_max(row)? as f32 * 1e-6;
    let mut sq = [0.0_f32; 8];
    let flush = |v: f64| {
        let v = v as f32;
        if v.abs() < cutoff {
            0.0
        } else {
            v
        }
    };
    let (o8, o_rest) = out.as_chunks_mut::<8>();
    let (i8, i_rest) = row.as_chunks::<8>();
    for (o, i) in o8.iter_mut().zip(i8) {
        for l in 0..8 {
            o[l] = flush(i[l]);
            sq[l] += o[l] * o[l];
        }
    }
    for (o, &v) in o_rest.iter_mut().zip(i_rest) {
        *o = flush(v);
        sq[0] += *o * *o;
    }
    Some(sq.iter().sum())
}

/// The largest magnitude in `row`, or `None` when a value is not finite. Eight
/// lanes, so that it runs at the speed of the cache.
fn row_max(row: &[f64]) -> Option<f64> {
    let (mut max, mut finite) = ([0.0_f64; 8], [true; 8]);
    let (lanes, rest) = row.as_chunks::<8>();
    for values in lanes {
        for l in 0..8 {
            let a = values[l].abs();
            finite[l] &= a <= f64::MAX;
            max[l] = if a > max[l] { a } else { max[l] };
        }
    }
    for &v in rest {
        let a = v.abs();
        finite[0] &= a <= f64::MAX;
        max[0] = if a > max[0] { a } else { max[0] };
    }
    (!finite.contains(&false)).then(|| max.into_iter().fold(0.0, f64::max))
}

/// Runs `visit(first_row, squared_distances, rows, outputs)` over blocks of at most
/// [`BLOCK_ROWS`] rows (distances row-major, `rows × k`; the block's rows as the
/// tiles read them, row-major; outputs `stride` values per row), one group of
/// blocks per rayon task, and returns each group's result in group order.
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
    F: Fn(&mut T, usize, &[f32], &[f32], &mut [O]) + Sync,
{
    let (n, d) = (data.n(), data.d());
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
            let mut block = Block::default();
            let mut b = start;
            while b < end {
                let e = (b + BLOCK_ROWS).min(end);
                idx.clear();
                idx.extend(b..e);
                let dist = &mut dist[..(e - b) * k];
                let (points, at) = data.rows(&idx, &mut block);
                sq_distances(points, at, centres, dist);
                // The block's rows lie one after the other, in place or in scratch.
                let rows = &points.x[at[0] * d..(at[at.len() - 1] + 1) * d];
                let o = (b - start) * stride;
                visit(&mut acc, b, dist, rows, &mut out[o..o + (e - b) * stride]);
                b = e;
            }
            acc
        })
        .collect()
}

/// Scratch space to compute distances for a scattered set of rows.
pub(crate) struct Gather {
    dist: Vec<f32>,
    block: Block,
}

impl Gather {
    /// Scratch for up to [`BLOCK_ROWS`] rows and `k` centres.
    pub fn new(k: usize) -> Self {
        Self {
            dist: vec![0.0; BLOCK_ROWS * k],
            block: Block::default(),
        }
    }

    /// Squared distances from rows `idx` (at most [`BLOCK_ROWS`]) to every centre,
    /// row-major `rows × k`, with the rows as the tiles read them and their
    /// positions there.
    pub fn distances<'s>(
        &'s mut self,
        data: &'s Prepared,
        idx: &'s [usize],
        centres: &Centres,
    ) -> (&'s [f32], Points<'s>, &'s [usize]) {
        let (points, at) = data.rows(idx, &mut self.block);
        let dist = &mut self.dist[..idx.len() * centres.len()];
        sq_distances(points, at, centres, dist);
        (dist, points, at)
    }
}
