//! The aggregator's feature tables, as the segmenter reads them:
//! `features/segmentation={name}/as_of=YYYY-MM-DD/` with `spectrum.parquet`,
//! `kpis.parquet`, `sku_spend.parquet` and `_manifest.json` (written last; a folder
//! without it is incomplete and ignored). Columns are those of the README's "Tables".
//!
//! Numeric columns are read through an Arrow cast to `f64`, so an integer or float
//! column of either width is accepted; text columns may be `utf8`, `large_utf8` or
//! `utf8_view`.

mod columns;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use ndarray::Array2;
use spectra_core::Storage;

use crate::Error;
use columns::{f64_column, optional_str_column, str_column};

/// The folder of a segmentation's features for one as-of date.
pub fn folder(segmentation: &str, as_of: NaiveDate) -> String {
    format!("features/segmentation={segmentation}/as_of={as_of}")
}

/// The latest as-of date whose features folder is complete (has `_manifest.json`).
pub async fn latest_complete(
    storage: &Storage,
    segmentation: &str,
) -> Result<Option<NaiveDate>, Error> {
    let root = format!("features/segmentation={segmentation}/");
    let listed = storage.list(&root).await?;
    Ok(listed
        .iter()
        .filter_map(|l| {
            let rest = l.path.strip_prefix(&root)?;
            let (dir, file) = rest.split_once('/')?;
            let date = dir.strip_prefix("as_of=")?;
            (file == "_manifest.json").then(|| date.parse::<NaiveDate>().ok())?
        })
        .max())
}

/// The path of `current.json`: the as-of date the aggregator considers current for a
/// segmentation (`{"as_of", "path", "created_at"}`), written after the folder's manifest.
pub fn current_path(segmentation: &str) -> String {
    format!("features/segmentation={segmentation}/current.json")
}

/// The as-of date of the current features: the one `current.json` names when its folder
/// is complete, else (stores written before the pointer existed, or hand-written
/// folders) the latest complete folder. It may be earlier than an existing folder: the
/// aggregator moves it back when the data is corrected.
pub async fn current(storage: &Storage, segmentation: &str) -> Result<Option<NaiveDate>, Error> {
    #[derive(serde::Deserialize)]
    struct Pointer {
        as_of: NaiveDate,
    }
    let pointer: Option<Pointer> = storage.get_json(&current_path(segmentation)).await?;
    if let Some(p) = pointer {
        let manifest = format!("{}/_manifest.json", folder(segmentation, p.as_of));
        if storage.get(&manifest).await?.is_some() {
            return Ok(Some(p.as_of));
        }
        // The aggregator is rewriting that folder: nothing is current until it is done.
        return Ok(None);
    }
    latest_complete(storage, segmentation).await
}

