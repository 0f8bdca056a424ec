//! The detector on simulated outlets: lines drawn from known spend shares, so what
//! changed is known.

use ndarray::{Array1, Array2};
use rand::distributions::{Distribution, WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::*;
use crate::cluster::incremental::Change;

/// Spend and lines per feature of `lines` invoice lines drawn from `shares`, line
/// values from `value`.
fn bought(
    shares: &[f64],
    lines: usize,
    rng: &mut Xoshiro256PlusPlus,
    value: fn(&mut Xoshiro256PlusPlus) -> f64,
) -> (Vec<f64>, Vec<f32>) {
    let pick = WeightedIndex::new(shares).unwrap();
    let (mut spend, mut counts) = (vec![0.0; shares.len()], vec![0.0; shares.len()]);
    for _ in 0..lines {
        let v = value(rng);
        let f = pick.sample(rng);
        spend[f] += v;
        counts[f] += 1.0;
    }
    (spend, counts)
}

/// Line values 1–10.
fn even(rng: &mut Xoshiro256PlusPlus) -> f64 {
    rng.gen_range(1.0..10.0)
}

/// Line values from 1 to 1,000, as many in each decade: a few lines carry most of
/// the spend.
fn heavy(rng: &mut Xoshiro256PlusPlus) -> f64 {
    10f64.powf(rng.gen_range(0.0..3.0))
}

/// Two segments over four features; `outlets` per segment.
const A: [f64; 4] = [0.4, 0.3, 0.2, 0.1];
const B: [f64; 4] = [0.1, 0.2, 0.3, 0.4];
/// Three more, for the tests of one segment drifting among five.
const C: [f64; 4] = [0.25, 0.25, 0.25, 0.25];
const D: [f64; 4] = [0.1, 0.4, 0.4, 0.1];
const E: [f64; 4] = [0.4, 0.1, 0.1, 0.4];

struct Population {
    earlier: Array2<f32>,
    recent: Array2<f32>,
    earlier_counts: Array2<f32>,
    recent_counts: Array2<f32>,
    earlier_lines: Vec<f64>,
    recent_lines: Vec<f64>,
    current: Vec<Option<usize>>,
    rows: Vec<usize>,
    moved_with: Vec<Option<MovedWith>>,
}

impl Population {
    fn history(&self) -> SpendHistory<'_> {
        SpendHistory {
            earlier: self.earlier.view(),
            recent: self.recent.view(),
            earlier_lines: &self.earlier_lines,
            recent_lines: &self.recent_lines,
            counts: None,
            rows: &self.rows,
            moved_with: &self.moved_with,
        }
    }

    /// The same with the lines per feature as a second reading.
    fn history_in_lines_too(&self) -> SpendHistory<'_> {
        SpendHistory {
            counts: Some((self.earlier_counts.view(), self.recent_counts.view())),
            ..self.history()
        }
    }
}

/// `per` outlets of each segment in `segments` (spend shares), outlet `i` of segment
/// `s` buying `earlier_lines` lines from `segments[s]` before the recent window and
/// `recent_lines` from `recent(i, segments[s])` in it.
fn drawn(
    segments: &[&[f64]],
    per: usize,
    earlier_lines: usize,
    recent_lines: usize,
    recent: impl Fn(usize, &[f64]) -> Vec<f64>,
    seed: u64,
) -> Population {
    drawn_with(
        segments,
        per,
        (earlier_lines, recent_lines),
        recent,
        even,
        seed,
    )
}

/// [`drawn`] with line values from `value`.
fn drawn_with(
    segments: &[&[f64]],
    per: usize,
    (earlier_lines, recent_lines): (usize, usize),
    recent: impl Fn(usize, &[f64]) -> Vec<f64>,
    value: fn(&mut Xoshiro256PlusPlus) -> f64,
    seed: u64,
) -> Population {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let (n, d) = (segments.len() * per, segments[0].len());
    let mut p = Population {
        earlier: Array2::zeros((n, d)),
        recent: Array2::zeros((n, d)),
        earlier_counts: Array2::zeros((n, d)),
        recent_counts: Array2::zeros((n, d)),
        earlier_lines: vec![earlier_lines as f64; n],
        recent_lines: vec![recent_lines as f64; n],
        current: (0..n).map(|i| Some(i / per)).collect(),
        rows: (0..n).collect(),
        moved_with: Vec::new(),
    };
    for i in 0..n {
        let own = segments[i / per];
        // Spend summed in `f64`, kept in `f32`, as a feature set holds it.
        let narrow = |v: Vec<f64>| Array1::from_iter(v.into_iter().map(|v| v as f32));
        let (spend, counts) = bought(own, earlier_lines, &mut rng, value);
        p.earlier.row_mut(i).assign(&narrow(spend));
        p.earlier_counts.row_mut(i).assign(&Array1::from(counts));
        let (spend, counts) = bought(&recent(i, own), recent_lines, &mut rng, value);
        p.recent.row_mut(i).assign(&narrow(spend));
        p.recent_counts.row_mut(i).assign(&Array1::from(counts));
    }
    p
}

