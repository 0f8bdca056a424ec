//! What the change detector costs at national scale: `detect` over a million outlets
//! read in spend alone and in spend and lines per feature, in the same process, with
//! the history arrays' memory beside the time, and what it decided: the outlets
//! that switched segment lately that it moved, the others it moved, and the
//! over-dispersion φ it measured.
//!
//! ```sh
//! cargo run --release -p spectra-bench --bin detector_bench -- --outlets 1000000
//! cargo run --release -p spectra-bench --bin detector_bench -- --outlets 20000 --features 512
//! ```
//!
//! The outlets are drawn as the movement benchmark draws them, without its daily
//! prefix sums (which hold a year per outlet): `k` segment spectra over the features,
//! each outlet's earlier and recent lines drawn from its segment's (a tenth of the
//! outlets, `--switching`, from a segment picked at random lately), line values 1.5–40.

use std::time::Instant;

use clap::Parser;
use ndarray::Array2;
use rand::distributions::{Distribution, WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_distr::{Dirichlet, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;
use spectra_segmenter::cluster::movement::{detect, Decision, DetectorConfig, SpendHistory};

/// Flags.
#[derive(Parser, Debug)]
#[command(about = "The change detector's time and memory with one and two readings")]
struct Args {
    /// Outlets.
    #[arg(long, default_value_t = 1_000_000)]
    outlets: usize,
    /// Features (the segmentation level's values).
    #[arg(long, default_value_t = 65)]
    features: usize,
    /// Segments.
    #[arg(long, default_value_t = 12)]
    k: usize,
    /// Timed runs per reading count (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of the outlets whose recent lines are drawn from a segment picked at
    /// random (their own one time in `k`).
    #[arg(long, default_value_t = 0.1, value_parser = share)]
    switching: f64,
}

/// A share, 0 to 1.
fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a share from 0 to 1")),
    }
}

fn main() {
    let args = Args::parse();
    let (n, d, k) = (args.outlets, args.features, args.k);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(args.seed);
    let spectra: Vec<WeightedIndex<f64>> = (0..k)
        .map(|_| {
            let alpha = vec![0.3; d];
            let p: Vec<f64> = Dirichlet::new(&alpha).expect("alpha").sample(&mut rng);
            WeightedIndex::new(p.iter().map(|v| v + 1e-6)).expect("weights")
        })
        .collect();
    let prices: Vec<f64> = (0..d).map(|_| rng.gen_range(1.5..40.0)).collect();
    let started = Instant::now();
    let (mut earlier, mut recent) = (Array2::<f32>::zeros((n, d)), Array2::<f32>::zeros((n, d)));
    let (mut earlier_counts, mut recent_counts) =
        (Array2::<f32>::zeros((n, d)), Array2::<f32>::zeros((n, d)));
    let (mut earlier_lines, mut recent_lines) = (vec![0.0; n], vec![0.0; n]);
    let current: Vec<Option<usize>> = (0..n).map(|i| Some(i % k)).collect();
    let mut switched = vec![false; n];
    for i in 0..n {
        let own = i % k;
        let lately = if rng.gen_bool(args.switching) {
            rng.gen_range(0..k)
        } else {
            own
        };
        switched[i] = lately != own;
        let size: f64 = Poisson::new(400.0).expect("mean").sample(&mut rng);
        for (period, seg, lines) in [(0, own, size), (1, lately, size / 12.0)] {
            let lines = lines.round() as usize;
            for _ in 0..lines {
                let f = spectra[seg].sample(&mut rng);
                let v = prices[f] * rng.gen_range(1.0..8.0_f64).round();
                // Summed in `f64`, kept in `f32`, as the segmenter's feature sets.
                let add = |cell: &mut f32| *cell = (f64::from(*cell) + v) as f32;
                if period == 0 {
                    add(&mut earlier[[i, f]]);
                    earlier_counts[[i, f]] += 1.0;
                } else {
                    add(&mut recent[[i, f]]);
                    recent_counts[[i, f]] += 1.0;
                }
            }
            if period == 0 {
                earlier_lines[i] = lines as f64;
            } else {
                recent_lines[i] = lines as f64;
            }
        }
    }
    eprintln!("drawn in {:.1} s", started.elapsed().as_secs_f64());
    let rows: Vec<usize> = (0..n).collect();
    let mb = |a: &Array2<f32>| std::mem::size_of_val(a.as_slice().expect("standard")) as f64 / 1e6;
    let spend_mb = mb(&earlier) + mb(&recent);
    let counts_mb = mb(&earlier_counts) + mb(&recent_counts);
    let planted = switched.iter().filter(|&&s| s).count();
    println!(
        "| readings | detect, median of {} (s) | switched lately: moved (of {planted}) | others moved | φ (spend / lines) | history arrays (MB) |",
        args.rounds
    );
    println!("|---|---:|---:|---:|---|---:|");
    for two in [false, true] {
        let history = SpendHistory {
            earlier: earlier.view(),
            recent: recent.view(),
            earlier_lines: &earlier_lines,
            recent_lines: &recent_lines,
            counts: two.then(|| (earlier_counts.view(), recent_counts.view())),
            rows: &rows,
            moved_with: &[],
        };
        let mut times = Vec::new();
        let mut detection = None;
        for _ in 0..args.rounds {
            let t = Instant::now();
            let det = detect(&history, &current, k, &DetectorConfig::default());
            times.push(t.elapsed().as_secs_f64());
            detection = Some(det);
        }
        let det = detection.expect("`--rounds` is at least 1");
        // Moved, among the outlets that switched and among the others.
        let (mut moved, mut others) = (0, 0);
        for (d, &s) in det.decisions.iter().zip(&switched) {
            if matches!(d, Decision::Move(_)) {
                *(if s { &mut moved } else { &mut others }) += 1;
            }
        }
        let phi = match det.line_dispersion {
            Some(l) => format!("{:.2} / {l:.2}", det.dispersion),
            None => format!("{:.2}", det.dispersion),
        };
        times.sort_by(f64::total_cmp);
        println!(
            "| {} | {:.2} | {moved} | {others} | {phi} | {:.0} |",
            if two { "spend and lines" } else { "spend" },
            times[times.len() / 2],
            if two { spend_mb + counts_mb } else { spend_mb }
        );
    }
}
