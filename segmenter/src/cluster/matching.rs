//! Keeping segment ids stable: new centroids are matched to the previous run's by a
//! minimum-cost assignment (Hungarian / Kuhn–Munkres on Euclidean distances). A
//! match farther than `max_distance` does not count: that centroid is a genuinely
//! new segment and gets a fresh id from the [`IdAllocator`], which never reuses one.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

/// Hands out segment ids `S1`, `S2`, … in order; carried in the model so an id is
/// never given twice, even after its segment was retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdAllocator {
    /// Number the next id will carry.
    pub next_id: u64,
}

impl Default for IdAllocator {
    fn default() -> Self {
        Self { next_id: 1 }
    }
}

impl IdAllocator {
    /// Returns a fresh id and advances the counter.
    pub fn allocate(&mut self) -> String {
        let id = format!("S{}", self.next_id);
        self.next_id += 1;
        id
    }
}

/// Outcome of [`match_centroids`].
#[derive(Debug, Clone, PartialEq)]
pub struct CentroidMatch {
    /// Segment id of each new centroid, in the new centroids' order.
    pub ids: Vec<String>,
    /// For each new centroid, the index of the old centroid it continues, if any.
    pub previous: Vec<Option<usize>>,
    /// Ids allocated in this match (genuinely new segments).
    pub created: Vec<String>,
    /// Old ids no new centroid continues (retired segments).
    pub retired: Vec<String>,
}