/// Recent shares for [`drawn`]: the first `k` outlets buy from `to`, the others from
/// their own segment.
fn first_switch(k: usize, to: &[f64]) -> impl Fn(usize, &[f64]) -> Vec<f64> + '_ {
    move |i, own| if i < k { to.to_vec() } else { own.to_vec() }
}

/// `outlets` per segment; outlet 0 of segment A switches to `switch_to` recently;
/// `season` multiplies every outlet's recent shares.
fn population(
    outlets: usize,
    earlier_lines: usize,
    recent_lines: usize,
    switch_to: Option<[f64; 4]>,
    season: [f64; 4],
    seed: u64,
) -> Population {
    let recent = |i: usize, own: &[f64]| -> Vec<f64> {
        let after = match switch_to {
            Some(t) if i == 0 => t.to_vec(),
            _ => own.to_vec(),
        };
        after.iter().zip(season).map(|(a, s)| a * s).collect()
    };
    drawn(
        &[&A, &B],
        outlets,
        earlier_lines,
        recent_lines,
        recent,
        seed,
    )
}

#[test]
fn chi2_scores_match_known_quantiles() {
    // χ²₁₀: median 9.342, upper 0.1% point 29.588 (z = 3.090).
    assert!((chi2_median(10) - 9.342).abs() < 0.02);
    assert!(chi2_score(chi2_median(10), 10).abs() < 1e-9);
    assert!((chi2_score(29.588, 10) - 3.090).abs() < 0.03);
    assert!(chi2_score(5.0, 10) < 0.0);
}

#[test]
fn sidak_inverse_undoes_sidak() {
    for m in [1, 2, 4] {
        for z in [-2.0, 0.0, 1.5, 3.5, 7.9, 12.0] {
            let back = sidak_inverse(sidak(z, m), m);
            assert!((back - z).abs() < 1e-6, "m {m}, z {z}: {back}");
        }
    }
}

#[test]
fn a_switched_outlet_moves_and_the_others_keep_their_segment() {
    let p = population(100, 400, 60, Some(B), [1.0; 4], 1);
    let det = detect(&p.history(), &p.current, 2, &DetectorConfig::default());
    assert_eq!(det.tested, 200);
    let Decision::Move(e) = &det.decisions[0] else {
        panic!("the switched outlet should move: {:?}", det.decisions[0]);
    };
    assert_eq!(e.best, 1);
    assert!(e.score >= 3.5 && e.fit >= 4.0, "{e:?}");
    // The features that changed most lead the drivers.
    let top: Vec<usize> = e.drivers.iter().map(|d| d.feature).collect();
    assert!(top[0] == 0 || top[0] == 3, "{top:?}");
    let moved_others = det.decisions[1..]
        .iter()
        .filter(|d| matches!(d, Decision::Move(_)))
        .count();
    assert_eq!(moved_others, 0);
    // Over-dispersion from varying line values is estimated, not assumed.
    assert!(
        det.dispersion >= 1.0 && det.dispersion < 3.0,
        "{}",
        det.dispersion
    );
}

