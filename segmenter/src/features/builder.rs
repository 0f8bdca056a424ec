//! [`FeatureSet`]s made from the feature tables' rows as they stream in: the KPIs and
//! the spectrum's keys first (which outlets and values there are, and which values
//! get columns), then the arrays allocated, then the spectrum's numbers and the SKU
//! spend placed in them.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use foldhash::HashMap;
use rayon::prelude::*;
use spectra_core::tables::features::KpiRow;

use crate::arrays::written_zeros;

use super::{Bought, Columns, FeatureSet, History, Kpis, OutletRecord, SpectrumCell};

/// Builds a [`FeatureSet`] from rows fed one at a time: first the KPIs and the
/// spectrum's keys (which outlets and features there are), then — after
/// [`Builder::shape`] has allocated the arrays — the spectrum's numbers and the SKU
/// spend. Outlets are the KPI rows' and any other the spectrum names; SKU spend of an
/// outlet that is neither is dropped (it has nothing to cluster).
pub struct Builder<'a> {
    as_of: NaiveDate,
    columns: Columns<'a>,
    records: BTreeMap<String, (OutletRecord, f64)>,
    /// Each value of the level, numbered as met.
    features: HashMap<String, u32>,
    /// Per value: its share of spend and the square root of that share, summed over
    /// the outlets (for its variance, [`Columns`]).
    share_sums: Vec<(f64, f64)>,
    /// Per value: whether `columns` excludes it (its spend counts in no share).
    excluded: Vec<bool>,
    /// Outlets with spend, whose shares are summed.
    with_spend: f64,
    /// The outlet whose rows are being given (rows come outlet after outlet; none
    /// before the first row) and its spend per value.
    outlet: Option<String>,
    spend: Vec<(u32, f64)>,
}

/// A [`Builder`] with its arrays allocated: it takes the spectrum's numbers and the
/// SKU spend.
pub struct Filling {
    fs: FeatureSet,
    history: History,
    columns: HashMap<String, usize>,
    /// The column of [`OTHER`](super::OTHER) when there is one, and each outlet's earlier and recent
    /// spend in it, summed in `f64` over the values it holds (written to the `f32`
    /// arrays once, by [`Filling::finish`]).
    other: Option<(usize, Vec<(f64, f64)>)>,
    skus: SkuIds,
    rows: RowCursor,
}

/// SKU ids as indices, in the order first seen.
#[derive(Debug, Clone, Default)]
pub struct SkuIds {
    ids: Vec<String>,
    index: HashMap<String, u32>,
}

impl SkuIds {
    /// These ids, indexed in their order.
    pub fn new(ids: Vec<String>) -> Self {
        let index = ids
            .iter()
            .enumerate()
            .map(|(k, s)| (s.clone(), k as u32))
            .collect();
        Self { ids, index }
    }

    /// The index of `sku`, added when it is new.
    pub fn intern(&mut self, sku: &str) -> u32 {
        if let Some(&k) = self.index.get(sku) {
            return k;
        }
        let k = self.ids.len() as u32;
        self.ids.push(sku.to_owned());
        self.index.insert(sku.to_owned(), k);
        k
    }

    /// The ids, by index.
    pub fn into_ids(self) -> Vec<String> {
        self.ids
    }
}

/// Finds outlets' rows in a [`FeatureSet`], remembering the row last found: tables
/// come sorted by outlet like the feature set, so a lookup is that row again or one a
/// little after it, found by galloping forward from it (a day's table skips the
/// outlets that bought nothing that day); a smaller outlet (the next day's table)
/// gallops from the start.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowCursor {
    last: Option<usize>,
}

impl RowCursor {
    /// The row of `outlet` in `fs`.
    pub fn find(&mut self, fs: &FeatureSet, outlet: &str) -> Option<usize> {
        let id = |i: usize| fs.outlets[i].outlet_id.as_str();
        let n = fs.outlets.len();
        let mut from = match self.last {
            Some(last) => match id(last).cmp(outlet) {
                std::cmp::Ordering::Equal => return Some(last),
                std::cmp::Ordering::Less => last + 1,
                std::cmp::Ordering::Greater => 0,
            },
            None => 0,
        };
        // Rows before `from` are below `outlet`; find a row at or above it by steps
        // that double, then search between.
        let (mut to, mut step) = (from, 1);
        while to < n && id(to) < outlet {
            from = to + 1;
            to += step;
            step *= 2;
        }
        let to = to.saturating_add(1).min(n);
        let row = fs.outlets[from..to]
            .binary_search_by(|o| o.outlet_id.as_str().cmp(outlet))
            .ok()
            .map(|i| from + i);
        self.last = row.or(self.last);
        row
    }
}

