//! `kmeans_linfa`: the same measurement as `kmeans`, with linfa-clustering's `KMeans`
//! (k-means++ seeding, one run), for the side-by-side comparison.
//!
//! linfa's tolerance is an absolute Frobenius distance between successive centroid
//! matrices, so `--tol` (relative, as scikit-learn) is converted to
//! `sqrt(tol × mean per-feature variance)`. linfa does not report its iteration
//! count, so `iterations` is `null`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use linfa::prelude::*;
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::{Array2, Axis};
use ndarray_npy::read_npy;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

/// Command-line flags, as `kmeans`.
#[derive(Debug, Parser)]
#[command(about = "Time linfa-clustering's k-means on a float64 .npy matrix")]
struct Args {
    /// The N × D float64 `.npy` matrix to cluster.
    data: PathBuf,
    /// Number of clusters (ignored with `--init`).
    #[arg(long, default_value_t = 8)]
    k: usize,
    /// Seed of the k-means++ seeding.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Maximum Lloyd iterations.
    #[arg(long, default_value_t = 300)]
    max_iter: u64,
    /// Relative tolerance, as scikit-learn's `tol`.
    #[arg(long, default_value_t = 1e-4)]
    tol: f64,
    /// Warm start from these k × D float64 centroids.
    #[arg(long)]
    init: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let x: Array2<f64> =
        read_npy(&args.data).with_context(|| format!("reading {}", args.data.display()))?;
    let init: Option<Array2<f64>> = match &args.init {
        Some(p) => Some(read_npy(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let start = Instant::now();
    let mean_variance = x.var_axis(Axis(0), 0.0).mean().unwrap_or(0.0);
    let k = init.as_ref().map_or(args.k, Array2::nrows);
    let mut params = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(args.seed))
        .n_runs(1)
        .max_n_iterations(args.max_iter)
        .tolerance((args.tol * mean_variance).sqrt().max(f64::MIN_POSITIVE));
    if let Some(c) = init {
        params = params.init_method(linfa_clustering::KMeansInit::Precomputed(c));
    }
    let dataset = DatasetBase::from(x.view());
    let model = params.fit(&dataset).context("linfa k-means")?;
    let labels = model.predict(&x);
    let seconds = start.elapsed().as_secs_f64();
    let inertia: f64 = x
        .axis_iter(Axis(0))
        .zip(labels.iter())
        .map(|(row, &l)| {
            row.iter()
                .zip(model.centroids().row(l))
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
        })
        .sum();
    println!(
        "{}",
        serde_json::json!({ "seconds": seconds, "inertia": inertia, "iterations": null })
    );
    Ok(())
}
