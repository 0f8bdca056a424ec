//! The directions in which outlets differ, and an outlet's change along them.
//!
//! The G test asks whether anything changed, on as many degrees of freedom as the
//! outlet bought features (twenty and more): a switch to another segment's mix,
//! spread over them, scores little. Segments differ from one another in a few
//! directions only: the leading principal directions of the outlets' earlier shares.
//! The change an outlet makes when it takes up another segment's behaviour lies
//! mostly in them, so its change projected there, tested on those few degrees of
//! freedom, shows what the G test spreads thin. The directions come from the
//! outlets' history only, never from their segments, so the outlets this test flags
//! do not depend on the assignment, as the G test's do not.

use linfa_linalg::eigh::{EigSort, EighInto};
use linfa_linalg::lobpcg::lobpcg;
use linfa_linalg::Order;
use ndarray::{Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use super::shares::Shares;

/// Most earlier lines an outlet weighs with in the directions (an outlet of a
/// thousand lines is not a thousand outlets).
const WEIGHT_CAP: f64 = 100.0;
/// Most chunks the covariance is summed in. Their number depends on the data only,
/// so the sum's order, and the result, do not depend on the threads.
const CHUNKS: usize = 64;
/// Bytes the chunks' partial sums may take together (each is `d × d` values).
const PARTIALS_BYTES: usize = 64 << 20;

/// Directions in the feature space, stored feature by feature (`d × m`, row-major),
/// so an outlet's pass over its features reads each feature's `m` coordinates
/// together; beside them, each feature's outer product `v vᵀ` (its upper triangle,
/// row by row), which an outlet's Gram matrix sums with the outlet's own weights.
#[derive(Debug, Clone, Default)]
pub(super) struct Directions {
    m: usize,
    by_feature: Vec<f64>,
    outer: Vec<f64>,
}

impl Directions {
    fn of(v: &[Vec<f64>], d: usize) -> Self {
        let m = v.len();
        let mut by_feature = vec![0.0; d * m];
        for (j, x) in v.iter().enumerate() {
            for (f, &c) in x.iter().enumerate() {
                by_feature[f * m + j] = c;
            }
        }
        // One chunk per feature (none when there is no direction: `by_feature` is
        // then empty).
        let outer = by_feature
            .chunks_exact(m.max(1))
            .flat_map(|v| (0..m).flat_map(move |j| v[j..].iter().map(move |&c| v[j] * c)))
            .collect();
        Self {
            m,
            by_feature,
            outer,
        }
    }
}

/// The `m` leading principal directions (orthonormal) of the earlier shares of the
/// outlets `testable`, each weighted by its earlier lines (at most [`WEIGHT_CAP`]).
/// No direction when `m` is 0 or no outlet is testable.
pub(super) fn principal<T: Copy + Into<f64> + Sync>(
    shares: &Shares<T>,
    lines: &[f64],
    testable: &[bool],
    (m, d): (usize, usize),
) -> Directions {
    let n = testable.len();
    if m == 0 || d == 0 || n == 0 {
        return Directions::default();
    }
    let chunks = (PARTIALS_BYTES / (d * d * 8)).clamp(1, CHUNKS);
    let chunk = n.div_ceil(chunks);
    // Weighted sums of x and of x xᵀ (upper triangle), per chunk, folded in order.
    let partials: Vec<(f64, Vec<f64>, Vec<f64>)> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let (mut w, mut s, mut ss) = (0.0, vec![0.0; d], vec![0.0; d * d]);
            // The outlet's features bought, with their shares: its products are
            // those of the pairs of them (with hundreds of features, most of an
            // outlet's are zero, and adding their zero products changes nothing).
            let mut bought: Vec<(usize, f64)> = Vec::with_capacity(d);
            for i in c * chunk..((c + 1) * chunk).min(n) {
                if !testable[i] {
                    continue;
                }
                let wi = lines[i].min(WEIGHT_CAP);
                bought.clear();
                bought.extend(shares.row(i).enumerate().filter(|&(_, v)| v != 0.0));
                w += wi;
                for (j, &(a, xa)) in bought.iter().enumerate() {
                    s[a] += wi * xa;
                    let row = &mut ss[a * d..(a + 1) * d];
                    for &(b, xb) in &bought[j..] {
                        row[b] += wi * xa * xb;
                    }
                }
            }
            (w, s, ss)
        })
        .collect();
    let (mut w, mut s, mut ss) = (0.0, vec![0.0; d], vec![0.0; d * d]);
    for (pw, ps, pss) in partials {
        w += pw;
        s.iter_mut().zip(ps).for_each(|(a, b)| *a += b);
        ss.iter_mut().zip(pss).for_each(|(a, b)| *a += b);
    }
    if w <= 0.0 {
        return Directions::default();
    }
    let mean: Vec<f64> = s.iter().map(|v| v / w).collect();
    let mut cov = vec![0.0; d * d];
    for a in 0..d {
        for b in a..d {
            let v = ss[a * d + b] / w - mean[a] * mean[b];
            cov[a * d + b] = v;
            cov[b * d + a] = v;
        }
    }
    Directions::of(&leading(cov, d, m.min(d)), d)
}

