//! What the recommendations are computed from: the window's SKU spend (in the feature
//! set) and the daily table's purchases of the last four weeks and of the coming weeks
//! of earlier years ([`Daily`]), gathered per segment and SKU ([`Purchases`]), with
//! outlets as feature-set rows and SKUs as indices.

use std::collections::BTreeSet;

use foldhash::HashMap;
use rayon::prelude::*;

use chrono::NaiveDate;
use spectra_core::tables::date32;

use crate::features::{FeatureSet, RowCursor, SkuIds};

/// One SKU as one segment bought it.
#[derive(Default)]
pub(super) struct SkuStat {
    /// Outlets that bought it in the window.
    pub(super) buyers: u32,
    /// Each buyer's quantity over the window.
    pub(super) quantity: Vec<f32>,
    pub(super) value: f64,
    pub(super) recent_value: f64,
    /// Outlets that bought it in the last four weeks.
    pub(super) recent_buyers: u32,
    pub(super) seasonal_value: f64,
    /// Each buyer's quantity in the coming weeks of earlier years.
    pub(super) seasonal_quantity: Vec<f32>,
}

/// Daily-table purchases of the outlets of a feature set: each one a row of
/// [`FeatureSet::outlets`], each SKU an index into [`Daily::skus`] (the feature set's
/// SKUs first).
pub struct Daily<'a> {
    fs: &'a FeatureSet,
    /// SKU ids: the feature set's, then those only the daily table has.
    skus: SkuIds,
    /// `(row, sku, day, value)` of each recent purchase (day as days since 1970).
    recent: Vec<(u32, u32, i32, f64)>,
    /// `(row, sku)` → `(value, quantity)` in the coming weeks of earlier years.
    seasonal: HashMap<(u32, u32), (f64, f64)>,
    years: BTreeSet<i32>,
    rows: RowCursor,
}

impl<'a> Daily<'a> {
    /// No purchases yet.
    pub fn new(fs: &'a FeatureSet) -> Self {
        Daily {
            fs,
            skus: SkuIds::new(fs.skus.clone()),
            recent: Vec::new(),
            seasonal: HashMap::default(),
            years: BTreeSet::new(),
            rows: RowCursor::default(),
        }
    }

    /// One daily row: in the last four weeks (`recent`) or the coming weeks of an
    /// earlier year. Outlets the feature set does not hold are not recommended to.
    pub fn add(
        &mut self,
        recent: bool,
        date: NaiveDate,
        outlet: &str,
        sku: &str,
        value: f64,
        quantity: f64,
    ) {
        let Some(row) = self.rows.find(self.fs, outlet) else {
            return;
        };
        let sku = self.skus.intern(sku);
        if recent {
            self.recent.push((row as u32, sku, date32(date), value));
        } else {
            self.years.insert(chrono::Datelike::year(&date));
            let e = self.seasonal.entry((row as u32, sku)).or_default();
            e.0 += value;
            e.1 += quantity.max(0.0);
        }
    }
}

/// Per segment, per SKU: what the segment's outlets bought in the window, lately and
/// in the coming weeks of earlier years; and what each outlet bought lately.
pub(super) struct Purchases {
    /// Per segment (index into the run's segments): per SKU index, its statistics
    /// (all zero for a SKU the segment did not buy).
    pub(super) stats: Vec<Vec<SkuStat>>,
    /// Per outlet row: the SKUs it bought in the last four weeks, sorted.
    pub(super) recent_bought: Vec<Vec<u32>>,
    pub(super) segments_with_recent: Vec<bool>,
    pub(super) recent_days: BTreeSet<i32>,
    /// SKU ids by index ([`Daily::skus`]).
    pub(super) skus: Vec<String>,
    pub(super) years: BTreeSet<i32>,
}

/// What one segment's statistics are made of: its outlet rows in row order, its
/// recent spend per SKU index, and its seasonal `((row, sku), (value, quantity))`
/// purchases.
struct Share {
    rows: Vec<u32>,
    recent_value: Vec<f64>,
    seasonal: Vec<((u32, u32), (f64, f64))>,
}

impl Purchases {
    /// `seg_of`: each outlet row's segment (an index), `None` when not assigned.
    ///
    /// The purchases are first dealt out to their segments, then each segment's
    /// statistics are summed on its own (segments side by side on the thread pool),
    /// each SKU in a dense array: a million outlets' hundred million window purchases
    /// cost an index each, not a hash lookup. Every sum runs in the same order
    /// whatever the threads (rows, then days as the table gives them; seasonal
    /// purchases by row and SKU), so a run gives the same bits each time.
    pub(super) fn gather(
        seg_of: &[Option<usize>],
        segments: usize,
        fs: &FeatureSet,
        mut daily: Daily<'_>,
    ) -> Self {
        let skus = std::mem::take(&mut daily.skus).into_ids();
        let mut recent_bought = vec![Vec::new(); seg_of.len()];
        let mut segments_with_recent = vec![false; segments];
        let mut recent_days = BTreeSet::new();
        let mut shares: Vec<Share> = (0..segments)
            .map(|_| Share {
                rows: Vec::new(),
                recent_value: vec![0.0; skus.len()],
                seasonal: Vec::new(),
            })
            .collect();
        for (row, seg) in seg_of.iter().enumerate() {
            if let Some(seg) = *seg {
                shares[seg].rows.push(row as u32);
            }
        }
        for &(row, sku, day, value) in &daily.recent {
            let Some(seg) = seg_of[row as usize] else {
                continue;
            };
            segments_with_recent[seg] = true;
            recent_days.insert(day);
            shares[seg].recent_value[sku as usize] += value;
            if value > 0.0 {
                recent_bought[row as usize].push(sku);
            }
        }
        drop(std::mem::take(&mut daily.recent));
        recent_bought
            .par_iter_mut()
            .for_each(|list: &mut Vec<u32>| {
                list.sort_unstable();
                list.dedup();
                list.shrink_to_fit();
            });
        for (&key, &sums) in &daily.seasonal {
            if let Some(seg) = seg_of[key.0 as usize] {
                shares[seg].seasonal.push((key, sums));
            }
        }
        drop(std::mem::take(&mut daily.seasonal));
        let stats = shares
            .into_par_iter()
            .map(|mut share| {
                let mut st: Vec<SkuStat> = (0..skus.len()).map(|_| SkuStat::default()).collect();
                for &row in &share.rows {
                    for b in &fs.sku_spend[row as usize] {
                        let s = &mut st[b.sku as usize];
                        s.value += b.value;
                        if b.value > 0.0 || b.quantity > 0.0 {
                            s.buyers += 1;
                            s.quantity.push(b.quantity.max(0.0));
                        }
                    }
                }
                for (s, &value) in st.iter_mut().zip(&share.recent_value) {
                    s.recent_value = value;
                }
                for &row in &share.rows {
                    for &sku in &recent_bought[row as usize] {
                        st[sku as usize].recent_buyers += 1;
                    }
                }
                share.seasonal.sort_unstable_by_key(|&(key, _)| key);
                for &((_, sku), (value, quantity)) in &share.seasonal {
                    let s = &mut st[sku as usize];
                    s.seasonal_value += value;
                    s.seasonal_quantity.push(quantity as f32);
                }
                st
            })
            .collect();
        Purchases {
            stats,
            recent_bought,
            segments_with_recent,
            recent_days,
            skus,
            years: std::mem::take(&mut daily.years),
        }
    }
}
