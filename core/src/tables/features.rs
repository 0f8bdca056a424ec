//! The aggregator's tables: the daily roll-ups (`features/daily/`,
//! `features/outlet_daily/`) and each segmentation's window features
//! (`features/segmentation={name}/as_of={date}/`: `spectrum.parquet`, `kpis.parquet`,
//! `sku_spend.parquet`, then `_manifest.json` written last; `current.json` names the
//! current folder). The aggregator computes them with SQL and writes them through
//! [`conform`](super::conform) to these schemas; every reader reads these rows.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{Date32Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::columns::{float, int, schema, text};
use super::{batch, date32, for_each_batch, layout, parse_attributes, read_rows, Columns, Rows};
use crate::{Result, Storage};

use DataType::{Date32, Float64, Int64, Utf8};

mod kpi_table;
pub use kpi_table::{KpiBrief, KpiTable};

/// One row of `features/daily/`: an outlet's purchases of a SKU on a day.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    /// The outlet.
    pub outlet_id: String,
    /// The SKU.
    pub sku_id: String,
    /// The invoice date.
    pub date: NaiveDate,
    /// Net value (negative for returns).
    pub net_value: f64,
    /// Quantity.
    pub quantity: f64,
    /// Invoice lines.
    pub lines: i64,
    /// Distinct invoices.
    pub invoices: i64,
    /// Net value of the lines with a negative value.
    pub returns_value: f64,
}

impl Rows for DailyRow {
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema(&[
                ("outlet_id", Utf8, false),
                ("sku_id", Utf8, false),
                ("date", Date32, false),
                ("net_value", Float64, false),
                ("quantity", Float64, false),
                ("lines", Int64, false),
                ("invoices", Int64, false),
                ("returns_value", Float64, false),
            ])
        });
        S.clone()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        batch(
            Self::schema(),
            vec![
                text(rows.iter().map(|r| Some(r.outlet_id.as_str()))),
                text(rows.iter().map(|r| Some(r.sku_id.as_str()))),
                Arc::new(Date32Array::from_iter_values(
                    rows.iter().map(|r| date32(r.date)),
                )),
                float(rows.iter().map(|r| r.net_value)),
                float(rows.iter().map(|r| r.quantity)),
                int(rows.iter().map(|r| r.lines)),
                int(rows.iter().map(|r| r.invoices)),
                float(rows.iter().map(|r| r.returns_value)),
            ],
        )
    }

    fn from_batch(c: &Columns<'_>) -> Result<Vec<Self>> {
        let (o, s, d) = (c.ids("outlet_id")?, c.ids("sku_id")?, c.dates("date")?);
        let (v, q, r) = (
            c.float("net_value")?,
            c.float("quantity")?,
            c.float("returns_value")?,
        );
        let (l, i) = (c.int("lines")?, c.int("invoices")?);
        Ok((0..c.len())
            .map(|k| DailyRow {
                outlet_id: o[k].clone(),
                sku_id: s[k].clone(),
                date: d[k],
                net_value: v[k],
                quantity: q[k],
                lines: l[k],
                invoices: i[k],
                returns_value: r[k],
            })
            .collect())
    }
}

/// One row of `features/outlet_daily/`: an outlet's day.
#[derive(Debug, Clone, PartialEq)]
pub struct OutletDailyRow {
    /// The outlet.
    pub outlet_id: String,
    /// The invoice date.
    pub date: NaiveDate,
    /// Net value.
    pub net_value: f64,
    /// Quantity.
    pub quantity: f64,
    /// Invoice lines.
    pub lines: i64,
    /// Distinct invoices.
    pub invoices: i64,
    /// Net value of the lines with a negative value.
    pub returns_value: f64,
    /// Distinct SKUs bought.
    pub distinct_skus: i64,
    /// The day's main distributor: the one with the largest net value that day (the
    /// smallest id on a tie). `None` in tables written before it was kept.
    pub distributor_id: Option<String>,
}