impl<'a> Builder<'a> {
    /// A builder holding these KPI rows (and their master records), making the
    /// columns `columns` chooses.
    pub fn new(as_of: NaiveDate, kpis: Vec<KpiRow>, columns: Columns<'a>) -> Self {
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        let records = kpis
            .into_iter()
            .map(|k| {
                let r = OutletRecord {
                    outlet_id: k.outlet_id.clone(),
                    kpis: Kpis {
                        net_value: finite(k.net_value),
                        lines: k.lines as f64,
                        invoices: k.invoices as f64,
                        invoices_per_month: finite(k.invoices_per_month),
                        avg_invoice_value: finite(k.avg_invoice_value),
                        distinct_skus: k.distinct_skus as f64,
                    },
                    region: k.region,
                    channel: k.channel,
                    attributes: k.attributes,
                    distributor: k.distributor,
                };
                (k.outlet_id, (r, k.recent_invoices as f64))
            })
            .collect();
        Self {
            as_of,
            columns,
            records,
            features: HashMap::default(),
            share_sums: Vec::new(),
            excluded: Vec::new(),
            with_spend: 0.0,
            outlet: None,
            spend: Vec::new(),
        }
    }

    /// One spectrum row's keys and its spend (`value`).
    pub fn key(&mut self, outlet: &str, feature: &str, value: f64) {
        // Rows come outlet after outlet: the outlet is looked up once per run of its
        // rows, not once per row (a search of the records by string per row was about
        // a quarter of a 200k-outlet run's read).
        if self.outlet.as_deref() != Some(outlet) {
            self.sum_shares();
            if !self.records.contains_key(outlet) {
                let r = OutletRecord {
                    outlet_id: outlet.to_owned(),
                    ..Default::default()
                };
                self.records.insert(outlet.to_owned(), (r, 0.0));
            }
            let last = self.outlet.get_or_insert_with(String::new);
            last.clear();
            last.push_str(outlet);
        }
        let id = match self.features.get(feature) {
            Some(&id) => id,
            None => {
                let id = self.share_sums.len() as u32;
                self.features.insert(feature.to_owned(), id);
                self.share_sums.push((0.0, 0.0));
                let excluded = self.columns.exclude.iter().any(|e| e == feature);
                self.excluded.push(excluded);
                id
            }
        };
        if value.is_finite() && value > 0.0 && !self.excluded[id as usize] {
            self.spend.push((id, value));
        }
    }

    /// Adds the last outlet's shares to [`Builder::share_sums`].
    fn sum_shares(&mut self) {
        let total: f64 = self.spend.iter().map(|s| s.1).sum();
        if total > 0.0 {
            self.with_spend += 1.0;
            for &(id, v) in &self.spend {
                let (share, root) = &mut self.share_sums[id as usize];
                *share += v / total;
                *root += (v / total).sqrt();
            }
        }
        self.spend.clear();
    }

    /// The outlets seen and the columns [`Builder::shape`] makes for them.
    pub fn dimensions(&self) -> (usize, usize) {
        let values = self.excluded.iter().filter(|&&e| !e).count();
        let columns = if values <= self.columns.max_features {
            values
        } else {
            self.columns.max_features + 1
        };
        (self.records.len(), columns)
    }

    /// Allocates the arrays for the outlets seen and the columns chosen of the
    /// features seen.
    pub fn shape(mut self) -> Filling {
        self.sum_shares();
        let n = self.with_spend.max(1.0);
        let mut values: Vec<(String, f64)> = self
            .features
            .into_iter()
            .map(|(v, id)| {
                let (share, root) = self.share_sums[id as usize];
                (v, share / n - (root / n) * (root / n))
            })
            .collect();
        values.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let (features, columns) = self.columns.choose(values);
        let (outlets, recent_invoices): (Vec<OutletRecord>, Vec<f64>) =
            self.records.into_values().unzip();
        let shape = (outlets.len(), features.len());
        let history = History {
            earlier: written_zeros(shape),
            recent: written_zeros(shape),
            earlier_lines: vec![0.0; shape.0],
            recent_lines: vec![0.0; shape.0],
            earlier_counts: written_zeros(shape),
            recent_counts: written_zeros(shape),
            recent_invoices,
        };
        let other = (features.len() > self.columns.max_features)
            .then(|| (self.columns.max_features, vec![(0.0, 0.0); shape.0]));
        Filling {
            columns,
            other,
            fs: FeatureSet {
                as_of: self.as_of,
                features,
                sku_spend: vec![Vec::new(); outlets.len()],
                outlets,
                spend: written_zeros(shape),
                skus: Vec::new(),
                history: None,
            },
            history,
            skus: SkuIds::default(),
            rows: RowCursor::default(),
        }
    }
}

