//! The ceiling: how many movers any reader of the purchases could move within the
//! issue's bounds (non-movers kept ≥ 99%, published changes ≤ 1.2 × movers), given
//! everything the simulation knows and no detector can: every outlet's own planted
//! spectrum before the drift (exactly, not estimated from its year), the planted
//! segments, how an outlet's spectrum is drawn around its segment's, the seasons, the
//! drift day, and — to pick its threshold — which outlets are the movers.
//!
//! Its statistic is the Bayes factor of an outlet's invoice lines since the drift day:
//! drawn from its own spectrum (as a non-mover's are) against drawn from a spectrum of
//! another segment (as a mover's are: a segment other than its own at random, a
//! spectrum around it). The lines per category and day are all the evidence there is:
//! line values and order frequency do not change when an outlet switches. The
//! movers come from that prior exactly, so ranking outlets by this factor moves the
//! most movers for any number of non-movers moved (Neyman–Pearson, in expectation;
//! the integral over spectra is a Monte Carlo average of [`DRAWS`] per segment).
//! The ceiling then moves the top of that ranking as far as the bounds allow,
//! choosing the cut with the truth in hand. It is an upper bound on the recall a
//! detector can reach within the bounds, not a method.

use rand::SeedableRng;
use rand_distr::{Dirichlet, Distribution};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::sim::{outlet_alpha, Simulation};

/// Spectra drawn per planted segment for the integral over a mover's new spectrum.
pub const DRAWS: usize = 2000;

/// Each outlet's log Bayes factor, switched against not, from its invoice lines on
/// the days from the drift day to `as_of`.
pub fn evidence(sim: &Simulation, as_of: u32) -> Vec<f64> {
    let k = sim.segment_spectra.len();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(sim.scenario.seed ^ 0x00c0_ffee);
    let span = (sim.drift_day..=as_of).map(|d| d as usize);
    // Per segment, draw and day since the drift: the log-probability of each category
    // (weights `s × season + 1e-9`, as the simulation draws a line's category).
    let log_p: Vec<Vec<Vec<Vec<f64>>>> = sim
        .segment_spectra
        .iter()
        .map(|s| {
            let d = Dirichlet::new(&outlet_alpha(s, sim.scenario.concentration)).expect("alpha");
            (0..DRAWS)
                .map(|_| {
                    let s = d.sample(&mut rng);
                    span.clone()
                        .map(|day| log_shares(&s, &sim.season[day]))
                        .collect()
                })
                .collect()
        })
        .collect();
    (0..sim.truth.len())
        .map(|o| {
            // (day since the drift, lines per category) of the days with lines.
            let days: Vec<(usize, Vec<f64>)> = (sim.drift_day..=as_of)
                .map(|d| ((d - sim.drift_day) as usize, sim.lines_on(o, d)))
                .filter(|(_, n)| n.iter().any(|&c| c > 0.0))
                .collect();
            let log_likelihood = |log_p: &[Vec<f64>]| -> f64 {
                days.iter()
                    .map(|(d, n)| n.iter().zip(&log_p[*d]).map(|(c, l)| c * l).sum::<f64>())
                    .sum()
            };
            let own: Vec<Vec<f64>> = span
                .clone()
                .map(|day| log_shares(&sim.spectrum_before[o], &sim.season[day]))
                .collect();
            let stay = log_likelihood(&own);
            let switched: Vec<f64> = (0..k)
                .filter(|&t| t != sim.truth[o])
                .flat_map(|t| log_p[t].iter())
                .map(|p| log_likelihood(p))
                .collect();
            log_mean_exp(&switched) - stay
        })
        .collect()
}

/// The log-share of each category on a day of `season`, for spectrum `s`.
fn log_shares(s: &[f64], season: &[f64]) -> Vec<f64> {
    let w: Vec<f64> = s.iter().zip(season).map(|(a, b)| a * b + 1e-9).collect();
    let total: f64 = w.iter().sum();
    w.iter().map(|w| (w / total).ln()).collect()
}

fn log_mean_exp(v: &[f64]) -> f64 {
    let top = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    top + (v.iter().map(|x| (x - top).exp()).sum::<f64>() / v.len() as f64).ln()
}

/// The outlets the ceiling moves at `as_of`: the longest top of the ranking by
/// [`evidence`] that holds the most movers while moving at most 1% of the non-movers
/// and at most 1.2 changes per mover.
pub fn ceiling(sim: &Simulation, as_of: u32) -> Vec<bool> {
    let evidence = evidence(sim, as_of);
    let n = evidence.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| evidence[b].total_cmp(&evidence[a]));
    let movers = sim.target.iter().filter(|t| t.is_some()).count();
    let (max_false, max_moves) = ((n - movers) / 100, movers * 6 / 5);
    let (mut caught, mut wrong, mut best, mut cut) = (0, 0, 0, 0);
    for (i, &o) in order.iter().enumerate() {
        if sim.target[o].is_some() {
            caught += 1;
        } else {
            wrong += 1;
        }
        if wrong > max_false || caught + wrong > max_moves {
            break;
        }
        if caught > best {
            (best, cut) = (caught, i + 1);
        }
    }
    let mut moved = vec![false; n];
    for &o in &order[..cut] {
        moved[o] = true;
    }
    moved
}