impl Rows for OutletDailyRow {
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema(&[
                ("outlet_id", Utf8, false),
                ("date", Date32, false),
                ("net_value", Float64, false),
                ("quantity", Float64, false),
                ("lines", Int64, false),
                ("invoices", Int64, false),
                ("returns_value", Float64, false),
                ("distinct_skus", Int64, false),
                ("distributor_id", Utf8, true),
            ])
        });
        S.clone()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        batch(
            Self::schema(),
            vec![
                text(rows.iter().map(|r| Some(r.outlet_id.as_str()))),
                Arc::new(Date32Array::from_iter_values(
                    rows.iter().map(|r| date32(r.date)),
                )),
                float(rows.iter().map(|r| r.net_value)),
                float(rows.iter().map(|r| r.quantity)),
                int(rows.iter().map(|r| r.lines)),
                int(rows.iter().map(|r| r.invoices)),
                float(rows.iter().map(|r| r.returns_value)),
                int(rows.iter().map(|r| r.distinct_skus)),
                text(rows.iter().map(|r| r.distributor_id.as_deref())),
            ],
        )
    }

    fn from_batch(c: &Columns<'_>) -> Result<Vec<Self>> {
        let (o, d) = (c.ids("outlet_id")?, c.dates("date")?);
        let (v, q, r) = (
            c.float("net_value")?,
            c.float("quantity")?,
            c.float("returns_value")?,
        );
        let (l, i, s) = (c.int("lines")?, c.int("invoices")?, c.int("distinct_skus")?);
        let dist = c.text_if_present("distributor_id")?;
        Ok((0..c.len())
            .map(|k| OutletDailyRow {
                outlet_id: o[k].clone(),
                date: d[k],
                net_value: v[k],
                quantity: q[k],
                lines: l[k],
                invoices: i[k],
                returns_value: r[k],
                distinct_skus: s[k],
                distributor_id: dist[k].clone(),
            })
            .collect())
    }
}

/// One row of `spectrum.parquet`: an outlet's spend on one feature (a value of the
/// segmentation's level) in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectrumRow {
    /// The outlet.
    pub outlet_id: String,
    /// The feature (`unknown` for SKUs master data does not know).
    pub feature: String,
    /// Spend, recency-weighted when the segmentation has a half-life.
    pub value: f64,
    /// Spend, unweighted.
    pub raw_value: f64,
    /// Invoice lines.
    pub lines: i64,
    /// Unweighted spend in the recent window (the change detector's `recent_days`).
    pub recent_value: f64,
    /// Invoice lines in the recent window.
    pub recent_lines: i64,
}

impl Rows for SpectrumRow {
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema(&[
                ("outlet_id", Utf8, false),
                ("feature", Utf8, false),
                ("value", Float64, false),
                ("raw_value", Float64, false),
                ("lines", Int64, false),
                ("recent_value", Float64, false),
                ("recent_lines", Int64, false),
            ])
        });
        S.clone()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        batch(
            Self::schema(),
            vec![
                text(rows.iter().map(|r| Some(r.outlet_id.as_str()))),
                text(rows.iter().map(|r| Some(r.feature.as_str()))),
                float(rows.iter().map(|r| r.value)),
                float(rows.iter().map(|r| r.raw_value)),
                int(rows.iter().map(|r| r.lines)),
                float(rows.iter().map(|r| r.recent_value)),
                int(rows.iter().map(|r| r.recent_lines)),
            ],
        )
    }

    fn from_batch(c: &Columns<'_>) -> Result<Vec<Self>> {
        let (o, f) = (c.ids("outlet_id")?, c.ids("feature")?);
        let (v, raw, rv) = (
            c.float("value")?,
            c.float("raw_value")?,
            c.float("recent_value")?,
        );
        let (l, rl) = (c.int("lines")?, c.int("recent_lines")?);
        Ok((0..c.len())
            .map(|k| SpectrumRow {
                outlet_id: o[k].clone(),
                feature: f[k].clone(),
                value: v[k],
                raw_value: raw[k],
                lines: l[k],
                recent_value: rv[k],
                recent_lines: rl[k],
            })
            .collect())
    }
}

