//! The tables the publisher reads, exactly as the README's "Tables" section lays them
//! out: a segmentation's latest run (`segmentations/{name}/latest.json` → the run's
//! `assignments.parquet`, `outlet_gaps.parquet`, `profiles.json`, `model.json`), the
//! run's features (`features/segmentation={name}/as_of=…/`) and the daily roll-ups
//! (`features/daily/`, `features/outlet_daily/`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use spectra_core::Storage;

use crate::columns::Columns;
use crate::Error;

/// `segmentations/{name}/latest.json`: the latest complete run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    /// `{name}/{as_of}/{seq}`.
    pub run_id: String,
    /// The run's as-of date.
    pub as_of: NaiveDate,
    /// The run folder, relative to the storage root.
    #[serde(default)]
    pub path: String,
    /// Set when the circuit breaker held the run (see `spectra_core::hold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<spectra_core::hold::Hold>,
}

/// One row of `assignments.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentRow {
    /// The outlet.
    pub outlet_id: String,
    /// Its segment in this run.
    pub segment_id: String,
    /// Its segment in the previous run, if any.
    pub previous_segment_id: Option<String>,
    /// `new`, `moved` or `same` (against the previous run).
    pub change: String,
    /// Distance to the segment's centroid.
    pub distance: f64,
    /// How clearly the outlet belongs to its segment, 0–1.
    pub confidence: f64,
    /// Net value in the window.
    pub value: f64,
    /// Invoice lines in the window.
    pub lines: i64,
    /// Estimated extra value if the outlet bought like its segment.
    pub potential: f64,
}

/// One row of `outlet_gaps.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct GapRow {
    /// The outlet.
    pub outlet_id: String,
    /// Its segment.
    pub segment_id: String,
    /// A feature of the segmentation's level.
    pub feature: String,
    /// The outlet's share of spend on the feature.
    pub outlet_share: f64,
    /// The segment's share of spend on the feature.
    pub segment_share: f64,
    /// `segment_share - outlet_share`.
    pub gap: f64,
}

/// A run as the segmenter wrote it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The segmentation's name.
    pub segmentation: String,
    /// Which run this is.
    pub latest: Latest,
    /// Every assigned outlet.
    pub assignments: Vec<AssignmentRow>,
    /// Per outlet × feature gaps to the segment.
    pub gaps: Vec<GapRow>,
    /// The segmenter's profiles, one object per segment (keyed by `segment_id`).
    pub profiles: Vec<Map<String, Value>>,
    /// The model: features, centroids, parameters and quality.
    pub model: Value,
}

/// One row of `kpis.parquet`: an outlet's KPIs in the window and its master record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutletKpi {
    /// The outlet.
    pub outlet_id: String,
    /// Net value in the window.
    pub net_value: f64,
    /// Lines in the window.
    pub lines: i64,
    /// Distinct invoices.
    pub invoices: i64,
    /// Invoices per 30 days.
    pub invoices_per_month: f64,
    /// Net value per invoice.
    pub avg_invoice_value: f64,
    /// Distinct SKUs bought.
    pub distinct_skus: i64,
    /// Days from the last invoice to the as-of date.
    pub days_since_last_invoice: i64,
    /// Weeks with at least one invoice.
    pub active_weeks: i64,
    /// Share of value returned.
    pub return_share: f64,
    /// Display name.
    pub name: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// Free-form attributes, as text.
    pub attributes: BTreeMap<String, String>,
}

/// One row of `sku_spend.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct SkuSpend {
    /// The outlet.
    pub outlet_id: String,
    /// The SKU.
    pub sku_id: String,
    /// The SKU's feature at the segmentation's level.
    pub feature: String,
    /// Net value in the window.
    pub net_value: f64,
    /// Quantity in the window.
    pub quantity: f64,
    /// Lines in the window.
    pub lines: i64,
}

/// One row of `spectrum.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectrumRow {
    /// The outlet.
    pub outlet_id: String,
    /// A feature of the level.
    pub feature: String,
    /// Spend, recency-weighted when configured.
    pub value: f64,
    /// Spend, unweighted.
    pub raw_value: f64,
}

/// The features of one segmentation and as-of date.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// Per outlet KPIs and master data.
    pub kpis: Vec<OutletKpi>,
    /// Per outlet × SKU spend.
    pub sku_spend: Vec<SkuSpend>,
    /// Per outlet × feature spend.
    pub spectrum: Vec<SpectrumRow>,
}

