//! Step 2, the fit: does another segment explain the outlet's recent purchases
//! clearly better than the outlet's own past does?
//!
//! A Bayes factor of two Dirichlet-multinomial models of the recent window's
//! purchases `x` (each feature's share times the recent lines: counts in the lines
//! reading, spend-weighted pseudo-counts in the spend reading):
//!
//! ```text
//! stays:  x ~ DM(κ₀ π)     π = the outlet's earlier shares after the market's
//!                              drift, with its segment's profile as a prior of
//!                              weight κ (at most its own lines; renormalised)
//! moved:  x ~ DM(κ μ_b)    μ_b = segment b's recent profile
//! fit   = ln DM(x | κ μ_b) − ln DM(x | κ₀ π)
//! ```
//!
//! `κ` is how far a member's month lies from its segment's profile and `κ₀` how far
//! an outlet's month lies from its own past; both are estimated from the population
//! (maximum likelihood, over the outlets the first pass did not flag), as the G
//! test's φ is. A Dirichlet-multinomial's power follows the lines behind `x`: three
//! lines barely tell the two models apart, a month of weekly orders does.
//!
//! Why not the recent spend's likelihood under the best segment's profile against
//! its own segment's (the fit before this one): an outlet between two overlapping
//! segments fits both about as well, however clearly it left its own past for the
//! other. On the movement benchmark that fit was the bar most movers within reach
//! failed (`bench/movement/RESULTS.md`, "A ceiling, and a Bayes factor for the
//! fit").

/// Fewest outlets from which `κ` and `κ₀` are estimated; with fewer, both are
/// [`KAPPA_MAX`] (no spread: the models are multinomials).
pub const MIN_OUTLETS: usize = super::MIN_OUTLETS_FOR_DISPERSION;
/// Outlets a spread is estimated from at most (every `n / SAMPLE`-th of the rest):
/// the likelihood of a few thousand months pins `κ` to a few percent.
const SAMPLE: usize = 4096;
/// The range `κ` is searched in.
const KAPPA_MIN: f64 = 0.05;
/// See [`KAPPA_MIN`]; beyond it a Dirichlet-multinomial is a multinomial.
pub const KAPPA_MAX: f64 = 1e6;

/// `ln DM(x | κ m)` without the multinomial coefficient (the same for both models of
/// one `x`): `m` a spectrum (summing to 1) without zeros where `x` is positive.
pub fn log_dm(x: &[f64], m: &[f64], kappa: f64) -> f64 {
    log_dm_bought(bought(x, m), kappa)
}

/// The `(x_f, m_f)` of the features bought (`x_f > 0`), in feature order.
fn bought<'a>(x: &'a [f64], m: &'a [f64]) -> impl Iterator<Item = (f64, f64)> + Clone + 'a {
    x.iter()
        .zip(m)
        .filter(|(x, _)| **x > 0.0)
        .map(|(&x, &m)| (x, m))
}

/// [`log_dm`] over the `(x_f, m_f)` of the features bought: the features not bought
/// add nothing but their share of `κ`, which is all of it less the bought ones'.
fn log_dm_bought(bought: impl Iterator<Item = (f64, f64)> + Clone, kappa: f64) -> f64 {
    let n: f64 = bought.clone().map(|(x, _)| x).sum();
    let mut out = libm::lgamma(kappa) - libm::lgamma(kappa + n);
    for (x, m) in bought {
        let a = kappa * m;
        out += libm::lgamma(a + x) - libm::lgamma(a);
    }
    out
}

/// A month of purchases as the likelihood reads it: `(x_f, m_f)` for each feature
/// bought (`x_f > 0`), `m` the spectrum it is read against.
pub type Month = Vec<(f64, f64)>;

/// `x` against `m`, as a [`Month`].
pub fn month(x: &[f64], m: &[f64]) -> Month {
    bought(x, m).collect()
}

/// [`log_dm`] of a [`Month`].
pub fn log_dm_of(month: &[(f64, f64)], kappa: f64) -> f64 {
    log_dm_bought(month.iter().copied(), kappa)
}

/// The `κ` that maximises `Σ ln DM(x_o | κ m_o)` over the `months` (on `ln κ`; the
/// likelihood is unimodal in it). Summed in order, so a rerun finds the same `κ` to
/// the bit.
pub fn spread(months: &[Month]) -> f64 {
    if months.len() < MIN_OUTLETS {
        return KAPPA_MAX;
    }
    let ll = |ln_k: f64| -> f64 {
        let k = ln_k.exp();
        months.iter().map(|m| log_dm_of(m, k)).sum()
    };
    golden_max(ll, KAPPA_MIN.ln(), KAPPA_MAX.ln(), 48).0.exp()
}

/// The largest `ln DM(x | κ (α old + (1 − α) m))` over the mix `α` in [0, 1]: how
/// well `x` is explained as bought partly as `old`, partly as `m`.
pub fn mixed(x: &[f64], old: &[f64], m: &[f64], kappa: f64) -> f64 {
    let at = |a: f64| {
        let mix = x
            .iter()
            .zip(old.iter().zip(m))
            .filter(|(x, _)| **x > 0.0)
            .map(|(&x, (o, m))| (x, a * o + (1.0 - a) * m));
        log_dm_bought(mix, kappa)
    };
    let (_, inside) = golden_max(at, 0.0, 1.0, 30);
    inside.max(at(0.0)).max(at(1.0))
}