#[test]
fn power_follows_the_evidence() {
    // The same switch seen through 6 recent lines proves nothing; through 80 it does.
    let score = |recent_lines: usize| {
        let mut scores = Vec::new();
        for seed in 0..5 {
            let p = population(60, 400, recent_lines, Some(B), [1.0; 4], seed);
            let det = detect(&p.history(), &p.current, 2, &DetectorConfig::default());
            match &det.decisions[0] {
                Decision::Keep(e) | Decision::Move(e) => scores.push(e.score),
                Decision::Untested => panic!("tested"),
            }
        }
        scores.iter().sum::<f64>() / scores.len() as f64
    };
    let (few, many) = (score(6), score(80));
    println!("6 recent lines: score {few:.2}; 80: {many:.2}");
    // Well under the change bar (3.5). The projected test, one degree of freedom
    // along the direction the two segments differ in, scores the 6 lines 2.0; the G
    // test alone scored them under 2.
    assert!(few < 2.5, "6 lines: score {few}");
    assert!(many > 4.0 && many > few + 3.0, "80 lines: score {many}");
    // Fewer lines than MIN_LINES: not tested at all; from MIN_LINES the test decides.
    let tested = |recent_lines: usize| {
        let p = population(30, 400, recent_lines, Some(B), [1.0; 4], 9);
        let det = detect(&p.history(), &p.current, 2, &DetectorConfig::default());
        det.decisions
            .iter()
            .filter(|d| **d != Decision::Untested)
            .count()
    };
    let least = MIN_LINES as usize;
    assert_eq!(tested(least - 1), 0);
    assert_eq!(tested(least), 60, "30 outlets in each of two segments");
}

#[test]
fn a_drift_of_the_whole_segment_moves_no_one_and_is_flagged() {
    // Every outlet buys much more of feature 3 lately (a season): that is the
    // segments' drift, not a reason to move anyone.
    let p = population(100, 400, 60, None, [0.5, 1.0, 1.0, 4.0], 3);
    let det = detect(&p.history(), &p.current, 2, &DetectorConfig::default());
    let moved = det
        .decisions
        .iter()
        .filter(|d| matches!(d, Decision::Move(_)))
        .count();
    assert_eq!(moved, 0);
    assert!(det.segments.iter().all(|s| s.drifted), "{:?}", det.segments);
    // Both drifted the same way, so little of it is their own.
    assert!(det.segments.iter().all(|s| s.own_drift < s.drift / 2.0));
}

#[test]
fn a_segment_that_drifts_alone_is_flagged_and_its_members_stay() {
    // Five segments; every member of the first buys more of feature 0 lately, with
    // enough lines that each of them tests as changed. What they now buy fits no
    // other segment: the segment drifted, no one moved, and the others did not drift.
    let per = 100;
    let drifted = [0.6, 0.2, 0.1, 0.1];
    let p = drawn(
        &[&A, &B, &C, &D, &E],
        per,
        3000,
        1500,
        first_switch(per, &drifted),
        5,
    );
    for history in [p.history(), p.history_in_lines_too()] {
        let det = detect(&history, &p.current, 5, &DetectorConfig::default());
        let changed = det
            .decisions
            .iter()
            .take(per)
            .filter(|d| matches!(d, Decision::Keep(e) if e.score >= 3.5))
            .count();
        assert_eq!(changed, per, "every member tests as changed");
        assert!(
            det.decisions.iter().all(|d| matches!(d, Decision::Keep(_))),
            "no one moves"
        );
        let (own, others) = det.segments.split_first().expect("five segments");
        assert!(own.drifted && own.own_drift > 0.1, "{own:?}");
        // Its profile is its members' recent shares, not the population's.
        assert!((own.recent[0] - 0.6).abs() < 0.02, "{:?}", own.recent);
        assert!(others.iter().all(|s| !s.drifted), "{others:?}");
    }
}

