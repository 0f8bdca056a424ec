//! The movement benchmark: planted drift with hard overlap, run day by day through
//! Spectra's run computation (`pipeline::compute`, the code path of `spectra
//! segment`, change detector included) and through plain alternatives, scored against
//! the planted truth.
//!
//! Every method starts from a cold run at the day before the drift and then runs once
//! per `cadence` days until `weeks` of new behaviour are in. Scores: recall (planted
//! movers whose segment changed); the movers whose new behaviour belongs to another
//! segment (the first-run segment of most of the 15 non-movers whose planted spectra
//! are nearest to the mover's new one), the share of those that moved and the share
//! now in that segment, and of those the share that moved among the ones within reach
//! (at least `MIN_LINES` invoice lines in the last run's recent window); kept
//! (non-movers in the segment they started in) and published (assignment changes over
//! all runs, per mover).

pub mod ceiling;
pub mod sim;

use std::collections::HashMap;

use ndarray::Array2;
use serde_json::json;
use spectra_core::config::SegmentationConfig;
use spectra_segmenter::cluster::metrics::adjusted_rand_index;
use spectra_segmenter::cluster::movement::MIN_LINES;
use spectra_segmenter::cluster::transform::{spectrum_features, SpectrumTransform};
use spectra_segmenter::cluster::{nearest, run, Previous, RunConfig, SegmentModel};
use spectra_segmenter::features::FeatureSet;
use spectra_segmenter::pipeline::{compute, PreviousRun, RunOutput};

pub use sim::{Scenario, Simulation};

/// Days in the feature window (as in the issue: a year, no half-life).
pub const WINDOW_DAYS: u32 = 365;
/// The detector's recent window.
pub const RECENT_DAYS: u32 = 28;

/// The methods compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// Spectra: warm re-fit, change detector, hysteresis as the last guard.
    Spectra,
    /// Spectra before the detector: warm re-fit with hysteresis (`move_margin` 0.1).
    Hysteresis,
    /// Plain: every outlet to the nearest centroid of the first run.
    NearestPrevious,
    /// Plain k-means warm-started from the previous run, nearest centroid.
    WarmRefit,
    /// The same on features weighted with a 28-day half-life.
    HalfLife,
    /// Not a method: the most movers any reader of the purchases could move within
    /// the bounds, knowing the planted spectra ([`ceiling`]).
    Ceiling,
}

impl Method {
    /// The methods that run, in table order.
    pub const RUN: [Method; 5] = [
        Method::Spectra,
        Method::Hysteresis,
        Method::NearestPrevious,
        Method::WarmRefit,
        Method::HalfLife,
    ];

    /// Every row of the table: the methods, then the ceiling.
    pub const ALL: [Method; 6] = [
        Method::Spectra,
        Method::Hysteresis,
        Method::NearestPrevious,
        Method::WarmRefit,
        Method::HalfLife,
        Method::Ceiling,
    ];

    /// Name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Method::Spectra => "spectra (detector)",
            Method::Hysteresis => "spectra before (hysteresis only)",
            Method::NearestPrevious => "nearest previous centroid",
            Method::WarmRefit => "warm re-fit",
            Method::HalfLife => "re-fit, 28-day half-life",
            Method::Ceiling => "ceiling (knows the planted spectra)",
        }
    }
}

/// Scores of one method on one simulation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Score {
    /// Planted movers.
    pub movers: usize,
    /// Movers whose segment changed.
    pub recall: f64,
    /// Movers whose new behaviour belongs to another segment than their first one
    /// (outlets that buy as they now do are mostly elsewhere).
    pub should_move: usize,
    /// Of those, the share whose segment changed.
    pub recall_should: f64,
    /// Of those, the share now in that segment.
    pub right: f64,
    /// Of those, the ones within reach of any reader of the purchases: at least
    /// [`MIN_LINES`] invoice lines in the recent window of the last run (a mover that
    /// bought nothing since it switched shows no new behaviour).
    pub reachable: usize,
    /// Of those, the share whose segment changed.
    pub recall_reachable: f64,
    /// Non-movers in the segment they started in.
    pub kept: f64,
    /// Assignment changes published over all runs.
    pub published: usize,
}

