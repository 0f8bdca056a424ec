//! The change detector: moves an outlet whose behaviour changed, keeps one that only
//! wobbles on a segment border.
//!
//! A centroid distance cannot tell the two apart; the outlet's own history can. For
//! each outlet with a segment to start from, its spend shares in the recent window
//! (the last `recent_days`) are compared with its shares in the rest of the window by
//! a likelihood-ratio (G) test of homogeneity, with the invoice lines behind each
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
//! do not change), at least [`MIN_DISPERSION`]. It may be under 1: with hundreds of
//! features, most of them expected to hold less than a line in a period, G's spread
//! is narrower than χ² on as many degrees of freedom, and reading it as χ² would
//! leave a switch unseen (`bench/movement/RESULTS.md`, "Hundreds of features"). The
//! score is the Wilson–Hilferty normal quantile of `G / φ` on `df` degrees of
//! freedom. Multiplying the earlier shares by the drift of all outlets (their
//! pooled recent over pooled earlier shares, per feature) takes out what everyone
//! did (a season, a promotion), so the test asks whether the outlet changed
//! *against the market*. A first pass flags the outlets that changed; the
//! drift, the segments' profiles and φ are then estimated again without them.
//!
//! Two readings of what an outlet buys are tested, each as above with its own φ,
//! profiles and drift: its spend per feature, and its invoice lines per feature
//! (when the features have them). A few large lines can carry a month's spend, so
//! its spend shares may hide what the outlet now buys, which its lines show; a
//! change in how much it spends on what it still buys shows in spend only. The
//! outlet's change score is the larger of the two readings' scores corrected for
//! testing two (Šidák: `P(Z > score) = 1 − (1 − P(Z > z))²`), so two readings flag
//! no more unchanged outlets than one. The reading that would move the outlet
//! decides (of two, the better fit); its drivers carry their shares in it, and
//! name it.
//!
//! Each reading is tested twice. The G test asks whether anything changed, on as
//! many degrees of freedom as the outlet bought features; a switch to another
//! segment's mix, spread over twenty of them, scores little. Segments differ in a
//! few directions only, so the same change is also projected on the `k − 1` leading
//! principal directions of the outlets' earlier shares (see `directions.rs`) and
//! tested there, on `k − 1` degrees of freedom. That statistic's over-dispersion is
//! read in the population's tail ([`PROJECTED_TAIL`]) rather than at its median: on
//! a few directions one large line or one new feature weighs more than χ² allows.
//! The reading's score is the larger of the two, corrected for testing two (Šidák).
//! The directions come from the outlets' history only, so what the first pass flags
//! still does not depend on the assignment.
//!
//! An outlet moves only when its score reaches `change_score`, *and* another
//! segment explains its recent purchases clearly better than its own past does — a
//! Bayes factor of at least `fit_score` (natural log) between two
//! Dirichlet-multinomial models of the recent month: bought as a member of that
//! segment buys (around the segment's recent profile, with the spread of members'
//! months around it) against bought as the outlet bought before (its earlier shares
//! after the market's drift, with the spread of outlets' months around their own
//! past); both spreads are estimated from the population, as φ is (`fit.rs`) —
//! *and*, the last guard, the month's deviance from that segment is below
//! `(1 − move_margin)²` times its deviance from its own segment (the hysteresis, in
//! the fit's own terms). Otherwise it keeps its segment, however near another
//! centroid it lies.
//!
//! Which other segment: the one whose members' months explain the outlet's best;
//! for an outlet that changed, as a mix with what it bought before, in the
//! proportion that fits best — the change may lie inside the recent window, which
//! then still holds old behaviour, and a half-switched month alone fits best a
//! segment between the old behaviour and the new. The mix only names the segment;
//! the move still needs that segment's own fit.
//!
//! An outlet the detector moved keeps, while the window still reaches back before the
//! move, what it moved with ([`MovedWith`]: its recent spend shares and lines then);
//! a further move also needs its recent spend to differ from that by the same test
//! (in spend, whichever reading moved it).
//! Without it the rest of the window, still holding the behaviour it left, keeps the
//! score high for a year, and an outlet between two overlapping segments would move
//! to one or the other on the fit alone.
//!
//! An outlet without a previous segment in the run's model (a new outlet, every outlet
//! of a first run, one whose segment was retired; every outlet of a promotion's run)
//! is tested from the segment the run gave it, and placed by the same decision rather
//! than moved (see [`apply`]): a run on a window in which such outlets had already
//! changed would otherwise leave their moves to the next run, on the same data.
//!
//! With identical data a rerun reaches the same decisions, so nothing moves twice: the
//! outlets the first passes flag (in either reading) depend on their history and the
//! market only, never on the assignment, so the profiles made without them are the
//! same after a move.

