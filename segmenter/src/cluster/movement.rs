//! The change detector: moves an outlet whose behaviour changed, keeps one that only
//! wobbles on a segment border.
//!
//! A centroid distance cannot tell the two apart; the outlet's own history can. For
//! each outlet that had a segment, its spend shares in the recent window (the last
//! `recent_days`) are compared with its shares in the rest of the window by a
//! likelihood-ratio (G) test of homogeneity, with the invoice lines behind each
//! period as the sample sizes — three invoices prove little, a year of weekly orders
//! a lot:
//!
//! ```text
//! π  = earlier shares × the drift of all outlets (renormalised)
//! p̄  = (n_e π + n_r p_r) / (n_e + n_r)
//! G  = 2 [ n_e KL(π ‖ p̄) + n_r KL(p_r ‖ p̄) ]        df = features bought − 1
//! ```
//!
//! Spend shares are not counts: line values vary and lines of one invoice go
//! together, so G is over-dispersed by a factor φ that the population itself
//! estimates — `φ = median(G / median χ²_df)` over every tested outlet (most outlets
//! do not change), at least 1. The score is the Wilson–Hilferty normal quantile of
//! `G / φ` on `df` degrees of freedom. Multiplying the earlier shares by the drift
//! of all outlets (their pooled recent over pooled earlier shares, per feature) takes
//! out what everyone did (a season, a promotion), so the test asks whether the outlet
//! changed *against the market*. A first pass flags the outlets that changed; the
//! drift, the segments' profiles and φ are then estimated again without them.
//!
//! An outlet moves only when its score reaches `change_score`, *and* its recent
//! spend fits another segment's recent profile better than its own by a
//! log-likelihood ratio (over φ) of at least `fit_score`, *and* — the last guard —
//! that segment's profile is nearer — the recent spend's KL divergence from it lower
//! than from its own segment's by the hysteresis margin (relative).
//! Otherwise it keeps its segment, however near another centroid it lies.
//!
//! Which other segment: for an outlet that changed, the one whose profile, mixed with
//! the outlet's own earlier shares (after the market's drift) in the proportion that
//! fits best, explains the recent spend best — the change may lie inside the recent
//! window, which then still holds old behaviour, and a half-switched month alone fits
//! best a segment between the old behaviour and the new. The mix only names the
//! segment; the move still needs that segment's own fit.
//!
//! An outlet the detector moved keeps, while the window still reaches back before the
//! move, what it moved with ([`MovedWith`]: its recent shares and lines then); a
//! further move also needs its recent spend to differ from that by the same test.
//! Without it the rest of the window, still holding the behaviour it left, keeps the
//! score high for a year, and an outlet between two overlapping segments would move
//! to one or the other on the fit alone.
//!
//! With identical data a rerun reaches the same decisions, so nothing moves twice: the
//! outlets the first pass flags depend on their history and the market only, never
//! on the assignment, so the profiles made without them are the same after a move.

use ndarray::ArrayView2;

use super::incremental::{Assignment, Change, RunOutcome};

/// Fewest invoice lines in each period for an outlet to be tested at all.
pub const MIN_LINES: f64 = 5.0;
/// Fewest tested outlets for the over-dispersion to be estimated (else φ = 1).
pub const MIN_OUTLETS_FOR_DISPERSION: usize = 20;
/// Features reported as the drivers of a move.
pub const DRIVERS: usize = 3;
/// Hellinger distance between a segment's pooled earlier and recent profiles from
/// which the segment is reported as drifted.
pub const SEGMENT_DRIFT: f64 = 0.1;
/// Share of a uniform spectrum mixed into segment profiles, so a feature a segment
/// never buys is unlikely, not impossible.
const SMOOTHING: f64 = 0.01;

/// Outlets' spend and invoice lines, split into the earlier and the recent part of the
/// window: rows = outlets, columns = features; the detector tests the rows `rows`, in
/// that order (the run's outlets, read in place: no copy of the arrays).
#[derive(Debug, Clone, Copy)]
pub struct SpendHistory<'a> {
    /// Spend per feature before the recent window.
    pub earlier: ArrayView2<'a, f64>,
    /// Spend per feature in the recent window.
    pub recent: ArrayView2<'a, f64>,
    /// Invoice lines before the recent window, per outlet.
    pub earlier_lines: &'a [f64],
    /// Invoice lines in the recent window, per outlet.
    pub recent_lines: &'a [f64],
    /// The rows tested, one per entry of `current` (see [`detect`]).
    pub rows: &'a [usize],
    /// Per entry of `current`, what the detector moved the outlet with, while the rest
    /// of the window still holds what it moved away from (empty: none has one).
    pub moved_with: &'a [Option<MovedWith>],
}

