//! Tables read one key at a time (a run's per-outlet files: recommendations, outlet
//! gaps, SKU gaps): rows sorted by the key column, written in row groups of
//! [`ROW_GROUP_ROWS`] and data pages of at most [`PAGE_ROWS`] rows, with a page index
//! (per-page minimum and maximum of the key, and every page's location), dictionaries
//! only while small ([`DICTIONARY_BYTES`]) and Snappy compression. A reader of one key
//! ([`read_key`]) fetches the footer and page index once (cached), then only the pages
//! whose key range can hold the key: a few hundred rows per column, whatever the
//! table's size. An outlet's 360 view then costs
//! the same at 10k outlets as at 1M, and no reader holds the whole table to answer for
//! one outlet.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::EnabledStatistics;
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;

use super::{Columns, Rows};
use crate::schema::{encode_parquet_piped, writer_properties};
use crate::{Error, Result, Storage};

/// Rows per row group (the unit of the footer's statistics; pages narrow a read).
pub const ROW_GROUP_ROWS: usize = 16 * 1024;

/// Bytes of a column's dictionary page at most, per row group (see [`write_chunks`]).
pub const DICTIONARY_BYTES: usize = 16 * 1024;

/// Rows per data page (a page closes at the first write past it, so a page holds
/// fewer than twice this): one key's read decodes a page or two per column.
pub const PAGE_ROWS: usize = 256;

/// Footers (with page indexes) of keyed tables read lately, with the object's size,
/// by store ([`Storage::id`]) and path. A keyed table is written once under its path
/// (a run's files: a new run writes a new folder), so a cached footer is used without
/// asking the store again: a read of one key is then one request for its pages.
type FooterKey = (u64, String);
static FOOTERS: LazyLock<Mutex<HashMap<FooterKey, (u64, ArrowReaderMetadata)>>> =
    LazyLock::new(Mutex::default);

/// Footers kept at most (then forgotten all at once): the per-outlet files of a few
/// runs of a few segmentations.
const FOOTERS_KEPT: usize = 16;

/// Writes a table keyed by `key` from chunks of rows made one at a time, as one
/// Parquet object in row groups of [`ROW_GROUP_ROWS`], once per path (readers cache
/// its footer by path: see [`read_key`]). The rows must come sorted by `key` across
/// chunks (what makes the row-group statistics disjoint); rows that are
/// not are an [`Error::Table`] naming the file and the row, written nowhere.
pub async fn write_chunks<T: Rows>(
    storage: &Storage,
    path: &str,
    key: &str,
    chunks: impl IntoIterator<Item = impl AsRef<[T]>>,
) -> Result<()> {
    let data = encode_chunks(path, key, chunks)?;
    storage.put(path, data).await
}

/// The file `path` holding `rows` (sorted by `key`), encoded a row group at a time as
/// the iterator yields them: only the encoded file and one row group of rows are held.
pub fn encode_rows<T: Rows>(
    path: &str,
    key: &str,
    mut rows: impl Iterator<Item = T>,
) -> Result<Bytes> {
    let chunks = std::iter::from_fn(|| {
        let chunk: Vec<T> = rows.by_ref().take(ROW_GROUP_ROWS).collect();
        (!chunk.is_empty()).then_some(chunk)
    });
    encode_chunks(path, key, chunks)
}

/// [`write_chunks`] without the write: the file `path` will hold, encoded as its
/// chunks are pulled (a chunk at a time in memory besides the encoded file), on a
/// second thread while the next chunks are made ([`encode_parquet_piped`]).
pub fn encode_chunks<T: Rows>(
    path: &str,
    key: &str,
    chunks: impl IntoIterator<Item = impl AsRef<[T]>>,
) -> Result<Bytes> {
    let batches = chunks.into_iter().map(|chunk| T::to_batch(chunk.as_ref()));
    encode_batches::<T>(path, key, batches)
}

