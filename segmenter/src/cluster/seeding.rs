//! Greedy k-means++ seeding, as in scikit-learn's `_kmeans_plusplus`: each new centre
//! is the best of `2 + ln k` candidates drawn with probability proportional to the
//! weighted squared distance to the nearest centre chosen so far.

use ndarray::Array2;
use rand::Rng;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use super::kernel::{for_each_group, Centres, Prepared, GROUP_ROWS};

/// Picks `k` rows of `data` as initial centres; returns them as a `k × D` matrix.
pub(crate) fn kmeans_plusplus(data: &Prepared, k: usize, seed: u64) -> Array2<f64> {
    let n = data.n();
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
    // The potential (weighted squared distances to the nearest chosen centre) per
    // group of rows: draws find their group here, then their row in the group.
    let mut potential = group_potentials(data, &closest);
    while chosen.len() < k {
        let total: f64 = potential.iter().sum();
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                if total > 0.0 {
                    draw(data, &closest, &potential, rng.gen::<f64>() * total)
                } else {
                    rng.gen_range(0..n)
                }
            })
            .collect();
        let partials = candidate_potentials(data, &candidates, &closest, &mut scratch);
        let pots = sum_in_order(&partials, trials);
        let best = (0..trials)
            .min_by(|&a, &b| pots[a].total_cmp(&pots[b]))
            .unwrap_or(0);
        potential = partials.iter().map(|p| p[best]).collect();
        closest
            .par_iter_mut()
            .enumerate()
            .for_each(|(i, c)| *c = scratch[i * trials + best]);
        chosen.push(candidates[best]);
    }
    rows_of(data, &chosen)
}

/// For each candidate, the weighted potential if it were added, per group of
/// [`GROUP_ROWS`] rows; fills `scratch` (`n × trials`) with the per-row minimum of
/// `closest` and the candidate distance.
fn candidate_potentials(
    data: &Prepared,
    candidates: &[usize],
    closest: &[f32],
    scratch: &mut [f32],
) -> Vec<Vec<f64>> {
    let t = candidates.len();
    let centres = rows_as_centres(data, candidates);
    for_each_group(
        data,
        &centres,
        scratch,
        t,
        || vec![0.0_f64; t],
        |acc, first, dist, _, out| {
            for (r, (dist, out)) in dist
                .chunks_exact(t)
                .zip(out.chunks_exact_mut(t))
                .enumerate()
            {
                let i = first + r;
                let w = f64::from(data.weight(i));
                for ((a, o), &dv) in acc.iter_mut().zip(out.iter_mut()).zip(dist) {
                    let m = dv.min(closest[i]);
                    *o = m;
                    *a += w * f64::from(m);
                }
            }
        },
    )
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
        |_, _, dist, _, out| out.copy_from_slice(dist),
    );
}

/// Rows `rows` of the data, in `f64`, one after the other.
fn rows_of(data: &Prepared, rows: &[usize]) -> Array2<f64> {
    let values: Vec<f64> = rows.iter().flat_map(|&i| data.row(i)).collect();
    Array2::from_shape_vec((rows.len(), data.d()), values).expect("rows × D values")
}

fn rows_as_centres(data: &Prepared, rows: &[usize]) -> Centres {
    Centres::new(rows_of(data, rows).view())
}

fn sum_in_order(partials: &[Vec<f64>], len: usize) -> Vec<f64> {
    partials.iter().fold(vec![0.0; len], |mut s, p| {
        s.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        s
    })
}

/// Weighted squared distances to the nearest chosen centre, summed per group of
/// [`GROUP_ROWS`] rows (in row order within a group, as the candidate pass sums them).
fn group_potentials(data: &Prepared, closest: &[f32]) -> Vec<f64> {
    closest
        .par_chunks(GROUP_ROWS)
        .enumerate()
        .map(|(g, c)| {
            c.iter()
                .enumerate()
                .map(|(r, &v)| f64::from(v) * f64::from(data.weight(g * GROUP_ROWS + r)))
                .sum()
        })
        .collect()
}

/// The first row whose running potential reaches `target` (numpy's `searchsorted`
/// on the running sum, as scikit-learn draws): its group from the group sums, then
/// the row by a walk through that group; the last row if rounding leaves it short.
fn draw(data: &Prepared, closest: &[f32], potential: &[f64], target: f64) -> usize {
    let mut acc = 0.0;
    for (g, &p) in potential.iter().enumerate() {
        if acc + p >= target {
            let start = g * GROUP_ROWS;
            let end = (start + GROUP_ROWS).min(closest.len());
            for (i, &c) in closest.iter().enumerate().take(end).skip(start) {
                acc += f64::from(c) * f64::from(data.weight(i));
                if acc >= target {
                    return i;
                }
            }
            return end - 1;
        }
        acc += p;
    }
    closest.len() - 1
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::kernel::Storage;
    use ndarray::Array2;
    use rand::Rng;

    /// Drawing through group sums finds the same row as numpy's `searchsorted` on
    /// the running sum of the whole column, weighted or not, across group borders.
    #[test]
    fn draws_match_a_search_of_the_running_sum() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let n = 2 * GROUP_ROWS + 123;
        let x = Array2::from_shape_fn((n, 2), |_| rng.gen_range(-1.0..1.0));
        let w: Vec<f64> = (0..n)
            .map(|i| {
                if i % 7 == 0 {
                    0.0
                } else {
                    rng.gen_range(0.5..2.0)
                }
            })
            .collect();
        for weights in [None, Some(w.as_slice())] {
            let data = Prepared::new(x.view(), weights, Storage::Converted).unwrap();
            let closest: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.25).collect();
            let potential = group_potentials(&data, &closest);
            let cum = cumulative((0..n).map(|i| f64::from(closest[i]) * f64::from(data.weight(i))));
            let total: f64 = potential.iter().sum();
            for _ in 0..500 {
                let target = rng.gen::<f64>() * total;
                let want = pick(&cum, target);
                let got = draw(&data, &closest, &potential, target);
                // The two sums add in a different order: they may differ only
                // where the running sum is within rounding of the target.
                if got != want {
                    assert!(
                        (cum[got.min(want)] - target).abs() < 1e-9 * total,
                        "{got} vs {want}"
                    );
                }
            }
            assert_eq!(draw(&data, &closest, &potential, total * 2.0), n - 1);
        }
    }
}