/// One row of `features/daily/`.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    /// The outlet.
    pub outlet_id: String,
    /// The SKU.
    pub sku_id: String,
    /// The day.
    pub date: NaiveDate,
    /// Net value.
    pub net_value: f64,
    /// Quantity.
    pub quantity: f64,
}

/// The folder of a run.
pub fn run_dir(segmentation: &str, latest: &Latest) -> String {
    if !latest.path.trim().is_empty() {
        return latest.path.trim_matches('/').to_owned();
    }
    let seq = latest.run_id.rsplit('/').next().unwrap_or("1");
    format!("segmentations/{segmentation}/runs/{}.{seq}", latest.as_of)
}

/// Reads `segmentations/{name}/latest.json`; `None` before the first run.
pub async fn latest(storage: &Storage, segmentation: &str) -> Result<Option<Latest>, Error> {
    Ok(storage
        .get_json(&format!("segmentations/{segmentation}/latest.json"))
        .await?)
}

async fn parquet(
    storage: &Storage,
    rel: &str,
) -> Result<Option<Vec<arrow::array::RecordBatch>>, Error> {
    match storage.get(rel).await? {
        None => Ok(None),
        Some(b) => Ok(Some(spectra_core::schema::from_parquet(b).map_err(
            |e| Error::Table {
                file: rel.to_owned(),
                reason: e.to_string(),
            },
        )?)),
    }
}