#[test]
fn a_segment_that_now_buys_in_other_lines_drifts_in_the_lines_reading() {
    // The first of five segments keeps its spend shares but now buys feature 0 in many
    // small lines and the others in fewer, larger ones: its spend does not drift, its
    // lines do, to a mix no other segment buys in (a segment's drift, not outlets
    // moving). Only the lines reading can flag it.
    let segments: [&[f64]; 5] = [&A, &B, &C, &D, &E];
    let (per, d) = (100, 4);
    let now_in_lines = [0.7, 0.1, 0.1, 0.1];
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let n = segments.len() * per;
    // The population's shape, without lines: every row is bought below.
    let mut p = drawn(&segments, per, 0, 0, |_, own| own.to_vec(), 11);
    let (earlier_lines, recent_lines) = (1200, 600);
    // `line_shares` picks the feature of each line; a line of feature f is worth
    // `spend[f] / line_shares[f]` on average, so spend shares stay `spend`.
    let mut buy = |spend: &[f64], line_shares: &[f64], lines: usize| {
        let pick = WeightedIndex::new(line_shares).unwrap();
        let (mut value, mut count) = (vec![0.0; d], vec![0.0_f32; d]);
        for _ in 0..lines {
            let f = pick.sample(&mut rng);
            value[f] += spend[f] / line_shares[f] * rng.gen_range(0.5..1.5);
            count[f] += 1.0;
        }
        let value = Array1::from_iter(value.into_iter().map(|v| v as f32));
        (value, Array1::from(count))
    };
    for i in 0..n {
        let own = segments[i / per];
        let (v, c) = buy(own, own, earlier_lines);
        p.earlier.row_mut(i).assign(&v);
        p.earlier_counts.row_mut(i).assign(&c);
        let (v, c) = buy(own, if i < per { &now_in_lines } else { own }, recent_lines);
        p.recent.row_mut(i).assign(&v);
        p.recent_counts.row_mut(i).assign(&c);
    }
    p.earlier_lines = vec![earlier_lines as f64; n];
    p.recent_lines = vec![recent_lines as f64; n];

    let spend_only = detect(&p.history(), &p.current, 5, &DetectorConfig::default());
    assert!(spend_only
        .segments
        .iter()
        .all(|s| !s.drifted && s.in_lines.is_none()));
    let both = detect(
        &p.history_in_lines_too(),
        &p.current,
        5,
        &DetectorConfig::default(),
    );
    assert!(
        both.decisions
            .iter()
            .all(|d| matches!(d, Decision::Keep(_))),
        "no one moves"
    );
    let (own, others) = both.segments.split_first().expect("five segments");
    let lines = own.in_lines.as_deref().expect("a lines reading");
    let (line_drift, line_own_drift) = (lines.drift, lines.own_drift);
    // Its members' pooled lines show the new mix.
    assert!((lines.recent[0] - 0.7).abs() < 0.02, "{:?}", lines.recent);
    assert!(
        own.drifted && own.drift < SEGMENT_DRIFT && line_drift >= SEGMENT_DRIFT,
        "{own:?}"
    );
    assert!(line_own_drift > 0.1, "{own:?}");
    assert!(others.iter().all(|s| !s.drifted), "{others:?}");
}

#[test]
fn apply_keeps_the_previous_segment_unless_the_detector_moves() {
    use crate::cluster::incremental::{run, Previous, RunConfig};
    let p = population(50, 400, 60, Some(B), [1.0; 4], 5);
    let x = crate::cluster::transform::hellinger(
        crate::cluster::transform::shares((&p.earlier + &p.recent).mapv(f64::from).view()).view(),
    );
    let mut cfg = RunConfig::default();
    cfg.kmeans.k = 2;
    let first = run(x.view(), None, None, &cfg).unwrap();
    let before: Vec<Option<String>> = first
        .assignments
        .iter()
        .map(|a| Some(a.segment_id.clone()))
        .collect();
    let prev = Previous {
        model: &first.model,
        assignment: &before,
    };
    let mut second = run(x.view(), None, Some(prev), &cfg).unwrap();
    let current: Vec<Option<usize>> = first.assignments.iter().map(|a| Some(a.segment)).collect();
    let det = detect(&p.history(), &current, 2, &DetectorConfig::default());
    apply(&mut second, x.view(), &current, &det);
    for (i, a) in second.assignments.iter().enumerate() {
        let moves = matches!(det.decisions[i], Decision::Move(_));
        assert_eq!(a.change == Change::Moved, moves, "outlet {i}");
        assert_eq!(a.segment != current[i].unwrap(), moves, "outlet {i}");
        assert!((0.0..=1.0).contains(&a.confidence));
    }
    let moves = det
        .decisions
        .iter()
        .filter(|d| matches!(d, Decision::Move(_)))
        .count();
    assert!(moves > 0, "the switched outlets move");
    assert_eq!(second.moved, moves);

    // A first run's outlets are new: the detector places them (from the nearest
    // centroid's segment), and they stay new.
    let mut cold = first.clone();
    apply(&mut cold, x.view(), &current, &det);
    for (i, a) in cold.assignments.iter().enumerate() {
        let target = match &det.decisions[i] {
            Decision::Move(e) => e.best,
            _ => current[i].unwrap(),
        };
        assert_eq!((a.segment, a.change), (target, Change::New), "outlet {i}");
        assert_eq!(a.segment_id, cold.model.segment_ids[target]);
    }
    assert_eq!(cold.moved, 0);
}