impl Filling {
    /// One spectrum row's numbers (its keys were given to [`Builder::key`]).
    pub fn spectrum(&mut self, outlet: &str, feature: &str, c: SpectrumCell) {
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        let Some(i) = self.rows.find(&self.fs, outlet) else {
            return; // not given to `key`: nothing to place it in
        };
        let h = &mut self.history;
        h.earlier_lines[i] += (c.lines - c.recent_lines) as f64;
        h.recent_lines[i] += c.recent_lines as f64;
        let Some(&j) = self.columns.get(feature) else {
            return; // excluded, or not given to `key`
        };
        self.fs.spend[[i, j]] += finite(c.value);
        let recent = finite(c.recent_value);
        let earlier = finite(c.raw_value) - recent;
        match &mut self.other {
            Some((o, sums)) if *o == j => {
                sums[i].0 += earlier;
                sums[i].1 += recent;
            }
            _ => {
                let add = |cell: &mut f32, v: f64| *cell = (f64::from(*cell) + v) as f32;
                add(&mut h.earlier[[i, j]], earlier);
                add(&mut h.recent[[i, j]], recent);
            }
        }
        h.earlier_counts[[i, j]] += (c.lines - c.recent_lines) as f32;
        h.recent_counts[[i, j]] += c.recent_lines as f32;
    }

    /// One SKU spend row.
    pub fn sku(&mut self, outlet: &str, sku: &str, value: f64, quantity: f64) {
        let Some(i) = self.rows.find(&self.fs, outlet) else {
            return; // an outlet without spectrum or KPIs has nothing to cluster
        };
        if !value.is_finite() {
            return;
        }
        self.fs.sku_spend[i].push(Bought {
            sku: self.skus.intern(sku),
            quantity: quantity as f32,
            value,
        });
    }