/// Reads a run: its assignments must exist; gaps, profiles and model may be absent.
pub async fn read_run(storage: &Storage, segmentation: &str, latest: Latest) -> Result<Run, Error> {
    let dir = run_dir(segmentation, &latest);
    let file = format!("{dir}/assignments.parquet");
    let batches = parquet(storage, &file).await?.ok_or_else(|| Error::Table {
        file: file.clone(),
        reason: "missing, though latest.json names the run".into(),
    })?;
    let mut assignments = Vec::new();
    for b in &batches {
        let c = Columns::new(b, &file);
        let outlet = c.ids("outlet_id")?;
        let segment = c.ids("segment_id")?;
        let prev = c.text_opt("previous_segment_id")?;
        let change = c.text_opt("change")?;
        let distance = c.float("distance", false)?;
        let confidence = c.float("confidence", false)?;
        let value = c.float("value", false)?;
        let lines = c.int("lines", false)?;
        let potential = c.float("potential", false)?;
        for i in 0..b.num_rows() {
            assignments.push(AssignmentRow {
                outlet_id: outlet[i].clone(),
                segment_id: segment[i].clone(),
                previous_segment_id: prev.as_ref().and_then(|p| p[i].clone()),
                change: change
                    .as_ref()
                    .and_then(|c| c[i].clone())
                    .unwrap_or_else(|| "same".into()),
                distance: distance[i],
                confidence: confidence[i],
                value: value[i],
                lines: lines[i],
                potential: potential[i],
            });
        }
    }
    let gfile = format!("{dir}/outlet_gaps.parquet");
    let mut gaps = Vec::new();
    for b in parquet(storage, &gfile).await?.unwrap_or_default() {
        let c = Columns::new(&b, &gfile);
        let (o, s, f) = (c.ids("outlet_id")?, c.ids("segment_id")?, c.ids("feature")?);
        let (os, ss) = (
            c.float("outlet_share", true)?,
            c.float("segment_share", true)?,
        );
        let gap = c.float("gap", false)?;
        for i in 0..b.num_rows() {
            gaps.push(GapRow {
                outlet_id: o[i].clone(),
                segment_id: s[i].clone(),
                feature: f[i].clone(),
                outlet_share: os[i],
                segment_share: ss[i],
                gap: gap[i],
            });
        }
    }
    let profiles: Option<Value> = storage.get_json(&format!("{dir}/profiles.json")).await?;
    let profiles = match profiles {
        Some(Value::Array(a)) => a,
        Some(Value::Object(mut m)) => match m.remove("segments").or_else(|| m.remove("profiles")) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
    .into_iter()
    .filter_map(|v| match v {
        Value::Object(m) => Some(m),
        _ => None,
    })
    .collect();
    let model = storage
        .get_json(&format!("{dir}/model.json"))
        .await?
        .unwrap_or(Value::Null);
    Ok(Run {
        segmentation: segmentation.to_owned(),
        latest,
        assignments,
        gaps,
        profiles,
        model,
    })
}

/// The features folder of a segmentation and as-of date.
pub fn features_dir(segmentation: &str, as_of: NaiveDate) -> String {
    format!("features/segmentation={segmentation}/as_of={as_of}")
}

/// Reads a run's features; missing files read as empty.
pub async fn read_features(
    storage: &Storage,
    segmentation: &str,
    as_of: NaiveDate,
) -> Result<Features, Error> {
    let dir = features_dir(segmentation, as_of);
    let mut f = Features::default();
    let file = format!("{dir}/kpis.parquet");
    for b in parquet(storage, &file).await?.unwrap_or_default() {
        let c = Columns::new(&b, &file);
        let id = c.ids("outlet_id")?;
        let nv = c.float("net_value", true)?;
        let lines = c.int("lines", false)?;
        let inv = c.int("invoices", false)?;
        let ipm = c.float("invoices_per_month", false)?;
        let aiv = c.float("avg_invoice_value", false)?;
        let ds = c.int("distinct_skus", false)?;
        let dsl = c.int("days_since_last_invoice", false)?;
        let aw = c.int("active_weeks", false)?;
        let rs = c.float("return_share", false)?;
        let none = || vec![None; b.num_rows()];
        let name = c.text_opt("name")?.unwrap_or_else(none);
        let region = c.text_opt("region")?.unwrap_or_else(none);
        let channel = c.text_opt("channel")?.unwrap_or_else(none);
        let attrs = c.text_opt("attributes")?.unwrap_or_else(none);
        for i in 0..b.num_rows() {
            f.kpis.push(OutletKpi {
                outlet_id: id[i].clone(),
                net_value: nv[i],
                lines: lines[i],
                invoices: inv[i],
                invoices_per_month: ipm[i],
                avg_invoice_value: aiv[i],
                distinct_skus: ds[i],
                days_since_last_invoice: dsl[i],
                active_weeks: aw[i],
                return_share: rs[i],
                name: name[i].clone(),
                region: region[i].clone(),
                channel: channel[i].clone(),
                attributes: parse_attributes(attrs[i].as_deref()),
            });
        }
    }
    let file = format!("{dir}/sku_spend.parquet");
    for b in parquet(storage, &file).await?.unwrap_or_default() {
        let c = Columns::new(&b, &file);
        let (o, s) = (c.ids("outlet_id")?, c.ids("sku_id")?);
        let feat = c
            .text_opt("feature")?
            .unwrap_or_else(|| vec![None; b.num_rows()]);
        let (nv, q, l) = (
            c.float("net_value", true)?,
            c.float("quantity", false)?,
            c.int("lines", false)?,
        );
        for i in 0..b.num_rows() {
            f.sku_spend.push(SkuSpend {
                outlet_id: o[i].clone(),
                sku_id: s[i].clone(),
                feature: feat[i].clone().unwrap_or_else(|| "unknown".into()),
                net_value: nv[i],
                quantity: q[i],
                lines: l[i],
            });
        }
    }
    let file = format!("{dir}/spectrum.parquet");
    for b in parquet(storage, &file).await?.unwrap_or_default() {
        let c = Columns::new(&b, &file);
        let (o, feat) = (c.ids("outlet_id")?, c.ids("feature")?);
        let v = c.float("value", true)?;
        let raw = match c.float("raw_value", false) {
            Ok(r) if b.column_by_name("raw_value").is_some() => r,
            _ => v.clone(),
        };
        for i in 0..b.num_rows() {
            f.spectrum.push(SpectrumRow {
                outlet_id: o[i].clone(),
                feature: feat[i].clone(),
                value: v[i],
                raw_value: raw[i],
            });
        }
    }
    Ok(f)
}

/// A master record's attributes (JSON object text) as text values.
pub fn parse_attributes(text: Option<&str>) -> BTreeMap<String, String> {
    let Some(Value::Object(m)) = text.and_then(|t| serde_json::from_str(t).ok()) else {
        return BTreeMap::new();
    };
    m.into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            _ => None,
        })
        .collect()
}

/// The dates of the `date=…` partitions under a folder (`features/daily/`).
pub async fn partition_dates(
    storage: &Storage,
    folder: &str,
) -> Result<Vec<(NaiveDate, String)>, Error> {
    let mut out = Vec::new();
    for l in storage.list(folder).await? {
        let Some(rest) = l.path.split("date=").nth(1) else {
            continue;
        };
        let Some(d) = rest.get(..10).and_then(|d| d.parse::<NaiveDate>().ok()) else {
            continue;
        };
        if l.path.ends_with(".parquet") {
            out.push((d, l.path));
        }
    }
    Ok(out)
}