/// An outlet's behaviour when the detector moved it: its recent spend shares then
/// (over the run's features) and the invoice lines behind them. After a move the
/// rest of the window still holds the behaviour the outlet left, so its change score
/// stays high until that leaves the window; a further move must also show a change
/// against this.
#[derive(Debug, Clone, PartialEq)]
pub struct MovedWith {
    /// Spend shares, one per feature.
    pub shares: Vec<f64>,
    /// Invoice lines behind them.
    pub lines: f64,
}

impl MovedWith {
    /// A stored baseline over the run's `features` (a feature it lacks has no spend;
    /// one the run lacks is left out, and the shares renormalised, as [`shares_of`]
    /// reads spend); `None` when none of its spend is on the run's features.
    pub fn over(
        baseline: &spectra_core::tables::runs::Baseline,
        features: &[String],
    ) -> Option<Self> {
        let spend: Vec<f64> = features
            .iter()
            .map(|f| baseline.spectrum.get(f).copied().unwrap_or(0.0))
            .collect();
        let shares = shares_of(ndarray::ArrayView1::from(&spend));
        shares.iter().any(|&s| s > 0.0).then_some(Self {
            shares,
            lines: baseline.lines,
        })
    }
}

/// Thresholds of the detector (the segmentation's settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// Score from which an outlet's behaviour changed significantly (`change_score`).
    pub change_score: f64,
    /// Log-likelihood ratio by which another segment must fit the recent spend better
    /// (`fit_score`).
    pub fit_score: f64,
    /// Relative KL-divergence margin, the hysteresis (`move_margin`).
    pub margin: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            change_score: 3.5,
            fit_score: 4.0,
            margin: 0.1,
        }
    }
}

/// A feature that drove a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Driver {
    /// Feature column.
    pub feature: usize,
    /// Share of the outlet's spend before the recent window.
    pub earlier_share: f64,
    /// Share in the recent window.
    pub recent_share: f64,
    /// Its part of `G / φ`.
    pub contribution: f64,
}

/// The evidence about one tested outlet.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The change score (standard normal quantile of `G / φ`).
    pub score: f64,
    /// `G / φ`.
    pub statistic: f64,
    /// Degrees of freedom.
    pub df: usize,
    /// Segment row whose recent profile fits the recent spend best (for an outlet
    /// whose score reaches `change_score`, mixed with its earlier shares: see the
    /// module's documentation).
    pub best: usize,
    /// Log-likelihood ratio (over φ) of the best segment against the current one.
    pub fit: f64,
    /// Earlier spend shares (of a move; empty for an outlet kept, so a run holds no
    /// copy of every outlet's spectrum).
    pub earlier: Vec<f64>,
    /// Recent spend shares (of a move; empty for an outlet kept).
    pub recent: Vec<f64>,
    /// Lines behind the earlier and the recent shares.
    pub lines: (f64, f64),
    /// The features contributing most to the statistic.
    pub drivers: Vec<Driver>,
}

/// What the detector decided for one outlet.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not tested: no previous segment, or too few lines in a period.
    Untested,
    /// Tested and kept in its segment.
    Keep(Evidence),
    /// Tested and moved to `Evidence::best`.
    Move(Evidence),
}

/// A segment's own drift between the earlier and the recent window.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentDrift {
    /// Segment row.
    pub segment: usize,
    /// Hellinger distance between its members' pooled earlier and recent shares.
    pub drift: f64,
    /// The same, after the drift of all outlets is taken out (what is its own).
    pub own_drift: f64,
    /// `drift ≥ SEGMENT_DRIFT`.
    pub drifted: bool,
    /// Pooled earlier shares.
    pub earlier: Vec<f64>,
    /// Pooled recent shares.
    pub recent: Vec<f64>,
}

