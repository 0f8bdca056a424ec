//! Purchasing patterns of a segment: groups of its outlets that buy the segment's
//! SKUs in a similar mix. The outlets' SKU-share vectors, restricted to the segment's
//! top [`TOP_SKUS`] SKUs by value and Hellinger-transformed, are clustered with seeded
//! k-means (k = 3, or 2, or 1 for very small segments); each pattern lists its leading
//! SKUs with their percentage share of the pattern's spend on those SKUs.

use foldhash::HashMap;

use crate::arrays::written_zeros;
use crate::cluster::transform::{hellinger, shares};
use crate::cluster::{fit, Init, KMeansConfig};
use crate::features::{Bought, FeatureSet};

/// SKUs of the segment the patterns are computed over.
pub const TOP_SKUS: usize = 50;
/// SKUs listed per pattern at most.
const LISTED_SKUS: usize = 10;
/// SKUs below this share of the pattern are not listed (the first always is).
const MIN_LISTED_PCT: f64 = 1.0;

pub use spectra_core::tables::profile::{Pattern, PatternSku};

/// Patterns of the segment made of feature-set rows `members`.
pub fn purchasing_patterns(fs: &FeatureSet, members: &[usize], seed: u64) -> Vec<Pattern> {
    let mut total: HashMap<u32, f64> = HashMap::default();
    for &i in members {
        for &Bought {
            sku: s, value: v, ..
        } in &fs.sku_spend[i]
        {
            *total.entry(s).or_default() += v;
        }
    }
    let mut top: Vec<(u32, f64)> = total.into_iter().filter(|e| e.1 > 0.0).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(TOP_SKUS);
    let column: HashMap<u32, usize> = top.iter().enumerate().map(|(c, e)| (e.0, c)).collect();
    let mut spend = written_zeros::<f64>((members.len(), top.len()));
    for (r, &i) in members.iter().enumerate() {
        for &Bought {
            sku: s, value: v, ..
        } in &fs.sku_spend[i]
        {
            if let Some(&c) = column.get(&s) {
                spend[[r, c]] += v;
            }
        }
    }
    let buyers: Vec<usize> = (0..members.len())
        .filter(|&r| spend.row(r).iter().any(|&v| v > 0.0))
        .collect();
    if buyers.is_empty() {
        return Vec::new();
    }
    let spend = spend.select(ndarray::Axis(0), &buyers);
    let k = match buyers.len() {
        n if n >= 60 => 3,
        n if n >= 8 => 2,
        _ => 1,
    };
    let labels = if k == 1 {
        vec![0; buyers.len()]
    } else {
        let x = hellinger(shares(spend.view()).view());
        let cfg = KMeansConfig {
            k,
            seed,
            ..KMeansConfig::default()
        };
        match fit(x.view(), None, &Init::KMeansPlusPlus, &cfg) {
            Ok(f) => f.nearest.labels(),
            Err(_) => vec![0; buyers.len()],
        }
    };
    let groups = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut patterns: Vec<Pattern> = (0..groups)
        .filter_map(|g| {
            let rows: Vec<usize> = (0..labels.len()).filter(|&r| labels[r] == g).collect();
            if rows.is_empty() {
                return None;
            }
            let mut sums: Vec<(usize, f64)> = (0..top.len())
                .map(|c| (c, rows.iter().map(|&r| spend[[r, c]].max(0.0)).sum()))
                .collect();
            let t: f64 = sums.iter().map(|e| e.1).sum();
            sums.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let skus = sums
                .iter()
                .map(|&(c, v)| PatternSku {
                    sku_id: fs.skus[top[c].0 as usize].clone(),
                    share_pct: if t > 0.0 { 100.0 * v / t } else { 0.0 },
                })
                .enumerate()
                .take_while(|(n, p)| *n == 0 || p.share_pct >= MIN_LISTED_PCT)
                .map(|(_, p)| p)
                .take(LISTED_SKUS)
                .collect();
            Some(Pattern {
                pattern: 0,
                name: String::new(),
                outlets: rows.len(),
                outlets_share: rows.len() as f64 / buyers.len() as f64,
                skus,
            })
        })
        .collect();
    patterns.sort_by_key(|p| std::cmp::Reverse(p.outlets));
    for (n, p) in patterns.iter_mut().enumerate() {
        p.pattern = n + 1;
        p.name = match p.skus.first() {
            Some(s) => format!("Pattern {} · led by {}", n + 1, s.sku_id),
            None => format!("Pattern {}", n + 1),
        };
    }
    patterns
}
