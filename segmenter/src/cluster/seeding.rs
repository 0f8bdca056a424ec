//! Greedy k-means++ seeding, as in scikit-learn's `_kmeans_plusplus`: each new centre
//! is the best of `2 + ln k` candidates drawn with probability proportional to the
//! weighted squared distance to the nearest centre chosen so far.

use ndarray::Array2;
use rand::Rng;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use super::kernel::{for_each_group, Centres, Prepared};

/// Picks `k` rows of `data` as initial centres; returns them as a `k × D` matrix.
pub(crate) fn kmeans_plusplus(data: &Prepared, k: usize, seed: u64) -> Array2<f64> {
    let (n, d) = data.x.dim();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let trials = 2 + (k as f64).ln() as usize;
    let mut chosen = Vec::with_capacity(k);

    // First centre: a row drawn with probability proportional to its weight.
    let first = match &data.weights {
        None => rng.gen_range(0..n),
        Some(w) => {
            let cum = cumulative(w.iter().map(|&v| f64::from(v)));
            pick(&cum, rng.gen::<f64>() * cum[n - 1])
        }
    };
    chosen.push(first);
    let mut closest = vec![0.0_f32; n];
    nearest_distances(data, first, &mut closest);

    let mut scratch = vec![0.0_f32; n * trials];
    while chosen.len() < k {
        let cum = cumulative(
            closest
                .iter()
                .enumerate()
                .map(|(i, &c)| f64::from(c) * f64::from(data.weight(i))),
        );
        let total = cum[n - 1];
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                if total > 0.0 {
                    pick(&cum, rng.gen::<f64>() * total)
                } else {
                    rng.gen_range(0..n)
                }
            })
            .collect();
        let pots = candidate_potentials(data, &candidates, &closest, &mut scratch);
        let best = (0..trials)
            .min_by(|&a, &b| pots[a].total_cmp(&pots[b]))
            .unwrap_or(0);
        closest
            .par_iter_mut()
            .enumerate()
            .for_each(|(i, c)| *c = scratch[i * trials + best]);
        chosen.push(candidates[best]);
    }
    let mut centres = Array2::zeros((k, d));
    for (j, &i) in chosen.iter().enumerate() {
        centres.row_mut(j).assign(&data.x.row(i).mapv(f64::from));
    }
    centres
}

/// For each candidate, the weighted potential if it were added; fills `scratch`
/// (`n × trials`) with the per-row minimum of `closest` and the candidate distance.
fn candidate_potentials(
    data: &Prepared,
    candidates: &[usize],
    closest: &[f32],
    scratch: &mut [f32],
) -> Vec<f64> {
    let t = candidates.len();
    let centres = rows_as_centres(data, candidates);
    let partials = for_each_group(
        data,
        &centres,
        scratch,
        t,
        || vec![0.0_f64; t],
        |acc, i, dist, out| {
            let w = f64::from(data.weight(i));
            for ((a, o), &dv) in acc.iter_mut().zip(out.iter_mut()).zip(dist) {
                let m = dv.min(closest[i]);
                *o = m;
                *a += w * f64::from(m);
            }
        },
    );
    sum_in_order(partials, t)
}

/// Sets `closest` to the squared distance of each row to row `first`.
fn nearest_distances(data: &Prepared, first: usize, closest: &mut [f32]) {
    let centres = rows_as_centres(data, &[first]);
    for_each_group(
        data,
        &centres,
        closest,
        1,
        || (),
        |_, _, dist, out| out[0] = dist[0],
    );
}

fn rows_as_centres(data: &Prepared, rows: &[usize]) -> Centres {
    let d = data.x.ncols();
    let mut c = Array2::<f64>::zeros((rows.len(), d));
    for (j, &i) in rows.iter().enumerate() {
        c.row_mut(j).assign(&data.x.row(i).mapv(f64::from));
    }
    Centres::new(c.view())
}

fn sum_in_order(partials: Vec<Vec<f64>>, len: usize) -> Vec<f64> {
    partials.into_iter().fold(vec![0.0; len], |mut s, p| {
        s.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        s
    })
}

fn cumulative(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    values
        .map(|v| {
            acc += v;
            acc
        })
        .collect()
}

/// First index whose cumulative value is ≥ `target` (numpy `searchsorted`), clipped.
fn pick(cum: &[f64], target: f64) -> usize {
    cum.partition_point(|&c| c < target).min(cum.len() - 1)
}