/// The segmentation Spectra runs (`recent_days` 0 = before the detector).
pub fn segmentation(k: usize, recent_days: u32) -> SegmentationConfig {
    let mut seg: SegmentationConfig = serde_json::from_value(json!({
        "name": "bench", "level": "category", "window_days": WINDOW_DAYS, "k": k,
        "min_value": 0.0, "move_margin": 0.1, "recent_days": recent_days, "seed": 42,
    }))
    .expect("a valid segmentation");
    // For exploring the thresholds; the published table uses the defaults.
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
    if let Some(v) = env("SPECTRA_BENCH_CHANGE_SCORE") {
        seg.change_score = v;
    }
    if let Some(v) = env("SPECTRA_BENCH_FIT_SCORE") {
        seg.fit_score = v;
    }
    if let Some(v) = env("SPECTRA_BENCH_MOVE_MARGIN") {
        seg.move_margin = v;
    }
    seg
}

fn previous_of(out: &RunOutput) -> PreviousRun {
    PreviousRun::from_output(out)
}

/// A chain of runs of one method.
enum Chain {
    Pipeline {
        seg: Box<SegmentationConfig>,
        previous: Option<Box<PreviousRun>>,
    },
    Core {
        half_life: bool,
        margin: f64,
        model: Option<SegmentModel>,
    },
    Nearest {
        centroids: Option<Array2<f64>>,
    },
}

fn hellinger_features(fs: &FeatureSet) -> Array2<f64> {
    spectrum_features(fs.spend.view(), None, &SpectrumTransform::default())
}

impl Chain {
    fn new(method: Method, k: usize) -> Self {
        match method {
            Method::Spectra => Chain::Pipeline {
                seg: Box::new(segmentation(k, RECENT_DAYS)),
                previous: None,
            },
            Method::Hysteresis => Chain::Pipeline {
                seg: Box::new(segmentation(k, 0)),
                previous: None,
            },
            Method::NearestPrevious => Chain::Nearest { centroids: None },
            Method::WarmRefit => Chain::Core {
                half_life: false,
                margin: 0.0,
                model: None,
            },
            Method::HalfLife => Chain::Core {
                half_life: true,
                margin: 0.0,
                model: None,
            },
            Method::Ceiling => unreachable!("the ceiling is not a chain of runs"),
        }
    }

    /// One run; returns each outlet's segment id.
    fn step(
        &mut self,
        fs: &FeatureSet,
        fs_half_life: &FeatureSet,
        k: usize,
        before: &[String],
    ) -> Vec<String> {
        match self {
            Chain::Pipeline { seg, previous } => {
                let run_id = format!("bench/{}/1", fs.as_of);
                let out = compute(seg, fs, previous.as_deref(), &run_id).expect("a run");
                let mut ids: HashMap<&str, &str> = HashMap::new();
                for a in &out.assignments {
                    ids.insert(&a.outlet_id, &a.segment_id);
                }
                let labels = fs
                    .outlets
                    .iter()
                    .map(|o| ids.get(o.outlet_id.as_str()).map_or("-", |s| s).to_owned())
                    .collect();
                if std::env::var("SPECTRA_BENCH_DEBUG").is_ok() {
                    debug_detector(seg, fs, previous.as_deref(), &out);
                }
                *previous = Some(Box::new(previous_of(&out)));
                labels
            }
            Chain::Core {
                half_life,
                margin,
                model,
            } => {
                let x = hellinger_features(if *half_life { fs_half_life } else { fs });
                let mut config = RunConfig {
                    hysteresis_margin: *margin,
                    ..RunConfig::default()
                };
                config.kmeans.k = k;
                config.kmeans.seed = 42;
                let assignment: Vec<Option<String>> =
                    before.iter().map(|b| Some(b.clone())).collect();
                let prev = model.as_ref().map(|m| Previous {
                    model: m,
                    assignment: &assignment,
                });
                let out = run(x.view(), None, prev, &config).expect("a run");
                *model = Some(out.model);
                out.assignments.into_iter().map(|a| a.segment_id).collect()
            }
            Chain::Nearest { centroids } => {
                let x = hellinger_features(fs);
                let c = centroids.get_or_insert_with(|| {
                    let mut config = RunConfig::default();
                    config.kmeans.k = k;
                    config.kmeans.seed = 42;
                    run(x.view(), None, None, &config)
                        .expect("a run")
                        .model
                        .centroids
                });
                nearest(x.view(), c.view())
                    .expect("nearest")
                    .labels()
                    .into_iter()
                    .map(|l| format!("S{}", l + 1))
                    .collect()
            }
        }
    }
}

