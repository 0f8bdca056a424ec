//! Arrow schemas of the raw and master tables (README "Tables"), their row builders,
//! and Parquet encoding shared by every writer.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;

use crate::master::{Outlet, Sku};
use crate::message::InvoiceLine;

/// Where a row came from in Kafka.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset of the message.
    pub offset: i64,
    /// Message timestamp in milliseconds since the epoch (0 when the broker gave none).
    pub timestamp_ms: i64,
}

fn source_fields() -> [Field; 4] {
    [
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("source_offset", DataType::Int64, false),
        Field::new("kafka_timestamp_ms", DataType::Int64, false),
    ]
}

/// Schema of `raw/invoices/`.
pub fn raw_invoice_schema() -> SchemaRef {
    static S: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut f = vec![
            Field::new("distributor_id", DataType::Utf8, false),
            Field::new("invoice_id", DataType::Utf8, false),
            Field::new("line_no", DataType::Int64, false),
            Field::new("invoice_date", DataType::Date32, false),
            Field::new("outlet_id", DataType::Utf8, false),
            Field::new("sku_id", DataType::Utf8, false),
            Field::new("quantity", DataType::Float64, false),
            Field::new("net_value", DataType::Float64, false),
            Field::new("currency", DataType::Utf8, true),
        ];
        let [t, p, o, ts] = source_fields();
        f.extend([
            t,
            p,
            o,
            Field::new("source_line", DataType::Int32, false),
            ts,
        ]);
        Arc::new(Schema::new(f))
    });
    S.clone()
}

/// Schema of `master/outlets/`.
pub fn outlet_schema() -> SchemaRef {
    static S: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut f = vec![
            Field::new("outlet_id", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("region", DataType::Utf8, true),
            Field::new("channel", DataType::Utf8, true),
            Field::new("attributes", DataType::Utf8, true),
            Field::new("deleted", DataType::Boolean, false),
        ];
        f.extend(source_fields());
        Arc::new(Schema::new(f))
    });
    S.clone()
}

/// Schema of `master/skus/`.
pub fn sku_schema() -> SchemaRef {
    static S: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut f = vec![
            Field::new("sku_id", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("category", DataType::Utf8, true),
            Field::new("subcategory", DataType::Utf8, true),
            Field::new("brand", DataType::Utf8, true),
            Field::new("attributes", DataType::Utf8, true),
            Field::new("deleted", DataType::Boolean, false),
        ];
        f.extend(source_fields());
        Arc::new(Schema::new(f))
    });
    S.clone()
}

/// Source columns shared by every builder.
#[derive(Default)]
struct SourceCols {
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: Int64Builder,
}

impl SourceCols {
    fn append(&mut self, s: &Source<'_>) {
        self.topic.append_value(s.topic);
        self.partition.append_value(s.partition);
        self.offset.append_value(s.offset);
        self.timestamp.append_value(s.timestamp_ms);
    }
    fn finish(&mut self) -> [ArrayRef; 4] {
        [
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
        ]
    }
}

/// Builds a `raw/invoices` record batch row by row.
#[derive(Default)]
pub struct RawInvoiceBuilder {
    distributor_id: StringBuilder,
    invoice_id: StringBuilder,
    line_no: Int64Builder,
    invoice_date: Date32Builder,
    outlet_id: StringBuilder,
    sku_id: StringBuilder,
    quantity: Float64Builder,
    net_value: Float64Builder,
    currency: StringBuilder,
    source_line: Int32Builder,
    source: SourceCols,
    rows: usize,
}

impl RawInvoiceBuilder {
    /// Appends one line with its source.
    pub fn append(&mut self, line: &InvoiceLine<'_>, source: &Source<'_>, source_line: i32) {
        self.distributor_id.append_value(&line.distributor_id);
        self.invoice_id.append_value(&line.invoice_id);
        self.line_no.append_value(line.line_no);
        self.invoice_date.append_value(line.date32());
        self.outlet_id.append_value(&line.outlet_id);
        self.sku_id.append_value(&line.sku_id);
        self.quantity.append_value(line.quantity);
        self.net_value.append_value(line.net_value);
        self.currency.append_option(line.currency.as_deref());
        self.source_line.append_value(source_line);
        self.source.append(source);
        self.rows += 1;
    }