/// One row of `kpis.parquet`: an outlet's KPIs in the window and its master record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KpiRow {
    /// The outlet.
    pub outlet_id: String,
    /// Net value.
    pub net_value: f64,
    /// Invoice lines.
    pub lines: i64,
    /// Distinct invoices.
    pub invoices: i64,
    /// Invoices per 30.44 days of the window.
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
    /// Invoices in the recent window.
    pub recent_invoices: i64,
    /// Display name (master data).
    pub name: Option<String>,
    /// Region (master data).
    pub region: Option<String>,
    /// Channel (master data).
    pub channel: Option<String>,
    /// Attributes (master data), values as text.
    pub attributes: BTreeMap<String, String>,
    /// The main distributor in the window: the one that was the day's main
    /// distributor (see [`OutletDailyRow::distributor_id`]) for the largest net value
    /// (the smallest id on a tie). `None` when the daily tables predate it.
    pub distributor: Option<String>,
}

impl Rows for KpiRow {
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema(&[
                ("outlet_id", Utf8, false),
                ("net_value", Float64, false),
                ("lines", Int64, false),
                ("invoices", Int64, false),
                ("invoices_per_month", Float64, false),
                ("avg_invoice_value", Float64, false),
                ("distinct_skus", Int64, false),
                ("days_since_last_invoice", Int64, false),
                ("active_weeks", Int64, false),
                ("return_share", Float64, false),
                ("recent_invoices", Int64, false),
                ("name", Utf8, true),
                ("region", Utf8, true),
                ("channel", Utf8, true),
                ("attributes", Utf8, true),
                ("distributor", Utf8, true),
            ])
        });
        S.clone()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        let attrs: Vec<Option<String>> = rows
            .iter()
            .map(|r| {
                (!r.attributes.is_empty())
                    .then(|| serde_json::to_string(&r.attributes).unwrap_or_default())
            })
            .collect();
        batch(
            Self::schema(),
            vec![
                text(rows.iter().map(|r| Some(r.outlet_id.as_str()))),
                float(rows.iter().map(|r| r.net_value)),
                int(rows.iter().map(|r| r.lines)),
                int(rows.iter().map(|r| r.invoices)),
                float(rows.iter().map(|r| r.invoices_per_month)),
                float(rows.iter().map(|r| r.avg_invoice_value)),
                int(rows.iter().map(|r| r.distinct_skus)),
                int(rows.iter().map(|r| r.days_since_last_invoice)),
                int(rows.iter().map(|r| r.active_weeks)),
                float(rows.iter().map(|r| r.return_share)),
                int(rows.iter().map(|r| r.recent_invoices)),
                text(rows.iter().map(|r| r.name.as_deref())),
                text(rows.iter().map(|r| r.region.as_deref())),
                text(rows.iter().map(|r| r.channel.as_deref())),
                text(attrs.iter().map(Option::as_deref)),
                text(rows.iter().map(|r| r.distributor.as_deref())),
            ],
        )
    }

    fn from_batch(c: &Columns<'_>) -> Result<Vec<Self>> {
        let o = c.ids("outlet_id")?;
        let (nv, ipm, aiv, rs) = (
            c.float("net_value")?,
            c.float("invoices_per_month")?,
            c.float("avg_invoice_value")?,
            c.float("return_share")?,
        );
        let (l, inv, ds, dsl, aw, ri) = (
            c.int("lines")?,
            c.int("invoices")?,
            c.int("distinct_skus")?,
            c.int("days_since_last_invoice")?,
            c.int("active_weeks")?,
            c.int("recent_invoices")?,
        );
        let (name, region, channel, attrs) = (
            c.text("name")?,
            c.text("region")?,
            c.text("channel")?,
            c.text("attributes")?,
        );
        let dist = c.text_if_present("distributor")?;
        Ok((0..c.len())
            .map(|k| KpiRow {
                outlet_id: o[k].clone(),
                net_value: nv[k],
                lines: l[k],
                invoices: inv[k],
                invoices_per_month: ipm[k],
                avg_invoice_value: aiv[k],
                distinct_skus: ds[k],
                days_since_last_invoice: dsl[k],
                active_weeks: aw[k],
                return_share: rs[k],
                recent_invoices: ri[k],
                name: name[k].clone(),
                region: region[k].clone(),
                channel: channel[k].clone(),
                attributes: parse_attributes(attrs[k].as_deref()),
                distributor: dist[k].clone(),
            })
            .collect())
    }
}

