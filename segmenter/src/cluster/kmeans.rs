//! k-means: greedy k-means++ seeding or a warm start from given centroids, then Lloyd
//! iterations on the data as `f32` (a copy; a warm start converts the rows as it reads
//! them until its fifth iteration) with distances from register tiles (see
//! `tiles.rs`), spread over all cores with rayon. After the first iteration Hamerly's
//! bounds (see `hamerly.rs`) skip the rows that cannot change cluster; a last full
//! pass gives exact nearest and second-nearest distances. A cold fit then tries
//! the swap of centres its distances point to (see `swap.rs`) and keeps it only
//! when the inertia falls.
//!
//! Convergence and inertia follow scikit-learn: the run stops when the labels stop
//! changing or when the summed squared centre shift is at most
//! `tol × mean per-feature variance`; the result's labels always belong to the
//! returned centroids. Results are deterministic for a given seed whatever the
//! number of threads: partial sums are folded in a fixed order.

use ndarray::{Array2, ArrayView2};

use super::hamerly::{bounded_step, RowState};
use super::kernel::{for_each_group, Centres, Prepared, Storage, BLOCK_ROWS};
use super::seeding::kmeans_plusplus;
use super::swap;
use super::tiles::nearest_rows;
use super::ClusterError;

/// How the centroids of a k-means run start.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// Greedy k-means++ seeding with `2 + ln k` candidates per centre.
    KMeansPlusPlus,
    /// Warm start from these centroids (`k × D`); `k` is taken from their row count.
    Centroids(Array2<f64>),
}

/// Parameters of a k-means run.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansConfig {
    /// Number of clusters for k-means++ seeding (ignored for a warm start).
    pub k: usize,
    /// Maximum number of Lloyd iterations (in all, with a cold fit's swaps).
    pub max_iter: usize,
    /// Relative tolerance: stop when the summed squared centre shift is at most
    /// `tol` times the mean per-feature variance (as scikit-learn).
    pub tol: f64,
    /// Seed of the k-means++ draws.
    pub seed: u64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        Self {
            k: 8,
            max_iter: 300,
            tol: 1e-4,
            seed: 0,
        }
    }
}

/// Nearest and second-nearest centroid of each row: the fit's own row states (a
/// label and two `f32` distances, 12 bytes a row), read in place rather than copied
/// into three `n`-long vectors (24 bytes a row of fresh memory, a tenth of a warm
/// fit's time at 200k rows).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NearestCentres {
    rows: Vec<RowState>,
}

impl NearestCentres {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Index of the nearest centroid of row `i`.
    pub fn label(&self, i: usize) -> usize {
        self.rows[i].label as usize
    }

    /// Euclidean distance of row `i` to its nearest centroid.
    pub fn distance(&self, i: usize) -> f64 {
        f64::from(self.rows[i].upper)
    }

    /// Euclidean distance of row `i` to its second-nearest centroid (infinite when
    /// k = 1).
    pub fn second_distance(&self, i: usize) -> f64 {
        f64::from(self.rows[i].lower)
    }

    /// The nearest centroid of every row.
    pub fn labels(&self) -> Vec<usize> {
        self.rows.iter().map(|r| r.label as usize).collect()
    }
}

/// Result of [`fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansFit {
    /// Final centroids, `k × D`.
    pub centroids: Array2<f64>,
    /// Labels and distances of every row with respect to `centroids`.
    pub nearest: NearestCentres,
    /// Weighted sum of squared distances to the assigned centroid.
    pub inertia: f64,
    /// Lloyd iterations run, with those of the swaps tried (kept or not): at most
    /// `max_iter` in all.
    pub iterations: usize,
    /// Whether the run stopped by convergence rather than by `max_iter`.
    pub converged: bool,
}

/// Rows summed in `f32` before the block is folded into the `f64` sums.
const FLUSH_ROWS: usize = 256;

/// One group's contribution to the M-step.
struct Partial {
    sums: Vec<f64>,
    block: Vec<f32>,
    pending: usize,
    weights: Vec<f64>,
    inertia: f64,
    /// Scratch: nearest centres of the block being visited.
    near: Vec<(usize, f32, f32)>,
}

impl Partial {
    fn new(k: usize, d: usize) -> Self {
        Self {
            sums: vec![0.0; k * d],
            block: vec![0.0; k * d],
            pending: 0,
            weights: vec![0.0; k],
            inertia: 0.0,
            near: Vec::with_capacity(BLOCK_ROWS),
        }
    }

