//! Squared distances from a few rows to every centre, as `‖x‖² − 2 x·c + ‖c‖²`, by
//! register tiles: four rows (eight with AVX-512) against up to 24 centres at a
//! time, the centres stored feature-major (`D × k`, padded to a multiple of 8) so
//! that each feature of a row is broadcast once and multiplied into eight centres
//! per vector instruction.
//!
//! Written by hand rather than through a matrix-product crate: with k ≤ a few dozen
//! a general product spends most of its time packing the rows into its own layout
//! (42% of a k-means fit on 1M × 100 with `matrixmultiply`), while a tile reads each
//! row where it lies, in any order — the bounded Lloyd steps pass scattered rows
//! without copying them. Each dot product is summed feature by feature in the same
//! order whatever the tile, so a row's distances do not depend on its neighbours.
//! On x86-64 the tiles are compiled twice more, with AVX2 and FMA and with AVX-512;
//! the widest the CPU has is chosen at run time.

/// Lanes per vector of centres.
const LANES: usize = 8;
/// Rows per tile (twice as many with AVX-512).
const TILE_ROWS: usize = 4;

/// Centres in the kernel's layout.
pub(crate) struct Centres {
    /// `D × padded / LANES` lane groups: feature `c` of centre `j` at
    /// `t[c * padded / LANES + j / LANES][j % LANES]`.
    t: Vec<[f32; LANES]>,
    /// `k` rounded up to a multiple of [`LANES`].
    padded: usize,
    /// `‖c_j‖²`.
    pub sq_norms: Vec<f32>,
}

impl Centres {
    /// Builds the kernel form of `centres` (`k × D`).
    pub fn new(centres: ndarray::ArrayView2<f64>) -> Self {
        let (k, d) = centres.dim();
        let padded = k.div_ceil(LANES).max(1) * LANES;
        let mut t = vec![[0.0_f32; LANES]; d * padded / LANES];
        let mut sq_norms = Vec::with_capacity(k);
        for (j, row) in centres.rows().into_iter().enumerate() {
            let mut sq = 0.0_f32;
            for (c, &v) in row.iter().enumerate() {
                let v = v as f32;
                t[c * padded / LANES + j / LANES][j % LANES] = v;
                sq += v * v;
            }
            sq_norms.push(sq);
        }
        Self {
            t,
            padded,
            sq_norms,
        }
    }

    /// Number of centres.
    pub fn len(&self) -> usize {
        self.sq_norms.len()
    }
}

/// The points distances are measured from.
#[derive(Clone, Copy)]
pub(crate) struct Points<'a> {
    /// Row-major, `d` values per row.
    pub x: &'a [f32],
    /// Values per row.
    pub d: usize,
    /// `‖x_i‖²` per row.
    pub norms: &'a [f32],
}

impl Points<'_> {
    /// Row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.d..(i + 1) * self.d]
    }
}

/// Fills `out` (row-major, `rows.len() × k`) with the clamped squared distances from
/// rows `rows` of `points` to every centre.
pub(crate) fn sq_distances(points: Points, rows: &[usize], centres: &Centres, out: &mut [f32]) {
    let d = points.d;
    assert_eq!(out.len(), rows.len() * centres.len(), "output size");
    assert_eq!(centres.t.len(), d * centres.padded / LANES, "centre width");
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        // Two of the workspace's three `unsafe` blocks (the third converts rows,
        // `convert.rs`): calling code compiled for CPU features that are not in the
        // build's baseline.
        if has_avx512() {
            #[allow(unsafe_code)]
            // SAFETY: the CPU has AVX-512F, AVX2 and FMA, checked just above.
            unsafe {
                sq_distances_avx512(points, rows, centres, out)
            };
            return;
        }
        if has!("avx2") && has!("fma") {
            #[allow(unsafe_code)]
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            unsafe {
                sq_distances_fma(points, rows, centres, out)
            };
            return;
        }
    }
    sq_distances_body::<false, TILE_ROWS>(points, rows, centres, out);
}

/// Whether the CPU runs [`sq_distances_avx512`]: all three features it is built
/// with are asked for, as a hypervisor may hide one and not another.
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    use std::arch::is_x86_feature_detected as has;
    has!("avx512f") && has!("avx2") && has!("fma")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sq_distances_fma(points: Points, rows: &[usize], centres: &Centres, out: &mut [f32]) {
    sq_distances_body::<true, TILE_ROWS>(points, rows, centres, out);
}

/// With AVX-512 a panel of two lane groups is one 16-wide register and each
/// multiply-add takes its row's value straight from memory: eight rows per tile
/// keep as many sums in flight as four rows do with AVX2 (the same operations in
/// the same order for each distance, so the same values).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn sq_distances_avx512(points: Points, rows: &[usize], centres: &Centres, out: &mut [f32]) {
    sq_distances_body::<true, { 2 * TILE_ROWS }>(points, rows, centres, out);
}