/// One row of `sku_spend.parquet`: an outlet's purchases of a SKU in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct SkuSpendRow {
    /// The outlet.
    pub outlet_id: String,
    /// The SKU.
    pub sku_id: String,
    /// The SKU's feature at the segmentation's level.
    pub feature: String,
    /// Net value.
    pub net_value: f64,
    /// Quantity.
    pub quantity: f64,
    /// Invoice lines.
    pub lines: i64,
}

impl Rows for SkuSpendRow {
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema(&[
                ("outlet_id", Utf8, false),
                ("sku_id", Utf8, false),
                ("feature", Utf8, false),
                ("net_value", Float64, false),
                ("quantity", Float64, false),
                ("lines", Int64, false),
            ])
        });
        S.clone()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        batch(
            Self::schema(),
            vec![
                text(rows.iter().map(|r| Some(r.outlet_id.as_str()))),
                text(rows.iter().map(|r| Some(r.sku_id.as_str()))),
                text(rows.iter().map(|r| Some(r.feature.as_str()))),
                float(rows.iter().map(|r| r.net_value)),
                float(rows.iter().map(|r| r.quantity)),
                int(rows.iter().map(|r| r.lines)),
            ],
        )
    }

    fn from_batch(c: &Columns<'_>) -> Result<Vec<Self>> {
        let (o, s, f) = (c.ids("outlet_id")?, c.ids("sku_id")?, c.ids("feature")?);
        let (v, q, l) = (c.float("net_value")?, c.float("quantity")?, c.int("lines")?);
        Ok((0..c.len())
            .map(|k| SkuSpendRow {
                outlet_id: o[k].clone(),
                sku_id: s[k].clone(),
                feature: f[k].clone(),
                net_value: v[k],
                quantity: q[k],
                lines: l[k],
            })
            .collect())
    }
}

/// `_manifest.json` of a features folder, written last: a folder without it is
/// incomplete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Segmentation name.
    pub segmentation: String,
    /// Last day of the window.
    pub as_of: NaiveDate,
    /// First day of the window.
    pub window_start: NaiveDate,
    /// The segmentation's level.
    pub level: String,
    /// Outlets with a KPI row (after the filter).
    pub outlets: u64,
    /// Distinct features (level values) in the spectrum.
    pub features: u64,
    /// Distinct SKUs bought in the window that master data does not know.
    pub unknown_skus: u64,
    /// Distinct outlets buying in the window that master data does not know.
    pub unknown_outlets: u64,
    /// When the folder was written (RFC 3339).
    pub created_at: String,
    /// SHA-256 (hex) of the folder's Parquet files, in the order spectrum, SKU spend,
    /// KPIs: the same features give the same hash whenever they are rewritten. Absent
    /// in folders written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// The definition's [`crate::config::SegmentationConfig::features_fingerprint`]
    /// the folder was rolled up for: after an edit of the level, window or filter,
    /// the segmenter waits for features with the new fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
}

/// `features/segmentation={name}/current.json`, written after a folder's manifest: the
/// as-of date the aggregator considers current for the segmentation (it may move back
/// when data is corrected).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CurrentFeatures {
    /// The current as-of date.
    pub as_of: NaiveDate,
    /// Its features folder, relative to the storage root.
    pub path: String,
    /// The folder manifest's `created_at`.
    pub created_at: String,
}

/// A read of one features folder in progress. The aggregator removes a folder's
/// manifest before rewriting it and writes it again last, so the same manifest at the
/// start ([`FolderRead::begin`]) and at the end ([`FolderRead::finish`]) means every
/// table read in between is of one version. Tables are streamed a batch at a time
/// ([`FolderRead::stream`]): a reader keeps what it needs, never the decoded table.
#[derive(Debug)]
pub struct FolderRead {
    segmentation: String,
    as_of: NaiveDate,
    manifest_path: String,
    before: bytes::Bytes,
    /// The manifest's `content_hash`: which version of the features these are.
    content_hash: Option<String>,
}