    /// The groups' partials folded in group order.
    fn fold(partials: Vec<Partial>, k: usize, d: usize) -> Partial {
        let mut total = Partial::new(k, d);
        for mut p in partials {
            p.flush();
            total.sums.iter_mut().zip(p.sums).for_each(|(a, b)| *a += b);
            total
                .weights
                .iter_mut()
                .zip(p.weights)
                .for_each(|(a, b)| *a += b);
            total.inertia += p.inertia;
        }
        total
    }

    /// Adds the `f32` block sums into the `f64` sums and clears them.
    fn flush(&mut self) {
        for (s, b) in self.sums.iter_mut().zip(self.block.iter_mut()) {
            *s += f64::from(*b);
            *b = 0.0;
        }
        self.pending = 0;
    }
}

/// Clusters the rows of `x` (samples × features), optionally weighted.
pub fn fit(
    x: ArrayView2<f64>,
    weights: Option<&[f64]>,
    init: &Init,
    config: &KMeansConfig,
) -> Result<KMeansFit, ClusterError> {
    let (n, d) = x.dim();
    let k = match init {
        Init::KMeansPlusPlus => config.k,
        Init::Centroids(c) => c.nrows(),
    };
    super::validate(x, weights, k)?;
    if let Init::Centroids(c) = init {
        if c.ncols() != d {
            return Err(ClusterError::DimensionMismatch {
                what: "initial centroids",
                expected: d,
                found: c.ncols(),
            });
        }
    }
    let mut rows: Vec<RowState> = bytemuck::zeroed_vec(n);
    // Seeding reads the rows many times: they are converted to `f32` first. A warm
    // start reads them in place, converting each block as it goes, and its first
    // E-step prepares them (`Prepared::visiting`); `lloyd` converts them once the
    // fit runs long (see `STREAMED_ITERATIONS`).
    let (mut data, centroids, first) = match init {
        Init::KMeansPlusPlus => {
            let data = prepare(x, weights, Storage::Converted)?;
            let centroids = kmeans_plusplus(&data, k, config.seed);
            (data, centroids, None)
        }
        Init::Centroids(c) => {
            let centres = Centres::new(c.view());
            let (data, partials) = Prepared::visiting(
                x,
                Storage::Streamed,
                weights,
                &centres,
                &mut rows,
                || Partial::new(k, d),
                lloyd_visit::<true>,
            )
            .map_err(non_finite)?;
            (data, c.clone(), Some(Partial::fold(partials, k, d)))
        }
    };
    let tol = config.tol * data.mean_variance;
    let mut run = lloyd(&mut data, centroids, &mut rows, first, config.max_iter, tol);
    // A cold fit tries the swap that `swap::propose` finds worth trying, and keeps
    // it when the inertia falls (a warm start keeps the structure it was given).
    let mut iterations = run.iterations;
    if matches!(init, Init::KMeansPlusPlus) {
        for _ in 0..MAX_SWAPS {
            let left = config.max_iter.saturating_sub(iterations);
            let Some(swapped) = swap::propose(&data, &run.centroids, &rows).filter(|_| left > 0)
            else {
                break;
            };
            let mut trial_rows = bytemuck::zeroed_vec(n);
            let trial = lloyd(&mut data, swapped, &mut trial_rows, None, left, tol);
            iterations += trial.iterations;
            if trial.inertia >= run.inertia {
                break;
            }
            (run, rows) = (trial, trial_rows);
        }
    }
    Ok(KMeansFit {
        centroids: run.centroids,
        nearest: NearestCentres { rows },
        inertia: run.inertia,
        iterations,
        converged: run.converged,
    })
}

/// Swaps a cold fit tries at most.
const MAX_SWAPS: usize = 3;

/// Where [`lloyd`] ended.
struct Run {
    centroids: Array2<f64>,
    inertia: f64,
    iterations: usize,
    converged: bool,
}