/// The drivers' selection is a stable sort's first few, largest first.
#[test]
fn the_largest_terms_are_a_stable_sorts_first() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    for len in [0, 1, 2, 3, 5, 40] {
        // Few distinct values, so ties are common.
        let terms: Vec<f64> = (0..len).map(|_| f64::from(rng.gen_range(0..4u8))).collect();
        let mut order: Vec<usize> = (0..len).collect();
        order.sort_by(|a, b| terms[*b].total_cmp(&terms[*a]));
        let sorted: Vec<(usize, f64)> = order.into_iter().take(3).map(|f| (f, terms[f])).collect();
        assert_eq!(largest(&terms, 3), sorted, "{terms:?}");
    }
}

#[test]
fn a_half_switched_month_waits_for_the_new_segment_instead_of_moving_between() {
    // Three segments; M lies between A and B but off the line from one to the other,
    // so a month bought half as A, half as B is nearer M than either.
    const A5: [f64; 5] = [0.5, 0.3, 0.1, 0.05, 0.05];
    const M5: [f64; 5] = [0.2, 0.2, 0.4, 0.1, 0.1];
    const B5: [f64; 5] = [0.05, 0.05, 0.1, 0.3, 0.5];
    let half: Vec<f64> = A5.iter().zip(&B5).map(|(a, b)| (a + b) / 2.0).collect();
    let decision = |recent_of_0: &[f64], seed: u64| -> Decision {
        let now = |i: usize, own: &[f64]| if i == 0 { recent_of_0 } else { own }.to_vec();
        let p = drawn(&[&A5, &M5, &B5], 60, 400, 80, now, seed);
        let det = detect(&p.history(), &p.current, 3, &DetectorConfig::default());
        det.decisions[0].clone()
    };
    for seed in 0..5 {
        // Half the month already as B: the outlet changed, and what it is becoming is
        // B, not M. It waits (the month fits B about as well as A) or, when its lines
        // happen to lean to B, moves there; never to M.
        match decision(&half, seed) {
            Decision::Keep(e) | Decision::Move(e) => {
                assert!(e.score >= 3.5, "seed {seed}: it changed: {e:?}");
                assert_eq!(e.best, 2, "seed {seed}: {e:?}");
            }
            Decision::Untested => panic!("seed {seed}: tested"),
        }
        // The whole month as B: it moves to B.
        match decision(&B5, seed) {
            Decision::Move(e) => assert_eq!(e.best, 2, "seed {seed}: {e:?}"),
            d => panic!("seed {seed}: the outlet should move to B: {d:?}"),
        }
    }
}

#[test]
fn the_dispersion_is_estimated_without_the_outlets_that_changed() {
    // 200 outlets; the first `switched` (of segment A) buy as B lately. The first
    // pass flags them and φ leaves them out, so a tenth of the outlets switching does
    // not raise the bar for the others (it did by 13% when φ counted them).
    let dispersion = |switched: usize, seed: u64| {
        let now = |i: usize, own: &[f64]| if i < switched { &B[..] } else { own }.to_vec();
        let p = drawn(&[&A, &B], 100, 400, 60, now, seed);
        detect(&p.history(), &p.current, 2, &DetectorConfig::default()).dispersion
    };
    for seed in 0..3 {
        let (stable, switching) = (dispersion(0, seed), dispersion(20, seed));
        assert!(
            (switching / stable - 1.0).abs() < 0.1,
            "seed {seed}: φ {stable:.3} without switches, {switching:.3} with 20 of 200"
        );
    }
}