/// The detector's outcome for a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// One decision per outlet row.
    pub decisions: Vec<Decision>,
    /// The over-dispersion φ divided out of every statistic: the median of
    /// `G / median χ²_df` over the tested outlets the first pass did not flag.
    pub dispersion: f64,
    /// Outlets tested.
    pub tested: usize,
    /// Per segment row.
    pub segments: Vec<SegmentDrift>,
}

/// The tested outlets' shares of spend (negative spend counts as 0), read from the
/// history where it lies: each made when it is read, from its row's total. At a
/// million outlets and 65 features a copy of the shares would be 0.5 GB a period.
struct Shares<'a> {
    spend: ArrayView2<'a, f64>,
    rows: &'a [usize],
    totals: Vec<f64>,
}

/// A row's positive spend, what its shares are of.
fn positive_total(row: ndarray::ArrayView1<f64>) -> f64 {
    row.iter().map(|v| v.max(0.0)).sum()
}

/// The share of spend `v` in a row whose positive spend is `total` (negative spend
/// counts as 0; a row without positive spend has no shares).
fn share(v: f64, total: f64) -> f64 {
    if total > 0.0 {
        v.max(0.0) / total
    } else {
        0.0
    }
}

/// A row's shares of spend, as the detector reads them.
pub fn shares_of(row: ndarray::ArrayView1<f64>) -> Vec<f64> {
    let total = positive_total(row);
    row.iter().map(|&v| share(v, total)).collect()
}

impl<'a> Shares<'a> {
    fn new(spend: ArrayView2<'a, f64>, rows: &'a [usize]) -> Self {
        let totals = rows.iter().map(|&i| positive_total(spend.row(i))).collect();
        Self {
            spend,
            rows,
            totals,
        }
    }

    /// Outlet `i`'s shares (all 0 when it has no positive spend).
    fn row(&self, i: usize) -> impl Iterator<Item = f64> + '_ {
        let total = self.totals[i];
        self.spend
            .row(self.rows[i])
            .into_iter()
            .map(move |&v| share(v, total))
    }

    /// Outlet `i`'s share of feature `f`.
    fn get(&self, i: usize, f: usize) -> f64 {
        self.row(i).nth(f).unwrap_or(0.0)
    }
}

fn normalise(v: &mut [f64]) {
    let t: f64 = v.iter().sum();
    if t > 0.0 {
        v.iter_mut().for_each(|x| *x /= t);
    }
}

fn hellinger(a: &[f64], b: &[f64]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
        .sum();
    (s / 2.0).sqrt()
}

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
    let k = df as f64;
    k * (1.0 - 2.0 / (9.0 * k)).powi(3)
}

/// The standard normal quantile of `x` under χ² on `df` degrees of freedom
/// (Wilson–Hilferty cube-root approximation).
pub fn chi2_score(x: f64, df: usize) -> f64 {
    let k = df as f64;
    let v = 2.0 / (9.0 * k);
    ((x.max(0.0) / k).cbrt() - (1.0 - v)) / v.sqrt()
}

/// Pooled shares (weighted by lines) of the outlets in `rows`.
fn pooled(shares: &Shares, lines: &[f64], rows: impl Iterator<Item = usize>, d: usize) -> Vec<f64> {
    let mut out = vec![0.0; d];
    for i in rows {
        if lines[i] > 0.0 {
            for (o, s) in out.iter_mut().zip(shares.row(i)) {
                *o += lines[i] * s;
            }
        }
    }
    normalise(&mut out);
    out
}

