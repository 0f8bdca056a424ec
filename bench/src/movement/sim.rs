//! A planted feed at the level the segmenter reads: outlets of planted segments buy
//! categories on random days (with seasonality, varying order frequency, line values
//! and returns, as `spectra generate` does); from a drift day on, a share of outlets
//! buys like another segment. Kept as per-outlet prefix sums over days, so the
//! features of any as-of date — window, recent window, half-life weighting — are cut
//! out in O(outlets × features).

use chrono::NaiveDate;
use ndarray::Array2;
use rand::distributions::{Distribution, WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_distr::{Dirichlet, Gamma, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;
use spectra_segmenter::features::{FeatureSet, History, Kpis, OutletRecord};

/// Categories of the planted feed and the day of year of their seasonal peak.
const CATEGORIES: &[(&str, Option<u32>)] = &[
    ("coffee", None),
    ("tea", Some(20)),
    ("dairy", None),
    ("snacks", None),
    ("beverages", Some(200)),
    ("confectionery", Some(350)),
    ("household", None),
    ("personal-care", None),
    ("beer", Some(190)),
    ("ice-cream", Some(195)),
];
/// SKUs per category (prices and popularity differ within a category).
const SKUS_PER_CATEGORY: usize = 16;

/// The knobs of a planted feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Seed of every random choice.
    pub seed: u64,
    /// Outlets.
    pub outlets: usize,
    /// Planted segments.
    pub segments: usize,
    /// Concentration of an outlet's spectrum around its segment's (Dirichlet
    /// `concentration × segment spectrum`): lower overlaps harder.
    pub concentration: f64,
    /// Share of outlets that switch to another segment's behaviour.
    pub movers: f64,
    /// Weeks of new behaviour before the last run.
    pub weeks: u32,
    /// Coefficient of variation of order frequency, between outlets and week to week
    /// (0 = every outlet orders `visits_per_week` on average, independently by day).
    pub frequency_cv: f64,
    /// Mean invoices per outlet per week.
    pub visits_per_week: f64,
    /// Days of history before the drift begins (the feature window is at most this).
    pub history_days: u32,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            seed: 1,
            outlets: 1500,
            segments: 6,
            concentration: 4.0,
            movers: 0.05,
            weeks: 4,
            frequency_cv: 0.5,
            visits_per_week: 1.5,
            history_days: 365,
        }
    }
}

/// The simulated feed: per outlet, prefix sums over days of spend, lines and invoices
/// per category, and the planted truth.
pub struct Simulation {
    /// The knobs.
    pub scenario: Scenario,
    /// Planted segment of each outlet before the drift.
    pub truth: Vec<usize>,
    /// The segment a mover switches to.
    pub target: Vec<Option<usize>>,
    /// Each outlet's own planted spectrum before the drift (season aside).
    pub spectrum_before: Vec<Vec<f64>>,
    /// A mover's planted spectrum after it.
    pub spectrum_after: Vec<Option<Vec<f64>>>,
    /// Each planted segment's spectrum (an outlet's is drawn around its segment's).
    pub segment_spectra: Vec<Vec<f64>>,
    /// `season[d][f]`: how much category `f` sells on day `d` against its year.
    pub season: Vec<Vec<f64>>,
    /// First day (index) of the new behaviour.
    pub drift_day: u32,
    /// Days simulated.
    pub days: u32,
    /// `value[o][(d + 1) * F + f]`: spend of outlet `o` on category `f` in days `0..=d`.
    value: Vec<Vec<f64>>,
    /// Same for `value × 2^(d / 28)` (half-life weighting by differences).
    weighted: Vec<Vec<f64>>,
    /// Same for lines.
    lines: Vec<Vec<f64>>,
    /// `invoices[o][d + 1]`: invoices of outlet `o` in days `0..=d`.
    invoices: Vec<Vec<f64>>,
}

/// Half-life of the weighted prefix sums (the half-life alternative), days.
pub const HALF_LIFE: f64 = 28.0;

/// The Dirichlet parameters an outlet's spectrum is drawn with around its segment's.
pub fn outlet_alpha(segment: &[f64], concentration: f64) -> Vec<f64> {
    segment
        .iter()
        .map(|p| (p * concentration).max(0.05))
        .collect()
}

fn gamma_unit(cv: f64, rng: &mut Xoshiro256PlusPlus) -> f64 {
    if cv <= 0.0 {
        return 1.0;
    }
    let shape = 1.0 / (cv * cv);
    Gamma::new(shape, 1.0 / shape)
        .expect("valid gamma")
        .sample(rng)
}