/// The KPIs of one outlet in the window (kpis.parquet).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Kpis {
    /// Net value in the window.
    pub net_value: f64,
    /// Invoice lines in the window.
    pub lines: f64,
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
        let dir = folder(segmentation, as_of);
        let manifest_path = format!("{dir}/_manifest.json");
        let manifest = storage.get(&manifest_path).await?;
        let table = |name: &str| {
            let path = format!("{dir}/{name}");
            async move {
                let bytes = storage.get(&path).await?.ok_or_else(|| Error::Features {
                    path: path.clone(),
                    reason:
                        "missing (the folder has a manifest, so the aggregator wrote it incomplete)"
                            .into(),
                })?;
                Ok::<_, Error>((path, spectra_core::schema::from_parquet(bytes)?))
            }
        };
        let (spectrum_path, spectrum) = table("spectrum.parquet").await?;
        let (kpis_path, kpis) = table("kpis.parquet").await?;
        let (sku_path, sku_spend) = table("sku_spend.parquet").await?;
        // The aggregator removes the manifest before rewriting a folder and writes it
        // again last: the same manifest before and after means one consistent version.
        if manifest.is_none() || storage.get(&manifest_path).await? != manifest {
            return Err(Error::Features {
                path: manifest_path,
                reason: "the folder changed while it was read (the aggregator is rewriting it); \
                         it is read again at the next poll"
                    .into(),
            });
        }

        // Spectrum rows: (outlet, feature, value), and the detector's columns
        // (raw value, recent value, lines, recent lines) when every batch has them.
        let mut rows: Vec<(String, String, f64)> = Vec::new();
        let with_history = spectrum.iter().all(|b| {
            ["raw_value", "recent_value", "lines", "recent_lines"]
                .iter()
                .all(|c| b.column_by_name(c).is_some())
        });
        let mut history_rows: Vec<[f64; 4]> = Vec::new();
        for b in &spectrum {
            let o = str_column(b, "outlet_id", &spectrum_path)?;
            let f = str_column(b, "feature", &spectrum_path)?;
            let v = f64_column(b, "value", &spectrum_path)?;
            for i in 0..b.num_rows() {
                rows.push((o[i].clone(), f[i].clone(), v[i]));
            }
            if with_history {
                let c = |name| f64_column(b, name, &spectrum_path);
                let (raw, recent, lines, recent_lines) = (
                    c("raw_value")?,
                    c("recent_value")?,
                    c("lines")?,
                    c("recent_lines")?,
                );
                for i in 0..b.num_rows() {
                    history_rows.push([raw[i], recent[i], lines[i], recent_lines[i]]);
                }
            }
        }
        let mut recent_invoices: HashMap<String, f64> = HashMap::new();
        for b in &kpis {
            if b.column_by_name("recent_invoices").is_some() {
                let o = str_column(b, "outlet_id", &kpis_path)?;
                let v = f64_column(b, "recent_invoices", &kpis_path)?;
                recent_invoices.extend(o.into_iter().zip(v));
            }
        }
        let mut records: BTreeMap<String, OutletRecord> = BTreeMap::new();
        for b in &kpis {
            read_kpis(b, &kpis_path, &mut records)?;
        }
        for (o, _, _) in &rows {
            records.entry(o.clone()).or_insert_with(|| OutletRecord {
                outlet_id: o.clone(),
                ..Default::default()
            });
        }
        let features: Vec<String> = rows
            .iter()
            .map(|r| r.1.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
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
        let mut spend = Array2::zeros((outlets.len(), features.len()));
        for (o, f, v) in &rows {
            if v.is_finite() {
                spend[[row_of[o.as_str()], col_of[f.as_str()]]] += v;
            }
        }
        let history = with_history.then(|| {
            let shape = (outlets.len(), features.len());
            let mut h = History {
                earlier: Array2::zeros(shape),
                recent: Array2::zeros(shape),
                earlier_lines: vec![0.0; shape.0],
                recent_lines: vec![0.0; shape.0],
                recent_invoices: outlets
                    .iter()
                    .map(|o| recent_invoices.get(&o.outlet_id).copied().unwrap_or(0.0))
                    .collect(),
            };
            let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
            for ((o, f, _), [raw, recent, lines, recent_lines]) in rows.iter().zip(&history_rows) {
                let (r, c) = (row_of[o.as_str()], col_of[f.as_str()]);
                let (recent, recent_lines) = (finite(*recent), finite(*recent_lines));
                h.earlier[[r, c]] += finite(*raw) - recent;
                h.recent[[r, c]] += recent;
                h.earlier_lines[r] += finite(*lines) - recent_lines;
                h.recent_lines[r] += recent_lines;
            }
            h
        });

        let mut skus: Vec<String> = Vec::new();
        let mut sku_index: HashMap<String, u32> = HashMap::new();
        let mut per_outlet: Vec<Vec<(u32, f64)>> = vec![Vec::new(); outlets.len()];
        for b in &sku_spend {
            let o = str_column(b, "outlet_id", &sku_path)?;
            let s = str_column(b, "sku_id", &sku_path)?;
            let v = f64_column(b, "net_value", &sku_path)?;
            for i in 0..b.num_rows() {
                let Some(&row) = row_of.get(o[i].as_str()) else {
                    continue; // an outlet without spectrum or KPIs has nothing to cluster
                };
                let next = skus.len() as u32;
                let id = *sku_index.entry(s[i].clone()).or_insert_with(|| {
                    skus.push(s[i].clone());
                    next
                });
                if v[i].is_finite() {
                    per_outlet[row].push((id, v[i]));
                }
            }
        }
        Ok(Self {
            as_of,
            features,
            outlets,
            spend,
            skus,
            sku_spend: per_outlet,
            history,
        })
    }
}

/// Adds the outlets of one kpis.parquet batch to `records`.
fn read_kpis(
    b: &arrow::array::RecordBatch,
    path: &str,
    records: &mut BTreeMap<String, OutletRecord>,
) -> Result<(), Error> {
    let ids = str_column(b, "outlet_id", path)?;
    let value = f64_column(b, "net_value", path)?;
    let lines = f64_column(b, "lines", path)?;
    let ipm = f64_column(b, "invoices_per_month", path)?;
    let aiv = f64_column(b, "avg_invoice_value", path)?;
    let skus = f64_column(b, "distinct_skus", path)?;
    let region = optional_str_column(b, "region", path)?;
    let channel = optional_str_column(b, "channel", path)?;
    let attributes = optional_str_column(b, "attributes", path)?;
    for i in 0..b.num_rows() {
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        let attrs = attributes[i]
            .as_deref()
            .map(|a| parse_attributes(a, path, &ids[i]))
            .transpose()?
            .unwrap_or_default();
        records.insert(
            ids[i].clone(),
            OutletRecord {
                outlet_id: ids[i].clone(),
                kpis: Kpis {
                    net_value: finite(value[i]),
                    lines: finite(lines[i]),
                    invoices_per_month: finite(ipm[i]),
                    avg_invoice_value: finite(aiv[i]),
                    distinct_skus: finite(skus[i]),
                },
                region: region[i].clone(),
                channel: channel[i].clone(),
                attributes: attrs,
            },
        );
    }
    Ok(())
}