/// Runs every method over `sim`, one run per `cadence` days; returns the agreement of
/// Spectra's first run with the planted truth (ARI) and each method's scores.
pub fn evaluate(sim: &Simulation, cadence: u32) -> (f64, Vec<(Method, Score)>) {
    let k = sim.scenario.segments;
    let first = sim.drift_day - 1;
    let mut chains: Vec<(Method, Chain)> =
        Method::RUN.iter().map(|&m| (m, Chain::new(m, k))).collect();
    let n = sim.truth.len();
    let mut initial: Vec<Vec<String>> = vec![Vec::new(); chains.len()];
    let mut current: Vec<Vec<String>> = vec![vec![String::new(); n]; chains.len()];
    let mut published = vec![0usize; chains.len()];
    if std::env::var("SPECTRA_BENCH_DEBUG").is_ok() {
        for (o, t) in sim.target.iter().enumerate() {
            if let Some(t) = t {
                eprintln!("MOVER O{o:05} {} -> {t}", sim.truth[o]);
            }
        }
    }
    let mut day = first;
    loop {
        let fs = sim.features(day, WINDOW_DAYS, RECENT_DAYS, false);
        let fs_h = sim.features(day, WINDOW_DAYS, RECENT_DAYS, true);
        for (c, (_, chain)) in chains.iter_mut().enumerate() {
            let labels = chain.step(&fs, &fs_h, k, &current[c]);
            if day == first {
                initial[c] = labels.clone();
            } else {
                if c == 0 && std::env::var("SPECTRA_BENCH_DEBUG").is_ok() {
                    for (o, (now, was)) in labels.iter().zip(&current[c]).enumerate() {
                        if now != was {
                            eprintln!("CHANGED day {day} O{o:05} {was} -> {now}");
                        }
                    }
                }
                published[c] += labels
                    .iter()
                    .zip(&current[c])
                    .filter(|(a, b)| a != b)
                    .count();
            }
            current[c] = labels;
        }
        if day >= sim.days - 1 {
            break;
        }
        day = (day + cadence).min(sim.days - 1);
    }
    if std::env::var("SPECTRA_BENCH_DEBUG").is_ok() {
        let mut confusion: std::collections::BTreeMap<(usize, &str), usize> = Default::default();
        for (t, l) in sim.truth.iter().zip(&initial[0]) {
            *confusion.entry((*t, l.as_str())).or_default() += 1;
        }
        for ((t, l), c) in confusion {
            eprintln!("CONFUSION planted {t} first-run {l}: {c}");
        }
    }
    let ari = {
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let labels: Vec<usize> = initial[0]
            .iter()
            .map(|s| {
                let next = ids.len();
                *ids.entry(s.as_str()).or_insert(next)
            })
            .collect();
        adjusted_rand_index(&labels, &sim.truth)
    };
    let mut scores: Vec<(Method, Score)> = chains
        .iter()
        .enumerate()
        .map(|(c, (m, _))| (*m, score(sim, &initial[c], &current[c], published[c])))
        .collect();
    // The ceiling, from Spectra's first run: the outlets it moves leave their segment.
    let moved = ceiling::ceiling(sim, sim.days - 1);
    let last: Vec<String> = initial[0]
        .iter()
        .zip(&moved)
        .map(|(s, &m)| if m { "moved".to_owned() } else { s.clone() })
        .collect();
    let count = moved.iter().filter(|&&m| m).count();
    let mut top = score(sim, &initial[0], &last, count);
    top.right = f64::NAN; // it says who moved, not where to
    scores.push((Method::Ceiling, top));
    (ari, scores)
}