impl Simulation {
    /// Simulates `scenario`: `history_days` before the drift and `weeks` after it.
    pub fn new(scenario: Scenario) -> Self {
        let s = &scenario;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(s.seed);
        let nc = CATEGORIES.len();
        // Each planted segment leans on three categories, as `spectra generate` plants.
        let spectra: Vec<Vec<f64>> = (0..s.segments)
            .map(|seg| {
                let mut alpha = vec![0.3; nc];
                for j in 0..3 {
                    alpha[(seg * 3 + j * 2 + seg / nc) % nc] = 4.0 - j as f64;
                }
                Dirichlet::new(&alpha).expect("alpha").sample(&mut rng)
            })
            .collect();
        let draw = |seg: usize, rng: &mut Xoshiro256PlusPlus| -> Vec<f64> {
            Dirichlet::new(&outlet_alpha(&spectra[seg], s.concentration))
                .expect("alpha")
                .sample(rng)
        };
        let prices: Vec<Vec<f64>> = (0..nc)
            .map(|_| {
                (0..SKUS_PER_CATEGORY)
                    .map(|_| rng.gen_range(1.5..40.0))
                    .collect()
            })
            .collect();
        let popularity = WeightedIndex::new((0..SKUS_PER_CATEGORY).map(|i| 1.0 / (1.0 + i as f64)))
            .expect("weights");
        let truth: Vec<usize> = (0..s.outlets).map(|i| i % s.segments).collect();
        let target: Vec<Option<usize>> = truth
            .iter()
            .map(|&t| {
                rng.gen_bool(s.movers)
                    .then(|| (t + 1 + rng.gen_range(0..s.segments - 1)) % s.segments)
            })
            .collect();
        let drift_day = s.history_days;
        let days = s.history_days + 7 * s.weeks;
        let start = NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
        let season: Vec<Vec<f64>> = (0..days)
            .map(|d| {
                let doy = f64::from(chrono::Datelike::ordinal(
                    &(start + chrono::Days::new(u64::from(d))),
                ));
                CATEGORIES
                    .iter()
                    .map(|(_, peak)| match peak {
                        Some(p) => {
                            let x = (doy - f64::from(*p)).abs();
                            let x = x.min(365.0 - x);
                            0.4 + 1.2 * (-(x / 30.0).powi(2)).exp()
                        }
                        None => 1.0,
                    })
                    .collect()
            })
            .collect();
        let width = (days as usize + 1) * nc;
        let mut sim = Simulation {
            scenario: scenario.clone(),
            truth,
            target,
            spectrum_before: Vec::with_capacity(s.outlets),
            spectrum_after: Vec::with_capacity(s.outlets),
            segment_spectra: spectra.clone(),
            season: season.clone(),
            drift_day,
            days,
            value: Vec::with_capacity(s.outlets),
            weighted: Vec::with_capacity(s.outlets),
            lines: Vec::with_capacity(s.outlets),
            invoices: Vec::with_capacity(s.outlets),
        };
        for o in 0..s.outlets {
            let before = draw(sim.truth[o], &mut rng);
            let after = sim.target[o].map(|t| draw(t, &mut rng));
            let size: f64 = rng.gen_range(0.5..2.0);
            let rate = s.visits_per_week * gamma_unit(s.frequency_cv, &mut rng);
            let (mut value, mut weighted, mut lines) =
                (vec![0.0; width], vec![0.0; width], vec![0.0; width]);
            let mut invoices = vec![0.0; days as usize + 1];
            let mut week_rate = rate;
            for d in 0..days as usize {
                let (now, prev) = ((d + 1) * nc, d * nc);
                for f in 0..nc {
                    value[now + f] = value[prev + f];
                    weighted[now + f] = weighted[prev + f];
                    lines[now + f] = lines[prev + f];
                }
                invoices[d + 1] = invoices[d];
                if d % 7 == 0 {
                    week_rate = rate * gamma_unit(s.frequency_cv, &mut rng);
                }
                if !rng.gen_bool((week_rate / 7.0).min(1.0)) {
                    continue;
                }
                invoices[d + 1] += 1.0;
                let spectrum = match &after {
                    Some(a) if d as u32 >= drift_day => a,
                    _ => &before,
                };
                let w: Vec<f64> = spectrum
                    .iter()
                    .zip(&season[d])
                    .map(|(a, b)| a * b + 1e-9)
                    .collect();
                let cats = WeightedIndex::new(&w).expect("weights");
                let boost = 2f64.powf(d as f64 / HALF_LIFE);
                for _ in 0..rng.gen_range(3..=10) {
                    let c = cats.sample(&mut rng);
                    let price = prices[c][popularity.sample(&mut rng)];
                    let mut qty = Poisson::new(4.0 * size)
                        .expect("mean")
                        .sample(&mut rng)
                        .max(1.0);
                    if rng.gen_bool(0.02) {
                        qty = -qty.min(3.0);
                    }
                    let v = qty * price;
                    value[now + c] += v;
                    weighted[now + c] += v * boost;
                    lines[now + c] += 1.0;
                }
            }
            sim.spectrum_before.push(before);
            sim.spectrum_after.push(after);
            sim.value.push(value);
            sim.weighted.push(weighted);
            sim.lines.push(lines);
            sim.invoices.push(invoices);
        }
        sim
    }