/// [`encode_chunks`] from batches of `T`'s schema made by the caller (a table whose
/// rows would copy what its batches can borrow).
pub fn encode_batches<T: Rows>(
    path: &str,
    key: &str,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
) -> Result<Bytes> {
    // Page statistics (the column index) for the key only; every column gets its
    // offset index (page locations), which is what lets a reader fetch single pages.
    let mut props = writer_properties()
        .into_builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(PAGE_ROWS)
        // Dictionaries for the columns with few values (reasons, list names, segment
        // ids, features, ranks, a segment's shares) and none for the key and the
        // table's distinct columns (`Rows::distinct_columns`): a dictionary page is
        // per row group, and a read of one key fetches and decodes it whole, so it
        // stays under DICTIONARY_BYTES. A column outgrowing it falls back to plain
        // pages after the dictionary page written so far, which every read still
        // fetches: at 64 KiB, those of an outlet's own shares and potentials were
        // nine-tenths of a 360 view's bytes.
        .set_dictionary_page_size_limit(DICTIONARY_BYTES)
        .set_column_dictionary_enabled(ColumnPath::from(key), false)
        // Snappy: zstd sets up a decompression context per page (about as costly as
        // decoding a small page), and a one-key read decodes a few small pages.
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_column_statistics_enabled(ColumnPath::from(key), EnabledStatistics::Page);
    for c in T::distinct_columns() {
        props = props.set_column_dictionary_enabled(ColumnPath::from(*c), false);
    }
    let props = props.build();
    let (mut last, mut row) = (None::<String>, 0usize);
    let batches = batches.into_iter().map(|b| {
        let b = b?;
        let ids = Columns::new(&b, path).id_strings(key)?;
        for id in ids.iter().flatten() {
            if last.as_deref().is_some_and(|l| l > id) {
                return Err(Error::Table {
                    file: path.to_owned(),
                    reason: format!("rows are not sorted by `{key}`: `{id}` in row {row}"),
                });
            }
            if last.as_deref() != Some(id) {
                last = Some(id.to_owned());
            }
            row += 1;
        }
        Ok(b)
    });
    encode_parquet_piped(T::schema(), props, batches)
}

/// The rows of `path` whose `key` column equals `value`, in file order; `None` when
/// the object does not exist. Reads the footer and page index (cached), then the pages
/// whose `key` range can hold `value`, in the row groups whose statistics can (every
/// group, or every page, of a file written without them).
pub async fn read_key<T: Rows>(
    storage: &Storage,
    path: &str,
    key: &str,
    value: &str,
) -> Result<Option<Vec<T>>> {
    let footer = (storage.id(), path.to_owned());
    let cached = FOOTERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&footer)
        .cloned();
    let (reader, arrow_meta) = match cached {
        Some((size, m)) => (
            Ranged {
                storage: storage.clone(),
                path: path.to_owned(),
                size,
            },
            m,
        ),
        None => {
            let Some(mut reader) = Ranged::open(storage, path).await? else {
                return Ok(None);
            };
            let size = reader.size;
            let options =
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
            let m = ArrowReaderMetadata::load_async(&mut reader, options).await?;
            let mut footers = FOOTERS.lock().unwrap_or_else(|p| p.into_inner());
            if footers.len() >= FOOTERS_KEPT {
                footers.clear();
            }
            footers.insert(footer, (size, m.clone()));
            (reader, m)
        }
    };
    let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, arrow_meta);
    let col = builder
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.name() == key)
        .ok_or_else(|| Error::Table {
            file: path.to_owned(),
            reason: format!("column `{key}` is missing"),
        })?;
    let wanted = value.as_bytes();
    let row_groups = builder.metadata().row_groups();
    let groups = holding(row_groups.len(), wanted, |g| {
        match row_groups[g].column(col).statistics() {
            Some(Statistics::ByteArray(s)) => (s.min_bytes_opt(), s.max_bytes_opt()),
            _ => (None, None),
        }
    });
    let selection = pages_holding(builder.metadata(), &groups, col, wanted);
    let batches: Vec<RecordBatch> = builder
        .with_row_groups(groups)
        .with_row_selection(selection)
        .build()?
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let ids = Columns::new(b, path).id_strings(key)?;
        let mask: BooleanArray = ids.iter().map(|v| Some(v == Some(value))).collect();
        if mask.true_count() == 0 {
            continue;
        }
        let rows = filter_record_batch(b, &mask)?;
        out.extend(T::from_batch(&Columns::new(&rows, path))?);
    }
    Ok(Some(out))
}

/// Whether a row group or page whose key lies in `[min, max]` (a missing bound: any)
/// can hold `wanted`.
fn may_hold(min: Option<&[u8]>, max: Option<&[u8]>, wanted: &[u8]) -> bool {
    min.is_none_or(|m| m <= wanted) && max.is_none_or(|m| wanted <= m)
}