/// Iterations a fit reads streamed rows for before converting them. A short warm
/// fit reads each row twice (its first and its last E-step) and the bounded steps
/// between read a few: converting on each read costs about what writing a copy
/// costs, without the copy (medians of interleaved runs against a copy: 1M × 100
/// after a 5% drift, 2 iterations, 0.307 → 0.297 s and peak RSS 1.22 → 0.83 GB;
/// 1M × 200, 5 iterations, 0.90 → 0.49 s; 200k × 48, 5 iterations, 0.032 →
/// 0.038 s). Each bounded step on streamed rows costs more (~15 ms at 1M × 100),
/// so a fit still running after a few iterations converts once: from 20 rows as
/// centres, 120 iterations took 4.96 s streamed throughout, 3.04 s with a copy
/// from the start and 3.01 s converted after 5.
const STREAMED_ITERATIONS: usize = 5;

/// Lloyd iterations from `centroids` (`first`: the first E-step, when already
/// done), then a last full E-step, which leaves exact nearest and second-nearest
/// distances in `rows` and gives the inertia. Streamed rows are converted after
/// [`STREAMED_ITERATIONS`].
fn lloyd(
    data: &mut Prepared,
    mut centroids: Array2<f64>,
    rows: &mut [RowState],
    mut first: Option<Partial>,
    max_iter: usize,
    tol: f64,
) -> Run {
    let (mut iterations, mut converged) = (0, false);
    let mut previous: Option<Array2<f64>> = None;
    let (mut sums, mut totals) = (Vec::new(), Vec::new());
    while iterations < max_iter {
        if iterations == STREAMED_ITERATIONS {
            data.convert();
        }
        iterations += 1;
        // The first E-step computes every distance; later ones use Hamerly's bounds
        // and update the M-step sums only for the rows that changed cluster.
        let changed = match &previous {
            None => {
                let step = first
                    .take()
                    .unwrap_or_else(|| lloyd_step::<true>(data, &centroids, rows));
                (sums, totals) = (step.sums, step.weights);
                // Every row gets its first label here (the zeros the states held
                // before were none).
                rows.len()
            }
            Some(old) => bounded_step(data, old, &centroids, rows, &mut sums, &mut totals),
        };
        let new = update_centroids(data, &centroids, &sums, &totals, rows);
        let shift: f64 = (&new - &centroids).mapv(|v| v * v).sum();
        previous = Some(std::mem::replace(&mut centroids, new));
        if changed == 0 || shift <= tol {
            converged = true;
            break;
        }
    }
    // The bounds are only bounds: a last full E-step for the returned centroids.
    let inertia = lloyd_step::<false>(data, &centroids, rows).inertia;
    Run {
        centroids,
        inertia,
        iterations,
        converged,
    }
}

/// Nearest and second-nearest of `centroids` (`k × D`) for each row of `x`.
pub fn nearest(
    x: ArrayView2<f64>,
    centroids: ArrayView2<f64>,
) -> Result<NearestCentres, ClusterError> {
    super::validate(x, None, centroids.nrows())?;
    if centroids.ncols() != x.ncols() {
        return Err(ClusterError::DimensionMismatch {
            what: "centroids",
            expected: x.ncols(),
            found: centroids.ncols(),
        });
    }
    // One pass: the rows are converted as they are read, without an `n × D` copy.
    let data = prepare(x, None, Storage::Streamed)?;
    let mut rows = bytemuck::zeroed_vec(x.nrows());
    lloyd_step::<false>(&data, &centroids.to_owned(), &mut rows);
    Ok(NearestCentres { rows })
}

fn prepare<'a>(
    x: ArrayView2<'a, f64>,
    weights: Option<&[f64]>,
    storage: Storage,
) -> Result<Prepared<'a>, ClusterError> {
    Prepared::new(x, weights, storage).map_err(non_finite)
}

fn non_finite(row: usize) -> ClusterError {
    ClusterError::NonFinite {
        what: "features",
        row,
    }
}

/// E-step (labels, distances, inertia), fused with the sums the M-step needs when
/// `SUMS` (the last E-step of a fit, after its last M-step, needs none).
fn lloyd_step<const SUMS: bool>(
    data: &Prepared,
    centroids: &Array2<f64>,
    rows: &mut [RowState],
) -> Partial {
    let (k, d) = centroids.dim();
    let centres = Centres::new(centroids.view());
    let weights = data.weights.as_deref();
    let partials = for_each_group(
        data,
        &centres,
        rows,
        1,
        || Partial::new(k, d),
        |acc, first, dist, xs, out| lloyd_visit::<SUMS>(acc, weights, first, dist, xs, out),
    );
    Partial::fold(partials, k, d)
}

