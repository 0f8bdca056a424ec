//! Tables read one key at a time (a run's per-outlet files: recommendations, outlet
//! gaps, SKU gaps): rows sorted by the key column and written in small row groups
//! ([`ROW_GROUP_ROWS`]), so a reader of one key ([`read_key`]) fetches the footer and
//! only the row groups whose statistics can hold the key. An outlet's 360 view then
//! costs the same at 10k outlets as at 1M, and no reader holds the whole table to
//! answer for one outlet.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;

use super::{Columns, Rows};
use crate::schema::{encode_parquet_with, writer_properties};
use crate::{Error, Result, Storage};

/// Rows per row group: one key's read decodes at most a few groups of this many rows.
pub const ROW_GROUP_ROWS: usize = 2 * 1024;

/// Footers of keyed tables read lately, by path, size and entity tag (an object
/// rewritten in place is read again): a run's files are read one key at a time many
/// times, and parsing a footer of a few hundred row groups costs more than reading
/// the one row group asked for.
type FooterKey = (String, u64, Option<String>);
static FOOTERS: LazyLock<Mutex<HashMap<FooterKey, ArrowReaderMetadata>>> =
    LazyLock::new(Mutex::default);

/// Footers kept at most (then forgotten all at once): the per-outlet files of a few
/// runs of a few segmentations.
const FOOTERS_KEPT: usize = 16;

/// Writes a table keyed by `key` from chunks of rows made one at a time, as one
/// Parquet object in row groups of [`ROW_GROUP_ROWS`]. The rows must come sorted by
/// `key` across chunks (what makes the row-group statistics disjoint); rows that are
/// not are an [`Error::Table`] naming the file and the row, written nowhere.
pub async fn write_chunks<T: Rows>(
    storage: &Storage,
    path: &str,
    key: &str,
    chunks: impl IntoIterator<Item = impl AsRef<[T]>>,
) -> Result<()> {
    let props = writer_properties()
        .into_builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let (mut last, mut row) = (None::<String>, 0usize);
    let batches = chunks.into_iter().map(|chunk| {
        let b = T::to_batch(chunk.as_ref())?;
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
    let data = encode_parquet_with(T::schema(), props, batches)?;
    storage.put(path, data).await
}

/// The rows of `path` whose `key` column equals `value`, in file order; `None` when
/// the object does not exist. Reads the footer and the row groups whose `key`
/// statistics can hold `value` (every group of a file written without statistics).
pub async fn read_key<T: Rows>(
    storage: &Storage,
    path: &str,
    key: &str,
    value: &str,
) -> Result<Option<Vec<T>>> {
    let object = storage.path(path);
    let store = storage.object_store();
    let meta = match store.head(&object).await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut reader = Ranged {
        store,
        path: object,
        size: meta.size,
    };
    let footer = (path.to_owned(), meta.size, meta.e_tag.clone());
    let cached = FOOTERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&footer)
        .cloned();
    let arrow_meta = match cached {
        Some(m) => m,
        None => {
            let m = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new()).await?;
            let mut footers = FOOTERS.lock().unwrap_or_else(|p| p.into_inner());
            if footers.len() >= FOOTERS_KEPT {
                footers.clear();
            }
            footers.insert(footer, m.clone());
            m
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
    let groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, g)| match g.column(col).statistics() {
            Some(Statistics::ByteArray(s)) => {
                let lo = s.min_bytes_opt().is_none_or(|m| m <= wanted);
                let hi = s.max_bytes_opt().is_none_or(|m| wanted <= m);
                lo && hi
            }
            _ => true,
        })
        .map(|(i, _)| i)
        .collect();
    let batches: Vec<RecordBatch> = builder
        .with_row_groups(groups)
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

/// Ranged reads of one object of known size: the footer, then the row groups asked
/// for (parquet's own object-store reader is deprecated in favour of this).
struct Ranged {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl AsyncFileReader for Ranged {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
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
