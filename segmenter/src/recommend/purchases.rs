//! What the recommendations are computed from: the window's SKU spend (in the feature
//! set) and the daily table's purchases of the last four weeks and of the coming weeks
//! of earlier years ([`Daily`]), gathered per segment and SKU ([`Purchases`]), with
//! outlets as feature-set rows and SKUs as indices.

use std::collections::BTreeSet;

use foldhash::HashMap;

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
    /// Per segment (index into the run's segments): SKU → its statistics.
    pub(super) stats: Vec<HashMap<u32, SkuStat>>,
    /// Per outlet row: the SKUs it bought in the last four weeks, sorted.
    pub(super) recent_bought: Vec<Vec<u32>>,
    pub(super) segments_with_recent: Vec<bool>,
    pub(super) recent_days: BTreeSet<i32>,
    /// SKU ids by index ([`Daily::skus`]).
    pub(super) skus: Vec<String>,
    pub(super) years: BTreeSet<i32>,
}

impl Purchases {
    /// `seg_of`: each outlet row's segment (an index), `None` when not assigned.
    pub(super) fn gather(
        seg_of: &[Option<usize>],
        segments: usize,
        fs: &FeatureSet,
        mut daily: Daily<'_>,
    ) -> Self {
        let mut p = Purchases {
            stats: (0..segments).map(|_| HashMap::default()).collect(),
            recent_bought: vec![Vec::new(); seg_of.len()],
            segments_with_recent: vec![false; segments],
            recent_days: BTreeSet::new(),
            years: std::mem::take(&mut daily.years),
            skus: std::mem::take(&mut daily.skus).into_ids(),
        };
        for (row, seg) in seg_of.iter().enumerate() {
            let Some(seg) = *seg else { continue };
            for b in &fs.sku_spend[row] {
                let st = p.stats[seg].entry(b.sku).or_default();
                st.value += b.value;
                if b.value > 0.0 || b.quantity > 0.0 {
                    st.buyers += 1;
                    st.quantity.push(b.quantity.max(0.0));
                }
            }
        }
        for &(row, sku, day, value) in &daily.recent {
            let Some(seg) = seg_of[row as usize] else {
                continue;
            };
            p.segments_with_recent[seg] = true;
            p.recent_days.insert(day);
            p.stats[seg].entry(sku).or_default().recent_value += value;
            if value > 0.0 {
                p.recent_bought[row as usize].push(sku);
            }
        }
        for (row, list) in p.recent_bought.iter_mut().enumerate() {
            list.sort_unstable();
            list.dedup();
            list.shrink_to_fit();
            if let Some(seg) = seg_of[row] {
                for &sku in list.iter() {
                    p.stats[seg].entry(sku).or_default().recent_buyers += 1;
                }
            }
        }
        for (&(row, sku), &(value, quantity)) in &daily.seasonal {
            let Some(seg) = seg_of[row as usize] else {
                continue;
            };
            let st = p.stats[seg].entry(sku).or_default();
            st.seasonal_value += value;
            st.seasonal_quantity.push(quantity as f32);
        }
        p
    }
}