/// One block of an E-step: rows `first..` (`xs`, `d` values each), their squared
/// distances to the `k` centres (`dist`, row-major) and their states (`out`).
fn lloyd_visit<const SUMS: bool>(
    acc: &mut Partial,
    weights: Option<&[f32]>,
    first: usize,
    dist: &[f32],
    xs: &[f32],
    out: &mut [RowState],
) {
    let k = acc.weights.len();
    let d = acc.sums.len() / k;
    let mut near = std::mem::take(&mut acc.near);
    near.clear();
    nearest_rows(dist, k, &mut near);
    for (r, (&(best, d1, d2), state)) in near.iter().zip(out).enumerate() {
        let w = weights.map_or(1.0, |w| w[first + r]);
        *state = RowState {
            label: best as u32,
            upper: d1.sqrt(),
            lower: d2.sqrt(),
        };
        acc.inertia += f64::from(w) * f64::from(d1);
        if !SUMS {
            continue;
        }
        acc.weights[best] += f64::from(w);
        let sum = &mut acc.block[best * d..(best + 1) * d];
        let row = &xs[r * d..(r + 1) * d];
        if w == 1.0 {
            sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
        } else {
            sum.iter_mut().zip(row).for_each(|(s, &v)| *s += w * v);
        }
        acc.pending += 1;
        if acc.pending == FLUSH_ROWS {
            acc.flush();
        }
    }
    acc.near = near;
}