const MISSING_TABLE: &str = "missing, though the folder has a manifest";

/// A features folder that is being rewritten (or lost its files) while read.
fn incomplete(path: String, reason: &str) -> crate::Error {
    crate::Error::Table {
        file: path,
        reason: reason.to_owned(),
    }
}

impl FolderRead {
    /// Starts reading the complete features folder of a segmentation and as-of date.
    pub async fn begin(storage: &Storage, segmentation: &str, as_of: NaiveDate) -> Result<Self> {
        let manifest_path = layout::features_file(segmentation, as_of, "_manifest.json");
        let Some(before) = storage.get(&manifest_path).await? else {
            return Err(incomplete(
                manifest_path,
                "missing: the folder is incomplete",
            ));
        };
        let content_hash = serde_json::from_slice::<Manifest>(&before)
            .map_err(|e| incomplete(manifest_path.clone(), &format!("not a manifest: {e}")))?
            .content_hash;
        Ok(Self {
            segmentation: segmentation.to_owned(),
            as_of,
            manifest_path,
            before,
            content_hash,
        })
    }

    /// Streams one of the folder's tables (`spectrum.parquet`, `kpis.parquet`,
    /// `sku_spend.parquet`) through `f`, a batch at a time, `columns` only when given.
    pub async fn stream(
        &self,
        storage: &Storage,
        table: &str,
        columns: Option<&[&str]>,
        f: impl FnMut(&Columns<'_>) -> Result<()>,
    ) -> Result<()> {
        let path = self.path(table);
        match for_each_batch(storage, &path, columns, f).await? {
            true => Ok(()),
            false => Err(incomplete(path, MISSING_TABLE)),
        }
    }

    /// How many rows one of the folder's tables holds, from its footer alone (a
    /// reader sizes what it will make from them before reading them).
    pub async fn row_count(&self, storage: &Storage, table: &str) -> Result<u64> {
        let path = self.path(table);
        super::keyed::footer_rows(storage, &path)
            .await?
            .ok_or_else(|| incomplete(path, MISSING_TABLE))
    }

    /// One of the folder's tables as rows (for the small ones: `kpis.parquet`).
    pub async fn rows<T: Rows>(&self, storage: &Storage, table: &str) -> Result<Vec<T>> {
        let path = self.path(table);
        read_rows(storage, &path)
            .await?
            .ok_or_else(|| incomplete(path, MISSING_TABLE))
    }

    fn path(&self, table: &str) -> String {
        layout::features_file(&self.segmentation, self.as_of, table)
    }

    /// Ends the read: an error when the folder changed since [`FolderRead::begin`]
    /// (read it again), otherwise the manifest's content hash.
    pub async fn finish(self, storage: &Storage) -> Result<Option<String>> {
        if storage.get(&self.manifest_path).await?.as_ref() != Some(&self.before) {
            return Err(incomplete(
                self.manifest_path,
                "the folder changed while it was read (the aggregator is rewriting it); read it again",
            ));
        }
        Ok(self.content_hash)
    }
}

/// The manifest of a features folder; `None` while the folder is incomplete.
pub async fn manifest(
    storage: &Storage,
    segmentation: &str,
    as_of: NaiveDate,
) -> Result<Option<Manifest>> {
    storage
        .get_json(&layout::features_file(
            segmentation,
            as_of,
            "_manifest.json",
        ))
        .await
}

/// The latest as-of date whose features folder is complete (has `_manifest.json`).
pub async fn latest_complete(storage: &Storage, segmentation: &str) -> Result<Option<NaiveDate>> {
    let root = layout::features_root(segmentation);
    Ok(storage
        .list(&root)
        .await?
        .iter()
        .filter(|l| l.path.ends_with("/_manifest.json"))
        .filter_map(|l| layout::features_as_of(&l.path))
        .max())
}

/// The as-of date of the current features: the one `current.json` names when its
/// folder is complete (`None` while the aggregator rewrites it), else — stores written
/// before the pointer existed — the latest complete folder.
pub async fn current(storage: &Storage, segmentation: &str) -> Result<Option<NaiveDate>> {
    Ok(current_manifest(storage, segmentation)
        .await?
        .map(|m| m.as_of))
}

/// The manifest of the current features folder ([`current`]).
pub async fn current_manifest(storage: &Storage, segmentation: &str) -> Result<Option<Manifest>> {
    let pointer: Option<CurrentFeatures> = storage
        .get_json(&layout::features_current(segmentation))
        .await?;
    let as_of = match pointer {
        Some(p) => p.as_of,
        None => match latest_complete(storage, segmentation).await? {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    manifest(storage, segmentation, as_of).await
}

/// The dates of the `date=…` partitions under a daily folder ([`layout::DAILY`] or
/// [`layout::OUTLET_DAILY`]) with their objects, in date order.
pub async fn partitions(storage: &Storage, folder: &str) -> Result<Vec<(NaiveDate, String)>> {
    let mut out: Vec<(NaiveDate, String)> = storage
        .list(folder)
        .await?
        .into_iter()
        .filter(|l| l.path.ends_with(".parquet"))
        .filter_map(|l| Some((layout::partition_date(&l.path)?, l.path)))
        .collect();
    out.sort();
    Ok(out)
}

/// The `features/daily/` rows of the days in any of `ranges` (inclusive).
pub async fn read_daily(
    storage: &Storage,
    ranges: &[(NaiveDate, NaiveDate)],
) -> Result<Vec<DailyRow>> {
    let mut out = Vec::new();
    stream_daily(storage, ranges, None, |_, c| {
        out.extend(DailyRow::from_batch(c)?);
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Streams the `features/daily/` files of the days in any of `ranges` (inclusive)
/// through `f` with each file's date, a batch at a time, `columns` only when given.
pub async fn stream_daily(
    storage: &Storage,
    ranges: &[(NaiveDate, NaiveDate)],
    columns: Option<&[&str]>,
    mut f: impl FnMut(NaiveDate, &Columns<'_>) -> Result<()>,
) -> Result<()> {
    for (date, path) in partitions(storage, layout::DAILY).await? {
        if ranges.iter().any(|(a, b)| *a <= date && date <= *b) {
            for_each_batch(storage, &path, columns, |c| f(date, c)).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{write_rows, Columns};

    #[tokio::test]
    async fn rows_round_trip_and_a_missing_column_names_file_and_column() {
        let storage = Storage::memory();
        let rows = vec![KpiRow {
            outlet_id: "o1".into(),
            net_value: 12.5,
            lines: 3,
            attributes: [("size".to_owned(), "M".to_owned())].into(),
            region: Some("north".into()),
            ..Default::default()
        }];
        write_rows(&storage, "k.parquet", &rows).await.unwrap();
        let back: Vec<KpiRow> = read_rows(&storage, "k.parquet").await.unwrap().unwrap();
        assert_eq!(back, rows);
        // The footer alone says how many rows a table holds.
        let many: Vec<KpiRow> = (0..1000).map(|_| rows[0].clone()).collect();
        write_rows(&storage, "many.parquet", &many).await.unwrap();
        let count = |p: &'static str| super::super::keyed::footer_rows(&storage, p);
        assert_eq!(count("many.parquet").await.unwrap(), Some(1000));
        assert_eq!(count("k.parquet").await.unwrap(), Some(1));
        assert_eq!(count("none.parquet").await.unwrap(), None);

        let b = SpectrumRow::to_batch(&[]).unwrap();
        let without = b.project(&[0, 1, 2]).unwrap();
        let e = SpectrumRow::from_batch(&Columns::new(&without, "x/spectrum.parquet")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("x/spectrum.parquet") && text.contains("`raw_value`"),
            "{text}"
        );
    }

    #[test]
    fn conform_casts_by_name_and_names_what_is_missing() {
        use arrow::array::{ArrayRef, Int32Array};
        let b = RecordBatch::try_from_iter([
            ("lines", Arc::new(Int32Array::from(vec![2])) as ArrayRef),
            ("outlet_id", text([Some("o")].into_iter())),
        ])
        .unwrap();
        let e = super::super::conform(&b, &SkuSpendRow::schema(), "f.parquet").unwrap_err();
        assert!(e.to_string().contains("`sku_id`"), "{e}");
    }
}
