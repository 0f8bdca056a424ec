//! Index files: the Parquet layout of the base, merged and delta files, and their
//! decoding (whole, or only the row groups that can hold wanted identities).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Date32Builder, Int32Array, Int32Builder, Int64Array, Int64Builder,
    RecordBatch, UInt64Array, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use datafusion::parquet::file::properties::WriterProperties;
use spectra_core::schema::{encode_parquet_with, from_parquet};

use super::{Entry, Version, ROW_GROUP_ROWS};
use crate::hash::IdentityHash;
use crate::Error;

fn entry_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("hash_hi", DataType::UInt64, false),
        Field::new("hash_lo", DataType::UInt64, false),
        Field::new("date", DataType::Date32, false),
        Field::new("kafka_timestamp_ms", DataType::Int64, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("source_offset", DataType::Int64, false),
        Field::new("source_line", DataType::Int32, false),
    ]))
}

pub(super) fn encode(entries: &[Entry]) -> Result<Bytes, Error> {
    let mut hi = UInt64Builder::with_capacity(entries.len());
    let mut lo = UInt64Builder::with_capacity(entries.len());
    let mut date = Date32Builder::with_capacity(entries.len());
    let mut ts = Int64Builder::with_capacity(entries.len());
    let mut part = Int32Builder::with_capacity(entries.len());
    let mut off = Int64Builder::with_capacity(entries.len());
    let mut line = Int32Builder::with_capacity(entries.len());
    for e in entries {
        hi.append_value(e.hash.hi);
        lo.append_value(e.hash.lo);
        date.append_value(e.date);
        ts.append_value(e.version.timestamp_ms);
        part.append_value(e.version.partition);
        off.append_value(e.version.offset);
        line.append_value(e.version.line);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(hi.finish()),
        Arc::new(lo.finish()),
        Arc::new(date.finish()),
        Arc::new(ts.finish()),
        Arc::new(part.finish()),
        Arc::new(off.finish()),
        Arc::new(line.finish()),
    ];
    let batch = RecordBatch::try_new(entry_schema(), cols)?;
    Ok(encode_parquet_with(
        entry_schema(),
        entry_properties(),
        [Ok(batch)],
    )?)
}

/// How index files are encoded: the hash halves and the versions are nearly all
/// distinct, so they get no dictionary (building one for every value and then giving
/// it up was a tenth of a first roll-up), and the hash halves, random bits, are not
/// compressed. The date and the partition repeat: dictionaries.
fn entry_properties() -> WriterProperties {
    use datafusion::parquet::basic::{Compression, ZstdLevel};
    use datafusion::parquet::schema::types::ColumnPath;
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for c in ["hash_hi", "hash_lo"] {
        b = b.set_column_compression(ColumnPath::from(c), Compression::UNCOMPRESSED);
    }
    for c in ["date", "source_partition"] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), true);
    }
    b.build()
}

pub(super) fn decode(path: &str, data: Bytes, out: &mut Vec<Entry>) -> Result<(), Error> {
    for b in from_parquet(data)? {
        push_entries(path, &b, out)?;
    }
    Ok(())
}

/// Decodes the row groups of an index file whose `hash_hi` range can hold one of
/// `wanted` (sorted); every row group of a file written without statistics.
pub(super) fn decode_holding(
    path: &str,
    data: Bytes,
    wanted: &[IdentityHash],
    out: &mut Vec<Entry>,
) -> Result<(), Error> {
    use datafusion::parquet::arrow::arrow_reader::statistics::StatisticsConverter;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bad = |e: datafusion::parquet::errors::ParquetError| {
        Error::Corrupt(format!("{path}: not an identity index file: {e}"))
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(data).map_err(bad)?;
    let groups = builder.metadata().row_groups();
    let stats = StatisticsConverter::try_new("hash_hi", builder.schema(), builder.parquet_schema())
        .map_err(bad)?;
    let (mins, maxes) = (
        stats.row_group_mins(groups.iter()).map_err(bad)?,
        stats.row_group_maxes(groups.iter()).map_err(bad)?,
    );
    let bounds = mins
        .as_any()
        .downcast_ref::<UInt64Array>()
        .zip(maxes.as_any().downcast_ref::<UInt64Array>());
    let holding: Vec<usize> = (0..groups.len())
        .filter(|&g| {
            let Some((mins, maxes)) = bounds else {
                return true;
            };
            if arrow::array::Array::is_null(mins, g) || arrow::array::Array::is_null(maxes, g) {
                return true;
            }
            let first = wanted.partition_point(|h| h.hi < mins.value(g));
            wanted.get(first).is_some_and(|h| h.hi <= maxes.value(g))
        })
        .collect();
    for b in builder.with_row_groups(holding).build().map_err(bad)? {
        push_entries(path, &b?, out)?;
    }
    Ok(())
}

fn push_entries(path: &str, b: &RecordBatch, out: &mut Vec<Entry>) -> Result<(), Error> {
    let bad = || Error::Corrupt(format!("{path}: not an identity index file"));
    let col = |i: usize| b.column(i).as_any();
    let hi = col(0).downcast_ref::<UInt64Array>().ok_or_else(bad)?;
    let lo = col(1).downcast_ref::<UInt64Array>().ok_or_else(bad)?;
    let date = col(2).downcast_ref::<Date32Array>().ok_or_else(bad)?;
    let ts = col(3).downcast_ref::<Int64Array>().ok_or_else(bad)?;
    let part = col(4).downcast_ref::<Int32Array>().ok_or_else(bad)?;
    let off = col(5).downcast_ref::<Int64Array>().ok_or_else(bad)?;
    let line = col(6).downcast_ref::<Int32Array>().ok_or_else(bad)?;
    out.extend((0..b.num_rows()).map(|i| Entry {
        hash: IdentityHash {
            hi: hi.value(i),
            lo: lo.value(i),
        },
        date: date.value(i),
        version: Version {
            timestamp_ms: ts.value(i),
            partition: part.value(i),
            offset: off.value(i),
            line: line.value(i),
        },
    }));
    Ok(())
}
