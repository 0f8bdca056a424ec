//! The aggregator's feature tables as the segmenter uses them: a segmentation's
//! window features (read through [`spectra_core::tables::features`], which defines
//! them) turned into dense arrays — outlets × features spend, the change detector's
//! earlier and recent spend, each outlet's SKU spend — with outlets in id order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use ndarray::Array2;
use spectra_core::tables::features::{self as tables, WindowFeatures};
use spectra_core::Storage;

use crate::Error;

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

/// A segmentation's features for one as-of date, with outlets in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    /// The as-of date.
    pub as_of: NaiveDate,
    /// Feature names (values of the segmentation's level), sorted.
    pub features: Vec<String>,
    /// Outlets, sorted by id; row `i` of [`FeatureSet::spend`] is outlet `i`.
    pub outlets: Vec<OutletRecord>,
    /// Spend per outlet × feature (`value`, recency-weighted when configured; may be
    /// negative after returns).
    pub spend: Array2<f64>,
    /// SKU ids referenced by [`FeatureSet::sku_spend`].
    pub skus: Vec<String>,
    /// Per outlet: `(index into skus, net value)` in the window.
    pub sku_spend: Vec<Vec<(u32, f64)>>,
    /// The change detector's inputs, when the folder has them (spectrum.parquet's
    /// `recent_value`, `lines`, `recent_lines`; a folder written before they existed
    /// has none, and outlets then move on distance alone).
    pub history: Option<History>,
}

/// Each outlet's window split into the earlier part and the recent `recent_days`,
/// rows and columns as [`FeatureSet::spend`].
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// Unweighted spend before the recent window (`raw_value − recent_value`).
    pub earlier: Array2<f64>,
    /// Spend in the recent window (`recent_value`).
    pub recent: Array2<f64>,
    /// Invoice lines before the recent window, per outlet.
    pub earlier_lines: Vec<f64>,
    /// Invoice lines in the recent window, per outlet.
    pub recent_lines: Vec<f64>,
    /// Invoices in the recent window, per outlet (kpis.parquet `recent_invoices`; 0
    /// when absent).
    pub recent_invoices: Vec<f64>,
}

impl FeatureSet {
    /// Reads the complete features folder of `segmentation` for `as_of`.
    pub async fn read(
        storage: &Storage,
        segmentation: &str,
        as_of: NaiveDate,
    ) -> Result<Self, Error> {
        let tables = WindowFeatures::read(storage, segmentation, as_of).await?;
        Ok(Self::from_tables(as_of, &tables))
    }

    /// The same features without the columns named in `excluded` (a segmentation's
    /// `exclude`): they leave the spend and the change detector's history alike.
    pub fn without(mut self, excluded: &[String]) -> Self {
        if excluded.is_empty() {
            return self;
        }
        let keep: Vec<usize> = (0..self.features.len())
            .filter(|&j| !excluded.contains(&self.features[j]))
            .collect();
        let axis = ndarray::Axis(1);
        self.features = keep.iter().map(|&j| self.features[j].clone()).collect();
        self.spend = self.spend.select(axis, &keep);
        if let Some(h) = &mut self.history {
            h.earlier = h.earlier.select(axis, &keep);
            h.recent = h.recent.select(axis, &keep);
        }
        self
    }

    /// The row of an outlet (outlets are sorted by id).
    pub fn row(&self, outlet_id: &str) -> Option<usize> {
        self.outlets
            .binary_search_by(|o| o.outlet_id.as_str().cmp(outlet_id))
            .ok()
    }

    /// The arrays of a folder's tables.
    pub fn from_tables(as_of: NaiveDate, t: &WindowFeatures) -> Self {
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        let mut records: BTreeMap<&str, OutletRecord> = t
            .kpis
            .iter()
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
                    region: k.region.clone(),
                    channel: k.channel.clone(),
                    attributes: k.attributes.clone(),
                    distributor: k.distributor.clone(),
                };
                (k.outlet_id.as_str(), r)
            })
            .collect();
        for r in &t.spectrum {
            records.entry(&r.outlet_id).or_insert_with(|| OutletRecord {
                outlet_id: r.outlet_id.clone(),
                ..Default::default()
            });
        }
        let features: Vec<String> = t
            .spectrum
            .iter()
            .map(|r| r.feature.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let recent_invoices: HashMap<&str, f64> = t
            .kpis
            .iter()
            .map(|k| (k.outlet_id.as_str(), k.recent_invoices as f64))
            .collect();
        let outlets: Vec<OutletRecord> = records.into_values().collect();
        let row_of: HashMap<&str, usize> = outlets
            .iter()
            .enumerate()
            .map(|(i, o)| (o.outlet_id.as_str(), i))
            .collect();
        let col_of: HashMap<&str, usize> = features
            .iter()
            .enumerate()
            .map(|(j, f)| (f.as_str(), j))
            .collect();
        let shape = (outlets.len(), features.len());
        let mut spend = Array2::zeros(shape);
        let mut h = History {
            earlier: Array2::zeros(shape),
            recent: Array2::zeros(shape),
            earlier_lines: vec![0.0; shape.0],
            recent_lines: vec![0.0; shape.0],
            recent_invoices: outlets
                .iter()
                .map(|o| {
                    recent_invoices
                        .get(o.outlet_id.as_str())
                        .copied()
                        .unwrap_or(0.0)
                })
                .collect(),
        };
        for r in &t.spectrum {
            let (i, j) = (row_of[r.outlet_id.as_str()], col_of[r.feature.as_str()]);
            spend[[i, j]] += finite(r.value);
            let recent = finite(r.recent_value);
            h.earlier[[i, j]] += finite(r.raw_value) - recent;
            h.recent[[i, j]] += recent;
            h.earlier_lines[i] += (r.lines - r.recent_lines) as f64;
            h.recent_lines[i] += r.recent_lines as f64;
        }
        let mut skus: Vec<String> = Vec::new();
        let mut sku_index: HashMap<&str, u32> = HashMap::new();
        let mut per_outlet: Vec<Vec<(u32, f64)>> = vec![Vec::new(); outlets.len()];
        for r in &t.sku_spend {
            let Some(&row) = row_of.get(r.outlet_id.as_str()) else {
                continue; // an outlet without spectrum or KPIs has nothing to cluster
            };
            let next = skus.len() as u32;
            let id = *sku_index.entry(&r.sku_id).or_insert_with(|| {
                skus.push(r.sku_id.clone());
                next
            });
            if r.net_value.is_finite() {
                per_outlet[row].push((id, r.net_value));
            }
        }
        Self {
            as_of,
            features,
            outlets,
            spend,
            skus,
            sku_spend: per_outlet,
            history: Some(h),
        }
    }
}
