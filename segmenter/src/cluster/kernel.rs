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

/// What a group of converted rows adds to the variance: per-feature sums of the
/// converted values and the sum of their squared norms.
struct Moments {
    col: Vec<f64>,
    sq_total: f64,
}

impl Moments {
    fn new(d: usize) -> Self {
        Self {
            col: vec![0.0; d],
            sq_total: 0.0,
        }
    }

    /// Counts in a converted row and its squared norm.
    #[inline(always)]
    fn add(&mut self, row: &[f32], norm: f32) {
        self.col
            .iter_mut()
            .zip(row)
            .for_each(|(c, &v)| *c += f64::from(v));
        self.sq_total += f64::from(norm);
    }

    /// Mean over features of the per-feature variance of all `n × d` rows, from
    /// their groups' moments (folded in group order).
    fn mean_variance(groups: Vec<Moments>, n: usize, d: usize) -> f64 {
        let mut all = Moments::new(d);
        for g in groups {
            all.col.iter_mut().zip(g.col).for_each(|(a, b)| *a += b);
            all.sq_total += g.sq_total;
        }
        // mean_j Var(x_j) = (mean ‖x‖² − ‖mean x‖²) / D
        let nf = n.max(1) as f64;
        let mean_sq: f64 = all.col.iter().map(|c| (c / nf).powi(2)).sum();
        ((all.sq_total / nf - mean_sq) / d.max(1) as f64).max(0.0)
    }
}

/// Rows a reader of [`Prepared::rows`] reads next.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Next<'s> {
    /// Rows `start .. end`.
    Span(usize, usize),
    /// These rows.
    Rows(&'s [usize]),
}

impl Next<'_> {
    /// No rows.
    pub const NONE: Next<'static> = Next::Span(0, 0);
}

/// What [`convert_rows`] asks the memory for while it converts: rows `next` of the
/// row-major matrix `x` (`d` values per row). (Only the x86-64 build asks.)
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Ahead<'s> {
    x: &'s [f64],
    next: Next<'s>,
}

impl Ahead<'_> {
    const NONE: Ahead<'static> = Ahead {
        x: &[],
        next: Next::NONE,
    };
}

/// What the first read of a row found, for its reads again.
#[derive(Clone, Copy)]
struct Found {
    /// Values of smaller magnitude become zero.
    cutoff: f32,
    /// Squared norm of the converted row.
    sq_norm: f32,
}

/// Where [`convert_rows`] writes: the rows (`d` values each, as many rows as
/// `norms` has values) and their squared norms; on a first read also, when asked,
/// their cutoffs and their counts in the variance.
struct Dest<'o> {
    rows: &'o mut [f32],
    norms: &'o mut [f32],
    cutoffs: Option<&'o mut [f32]>,
    moments: Option<&'o mut Moments>,
}

impl<'o> Dest<'o> {
    /// For rows read the first time.
    fn first(
        rows: &'o mut [f32],
        norms: &'o mut [f32],
        cutoffs: Option<&'o mut [f32]>,
        moments: &'o mut Moments,
    ) -> Self {
        Self {
            rows,
            norms,
            cutoffs,
            moments: Some(moments),
        }
    }

    /// For rows read again.
    fn again(rows: &'o mut [f32], norms: &'o mut [f32]) -> Self {
        Self {
            rows,
            norms,
            cutoffs: None,
            moments: None,
        }
    }
}

