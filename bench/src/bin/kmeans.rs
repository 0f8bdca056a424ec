//! `kmeans`: times Spectra's k-means on a float64 `.npy` matrix and prints one JSON
//! line `{"seconds", "inertia", "iterations"}`.
//!
//! `seconds` is the fit (conversion to `f32`, seeding or warm start, Lloyd
//! iterations), excluding the file load — with `--repeat N`, the median of N fits of
//! the same input in one process (for comparing two builds on a noisy machine);
//! `inertia` is recomputed in `f64` on the original data from the returned labels
//! and centroids.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use ndarray::{Array2, Axis};
use ndarray_npy::{read_npy, write_npy};
use spectra_segmenter::cluster::kmeans::{fit, Init, KMeansConfig, KMeansFit};

/// Command-line flags, shared in meaning with `kmeans_linfa`.
#[derive(Debug, Parser)]
#[command(about = "Time Spectra's k-means on a float64 .npy matrix (rows = samples)")]
struct Args {
    /// The N × D float64 `.npy` matrix to cluster.
    data: PathBuf,
    /// Number of clusters (ignored with `--init`, which fixes k).
    #[arg(long, default_value_t = 8)]
    k: usize,
    /// Seed of the k-means++ seeding.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Maximum Lloyd iterations.
    #[arg(long, default_value_t = 300)]
    max_iter: usize,
    /// Relative tolerance, as scikit-learn's `tol`.
    #[arg(long, default_value_t = 1e-4)]
    tol: f64,
    /// Warm start from these k × D float64 centroids.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Write the fitted centroids here as a float64 `.npy`.
    #[arg(long)]
    save_centroids: Option<PathBuf>,
    /// Fit this many times and report the median time (results are the same each
    /// time: the fit is deterministic).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let x: Array2<f64> =
        read_npy(&args.data).with_context(|| format!("reading {}", args.data.display()))?;
    let init = match &args.init {
        Some(p) => {
            Init::Centroids(read_npy(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => Init::KMeansPlusPlus,
    };
    let config = KMeansConfig {
        k: args.k,
        max_iter: args.max_iter,
        tol: args.tol,
        seed: args.seed,
    };
    let mut times = Vec::new();
    let mut result = fit_timed(&x, &init, &config, &mut times)?;
    for _ in 1..args.repeat {
        result = fit_timed(&x, &init, &config, &mut times)?;
    }
    times.sort_by(f64::total_cmp);
    let seconds = times[times.len() / 2];
    let inertia: f64 = x
        .axis_iter(Axis(0))
        .zip(result.nearest.labels())
        .map(|(row, l)| {
            row.iter()
                .zip(result.centroids.row(l))
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
        })
        .sum();
    if let Some(p) = &args.save_centroids {
        write_npy(p, &result.centroids).with_context(|| format!("writing {}", p.display()))?;
    }
    println!(
        "{}",
        serde_json::json!({
            "seconds": seconds,
            "inertia": inertia,
            "iterations": result.iterations,
        })
    );
    Ok(())
}

/// One fit, its time appended to `times`.
fn fit_timed(
    x: &Array2<f64>,
    init: &Init,
    config: &KMeansConfig,
    times: &mut Vec<f64>,
) -> Result<KMeansFit> {
    let start = Instant::now();
    let result = fit(x.view(), None, init, config)?;
    times.push(start.elapsed().as_secs_f64());
    Ok(result)
}
