//! Lloyd iterations after the first, with Hamerly's bounds: each row keeps an upper
//! bound on the distance to its centre and a lower bound on the distance to any other
//! centre. When centres move by δ, the bounds move by δ; a row whose upper bound is
//! below both its lower bound and half the gap to the nearest other centre cannot
//! change cluster and is skipped. Only the remaining rows go, in blocks, to the
//! distance tiles (which read them in place), and the M-step sums are updated for
//! the rows that changed.

use ndarray::Array2;
use rayon::prelude::*;

use super::kernel::{Centres, Gather, Next, Prepared, BLOCK_ROWS, GROUP_ROWS};
use super::tiles::nearest_rows;

/// Per-row state: label and Euclidean bounds (exact after a full step). All zeros
/// is a state (`bytemuck::Zeroable`): a fit's `n` states are zeroed memory, which
/// the first E-step's threads fault in as they write it, rather than a value
/// written over all of it on one thread first (1.0–1.4 ms of a single warm fit at
/// 200k rows, while the other core waited).
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Zeroable)]
#[repr(C)]
pub(crate) struct RowState {
    /// Index of the assigned centre.
    pub label: u32,
    /// Upper bound on the distance to the assigned centre.
    pub upper: f32,
    /// Lower bound on the distance to every other centre.
    pub lower: f32,
}

/// One bounded E-step from centres `old` to `new`; updates `rows` and the running
/// M-step `sums` (`k × D`, row-major) and `weights` for the rows that changed.
/// Returns the number of rows whose label changed.
pub(crate) fn bounded_step(
    data: &Prepared,
    old: &Array2<f64>,
    new: &Array2<f64>,
    rows: &mut [RowState],
    sums: &mut [f64],
    weights: &mut [f64],
) -> usize {
    let (k, d) = new.dim();
    let dist = |a: ndarray::ArrayView1<f64>, b: ndarray::ArrayView1<f64>| {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q) * (p - q))
            .sum::<f64>()
            .sqrt()
    };
    let delta: Vec<f32> = (0..k)
        .map(|j| dist(old.row(j), new.row(j)) as f32)
        .collect();
    let (mut first, mut second, mut arg) = (0.0_f32, 0.0_f32, usize::MAX);
    for (j, &v) in delta.iter().enumerate() {
        if v > first {
            (second, first, arg) = (first, v, j);
        } else if v > second {
            second = v;
        }
    }
    let other_shift = |j: usize| if j == arg { second } else { first };
    let half_gap: Vec<f32> = (0..k)
        .map(|j| {
            let m = (0..k)
                .filter(|&o| o != j)
                .map(|o| dist(new.row(j), new.row(o)))
                .fold(f64::INFINITY, f64::min);
            (0.5 * m) as f32
        })
        .collect();
    let centres = Centres::new(new.view());
    let partials: Vec<(Vec<f64>, Vec<f64>, usize)> = rows
        .par_chunks_mut(GROUP_ROWS)
        .enumerate()
        .map(|(g, chunk)| {
            let (mut dsum, mut dw, mut changed) = (vec![0.0; k * d], vec![0.0; k], 0);
            let mut gather = Gather::new(k);
            let mut near = Vec::with_capacity(BLOCK_ROWS);
            // The group's rows whose bounds do not hold, then their distances a
            // block at a time, each block's rows asked for while the one before
            // is measured (they are scattered: no prefetcher sees them coming).
            let mut pending: Vec<usize> = Vec::new();
            for (r, st) in chunk.iter_mut().enumerate() {
                let j = st.label as usize;
                st.upper += delta[j];
                st.lower -= other_shift(j);
                if st.upper > st.lower.max(half_gap[j]) {
                    pending.push(g * GROUP_ROWS + r);
                }
            }
            let mut blocks = pending.chunks(BLOCK_ROWS).peekable();
            while let Some(idx) = blocks.next() {
                let next = blocks.peek().map_or(Next::NONE, |&n| Next::Rows(n));
                let (dist, points, at) = gather.distances(data, idx, next, &centres);
                near.clear();
                nearest_rows(dist, k, &mut near);
                for (n, (&i, &(best, d1, d2))) in idx.iter().zip(&near).enumerate() {
                    let st = &mut chunk[i - g * GROUP_ROWS];
                    let was = st.label as usize;
                    if best != was {
                        changed += 1;
                        let w = f64::from(data.weight(i));
                        for (c, &v) in points.row(at[n]).iter().enumerate() {
                            let v = w * f64::from(v);
                            dsum[was * d + c] -= v;
                            dsum[best * d + c] += v;
                        }
                        dw[was] -= w;
                        dw[best] += w;
                    }
                    *st = RowState {
                        label: best as u32,
                        upper: d1.sqrt(),
                        lower: d2.sqrt(),
                    };
                }
            }
            (dsum, dw, changed)
        })
        .collect();
    let mut changed = 0;
    for (dsum, dw, c) in partials {
        sums.iter_mut().zip(dsum).for_each(|(a, b)| *a += b);
        weights.iter_mut().zip(dw).for_each(|(a, b)| *a += b);
        changed += c;
    }
    changed
}