/// Tests every outlet with a current segment (`current[i]`, a row of the run's
/// model; `k` segments) and decides whether it moves.
pub fn detect(
    history: &SpendHistory<'_>,
    current: &[Option<usize>],
    k: usize,
    config: &DetectorConfig,
) -> Detection {
    let n = current.len();
    let d = history.earlier.ncols();
    assert_eq!(history.rows.len(), n, "one history row per outlet");
    assert_eq!(history.recent.dim(), history.earlier.dim(), "same shape");
    let rows = history.rows;
    let earlier = Shares::new(history.earlier, rows);
    let recent = Shares::new(history.recent, rows);
    let pick = |lines: &[f64]| -> Vec<f64> { rows.iter().map(|&i| lines[i]).collect() };
    let (ne, nr) = (pick(history.earlier_lines), pick(history.recent_lines));
    let (ne, nr) = (&ne[..], &nr[..]);
    let testable = |i: usize| {
        current[i].is_some_and(|c| c < k)
            && ne[i] >= MIN_LINES
            && nr[i] >= MIN_LINES
            && earlier.row(i).any(|v| v > 0.0)
            && recent.row(i).any(|v| v > 0.0)
    };
    struct Test {
        g: f64,
        df: usize,
        /// The [`DRIVERS`] largest terms of `g` (feature, term), largest first.
        top: Vec<(usize, f64)>,
    }
    struct Pass {
        segments: Vec<SegmentDrift>,
        /// Each segment's pooled recent shares.
        profile_r: Vec<Vec<f64>>,
        tests: Vec<Option<Test>>,
        dispersion: f64,
        /// The drift of all outlets, per feature (see [`after_market`]).
        market: Vec<f64>,
    }
    // One pass: segment profiles from the members not `excluded`, each segment's
    // drift, G per outlet and the over-dispersion.
    let pass = |excluded: &[bool]| {
        let members = |s: usize| {
            (0..n).filter(move |&i| current[i] == Some(s) && testable(i) && !excluded[i])
        };

        // Segment profiles, earlier and recent, and each segment's drift.
        let all_e = pooled(
            &earlier,
            ne,
            (0..n).filter(|&i| testable(i) && !excluded[i]),
            d,
        );
        let all_r = pooled(
            &recent,
            nr,
            (0..n).filter(|&i| testable(i) && !excluded[i]),
            d,
        );
        // What every outlet did, per feature (recent over earlier pooled shares).
        let market: Vec<f64> = all_e
            .iter()
            .zip(&all_r)
            .map(|(e, r)| ratio(*r, *e))
            .collect();
        let mut profile_r = Vec::with_capacity(k);
        let mut segments = Vec::with_capacity(k);
        for s in 0..k {
            let (mut e, mut r) = (
                pooled(&earlier, ne, members(s), d),
                pooled(&recent, nr, members(s), d),
            );
            if members(s).next().is_none() {
                (e, r) = (all_e.clone(), all_r.clone());
            }
            let drift = hellinger(&e, &r);
            let expected = after_market(e.iter().copied(), &market);
            segments.push(SegmentDrift {
                segment: s,
                drift,
                own_drift: hellinger(&expected, &r),
                drifted: drift >= SEGMENT_DRIFT,
                earlier: e.clone(),
                recent: r.clone(),
            });
            profile_r.push(r);
        }
        // G per outlet, before the over-dispersion is known.
        let tests: Vec<Option<Test>> = (0..n)
            .map(|i| {
                if !testable(i) {
                    return None;
                }
                let pi = after_market(earlier.row(i), &market);
                let (terms, support) = g_terms(&pi, ne[i], recent.row(i), nr[i]);
                (support >= 2).then(|| Test {
                    g: terms.iter().sum(),
                    df: support - 1,
                    top: largest(&terms, DRIVERS),
                })
            })
            .collect();
        let mut ratios: Vec<f64> = tests
            .iter()
            .zip(excluded)
            .filter_map(|(t, &x)| t.as_ref().filter(|_| !x))
            .map(|t| t.g / chi2_median(t.df))
            .filter(|v| v.is_finite())
            .collect();
        let dispersion = if ratios.len() >= MIN_OUTLETS_FOR_DISPERSION {
            ratios.sort_by(f64::total_cmp);
            ratios[ratios.len() / 2].max(1.0)
        } else {
            1.0
        };
        Pass {
            segments,
            profile_r,
            tests,
            dispersion,
            market,
        }
    };
    // The first pass flags the outlets that changed; the second estimates the
    // segments' drift and profiles without them, so outlets switching together do not
    // pass for a drift of their segment.
    let flagged: Vec<bool> = {
        let first = pass(&vec![false; n]);
        let phi = first.dispersion;
        first
            .tests
            .iter()
            .map(|t| {
                t.as_ref()
                    .is_some_and(|t| chi2_score(t.g / phi, t.df) >= config.change_score)
            })
            .collect()
    };
    let Pass {
        segments,
        profile_r,
        tests,
        dispersion,
        market,
    } = pass(&flagged);
    let smooth = |r: &[f64]| -> Vec<f64> {
        r.iter()
            .map(|v| (1.0 - SMOOTHING) * v + SMOOTHING / d as f64)
            .collect()
    };
    let smoothed: Vec<Vec<f64>> = profile_r.iter().map(|r| smooth(r)).collect();

    let tested = tests.iter().flatten().count();
    let decisions = tests
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let Some(t) = t else {
                return Decision::Untested;
            };
            let c = current[i].expect("tested outlets have a segment");
            let statistic = t.g / dispersion;
            let score = chi2_score(statistic, t.df);
            let p: Vec<f64> = recent.row(i).collect();
            let ll = |s: usize| -> f64 {
                p.iter()
                    .zip(&smoothed[s])
                    .map(|(p, q)| if *p > 0.0 { p * q.ln() } else { 0.0 })
                    .sum::<f64>()
                    * nr[i]
            };
            // Which segment: an outlet that changed may have changed inside the recent
            // window, which then still holds some of its old behaviour. Each segment
            // is judged by how well the outlet's own earlier spend (after the market's
            // drift) mixed with the segment's profile explains the recent spend, in
            // the mix that fits best; without it a half-switched month fits a segment
            // between the old and the new behaviour best, and the outlet moves twice.
            // Whether it moves there is still decided by that segment's own fit.
            let choice: Vec<f64> = if score >= config.change_score {
                let old = smooth(&after_market(earlier.row(i), &market));
                (0..k)
                    .map(|s| mixture_ll(&p, &old, &smoothed[s]) * nr[i])
                    .collect()
            } else {
                (0..k).map(ll).collect()
            };
            let best = (0..k)
                .max_by(|&a, &b| choice[a].total_cmp(&choice[b]).then(b.cmp(&a)))
                .unwrap_or(c);
            let fit = (ll(best) - ll(c)) / dispersion;
            let drivers = t
                .top
                .iter()
                .filter(|&&(_, term)| term > 0.0)
                .map(|&(f, term)| Driver {
                    feature: f,
                    earlier_share: earlier.get(i, f),
                    recent_share: p[f],
                    contribution: term / dispersion,
                })
                .collect();
            // KL(recent ‖ profile) = entropy-free part of −ll / lines: the guard in the
            // fit's own terms, which a sparse month does not inflate (a feature the
            // outlet did not buy adds nothing, where it adds to a Hellinger distance).
            let entropy: f64 = p
                .iter()
                .map(|&v| if v > 0.0 { v * v.ln() } else { 0.0 })
                .sum();
            let kl = |s: usize| (entropy - ll(s) / nr[i]).max(0.0);
            // KL grows as a squared distance: a margin of m on distances is (1 − m)²
            // on divergences.
            let guard = kl(best) < (1.0 - config.margin).powi(2) * kl(c);
            // Moved by the detector inside the window: changed against what it moved
            // with too, or it stays (between overlapping segments its month would
            // otherwise pick one or the other on the fit alone). Tested only for an
            // outlet that would move otherwise.
            let settled = || {
                history
                    .moved_with
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|m| {
                        let (terms, support) =
                            g_terms(&m.shares, m.lines, p.iter().copied(), nr[i]);
                        support < 2
                            || chi2_score(terms.iter().sum::<f64>() / dispersion, support - 1)
                                < config.change_score
                    })
            };
            let moves = best != c
                && score >= config.change_score
                && fit >= config.fit_score
                && guard
                && !settled();
            let evidence = Evidence {
                score,
                statistic,
                df: t.df,
                best,
                fit,
                earlier: if moves {
                    earlier.row(i).collect()
                } else {
                    Vec::new()
                },
                recent: if moves { p } else { Vec::new() },
                lines: (ne[i], nr[i]),
                drivers,
            };
            if moves {
                Decision::Move(evidence)
            } else {
                Decision::Keep(evidence)
            }
        })
        .collect();
    Detection {
        decisions,
        dispersion,
        tested,
        segments,
    }
}