use ndarray::ArrayView2;
use rayon::prelude::*;
pub use spectra_core::tables::runs::Reading;

mod apply;
mod directions;
mod fit;
mod shares;
mod stats;
pub use apply::apply;
use directions::{principal, projected, Directions};
pub use shares::shares_of;
use shares::{hellinger, normalise, pooled, Periods};
pub use stats::{
    chi2_median, chi2_quantile, chi2_score, normal_tail, normal_tail_inverse, sidak, sidak_inverse,
};
use stats::{g_terms, largest, quantile_at_least};

/// Fewest invoice lines in each period for an outlet to be tested at all. From three
/// the test's own power (the lines behind each period) decides; under three nearly
/// every feature expects less than a line, the χ² reading of G fails, and one line of
/// a new feature reads as a change. (Five left untested the outlets whose recent
/// weeks were one invoice of three or four lines, movers among them.)
pub const MIN_LINES: f64 = 3.0;
/// Fewest tested outlets for the over-dispersion to be estimated (else φ = 1).
pub const MIN_OUTLETS_FOR_DISPERSION: usize = 20;
/// Smallest over-dispersion φ the G test divides out. The population's median may
/// put it under 1 (see the module's documentation); this bounds what that may add
/// to a score, and keeps φ above zero where no outlet's shares changed at all.
/// The projected test's φ, read in the tail, stays at least 1.
pub const MIN_DISPERSION: f64 = 0.5;
/// Features reported as the drivers of a move.
pub const DRIVERS: usize = 3;
/// Hellinger distance between a segment's pooled earlier and recent profiles from
/// which the segment is reported as drifted.
pub const SEGMENT_DRIFT: f64 = 0.1;
/// The quantile of the population at which the projected test's over-dispersion is
/// measured. The G test's is measured at the median; the projected test asks its
/// question on a few degrees of freedom, where the lumpy events the G test spreads
/// over twenty (one large line, one new feature) make the tail heavier than χ²
/// says, so its scale is read in the tail, where a move is decided. On the movement
/// benchmark, measured at the median, 8 times as many unchanged outlets moved as
/// without the projected test; at 0.95, 2 times; at 0.99, as many
/// (`bench/movement/RESULTS.md`). With few outlets the quantile is near their
/// largest, which only makes the test more careful.
pub const PROJECTED_TAIL: f64 = 0.99;
/// Share of a uniform spectrum mixed into segment profiles, so a feature a segment
/// never buys is unlikely, not impossible.
const SMOOTHING: f64 = 0.01;