/// Converts rows `row(0)`, `row(1)`, … into `dest`. A row read the first time
/// (`row(r)` gives `None` beside its values) is converted by [`convert_row`],
/// which checks it and finds its cutoff and squared norm; a row read again comes
/// with the cutoff and squared norm its first read found, and is only converted
/// and flushed (the same values: the same operations). The error is the position
/// of the first row holding a non-finite value.
///
/// Every read of a streamed row and every copy goes through here: it was half of a
/// warm fit's time, in baseline (SSE2) code storing one value at a time and waiting
/// on each block's memory. On x86-64 it is compiled a second time with AVX2, chosen
/// at run time as the tiles are — the two give the same values (the same operations
/// in the same order, no fused multiply-add) — and that build asks the memory for
/// the rows `ahead` while it converts (see [`Prepared::rows`]).
fn convert_rows<'s>(
    row: impl Fn(usize) -> (&'s [f64], Option<Found>),
    d: usize,
    dest: Dest<'_>,
    ahead: Ahead<'_>,
) -> Result<(), usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // The workspace's second `unsafe` (the first is in `tiles.rs`): calling
            // code compiled for a CPU feature outside the build's baseline.
            #[allow(unsafe_code)]
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { convert_rows_avx2(row, d, dest, ahead) };
        }
    }
    let _ = ahead;
    convert_rows_body(row, d, dest, |_| ())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn convert_rows_avx2<'s>(
    row: impl Fn(usize) -> (&'s [f64], Option<Found>),
    d: usize,
    dest: Dest<'_>,
    ahead: Ahead<'_>,
) -> Result<(), usize> {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
    // Values of `f64` per 64-byte cache line.
    const LINE: usize = 8;
    // Into the second-level cache (a block of rows is more than the first holds).
    let fetch = |v: &[f64]| {
        let Some(last) = v.len().checked_sub(1) else {
            return;
        };
        let mut l = 0;
        while l < last {
            _mm_prefetch::<_MM_HINT_T1>(v.as_ptr().wrapping_add(l).cast());
            l += LINE;
        }
        _mm_prefetch::<_MM_HINT_T1>(v.as_ptr().wrapping_add(last).cast());
    };
    // Spread over the rows converted: a share of the lines, or of the rows, each.
    let count = dest.norms.len().max(1);
    let Ahead { x, next } = ahead;
    let prefetch = |r: usize| match next {
        Next::Span(start, end) => {
            let v = &x[start * d..end * d];
            let lines = v.len().div_ceil(LINE);
            let (a, b) = (r * lines / count, (r + 1) * lines / count);
            fetch(&v[(a * LINE).min(v.len())..(b * LINE).min(v.len())]);
        }
        Next::Rows(idx) => {
            for &i in &idx[r * idx.len() / count..(r + 1) * idx.len() / count] {
                fetch(&x[i * d..(i + 1) * d]);
            }
        }
    };
    convert_rows_body(row, d, dest, prefetch)
}

#[inline(always)]
fn convert_rows_body<'s>(
    row: impl Fn(usize) -> (&'s [f64], Option<Found>),
    d: usize,
    dest: Dest<'_>,
    prefetch: impl Fn(usize),
) -> Result<(), usize> {
    let Dest {
        rows: out,
        norms,
        mut cutoffs,
        mut moments,
    } = dest;
    let out = &mut out[..norms.len() * d];
    for (r, (o, norm)) in out.chunks_exact_mut(d).zip(norms.iter_mut()).enumerate() {
        prefetch(r);
        *norm = match row(r) {
            (values, Some(Found { cutoff, sq_norm })) => {
                flush_row::<false>(values, o, cutoff);
                sq_norm
            }
            (values, None) => {
                let (sq_norm, cutoff) = convert_row(values, o).ok_or(r)?;
                if let Some(c) = cutoffs.as_deref_mut() {
                    c[r] = cutoff;
                }
                sq_norm
            }
        };
        if let Some(m) = moments.as_deref_mut() {
            m.add(o, *norm);
        }
    }
    Ok(())
}

/// Converts one row to `f32` into `out`, flushing the values below `1e-6 ×` the
/// row's largest magnitude to zero; returns the row's squared norm and that
/// cutoff, or `None` when a value is not finite. Every reader of a row converts it
/// here or, reading it again, with [`flush_row`] and the cutoff found here, so a
/// row has the same values whether converted once or on each read.
#[inline(always)]
fn convert_row(row: &[f64], out: &mut [f32]) -> Option<(f32, f32)> {
    let cutoff = row_max(row)? as f32 * 1e-6;
    Some((flush_row::<true>(row, out, cutoff), cutoff))
}

