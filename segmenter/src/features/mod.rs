//! The aggregator's feature tables as the segmenter uses them: a segmentation's
//! window features (read through [`spectra_core::tables::features`], which defines
//! them) turned into dense arrays — outlets × features spend, the change detector's
//! earlier and recent spend — and each outlet's SKU spend, with outlets in id order.
//!
//! The tables are streamed a batch at a time into these arrays ([`Builder`]): what the
//! segmenter holds is the arrays, never the decoded tables or a row struct per line
//! (at 100k outlets the SKU spend alone has millions of rows).

use std::collections::BTreeMap;

use foldhash::HashMap;

use chrono::NaiveDate;
use ndarray::Array2;
use spectra_core::config::SegmentationConfig;
use spectra_core::tables::features::{self as tables, FolderRead, KpiRow};
use spectra_core::tables::profile::OTHER;
use spectra_core::Storage;

use crate::Error;

mod builder;
pub use builder::{Builder, Filling, RowCursor, SkuIds};

/// The latest as-of date whose features folder is complete.
pub async fn latest_complete(
    storage: &Storage,
    segmentation: &str,
) -> Result<Option<NaiveDate>, Error> {
    Ok(tables::latest_complete(storage, segmentation).await?)
}

/// The KPIs of one outlet in the window (kpis.parquet).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Kpis {
    /// Net value in the window.
    pub net_value: f64,
    /// Invoice lines in the window.
    pub lines: f64,
    /// Invoices in the window.
    pub invoices: f64,
    /// Invoices per month.
    pub invoices_per_month: f64,
    /// Average invoice value.
    pub avg_invoice_value: f64,
    /// Distinct SKUs bought.
    pub distinct_skus: f64,
}

/// One outlet of a feature set: its KPIs and master record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutletRecord {
    /// Outlet id.
    pub outlet_id: String,
    /// KPIs (zero when the outlet has no kpis row).
    pub kpis: Kpis,
    /// Region from the master record.
    pub region: Option<String>,
    /// Channel from the master record.
    pub channel: Option<String>,
    /// Attributes from the master record's JSON object, values as text.
    pub attributes: BTreeMap<String, String>,
    /// The main distributor in the window (see `KpiRow::distributor`).
    pub distributor: Option<String>,
}

/// What an outlet bought of one SKU in the window (one `sku_spend.parquet` row).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bought {
    /// Index into [`FeatureSet::skus`].
    pub sku: u32,
    /// Quantity. `f32` keeps the entry at 16 bytes; quantities end as whole units.
    pub quantity: f32,
    /// Net value.
    pub value: f64,
}

/// A segmentation's features for one as-of date, with outlets in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    /// The as-of date.
    pub as_of: NaiveDate,
    /// Feature names (values of the segmentation's level), sorted; when the level has
    /// more values than the segmentation's `max_features`, the kept ones, sorted, then
    /// [`OTHER`] (see [`Columns`]).
    pub features: Vec<String>,
    /// Outlets, sorted by id; row `i` of [`FeatureSet::spend`] is outlet `i`.
    pub outlets: Vec<OutletRecord>,
    /// Spend per outlet × feature (`value`, recency-weighted when configured; may be
    /// negative after returns).
    pub spend: Array2<f64>,
    /// SKU ids referenced by [`FeatureSet::sku_spend`].
    pub skus: Vec<String>,
    /// Per outlet: what it bought of each SKU in the window, one entry per SKU,
    /// sorted by SKU index.
    pub sku_spend: Vec<Vec<Bought>>,
    /// The change detector's inputs, when the folder has them (spectrum.parquet's
    /// `recent_value`, `lines`, `recent_lines`; a folder written before they existed
    /// has none, and outlets then move on distance alone).
    pub history: Option<History>,
}

