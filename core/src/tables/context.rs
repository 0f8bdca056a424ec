//! `contexts.parquet` of a run: every segment seen in context — its mix over every
//! product level (category, subcategory, brand, SKU, each SKU attribute) and over every
//! outlet field (region, channel, main distributor, each outlet attribute, numeric ones
//! binned), for all the run's outlets and under each listed value of region, channel
//! or distributor. Written by the segmenter with the run; read by the publisher one
//! segment and filter at a time (`…/segments/{id}/context`). Runs written before it
//! have no such file.
//!
//! Shares and indices are not stored: a reader divides by the `total` row of the same
//! segment and filter, and compares with the all-outlets rows (`segment_id` empty).

use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};

use super::columns::{float, int, schema, text};
use super::layout::run_files;
use super::runs::Latest;
use super::{batch, read_rows, Columns, Rows};
use crate::{Result, Storage};

use DataType::{Float64, Int64, Utf8};

/// The fields a context can be filtered by.
pub const FILTER_FIELDS: [&str; 3] = ["region", "channel", "distributor"];
/// Dimension prefix of the product levels (`product.brand`, `product.attributes.pack`).
pub const PRODUCT: &str = "product.";
/// Dimension prefix of the outlet fields (`outlet.region`, `outlet.attributes.size`).
pub const OUTLET: &str = "outlet.";
/// The dimension of the one row per segment and filter that holds its totals.
pub const TOTAL: &str = "total";

/// One row of `contexts.parquet`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextRow {
    /// `""` for all outlets, or `field=value` with a field of [`FILTER_FIELDS`].
    pub filter: String,
    /// The segment, or `""` for all the run's outlets (under the same filter).
    pub segment_id: String,
    /// [`TOTAL`], `product.{level}` or `outlet.{field}`.
    pub dimension: String,
    /// The level's or field's value: a listed value, `(other)` for the rest, `(none)`
    /// when missing, or a bin (`3 – 5`) of a numeric attribute. Empty for [`TOTAL`].
    pub value: String,
    /// Product levels: outlets that bought it. Outlet fields: outlets with the value.
    /// [`TOTAL`]: the outlets.
    pub outlets: i64,
    /// Product levels: net value spent on it in the window. Outlet fields and
    /// [`TOTAL`]: the outlets' value.
    pub spend: f64,
}

impl Rows for ContextRow {
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema(&[
                ("filter", Utf8, false),
                ("segment_id", Utf8, false),
                ("dimension", Utf8, false),
                ("value", Utf8, false),
                ("outlets", Int64, false),
                ("spend", Float64, false),
            ])
        });
        S.clone()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        batch(
            Self::schema(),
            vec![
                text(rows.iter().map(|r| Some(r.filter.as_str()))),
                text(rows.iter().map(|r| Some(r.segment_id.as_str()))),
                text(rows.iter().map(|r| Some(r.dimension.as_str()))),
                text(rows.iter().map(|r| Some(r.value.as_str()))),
                int(rows.iter().map(|r| r.outlets)),
                float(rows.iter().map(|r| r.spend)),
            ],
        )
    }

    fn from_batch(c: &Columns<'_>) -> Result<Vec<Self>> {
        let (f, s, d, v) = (
            c.ids("filter")?,
            c.ids("segment_id")?,
            c.ids("dimension")?,
            c.ids("value")?,
        );
        let (o, x) = (c.int("outlets")?, c.float("spend")?);
        Ok((0..c.len())
            .map(|k| ContextRow {
                filter: f[k].clone(),
                segment_id: s[k].clone(),
                dimension: d[k].clone(),
                value: v[k].clone(),
                outlets: o[k],
                spend: x[k],
            })
            .collect())
    }
}

/// One segment's context rows and the run's filterable values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// The rows of the filter asked for, of the segment and of all outlets.
    pub rows: Vec<ContextRow>,
    /// The values each filter field can take in the run: `(field, values)` in
    /// [`FILTER_FIELDS`] order, values sorted.
    pub filters: Vec<(&'static str, Vec<String>)>,
}

/// The rows of one filter (`""` for none) for `segment_id` and for all outlets, with
/// the run's filter values; `None` when the run has no contexts file (written before
/// contexts existed).
pub async fn read(
    storage: &Storage,
    latest: &Latest,
    filter: &str,
    segment_id: &str,
) -> Result<Option<Context>> {
    let rows: Option<Vec<ContextRow>> =
        read_rows(storage, &latest.file(run_files::CONTEXTS)).await?;
    Ok(rows.map(|rows| {
        let filters = FILTER_FIELDS
            .iter()
            .map(|f| {
                let prefix = format!("{f}=");
                let mut v: Vec<String> = rows
                    .iter()
                    .filter(|r| r.segment_id.is_empty() && r.dimension == TOTAL)
                    .filter_map(|r| r.filter.strip_prefix(&prefix).map(str::to_owned))
                    .collect();
                v.sort();
                v.dedup();
                (*f, v)
            })
            .collect();
        let rows = rows
            .into_iter()
            .filter(|r| {
                r.filter == filter && (r.segment_id.is_empty() || r.segment_id == segment_id)
            })
            .collect();
        Context { rows, filters }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::write_rows;

    #[tokio::test]
    async fn one_filter_of_one_segment_and_the_filter_values() {
        let storage = Storage::memory();
        let latest: Latest = serde_json::from_value(serde_json::json!({
            "run_id": "x/2026-01-01/1", "as_of": "2026-01-01", "path": "runs/a"}))
        .unwrap();
        let row = |f: &str, s: &str, d: &str, v: &str| ContextRow {
            filter: f.into(),
            segment_id: s.into(),
            dimension: d.into(),
            value: v.into(),
            outlets: 1,
            spend: 2.5,
        };
        let rows = vec![
            row("", "", TOTAL, ""),
            row("", "S1", TOTAL, ""),
            row("", "S2", TOTAL, ""),
            row("region=North", "", TOTAL, ""),
            row("region=North", "S1", "product.brand", "A"),
            row("channel=modern", "", TOTAL, ""),
            row("region=Alps", "", TOTAL, ""),
        ];
        write_rows(&storage, "runs/a/contexts.parquet", &rows)
            .await
            .unwrap();
        let c = read(&storage, &latest, "", "S1").await.unwrap().unwrap();
        assert_eq!(c.rows, vec![rows[0].clone(), rows[1].clone()]);
        assert_eq!(
            c.filters,
            vec![
                ("region", vec!["Alps".to_owned(), "North".to_owned()]),
                ("channel", vec!["modern".to_owned()]),
                ("distributor", vec![]),
            ]
        );
        let c = read(&storage, &latest, "region=North", "S1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.rows, vec![rows[3].clone(), rows[4].clone()]);
        assert!(read(&storage, &latest, "", "S1")
            .await
            .map(|c| c.is_some())
            .unwrap());
        let other: Latest = serde_json::from_value(serde_json::json!({
            "run_id": "x/2026-01-01/2", "as_of": "2026-01-01", "path": "runs/b"}))
        .unwrap();
        assert_eq!(read(&storage, &other, "", "S1").await.unwrap(), None);
    }
}
