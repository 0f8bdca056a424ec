//! The table layer: every table and document under the storage URL that another
//! service or a user reads, each defined once here — its path ([`layout`]), its Arrow
//! schema, its row type, its reader and its writer. Services read and write these
//! artifacts only through this module; a missing or mistyped column is an
//! [`Error::Table`] naming the file and the column.
//!
//! | artifact | owner (the one writer) | readers |
//! |---|---|---|
//! | `raw/invoices/`, `master/outlets/`, `master/skus/` ([`crate::schema`]) | ingest | aggregator, users |
//! | `features/daily/`, `features/outlet_daily/` ([`features`]); `features/daily_rolling.json` ([`rolling`]) | aggregator | segmenter, publisher, users |
//! | `features/segmentation={name}/as_of=…/` spectrum, kpis, sku_spend, `_manifest.json`; `current.json` ([`features`]) | aggregator | segmenter, publisher |
//! | `segmentations/{name}/runs/{as_of}.{seq}/` assignments, outlet_gaps, movements, recommendations, contexts ([`context`]), sku_gaps ([`sku_gaps`]), profiles.json, model.json; `latest.json` ([`runs`], [`profile`], [`model`]) | segmenter | publisher, users |
//! | `status/ingest/{group}.json` ([`crate::status`]) | ingest | publisher (pipeline page) |
//!
//! Private state stays private to its service and is not here: ingest checkpoints,
//! the aggregator's identity index and state, the publisher's cycle state.
//!
//! Readers are tolerant of the physical type a writer chose (any string layout, any
//! integer or float width, cast by Arrow) but not of a missing column.

pub mod context;
pub mod definitions;
pub mod features;
pub mod keyed;
pub mod layout;
pub mod master;
pub mod model;
pub mod profile;
pub mod recommendations;
pub mod rolling;
pub mod runs;
pub mod sku_gaps;

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type, SchemaRef};
use chrono::NaiveDate;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::schema::{encode_parquet, from_parquet};
use crate::{Error, Result, Storage};

/// A row type of a Parquet table: its schema, and conversions from and to batches.
pub trait Rows: Sized {
    /// The table's Arrow schema (what writers write).
    fn schema() -> SchemaRef;
    /// Rows as one batch of [`Rows::schema`].
    fn to_batch(rows: &[Self]) -> Result<RecordBatch>;
    /// The rows of one batch read from a file (columns found by name).
    fn from_batch(c: &Columns<'_>) -> Result<Vec<Self>>;
    /// Columns whose values are nearly all distinct (an outlet's own figures), which
    /// a keyed table writes without a dictionary ([`keyed::encode_chunks`]).
    fn distinct_columns() -> &'static [&'static str] {
        &[]
    }
}

/// The row of `id` in `ids`, an identifier column sorted ascending (binary search).
pub fn find_sorted(ids: &StringArray, id: &str) -> Option<usize> {
    search_sorted(ids, id, 0..ids.len()).ok()
}