/// The rows in tiles of `R` ([`TILE_ROWS`], twice that with AVX-512), each against
/// the centres in panels of up to three vectors (twelve independent sums: enough to
/// cover a multiply-add's latency).
#[inline(always)]
fn sq_distances_body<const FMA: bool, const R: usize>(
    points: Points,
    rows: &[usize],
    centres: &Centres,
    out: &mut [f32],
) {
    let Points { x, d, norms } = points;
    let k = centres.len();
    let groups = centres.padded / LANES;
    for (tile, out) in rows.chunks(R).zip(out.chunks_mut(R * k)) {
        // A short last tile repeats its last row; the repeats are not written.
        let xs: [&[f32]; R] = std::array::from_fn(|r| {
            let i = tile[r.min(tile.len() - 1)];
            &x[i * d..(i + 1) * d]
        });
        let mut g = 0;
        while g * LANES < k {
            let left = groups - g;
            let dots = if left >= 3 {
                tile_dots::<3, FMA, R>(&xs, d, &centres.t, groups, g).map(flatten)
            } else if left >= 2 {
                tile_dots::<2, FMA, R>(&xs, d, &centres.t, groups, g).map(flatten)
            } else {
                tile_dots::<1, FMA, R>(&xs, d, &centres.t, groups, g).map(flatten)
            };
            let width = left.min(3) * LANES;
            let end = (g * LANES + width).min(k);
            for (r, row) in out.chunks_mut(k).enumerate() {
                let xn = norms[tile[r]];
                for j in g * LANES..end {
                    let dot = dots[r][j - g * LANES];
                    row[j] = (xn - 2.0 * dot + centres.sq_norms[j]).max(0.0);
                }
            }
            g += left.min(3);
        }
    }
}

/// Widest panel, for the epilogue.
fn flatten<const V: usize>(acc: [[f32; LANES]; V]) -> [f32; 3 * LANES] {
    let mut out = [0.0; 3 * LANES];
    for (v, lanes) in acc.iter().enumerate() {
        out[v * LANES..(v + 1) * LANES].copy_from_slice(lanes);
    }
    out
}

/// Dot products of the tile's rows with the centres of lane groups `g .. g + V`.
#[inline(always)]
fn tile_dots<const V: usize, const FMA: bool, const R: usize>(
    xs: &[&[f32]; R],
    d: usize,
    t: &[[f32; LANES]],
    groups: usize,
    g: usize,
) -> [[[f32; LANES]; V]; R] {
    let mut acc = [[[0.0_f32; LANES]; V]; R];
    assert!(xs.iter().all(|r| r.len() == d) && g + V <= groups);
    for c in 0..d {
        let cr: &[[f32; LANES]; V] = t[c * groups + g..c * groups + g + V]
            .try_into()
            .expect("V lane groups");
        for (r, xr) in xs.iter().enumerate() {
            let xv = xr[c];
            for v in 0..V {
                for l in 0..LANES {
                    let a = &mut acc[r][v][l];
                    *a = if FMA {
                        xv.mul_add(cr[v][l], *a)
                    } else {
                        xv * cr[v][l] + *a
                    };
                }
            }
        }
    }
    acc
}

/// Index of the nearest centre (the first on ties), its squared distance and the
/// second-smallest squared distance (infinite when there is one centre). Written
/// without branches: which centre is nearest is unpredictable, and mispredicted
/// jumps cost more than the distances themselves at small k.
#[inline]
pub(crate) fn nearest_two(dist: &[f32]) -> (usize, f32, f32) {
    let mut near = (0_usize, f32::INFINITY, f32::INFINITY);
    for (j, &v) in dist.iter().enumerate() {
        nearer(&mut near, j, v);
    }
    near
}

/// One step of [`nearest_two`]: centre `j` at squared distance `v`, with selects
/// rather than jumps.
#[inline(always)]
fn nearer((best, d1, d2): &mut (usize, f32, f32), j: usize, v: f32) {
    let closer = v < *d1;
    *d2 = if closer { *d1 } else { d2.min(v) };
    *best = if closer { j } else { *best };
    *d1 = if closer { v } else { *d1 };
}

/// [`nearest_two`] of each row of `dist` (row-major, `k` per row), appended to
/// `out`. Eight rows go side by side, one per vector lane: centre `j`'s distances
/// to the eight rows are compared and selected as one vector, so the comparisons of
/// a row do not wait on each other's results and take no jumps (a row at a time
/// with scalar selects was a sixth of a short warm fit's time at 200k × 48, k = 12).
pub(crate) fn nearest_rows(dist: &[f32], k: usize, out: &mut Vec<(usize, f32, f32)>) {
    if k == 0 {
        return;
    }
    let mut octets = dist.chunks_exact(ROWS_SIDE_BY_SIDE * k);
    for octet in &mut octets {
        let (best, d1, d2) = nearest_octet(octet, k);
        out.extend((0..ROWS_SIDE_BY_SIDE).map(|l| (best[l] as usize, d1[l], d2[l])));
    }
    out.extend(octets.remainder().chunks_exact(k).map(nearest_two));
}

