//! The hot loop shared by seeding and Lloyd iterations: squared Euclidean distances
//! from blocks of rows to a few centres (by the register tiles of `tiles.rs`).
//!
//! Rows are split into fixed groups of [`GROUP_ROWS`] that rayon spreads over the
//! cores; each group returns its own partial result and the caller folds them in
//! group order, so results do not depend on the number of threads or on scheduling.

use ndarray::{ArrayView2, CowArray, Ix2};
use rayon::prelude::*;

pub(crate) use super::convert::Next;
use super::convert::{convert_rows, Ahead, Dest, Found, Moments};
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
    /// Converted to `f32` once, into a matrix of their own: for fits that read
    /// every row many times (k-means++ seeding and Lloyd iterations).
    Converted,
    /// Left in the caller's `f64` matrix and converted block by block, into cache-
    /// sized scratch, when read: for few passes over the rows (the nearest
    /// centres; a warm start's first and last E-step, until [`Prepared::convert`]
    /// if the fit runs long). No `n × D` copy is allocated — at 1M × 100, 400 MB to
    /// fault in and write — and each read gives the same `f32` values a converted
    /// matrix would hold.
    Streamed,
}

/// Feature matrix in the form the kernels want: `f32`, row-major, tiny values
/// flushed to zero, with squared row norms and optional sample weights.
pub(crate) struct Prepared<'a> {
    rows: Rows<'a>,
    d: usize,
    /// `‖x_i‖²` per row.
    pub sq_norms: Vec<f32>,
    /// Per row of a streamed matrix, the magnitude under which its values become
    /// zero (see [`Prepared::new`]), so that a later read of the row converts it
    /// without looking for its largest value again and without its squares (empty
    /// once converted).
    cutoffs: Vec<f32>,
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
        let x = row_major(x);
        let xs = x.as_slice().expect("standard layout");
        let group = GROUP_ROWS * d.max(1);
        let mut out = match storage {
            Storage::Converted => RowBuffer::zeroed(n * d),
            Storage::Streamed => RowBuffer::Heap(Vec::new()),
        };
        let mut sq_norms = vec![0.0_f32; n];
        let mut cutoffs = vec![0.0_f32; if storage == Storage::Streamed { n } else { 0 }];
        // Per group of rows: convert, flush tiny values, squared norms and column
        // sums. A streamed matrix converts each block of rows into scratch and keeps
        // the rows' cutoffs.
        let pass = |g: usize, dst: Option<&mut [f32]>, src: &[f64], norms: &mut [f32], cuts| {
            let mut moments = Moments::new(d);
            let at = |r: usize| g * GROUP_ROWS + r;
            match dst {
                Some(dst) => {
                    let rows = |r: usize| (&src[r * d..(r + 1) * d], None);
                    let dest = Dest::first(dst, norms, None, &mut moments);
                    convert_rows(rows, d, dest, Ahead::NONE).map_err(at)?
                }
                None => {
                    let mut scratch = vec![0.0_f32; BLOCK_ROWS * d];
                    let cuts: &mut [f32] = cuts;
                    let blocks = norms
                        .chunks_mut(BLOCK_ROWS)
                        .zip(cuts.chunks_mut(BLOCK_ROWS));
                    for (b, (norms, cuts)) in blocks.enumerate() {
                        let first = b * BLOCK_ROWS;
                        let rows = |r: usize| (&src[(first + r) * d..(first + r + 1) * d], None);
                        let out = &mut scratch[..norms.len() * d];
                        let e = first + norms.len();
                        let next = Next::Span(e, (e + BLOCK_ROWS).min(src.len() / d));
                        let ahead = Ahead { x: src, next };
                        let dest = Dest::first(out, norms, Some(cuts), &mut moments);
                        convert_rows(rows, d, dest, ahead).map_err(|r| at(first + r))?;
                    }
                }
            }
            Ok(moments)
        };
        let moments: Vec<Result<Moments, usize>> = match storage {
            Storage::Converted => out
                .as_mut_slice()
                .par_chunks_mut(group)
                .zip(xs.par_chunks(group))
                .zip(sq_norms.par_chunks_mut(GROUP_ROWS))
                .enumerate()
                .map(|(g, ((dst, src), norms))| pass(g, Some(dst), src, norms, &mut []))
                .collect(),
            Storage::Streamed => xs
                .par_chunks(group)
                .zip(sq_norms.par_chunks_mut(GROUP_ROWS))
                .zip(cutoffs.par_chunks_mut(GROUP_ROWS))
                .enumerate()
                .map(|(g, ((src, norms), cuts))| pass(g, None, src, norms, cuts))
                .collect(),
        };
        let mean_variance =
            Moments::mean_variance(moments.into_iter().collect::<Result<_, _>>()?, n, d);
        Ok(Self {
            rows: match storage {
                Storage::Converted => Rows::Converted(out),
                Storage::Streamed => Rows::Streamed(x),
            },
            d,
            sq_norms,
            cutoffs,
            weights: weights.map(to_f32),
            mean_variance,
        })
    }

    /// [`Prepared::new`], fused with a first visit of every row as
    /// [`for_each_group`] makes it (same groups, blocks and order of results): each
    /// block of rows is converted — into the copy, or with [`Storage::Streamed`]
    /// into scratch — and, while it is still in cache, its distances to `centres`
    /// computed and handed to `visit`, which also gets the sample weights (`None`
    /// for all ones); one output per row. A warm start's first E-step so reads the
    /// rows once, as `f64`, rather than preparing them and then reading them again.
    pub fn visiting<T, O, F>(
        x: ArrayView2<'a, f64>,
        storage: Storage,
        weights: Option<&[f64]>,
        centres: &Centres,
        per_row: &mut [O],
        init: impl Fn() -> T + Sync,
        visit: F,
    ) -> Result<(Self, Vec<T>), usize>
    where
        T: Send,
        O: Send,
        F: Fn(&mut T, Option<&[f32]>, usize, &[f32], &[f32], &mut [O]) + Sync,
    {
        let (n, d) = x.dim();
        let k = centres.len();
        debug_assert_eq!(per_row.len(), n);
        let x = row_major(x);
        let xs = x.as_slice().expect("standard layout");
        let group = GROUP_ROWS * d.max(1);
        let weights = weights.map(to_f32);
        let w = weights.as_deref();
        let converted = storage == Storage::Converted;
        let mut out = RowBuffer::zeroed(if converted { n * d } else { 0 });
        let mut sq_norms = vec![0.0_f32; n];
        let mut cutoffs = vec![0.0_f32; if converted { 0 } else { n }];
        let at: Vec<usize> = (0..BLOCK_ROWS).collect();
        // Each group's part of the copy (converted) or of the cutoffs (streamed).
        let groups = n.div_ceil(GROUP_ROWS);
        let dsts = per_group(out.as_mut_slice(), group, groups);
        let cuts = per_group(&mut cutoffs, GROUP_ROWS, groups);
        let results: Vec<Result<(T, Moments), usize>> = dsts
            .into_par_iter()
            .zip(xs.par_chunks(group))
            .zip(sq_norms.par_chunks_mut(GROUP_ROWS))
            .zip(cuts)
            .zip(per_row.par_chunks_mut(GROUP_ROWS))
            .enumerate()
            .map(|(g, ((((dst, src), norms), cuts), out))| {
                let (mut acc, mut moments) = (init(), Moments::new(d));
                let mut dist = vec![0.0_f32; BLOCK_ROWS * k];
                let mut scratch = vec![0.0_f32; if converted { 0 } else { BLOCK_ROWS * d }];
                let mut b = 0;
                while b < norms.len() {
                    let e = (b + BLOCK_ROWS).min(norms.len());
                    // The block's rows, converted into the copy or into scratch.
                    let dst = if converted {
                        &mut dst[b * d..e * d]
                    } else {
                        &mut scratch[..(e - b) * d]
                    };
                    let rows = |r: usize| (&src[(b + r) * d..(b + r + 1) * d], None);
                    let next = Next::Span(e, (e + BLOCK_ROWS).min(norms.len()));
                    let ahead = Ahead { x: src, next };
                    let cuts = (!converted).then(|| &mut cuts[b..e]);
                    let dest = Dest::first(dst, &mut norms[b..e], cuts, &mut moments);
                    convert_rows(rows, d, dest, ahead).map_err(|r| g * GROUP_ROWS + b + r)?;
                    let rows = &*dst;
                    let points = Points {
                        x: rows,
                        d,
                        norms: &norms[b..e],
                    };
                    let dist = &mut dist[..(e - b) * k];
                    sq_distances(points, &at[..e - b], centres, dist);
                    let first = g * GROUP_ROWS + b;
                    visit(&mut acc, w, first, dist, rows, &mut out[b..e]);
                    b = e;
                }
                Ok((acc, moments))
            })
            .collect();
        let (results, moments): (Vec<T>, Vec<Moments>) = results
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .unzip();
        let data = Self {
            rows: if converted {
                Rows::Converted(out)
            } else {
                Rows::Streamed(x)
            },
            d,
            sq_norms,
            cutoffs,
            weights,
            mean_variance: Moments::mean_variance(moments, n, d),
        };
        Ok((data, results))
    }

    /// Converts streamed rows into a copy of their own (the same `f32` values a
    /// streamed read gives), for a fit that turns out to read them many times;
    /// converted rows stay as they are.
    pub fn convert(&mut self) {
        let d = self.d;
        let Rows::Streamed(x) = &self.rows else {
            return;
        };
        let xs = x.as_slice().expect("standard layout");
        let mut out = RowBuffer::zeroed(xs.len());
        out.as_mut_slice()
            .par_chunks_mut(GROUP_ROWS * d)
            .zip(xs.par_chunks(GROUP_ROWS * d))
            .zip(self.sq_norms.par_chunks(GROUP_ROWS))
            .zip(self.cutoffs.par_chunks(GROUP_ROWS))
            .for_each(|(((dst, src), norms), cuts)| {
                let rows = |r: usize| {
                    let found = Found {
                        cutoff: cuts[r],
                        sq_norm: norms[r],
                    };
                    (&src[r * d..(r + 1) * d], Some(found))
                };
                let mut scratch = vec![0.0_f32; norms.len()];
                convert_rows(rows, d, Dest::again(dst, &mut scratch), Ahead::NONE)
                    .expect("checked when prepared");
            });
        self.rows = Rows::Converted(out);
        self.cutoffs = Vec::new();
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
    /// into `block`, asking the memory meanwhile for the rows `next` that the caller
    /// reads after them (so that they arrive while the tiles measure these).
    /// Returns the points and the positions of the rows in them.
    pub fn rows<'s>(
        &'s self,
        idx: &'s [usize],
        next: Next<'_>,
        block: &'s mut Block,
    ) -> (Points<'s>, &'s [usize]) {
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
                block.norms.resize(idx.len(), 0.0);
                block.idx.clear();
                block.idx.extend(0..idx.len());
                // Read again: with the cutoffs and norms of the first read.
                let rows = |r: usize| {
                    let i = idx[r];
                    let found = Found {
                        cutoff: self.cutoffs[i],
                        sq_norm: self.sq_norms[i],
                    };
                    (&xs[i * d..(i + 1) * d], Some(found))
                };
                let ahead = Ahead { x: xs, next };
                convert_rows(rows, d, Dest::again(&mut block.x, &mut block.norms), ahead)
                    .expect("checked when prepared");
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
        let (points, at) = self.rows(std::slice::from_ref(&i), Next::NONE, &mut block);
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

/// `v` in `groups` parts of `size` values (the last one shorter), or `groups`
/// empty parts when `v` is empty.
fn per_group(v: &mut [f32], size: usize, groups: usize) -> Vec<&mut [f32]> {
    if v.is_empty() {
        (0..groups).map(|_| Default::default()).collect()
    } else {
        v.chunks_mut(size).collect()
    }
}

/// `x` in row-major order: borrowed when it already is, else copied.
fn row_major(x: ArrayView2<'_, f64>) -> CowArray<'_, f64, Ix2> {
    if x.is_standard_layout() {
        x.into()
    } else {
        x.as_standard_layout().into_owned().into()
    }
}

fn to_f32(w: &[f64]) -> Vec<f32> {
    w.iter().map(|&v| v as f32).collect()
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
                let next = Next::Span(e, (e + BLOCK_ROWS).min(end));
                let (points, at) = data.rows(&idx, next, &mut block);
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
    /// positions there; the rows `next` are asked for meanwhile (see
    /// [`Prepared::rows`]).
    pub fn distances<'s>(
        &'s mut self,
        data: &'s Prepared,
        idx: &'s [usize],
        next: Next<'_>,
        centres: &Centres,
    ) -> (&'s [f32], Points<'s>, &'s [usize]) {
        let (points, at) = data.rows(idx, next, &mut self.block);
        let dist = &mut self.dist[..idx.len() * centres.len()];
        sq_distances(points, at, centres, dist);
        (dist, points, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};
    use rand::{Rng, SeedableRng};

    type Seen = Vec<(usize, Vec<f32>, Vec<f32>)>;

    /// Records each visit (first row, distances, rows) and marks the rows' outputs.
    fn record(acc: &mut Seen, first: usize, dist: &[f32], rows: &[f32], out: &mut [usize]) {
        acc.push((first, dist.to_vec(), rows.to_vec()));
        out.iter_mut().enumerate().for_each(|(r, o)| *o = first + r);
    }

    /// Converting while visiting gives what converting first and then visiting
    /// gives — the same rows bit for bit, norms, variance and weights, and the same
    /// visits in the same order — over several groups with a partial last group and
    /// block, weighted, with tiny values flushed; so does streaming, and converting
    /// the streamed rows later; a non-finite value is reported at its row.
    #[test]
    fn converting_while_visiting_matches_converting_first() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(5);
        let (n, d) = (2 * GROUP_ROWS + 1000 + 7, 6);
        let mut x = Array2::from_shape_fn((n, d), |_| rng.gen_range(-3.0..3.0));
        x.column_mut(4).mapv_inplace(|v| v * 1e-9);
        let w: Vec<f64> = (0..n).map(|i| (i % 5) as f64 + 0.5).collect();
        let c = x.slice(s![0..7, ..]).to_owned();
        let centres = Centres::new(c.view());

        let first = Prepared::new(x.view(), Some(&w), Storage::Converted).unwrap();
        let mut out_first = vec![usize::MAX; n];
        let seen_first = for_each_group(&first, &centres, &mut out_first, 1, Vec::new, record);

        let mut out_fused = vec![usize::MAX; n];
        let (fused, seen_fused) = Prepared::visiting(
            x.view(),
            Storage::Converted,
            Some(&w),
            &centres,
            &mut out_fused,
            Vec::new,
            |acc, weights, row, dist, rows, out| {
                assert_eq!(weights, first.weights.as_deref());
                record(acc, row, dist, rows, out)
            },
        )
        .unwrap();

        assert_eq!(seen_fused.len(), 3, "one result per group");
        assert!(seen_fused == seen_first, "the same visits");
        assert_eq!(out_fused, (0..n).collect::<Vec<_>>());
        assert_eq!(out_fused, out_first);
        let (Rows::Converted(a), Rows::Converted(b)) = (&fused.rows, &first.rows) else {
            panic!("both converted")
        };
        assert!(a.as_slice() == b.as_slice(), "the same f32 rows");
        assert!(a.as_slice().iter().skip(4).step_by(d).all(|&v| v == 0.0));
        assert_eq!(fused.sq_norms, first.sq_norms);
        assert_eq!(fused.mean_variance, first.mean_variance);
        assert_eq!(fused.weights, first.weights);

        // Streamed: the same visits, from rows converted into scratch, and no copy
        // until `convert` makes the same one.
        let mut out_streamed = vec![usize::MAX; n];
        let (mut streamed, seen_streamed) = Prepared::visiting(
            x.view(),
            Storage::Streamed,
            Some(&w),
            &centres,
            &mut out_streamed,
            Vec::new,
            |acc, _, row, dist, rows, out| record(acc, row, dist, rows, out),
        )
        .unwrap();
        assert!(seen_streamed == seen_first, "the same visits, streamed");
        assert_eq!(out_streamed, out_first);
        assert_eq!(streamed.sq_norms, first.sq_norms);
        assert_eq!(streamed.mean_variance, first.mean_variance);
        assert!(matches!(streamed.rows, Rows::Streamed(_)));
        streamed.convert();
        let Rows::Converted(c) = &streamed.rows else {
            panic!("converted")
        };
        assert!(
            c.as_slice() == b.as_slice(),
            "the same f32 rows, converted later"
        );

        x[[GROUP_ROWS + 300, 2]] = f64::NAN;
        for storage in [Storage::Converted, Storage::Streamed] {
            let bad = Prepared::visiting(
                x.view(),
                storage,
                None,
                &centres,
                &mut out_fused,
                || (),
                |_, _, _, _, _, _| (),
            );
            assert_eq!(bad.err(), Some(GROUP_ROWS + 300), "{storage:?}");
        }
    }
}