/// The terms of the G test of homogeneity between shares `p` over `a` lines and shares
/// `q` over `b` lines (`2 [a p ln(p / p̄) + b q ln(q / p̄)]` per feature, `p̄` the
/// pooled shares), and the number of features either bought.
fn g_terms(p: &[f64], a: f64, q: impl IntoIterator<Item = f64>, b: f64) -> (Vec<f64>, usize) {
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

/// `max over α ∈ [0, 1] of Σ p ln(α old + (1 − α) q)`: the log-likelihood per line
/// of spend shares `p` as a mix of shares `old` and `q` (smoothed, so positive). The
/// function is concave in α: Newton steps from the middle, kept inside the bracket
/// that the derivative's sign narrows.
fn mixture_ll(p: &[f64], old: &[f64], q: &[f64]) -> f64 {
    let bought = || p.iter().zip(old.iter().zip(q)).filter(|(p, _)| **p > 0.0);
    let at = |a: f64| -> f64 {
        bought()
            .map(|(p, (o, q))| p * (a * o + (1.0 - a) * q).ln())
            .sum()
    };
    // First and second derivative in α.
    let slopes = |a: f64| -> (f64, f64) {
        bought().fold((0.0, 0.0), |(d1, d2), (p, (o, q))| {
            let (diff, mix) = (o - q, a * o + (1.0 - a) * q);
            (d1 + p * diff / mix, d2 - p * diff * diff / (mix * mix))
        })
    };
    if slopes(0.0).0 <= 0.0 {
        return at(0.0);
    }
    if slopes(1.0).0 >= 0.0 {
        return at(1.0);
    }
    let (mut lo, mut hi, mut a) = (0.0_f64, 1.0_f64, 0.5_f64);
    for _ in 0..MIX_STEPS {
        let (d1, d2) = slopes(a);
        if d1 > 0.0 {
            lo = a;
        } else {
            hi = a;
        }
        let newton = a - d1 / d2;
        let next = if d2 < 0.0 && newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if (next - a).abs() < 1e-12 {
            a = next;
            break;
        }
        a = next;
    }
    at(a)
}

/// Most steps [`mixture_ll`] takes (Newton usually needs a handful).
const MIX_STEPS: usize = 60;

/// The `count` largest of `terms` as (index, term), largest first, equal terms in
/// index order (what a stable sort, largest first, would put first).
fn largest(terms: &[f64], count: usize) -> Vec<(usize, f64)> {
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

/// Earlier shares as they would be now had they followed the market (`market`: all
/// outlets' recent over earlier share, per feature), renormalised.
fn after_market(earlier: impl IntoIterator<Item = f64>, market: &[f64]) -> Vec<f64> {
    let mut out: Vec<f64> = earlier
        .into_iter()
        .zip(market)
        .map(|(p, m)| p * m)
        .collect();
    normalise(&mut out);
    out
}

/// `recent / earlier` share of a feature, damped so a feature nearly absent in one
/// period does not blow up.
fn ratio(recent: f64, earlier: f64) -> f64 {
    const DAMP: f64 = 1e-3;
    (recent + DAMP) / (earlier + DAMP)
}

/// Replaces the distance-based decisions of a warm run by the detector's: an outlet
/// whose previous segment still exists keeps it unless the detector moves it. New
/// outlets and outlets of retired segments keep the run's nearest-centroid choice.
/// `current[i]` is the row of outlet `i`'s previous segment in `outcome`'s model.
pub fn apply(
    outcome: &mut RunOutcome,
    features: ArrayView2<f64>,
    current: &[Option<usize>],
    detection: &Detection,
) {
    let centroids = &outcome.model.centroids;
    let distance = |i: usize, s: usize| -> f64 {
        (&features.row(i) - &centroids.row(s))
            .mapv(|v| v * v)
            .sum()
            .sqrt()
    };
    let mut moved = 0;
    for (i, a) in outcome.assignments.iter_mut().enumerate() {
        let Some(c) = current[i] else {
            moved += usize::from(a.change == Change::Moved);
            continue;
        };
        let target = match &detection.decisions[i] {
            Decision::Move(e) => e.best,
            _ => c,
        };
        let own = distance(i, target);
        let other = (0..centroids.nrows())
            .filter(|&s| s != target)
            .map(|s| distance(i, s))
            .fold(f64::INFINITY, f64::min);
        *a = Assignment {
            segment: target,
            segment_id: outcome.model.segment_ids[target].clone(),
            previous_segment_id: a.previous_segment_id.clone(),
            change: if target == c {
                Change::Unchanged
            } else {
                Change::Moved
            },
            distance: own,
            confidence: if other.is_finite() && other > 0.0 {
                (1.0 - own / other).clamp(0.0, 1.0)
            } else {
                1.0
            },
        };
        moved += usize::from(target != c);
    }
    outcome.moved = moved;
}

#[cfg(test)]
mod tests;