/// Golden-section search for the maximum of a unimodal `f` on `[lo, hi]`, `steps`
/// narrowings (each by 0.618): where it is, and `f` there.
fn golden_max(f: impl Fn(f64) -> f64, lo: f64, hi: f64, steps: usize) -> (f64, f64) {
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (lo, hi);
    let (mut c, mut d) = (b - phi * (b - a), a + phi * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..steps {
        if fc >= fd {
            (b, d, fd) = (d, c, fc);
            c = b - phi * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + phi * (b - a);
            fd = f(d);
        }
    }
    let at = (a + b) / 2.0;
    (at, f(at))
}

/// Every `⌈n / SAMPLE⌉`-th of `rows` (all of them up to [`SAMPLE`]).
pub fn sample(rows: impl Iterator<Item = usize> + Clone) -> impl Iterator<Item = usize> {
    let n = rows.clone().count();
    rows.step_by(n.div_ceil(SAMPLE).max(1))
}

/// Purchases as (pseudo-)counts: the `shares` of one reading times the `lines`
/// behind them.
pub fn counts(shares: impl IntoIterator<Item = f64>, lines: f64) -> Vec<f64> {
    shares.into_iter().map(|p| p * lines).collect()
}

/// What an outlet would buy had it not changed: its earlier shares after the
/// market's drift (`earlier`), weighted by its earlier lines, with its segment's
/// profile `prior` weighted by `kappa` — never by more than the outlet's own lines —
/// renormalised. The segment is the prior an outlet's spectrum is drawn around; it
/// steadies the past of an outlet that bought little, and a year of orders
/// outweighs it.
pub fn own(earlier: &[f64], lines: f64, prior: &[f64], kappa: f64) -> Vec<f64> {
    let w = kappa.min(lines.max(1.0));
    let total = lines + w;
    earlier
        .iter()
        .zip(prior)
        .map(|(e, p)| (lines * e + w * p) / total)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::distributions::{Distribution, WeightedIndex};
    use rand::SeedableRng;
    use rand_distr::Dirichlet;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// Months drawn from a Dirichlet-multinomial of known `κ` give it back.
    #[test]
    fn the_spread_of_drawn_months_is_found_again() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let m = [0.5, 0.3, 0.15, 0.05];
        for kappa in [2.0, 20.0] {
            let alpha: Vec<f64> = m.iter().map(|p| p * kappa).collect();
            let dirichlet = Dirichlet::new(&alpha).unwrap();
            let samples: Vec<Month> = (0..3000)
                .map(|_| {
                    let p = dirichlet.sample(&mut rng);
                    let lines = WeightedIndex::new(&p).unwrap();
                    let mut x = vec![0.0; m.len()];
                    for _ in 0..40 {
                        x[lines.sample(&mut rng)] += 1.0;
                    }
                    month(&x, &m)
                })
                .collect();
            let found = spread(&samples);
            assert!(
                (found / kappa - 1.0).abs() < 0.15,
                "κ {kappa}: found {found}"
            );
        }
        // Months that are the profile itself have no spread to find.
        let flat: Vec<Month> = (0..200)
            .map(|_| month(&[20.0, 12.0, 6.0, 2.0], &m))
            .collect();
        assert!(spread(&flat) > 1e3);
        assert_eq!(spread(&flat[..MIN_OUTLETS - 1]), KAPPA_MAX);
    }

    /// The mix found is the best on a fine grid, and a month bought as one of the two
    /// is best explained by that one alone.
    #[test]
    fn the_mix_found_is_the_best_mix() {
        let (old, m) = ([0.6, 0.25, 0.1, 0.05], [0.05, 0.15, 0.3, 0.5]);
        for (x, kappa) in [
            ([12.0, 6.0, 8.0, 10.0], 5.0),
            ([3.0, 0.0, 1.0, 9.0], 40.0),
            ([20.0, 5.0, 2.0, 1.0], 1e4),
        ] {
            let grid = (0..=10_000)
                .map(|i| {
                    let a = f64::from(i) / 10_000.0;
                    let mix: Vec<f64> = old
                        .iter()
                        .zip(&m)
                        .map(|(o, q)| a * o + (1.0 - a) * q)
                        .collect();
                    log_dm(&x, &mix, kappa)
                })
                .fold(f64::NEG_INFINITY, f64::max);
            let found = mixed(&x, &old, &m, kappa);
            assert!(
                found >= grid - 1e-9 && found <= grid + 1e-6,
                "{x:?}: {found} against {grid}"
            );
        }
        // Bought as `m`: the mix is `m` alone, within what the search resolves.
        let as_m = [1.0, 3.0, 6.0, 10.0];
        let (found, alone) = (mixed(&as_m, &old, &m, 1e4), log_dm(&as_m, &m, 1e4));
        assert!(
            found >= alone && found - alone < 1e-5,
            "{found} against {alone}"
        );
    }

    /// More lines, more evidence: the same switched mix fits the other segment by
    /// more when it is bought in more lines.
    #[test]
    fn the_fit_grows_with_the_lines_behind_it() {
        let (old, new) = ([0.7, 0.2, 0.1], [0.1, 0.2, 0.7]);
        let fit = |lines: f64| {
            let x: Vec<f64> = new.iter().map(|p| p * lines).collect();
            log_dm(&x, &new, 5.0) - log_dm(&x, &old, 20.0)
        };
        // Three lines bought exactly as the new mix stay under the default bar (4).
        assert!(fit(3.0) < 4.0, "{}", fit(3.0));
        assert!(
            fit(3.0) < fit(10.0) && fit(10.0) < fit(40.0),
            "{} {}",
            fit(10.0),
            fit(40.0)
        );
        assert!(fit(40.0) > 10.0, "{}", fit(40.0));
    }
}