/// Outlets' spend and invoice lines, split into the earlier and the recent part of the
/// window: rows = outlets, columns = features; the detector tests the rows `rows`, in
/// that order (the run's outlets, read in place: no copy of the arrays).
#[derive(Debug, Clone, Copy)]
pub struct SpendHistory<'a> {
    /// Spend per feature before the recent window.
    pub earlier: ArrayView2<'a, f32>,
    /// Spend per feature in the recent window.
    pub recent: ArrayView2<'a, f32>,
    /// Invoice lines before the recent window, per outlet.
    pub earlier_lines: &'a [f64],
    /// Invoice lines in the recent window, per outlet.
    pub recent_lines: &'a [f64],
    /// Invoice lines per feature, before and in the recent window (same shape as
    /// `earlier`): the second reading, what the outlet buys counted in lines rather
    /// than weighed in spend. `None`: spend is the only reading.
    pub counts: Option<(ArrayView2<'a, f32>, ArrayView2<'a, f32>)>,
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
    /// Log Bayes factor by which another segment must explain the recent purchases
    /// better than the outlet's own past (`fit_score`).
    pub fit_score: f64,
    /// Relative margin on distances, the hysteresis (`move_margin`): the recent
    /// month's deviance from the new segment must be under `(1 − margin)²` times its
    /// deviance from its own.
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
    /// The reading its shares and contribution are of.
    pub reading: Reading,
    /// Share of the outlet's spend (or lines) before the recent window.
    pub earlier_share: f64,
    /// Share in the recent window.
    pub recent_share: f64,
    /// Its part of `G / φ` in the reading that decided.
    pub contribution: f64,
}

/// The evidence about one tested outlet.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The change score: the standard normal quantile of `G / φ` or of the projected
    /// statistic over its over-dispersion, the larger, corrected for the two tests
    /// and the readings tested.
    pub score: f64,
    /// `G / φ`.
    pub statistic: f64,
    /// Degrees of freedom.
    pub df: usize,
    /// Segment row whose members' months explain the recent purchases best (for an
    /// outlet whose score reaches `change_score`, mixed with its earlier shares: see
    /// the module's documentation), in the reading that decided: the one that would
    /// move the outlet (of two, the better fit), else the one with the higher score.
    pub best: usize,
    /// The log Bayes factor of the recent purchases as a member of `best` buys
    /// against as the outlet itself bought before (see `fit.rs`).
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
    /// Not tested: no segment to start from, or too few lines in a period.
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
    /// The same segment's drift in the lines reading (its members' pooled invoice
    /// lines per feature), when there is one. A segment whose members now buy in many
    /// small lines what a few large lines carried shows there, not in spend.
    pub in_lines: Option<Box<SegmentDrift>>,
    /// `drift ≥ SEGMENT_DRIFT` in either reading.
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
    /// `G / median χ²_df` over the tested outlets the first pass did not flag (spend),
    /// at least [`MIN_DISPERSION`].
    pub dispersion: f64,
    /// The same for the lines reading, when there is one.
    pub line_dispersion: Option<f64>,
    /// Outlets tested.
    pub tested: usize,
    /// Per segment row (in spend; the lines reading's in `in_lines`).
    pub segments: Vec<SegmentDrift>,
}

/// The G test of one outlet in one reading.
struct Test {
    g: f64,
    df: usize,
    /// The [`DRIVERS`] largest terms of `g` (feature, term), largest first.
    top: Vec<(usize, f64)>,
    /// The change along the directions segments differ in ([`projected`]): the
    /// statistic before the over-dispersion, and its degrees of freedom.
    projected: Option<(f64, usize)>,
}

/// What one pass over one reading estimates.
struct Pass {
    segments: Vec<SegmentDrift>,
    /// Each segment's pooled recent shares, as the fit reads them.
    profiles: Profiles,
    tests: Vec<Option<Test>>,
    dispersion: f64,
    /// The over-dispersion of the projected statistic.
    projected_dispersion: f64,
    /// The drift of all outlets, per feature (see [`after_market`]).
    market: Vec<f64>,
    /// How far a member's recent month lies from its segment's profile, and how far
    /// an outlet's lies from its own past (`κ`, `κ₀`: see `fit.rs`); estimated in
    /// the pass that decides only.
    spread: (f64, f64),
}

/// The outlets of a run as the detector sees them: lines per period, current
/// segments, which can be tested, and how many readings are tested.
struct Outlets<'a> {
    ne: Vec<f64>,
    nr: Vec<f64>,
    current: &'a [Option<usize>],
    testable: Vec<bool>,
    k: usize,
    d: usize,
    readings: usize,
}