    /// The feature set.
    pub fn finish(mut self) -> FeatureSet {
        self.fs.sku_spend.par_iter_mut().for_each(|list| {
            list.sort_unstable_by_key(|b| b.sku);
            list.dedup_by(|next, kept| {
                let same = next.sku == kept.sku;
                if same {
                    kept.value += next.value;
                    kept.quantity += next.quantity;
                }
                same
            });
            list.shrink_to_fit();
        });
        self.fs.skus = self.skus.into_ids();
        if let Some((o, sums)) = self.other {
            for (i, (earlier, recent)) in sums.into_iter().enumerate() {
                self.history.earlier[[i, o]] = earlier as f32;
                self.history.recent[[i, o]] = recent as f32;
            }
        }
        self.fs.history = Some(self.history);
        self.fs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spectra_core::tables::profile::OTHER;

    /// Beyond `max_features`, the values whose shares vary most keep their columns and
    /// the rest are summed into `(other)`; excluded values leave the spend but their
    /// lines still count.
    #[test]
    fn columns_keep_the_values_that_vary_most_and_sum_the_rest() {
        let cell = |value: f64| SpectrumCell {
            value,
            raw_value: value,
            recent_value: 0.0,
            lines: 1,
            recent_lines: 0,
        };
        // `a` is a quarter of every outlet's spend (no variance); `b` and `c` vary
        // most, `d` a little less.
        let rows = [
            ("O1", "a", 10.0),
            ("O1", "b", 30.0),
            ("O1", "x", 500.0),
            ("O2", "a", 10.0),
            ("O2", "c", 30.0),
            ("O3", "a", 10.0),
            ("O3", "d", 30.0),
            ("O4", "a", 10.0),
            ("O4", "b", 15.0),
            ("O4", "c", 15.0),
        ];
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let exclude = ["x".to_owned()];
        let build = |max_features: usize| {
            let columns = Columns {
                exclude: &exclude,
                max_features,
            };
            let mut b = Builder::new(day, Vec::new(), columns);
            for (o, f, v) in rows {
                b.key(o, f, v);
            }
            // What the memory check is given is what is made.
            let dimensions = b.dimensions();
            let mut b = b.shape();
            for (o, f, v) in rows {
                b.spectrum(o, f, cell(v));
            }
            let fs = b.finish();
            assert_eq!(dimensions, (fs.outlets.len(), fs.features.len()));
            fs
        };
        let fs = build(2);
        assert_eq!(fs.features, ["b", "c", OTHER]);
        let spend: Vec<Vec<f64>> = fs.spend.rows().into_iter().map(|r| r.to_vec()).collect();
        assert_eq!(
            spend,
            [
                [30.0, 0.0, 10.0],
                [0.0, 30.0, 10.0],
                [0.0, 0.0, 40.0],
                [15.0, 15.0, 10.0]
            ]
        );
        let h = fs.history.as_ref().unwrap();
        assert_eq!(
            h.earlier_lines,
            [3.0, 2.0, 2.0, 3.0],
            "excluded lines count"
        );
        assert_eq!(h.earlier.row(0).to_vec(), [30.0, 0.0, 10.0]);
        // Room for every value: each its own column, the excluded one left out.
        let all = build(4);
        assert_eq!(all.features, ["a", "b", "c", "d"]);
        assert_eq!(all.spend.row(2).to_vec(), [10.0, 0.0, 0.0, 30.0]);
    }

    /// The change detector's arrays are `f32`; what `(other)` sums is summed in `f64`
    /// and rounded once, so its many small values are not lost against a large one.
    #[test]
    fn other_is_summed_before_it_is_rounded() {
        let cell = |value: f64, recent_value: f64| SpectrumCell {
            value,
            raw_value: value,
            recent_value,
            lines: 2,
            recent_lines: 1,
        };
        // With one outlet every value's variance is 0: `a` keeps its column (the
        // first by name), the rest go to `(other)`.
        let rows = [
            ("O1", "a", cell(5.0, 1.0)),
            ("O1", "b", cell(16_777_216.0, 0.0)),
            ("O1", "c", cell(1.0, 0.5)),
            ("O1", "d", cell(1.0, 0.25)),
        ];
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let columns = Columns {
            exclude: &[],
            max_features: 1,
        };
        let mut b = Builder::new(day, Vec::new(), columns);
        for (o, f, c) in rows {
            b.key(o, f, c.value);
        }
        let mut b = b.shape();
        for (o, f, c) in rows {
            b.spectrum(o, f, c);
        }
        let fs = b.finish();
        assert_eq!(fs.features, ["a", OTHER]);
        let h = fs.history.as_ref().unwrap();
        // 2²⁴ + 0.5 + 0.75 is 2²⁴ + 1.25, which `f32` (2 apart there) holds as 2²⁴ + 2.
        // Added one by one in `f32`, each small value would be lost (2²⁴ + 0.5 rounds
        // to 2²⁴).
        assert_eq!(h.earlier.row(0).to_vec(), [4.0, 16_777_218.0]);
        assert_eq!(h.recent.row(0).to_vec(), [1.0, 0.75]);
        assert_eq!(h.earlier_counts.row(0).to_vec(), [1.0, 3.0]);
    }

    /// Lookups in the orders the tables give them (days of sorted outlets, some
    /// missing, some unknown) find what a binary search finds.
    #[test]
    fn the_row_cursor_finds_what_a_search_finds() {
        let ids: Vec<String> = (0..500).map(|i| format!("O{:05}", i * 3)).collect();
        let kpis = ids
            .iter()
            .map(|id| KpiRow {
                outlet_id: id.clone(),
                ..KpiRow::default()
            })
            .collect();
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let fs = FeatureSet::from_rows(day, kpis, &[], &[]);
        assert_eq!(fs.outlets.len(), ids.len());
        let mut cursor = RowCursor::default();
        let mut found = 0;
        let mut state = 7u64;
        for _ in 0..20 {
            // One day: increasing outlets with gaps, some not in the feature set.
            let mut at = 0u64;
            while at < 1600 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                at += (state >> 33) % 40;
                let outlet = format!("O{at:05}");
                for _ in 0..=(state >> 60) % 3 {
                    let row = cursor.find(&fs, &outlet);
                    assert_eq!(row, fs.row(&outlet), "{outlet}");
                    found += usize::from(row.is_some());
                }
                at += 1;
            }
        }
        assert!(found > 500, "{found} lookups found a row");
    }
}