    /// Rows appended since the last `finish`.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row is pending.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The pending rows as a batch; the builder is empty afterwards.
    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        let [t, p, o, ts] = self.source.finish();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.distributor_id.finish()),
            Arc::new(self.invoice_id.finish()),
            Arc::new(self.line_no.finish()),
            Arc::new(self.invoice_date.finish()),
            Arc::new(self.outlet_id.finish()),
            Arc::new(self.sku_id.finish()),
            Arc::new(self.quantity.finish()),
            Arc::new(self.net_value.finish()),
            Arc::new(self.currency.finish()),
            t,
            p,
            o,
            Arc::new(self.source_line.finish()),
            ts,
        ];
        RecordBatch::try_new(raw_invoice_schema(), cols).expect("columns match the schema")
    }
}

/// Builds a `master/outlets` record batch.
#[derive(Default)]
pub struct OutletBuilder {
    outlet_id: StringBuilder,
    name: StringBuilder,
    region: StringBuilder,
    channel: StringBuilder,
    attributes: StringBuilder,
    deleted: BooleanBuilder,
    source: SourceCols,
    rows: usize,
}

impl OutletBuilder {
    /// Appends one record.
    pub fn append(&mut self, o: &Outlet, source: &Source<'_>) {
        self.outlet_id.append_value(&o.outlet_id);
        self.name.append_option(o.name.as_deref());
        self.region.append_option(o.region.as_deref());
        self.channel.append_option(o.channel.as_deref());
        self.attributes.append_option(o.attributes.as_deref());
        self.deleted.append_value(o.deleted);
        self.source.append(source);
        self.rows += 1;
    }
    /// Rows pending.
    pub fn len(&self) -> usize {
        self.rows
    }
    /// True when no row is pending.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
    /// The pending rows as a batch.
    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        let [t, p, o, ts] = self.source.finish();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.outlet_id.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.region.finish()),
            Arc::new(self.channel.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.deleted.finish()),
            t,
            p,
            o,
            ts,
        ];
        RecordBatch::try_new(outlet_schema(), cols).expect("columns match the schema")
    }
}

/// Builds a `master/skus` record batch.
#[derive(Default)]
pub struct SkuBuilder {
    sku_id: StringBuilder,
    name: StringBuilder,
    category: StringBuilder,
    subcategory: StringBuilder,
    brand: StringBuilder,
    attributes: StringBuilder,
    deleted: BooleanBuilder,
    source: SourceCols,
    rows: usize,
}

impl SkuBuilder {
    /// Appends one record.
    pub fn append(&mut self, s: &Sku, source: &Source<'_>) {
        self.sku_id.append_value(&s.sku_id);
        self.name.append_option(s.name.as_deref());
        self.category.append_option(s.category.as_deref());
        self.subcategory.append_option(s.subcategory.as_deref());
        self.brand.append_option(s.brand.as_deref());
        self.attributes.append_option(s.attributes.as_deref());
        self.deleted.append_value(s.deleted);
        self.source.append(source);
        self.rows += 1;
    }
    /// Rows pending.
    pub fn len(&self) -> usize {
        self.rows
    }
    /// True when no row is pending.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
    /// The pending rows as a batch.
    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        let [t, p, o, ts] = self.source.finish();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.sku_id.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.subcategory.finish()),
            Arc::new(self.brand.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.deleted.finish()),
            t,
            p,
            o,
            ts,
        ];
        RecordBatch::try_new(sku_schema(), cols).expect("columns match the schema")
    }
}

/// Writer settings every Parquet object Spectra writes starts from: zstd, dictionary
/// encoding, statistics (so readers prune row groups); a table's own are
/// [`writer_properties_for`].
pub fn writer_properties() -> WriterProperties {
    writer_properties_builder().build()
}

fn writer_properties_builder() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(256 * 1024))
}

/// The writer settings for objects of `schema`: [`writer_properties`], and for
/// `raw/invoices/` no dictionary on the columns whose values are mostly distinct
/// (invoice ids, values, offsets and timestamps), where building one only costs the
/// writer time before it falls back to plain encoding.
pub fn writer_properties_for(schema: &Schema) -> WriterProperties {
    if *schema != *raw_invoice_schema() {
        return writer_properties();
    }
    let mut props = writer_properties_builder();
    for c in [
        "invoice_id",
        "net_value",
        "source_offset",
        "kafka_timestamp_ms",
    ] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    props.build()
}