/// Matches `new` centroids to `old` ones (both `k × D`, any k): as many pairs within
/// `max_distance` (Euclidean) as there can be, and of those matchings the one of least
/// total distance; a farther pair counts as no match, whatever its length. Each
/// unmatched new centroid gets a fresh id from `ids`.
pub fn match_centroids(
    old: ArrayView2<f64>,
    old_ids: &[String],
    new: ArrayView2<f64>,
    max_distance: f64,
    ids: &mut IdAllocator,
) -> CentroidMatch {
    assert_eq!(old.nrows(), old_ids.len(), "one id per old centroid");
    let cost: Vec<Vec<f64>> = new
        .rows()
        .into_iter()
        .map(|n| {
            old.rows()
                .into_iter()
                .map(|o| {
                    n.iter()
                        .zip(o)
                        .map(|(a, b)| (a - b).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .collect()
        })
        .collect();
    // A pair farther apart than `max_distance` is no continuation: its length must
    // not steer the assignment. Every such pair costs the same, more than any set of
    // pairs within the bar can cost together, so the assignment first keeps as many
    // pairs within the bar as there can be, then the nearest of those. With plain
    // distances a far pair's length could make it break a near one (a segment that
    // vanished, a new one beside a survivor: the survivor's id went to the new
    // segment, and the survivor got a fresh one).
    let pairs_at_most = old.nrows().min(new.nrows()) as f64;
    let unmatched = (pairs_at_most + 1.0) * max_distance.abs() + 1.0;
    let capped: Vec<Vec<f64>> = cost
        .iter()
        .map(|row| {
            row.iter()
                .map(|&c| if c <= max_distance { c } else { unmatched })
                .collect()
        })
        .collect();
    let pairs = min_cost_assignment(&capped);
    let mut previous: Vec<Option<usize>> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| p.filter(|&j| cost[i][j] <= max_distance))
        .collect();
    let mut out_ids = Vec::with_capacity(new.nrows());
    let mut created = Vec::new();
    for p in &mut previous {
        match p {
            Some(j) => out_ids.push(old_ids[*j].clone()),
            None => {
                let id = ids.allocate();
                created.push(id.clone());
                out_ids.push(id);
            }
        }
    }
    let retired = (0..old.nrows())
        .filter(|j| !previous.contains(&Some(*j)))
        .map(|j| old_ids[j].clone())
        .collect();
    CentroidMatch {
        ids: out_ids,
        previous,
        created,
        retired,
    }
}

/// Minimum-cost assignment for a rectangular `rows × cols` cost matrix: each row gets
/// at most one column and each column at most one row, `min(rows, cols)` pairs in
/// all. Returns the column of each row. O(n² m) Hungarian method with potentials.
pub fn min_cost_assignment(cost: &[Vec<f64>]) -> Vec<Option<usize>> {
    let rows = cost.len();
    let cols = cost.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return vec![None; rows];
    }
    if rows > cols {
        // Solve the transpose so that rows ≤ columns.
        let t: Vec<Vec<f64>> = (0..cols)
            .map(|j| (0..rows).map(|i| cost[i][j]).collect())
            .collect();
        let mut out = vec![None; rows];
        for (j, i) in min_cost_assignment(&t).into_iter().enumerate() {
            if let Some(i) = i {
                out[i] = Some(j);
            }
        }
        return out;
    }
    // 1-based arrays as in the classic formulation; column 0 is a sentinel.
    let (n, m) = (rows, cols);
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; m + 1];
    let mut owner = vec![0_usize; m + 1];
    let mut way = vec![0_usize; m + 1];
    for i in 1..=n {
        owner[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = owner[j0];
            let (mut delta, mut j1) = (f64::INFINITY, 0);
            for j in 1..=m {
                if !used[j] {
                    let cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[owner[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if owner[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            owner[j0] = owner[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = vec![None; n];
    for j in 1..=m {
        if owner[j] != 0 {
            out[owner[j] - 1] = Some(j - 1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("S{i}")).collect()
    }

    /// Brute force over all permutations, for small square matrices.
    fn brute(cost: &[Vec<f64>]) -> f64 {
        fn go(cost: &[Vec<f64>], i: usize, used: &mut Vec<bool>) -> f64 {
            if i == cost.len() {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for j in 0..used.len() {
                if !used[j] {
                    used[j] = true;
                    best = best.min(cost[i][j] + go(cost, i + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        go(cost, 0, &mut vec![false; cost[0].len()])
    }

    #[test]
    fn hungarian_matches_brute_force() {
        let cost = vec![
            vec![4.0, 1.0, 3.0, 9.0],
            vec![2.0, 0.0, 5.0, 1.0],
            vec![3.0, 2.0, 2.0, 7.0],
            vec![8.0, 6.0, 1.0, 4.0],
        ];
        let a = min_cost_assignment(&cost);
        let total: f64 = a.iter().enumerate().map(|(i, j)| cost[i][j.unwrap()]).sum();
        assert_eq!(total, brute(&cost));
    }

    #[test]
    fn far_centroid_is_new_and_unmatched_old_is_retired() {
        let old = array![[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let new = array![[10.1, 0.0], [0.1, 0.0], [50.0, 50.0]];
        let mut alloc = IdAllocator { next_id: 4 };
        let m = match_centroids(old.view(), &ids(3), new.view(), 1.0, &mut alloc);
        assert_eq!(m.ids, vec!["S2", "S1", "S4"]);
        assert_eq!(m.created, vec!["S4"]);
        assert_eq!(m.retired, vec!["S3"]);
        assert_eq!(alloc.next_id, 5);
    }

    /// A segment vanishes (at 0) while a new one forms beside a survivor (0.65 →
    /// 0.60, the new one at 0.90): the survivor keeps its id and the new segment gets
    /// a fresh one. Over plain distances the swap (0.60 + 0.25) beats keeping
    /// (0.05 + 0.90), and the survivor's id would go to the new segment.
    #[test]
    fn a_far_pair_does_not_take_a_survivors_id() {
        let old = array![[0.0], [0.65]];
        let new = array![[0.60], [0.90]];
        let mut alloc = IdAllocator { next_id: 3 };
        let m = match_centroids(old.view(), &ids(2), new.view(), 0.3, &mut alloc);
        assert_eq!(m.ids, vec!["S2", "S3"]);
        assert_eq!(m.previous, vec![Some(1), None]);
        assert_eq!(m.created, vec!["S3"]);
        assert_eq!(m.retired, vec!["S1"]);
    }

    /// Every segment drifts almost as far as the bar: both pairs are kept, though
    /// one near pair and one new segment would cost less in distance.
    #[test]
    fn as_many_pairs_within_the_bar_as_there_can_be() {
        let old = array![[0.0], [0.30]];
        let new = array![[0.29], [0.59]];
        let mut alloc = IdAllocator { next_id: 3 };
        let m = match_centroids(old.view(), &ids(2), new.view(), 0.3, &mut alloc);
        assert_eq!(m.ids, vec!["S1", "S2"]);
        assert!(m.created.is_empty() && m.retired.is_empty());
    }

    #[test]
    fn more_new_than_old_and_fewer() {
        let old = array![[0.0], [10.0]];
        let new = array![[9.0], [1.0], [5.0]];
        let mut alloc = IdAllocator { next_id: 3 };
        let m = match_centroids(old.view(), &ids(2), new.view(), 100.0, &mut alloc);
        assert_eq!(m.ids, vec!["S2", "S1", "S3"]);
        let m = match_centroids(new.view(), &m.ids, old.view(), 100.0, &mut alloc);
        assert_eq!(m.ids, vec!["S1", "S2"]);
        assert_eq!(m.retired, vec!["S3"]);
    }

    proptest! {
        #[test]
        fn ids_stable_under_permutation(
            k in 1_usize..8,
            seed in any::<u64>(),
            perm_seed in any::<u64>(),
        ) {
            use rand::{seq::SliceRandom, Rng, SeedableRng};
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
            // Old centroids at least 3 apart along the first axis, moved a little.
            let old = Array2::from_shape_fn((k, 3), |(j, c)| {
                rng.gen_range(-1.0..1.0) + if c == 0 { 3.0 * j as f64 } else { 0.0 }
            });
            let new = old.mapv(|v| v + rng.gen_range(-0.1..0.1));
            let mut order: Vec<usize> = (0..k).collect();
            order.shuffle(&mut rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(perm_seed));
            let shuffled = new.select(ndarray::Axis(0), &order);
            let (mut a1, mut a2) = (IdAllocator { next_id: 100 }, IdAllocator { next_id: 100 });
            let plain = match_centroids(old.view(), &ids(k), new.view(), 1.0, &mut a1);
            let perm = match_centroids(old.view(), &ids(k), shuffled.view(), 1.0, &mut a2);
            for (pos, &i) in order.iter().enumerate() {
                prop_assert_eq!(&perm.ids[pos], &plain.ids[i]);
            }
            prop_assert_eq!(plain.ids, ids(k));
        }
    }
}