/// The row groups (in file order, each the `(min, max)` of its key) that can hold
/// `wanted`. The file is sorted by the key, so when every group has both bounds those
/// are one run, found by binary search: at a million outlets a per-outlet file has
/// thousands of row groups, and a linear scan of their statistics was a tenth of a 360
/// view's time. A file written without statistics is scanned (every group can hold
/// the key).
fn holding<'a>(
    groups: usize,
    wanted: &[u8],
    bounds: impl Fn(usize) -> (Option<&'a [u8]>, Option<&'a [u8]>),
) -> Vec<usize> {
    let bounded = |g: usize| matches!(bounds(g), (Some(_), Some(_)));
    // A writer writes statistics for every group of a file or for none (the key is
    // never null): the first and last groups tell, without a look at every group
    // (at thousands of groups that look cost more than the read).
    if groups > 0 && bounded(0) && bounded(groups - 1) {
        // The first group whose maximum is not below `wanted`, then those after it
        // whose minimum is not above.
        let (mut lo, mut hi) = (0, groups);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if bounds(mid).1.is_some_and(|max| max < wanted) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo..groups)
            .take_while(|&g| bounds(g).0.is_some_and(|min| min <= wanted))
            .collect()
    } else {
        (0..groups)
            .filter(|&g| {
                let (min, max) = bounds(g);
                may_hold(min, max, wanted)
            })
            .collect()
    }
}

/// The rows of `groups` (in that order) on pages whose `col` range can hold `wanted`,
/// from the page index; every row of a group without one.
fn pages_holding(
    meta: &ParquetMetaData,
    groups: &[usize],
    col: usize,
    wanted: &[u8],
) -> RowSelection {
    let mut selectors = Vec::new();
    for &g in groups {
        let rows = meta.row_group(g).num_rows() as usize;
        let index = meta.column_index().and_then(|c| c.get(g)).map(|c| &c[col]);
        let offsets = meta.offset_index().and_then(|o| o.get(g)).map(|o| &o[col]);
        let (Some(ColumnIndexMetaData::BYTE_ARRAY(index)), Some(offsets)) = (index, offsets) else {
            selectors.push(RowSelector::select(rows));
            continue;
        };
        let pages = offsets.page_locations();
        for (p, page) in pages.iter().enumerate() {
            let start = page.first_row_index as usize;
            let end = pages
                .get(p + 1)
                .map_or(rows, |n| n.first_row_index as usize);
            selectors.push(
                if may_hold(index.min_value(p), index.max_value(p), wanted) {
                    RowSelector::select(end - start)
                } else {
                    RowSelector::skip(end - start)
                },
            );
        }
    }
    RowSelection::from(selectors)
}

/// The columns `columns` of a table, a batch at a time, from ranged reads of their
/// pages alone (not the whole object); `None` when the object does not exist.
pub(crate) async fn column_batches(
    storage: &Storage,
    path: &str,
    columns: &[&str],
) -> Result<Option<ParquetRecordBatchStream<Ranged>>> {
    let Some(reader) = Ranged::open(storage, path).await? else {
        return Ok(None);
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    Ok(Some(
        builder
            .with_projection(mask)
            .with_batch_size(super::BATCH_ROWS)
            .build()?,
    ))
}

/// The footer of a Parquet object, read alone (ranged reads, not the whole object);
/// `None` when the object does not exist.
pub(crate) async fn footer(
    storage: &Storage,
    path: &str,
) -> Result<Option<Arc<parquet::file::metadata::ParquetMetaData>>> {
    let Some(mut reader) = Ranged::open(storage, path).await? else {
        return Ok(None);
    };
    let m = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new()).await?;
    Ok(Some(m.metadata().clone()))
}

/// The rows of a Parquet object, from its footer alone ([`footer`]); `None` when the
/// object does not exist.
pub(crate) async fn footer_rows(storage: &Storage, path: &str) -> Result<Option<u64>> {
    Ok(footer(storage, path)
        .await?
        .map(|m| m.file_metadata().num_rows().max(0) as u64))
}

/// Ranged reads of one object of known size: the footer, then the pages asked for
/// (parquet's own object-store reader is deprecated in favour of this).
pub(crate) struct Ranged {
    storage: Storage,
    path: String,
    size: u64,
}

impl Ranged {
    /// The object at `path`, its size read; `None` when it does not exist.
    async fn open(storage: &Storage, path: &str) -> Result<Option<Self>> {
        let size = match storage.object_store().head(&storage.path(path)).await {
            Ok(m) => m.size,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(Self {
            storage: storage.clone(),
            path: path.to_owned(),
            size,
        }))
    }
}