/// [`find_sorted`] within `rows`: `Ok(row)`, or `Err(row)` where `id` would go.
pub fn search_sorted(
    ids: &StringArray,
    id: &str,
    rows: std::ops::Range<usize>,
) -> std::result::Result<usize, usize> {
    let (mut lo, mut hi) = (rows.start, rows.end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match ids.value(mid).cmp(id) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

/// Reads a Parquet object's rows; `None` when the object does not exist.
pub async fn read_rows<T: Rows>(storage: &Storage, path: &str) -> Result<Option<Vec<T>>> {
    let mut out = Vec::new();
    let found = for_each_batch(storage, path, None, |c| {
        out.extend(T::from_batch(c)?);
        Ok(())
    })
    .await?;
    Ok(found.then_some(out))
}

/// Streams a Parquet object through `f` a batch at a time ([`BATCH_ROWS`] rows), with
/// only `columns` decoded when given: a reader that keeps what it needs from each
/// batch never holds the decoded table. `false` when the object does not exist; a file
/// that is not Parquet is an [`Error::Table`] naming it.
///
/// An object of [`DECODE_AHEAD_BYTES`] or more is decoded on a thread of its own, a
/// few batches ahead of `f`: a reader that does real work per row (a feature set
/// built from a hundred million SKU rows) then does it while the next batches are
/// decompressed, not after. `f` sees the same batches in the same order either way.
pub async fn for_each_batch(
    storage: &Storage,
    path: &str,
    columns: Option<&[&str]>,
    f: impl FnMut(&Columns<'_>) -> Result<()>,
) -> Result<bool> {
    let Some(bytes) = storage.get(path).await? else {
        return Ok(false);
    };
    let ahead = bytes.len() >= DECODE_AHEAD_BYTES;
    each_batch(Batches::read(bytes, path, columns)?, ahead, f)?;
    Ok(true)
}

/// Hands `f` every batch of `batches` in order, decoded on a thread of its own a few
/// batches ahead when `ahead` ([`for_each_batch`]). The first error, `f`'s or the
/// decoder's, ends the read.
fn each_batch(
    mut batches: Batches,
    ahead: bool,
    mut f: impl FnMut(&Columns<'_>) -> Result<()>,
) -> Result<()> {
    let path = batches.path.clone();
    if !ahead {
        while let Some(b) = batches.next_batch()? {
            f(&Columns::new(&b, &path))?;
        }
        return Ok(());
    }
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(DECODED_AHEAD);
        s.spawn(move || {
            // Ends at the end, after sending an error, or when `f` stopped taking.
            while let Some(b) = batches.next_batch().transpose() {
                let failed = b.is_err();
                if tx.send(b).is_err() || failed {
                    break;
                }
            }
        });
        for b in rx {
            f(&Columns::new(&b?, &path))?;
        }
        Ok(())
    })
}

/// The value of `key` in the footer of the Parquet object `path` (written with
/// [`crate::schema::encode_parquet_noting`]); `None` when the object or the key is
/// absent. Reads the footer alone ([`keyed::footer`]), not the whole object.
pub async fn footer_value(storage: &Storage, path: &str, key: &str) -> Result<Option<String>> {
    let metadata = match keyed::footer(storage, path).await {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(None),
        // Not Parquet: the table named.
        Err(Error::Parquet(e)) => return Err(table_error(path, e.to_string())),
        Err(e) => return Err(e),
    };
    Ok(metadata
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == key))
        .and_then(|e| e.value.clone()))
}

/// Objects at least this large are decoded ahead of their reader ([`for_each_batch`]);
/// smaller ones (the API's reads among them) in the reader's own thread.
const DECODE_AHEAD_BYTES: usize = 4 << 20;
/// Batches decoded ahead of the reader at most.
const DECODED_AHEAD: usize = 2;

/// A Parquet object decoded a batch at a time ([`BATCH_ROWS`] rows) by whoever pulls
/// the next one: between two batches the reader may await (deliver what it made of
/// the last one), which [`for_each_batch`]'s closure cannot.
pub struct Batches {
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    path: String,
}

impl Batches {
    /// Opens `path` with only `columns` decoded when given; `None` when the object
    /// does not exist; a file that is not Parquet is an [`Error::Table`] naming it.
    pub async fn open(
        storage: &Storage,
        path: &str,
        columns: Option<&[&str]>,
    ) -> Result<Option<Self>> {
        match storage.get(path).await? {
            Some(bytes) => Self::read(bytes, path, columns).map(Some),
            None => Ok(None),
        }
    }

    /// Reads an object already fetched (`bytes`, from `path`), with only `columns`
    /// decoded when given.
    pub fn read(bytes: bytes::Bytes, path: &str, columns: Option<&[&str]>) -> Result<Self> {
        let not_parquet = |e: &dyn std::fmt::Display| table_error(path, e.to_string());
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| not_parquet(&e))?
            .with_batch_size(BATCH_ROWS);
        if let Some(names) = columns {
            let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
            builder = builder.with_projection(mask);
        }
        Ok(Self {
            reader: builder.build().map_err(|e| not_parquet(&e))?,
            path: path.to_owned(),
        })
    }

    /// The next batch; `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        self.reader
            .next()
            .transpose()
            .map_err(|e| table_error(&self.path, e.to_string()))
    }

    /// The object read.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Rows per batch when a table is streamed ([`for_each_batch`]).
pub const BATCH_ROWS: usize = 8192;

