//! `sku_gaps.parquet` of a run: each assigned outlet against its segment SKU by SKU —
//! the SKUs where it has the most to win (written by the segmenter, see
//! `spectra_segmenter::gaps::sku_gaps`). Rows are sorted by outlet and written in small
//! row groups, so a reader of one outlet ([`read_outlet`]) fetches only the row groups
//! whose `outlet_id` statistics can hold it: the 360 view's cost does not grow with
//! the number of outlets. Runs written before it have no such file.

use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};

use super::columns::{float, schema, text};
use super::keyed;
use super::layout::run_files;
use super::runs::Latest;
use super::{batch, Columns, Rows};
use crate::{Result, Storage};

use DataType::{Float64, Utf8};

/// One row of `sku_gaps.parquet`: one SKU of one outlet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SkuGapRow {
    /// The outlet.
    pub outlet_id: String,
    /// Its segment.
    pub segment_id: String,
    /// The SKU.
    pub sku_id: String,
    /// The outlet's net value on the SKU in the window (its positive part counts).
    pub outlet_spend: f64,
    /// The SKU's share of the segment's spend.
    pub segment_share: f64,
    /// The share of the segment's outlets that bought it in the window.
    pub penetration: f64,
    /// What the outlet would spend on it buying like its segment at its own value or
    /// the segment's median, whichever is larger, minus what it spends: `segment_share
    /// × max(value, median) − max(outlet_spend, 0)`.
    pub potential: f64,
}

impl Rows for SkuGapRow {
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema(&[
                ("outlet_id", Utf8, false),
                ("segment_id", Utf8, false),
                ("sku_id", Utf8, false),
                ("outlet_spend", Float64, false),
                ("segment_share", Float64, false),
                ("penetration", Float64, false),
                ("potential", Float64, false),
            ])
        });
        S.clone()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        batch(
            Self::schema(),
            vec![
                text(rows.iter().map(|r| Some(r.outlet_id.as_str()))),
                text(rows.iter().map(|r| Some(r.segment_id.as_str()))),
                text(rows.iter().map(|r| Some(r.sku_id.as_str()))),
                float(rows.iter().map(|r| r.outlet_spend)),
                float(rows.iter().map(|r| r.segment_share)),
                float(rows.iter().map(|r| r.penetration)),
                float(rows.iter().map(|r| r.potential)),
            ],
        )
    }

    fn from_batch(c: &Columns<'_>) -> Result<Vec<Self>> {
        let (o, s, k) = (c.ids("outlet_id")?, c.ids("segment_id")?, c.ids("sku_id")?);
        let (sp, sh, pe, po) = (
            c.float("outlet_spend")?,
            c.float("segment_share")?,
            c.float("penetration")?,
            c.float("potential")?,
        );
        Ok((0..c.len())
            .map(|i| SkuGapRow {
                outlet_id: o[i].clone(),
                segment_id: s[i].clone(),
                sku_id: k[i].clone(),
                outlet_spend: sp[i],
                segment_share: sh[i],
                penetration: pe[i],
                potential: po[i],
            })
            .collect())
    }

    fn distinct_columns() -> &'static [&'static str] {
        &["potential"]
    }
}

/// A run's `sku_gaps.parquet` holding `rows`, which must come by outlet, each outlet's
/// largest potential first: encoded a row group at a time as the iterator yields them
/// ([`keyed::encode_rows`]), so they are never all held.
pub fn encode(rows: &mut dyn Iterator<Item = SkuGapRow>) -> Result<bytes::Bytes> {
    keyed::encode_rows(run_files::SKU_GAPS, "outlet_id", rows)
}

/// One outlet's rows, largest potential first; `None` when the run has no such file
/// (written before per-SKU gaps). Reads the footer and the row groups whose
/// `outlet_id` range holds the outlet.
pub async fn read_outlet(
    storage: &Storage,
    latest: &Latest,
    outlet_id: &str,
) -> Result<Option<Vec<SkuGapRow>>> {
    keyed::read_key(
        storage,
        &latest.file(run_files::SKU_GAPS),
        "outlet_id",
        outlet_id,
    )
    .await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Rows of `outlets` outlets (`O00000`, …), `skus(o)` SKUs each (`K0`, …, potential
    /// = the SKU's number), in outlet order.
    pub(crate) fn rows(outlets: u32, skus: impl Fn(u32) -> u32) -> Vec<SkuGapRow> {
        (0..outlets)
            .flat_map(|o| {
                (0..skus(o)).map(move |k| SkuGapRow {
                    outlet_id: format!("O{o:05}"),
                    segment_id: "S1".into(),
                    sku_id: format!("K{k}"),
                    potential: f64::from(k),
                    ..Default::default()
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn one_outlet_is_read_from_its_row_groups_only() {
        let storage = Storage::memory();
        let latest: Latest = serde_json::from_value(serde_json::json!({
            "run_id": "x/2026-01-01/1", "as_of": "2026-01-01", "path": "runs/a"}))
        .unwrap();
        // 3 SKUs for each of 10,000 outlets: two row groups; each outlet's largest
        // potential first, as the segmenter makes them.
        let mut rows = rows(10_000, |_| 3);
        rows.sort_by(|a, b| {
            (&a.outlet_id, b.potential)
                .partial_cmp(&(&b.outlet_id, a.potential))
                .unwrap()
        });
        let data = encode(&mut rows.into_iter()).unwrap();
        storage
            .put(&latest.file(run_files::SKU_GAPS), data)
            .await
            .unwrap();
        let got = read_outlet(&storage, &latest, "O04321")
            .await
            .unwrap()
            .unwrap();
        let skus: Vec<&str> = got.iter().map(|r| r.sku_id.as_str()).collect();
        assert_eq!(skus, ["K2", "K1", "K0"], "largest potential first");
        assert!(got.iter().all(|r| r.outlet_id == "O04321"));
        assert_eq!(
            read_outlet(&storage, &latest, "nobody").await.unwrap(),
            Some(vec![])
        );
        // The file has several row groups, and the outlet's range is in one of them.
        let data = storage
            .get(&latest.file(run_files::SKU_GAPS))
            .await
            .unwrap()
            .unwrap();
        let meta = parquet::file::reader::FileReader::metadata(
            &parquet::file::serialized_reader::SerializedFileReader::new(data).unwrap(),
        )
        .clone();
        assert_eq!(
            meta.num_row_groups(),
            30_000usize.div_ceil(keyed::ROW_GROUP_ROWS)
        );
        let other: Latest = serde_json::from_value(serde_json::json!({
            "run_id": "x/2026-01-01/2", "as_of": "2026-01-01", "path": "runs/b"}))
        .unwrap();
        assert_eq!(read_outlet(&storage, &other, "O1").await.unwrap(), None);
    }
}