/// Each outlet's window split into the earlier part and the recent `recent_days`,
/// rows and columns as [`FeatureSet::spend`]. The per-feature arrays are `f32`: the
/// change detector reads them as shares and tests them statistically, where seven
/// significant digits are many more than the evidence holds, and at a million outlets
/// × 1,025 columns each `f64` array would be 8 GB instead of 4.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// Unweighted spend before the recent window (`raw_value − recent_value`).
    pub earlier: Array2<f32>,
    /// Spend in the recent window (`recent_value`).
    pub recent: Array2<f32>,
    /// Invoice lines before the recent window, per outlet.
    pub earlier_lines: Vec<f64>,
    /// Invoice lines in the recent window, per outlet.
    pub recent_lines: Vec<f64>,
    /// Invoice lines per feature before the recent window (`lines − recent_lines`;
    /// `f32` holds every count below 2²⁴ exactly, at half the memory).
    pub earlier_counts: Array2<f32>,
    /// Invoice lines per feature in the recent window (`recent_lines`).
    pub recent_counts: Array2<f32>,
    /// Invoices in the recent window, per outlet (kpis.parquet `recent_invoices`; 0
    /// when absent).
    pub recent_invoices: Vec<f64>,
}

/// One `spectrum.parquet` row's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpectrumCell {
    /// `value` (recency-weighted when configured).
    pub value: f64,
    /// `raw_value` (unweighted).
    pub raw_value: f64,
    /// `recent_value`.
    pub recent_value: f64,
    /// `lines`.
    pub lines: i64,
    /// `recent_lines`.
    pub recent_lines: i64,
}

impl FeatureSet {
    /// Reads the complete features folder of `segmentation` for `as_of`, streamed, into
    /// the columns `columns` chooses; with the folder's content hash (which version of
    /// the features these are).
    pub async fn read(
        storage: &Storage,
        segmentation: &str,
        as_of: NaiveDate,
        columns: Columns<'_>,
    ) -> Result<(Self, Option<String>), Error> {
        const SPECTRUM: &str = "spectrum.parquet";
        let folder = FolderRead::begin(storage, segmentation, as_of).await?;
        let kpis = folder.rows(storage, "kpis.parquet").await?;
        let mut b = Builder::new(as_of, kpis, columns);
        let keys = ["outlet_id", "feature", "value"];
        folder
            .stream(storage, SPECTRUM, Some(&keys), |c| {
                let (o, f) = (c.id_strings("outlet_id")?, c.id_strings("feature")?);
                let value = c.float("value")?;
                for (k, &v) in value.iter().enumerate() {
                    b.key(o.value(k), f.value(k), v);
                }
                Ok(())
            })
            .await?;
        // The arrays are made next, then the SKU spend is read: not when the run
        // cannot fit (where the room cannot be read, there is nothing to check).
        if let Some(available) = crate::memory::available() {
            let (outlets, columns) = b.dimensions();
            let need = crate::memory::Need {
                outlets,
                columns,
                sku_pairs: folder.row_count(storage, "sku_spend.parquet").await?,
            };
            crate::memory::check(segmentation, &need, Some(&available))?;
        }
        let mut b = b.shape();
        folder
            .stream(storage, SPECTRUM, None, |c| {
                let (o, f) = (c.id_strings("outlet_id")?, c.id_strings("feature")?);
                let (v, raw) = (c.float("value")?, c.float("raw_value")?);
                let (rv, l, rl) = (
                    c.float("recent_value")?,
                    c.int("lines")?,
                    c.int("recent_lines")?,
                );
                for k in 0..c.len() {
                    let cell = SpectrumCell {
                        value: v[k],
                        raw_value: raw[k],
                        recent_value: rv[k],
                        lines: l[k],
                        recent_lines: rl[k],
                    };
                    b.spectrum(o.value(k), f.value(k), cell);
                }
                Ok(())
            })
            .await?;
        let columns = ["outlet_id", "sku_id", "net_value", "quantity"];
        folder
            .stream(storage, "sku_spend.parquet", Some(&columns), |c| {
                let (o, s) = (c.id_strings("outlet_id")?, c.id_strings("sku_id")?);
                let (v, q) = (c.float("net_value")?, c.float("quantity")?);
                for k in 0..c.len() {
                    b.sku(o.value(k), s.value(k), v[k], q[k]);
                }
                Ok(())
            })
            .await?;
        let hash = folder.finish(storage).await?;
        Ok((b.finish(), hash))
    }

    /// The row of an outlet (outlets are sorted by id).
    pub fn row(&self, outlet_id: &str) -> Option<usize> {
        self.outlets
            .binary_search_by(|o| o.outlet_id.as_str().cmp(outlet_id))
            .ok()
    }

