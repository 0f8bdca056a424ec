//! The statistics of the change detector: the G test and its χ² scores, the normal
//! tail for testing more than one reading.

/// `x ln(x / y)`, 0 when `x` is 0.
fn xlog(x: f64, y: f64) -> f64 {
    if x > 0.0 {
        x * (x / y).ln()
    } else {
        0.0
    }
}

/// The median of χ² on `df` degrees of freedom (Wilson–Hilferty).
pub fn chi2_median(df: usize) -> f64 {
    chi2_at(df, 0.0)
}

/// The `q` quantile of χ² on `df` degrees of freedom (Wilson–Hilferty), for
/// `0 < q < 1`.
pub fn chi2_quantile(df: usize, q: f64) -> f64 {
    chi2_at(df, normal_tail_inverse(1.0 - q))
}

/// The χ² value on `df` degrees of freedom whose Wilson–Hilferty normal score is
/// `z` (the inverse of [`chi2_score`]).
fn chi2_at(df: usize, z: f64) -> f64 {
    let k = df as f64;
    let v = 2.0 / (9.0 * k);
    k * (1.0 - v + z * v.sqrt()).powi(3)
}

/// The standard normal quantile of `x` under χ² on `df` degrees of freedom
/// (Wilson–Hilferty cube-root approximation).
pub fn chi2_score(x: f64, df: usize) -> f64 {
    let k = df as f64;
    let v = 2.0 / (9.0 * k);
    ((x.max(0.0) / k).cbrt() - (1.0 - v)) / v.sqrt()
}

/// `P(Z > z)` for a standard normal `Z`.
pub fn normal_tail(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// The `z` with `P(Z > z) = q`, for `1e-300 ≤ q < 1`. Newton's method on
/// `ln P(Z > z)`, which is concave and decreasing: after the first step every iterate
/// lies at or above the root and approaches it from there (the first is held under
/// 37, where the tail is still a normal `f64`).
pub fn normal_tail_inverse(q: f64) -> f64 {
    let target = q.clamp(1e-300, 1.0).ln();
    let mut z = 0.0_f64;
    for _ in 0..100 {
        let tail = normal_tail(z);
        let density = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let next = (z + (tail.ln() - target) * tail / density).min(37.0);
        let done = (next - z).abs() < 1e-12 * z.abs().max(1.0);
        z = next;
        if done {
            break;
        }
    }
    z
}

/// The score of the largest of `m` independent normal scores, `z`, as one score
/// (Šidák): the `z'` with `P(Z > z') = 1 − (1 − P(Z > z))^m`. Testing `m` readings
/// at `z' ≥ c` flags no more unchanged outlets than one reading at `z ≥ c`. Past
/// `z = 8` the tails are too thin for `f64`; there `z'² = z² − 2 ln m`, the tails'
/// leading terms. Below 0 it is computed from the lower tail, which is then the
/// small one.
pub fn sidak(z: f64, m: usize) -> f64 {
    if m <= 1 {
        return z;
    }
    let m = m as f64;
    if z > 8.0 {
        (z * z - 2.0 * m.ln()).sqrt()
    } else if z >= 0.0 {
        normal_tail_inverse(-f64::exp_m1(m * (-normal_tail(z)).ln_1p()))
    } else {
        -normal_tail_inverse(normal_tail(-z).powf(m))
    }
}

/// The raw score `z` whose [`sidak`] over `m` is `score`: `P(Z > z) = 1 − (1 −
/// P(Z > score))^(1/m)`. Comparing each outlet's raw score with it decides what
/// comparing its corrected score with `score` decides, without a correction per
/// outlet.
pub fn sidak_inverse(score: f64, m: usize) -> f64 {
    if m <= 1 {
        return score;
    }
    let m = m as f64;
    if score > 8.0 {
        (score * score + 2.0 * m.ln()).sqrt()
    } else if score >= 0.0 {
        normal_tail_inverse(-f64::exp_m1((-normal_tail(score)).ln_1p() / m))
    } else {
        -normal_tail_inverse(normal_tail(-score).powf(1.0 / m))
    }
}

pub fn g_terms(p: &[f64], a: f64, q: impl IntoIterator<Item = f64>, b: f64) -> (Vec<f64>, usize) {
    let mut terms = vec![0.0; p.len()];
    let mut support = 0;
    for (term, (p, q)) in terms.iter_mut().zip(p.iter().zip(q)) {
        let bar = (a * p + b * q) / (a + b);
        if bar > 0.0 {
            support += 1;
            *term = 2.0 * (a * xlog(*p, bar) + b * xlog(q, bar));
        }
    }
    (terms, support)
}

/// The `count` largest of `terms` as (index, term), largest first, equal terms in
/// index order (what a stable sort, largest first, would put first).
pub fn largest(terms: &[f64], count: usize) -> Vec<(usize, f64)> {
    let mut top: Vec<(usize, f64)> = Vec::with_capacity(count + 1);
    for (f, &t) in terms.iter().enumerate() {
        if top.len() == count && top.last().is_some_and(|l| t.total_cmp(&l.1).is_le()) {
            continue;
        }
        let at = top.partition_point(|l| l.1.total_cmp(&t).is_ge());
        top.insert(at, (f, t));
        top.truncate(count);
    }
    top
}

/// The `q` quantile of the finite `ratios` (the `⌊q n⌋`-th smallest), at least
/// `floor`; 1 with fewer than [`super::MIN_OUTLETS_FOR_DISPERSION`].
pub fn quantile_at_least(mut ratios: Vec<f64>, q: f64, floor: f64) -> f64 {
    ratios.retain(|v| v.is_finite());
    if ratios.len() < super::MIN_OUTLETS_FOR_DISPERSION {
        return 1.0;
    }
    let at = ((ratios.len() as f64 * q) as usize).min(ratios.len() - 1);
    ratios
        .select_nth_unstable_by(at, f64::total_cmp)
        .1
        .max(floor)
}
