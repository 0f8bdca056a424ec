//! Two segmentations of the same outlets side by side: the crosswalk (outlets and
//! value per pair of segments), the adjusted Rand index, and which segment of the one
//! corresponds to which of the other. The API's comparison of a draft with the live
//! segmentation and the segmenter's promotion of a draft (ids carried over) both use
//! it, so "the segment that became S3" means the same in both.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// One outlet's segment and value in one of the two runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Segment id.
    pub segment: String,
    /// The outlet's value in the window.
    pub value: f64,
}

/// One cell of the crosswalk: the outlets in segment `a` of the first run and `b` of
/// the second (`None`: not assigned in that run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// Segment in the first run.
    pub a: Option<String>,
    /// Segment in the second run.
    pub b: Option<String>,
    /// Outlets.
    pub outlets: usize,
    /// Their value (the second run's, or the first's for outlets only in it).
    pub value: f64,
}

/// A pair of corresponding segments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    /// Segment of the first run.
    pub a: String,
    /// Segment of the second run.
    pub b: String,
    /// Outlets in both.
    pub outlets: usize,
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crosswalk {
    /// Every non-empty cell, by `(a, b)`; the outlets over all cells are every outlet
    /// assigned in either run.
    pub cells: Vec<Cell>,
    /// Outlets assigned in both runs.
    pub common: usize,
    /// Adjusted Rand index over the outlets in both runs (1 = the same partition).
    pub ari: f64,
    /// Corresponding segments: one-to-one, greedily by shared outlets, a pair only when
    /// it holds at least half of either segment's shared outlets.
    pub matches: Vec<Match>,
}

impl Crosswalk {
    /// Compares `a` with `b` (outlet → member).
    pub fn new(a: &BTreeMap<String, Member>, b: &BTreeMap<String, Member>) -> Self {
        let mut cells: BTreeMap<(Option<String>, Option<String>), (usize, f64)> = BTreeMap::new();
        for (o, m) in a {
            let other = b.get(o);
            let value = other.map_or(m.value, |x| x.value);
            let c = cells
                .entry((Some(m.segment.clone()), other.map(|x| x.segment.clone())))
                .or_default();
            c.0 += 1;
            c.1 += value;
        }
        for (o, m) in b {
            if !a.contains_key(o) {
                let c = cells.entry((None, Some(m.segment.clone()))).or_default();
                c.0 += 1;
                c.1 += m.value;
            }
        }
        let both: Vec<(&String, &String, usize)> = cells
            .iter()
            .filter_map(|((x, y), (n, _))| Some((x.as_ref()?, y.as_ref()?, *n)))
            .collect();
        let common = both.iter().map(|c| c.2).sum();
        let ari = adjusted_rand_index(&both);
        let matches = match_segments(&both);
        Self {
            cells: cells
                .into_iter()
                .map(|((a, b), (outlets, value))| Cell {
                    a,
                    b,
                    outlets,
                    value,
                })
                .collect(),
            common,
            ari,
            matches,
        }
    }

    /// The first run's segment that `b` corresponds to, if any.
    pub fn a_of(&self, b: &str) -> Option<&str> {
        self.matches.iter().find(|m| m.b == b).map(|m| m.a.as_str())
    }
}

fn match_segments(both: &[(&String, &String, usize)]) -> Vec<Match> {
    let mut size_a: HashMap<&str, usize> = HashMap::new();
    let mut size_b: HashMap<&str, usize> = HashMap::new();
    for (a, b, n) in both {
        *size_a.entry(a.as_str()).or_default() += n;
        *size_b.entry(b.as_str()).or_default() += n;
    }
    let mut pairs: Vec<&(&String, &String, usize)> = both.iter().collect();
    // Largest overlap first; ties by ids, so the result never depends on order.
    pairs.sort_by(|x, y| y.2.cmp(&x.2).then(x.0.cmp(y.0)).then(x.1.cmp(y.1)));
    let (mut used_a, mut used_b) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    for (a, b, n) in pairs {
        if used_a.contains(a) || used_b.contains(b) {
            continue;
        }
        if 2 * n >= size_a[a.as_str()] || 2 * n >= size_b[b.as_str()] {
            used_a.push(*a);
            used_b.push(*b);
            out.push(Match {
                a: (*a).clone(),
                b: (*b).clone(),
                outlets: *n,
            });
        }
    }
    out.sort_by(|x, y| x.a.cmp(&y.a));
    out
}

/// The adjusted Rand index of a contingency table given as `(a, b, count)` cells
/// (Hubert & Arabie 1985); 1 when both sides put every outlet in one segment.
pub fn adjusted_rand_index<A: AsRef<str>, B: AsRef<str>>(cells: &[(A, B, usize)]) -> f64 {
    let pairs = |n: usize| (n as f64) * (n as f64 - 1.0) / 2.0;
    let mut rows: HashMap<&str, usize> = HashMap::new();
    let mut cols: HashMap<&str, usize> = HashMap::new();
    let mut index = 0.0;
    let mut n = 0;
    for (a, b, c) in cells {
        *rows.entry(a.as_ref()).or_default() += c;
        *cols.entry(b.as_ref()).or_default() += c;
        index += pairs(*c);
        n += c;
    }
    let sum_a: f64 = rows.values().map(|&c| pairs(c)).sum();
    let sum_b: f64 = cols.values().map(|&c| pairs(c)).sum();
    let expected = if n < 2 { 0.0 } else { sum_a * sum_b / pairs(n) };
    let max = (sum_a + sum_b) / 2.0;
    if (max - expected).abs() < 1e-12 {
        1.0
    } else {
        (index - expected) / (max - expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pairs: &[(&str, &str)]) -> BTreeMap<String, Member> {
        pairs
            .iter()
            .map(|(o, s)| {
                (
                    o.to_string(),
                    Member {
                        segment: s.to_string(),
                        value: 10.0,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_relabelled_partition_agrees_fully_and_matches_its_segments() {
        let a = run(&[("o1", "S1"), ("o2", "S1"), ("o3", "S2"), ("o4", "S2")]);
        let b = run(&[("o1", "S9"), ("o2", "S9"), ("o3", "S4"), ("o4", "S4")]);
        let c = Crosswalk::new(&a, &b);
        assert!((c.ari - 1.0).abs() < 1e-12);
        assert_eq!(c.common, 4);
        assert_eq!(c.a_of("S9"), Some("S1"));
        assert_eq!(c.a_of("S4"), Some("S2"));
        assert_eq!(c.cells.iter().map(|x| x.outlets).sum::<usize>(), 4);
    }

    #[test]
    fn outlets_in_one_run_only_and_a_split_segment() {
        let a = run(&[
            ("o1", "S1"),
            ("o2", "S1"),
            ("o3", "S1"),
            ("o4", "S1"),
            ("o5", "S2"),
        ]);
        let b = run(&[
            ("o1", "T1"),
            ("o2", "T1"),
            ("o3", "T2"),
            ("o4", "T2"),
            ("o6", "T3"),
        ]);
        let c = Crosswalk::new(&a, &b);
        // Every outlet of either run is in exactly one cell.
        assert_eq!(c.cells.iter().map(|x| x.outlets).sum::<usize>(), 6);
        assert_eq!(c.common, 4);
        // S1 split in halves: one half keeps the id, the other is new; S2 left.
        assert_eq!(c.matches.len(), 1);
        assert_eq!(c.matches[0].a, "S1");
        assert!(c.ari < 1.0);
        // Known value: 4 outlets, a = {1,1,1,1}, b = {1,1,2,2} → ARI 0.
        assert!(c.ari.abs() < 1e-12, "{}", c.ari);
    }
}