/// Reads the `features/daily/` rows whose date is in one of `ranges` (inclusive).
pub async fn read_daily(
    storage: &Storage,
    ranges: &[(NaiveDate, NaiveDate)],
) -> Result<Vec<DailyRow>, Error> {
    let mut out = Vec::new();
    for (date, path) in partition_dates(storage, "features/daily/").await? {
        if !ranges.iter().any(|(a, b)| *a <= date && date <= *b) {
            continue;
        }
        for b in parquet(storage, &path).await?.unwrap_or_default() {
            let c = Columns::new(&b, &path);
            let (o, s) = (c.ids("outlet_id")?, c.ids("sku_id")?);
            let (nv, q) = (c.float("net_value", true)?, c.float("quantity", false)?);
            for i in 0..b.num_rows() {
                out.push(DailyRow {
                    outlet_id: o[i].clone(),
                    sku_id: s[i].clone(),
                    date,
                    net_value: nv[i],
                    quantity: q[i],
                });
            }
        }
    }
    Ok(out)
}

/// One outlet's net value per day from `features/outlet_daily/` in `[from, to]`.
pub async fn outlet_history(
    storage: &Storage,
    outlet_id: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, f64, i64)>, Error> {
    let mut out = Vec::new();
    for (date, path) in partition_dates(storage, "features/outlet_daily/").await? {
        if date < from || date > to {
            continue;
        }
        for b in parquet(storage, &path).await?.unwrap_or_default() {
            let c = Columns::new(&b, &path);
            let o = c.ids("outlet_id")?;
            let nv = c.float("net_value", true)?;
            let lines = c.int("lines", false)?;
            for i in 0..b.num_rows() {
                if o[i] == outlet_id {
                    out.push((date, nv[i], lines[i]));
                }
            }
        }
    }
    out.sort_by_key(|r| r.0);
    Ok(out)
}

/// The ids of the segmentations that have a `latest.json` in storage.
pub async fn stored_segmentations(storage: &Storage) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = storage
        .list("segmentations/")
        .await?
        .into_iter()
        .filter_map(|l| {
            let rest = l.path.strip_prefix("segmentations/")?;
            let (name, file) = rest.split_once('/')?;
            (file == "latest.json").then(|| name.to_owned())
        })
        .collect();
    names.dedup();
    Ok(names)
}

/// Every run folder of a segmentation with its model, newest first (for the pipeline
/// page).
pub async fn run_history(
    storage: &Storage,
    segmentation: &str,
    limit: usize,
) -> Result<Vec<(String, Value)>, Error> {
    let prefix = format!("segmentations/{segmentation}/runs/");
    let mut dirs: Vec<String> = storage
        .list(&prefix)
        .await?
        .into_iter()
        .filter(|l| l.path.ends_with("/model.json"))
        .map(|l| l.path.trim_end_matches("/model.json").to_owned())
        .collect();
    // `{as_of}.{seq}`: sort by date, then numerically by sequence.
    dirs.sort_by_key(|d| {
        let leaf = d.rsplit('/').next().unwrap_or_default().to_owned();
        let (date, seq) = leaf.split_once('.').unwrap_or((&leaf, "0"));
        (date.to_owned(), seq.parse::<u64>().unwrap_or(0))
    });
    dirs.reverse();
    let mut out = Vec::new();
    for d in dirs.into_iter().take(limit) {
        let model: Value = storage
            .get_json(&format!("{d}/model.json"))
            .await?
            .unwrap_or(Value::Null);
        let leaf = d.rsplit('/').next().unwrap_or_default();
        let run_id = match leaf.split_once('.') {
            Some((date, seq)) => format!("{segmentation}/{date}/{seq}"),
            None => leaf.to_owned(),
        };
        out.push((run_id, model));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dir_from_path_or_run_id() {
        let l = Latest {
            run_id: "mix/2026-11-21/2".into(),
            as_of: "2026-11-21".parse().unwrap(),
            path: String::new(),
            held: None,
        };
        assert_eq!(run_dir("mix", &l), "segmentations/mix/runs/2026-11-21.2");
        let l = Latest {
            path: "segmentations/mix/runs/2026-11-21.2/".into(),
            ..l
        };
        assert_eq!(run_dir("mix", &l), "segmentations/mix/runs/2026-11-21.2");
    }

    #[test]
    fn attributes_keep_strings_and_numbers() {
        let a = parse_attributes(Some(r#"{"size":"M","floor":120,"x":[1]}"#));
        assert_eq!(a.get("size").map(String::as_str), Some("M"));
        assert_eq!(a.get("floor").map(String::as_str), Some("120"));
        assert!(!a.contains_key("x"));
        assert!(parse_attributes(Some("not json")).is_empty());
    }
}