/// Features from which the leading directions are found by an iterative solver
/// instead of the full decomposition. The full one costs `d³`: at 1,024 features it
/// took 17 s of a 19 s detection over 20,000 outlets, and a segmentation may keep
/// 4,096 (64 times that). Up to this many it takes a fraction of a second, and
/// keeps every decision at the few dozen features most segmentations have
/// exactly as it was.
const ITERATIVE_FROM: usize = 257;
/// Steps the iterative solver takes at most, and the residual it stops at, on the
/// matrix scaled to unit trace (eigenvalues summing to 1).
const ITERATIVE_STEPS: usize = 500;
const ITERATIVE_TOLERANCE: f32 = 1e-7;

/// The eigenvectors of the symmetric `d × d` matrix `a` with the `m` largest
/// eigenvalues, leaving out those whose eigenvalue is nothing beside the largest: a
/// direction the outlets do not vary in (shares sum to 1, so there is always one)
/// is none to test. Up to [`ITERATIVE_FROM`] features by `linfa-linalg`'s symmetric
/// eigendecomposition, from there by its LOBPCG (`d² m` a step; the best it reached
/// when it stops short of the tolerance; the full decomposition when it has nothing).
fn leading(a: Vec<f64>, d: usize, m: usize) -> Vec<Vec<f64>> {
    let a = Array2::from_shape_vec((d, d), a).expect("a d × d matrix");
    let found = (d >= ITERATIVE_FROM && m > 0)
        .then(|| iterative(&a, m))
        .flatten();
    let pairs = found.or_else(|| {
        a.eigh_into().ok().map(|decomposed| {
            let (values, vectors) = decomposed.sort_eig_desc();
            (values.to_vec(), vectors)
        })
    });
    let Some((values, vectors)) = pairs else {
        return Vec::new();
    };
    let largest = values.first().copied().unwrap_or(0.0);
    values
        .iter()
        .zip(vectors.columns())
        .take(m)
        .filter(|(&v, _)| largest > 0.0 && v > 1e-12 * largest)
        .map(|(_, x)| x.to_vec())
        .collect()
}

/// The `m` largest eigenvalues of the symmetric `a`, largest first, and their
/// eigenvectors (columns), by LOBPCG from a seeded start (the same directions for
/// the same matrix). `None` when the solver has no result at all.
fn iterative(a: &Array2<f64>, m: usize) -> Option<(Vec<f64>, Array2<f64>)> {
    let d = a.nrows();
    let trace: f64 = a.diag().sum();
    if !trace.is_finite() || trace <= 0.0 {
        return None;
    }
    let a = a / trace;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let start = Array2::from_shape_fn((d, m.min(d)), |_| rng.gen_range(-1.0..1.0));
    let found = match lobpcg(
        |x| a.dot(&x),
        start,
        |_| {},
        None,
        ITERATIVE_TOLERANCE,
        ITERATIVE_STEPS,
        Order::Largest,
    ) {
        Ok(found) | Err((_, Some(found))) => found,
        Err((_, None)) => return None,
    };
    let mut order: Vec<usize> = (0..found.eigvals.len()).collect();
    order.sort_by(|&i, &j| found.eigvals[j].total_cmp(&found.eigvals[i]));
    let values = order.iter().map(|&i| found.eigvals[i] * trace).collect();
    let vectors = found.eigvecs.select(Axis(1), &order);
    Some((values, vectors))
}

