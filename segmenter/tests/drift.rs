//! Planted segments with drift: 5 planted spectra over 40 features, 3000 outlets.
//! Run 1 is cold; then 5% of the outlets switch to another planted spectrum and run 2
//! starts from run 1. Drifted outlets should follow, the others stay, ids hold.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use spectra_segmenter::cluster::incremental::{run, Previous, RunConfig};
use spectra_segmenter::cluster::metrics::adjusted_rand_index;
use spectra_segmenter::cluster::transform::{hellinger, shares};

const SEGMENTS: usize = 5;
const FEATURES: usize = 40;
const OUTLETS: usize = 3000;

/// Planted spectra: each segment concentrates on its own 8 features plus a shared
/// background.
fn planted(rng: &mut Xoshiro256PlusPlus) -> Array2<f64> {
    Array2::from_shape_fn((SEGMENTS, FEATURES), |(s, f)| {
        let own = if f / 8 == s { 4.0 } else { 0.0 };
        own + 0.5 + rng.gen_range(0.0..1.0)
    })
}

/// One outlet's spend: its planted spectrum times log-normal noise (a Dirichlet-like
/// spread of shares), some categories not bought at all.
fn spend(spectrum: ndarray::ArrayView1<f64>, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
    spectrum
        .iter()
        .map(|&p| {
            let (u1, u2): (f64, f64) = (rng.gen_range(1e-12..1.0), rng.gen());
            let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let keep = rng.gen_bool(0.85);
            if keep {
                p * (0.5 * normal).exp()
            } else {
                0.0
            }
        })
        .collect()
}

fn features(truth: &[usize], spectra: &Array2<f64>, seed: u64) -> Array2<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut m = Array2::zeros((truth.len(), FEATURES));
    for (i, &s) in truth.iter().enumerate() {
        m.row_mut(i)
            .assign(&ndarray::Array1::from(spend(spectra.row(s), &mut rng)));
    }
    hellinger(shares(m.view()).view())
}

#[test]
fn drifted_outlets_move_and_the_rest_stay() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2024);
    let spectra = planted(&mut rng);
    let truth: Vec<usize> = (0..OUTLETS).map(|i| i % SEGMENTS).collect();
    let mut config = RunConfig::default();
    config.kmeans.k = SEGMENTS;
    config.kmeans.seed = 7;

    let x1 = features(&truth, &spectra, 1);
    let first = run(x1.view(), None, None, &config).unwrap();
    let labels1: Vec<usize> = first.assignments.iter().map(|a| a.segment).collect();
    let ari = adjusted_rand_index(&labels1, &truth);
    assert!(
        ari > 0.95,
        "run 1 should recover the planted segments, ARI {ari}"
    );

    // 5% of outlets switch to another planted spectrum; everyone's noise is redrawn.
    let mut drifted_truth = truth.clone();
    let drifted: Vec<usize> = (0..OUTLETS).filter(|_| rng.gen_bool(0.05)).collect();
    for &i in &drifted {
        drifted_truth[i] = (truth[i] + rng.gen_range(1..SEGMENTS)) % SEGMENTS;
    }
    let x2 = features(&drifted_truth, &spectra, 1);
    let before: Vec<Option<String>> = first
        .assignments
        .iter()
        .map(|a| Some(a.segment_id.clone()))
        .collect();
    let previous = Previous {
        model: &first.model,
        assignment: &before,
    };
    let second = run(x2.view(), None, Some(previous), &config).unwrap();

    // Which id run 1 gave each planted segment (by majority).
    let id_of = |s: usize| {
        let mut counts = std::collections::HashMap::new();
        for (a, &t) in first.assignments.iter().zip(&truth) {
            if t == s {
                *counts.entry(a.segment_id.clone()).or_insert(0) += 1;
            }
        }
        counts.into_iter().max_by_key(|e| e.1).map(|e| e.0).unwrap()
    };
    let right = drifted
        .iter()
        .filter(|&&i| second.assignments[i].segment_id == id_of(drifted_truth[i]))
        .count();
    let stayed_moved = (0..OUTLETS)
        .filter(|i| !drifted.contains(i))
        .filter(|&i| second.assignments[i].segment_id != first.assignments[i].segment_id)
        .count();
    let others = OUTLETS - drifted.len();
    println!(
        "drifted {} → right segment {right}; others moved {stayed_moved}/{others}; \
         iterations {}",
        drifted.len(),
        second.iterations
    );
    assert!(
        right as f64 >= 0.8 * drifted.len() as f64,
        "{right}/{}",
        drifted.len()
    );
    assert!(
        (stayed_moved as f64) < 0.01 * others as f64,
        "{stayed_moved}/{others}"
    );
    assert_eq!(second.model.segment_ids, first.model.segment_ids);
    assert!(second.created.is_empty() && second.retired.is_empty());
}