impl AsyncFileReader for Ranged {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let mut got = self.get_byte_ranges(vec![range]).await?;
            Ok(got.pop().unwrap_or_default())
        }
        .boxed()
    }

    /// All ranges of a read in one request to the store ([`Storage::get_ranges`]: a
    /// local store reads them in place, an HTTP store coalesces near ones).
    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.storage
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::sku_gaps::SkuGapRow;

    /// In memory (object_store's reads) and on `file://` (positioned reads in place).
    #[tokio::test]
    async fn one_key_is_read_from_a_page_or_two_of_each_column() {
        let dir = tempfile::tempdir().unwrap();
        let local = Storage::from_url(&format!("file://{}", dir.path().display())).unwrap();
        for storage in [Storage::memory(), local] {
            one_key_is_read_from_its_pages(&storage).await;
        }
    }

    async fn one_key_is_read_from_its_pages(storage: &Storage) {
        // 40,000 outlets with 1 to 9 rows each: several row groups, hundreds of pages.
        let rows = crate::tables::sku_gaps::tests::rows(40_000, |o| 1 + o % 9);
        write_chunks(storage, "t.parquet", "outlet_id", rows.chunks(5_000))
            .await
            .unwrap();
        let data = storage.get("t.parquet").await.unwrap().unwrap();
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let meta = ArrowReaderMetadata::load(&data, options).unwrap();
        let meta = meta.metadata();
        assert_eq!(meta.num_row_groups(), rows.len().div_ceil(ROW_GROUP_ROWS));
        // Every column's pages hold fewer than 2 × PAGE_ROWS rows (a page closes at the
        // first write past the limit); the key and the distinct column (`potential`) have
        // no dictionary, the others small ones.
        for (g, columns) in meta.offset_index().unwrap().iter().enumerate() {
            let n = meta.row_group(g).num_rows();
            for (c, column) in columns.iter().enumerate() {
                let pages = column.page_locations();
                let mut bounds: Vec<i64> = pages.iter().map(|p| p.first_row_index).collect();
                bounds.push(n);
                assert!(
                    bounds
                        .windows(2)
                        .all(|w| w[1] - w[0] < 2 * PAGE_ROWS as i64),
                    "row group {g}, column {c}: {:?}",
                    bounds.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
                );
                let chunk = meta.row_group(g).column(c);
                let name = chunk.column_descr().name();
                match chunk.dictionary_page_offset() {
                    None => {}
                    Some(_) if c == 0 => panic!("the key column has a dictionary"),
                    Some(_) if name == "potential" => panic!("`potential` has a dictionary"),
                    Some(at) => {
                        let data = chunk.data_page_offset();
                        assert!(data - at <= 2 * DICTIONARY_BYTES as i64, "{g}/{c}");
                    }
                }
            }
        }
        let groups: Vec<usize> = (0..meta.num_row_groups()).collect();
        for o in [0u32, 1, 12_345, 16_383, 16_384, 39_999] {
            let id = format!("O{o:05}");
            let selected = pages_holding(meta, &groups, 0, id.as_bytes()).row_count();
            assert!(selected <= 2 * PAGE_ROWS, "{id}: {selected} rows selected");
            let got: Vec<SkuGapRow> = read_key(storage, "t.parquet", "outlet_id", &id)
                .await
                .unwrap()
                .unwrap();
            let want: Vec<SkuGapRow> = rows.iter().filter(|r| r.outlet_id == id).cloned().collect();
            assert_eq!(got.len() as u32, 1 + o % 9);
            assert_eq!(got, want, "{id}");
        }
        let none: Vec<SkuGapRow> = read_key(storage, "t.parquet", "outlet_id", "O9")
            .await
            .unwrap()
            .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn the_groups_holding_a_key_are_found_by_binary_search_or_scan() {
        type Bounds = (Option<&'static [u8]>, Option<&'static [u8]>);
        let b = |min: &'static str, max: &'static str| -> Bounds {
            (Some(min.as_bytes()), Some(max.as_bytes()))
        };
        let find =
            |groups: &[Bounds], key: &str| holding(groups.len(), key.as_bytes(), |g| groups[g]);
        // A key may span the end of one group and the start of the next.
        let groups = [
            b("a", "c"),
            b("c", "f"),
            b("f", "f"),
            b("f", "k"),
            b("m", "p"),
        ];
        assert_eq!(find(&groups, "b"), [0]);
        assert_eq!(find(&groups, "c"), [0, 1]);
        assert_eq!(find(&groups, "f"), [1, 2, 3]);
        assert_eq!(find(&groups, "l"), Vec::<usize>::new());
        assert_eq!(find(&groups, "0"), Vec::<usize>::new());
        assert_eq!(find(&groups, "z"), Vec::<usize>::new());
        assert_eq!(find(&groups, "p"), [4]);
        // A file without statistics: every group can hold anything.
        let open = [(None, None); 3];
        assert_eq!(find(&open, "c"), [0, 1, 2]);
        assert_eq!(find(&[], "c"), Vec::<usize>::new());
    }
}
