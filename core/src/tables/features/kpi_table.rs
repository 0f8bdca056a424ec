//! `kpis.parquet` as the publisher holds it: Arrow columns sorted by outlet, one
//! outlet's [`KpiRow`] decoded when asked for.

use arrow::array::{Array, RecordBatch};
use chrono::NaiveDate;

use super::super::{find_sorted, Batches, Columns, Rows};
use super::{incomplete, layout, KpiRow};
use crate::{Result, Storage};

/// `kpis.parquet` of a features folder held as Arrow holds it (about a hundred bytes an
/// outlet, where the [`KpiRow`]s with their strings and attribute maps take ten times
/// that), sorted by outlet; one outlet's row is decoded when it is asked for. What the
/// publisher keeps of a run's outlets for the 360 view and the export.
pub struct KpiTable {
    batch: RecordBatch,
    outlets: arrow::array::StringArray,
    names: arrow::array::StringArray,
    regions: arrow::array::StringArray,
    channels: arrow::array::StringArray,
    values: arrow::array::Float64Array,
    lines: arrow::array::Int64Array,
    path: String,
}

/// The few columns of an outlet's [`KpiRow`] a list shows, read in place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KpiBrief<'a> {
    /// Display name (master data).
    pub name: Option<&'a str>,
    /// Region (master data).
    pub region: Option<&'a str>,
    /// Channel (master data).
    pub channel: Option<&'a str>,
    /// Net value in the window (null or not finite reads as 0, as in [`KpiRow`]).
    pub net_value: f64,
    /// Invoice lines in the window.
    pub lines: i64,
}

impl KpiTable {
    /// Reads the KPIs of a features folder, sorted by outlet (the aggregator writes
    /// them so; a file written otherwise is sorted here).
    pub async fn read(storage: &Storage, segmentation: &str, as_of: NaiveDate) -> Result<Self> {
        let path = layout::features_file(segmentation, as_of, "kpis.parquet");
        let Some(mut batches) = Batches::open(storage, &path, None).await? else {
            return Err(incomplete(
                path,
                "missing: the folder is incomplete or was removed",
            ));
        };
        let mut all = Vec::new();
        while let Some(b) = batches.next_batch()? {
            all.push(b);
        }
        let schema = match all.first() {
            Some(b) => b.schema(),
            None => KpiRow::schema(),
        };
        let fail = |e: arrow::error::ArrowError| super::super::table_error(&path, e.to_string());
        let mut batch = arrow::compute::concat_batches(&schema, &all).map_err(fail)?;
        drop(all);
        let mut outlets = Columns::new(&batch, &path).strings("outlet_id")?;
        if !outlets.iter().is_sorted() {
            let order = arrow::compute::sort_to_indices(&outlets, None, None).map_err(fail)?;
            batch = arrow::compute::take_record_batch(&batch, &order).map_err(fail)?;
            outlets = Columns::new(&batch, &path).strings("outlet_id")?;
        }
        let c = Columns::new(&batch, &path);
        let (names, regions, channels) = (
            c.strings("name")?,
            c.strings("region")?,
            c.strings("channel")?,
        );
        let values = c.primitive::<arrow::datatypes::Float64Type>("net_value")?;
        let lines = c.primitive::<arrow::datatypes::Int64Type>("lines")?;
        Ok(Self {
            batch,
            outlets,
            names,
            regions,
            channels,
            values,
            lines,
            path,
        })
    }

    /// Outlets in the table.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether the table has no outlet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row of an outlet.
    fn row(&self, outlet_id: &str) -> Option<usize> {
        find_sorted(&self.outlets, outlet_id)
    }

    /// An outlet's name, region, channel, value and lines, without decoding its row.
    pub fn brief(&self, outlet_id: &str) -> Option<KpiBrief<'_>> {
        let i = self.row(outlet_id)?;
        fn text(a: &arrow::array::StringArray, i: usize) -> Option<&str> {
            a.is_valid(i).then(|| a.value(i))
        }
        let v = self.values.value(i);
        Some(KpiBrief {
            name: text(&self.names, i),
            region: text(&self.regions, i),
            channel: text(&self.channels, i),
            net_value: if self.values.is_valid(i) && v.is_finite() {
                v
            } else {
                0.0
            },
            lines: if self.lines.is_valid(i) {
                self.lines.value(i)
            } else {
                0
            },
        })
    }

    /// An outlet's KPIs and master record; `None` when the table does not have it.
    pub fn get(&self, outlet_id: &str) -> Result<Option<KpiRow>> {
        let Some(i) = self.row(outlet_id) else {
            return Ok(None);
        };
        let row = self.batch.slice(i, 1);
        Ok(KpiRow::from_batch(&Columns::new(&row, &self.path))?.pop())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{read_rows, write_rows};

    /// The KPI table finds every outlet of a file written out of order (sorted when
    /// read), decodes its row as `read_rows` would, and reads the list columns in place.
    #[tokio::test]
    async fn the_kpi_table_finds_each_outlet_as_the_rows_give_it() {
        let storage = Storage::memory();
        let day = NaiveDate::from_ymd_opt(2026, 9, 2).unwrap();
        let rows: Vec<KpiRow> = (0..20_000)
            .map(|i| {
                let k = (i * 7919) % 20_000; // a permutation: the file is unsorted
                KpiRow {
                    outlet_id: format!("PL-{k:06}"),
                    net_value: if k % 5 == 0 { f64::NAN } else { k as f64 * 1.5 },
                    lines: k as i64,
                    invoices: 1 + k as i64 % 7,
                    name: (k % 3 != 0).then(|| format!("Shop {k}")),
                    region: Some(["north", "south"][k % 2].into()),
                    channel: (k % 4 == 0).then(|| "kiosk".into()),
                    attributes: [("size".to_owned(), ["S", "M", "L"][k % 3].to_owned())].into(),
                    distributor: Some(format!("D{:02}", k % 3)),
                    ..Default::default()
                }
            })
            .collect();
        let path = layout::features_file("mix", day, "kpis.parquet");
        write_rows(&storage, &path, &rows).await.unwrap();
        let table = KpiTable::read(&storage, "mix", day).await.unwrap();
        assert_eq!(table.len(), rows.len());
        let decoded: Vec<KpiRow> = read_rows(&storage, &path).await.unwrap().unwrap();
        for want in &decoded {
            let got = table.get(&want.outlet_id).unwrap().unwrap();
            assert_eq!(&got, want);
            let b = table.brief(&want.outlet_id).unwrap();
            assert_eq!(
                (b.name, b.region, b.channel, b.net_value, b.lines),
                (
                    want.name.as_deref(),
                    want.region.as_deref(),
                    want.channel.as_deref(),
                    want.net_value,
                    want.lines
                )
            );
        }
        assert_eq!(table.brief("PL-000005").unwrap().net_value, 0.0);
        assert!(table.get("PL-020000").unwrap().is_none() && table.brief("A").is_none());
    }
}