impl Outlets<'_> {
    /// One reading's test as the largest of its normal scores (the G test's and the
    /// projected test's) and how many scores the outlet's change score is the
    /// largest of (those, in every reading tested).
    fn raw_score(&self, t: &Test, pass: &Pass) -> (f64, usize) {
        let omnibus = chi2_score(t.g / pass.dispersion, t.df);
        match t.projected {
            Some((p, df)) => {
                let projected = chi2_score(p / pass.projected_dispersion, df);
                (omnibus.max(projected), 2 * self.readings)
            }
            None => (omnibus, self.readings),
        }
    }

    /// The change score of one reading's test: the larger of the G test's and the
    /// projected test's scores, corrected for testing two, and for the readings
    /// (Šidák, in one: two corrections in a row are one over their product).
    fn test_score(&self, t: &Test, pass: &Pass) -> f64 {
        let (z, tests) = self.raw_score(t, pass);
        sidak(z, tests)
    }

    /// One pass over `reading`: segment profiles from the members not `excluded`,
    /// each segment's drift, G per outlet and the over-dispersion.
    fn pass<T: Copy + Into<f64> + Sync>(
        &self,
        reading: &Periods<T>,
        directions: &Directions,
        excluded: &[bool],
        decides: bool,
    ) -> Pass {
        let (n, d, k) = (self.current.len(), self.d, self.k);
        let (ne, nr) = (&self.ne[..], &self.nr[..]);
        let kept = |i: usize| self.testable[i] && !excluded[i];
        let (all_e, earlier) = pooled(&reading.earlier, ne, kept, self.current, (k, d));
        let (all_r, recent) = pooled(&reading.recent, nr, kept, self.current, (k, d));
        // What every outlet did, per feature (recent over earlier pooled shares).
        let market: Vec<f64> = all_e
            .iter()
            .zip(&all_r)
            .map(|(e, r)| ratio(*r, *e))
            .collect();
        let mut recent_profiles = Vec::with_capacity(k);
        let mut segments = Vec::with_capacity(k);
        for (s, (e, r)) in earlier.into_iter().zip(recent).enumerate() {
            let (e, r) = match (e, r) {
                (Some(e), Some(r)) => (e, r),
                _ => (all_e.clone(), all_r.clone()),
            };
            let drift = hellinger(&e, &r);
            let expected = after_market(e.iter().copied(), &market);
            segments.push(SegmentDrift {
                segment: s,
                drift,
                own_drift: hellinger(&expected, &r),
                in_lines: None,
                drifted: drift >= SEGMENT_DRIFT,
                earlier: e,
                recent: r.clone(),
            });
            recent_profiles.push(r);
        }
        // G per outlet, before the over-dispersion is known.
        let tests: Vec<Option<Test>> = (0..n)
            .into_par_iter()
            .map(|i| {
                if !self.testable[i] {
                    return None;
                }
                let pi = after_market(reading.earlier.row(i), &market);
                let p: Vec<f64> = reading.recent.row(i).collect();
                let (terms, support) = g_terms(&pi, ne[i], p.iter().copied(), nr[i]);
                (support >= 2).then(|| Test {
                    g: terms.iter().sum(),
                    df: support - 1,
                    top: largest(&terms, DRIVERS),
                    projected: projected(&pi, ne[i], &p, nr[i], directions),
                })
            })
            .collect();
        // The over-dispersions, from the outlets not excluded: G's at the median, the
        // projected statistic's in the tail.
        let included = || {
            tests
                .iter()
                .zip(excluded)
                .filter_map(|(t, &x)| t.as_ref().filter(|_| !x))
        };
        let dispersion = quantile_at_least(
            included().map(|t| t.g / chi2_median(t.df)).collect(),
            0.5,
            MIN_DISPERSION,
        );
        let projected_dispersion = quantile_at_least(
            included()
                .filter_map(|t| t.projected)
                .map(|(t, df)| t / chi2_quantile(df, PROJECTED_TAIL))
                .collect(),
            PROJECTED_TAIL,
            1.0,
        );
        let profiles = Profiles::of(&recent_profiles, d);
        let spread = if decides {
            let included = (0..n).filter(|&i| tests[i].is_some() && !excluded[i]);
            self.spread(reading, &profiles, &market, included)
        } else {
            (fit::KAPPA_MAX, fit::KAPPA_MAX)
        };
        Pass {
            segments,
            profiles,
            tests,
            dispersion,
            projected_dispersion,
            market,
            spread,
        }
    }

    /// `κ` and `κ₀` (see `fit.rs`) from a sample of the `included` outlets' recent
    /// purchases: around their segment's profile, and around their own past.
    fn spread<T: Copy + Into<f64> + Sync>(
        &self,
        reading: &Periods<T>,
        profiles: &Profiles,
        market: &[f64],
        included: impl Iterator<Item = usize> + Clone,
    ) -> (f64, f64) {
        let rows: Vec<usize> = fit::sample(included).collect();
        let segment_of = |i: usize| self.current[i].expect("tested outlets have a segment");
        let x = |i: usize| fit::counts(reading.recent.row(i), self.nr[i]);
        let around_segment: Vec<fit::Month> = rows
            .par_iter()
            .map(|&i| fit::month(&x(i), &profiles.smoothed[segment_of(i)]))
            .collect();
        let kappa = fit::spread(&around_segment);
        let around_own: Vec<fit::Month> = rows
            .par_iter()
            .map(|&i| {
                let own = self.own(reading, market, &profiles.smoothed[segment_of(i)], kappa, i);
                fit::month(&x(i), &own)
            })
            .collect();
        (kappa, fit::spread(&around_own))
    }

    /// What outlet `i` would buy had it not changed: its earlier shares after the
    /// market's drift, with its segment's profile `segment` as a prior (`fit::own`).
    fn own<T: Copy + Into<f64>>(
        &self,
        reading: &Periods<T>,
        market: &[f64],
        segment: &[f64],
        kappa: f64,
        i: usize,
    ) -> Vec<f64> {
        let earlier = after_market(reading.earlier.row(i), market);
        fit::own(&earlier, self.ne[i], segment, kappa)
    }

    /// The outlets `pass` finds changed (for the next pass to leave out).
    fn changed(&self, pass: &Pass, flagged: &mut [bool], config: &DetectorConfig) {
        // The raw score each number of tests needs (no Šidák correction per outlet).
        let bar = |tests: usize| sidak_inverse(config.change_score, tests);
        let bars = [bar(self.readings), bar(2 * self.readings)];
        for (f, t) in flagged.iter_mut().zip(&pass.tests) {
            *f |= t.as_ref().is_some_and(|t| {
                let (z, tests) = self.raw_score(t, pass);
                z >= bars[usize::from(tests > self.readings)]
            });
        }
    }

    /// Outlet `i`'s evidence in one reading (`pass` its second pass), and whether
    /// that reading alone would move it (the baseline aside).
    fn judge<T: Copy + Into<f64>>(
        &self,
        reading: &Periods<T>,
        pass: &Pass,
        i: usize,
        config: &DetectorConfig,
    ) -> Option<(Evidence, bool)> {
        let t = pass.tests[i].as_ref()?;
        let k = self.k;
        let c = self.current[i].expect("tested outlets have a segment");
        let (dispersion, nr) = (pass.dispersion, self.nr[i]);
        let profiles = &pass.profiles;
        let statistic = t.g / dispersion;
        let score = self.test_score(t, pass);
        let p: Vec<f64> = reading.recent.row(i).collect();
        let (kappa, kappa_own) = pass.spread;
        // The recent purchases as (pseudo-)counts, and their log-likelihood as a month
        // of a member of each segment (a Dirichlet-multinomial around its recent
        // profile: see `fit.rs`).
        let x = fit::counts(p.iter().copied(), nr);
        let member: Vec<f64> = (0..k)
            .map(|s| fit::log_dm(&x, &profiles.smoothed[s], kappa))
            .collect();
        // What the outlet would buy had it not changed.
        let own = self.own(reading, &pass.market, &profiles.smoothed[c], kappa, i);
        // Which segment: the one whose members' months explain this one best. For an
        // outlet that changed, as a mix with what it bought before, in the proportion
        // that fits best: the change may lie inside the recent window, which then
        // still holds some of the old behaviour, and a half-switched month alone fits
        // best a segment between the old behaviour and the new one; the mix names the
        // new one. The mix only names the segment; the fit is that segment's own.
        let mixed: Vec<f64>;
        let choice = if score >= config.change_score {
            mixed = (0..k)
                .map(|s| fit::mixed(&x, &own, &profiles.smoothed[s], kappa))
                .collect();
            &mixed
        } else {
            &member
        };
        let best = (0..k)
            .max_by(|&a, &b| choice[a].total_cmp(&choice[b]).then(b.cmp(&a)))
            .unwrap_or(c);
        // Step 2: the Bayes factor of the month as a member of `best` buys against as
        // the outlet itself bought before.
        let fit = member[best] - fit::log_dm(&x, &own, kappa_own);
        let drivers = t
            .top
            .iter()
            .filter(|&&(_, term)| term > 0.0)
            .map(|&(f, term)| Driver {
                feature: f,
                reading: reading.which,
                earlier_share: reading.earlier.get(i, f),
                recent_share: p[f],
                contribution: term / dispersion,
            })
            .collect();
        // Step 3, the hysteresis: the month's deviance from `best` (its log-likelihood
        // short of the one its own shares give it) under (1 − m)² times its deviance
        // from its own segment. Without spread (κ → ∞) a deviance is
        // `lines × KL(recent ‖ profile)`, which grows as a squared distance: a margin
        // of m on distances is (1 − m)² on it. The spread makes the guard as lenient
        // with a sparse month as the fit is.
        let saturated = fit::log_dm(&x, &p, kappa);
        let deviance = |s: usize| (saturated - member[s]).max(0.0);
        let guard = deviance(best) < (1.0 - config.margin).powi(2) * deviance(c);
        let moves = best != c && score >= config.change_score && fit >= config.fit_score && guard;
        let evidence = Evidence {
            score,
            statistic,
            df: t.df,
            best,
            fit,
            earlier: Vec::new(),
            recent: Vec::new(),
            lines: (self.ne[i], nr),
            drivers,
        };
        Some((evidence, moves))
    }
}

