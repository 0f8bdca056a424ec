//! Writes a features folder in the aggregator's layout (README "Tables"): for tests,
//! benchmarks and fixtures that need feature tables without running the aggregator.
//! The manifest is written last, as the aggregator does, so the folder turns complete
//! atomically, and `current.json` after it names the folder as the current one.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use serde_json::json;
use spectra_core::schema::to_parquet;
use spectra_core::Storage;

use crate::Error;

/// One outlet's spend on one feature (a spectrum.parquet row).
#[derive(Debug, Clone, PartialEq)]
pub struct SpectrumRow {
    /// Outlet id.
    pub outlet_id: String,
    /// Value of the segmentation's level (category, brand…).
    pub feature: String,
    /// Spend, recency-weighted when configured.
    pub value: f64,
    /// Spend, unweighted.
    pub raw_value: f64,
}

/// One outlet's KPIs and master record (a kpis.parquet row).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KpiRow {
    /// Outlet id.
    pub outlet_id: String,
    /// Net value in the window.
    pub net_value: f64,
    /// Invoice lines.
    pub lines: i64,
    /// Distinct invoices.
    pub invoices: i64,
    /// Invoices per month.
    pub invoices_per_month: f64,
    /// Average invoice value.
    pub avg_invoice_value: f64,
    /// Distinct SKUs.
    pub distinct_skus: i64,
    /// Region.
    pub region: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// Attributes as a JSON object.
    pub attributes: Option<String>,
}

/// One outlet's spend on one SKU (a sku_spend.parquet row).
#[derive(Debug, Clone, PartialEq)]
pub struct SkuSpendRow {
    /// Outlet id.
    pub outlet_id: String,
    /// SKU id.
    pub sku_id: String,
    /// The SKU's feature at the segmentation's level.
    pub feature: String,
    /// Net value in the window.
    pub net_value: f64,
}

/// The three tables of a features folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureTables {
    /// spectrum.parquet rows.
    pub spectrum: Vec<SpectrumRow>,
    /// kpis.parquet rows.
    pub kpis: Vec<KpiRow>,
    /// sku_spend.parquet rows.
    pub sku_spend: Vec<SkuSpendRow>,
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}
fn f64f(name: &str) -> Field {
    Field::new(name, DataType::Float64, false)
}
fn i64f(name: &str) -> Field {
    Field::new(name, DataType::Int64, false)
}
fn strings<'a>(v: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(v.collect::<StringArray>())
}

impl FeatureTables {
    /// Writes the folder `features/segmentation={segmentation}/as_of={as_of}/`, the
    /// manifest last.
    pub async fn write(
        &self,
        storage: &Storage,
        segmentation: &str,
        level: &str,
        window_days: u32,
        as_of: NaiveDate,
    ) -> Result<(), Error> {
        let dir = spectra_core::tables::layout::features(segmentation, as_of);
        let spectrum: SchemaRef = Arc::new(Schema::new(vec![
            utf8("outlet_id", false),
            utf8("feature", false),
            f64f("value"),
            f64f("raw_value"),
        ]));
        let s = &self.spectrum;
        let batch = RecordBatch::try_new(
            spectrum.clone(),
            vec![
                strings(s.iter().map(|r| Some(r.outlet_id.as_str()))),
                strings(s.iter().map(|r| Some(r.feature.as_str()))),
                Arc::new(Float64Array::from_iter_values(s.iter().map(|r| r.value))),
                Arc::new(Float64Array::from_iter_values(
                    s.iter().map(|r| r.raw_value),
                )),
            ],
        )?;
        storage
            .put(
                &format!("{dir}/spectrum.parquet"),
                to_parquet(spectrum, &[batch])?,
            )
            .await?;

        let kpis: SchemaRef = Arc::new(Schema::new(vec![
            utf8("outlet_id", false),
            f64f("net_value"),
            i64f("lines"),
            i64f("invoices"),
            f64f("invoices_per_month"),
            f64f("avg_invoice_value"),
            i64f("distinct_skus"),
            i64f("days_since_last_invoice"),
            i64f("active_weeks"),
            f64f("return_share"),
            utf8("name", true),
            utf8("region", true),
            utf8("channel", true),
            utf8("attributes", true),
        ]));
        let k = &self.kpis;
        let f = |g: fn(&KpiRow) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(k.iter().map(g)))
        };
        let i = |g: fn(&KpiRow) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(k.iter().map(g)))
        };
        let batch = RecordBatch::try_new(
            kpis.clone(),
            vec![
                strings(k.iter().map(|r| Some(r.outlet_id.as_str()))),
                f(|r| r.net_value),
                i(|r| r.lines),
                i(|r| r.invoices),
                f(|r| r.invoices_per_month),
                f(|r| r.avg_invoice_value),
                i(|r| r.distinct_skus),
                i(|_| 1),
                i(|r| r.invoices.min(13)),
                f(|_| 0.0),
                strings(k.iter().map(|_| None)),
                strings(k.iter().map(|r| r.region.as_deref())),
                strings(k.iter().map(|r| r.channel.as_deref())),
                strings(k.iter().map(|r| r.attributes.as_deref())),
            ],
        )?;
        storage
            .put(&format!("{dir}/kpis.parquet"), to_parquet(kpis, &[batch])?)
            .await?;

        let sku: SchemaRef = Arc::new(Schema::new(vec![
            utf8("outlet_id", false),
            utf8("sku_id", false),
            utf8("feature", false),
            f64f("net_value"),
            f64f("quantity"),
            i64f("lines"),
        ]));
        let s = &self.sku_spend;
        let batch = RecordBatch::try_new(
            sku.clone(),
            vec![
                strings(s.iter().map(|r| Some(r.outlet_id.as_str()))),
                strings(s.iter().map(|r| Some(r.sku_id.as_str()))),
                strings(s.iter().map(|r| Some(r.feature.as_str()))),
                Arc::new(Float64Array::from_iter_values(
                    s.iter().map(|r| r.net_value),
                )),
                Arc::new(Float64Array::from_iter_values(
                    s.iter().map(|r| r.net_value / 10.0),
                )),
                Arc::new(Int64Array::from_iter_values(s.iter().map(|_| 1))),
            ],
        )?;
        storage
            .put(
                &format!("{dir}/sku_spend.parquet"),
                to_parquet(sku, &[batch])?,
            )
            .await?;

        let features: std::collections::BTreeSet<&str> =
            self.spectrum.iter().map(|r| r.feature.as_str()).collect();
        let window_start = as_of - chrono::Days::new(u64::from(window_days.saturating_sub(1)));
        storage
            .put_json(
                &format!("{dir}/_manifest.json"),
                &json!({
                    "segmentation": segmentation,
                    "as_of": as_of.to_string(),
                    "window_start": window_start.to_string(),
                    "level": level,
                    "outlets": self.kpis.len(),
                    "features": features.len(),
                    "unknown_skus": 0,
                    "unknown_outlets": 0,
                    "created_at": chrono::Utc::now().to_rfc3339(),
                }),
            )
            .await?;
        storage
            .put_json(
                &spectra_core::tables::layout::features_current(segmentation),
                &json!({"as_of": as_of.to_string(), "path": dir, "created_at": chrono::Utc::now().to_rfc3339()}),
            )
            .await?;
        Ok(())
    }
}