/// Scores a method's first and last assignments against the planted truth.
pub fn score(sim: &Simulation, initial: &[String], last: &[String], published: usize) -> Score {
    let n = sim.truth.len();
    let others: Vec<usize> = (0..n).filter(|&i| sim.target[i].is_none()).collect();
    // Where a mover's new behaviour belongs: the first-run segment most common among
    // the 15 non-movers whose planted spectra are nearest to its new one.
    let destination = |i: usize| -> &str {
        let after = sim.spectrum_after[i].as_ref().expect("a mover");
        let mut near: Vec<(f64, usize)> = others
            .iter()
            .map(|&j| {
                let d: f64 = after
                    .iter()
                    .zip(&sim.spectrum_before[j])
                    .map(|(a, b)| (a.sqrt() - b.sqrt()).powi(2))
                    .sum();
                (d, j)
            })
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for (_, j) in near.iter().take(15) {
            *votes.entry(initial[*j].as_str()).or_default() += 1;
        }
        votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map_or("-", |v| v.0)
    };
    let movers: Vec<usize> = (0..n).filter(|&i| sim.target[i].is_some()).collect();
    let moved = movers.iter().filter(|&&i| last[i] != initial[i]).count();
    let should: Vec<(usize, &str)> = movers
        .iter()
        .map(|&i| (i, destination(i)))
        .filter(|(i, d)| *d != initial[*i])
        .collect();
    if std::env::var("SPECTRA_BENCH_DEBUG").is_ok() {
        for &i in &movers {
            eprintln!("DEST O{i:05} {} {}", initial[i], destination(i));
        }
    }
    let should_moved = should
        .iter()
        .filter(|(i, _)| last[*i] != initial[*i])
        .count();
    let right = should.iter().filter(|(i, d)| last[*i] == *d).count();
    let reachable: Vec<usize> = should
        .iter()
        .map(|(i, _)| *i)
        .filter(|&i| sim.lines_before(i, sim.days - 1, RECENT_DAYS) >= MIN_LINES)
        .collect();
    let reachable_moved = reachable.iter().filter(|&&i| last[i] != initial[i]).count();
    let kept = others.iter().filter(|&&i| last[i] == initial[i]).count();
    let share = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    Score {
        movers: movers.len(),
        recall: share(moved, movers.len()),
        should_move: should.len(),
        recall_should: share(should_moved, should.len()),
        right: share(right, should.len()),
        reachable: reachable.len(),
        recall_reachable: share(reachable_moved, reachable.len()),
        kept: share(kept, others.len()),
        published,
    }
}

/// Prints the detector's evidence for every outlet of a run (exploration only).
fn debug_detector(
    seg: &SegmentationConfig,
    fs: &FeatureSet,
    previous: Option<&PreviousRun>,
    out: &RunOutput,
) {
    use spectra_segmenter::cluster::movement::{
        detect, Decision, DetectorConfig, MovedWith, SpendHistory,
    };
    let (Some(p), Some(h)) = (previous, fs.history.as_ref()) else {
        return;
    };
    let ids: Vec<String> = out
        .model
        .segments
        .iter()
        .map(|s| s.segment_id.clone())
        .collect();
    let current: Vec<Option<usize>> = fs
        .outlets
        .iter()
        .map(|o| {
            p.assignments
                .get(&o.outlet_id)
                .and_then(|s| ids.iter().position(|i| i == s))
        })
        .collect();
    let rows: Vec<usize> = (0..current.len()).collect();
    let moved_with: Vec<Option<MovedWith>> = fs
        .outlets
        .iter()
        .map(|o| MovedWith::over(p.baselines.get(&o.outlet_id)?, &fs.features))
        .collect();
    let det = detect(
        &SpendHistory {
            earlier: h.earlier.view(),
            recent: h.recent.view(),
            earlier_lines: &h.earlier_lines,
            recent_lines: &h.recent_lines,
            counts: Some((h.earlier_counts.view(), h.recent_counts.view())),
            rows: &rows,
            moved_with: &moved_with,
        },
        &current,
        ids.len(),
        &DetectorConfig {
            change_score: seg.change_score,
            fit_score: seg.fit_score,
            margin: seg.move_margin,
        },
    );
    eprintln!(
        "dispersion {:.2} (lines {:?}) tested {}",
        det.dispersion, det.line_dispersion, det.tested
    );
    for (i, d) in det.decisions.iter().enumerate() {
        let (kind, e) = match d {
            Decision::Move(e) => ("move", e),
            Decision::Keep(e) => ("keep", e),
            Decision::Untested => {
                eprintln!(
                    "DBG {} untested cur {:?} lines {:.0}/{:.0}",
                    fs.outlets[i].outlet_id, current[i], h.earlier_lines[i], h.recent_lines[i]
                );
                continue;
            }
        };
        eprintln!(
            "DBG {} {kind} cur {} best {} score {:.2} fit {:.2} lines {:.0}/{:.0}",
            fs.outlets[i].outlet_id,
            current[i].map_or("-", |c| ids[c].as_str()),
            ids[e.best],
            e.score,
            e.fit,
            e.lines.0,
            e.lines.1
        );
    }
}