    /// The features of rows held in memory (`spectrum` and `sku_spend` as
    /// `(outlet, feature, cell)` and `(outlet, sku, value, quantity)`), through the
    /// same [`Builder`] as [`FeatureSet::read`].
    pub fn from_rows<'a>(
        as_of: NaiveDate,
        kpis: Vec<KpiRow>,
        spectrum: &[(&'a str, &'a str, SpectrumCell)],
        sku_spend: &[(&'a str, &'a str, f64, f64)],
    ) -> Self {
        let mut b = Builder::new(as_of, kpis, Columns::ALL);
        for (o, f, cell) in spectrum {
            b.key(o, f, cell.value);
        }
        let mut b = b.shape();
        for &(o, f, cell) in spectrum {
            b.spectrum(o, f, cell);
        }
        for &(o, s, v, q) in sku_spend {
            b.sku(o, s, v, q);
        }
        b.finish()
    }
}

/// Which of the level's values become columns of a [`FeatureSet`]'s arrays: all but the
/// excluded ones, and of those at most `max_features` — the ones whose share of an
/// outlet's spend varies most between outlets — and one more column, [`OTHER`], for
/// the rest summed. The arrays are outlets × columns, several of them: at
/// `level = "sku"` with 20,000 SKUs and a million outlets a column per value would not
/// fit in memory, and a segment's spectrum over 20,000 values would not be read.
///
/// The variance is that of the square root of the share, over the outlets with spend:
/// the clustering measures distances between those square roots (Hellinger), so the
/// dropped values are those that would move outlets apart least. A value every outlet
/// buys in the same share (which a ranking by spend would put first) tells no two
/// outlets apart.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    /// Values left out of the spend and of the change detector's history alike (a
    /// segmentation's `exclude`); their lines still count as the outlet's lines.
    pub exclude: &'a [String],
    /// At most this many values get a column of their own.
    pub max_features: usize,
}

impl Columns<'static> {
    /// Every value its own column.
    pub const ALL: Self = Self {
        exclude: &[],
        max_features: usize::MAX,
    };
}

impl<'a> Columns<'a> {
    /// The columns `seg` asks for.
    pub fn of(seg: &'a SegmentationConfig) -> Self {
        Self {
            exclude: &seg.exclude,
            max_features: seg.max_features,
        }
    }

    /// The column names of `values` (each with its variance, sorted by name), and each
    /// value's column (an excluded value has none).
    fn choose(&self, values: Vec<(String, f64)>) -> (Vec<String>, HashMap<String, usize>) {
        let values: Vec<(String, f64)> = values
            .into_iter()
            .filter(|(v, _)| !self.exclude.contains(v))
            .collect();
        if values.len() <= self.max_features {
            let column = values.iter().enumerate().map(|(j, (v, _))| (v.clone(), j));
            let column = column.collect();
            return (values.into_iter().map(|(v, _)| v).collect(), column);
        }
        // The largest variance first; equal ones by name (the values come sorted so).
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| values[b].1.total_cmp(&values[a].1).then(a.cmp(&b)));
        let mut kept = vec![false; values.len()];
        for &i in &order[..self.max_features] {
            kept[i] = true;
        }
        let mut names: Vec<String> = Vec::with_capacity(self.max_features + 1);
        let mut column = HashMap::with_capacity_and_hasher(values.len(), Default::default());
        for ((v, _), kept) in values.into_iter().zip(kept) {
            let j = if kept {
                names.push(v.clone());
                names.len() - 1
            } else {
                self.max_features
            };
            column.insert(v, j);
        }
        names.push(OTHER.to_owned());
        (names, column)
    }
}

/// Per outlet, `(sku, value)` pairs as [`FeatureSet::sku_spend`] (quantity 1): for
/// feature sets written by hand in tests.
#[cfg(test)]
pub fn bought(lists: &[&[(u32, f64)]]) -> Vec<Vec<Bought>> {
    lists
        .iter()
        .map(|l| {
            l.iter()
                .map(|&(sku, value)| Bought {
                    sku,
                    quantity: 1.0,
                    value,
                })
                .collect()
        })
        .collect()
}