    /// Category names (the features).
    pub fn categories() -> Vec<String> {
        CATEGORIES.iter().map(|c| c.0.to_owned()).collect()
    }

    /// Sum over days `from..=to` of a prefix-summed series, per category.
    fn span(series: &[f64], from: u32, to: u32, f: usize) -> f64 {
        let nc = CATEGORIES.len();
        series[(to as usize + 1) * nc + f] - series[from as usize * nc + f]
    }

    /// Invoice lines of outlet `o` per category on day `d`.
    pub fn lines_on(&self, o: usize, d: u32) -> Vec<f64> {
        (0..CATEGORIES.len())
            .map(|f| Self::span(&self.lines[o], d, d, f))
            .collect()
    }

    /// Invoice lines of outlet `o` in the `days` days up to day `as_of`.
    pub fn lines_before(&self, o: usize, as_of: u32, days: u32) -> f64 {
        let from = (as_of + 1).saturating_sub(days);
        (0..CATEGORIES.len())
            .map(|f| Self::span(&self.lines[o], from, as_of, f))
            .sum()
    }

    /// The features the aggregator would write at day `as_of` for a `window_days`
    /// window with the last `recent_days` as the recent window; `half_life` weights
    /// `spend` by recency (28 days, the only one simulated).
    pub fn features(
        &self,
        as_of: u32,
        window_days: u32,
        recent_days: u32,
        half_life: bool,
    ) -> FeatureSet {
        let nc = CATEGORIES.len();
        let n = self.truth.len();
        let from = (as_of + 1).saturating_sub(window_days);
        let recent_from = (as_of + 1).saturating_sub(recent_days).max(from);
        let mut spend = Array2::zeros((n, nc));
        let mut history = History {
            earlier: Array2::zeros((n, nc)),
            recent: Array2::zeros((n, nc)),
            earlier_lines: vec![0.0; n],
            recent_lines: vec![0.0; n],
            earlier_counts: Array2::zeros((n, nc)),
            recent_counts: Array2::zeros((n, nc)),
            recent_invoices: vec![0.0; n],
        };
        let mut outlets = Vec::with_capacity(n);
        let scale = 2f64.powf(-(as_of as f64) / HALF_LIFE);
        for o in 0..n {
            let (mut total, mut lines, mut bought) = (0.0, 0.0, 0.0);
            for f in 0..nc {
                let raw = Self::span(&self.value[o], from, as_of, f);
                let recent = Self::span(&self.value[o], recent_from, as_of, f);
                let l = Self::span(&self.lines[o], from, as_of, f);
                let rl = Self::span(&self.lines[o], recent_from, as_of, f);
                spend[[o, f]] = if half_life {
                    Self::span(&self.weighted[o], from, as_of, f) * scale
                } else {
                    raw
                };
                history.earlier[[o, f]] = (raw - recent) as f32;
                history.recent[[o, f]] = recent as f32;
                history.earlier_counts[[o, f]] = (l - rl) as f32;
                history.recent_counts[[o, f]] = rl as f32;
                history.earlier_lines[o] += l - rl;
                history.recent_lines[o] += rl;
                total += raw;
                lines += l;
                bought += f64::from(u8::from(l > 0.0));
            }
            let inv = &self.invoices[o];
            let invoices = inv[as_of as usize + 1] - inv[from as usize];
            history.recent_invoices[o] = inv[as_of as usize + 1] - inv[recent_from as usize];
            outlets.push(OutletRecord {
                outlet_id: format!("O{o:05}"),
                kpis: Kpis {
                    net_value: total,
                    lines,
                    invoices,
                    invoices_per_month: invoices / (f64::from(window_days) / 30.4375),
                    avg_invoice_value: if invoices > 0.0 {
                        total / invoices
                    } else {
                        0.0
                    },
                    distinct_skus: bought,
                },
                ..Default::default()
            });
        }
        FeatureSet {
            as_of: NaiveDate::from_ymd_opt(2025, 1, 1).expect("date")
                + chrono::Days::new(u64::from(as_of)),
            features: Self::categories(),
            outlets,
            spend,
            skus: Vec::new(),
            sku_spend: vec![Vec::new(); n],
            history: Some(history),
        }
    }
}