/// Encodes record batches (all of one schema) as one Parquet file in memory.
pub fn to_parquet(schema: SchemaRef, batches: &[RecordBatch]) -> crate::Result<bytes::Bytes> {
    encode_parquet(schema, batches.iter().cloned().map(Ok))
}

/// Encodes record batches made one at a time (all of one schema) as one Parquet file
/// in memory: a batch is encoded, then dropped, before the next is made.
pub fn encode_parquet(
    schema: SchemaRef,
    batches: impl IntoIterator<Item = crate::Result<RecordBatch>>,
) -> crate::Result<bytes::Bytes> {
    let props = writer_properties_for(&schema);
    encode_parquet_with(schema, props, batches)
}

/// [`encode_parquet`] with `metadata` (key, value) in the file's footer: a document
/// written in the same put as the rows it describes, read back with
/// [`crate::tables::footer_value`].
pub fn encode_parquet_noting(
    schema: SchemaRef,
    metadata: &[(&str, &str)],
    batches: impl IntoIterator<Item = crate::Result<RecordBatch>>,
) -> crate::Result<bytes::Bytes> {
    let notes = metadata
        .iter()
        .map(|(k, v)| parquet::file::metadata::KeyValue::new((*k).to_owned(), (*v).to_owned()))
        .collect();
    let props = writer_properties_for(&schema)
        .into_builder()
        .set_key_value_metadata(Some(notes))
        .build();
    encode_parquet_with(schema, props, batches)
}

/// [`encode_parquet`] with other writer settings (smaller row groups, say).
pub fn encode_parquet_with(
    schema: SchemaRef,
    props: WriterProperties,
    batches: impl IntoIterator<Item = crate::Result<RecordBatch>>,
) -> crate::Result<bytes::Bytes> {
    let mut w = Encoder::with(schema, props)?;
    for b in batches {
        w.write(&b?)?;
    }
    w.finish()
}

/// [`encode_parquet_with`] on two threads: the batches are made on the calling thread
/// (the iterator need not be `Send`) while another encodes the ones made before, for
/// files whose rows cost as much to make as to encode (a run's per-outlet files).
pub fn encode_parquet_piped(
    schema: SchemaRef,
    props: WriterProperties,
    batches: impl IntoIterator<Item = crate::Result<RecordBatch>>,
) -> crate::Result<bytes::Bytes> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
    std::thread::scope(|s| {
        let encoder = s.spawn(move || {
            let mut w = Encoder::with(schema, props)?;
            for b in rx {
                w.write(&b)?;
            }
            w.finish()
        });
        let mut made = Ok(());
        for b in batches {
            match b {
                // A closed channel: the encoder failed, and says why below.
                Ok(b) => {
                    if tx.send(b).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    made = Err(e);
                    break;
                }
            }
        }
        drop(tx);
        let encoded = encoder
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        made.and(encoded)
    })
}

/// A Parquet file in memory, written a batch at a time (from an async stream, say):
/// the batches are encoded as they come and dropped by the caller, only the file's
/// bytes are held.
pub struct Encoder {
    writer: ArrowWriter<Vec<u8>>,
}

impl Encoder {
    /// An encoder with the project's settings for `schema` ([`writer_properties_for`]).
    pub fn new(schema: SchemaRef) -> crate::Result<Self> {
        let props = writer_properties_for(&schema);
        Self::with(schema, props)
    }

    /// An encoder with other writer settings.
    pub fn with(schema: SchemaRef, props: WriterProperties) -> crate::Result<Self> {
        let buf = Vec::with_capacity(1 << 16);
        Ok(Self {
            writer: ArrowWriter::try_new(buf, schema, Some(props))?,
        })
    }

    /// Encodes one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> crate::Result<()> {
        Ok(self.writer.write(batch)?)
    }

    /// The file's bytes.
    pub fn finish(self) -> crate::Result<bytes::Bytes> {
        Ok(bytes::Bytes::from(self.writer.into_inner()?))
    }
}

/// Decodes a Parquet file held in memory into record batches.
pub fn from_parquet(data: bytes::Bytes) -> crate::Result<Vec<RecordBatch>> {
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}