/// The segments' recent profiles as the fit reads them ([`smooth`]).
struct Profiles {
    smoothed: Vec<Vec<f64>>,
}

impl Profiles {
    fn of(recent: &[Vec<f64>], d: usize) -> Self {
        Self {
            smoothed: recent.iter().map(|r| smooth(r, d)).collect(),
        }
    }
}

/// Segment profiles as the fit reads them: a share of a uniform spectrum mixed in.
fn smooth(r: &[f64], d: usize) -> Vec<f64> {
    r.iter()
        .map(|v| (1.0 - SMOOTHING) * v + SMOOTHING / d as f64)
        .collect()
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
    let spend = Periods::new(Reading::Spend, (history.earlier, history.recent), rows);
    // Lines per feature are a second reading where there are any.
    let counts = history
        .counts
        .filter(|(e, r)| e.iter().chain(r.iter()).any(|&v| v > 0.0))
        .map(|(e, r)| {
            assert_eq!(
                (e.dim(), r.dim()),
                (history.earlier.dim(), history.recent.dim())
            );
            Periods::new(Reading::Lines, (e, r), rows)
        });
    let pick = |lines: &[f64]| -> Vec<f64> { rows.iter().map(|&i| lines[i]).collect() };
    let (ne, nr) = (pick(history.earlier_lines), pick(history.recent_lines));
    let testable = (0..n)
        .map(|i| {
            current[i].is_some_and(|c| c < k)
                && ne[i] >= MIN_LINES
                && nr[i] >= MIN_LINES
                && spend.earlier.row(i).any(|v| v > 0.0)
                && spend.recent.row(i).any(|v| v > 0.0)
        })
        .collect();
    let outlets = Outlets {
        ne,
        nr,
        current,
        testable,
        k,
        d,
        readings: 1 + usize::from(counts.is_some()),
    };
    // The directions segments differ in, from each reading's earlier shares (of every
    // testable outlet: the same in both passes, whatever the assignment).
    let m = k.saturating_sub(1);
    let spend_directions = principal(&spend.earlier, &outlets.ne, &outlets.testable, (m, d));
    let line_directions = counts
        .as_ref()
        .map(|c| principal(&c.earlier, &outlets.ne, &outlets.testable, (m, d)))
        .unwrap_or_default();
    // The first pass flags the outlets that changed in either reading; the second
    // estimates the segments' drift and profiles without them, so outlets switching
    // together do not pass for a drift of their segment.
    let (none, mut flagged) = (vec![false; n], vec![false; n]);
    outlets.changed(
        &outlets.pass(&spend, &spend_directions, &none, false),
        &mut flagged,
        config,
    );
    if let Some(c) = &counts {
        outlets.changed(
            &outlets.pass(c, &line_directions, &none, false),
            &mut flagged,
            config,
        );
    }
    let by_spend = outlets.pass(&spend, &spend_directions, &flagged, true);
    let by_lines = counts
        .as_ref()
        .map(|c| (c, outlets.pass(c, &line_directions, &flagged, true)));

    let tested = by_spend.tests.iter().flatten().count();
    let decisions = (0..n)
        .into_par_iter()
        .map(|i| {
            let Some(by_spend_i) = outlets.judge(&spend, &by_spend, i, config) else {
                return Decision::Untested;
            };
            let by_lines_i = by_lines
                .as_ref()
                .and_then(|(c, pass)| outlets.judge(c, pass, i, config));
            // The reading that decides: one that would move the outlet (the better
            // fit of two), else the one with the higher score.
            let rank = |(e, moves): &(Evidence, bool)| {
                if *moves {
                    (true, e.fit)
                } else {
                    (false, e.score)
                }
            };
            let (mut evidence, moves) = match by_lines_i {
                Some(l) if rank(&l) > rank(&by_spend_i) => l,
                _ => by_spend_i,
            };
            if !moves {
                return Decision::Keep(evidence);
            }
            let p: Vec<f64> = spend.recent.row(i).collect();
            // Moved by the detector inside the window: changed against what it moved
            // with too, or it stays (between overlapping segments its month would
            // otherwise pick one or the other on the fit alone). Tested only for an
            // outlet that would move otherwise.
            let settled = history
                .moved_with
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|m| {
                    let (terms, support) =
                        g_terms(&m.shares, m.lines, p.iter().copied(), outlets.nr[i]);
                    support < 2
                        || chi2_score(terms.iter().sum::<f64>() / by_spend.dispersion, support - 1)
                            < config.change_score
                });
            if settled {
                Decision::Keep(evidence)
            } else {
                evidence.earlier = spend.earlier.row(i).collect();
                evidence.recent = p;
                Decision::Move(evidence)
            }
        })
        .collect();
    let line_dispersion = by_lines.as_ref().map(|(_, p)| p.dispersion);
    let mut segments = by_spend.segments;
    if let Some((_, lines)) = by_lines {
        for (s, l) in segments.iter_mut().zip(lines.segments) {
            s.drifted |= l.drifted;
            s.in_lines = Some(Box::new(l));
        }
    }
    Detection {
        decisions,
        dispersion: by_spend.dispersion,
        line_dispersion,
        tested,
        segments,
    }
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

#[cfg(test)]
mod tests;