#[test]
fn a_moved_outlet_moves_again_only_when_it_changed_since_the_move() {
    // Segments A, B and M (M near B). Outlet 0 bought as A, was moved to B, and now
    // buys as M: against the rest of its window (A) it changed, and M fits its month
    // better than B. Whether it moves again depends on what it moved to B with.
    const M: [f64; 4] = [0.05, 0.1, 0.55, 0.3];
    for seed in 0..3 {
        let now = |i: usize, own: &[f64]| if i == 0 { &M[..] } else { own }.to_vec();
        let mut p = drawn(&[&A, &B, &M], 100, 400, 200, now, seed);
        p.current[0] = Some(1);
        let decide =
            |p: &Population| detect(&p.history(), &p.current, 3, &DetectorConfig::default());
        // No record of the move (a run before baselines): the month alone decides.
        match &decide(&p).decisions[0] {
            Decision::Move(e) => assert_eq!(e.best, 2, "seed {seed}: {e:?}"),
            d => panic!("seed {seed}: without a baseline it moves to M: {d:?}"),
        }
        // It moved with the month it buys now: nothing changed since, it stays.
        p.moved_with = vec![None; p.current.len()];
        p.moved_with[0] = Some(MovedWith {
            shares: M.to_vec(),
            lines: 200.0,
        });
        match &decide(&p).decisions[0] {
            Decision::Keep(e) => assert!(e.score >= 3.5 && e.fit >= 4.0, "seed {seed}: {e:?}"),
            d => panic!("seed {seed}: unchanged since its move, it stays: {d:?}"),
        }
        // It moved with a month still half its old behaviour (half A, half B) and buys
        // as M now: it changed since, it moves.
        p.moved_with[0] = Some(MovedWith {
            shares: A.iter().zip(B).map(|(a, b)| (a + b) / 2.0).collect(),
            lines: 200.0,
        });
        match &decide(&p).decisions[0] {
            Decision::Move(e) => assert_eq!(e.best, 2, "seed {seed}: {e:?}"),
            d => panic!("seed {seed}: changed since its move, it moves: {d:?}"),
        }
    }
}

#[test]
fn the_normal_tail_inverts_and_two_readings_are_scored_as_one() {
    // P(Z > 1.96) = 0.025.
    assert!((normal_tail(1.959_964) - 0.025).abs() < 1e-7);
    for z in [-6.0, -1.5, 0.0, 0.7, 3.5, 8.0, 20.0] {
        let back = normal_tail_inverse(normal_tail(z));
        assert!((back - z).abs() < 1e-6 * z.abs().max(1.0), "{z}: {back}");
    }
    // Šidák for two scores (scipy: norm.isf(1 − (1 − norm.sf(z))²)).
    assert_eq!(sidak(3.5, 1), 3.5);
    assert!(
        (sidak(3.5, 2) - 3.310_766_5).abs() < 1e-6,
        "{}",
        sidak(3.5, 2)
    );
    assert!(
        (sidak(-1.0, 2) - -1.957_038_2).abs() < 1e-6,
        "{}",
        sidak(-1.0, 2)
    );
    // Increasing, and continuous where it changes how it is computed (0 and 8).
    let zs: Vec<f64> = (-200..=300).map(|i| f64::from(i) * 0.05).collect();
    for w in zs.windows(2) {
        let (a, b) = (sidak(w[0], 2), sidak(w[1], 2));
        assert!(b > a && b - a < 0.1, "{w:?}: {a} {b}");
    }
}

#[test]
fn what_an_outlet_buys_is_read_in_lines_as_well_as_in_spend() {
    // A few lines carry most of the spend, so a month's spend shares say little about
    // what the outlet now buys; its lines per feature say it plainly. Outlets 0–5 of
    // segment A switch to B's mix.
    let (mut by_spend, mut in_lines_too, mut others, mut lines_decided) = (0, 0, 0, 0);
    for seed in 0..4 {
        let recent = |i: usize, own: &[f64]| if i < 6 { B.to_vec() } else { own.to_vec() };
        let p = drawn_with(&[&A, &B], 150, (400, 40), recent, heavy, seed);
        let moved = |det: &Detection, range: std::ops::Range<usize>| {
            range
                .filter(|&i| matches!(&det.decisions[i], Decision::Move(e) if e.best == 1))
                .count()
        };
        let spend_only = detect(&p.history(), &p.current, 2, &DetectorConfig::default());
        let both = detect(
            &p.history_in_lines_too(),
            &p.current,
            2,
            &DetectorConfig::default(),
        );
        by_spend += moved(&spend_only, 0..6);
        in_lines_too += moved(&both, 0..6);
        others += moved(&both, 6..300) + moved(&spend_only, 6..300);
        assert!(both.line_dispersion.is_some() && spend_only.line_dispersion.is_none());
        // A move names the reading that moved it, its drivers' shares are in it, and
        // the move keeps the outlet's spend spectra.
        for (i, d) in both.decisions.iter().enumerate() {
            let Decision::Move(e) = d else { continue };
            assert_eq!(e.recent, shares_of(p.recent.row(i)));
            for driver in &e.drivers {
                let row = match driver.reading {
                    Reading::Spend => p.recent.row(i),
                    Reading::Lines => p.recent_counts.row(i),
                };
                assert_eq!(driver.recent_share, shares_of(row.view())[driver.feature]);
            }
            lines_decided += usize::from(e.drivers[0].reading == Reading::Lines);
        }
    }
    println!("of 24 switched: {by_spend} moved on spend alone, {in_lines_too} with lines too");
    assert!(
        in_lines_too >= 16 && in_lines_too >= by_spend + 10,
        "{by_spend} {in_lines_too}"
    );
    assert_eq!(others, 0);
    assert!(lines_decided >= 16, "{lines_decided}");
}