/// The change from shares `e` (over `a` lines) to shares `p` (over `b` lines)
/// projected on `directions`, as a statistic that is χ² on the returned degrees of
/// freedom when both periods share their shares (the pooled shares stand for them;
/// the features either period bought are the support): `(T, df)`, `None` when no
/// direction is left on the support.
///
/// With `D` the pooled shares on the diagonal, the projections `u = Vᵀ D⁻¹ (p − e)`
/// have covariance `(1/a + 1/b) (Vᵀ D⁻¹ V − (Vᵀ1)(Vᵀ1)ᵀ)`; `T = uᵀ Σ⁻¹ u`, the
/// inverse by a Cholesky factor that drops a direction the others already span.
pub(super) fn projected(
    e: &[f64],
    a: f64,
    p: &[f64],
    b: f64,
    directions: &Directions,
) -> Option<(f64, usize)> {
    let m = directions.m;
    if m == 0 {
        return None;
    }
    // One scratch: u, the sums of each direction, y (m each), the Gram matrix's
    // upper triangle as summed (packed, row by row), the matrix and its factor
    // (m × m each).
    let tri = m * (m + 1) / 2;
    let mut scratch = vec![0.0; 3 * m + tri + 2 * m * m];
    let (u, rest) = scratch.split_at_mut(m);
    let (sums, rest) = rest.split_at_mut(m);
    let (y, rest) = rest.split_at_mut(m);
    let (packed, rest) = rest.split_at_mut(tri);
    let (g, l) = rest.split_at_mut(m * m);
    let coords = directions.by_feature.chunks_exact(m);
    let outer = directions.outer.chunks_exact(tri);
    for (((&e, &p), v), o) in e.iter().zip(p).zip(coords).zip(outer) {
        // The pooled share is `(a e + b p) / (a + b)`: one division for its inverse.
        let pooled = a * e + b * p;
        if pooled <= 0.0 {
            continue;
        }
        let inverse = (a + b) / pooled;
        let delta = (p - e) * inverse;
        for ((u, s), &vj) in u.iter_mut().zip(sums.iter_mut()).zip(v) {
            *u += delta * vj;
            *s += vj;
        }
        // One contiguous run of `tri` products: the compiler vectorises it, where
        // the triangle's rows of falling length it did not.
        for (g, &o) in packed.iter_mut().zip(o) {
            *g += inverse * o;
        }
    }
    let mut next = packed.iter();
    for j in 0..m {
        for c in j..m {
            g[j * m + c] = next.next().expect("the packed triangle") - sums[j] * sums[c];
        }
    }
    // Cholesky of the upper triangle, row by row; a pivot under this share of the
    // largest diagonal entry drops its direction (its row of the factor stays 0).
    let largest = (0..m).map(|j| g[j * m + j]).fold(0.0, f64::max);
    if largest <= 0.0 {
        return None;
    }
    let (mut t, mut df) = (0.0, 0);
    for j in 0..m {
        let pivot = g[j * m + j] - (0..j).map(|r| l[r * m + j] * l[r * m + j]).sum::<f64>();
        if pivot <= 1e-9 * largest {
            continue;
        }
        let root = pivot.sqrt();
        l[j * m + j] = root;
        for c in j + 1..m {
            let v = g[j * m + c] - (0..j).map(|r| l[r * m + j] * l[r * m + c]).sum::<f64>();
            l[j * m + c] = v / root;
        }
        // Forward substitution: y_j = (u_j − Σ L_rj y_r) / L_jj.
        y[j] = (u[j] - (0..j).map(|r| l[r * m + j] * y[r]).sum::<f64>()) / root;
        t += y[j] * y[j];
        df += 1;
    }
    (df > 0).then(|| (t * a * b / (a + b), df))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_finds_the_eigenvectors_of_a_diagonal_matrix_in_order() {
        let a = vec![1.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 2.0];
        let v = leading(a, 3, 2);
        assert_eq!(v.len(), 2);
        assert!((v[0][1].abs() - 1.0).abs() < 1e-9, "{v:?}");
        assert!((v[1][2].abs() - 1.0).abs() < 1e-9, "{v:?}");
    }

    /// The covariance of `rows` (each a point, all of one length), over their number.
    fn covariance(rows: &[Vec<f64>]) -> Array2<f64> {
        let (n, d) = (rows.len() as f64, rows[0].len());
        let mean: Vec<f64> = (0..d)
            .map(|f| rows.iter().map(|r| r[f]).sum::<f64>() / n)
            .collect();
        Array2::from_shape_fn((d, d), |(a, b)| {
            rows.iter()
                .map(|r| (r[a] - mean[a]) * (r[b] - mean[b]))
                .sum::<f64>()
                / n
        })
    }

    #[test]
    fn the_iterative_solver_finds_the_leading_directions_of_the_full_decomposition() {
        // A covariance of 400 outlets over 300 features (past `ITERATIVE_FROM`): six
        // profiles, each outlet one of them plus noise. The leading five directions
        // LOBPCG finds span what the full decomposition's span, with its eigenvalues.
        let (d, m) = (ITERATIVE_FROM + 43, 5);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let profiles: Vec<Vec<f64>> = (0..6)
            .map(|_| (0..d).map(|_| rng.gen_range(0.0..1.0)).collect())
            .collect();
        let rows: Vec<Vec<f64>> = (0..400)
            .map(|i| {
                let p = &profiles[i % 6];
                p.iter().map(|v| v + rng.gen_range(-0.3..0.3)).collect()
            })
            .collect();
        let cov = covariance(&rows);
        let (values, vectors) = iterative(&cov, m).expect("a result");
        let (all, full) = cov.clone().eigh_into().unwrap().sort_eig_desc();
        for j in 0..m {
            assert!(
                (values[j] - all[j]).abs() < 1e-6 * all[0],
                "{j}: {} against {}",
                values[j],
                all[j]
            );
            // Its part outside the full decomposition's leading span.
            let v = vectors.column(j);
            let inside: f64 = (0..m).map(|c| v.dot(&full.column(c)).powi(2)).sum();
            assert!(1.0 - inside < 1e-8, "{j}: {inside}");
        }
        assert_eq!(leading(cov.into_raw_vec_and_offset().0, d, m).len(), m);
    }

    #[test]
    fn past_iterative_from_fewer_directions_than_asked_are_what_the_outlets_vary_in() {
        // 300 features, but outlets differ in two directions only (three profiles):
        // five are asked for, the two come back, in the span of the differences.
        let d = ITERATIVE_FROM + 43;
        let profile =
            |s: usize| -> Vec<f64> { (0..d).map(|f| ((f * (s + 2)) % 7) as f64).collect() };
        let profiles = [profile(0), profile(1), profile(2)];
        let cov = covariance(&profiles).into_raw_vec_and_offset().0;
        let v = leading(cov, d, 5);
        assert_eq!(v.len(), 2, "{}", v.len());
        // Each lies in the span of the two differences from the first profile.
        let diffs: Vec<Vec<f64>> = (1..3)
            .map(|s| (0..d).map(|f| profiles[s][f] - profiles[0][f]).collect())
            .collect();
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
        let (g00, g01, g11) = (
            dot(&diffs[0], &diffs[0]),
            dot(&diffs[0], &diffs[1]),
            dot(&diffs[1], &diffs[1]),
        );
        let det = g00 * g11 - g01 * g01;
        for x in &v {
            let (b0, b1) = (dot(x, &diffs[0]), dot(x, &diffs[1]));
            // ‖projection‖² = bᵀ G⁻¹ b.
            let inside = (g11 * b0 * b0 - 2.0 * g01 * b0 * b1 + g00 * b1 * b1) / det;
            assert!((inside - 1.0).abs() < 1e-6, "{inside}");
        }
        // Outlets that do not vary at all: no direction (LOBPCG has none to give,
        // and the full decomposition's eigenvalues are all zero).
        assert!(leading(vec![0.0; d * d], d, 5).is_empty());
    }

    #[test]
    fn one_direction_gives_the_score_test_squared() {
        // Along one direction T is the square of the directed score test.
        let (e, p) = ([0.5, 0.3, 0.2], [0.3, 0.3, 0.4]);
        let v = vec![vec![-0.5_f64.sqrt(), 0.0, 0.5_f64.sqrt()]];
        let (t, df) = projected(&e, 90.0, &p, 10.0, &Directions::of(&v, 3)).unwrap();
        assert_eq!(df, 1);
        let bar: Vec<f64> = e.iter().zip(&p).map(|(e, p)| 0.9 * e + 0.1 * p).collect();
        let u: f64 = (0..3).map(|f| (p[f] - e[f]) * v[0][f] / bar[f]).sum();
        let var: f64 = (0..3).map(|f| v[0][f] * v[0][f] / bar[f]).sum::<f64>()
            - v[0].iter().sum::<f64>().powi(2);
        assert!((t - 9.0 * u * u / var).abs() < 1e-9, "{t}");
    }

    #[test]
    fn three_directions_give_the_quadratic_form_of_their_covariance() {
        // T = uᵀ Σ⁻¹ u · ab / (a + b), with u and Σ as documented, solved here by
        // Gaussian elimination on the full matrix (the function sums its packed
        // triangle and factors it).
        let e = [0.30, 0.20, 0.10, 0.25, 0.15, 0.0];
        let p = [0.10, 0.25, 0.30, 0.05, 0.20, 0.10];
        let (a, b) = (120.0, 30.0);
        let v = vec![
            vec![0.5, -0.5, 0.5, -0.5, 0.0, 0.0],
            vec![0.1, 0.7, -0.1, -0.3, -0.6, 0.2],
            vec![-0.4, 0.2, 0.6, 0.1, -0.2, -0.6],
        ];
        let (t, df) = projected(&e, a, &p, b, &Directions::of(&v, 6)).unwrap();
        assert_eq!(df, 3);
        let bar: Vec<f64> = (0..6).map(|f| (a * e[f] + b * p[f]) / (a + b)).collect();
        let support: Vec<usize> = (0..6).filter(|&f| bar[f] > 0.0).collect();
        let mut m = [[0.0; 4]; 3];
        for j in 0..3 {
            m[j][3] = support
                .iter()
                .map(|&f| v[j][f] * (p[f] - e[f]) / bar[f])
                .sum();
            for c in 0..3 {
                let (sj, sc): (f64, f64) = (
                    support.iter().map(|&f| v[j][f]).sum(),
                    support.iter().map(|&f| v[c][f]).sum(),
                );
                m[j][c] = support
                    .iter()
                    .map(|&f| v[j][f] * v[c][f] / bar[f])
                    .sum::<f64>()
                    - sj * sc;
            }
        }
        let u: Vec<f64> = (0..3).map(|j| m[j][3]).collect();
        for j in 0..3 {
            for r in j + 1..3 {
                let (f, pivot) = (m[r][j] / m[j][j], m[j]);
                for (x, p) in m[r][j..].iter_mut().zip(&pivot[j..]) {
                    *x -= f * p;
                }
            }
        }
        let mut x = [0.0; 3];
        for j in (0..3).rev() {
            x[j] = (m[j][3] - (j + 1..3).map(|c| m[j][c] * x[c]).sum::<f64>()) / m[j][j];
        }
        let expected = u.iter().zip(&x).map(|(u, x)| u * x).sum::<f64>() * a * b / (a + b);
        assert!((t - expected).abs() < 1e-9 * expected, "{t} {expected}");
    }

    #[test]
    fn a_direction_the_others_span_is_dropped() {
        let (e, p) = ([0.5, 0.3, 0.2], [0.3, 0.3, 0.4]);
        let v = vec![vec![1.0, 0.0, 0.0], vec![1.0, 0.0, 0.0]];
        let v = Directions::of(&v, 3);
        assert_eq!(projected(&e, 90.0, &p, 10.0, &v).unwrap().1, 1);
    }
}