/// Means of the assigned rows; an empty cluster is moved onto the row farthest from
/// its centre (a different row for each empty cluster), as scikit-learn does.
fn update_centroids(
    data: &Prepared,
    old: &Array2<f64>,
    sums: &[f64],
    weights: &[f64],
    rows: &[RowState],
) -> Array2<f64> {
    let (k, d) = old.dim();
    let mut sums = sums.to_vec();
    let mut weights = weights.to_vec();
    let empty: Vec<usize> = (0..k).filter(|&j| weights[j] <= 0.0).collect();
    if !empty.is_empty() {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        let take = empty.len().min(order.len());
        order.select_nth_unstable_by(take - 1, |&a, &b| {
            rows[b].upper.total_cmp(&rows[a].upper).then(a.cmp(&b))
        });
        order.truncate(take);
        order.sort_by(|&a, &b| rows[b].upper.total_cmp(&rows[a].upper).then(a.cmp(&b)));
        for (&j, &i) in empty.iter().zip(&order) {
            let from = rows[i].label as usize;
            let w = f64::from(data.weight(i));
            for (c, v) in data.row(i).into_iter().enumerate() {
                sums[from * d + c] -= w * v;
                sums[j * d + c] = w * v;
            }
            weights[from] -= w;
            weights[j] = w;
        }
    }
    let mut new = old.clone();
    for j in 0..k {
        if weights[j] > 0.0 {
            for c in 0..d {
                new[[j, c]] = sums[j * d + c] / weights[j];
            }
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};
    use rand::{Rng, SeedableRng};

    fn blobs(seed: u64) -> (Array2<f64>, Vec<usize>) {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let centres = [[0.0, 0.0, 0.0], [8.0, 0.0, 1.0], [0.0, 8.0, -1.0]];
        let truth: Vec<usize> = (0..3000).map(|i| i % 3).collect();
        let x = Array2::from_shape_fn((3000, 3), |(i, c)| {
            centres[truth[i]][c] + rng.gen_range(-1.0..1.0)
        });
        (x, truth)
    }

    #[test]
    fn recovers_blobs_deterministically() {
        let (x, truth) = blobs(1);
        let cfg = KMeansConfig {
            k: 3,
            seed: 9,
            ..Default::default()
        };
        let a = fit(x.view(), None, &Init::KMeansPlusPlus, &cfg).unwrap();
        let b = fit(x.view(), None, &Init::KMeansPlusPlus, &cfg).unwrap();
        assert_eq!(a, b, "same seed, same result");
        assert!(a.converged);
        let ari = crate::cluster::metrics::adjusted_rand_index(&a.nearest.labels(), &truth);
        assert!((ari - 1.0).abs() < 1e-12);
        // Inertia agrees with a direct f64 computation to f32 precision.
        let direct: f64 = (0..x.nrows())
            .map(|i| {
                (&x.row(i) - &a.centroids.row(a.nearest.label(i)))
                    .mapv(|v| v * v)
                    .sum()
            })
            .sum();
        assert!(
            (a.inertia - direct).abs() / direct < 1e-4,
            "{} vs {direct}",
            a.inertia
        );
        // Second-nearest is never nearer than the nearest.
        let n = &a.nearest;
        assert!((0..n.len()).all(|i| n.distance(i) <= n.second_distance(i)));
    }

    /// Plain f64 Lloyd with scikit-learn's stopping rule, as a reference for the
    /// bounded (Hamerly) iterations.
    fn reference_lloyd(x: &Array2<f64>, init: &Array2<f64>, tol: f64) -> (Array2<f64>, usize) {
        let mut c = init.clone();
        let mut labels = vec![usize::MAX; x.nrows()];
        for it in 1..=300 {
            let mut changed = false;
            for (i, row) in x.rows().into_iter().enumerate() {
                let d = |j: usize| (&row - &c.row(j)).mapv(|v| v * v).sum();
                let best = (0..c.nrows())
                    .min_by(|&a, &b| d(a).total_cmp(&d(b)))
                    .unwrap();
                changed |= labels[i] != best;
                labels[i] = best;
            }
            let mut new = Array2::<f64>::zeros(c.dim());
            let mut counts = vec![0.0; c.nrows()];
            for (i, row) in x.rows().into_iter().enumerate() {
                let mut r = new.row_mut(labels[i]);
                r += &row;
                counts[labels[i]] += 1.0;
            }
            for (j, n) in counts.iter().enumerate() {
                let mut r = new.row_mut(j);
                r /= *n;
            }
            let shift = (&new - &c).mapv(|v| v * v).sum();
            c = new;
            if !changed || shift <= tol {
                return (c, it);
            }
        }
        (c, 300)
    }

    #[test]
    fn bounded_iterations_follow_plain_lloyd() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
        // Overlapping blobs, so it takes many iterations.
        let x = Array2::from_shape_fn((2000, 5), |(i, c)| {
            (i % 6) as f64 * if c == i % 5 { 1.5 } else { 0.0 } + rng.gen_range(-2.0..2.0)
        });
        let init = x.slice(ndarray::s![0..6, ..]).to_owned();
        let cfg = KMeansConfig::default();
        let ours = fit(x.view(), None, &Init::Centroids(init.clone()), &cfg).unwrap();
        let data = Prepared::new(x.view(), None, Storage::Converted).unwrap();
        let (reference, iterations) = reference_lloyd(&x, &init, cfg.tol * data.mean_variance);
        assert!(iterations > 5, "test data should need several iterations");
        assert_eq!(ours.iterations, iterations);
        let diff = (&ours.centroids - &reference)
            .mapv(f64::abs)
            .fold(0.0, |a: f64, &b| a.max(b));
        assert!(diff < 1e-4, "centroids differ by {diff}");
    }

    #[test]
    fn warm_start_from_the_answer_converges_at_once() {
        let (x, _) = blobs(2);
        let cfg = KMeansConfig {
            k: 3,
            ..Default::default()
        };
        let cold = fit(x.view(), None, &Init::KMeansPlusPlus, &cfg).unwrap();
        let warm = fit(
            x.view(),
            None,
            &Init::Centroids(cold.centroids.clone()),
            &cfg,
        )
        .unwrap();
        assert!(warm.iterations <= 2, "{} iterations", warm.iterations);
        assert_eq!(warm.nearest.labels(), cold.nearest.labels());
        let shift = (&warm.centroids - &cold.centroids).mapv(f64::abs).sum();
        assert!(shift < 1e-3, "{shift}");
    }

    /// `nearest` converts the rows as it reads them (no copy); the fit converted them
    /// once: the same `f32` values, so the same labels and distances, bit for bit —
    /// also from a transposed (column-major) matrix, and with tiny values flushed.
    #[test]
    fn streamed_rows_read_as_converted_ones() {
        let (mut x, _) = blobs(3);
        x.column_mut(2).mapv_inplace(|v| v * 1e-8);
        let cfg = KMeansConfig {
            k: 3,
            ..Default::default()
        };
        let fit = fit(x.view(), None, &Init::KMeansPlusPlus, &cfg).unwrap();
        let near = nearest(x.view(), fit.centroids.view()).unwrap();
        assert_eq!(near, fit.nearest);
        let columns = x.t().to_owned();
        let near_t = nearest(columns.t(), fit.centroids.view()).unwrap();
        assert_eq!(near_t, fit.nearest);
        let mut bad = x.clone();
        bad[[1234, 1]] = f64::INFINITY;
        assert_eq!(
            nearest(bad.view(), fit.centroids.view()),
            Err(ClusterError::NonFinite {
                what: "features",
                row: 1234
            })
        );
    }

    /// Two centres in one blob and one between two others: Lloyd iterations stay
    /// there; the swap its distances propose finds the blobs, and on the blobs
    /// found nothing more is proposed.
    #[test]
    fn a_swap_leaves_the_local_minimum_lloyd_cannot() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(4);
        let truth: Vec<usize> = (0..2000).map(|i| i % 4).collect();
        let x = Array2::from_shape_fn((2000, 2), |(i, c)| {
            let centre = if c == 0 { 10.0 * truth[i] as f64 } else { 0.0 };
            centre + rng.gen_range(-1.0..1.0)
        });
        let mut data = Prepared::new(x.view(), None, Storage::Converted).unwrap();
        let tol = 1e-4 * data.mean_variance;
        let stuck = array![[-0.3, 0.0], [0.3, 0.0], [15.0, 0.0], [30.0, 0.0]];
        let mut rows = bytemuck::zeroed_vec(2000);
        let bad = lloyd(&mut data, stuck, &mut rows, None, 300, tol);
        assert!(bad.converged);
        assert!(
            (bad.centroids[[2, 0]] - 15.0).abs() < 0.5,
            "still between two blobs"
        );

        let swapped = swap::propose(&data, &bad.centroids, &rows).expect("a swap to try");
        let mut rows = bytemuck::zeroed_vec(2000);
        let good = lloyd(&mut data, swapped, &mut rows, None, 300, tol);
        assert!(
            good.inertia < 0.5 * bad.inertia,
            "{} vs {}",
            good.inertia,
            bad.inertia
        );
        let labels: Vec<usize> = rows.iter().map(|r| r.label as usize).collect();
        let ari = crate::cluster::metrics::adjusted_rand_index(&labels, &truth);
        assert!((ari - 1.0).abs() < 1e-12, "ARI {ari}");
        assert_eq!(swap::propose(&data, &good.centroids, &rows), None);

        // `fit` from the stuck centres keeps them (a warm start is not swapped).
        let warm = Init::Centroids(array![[-0.3, 0.0], [0.3, 0.0], [15.0, 0.0], [30.0, 0.0]]);
        let kept = fit(x.view(), None, &warm, &KMeansConfig::default()).unwrap();
        assert_eq!(kept.inertia, bad.inertia);
    }

    #[test]
    fn weights_pull_the_centroid() {
        let x = array![[0.0], [1.0], [10.0], [11.0]];
        let w = [1.0, 3.0, 1.0, 1.0];
        let cfg = KMeansConfig {
            k: 2,
            ..Default::default()
        };
        let init = Init::Centroids(array![[0.0], [10.0]]);
        let f = fit(x.view(), Some(&w), &init, &cfg).unwrap();
        assert!((f.centroids[[0, 0]] - 0.75).abs() < 1e-6);
        assert!((f.inertia - (3.0 * 0.0625 + 0.5625 + 0.25 + 0.25)).abs() < 1e-5);
    }

    #[test]
    fn empty_cluster_is_relocated_and_bad_input_rejected() {
        let x = array![[0.0], [0.1], [5.0], [5.1]];
        let init = Init::Centroids(array![[0.0], [100.0]]);
        let f = fit(x.view(), None, &init, &KMeansConfig::default()).unwrap();
        assert_eq!(f.nearest.label(0), f.nearest.label(1));
        assert_ne!(f.nearest.label(0), f.nearest.label(2));
        let cfg = KMeansConfig {
            k: 5,
            ..Default::default()
        };
        assert!(matches!(
            fit(x.view(), None, &Init::KMeansPlusPlus, &cfg),
            Err(ClusterError::InvalidK { .. })
        ));
        let nan = array![[0.0], [f64::NAN]];
        let cfg = KMeansConfig {
            k: 1,
            ..Default::default()
        };
        assert_eq!(
            fit(nan.view(), None, &Init::KMeansPlusPlus, &cfg),
            Err(ClusterError::NonFinite {
                what: "features",
                row: 1
            })
        );
    }
}