/// An outlet's attributes JSON object as text values (numbers in their JSON form).
fn parse_attributes(
    json: &str,
    path: &str,
    outlet: &str,
) -> Result<BTreeMap<String, String>, Error> {
    let bad = |reason: String| Error::Features {
        path: path.to_owned(),
        reason: format!("outlet `{outlet}`: attributes {reason}"),
    };
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(format!("are not JSON: {e}")))?;
    match v {
        serde_json::Value::Null => Ok(BTreeMap::new()),
        serde_json::Value::Object(m) => Ok(m
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Null => None,
                other => Some((k, other.to_string())),
            })
            .collect()),
        other => Err(bad(format!("are {other}, not a JSON object"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringViewArray};
    use spectra_core::schema::to_parquet;

    use super::*;

    /// The reader takes other physical types (string views, 32-bit integers), sums
    /// duplicate rows, and keeps outlets without KPIs.
    #[tokio::test]
    async fn reads_tables_of_other_physical_types() {
        let storage = Storage::memory();
        let day = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let dir = folder("s", day);
        let put = |name: &'static str, cols: Vec<(&'static str, ArrayRef)>| {
            let b = RecordBatch::try_from_iter(cols).unwrap();
            let s = storage.clone();
            let path = format!("{dir}/{name}");
            async move {
                s.put(&path, to_parquet(b.schema(), &[b]).unwrap())
                    .await
                    .unwrap()
            }
        };
        let sv = |v: &[&str]| -> ArrayRef { Arc::new(StringViewArray::from(v.to_vec())) };
        let iv = |v: &[i32]| -> ArrayRef { Arc::new(Int32Array::from(v.to_vec())) };
        put(
            "spectrum.parquet",
            vec![
                ("outlet_id", sv(&["b", "a", "a", "c"])),
                ("feature", sv(&["tea", "coffee", "coffee", "tea"])),
                ("value", iv(&[5, 1, 2, 7])),
            ],
        )
        .await;
        put(
            "kpis.parquet",
            vec![
                ("outlet_id", sv(&["a", "b"])),
                ("net_value", iv(&[3, 5])),
                ("lines", iv(&[1, 2])),
                ("invoices_per_month", iv(&[1, 1])),
                ("avg_invoice_value", iv(&[3, 5])),
                ("distinct_skus", iv(&[1, 1])),
                (
                    "attributes",
                    sv(&[r#"{"size": "M", "floor": 120}"#, "null"]),
                ),
            ],
        )
        .await;
        put(
            "sku_spend.parquet",
            vec![
                ("outlet_id", sv(&["a", "zz"])),
                ("sku_id", sv(&["k1", "k2"])),
                ("net_value", iv(&[3, 1])),
            ],
        )
        .await;
        let incomplete = FeatureSet::read(&storage, "s", day).await.unwrap_err();
        assert!(
            incomplete.to_string().contains("_manifest.json"),
            "{incomplete}"
        );
        assert_eq!(latest_complete(&storage, "s").await.unwrap(), None);
        storage
            .put_json(
                &format!("{dir}/_manifest.json"),
                &serde_json::json!({"as_of": "2026-11-20"}),
            )
            .await
            .unwrap();
        assert_eq!(latest_complete(&storage, "s").await.unwrap(), Some(day));
        let fs = FeatureSet::read(&storage, "s", day).await.unwrap();
        assert_eq!(fs.features, vec!["coffee", "tea"]);
        let ids: Vec<&str> = fs.outlets.iter().map(|o| o.outlet_id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
        assert_eq!(fs.spend.row(0).to_vec(), vec![3.0, 0.0]);
        assert_eq!(fs.outlets[0].attributes["floor"], "120");
        assert!(fs.outlets[1].attributes.is_empty() && fs.outlets[2].kpis.net_value == 0.0);
        assert_eq!(fs.sku_spend[0], vec![(0, 3.0)]);
    }
}