/// Writes rows as one Parquet object (replacing it).
pub async fn write_rows<T: Rows>(storage: &Storage, path: &str, rows: &[T]) -> Result<()> {
    write_row_chunks(storage, path, [rows]).await
}

/// Writes a table from chunks of rows made one at a time, as one Parquet object
/// (replacing it): one chunk's rows exist at a time, not the whole table's.
pub async fn write_row_chunks<T: Rows>(
    storage: &Storage,
    path: &str,
    chunks: impl IntoIterator<Item = impl AsRef<[T]>>,
) -> Result<()> {
    let batches = chunks.into_iter().map(|rows| T::to_batch(rows.as_ref()));
    storage
        .put(path, encode_parquet(T::schema(), batches)?)
        .await
}

/// Reads a Parquet object's batches; `None` when it does not exist; a file that is not
/// Parquet is an [`Error::Table`] naming it.
pub async fn read_batches(storage: &Storage, path: &str) -> Result<Option<Vec<RecordBatch>>> {
    match storage.get(path).await? {
        None => Ok(None),
        Some(bytes) => from_parquet(bytes).map(Some).map_err(|e| Error::Table {
            file: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Batches a writer computed (a query result) cast to a table's declared schema: the
/// schema's columns found by name, in its order, with its types. A missing column or
/// one that cannot be cast is an [`Error::Table`] naming `file` and the column.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef, file: &str) -> Result<RecordBatch> {
    let cols = schema
        .fields()
        .iter()
        .map(|f| {
            let c = batch
                .column_by_name(f.name())
                .ok_or_else(|| table_error(file, format!("column `{}` is missing", f.name())))?;
            cast(c, f.data_type()).map_err(|e| {
                table_error(
                    file,
                    format!(
                        "column `{}` of type {} cannot be written as {}: {e}",
                        f.name(),
                        c.data_type(),
                        f.data_type()
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| table_error(file, e.to_string()))
}

fn table_error(file: &str, reason: String) -> Error {
    Error::Table {
        file: file.to_owned(),
        reason,
    }
}

/// Days since the Unix epoch (Arrow's `Date32`) of a date.
pub fn date32(date: NaiveDate) -> i32 {
    Date32Type::from_naive_date(date)
}

/// The date of a `Date32` value (`NaiveDate::MIN` outside chrono's range).
pub fn date_of(days: i32) -> NaiveDate {
    Date32Type::to_naive_date_opt(days).unwrap_or(NaiveDate::MIN)
}

/// A master record's `attributes` (a JSON object as text) as text values: strings as
/// they are, numbers and booleans in their JSON form; nulls, arrays and objects are
/// left out. Text that is not a JSON object reads as no attributes (master data is
/// checked at ingest, so this only meets what an older version stored).
pub fn parse_attributes(text: Option<&str>) -> BTreeMap<String, String> {
    use serde_json::Value;
    let Some(Value::Object(m)) = text.and_then(|t| serde_json::from_str(t).ok()) else {
        return BTreeMap::new();
    };
    m.into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect()
}

/// A batch together with the object it came from, so errors name the file: columns
/// by name, cast from whatever physical type the writer chose.
pub struct Columns<'a> {
    batch: &'a RecordBatch,
    file: &'a str,
}

impl<'a> Columns<'a> {
    /// Wraps a batch read from `file`.
    pub fn new(batch: &'a RecordBatch, file: &'a str) -> Self {
        Self { batch, file }
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// True when the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file the batch came from.
    pub fn file(&self) -> &str {
        self.file
    }

    /// True when the batch has the column.
    pub fn has(&self, name: &str) -> bool {
        self.batch.column_by_name(name).is_some()
    }

    fn error(&self, reason: String) -> Error {
        table_error(self.file, reason)
    }

    fn column(&self, name: &str) -> Result<&ArrayRef> {
        self.batch
            .column_by_name(name)
            .ok_or_else(|| self.error(format!("column `{name}` is missing")))
    }

    fn cast(&self, name: &str, to: &DataType) -> Result<ArrayRef> {
        let c = self.column(name)?;
        cast(c, to).map_err(|e| {
            self.error(format!(
                "column `{name}` of type {} cannot be read as {to}: {e}",
                c.data_type()
            ))
        })
    }

    /// A nullable text column that files written before it existed lack: all `None`
    /// then.
    pub fn text_if_present(&self, name: &str) -> Result<Vec<Option<String>>> {
        if self.has(name) {
            self.text(name)
        } else {
            Ok(vec![None; self.len()])
        }
    }

    /// A text column; nulls read as `None`.
    pub fn text(&self, name: &str) -> Result<Vec<Option<String>>> {
        let a = self.cast(name, &DataType::Utf8)?;
        Ok(a.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect())
    }

    /// A text column without nulls (identifiers): a null is an error naming the row.
    pub fn ids(&self, name: &str) -> Result<Vec<String>> {
        let a = self.id_strings(name)?;
        Ok(a.iter().flatten().map(str::to_owned).collect())
    }

    /// A text column without nulls (identifiers) as Arrow holds it, for readers that
    /// look values up without copying them (`.value(row)`); a null is an error.
    pub fn id_strings(&self, name: &str) -> Result<StringArray> {
        let a = self.cast(name, &DataType::Utf8)?.as_string::<i32>().clone();
        if a.null_count() > 0 {
            let row = (0..a.len()).find(|&row| a.is_null(row)).unwrap_or_default();
            return Err(self.error(format!("column `{name}` is null in row {row}")));
        }
        Ok(a)
    }

    /// A text column as Arrow holds it, nulls kept, for readers that look values up
    /// without copying them.
    pub fn strings(&self, name: &str) -> Result<StringArray> {
        Ok(self.cast(name, &DataType::Utf8)?.as_string::<i32>().clone())
    }

    /// A numeric column as Arrow holds it, cast to `T` (nulls kept).
    pub fn primitive<T: arrow::datatypes::ArrowPrimitiveType>(
        &self,
        name: &str,
    ) -> Result<arrow::array::PrimitiveArray<T>> {
        Ok(self.cast(name, &T::DATA_TYPE)?.as_primitive::<T>().clone())
    }

    /// A numeric column as `f64`; nulls and non-finite values read as 0 (a sum over
    /// no rows, or a ratio without a denominator).
    pub fn float(&self, name: &str) -> Result<Vec<f64>> {
        let a = self.cast(name, &DataType::Float64)?;
        Ok(a.as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.filter(|x| x.is_finite()).unwrap_or(0.0))
            .collect())
    }

    /// A numeric column whose nulls stay `None`.
    pub fn float_opt(&self, name: &str) -> Result<Vec<Option<f64>>> {
        let a = self.cast(name, &DataType::Float64)?;
        Ok(a.as_primitive::<Float64Type>().iter().collect())
    }

    /// An integer column as `i64`; nulls read as 0.
    pub fn int(&self, name: &str) -> Result<Vec<i64>> {
        let a = self.cast(name, &DataType::Int64)?;
        Ok(a.as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect())
    }

    /// A date column (`Date32`, or text `YYYY-MM-DD`); a null is an error.
    pub fn dates(&self, name: &str) -> Result<Vec<NaiveDate>> {
        let a = self.cast(name, &DataType::Date32)?;
        a.as_primitive::<Date32Type>()
            .iter()
            .enumerate()
            .map(|(row, v)| {
                v.map(date_of)
                    .ok_or_else(|| self.error(format!("column `{name}` is null in row {row}")))
            })
            .collect()
    }

    /// A list-of-text column, or a text column holding a JSON array of strings.
    pub fn text_list(&self, name: &str) -> Result<Vec<Vec<String>>> {
        let col = self.column(name)?;
        if let Some(list) = col.as_any().downcast_ref::<ListArray>() {
            return (0..list.len())
                .map(|i| {
                    if list.is_null(i) {
                        return Ok(Vec::new());
                    }
                    let v = cast(&list.value(i), &DataType::Utf8)
                        .map_err(|e| self.error(format!("column `{name}`: {e}")))?;
                    Ok(v.as_string::<i32>()
                        .iter()
                        .flatten()
                        .map(str::to_owned)
                        .collect())
                })
                .collect();
        }
        self.text(name)?
            .into_iter()
            .map(|t| match t {
                None => Ok(Vec::new()),
                Some(t) => serde_json::from_str(&t).map_err(|e| {
                    self.error(format!(
                        "column `{name}` is not a JSON array of strings: {e}"
                    ))
                }),
            })
            .collect()
    }
}

/// Building a table's schema and its columns from row fields (every `Rows` impl).
mod columns {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

    /// A schema from `(name, type, nullable)`.
    pub(super) fn schema(fields: &[(&str, DataType, bool)]) -> SchemaRef {
        Arc::new(Schema::new(
            fields
                .iter()
                .map(|(n, t, null)| Field::new(*n, t.clone(), *null))
                .collect::<Vec<_>>(),
        ))
    }
    pub(super) fn text<'a>(v: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
        Arc::new(v.collect::<StringArray>())
    }
    pub(super) fn float(v: impl Iterator<Item = f64>) -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(v))
    }
    pub(super) fn float_opt(v: impl Iterator<Item = Option<f64>>) -> ArrayRef {
        Arc::new(v.collect::<Float64Array>())
    }
    pub(super) fn int(v: impl Iterator<Item = i64>) -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(v))
    }
    pub(super) fn int_opt(v: impl Iterator<Item = Option<i64>>) -> ArrayRef {
        Arc::new(v.collect::<Int64Array>())
    }
}

/// Builds one batch of `schema` from its columns, naming the table on error.
pub(crate) fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_keep_strings_numbers_and_booleans() {
        let a = parse_attributes(Some(r#"{"size":"M","floor":120,"x":[1],"open":true}"#));
        assert_eq!(a.get("size").map(String::as_str), Some("M"));
        assert_eq!(a.get("floor").map(String::as_str), Some("120"));
        assert_eq!(a.get("open").map(String::as_str), Some("true"));
        assert!(!a.contains_key("x"));
        assert!(parse_attributes(Some("not json")).is_empty());
        assert!(parse_attributes(None).is_empty());
    }

    /// The decoder ahead of the reader gives the same batches in the same order as
    /// decoding in the reader's thread, and a reader that stops (an error) ends the
    /// read without waiting for the rest of the file.
    #[tokio::test]
    async fn batches_decoded_ahead_are_the_batches_decoded_in_turn() {
        use super::features::SkuSpendRow;
        let storage = Storage::memory();
        let rows: Vec<SkuSpendRow> = (0..3 * BATCH_ROWS + 17)
            .map(|i| SkuSpendRow {
                outlet_id: format!("o{i:06}"),
                sku_id: format!("s{}", i % 97),
                feature: "f".to_owned(),
                net_value: i as f64 * 0.5,
                quantity: 1.0,
                lines: 1,
            })
            .collect();
        write_rows(&storage, "t.parquet", &rows).await.unwrap();
        let bytes = storage.get("t.parquet").await.unwrap().unwrap();
        let read = |ahead: bool| {
            let batches = Batches::read(bytes.clone(), "t.parquet", None).unwrap();
            let mut seen = Vec::new();
            each_batch(batches, ahead, |c| {
                let (o, v) = (c.id_strings("outlet_id")?, c.float("net_value")?);
                seen.push(
                    (0..c.len())
                        .map(|k| (o.value(k).to_owned(), v[k]))
                        .collect::<Vec<_>>(),
                );
                Ok(())
            })
            .unwrap();
            seen
        };
        let (ahead, in_turn) = (read(true), read(false));
        assert_eq!(ahead.len(), 4, "four batches");
        assert_eq!(ahead, in_turn);
        let all: Vec<(String, f64)> = ahead.into_iter().flatten().collect();
        let want: Vec<(String, f64)> = rows
            .iter()
            .map(|r| (r.outlet_id.clone(), r.net_value))
            .collect();
        assert_eq!(all, want);

        let mut calls = 0;
        let batches = Batches::read(bytes.clone(), "t.parquet", None).unwrap();
        let e = each_batch(batches, true, |_| {
            calls += 1;
            Err(table_error("t.parquet", "stop here".into()))
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(e.to_string().contains("stop here"), "{e}");
    }

    #[test]
    fn dates_round_trip_through_date32() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        assert_eq!(date_of(date32(d)), d);
        assert_eq!(date32(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()), 0);
    }
}