/// Rows [`nearest_rows`] compares side by side.
const ROWS_SIDE_BY_SIDE: usize = 8;

/// [`nearest_two`] of the eight rows of `octet` (`8 × k`, row-major), as lanes:
/// the same selects, so the same results (the first centre on ties).
#[inline(always)]
fn nearest_octet(
    octet: &[f32],
    k: usize,
) -> (
    [u32; ROWS_SIDE_BY_SIDE],
    [f32; ROWS_SIDE_BY_SIDE],
    [f32; ROWS_SIDE_BY_SIDE],
) {
    assert_eq!(octet.len(), ROWS_SIDE_BY_SIDE * k);
    let mut best = [0_u32; ROWS_SIDE_BY_SIDE];
    let mut d1 = [f32::INFINITY; ROWS_SIDE_BY_SIDE];
    let mut d2 = [f32::INFINITY; ROWS_SIDE_BY_SIDE];
    for j in 0..k {
        let v: [f32; ROWS_SIDE_BY_SIDE] = std::array::from_fn(|l| octet[l * k + j]);
        for l in 0..ROWS_SIDE_BY_SIDE {
            let closer = v[l] < d1[l];
            let second = if v[l] < d2[l] { v[l] } else { d2[l] };
            d2[l] = if closer { d1[l] } else { second };
            best[l] = if closer { j as u32 } else { best[l] };
            d1[l] = if closer { v[l] } else { d1[l] };
        }
    }
    (best, d1, d2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};

    /// Eight rows side by side give what one row at a time gives — with ties,
    /// repeated values, infinities and a short tail — for every k from 1 to 30.
    #[test]
    fn rows_side_by_side_match_one_at_a_time() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(8);
        for k in 1..=30 {
            for rows in [1, 7, 8, 9, 16, 29] {
                let dist: Vec<f32> = (0..rows * k)
                    .map(|_| match rng.gen_range(0..10) {
                        0 => f32::INFINITY,
                        1..=4 => rng.gen_range(0..4) as f32,
                        _ => rng.gen_range(0.0..10.0),
                    })
                    .collect();
                let mut got = Vec::new();
                nearest_rows(&dist, k, &mut got);
                let want: Vec<_> = dist.chunks(k).map(nearest_two).collect();
                assert_eq!(got, want, "k={k}, {rows} rows");
                if k > 1 {
                    assert!(got.iter().all(|&(_, d1, d2)| d1 <= d2));
                }
            }
        }
    }

    /// Every k from 1 to 30 (one, two and three vectors per panel, and a padded
    /// tail), scattered and repeated rows, a short last tile: the tiles agree with a
    /// plain `f64` computation.
    #[test]
    fn tiles_match_plain_distances() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(5);
        let (n, d) = (23, 13);
        let x: Vec<f32> = (0..n * d).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let norms: Vec<f32> = x.chunks(d).map(|r| r.iter().map(|v| v * v).sum()).collect();
        let rows = [0, 7, 3, 3, 22, 11, 5, 1, 19, 2, 9];
        for k in 1..=30 {
            let c = Array2::from_shape_fn((k, d), |_| rng.gen_range(-2.0..2.0));
            let centres = Centres::new(c.view());
            let mut out = vec![f32::NAN; rows.len() * k];
            let points = Points {
                x: &x,
                d,
                norms: &norms,
            };
            sq_distances(points, &rows, &centres, &mut out);
            for (r, &i) in rows.iter().enumerate() {
                for j in 0..k {
                    let want: f64 = (0..d)
                        .map(|f| (f64::from(x[i * d + f]) - c[[j, f]]).powi(2))
                        .sum();
                    let got = f64::from(out[r * k + j]);
                    assert!(
                        (got - want).abs() < 1e-4 * want.max(1.0),
                        "k={k} row {i} centre {j}: {got} vs {want}"
                    );
                }
            }
            // Without the FMA variant the same distances come out (to rounding).
            let mut plain = vec![f32::NAN; rows.len() * k];
            sq_distances_body::<false, TILE_ROWS>(points, &rows, &centres, &mut plain);
            for (a, b) in out.iter().zip(&plain) {
                assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0));
            }
            // AVX-512's tiles of eight rows give AVX2's distances bit for bit (this
            // machine and CI's have both; elsewhere the check has nothing to compare).
            #[cfg(target_arch = "x86_64")]
            if has_avx512() {
                let (mut wide, mut narrow) = (plain.clone(), plain.clone());
                #[allow(unsafe_code)]
                // SAFETY: the CPU has AVX-512F, AVX2 and FMA, checked just above.
                unsafe {
                    sq_distances_avx512(points, &rows, &centres, &mut wide);
                    sq_distances_fma(points, &rows, &centres, &mut narrow);
                }
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&wide), bits(&narrow), "k={k}");
            }
        }
    }
}