#[test]
fn a_switch_spread_over_many_features_shows_where_segments_differ() {
    // Two segments over 24 features, each leaning on half of them (2 : 1), and 60
    // recent lines of outlet 0 bought as the other segment buys. The G test spreads
    // the switch over 23 degrees of freedom; projected on the one direction the
    // segments differ in, the same lines show a change.
    let lean = |first: bool| -> Vec<f64> {
        let w: Vec<f64> = (0..24)
            .map(|f| if (f < 12) == first { 2.0 } else { 1.0 })
            .collect();
        let t: f64 = w.iter().sum();
        w.iter().map(|v| v / t).collect()
    };
    let (a, b) = (lean(true), lean(false));
    let (mut moved, mut by_g_alone, mut others, mut gain) = (0, 0, 0, 0.0);
    for seed in 0..10 {
        let p = drawn(&[&a, &b], 100, 400, 60, first_switch(1, &b), seed);
        let det = detect(&p.history(), &p.current, 2, &DetectorConfig::default());
        let (Decision::Keep(e) | Decision::Move(e)) = &det.decisions[0] else {
            panic!("tested");
        };
        let g_alone = chi2_score(e.statistic, e.df);
        println!(
            "seed {seed}: score {:.2}, G alone {g_alone:.2}, df {}",
            e.score, e.df
        );
        moved += usize::from(matches!(det.decisions[0], Decision::Move(_)));
        by_g_alone += usize::from(g_alone >= 3.5);
        gain += (e.score - g_alone) / 10.0;
        others += det.decisions[1..]
            .iter()
            .filter(|d| matches!(d, Decision::Move(_)))
            .count();
    }
    println!(
        "moved {moved}/10, G alone would flag {by_g_alone}/10, others moved {others}, \
         score over G alone {gain:.2} on average"
    );
    assert!(gain > 1.0, "{gain}");
    assert!(
        moved >= 4 && by_g_alone == 0,
        "moved {moved}, G alone {by_g_alone}"
    );
    assert_eq!(others, 0);
}

#[test]
fn a_switch_over_hundreds_of_features_is_seen() {
    // Three segments over 600 features, each buying mostly its own third. A year of
    // 400 lines and a month of 33 leave most features under a line expected in a
    // period, and G then spreads narrower than χ² on as many degrees of freedom:
    // the population's φ is under 1 (0.73 here). Read as 1, as before, none of these
    // switches moved (scores about 2); read as measured, all do.
    const FEATURES: usize = 600;
    let segment = |s: usize| -> Vec<f64> {
        (0..FEATURES)
            .map(|f| if f % 3 == s { 1.0 } else { 0.02 })
            .collect()
    };
    let (a, b, c) = (segment(0), segment(1), segment(2));
    let switchers = 20;
    let p = drawn(&[&a, &b, &c], 200, 400, 33, first_switch(switchers, &b), 5);
    let det = detect(&p.history(), &p.current, 3, &DetectorConfig::default());
    assert!(
        det.dispersion < 0.9 && det.dispersion >= MIN_DISPERSION,
        "{}",
        det.dispersion
    );
    let moved: Vec<(usize, usize)> = det
        .decisions
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match d {
            Decision::Move(e) => Some((i, e.best)),
            _ => None,
        })
        .collect();
    let switched = moved.iter().filter(|&&(i, _)| i < switchers).count();
    assert!(
        switched >= switchers - 2,
        "{switched} of {switchers}: {moved:?}"
    );
    assert!(
        moved.iter().all(|&(i, best)| i < switchers && best == 1),
        "{moved:?}"
    );
}
