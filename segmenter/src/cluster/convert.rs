//! Reading the caller's `f64` rows as the kernels want them: `f32`, values tiny next
//! to their row's largest flushed to zero (see `Prepared::new` in `kernel.rs`), with
//! their squared norms and what they add to the variance. A first read checks a row
//! and finds its cutoff and norm; a read again of a streamed row reuses them. On
//! x86-64 the conversion is compiled a second time with AVX2, chosen at run time,
//! and that build asks the memory for the rows read next.

/// What a group of converted rows adds to the variance: per-feature sums of the
/// converted values and the sum of their squared norms.
pub(super) struct Moments {
    col: Vec<f64>,
    sq_total: f64,
}

impl Moments {
    pub(super) fn new(d: usize) -> Self {
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
    pub(super) fn mean_variance(groups: Vec<Moments>, n: usize, d: usize) -> f64 {
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

/// Rows a reader of [`Prepared::rows`](super::kernel::Prepared::rows) reads next.
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
pub(super) struct Ahead<'s> {
    pub x: &'s [f64],
    pub next: Next<'s>,
}

impl Ahead<'_> {
    pub const NONE: Ahead<'static> = Ahead {
        x: &[],
        next: Next::NONE,
    };
}

/// What the first read of a row found, for its reads again.
#[derive(Clone, Copy)]
pub(super) struct Found {
    /// Values of smaller magnitude become zero.
    pub cutoff: f32,
    /// Squared norm of the converted row.
    pub sq_norm: f32,
}

/// Where [`convert_rows`] writes: the rows (`d` values each, as many rows as
/// `norms` has values) and their squared norms; on a first read also, when asked,
/// their cutoffs and their counts in the variance.
pub(super) struct Dest<'o> {
    rows: &'o mut [f32],
    norms: &'o mut [f32],
    cutoffs: Option<&'o mut [f32]>,
    moments: Option<&'o mut Moments>,
}

impl<'o> Dest<'o> {
    /// For rows read the first time.
    pub fn first(
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
    pub fn again(rows: &'o mut [f32], norms: &'o mut [f32]) -> Self {
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
/// the rows `ahead` while it converts (see
/// [`Prepared::rows`](super::kernel::Prepared::rows)).
pub(super) fn convert_rows<'s>(
    row: impl Fn(usize) -> (&'s [f64], Option<Found>),
    d: usize,
    dest: Dest<'_>,
    ahead: Ahead<'_>,
) -> Result<(), usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // The workspace's third `unsafe` (the other two are in `tiles.rs`):
            // calling code compiled for a CPU feature outside the build's baseline.
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

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
}