/// Converts one row to `f32` into `out`, values of magnitude below `cutoff` set to
/// zero; returns the squared norm of the result when `SQ` (else zero).
#[inline(always)]
fn flush_row<const SQ: bool>(row: &[f64], out: &mut [f32], cutoff: f32) -> f32 {
    let mut sq = [0.0_f32; 8];
    let flush = |v: f64| {
        let v = v as f32;
        if v.abs() < cutoff {
            0.0
        } else {
            v
        }
    };
    if !SQ {
        // One value at a time: the compiler makes it eight at a time from
        // contiguous loads (in eights, as below, it vectorised across the eights,
        // with strided loads: twice the time of a read).
        for (o, &v) in out.iter_mut().zip(row) {
            *o = flush(v);
        }
        return 0.0;
    }
    let (o8, o_rest) = out.as_chunks_mut::<8>();
    let (i8, i_rest) = row.as_chunks::<8>();
    for (o, i) in o8.iter_mut().zip(i8) {
        let v: [f32; 8] = std::array::from_fn(|l| flush(i[l]));
        for l in 0..8 {
            sq[l] += v[l] * v[l];
        }
        *o = v;
    }
    for (o, &v) in o_rest.iter_mut().zip(i_rest) {
        *o = flush(v);
        sq[0] += *o * *o;
    }
    sq.iter().sum()
}

/// The largest magnitude in `row`, or `None` when a value is not finite. Eight
/// lanes, so that it runs at the speed of the cache.
#[inline(always)]
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

    /// The AVX2 build of the conversion gives what the baseline build gives, bit
    /// for bit — rows, norms, cutoffs and moments — for widths with and without a
    /// tail and values the conversion flushes, and stops at the same non-finite
    /// row; a read again with the cutoffs and norms of the first gives the same rows
    /// in both builds; asking the memory for rows ahead (a span, scattered rows)
    /// changes nothing.
    #[test]
    fn conversion_is_the_same_in_every_build() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(9);
        let n = 37;
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for d in [1, 3, 8, 13, 48, 100] {
            let mut x: Vec<f64> = (0..n * d)
                .map(|_| rng.gen_range(-5.0..5.0) * 10f64.powi(rng.gen_range(-9..3)))
                .collect();
            let scattered: Vec<usize> = (0..n).map(|_| rng.gen_range(0..n)).collect();
            for bad in [None, Some(17)] {
                if let Some(r) = bad {
                    x[r * d + d / 2] = f64::NAN;
                }
                let x = &x;
                let rows = |r: usize| (&x[r * d..(r + 1) * d], None);
                let run = |ahead: Option<Ahead>| {
                    let (mut out, mut norms, mut cuts, mut m) = (
                        vec![0.0; n * d],
                        vec![0.0; n],
                        vec![0.0; n],
                        Moments::new(d),
                    );
                    let dest = Dest::first(&mut out, &mut norms, Some(&mut cuts), &mut m);
                    let result = match ahead {
                        Some(a) => convert_rows(rows, d, dest, a),
                        None => convert_rows_body(rows, d, dest, |_| ()),
                    };
                    (
                        result,
                        bits(&out),
                        bits(&norms),
                        bits(&cuts),
                        m.col,
                        m.sq_total.to_bits(),
                    )
                };
                let baseline = run(None);
                assert_eq!(baseline.0, bad.map_or(Ok(()), Err), "d={d}");
                assert!(d == 1 || baseline.1.contains(&0), "d={d}: flushed");
                for next in [Next::NONE, Next::Span(0, n), Next::Rows(&scattered)] {
                    assert!(
                        run(Some(Ahead { x, next })) == baseline,
                        "d={d}, bad {bad:?}"
                    );
                }
                if bad.is_some() {
                    continue;
                }
                // Read again, in both builds, with what the first read found.
                let (norms, cuts) = (&baseline.2, &baseline.3);
                let again = |r: usize| {
                    let found = Found {
                        cutoff: f32::from_bits(cuts[r]),
                        sq_norm: f32::from_bits(norms[r]),
                    };
                    (&x[r * d..(r + 1) * d], Some(found))
                };
                for avx2 in [false, true] {
                    let (mut out, mut got) = (vec![0.0; n * d], vec![0.0; n]);
                    let dest = Dest::again(&mut out, &mut got);
                    if avx2 {
                        let ahead = Ahead {
                            x,
                            next: Next::Rows(&scattered),
                        };
                        convert_rows(again, d, dest, ahead).unwrap();
                    } else {
                        convert_rows_body(again, d, dest, |_| ()).unwrap();
                    }
                    assert_eq!(bits(&out), baseline.1, "d={d}, again, avx2 {avx2}");
                    assert_eq!(&bits(&got), norms, "d={d}, again, avx2 {avx2}");
                }
            }
        }
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
