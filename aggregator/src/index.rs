//! The identity index: for every line identity, the days whose raw files hold a version
//! of it and the latest version in each. It answers the one question an incremental
//! run cannot answer from the new files alone: "did this identity already exist, and on
//! which day?" — a correction may move a line to another invoice date, and the old day
//! must then lose it.
//!
//! Why this layout: a daily run brings tens of thousands of new identities spread over
//! every hash bucket, so a bucketed table that is read and rewritten per run would cost
//! as much as the whole index every day. Instead
//! - a Bloom filter over every identity seen (`identity.bloom`, 16 bits per key) tells
//!   "certainly new" for almost every new line without reading anything else;
//! - only the few "maybe seen" identities (real corrections and ≈ 0.05 % false
//!   positives) are looked up, in the base file of their hash bucket
//!   (`identities/bucket=NNN.parquet`) and in the recent delta files;
//! - each run appends its new entries as one delta file; after [`MAX_DELTAS`] deltas
//!   (or when the filter is full) the deltas are merged into the base buckets and the
//!   filter is rebuilt, so the merge cost is amortised over many runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::task::Poll;

use arrow::array::{
    ArrayRef, Date32Array, Date32Builder, Int32Array, Int32Builder, Int64Array, Int64Builder,
    RecordBatch, UInt64Array, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use datafusion::parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use spectra_core::schema::{encode_parquet_with, from_parquet};
use spectra_core::Storage;

use crate::hash::{Bloom, IdentityHash};
use crate::state::IndexState;
use crate::Error;

/// Folder of the index, relative to the storage root.
pub const INDEX_DIR: &str = "state/aggregate/identities";
/// Number of hash buckets of the base files.
pub const BUCKETS: u32 = 256;
/// Delta files kept before they are merged into the base.
pub const MAX_DELTAS: usize = 16;

/// The version order of redeliveries (README, raw/invoices): a greater version wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// `kafka_timestamp_ms`.
    pub timestamp_ms: i64,
    /// `source_partition`.
    pub partition: i32,
    /// `source_offset`.
    pub offset: i64,
    /// `source_line`.
    pub line: i32,
}

/// A batch whose first eight columns are an identity, a day and a version, in the order
/// `distributor_id, invoice_id, line_no, date, kafka_timestamp_ms, source_partition,
/// source_offset, source_line` (the roll-up's identity scan and `superseded.parquet`).
pub struct VersionedRows<'a> {
    /// `distributor_id`.
    pub distributor: &'a arrow::array::StringArray,
    /// `invoice_id`.
    pub invoice: &'a arrow::array::StringArray,
    line_no: &'a arrow::array::Int64Array,
    date: &'a arrow::array::Date32Array,
    timestamp: &'a arrow::array::Int64Array,
    partition: &'a arrow::array::Int32Array,
    offset: &'a arrow::array::Int64Array,
    line: &'a arrow::array::Int32Array,
}

impl<'a> VersionedRows<'a> {
    /// Views `b`'s first eight columns.
    pub fn of(b: &'a arrow::array::RecordBatch) -> Self {
        use arrow::array::AsArray;
        use arrow::datatypes::{Date32Type, Int32Type, Int64Type};
        Self {
            distributor: b.column(0).as_string::<i32>(),
            invoice: b.column(1).as_string::<i32>(),
            line_no: b.column(2).as_primitive::<Int64Type>(),
            date: b.column(3).as_primitive::<Date32Type>(),
            timestamp: b.column(4).as_primitive::<Int64Type>(),
            partition: b.column(5).as_primitive::<Int32Type>(),
            offset: b.column(6).as_primitive::<Int64Type>(),
            line: b.column(7).as_primitive::<Int32Type>(),
        }
    }

    /// Row `r`'s line number.
    pub fn line_no(&self, r: usize) -> i64 {
        self.line_no.value(r)
    }

    /// Row `r`'s identity hash.
    pub fn hash(&self, r: usize) -> crate::hash::IdentityHash {
        crate::hash::IdentityHash::of(
            self.distributor.value(r),
            self.invoice.value(r),
            self.line_no(r),
        )
    }

    /// Row `r`'s day.
    pub fn date(&self, r: usize) -> i32 {
        self.date.value(r)
    }

    /// Row `r`'s version.
    pub fn version(&self, r: usize) -> Version {
        Version {
            timestamp_ms: self.timestamp.value(r),
            partition: self.partition.value(r),
            offset: self.offset.value(r),
            line: self.line.value(r),
        }
    }
}

/// One (identity, day) pair and the latest version of the identity on that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The identity.
    pub hash: IdentityHash,
    /// The invoice date (days since the epoch).
    pub date: i32,
    /// The latest version on that date.
    pub version: Version,
}

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

fn encode(entries: &[Entry]) -> Result<Bytes, Error> {
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
        .set_dictionary_enabled(false);
    for c in ["hash_hi", "hash_lo"] {
        b = b.set_column_compression(ColumnPath::from(c), Compression::UNCOMPRESSED);
    }
    for c in ["date", "source_partition"] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), true);
    }
    b.build()
}

fn decode(path: &str, data: Bytes, out: &mut Vec<Entry>) -> Result<(), Error> {
    let bad = || Error::Corrupt(format!("{path}: not an identity index file"));
    for b in from_parquet(data)? {
        let col = |i: usize| b.column(i).as_any();
        let hi = col(0).downcast_ref::<UInt64Array>().ok_or_else(bad)?;
        let lo = col(1).downcast_ref::<UInt64Array>().ok_or_else(bad)?;
        let date = col(2).downcast_ref::<Date32Array>().ok_or_else(bad)?;
        let ts = col(3).downcast_ref::<Int64Array>().ok_or_else(bad)?;
        let part = col(4).downcast_ref::<Int32Array>().ok_or_else(bad)?;
        let off = col(5).downcast_ref::<Int64Array>().ok_or_else(bad)?;
        let line = col(6).downcast_ref::<Int32Array>().ok_or_else(bad)?;
        for i in 0..b.num_rows() {
            out.push(Entry {
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
            });
        }
    }
    Ok(())
}

/// Per identity: its days and the latest version on each.
pub type Days = BTreeMap<i32, Version>;

fn merge_into(map: &mut HashMap<IdentityHash, Days>, e: &Entry) {
    let days = map.entry(e.hash).or_default();
    let v = days.entry(e.date).or_insert(e.version);
    if e.version > *v {
        *v = e.version;
    }
}

/// The identity index, loaded for one run.
pub struct IdentityIndex {
    storage: Storage,
    state: IndexState,
    bloom: Bloom,
    /// Entries of the deltas, read on the first lookup.
    deltas: Option<Vec<Entry>>,
    /// The lease epoch of the pass writing (named in its delta files).
    epoch: u64,
    /// Built from nothing in this pass: entries go straight into the base buckets.
    building: bool,
    /// The filter changed since it was last written ([`IdentityIndex::finish`]).
    bloom_changed: bool,
}

fn bucket_path(b: u32) -> String {
    format!("{INDEX_DIR}/bucket={b:03}.parquet")
}

fn bloom_path() -> String {
    format!("{INDEX_DIR}/identity.bloom")
}

impl IdentityIndex {
    /// An empty index (a full rebuild); its filter is sized by the first append.
    pub fn empty(storage: Storage) -> Self {
        Self {
            storage,
            state: IndexState {
                buckets: BUCKETS,
                ..IndexState::default()
            },
            bloom: Bloom::with_capacity(0),
            deltas: Some(Vec::new()),
            epoch: 0,
            building: true,
            bloom_changed: false,
        }
    }

    /// Opens the index a previous run left.
    pub async fn open(storage: Storage, state: IndexState) -> Result<Self, Error> {
        if state.entries == 0 && state.deltas.is_empty() {
            // Earlier passes saw no lines yet (a service started before the first
            // invoice): nothing was written, and the index is still empty.
            let mut empty = Self::empty(storage);
            empty.state = state;
            return Ok(empty);
        }
        let path = bloom_path();
        let data = storage
            .get(&path)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("{path} is missing; run with --full")))?;
        let bloom = Bloom::from_bytes(&data).ok_or_else(|| {
            Error::Corrupt(format!("{path} is not a Bloom filter; run with --full"))
        })?;
        Ok(Self {
            storage,
            state,
            bloom,
            deltas: None,
            epoch: 0,
            building: false,
            bloom_changed: false,
        })
    }

    /// Names this pass's delta files with its lease epoch.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The bookkeeping to save in the state.
    pub fn state(&self) -> &IndexState {
        &self.state
    }

    /// The number of hash buckets of the base files.
    pub fn buckets(&self) -> u32 {
        self.state.buckets
    }

    /// False when the identity was certainly never added.
    pub fn may_contain(&self, h: &IdentityHash) -> bool {
        self.bloom.may_contain(h)
    }

    async fn read(&self, path: &str, out: &mut Vec<Entry>) -> Result<(), Error> {
        if let Some(data) = self.storage.get(path).await? {
            decode(path, data, out)?;
        }
        Ok(())
    }

    async fn load_deltas(&mut self) -> Result<&[Entry], Error> {
        if self.deltas.is_none() {
            let mut all = Vec::new();
            for d in &self.state.deltas {
                self.read(&format!("{INDEX_DIR}/{d}"), &mut all).await?;
            }
            self.deltas = Some(all);
        }
        Ok(self.deltas.as_deref().unwrap_or_default())
    }

    /// The days (and latest versions) the index holds for each of `hashes`.
    pub async fn lookup(
        &mut self,
        hashes: &BTreeSet<IdentityHash>,
    ) -> Result<HashMap<IdentityHash, Days>, Error> {
        let mut found = HashMap::new();
        if hashes.is_empty() {
            return Ok(found);
        }
        let buckets: BTreeSet<u32> = hashes
            .iter()
            .map(|h| h.bucket(self.state.buckets))
            .collect();
        let mut base = Vec::new();
        for b in buckets {
            self.read(&bucket_path(b), &mut base).await?;
        }
        let deltas = self.load_deltas().await?;
        for e in base.iter().chain(deltas) {
            if hashes.contains(&e.hash) {
                merge_into(&mut found, e);
            }
        }
        Ok(found)
    }

    /// Sizes the filter of an index being built for at most `entries` entries (before
    /// the first [`IdentityIndex::append`]; a build appends one group of buckets at a
    /// time, and the filter must hold them all).
    pub fn expect(&mut self, entries: u64) {
        if self.building && self.state.entries == 0 {
            self.bloom = Bloom::with_capacity(entries * 2);
        }
    }

    /// Adds entries (already merged per identity and day): one delta file, or straight
    /// into the base buckets when the index is being built from scratch (then each
    /// identity must be appended once: a build appends disjoint groups of identities).
    /// The filter is written by [`IdentityIndex::finish`].
    pub async fn append(&mut self, entries: Vec<Entry>) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        if self.building && self.state.entries == 0 {
            let wanted = entries.len() as u64 * 2;
            if self.bloom.capacity() < wanted {
                self.bloom = Bloom::with_capacity(wanted);
            }
        }
        self.bloom.insert_many(&entries, |e| e.hash);
        self.bloom_changed = true;
        self.state.entries += entries.len() as u64;
        if self.building {
            self.write_base(entries).await?;
        } else {
            // The lease epoch in the name: a fenced pass's delta never overwrites the
            // delta of the pass that took over.
            let name = format!(
                "delta-{:010}-e{}.parquet",
                self.state.next_delta, self.epoch
            );
            self.storage
                .put(&format!("{INDEX_DIR}/{name}"), encode(&entries)?)
                .await?;
            self.state.next_delta += 1;
            self.state.deltas.push(name);
            if let Some(d) = self.deltas.as_mut() {
                d.extend(entries);
            }
            if self.state.deltas.len() > MAX_DELTAS || self.state.entries > self.bloom.capacity() {
                self.compact().await?;
            }
        }
        Ok(())
    }

    /// Writes the filter when appends changed it (once per pass: at national scale it
    /// is hundreds of megabytes).
    pub async fn finish(&mut self) -> Result<(), Error> {
        if self.bloom_changed {
            self.storage
                .put(&bloom_path(), Bytes::from(self.bloom.to_bytes()))
                .await?;
            self.bloom_changed = false;
        }
        Ok(())
    }

    /// Merges `entries` into the base buckets they fall in.
    async fn write_base(&mut self, mut entries: Vec<Entry>) -> Result<(), Error> {
        // Grouped by bucket in place, each bucket in the order a fresh build hands them
        // (identity, day, latest version first): a first roll-up's entries are every
        // line's identity, not to be copied again. A build's absorb hands them in this
        // order already.
        let buckets = self.state.buckets;
        let order = |a: &Entry, b: &Entry| {
            (a.hash.bucket(buckets), a.hash, a.date, b.version).cmp(&(
                b.hash.bucket(buckets),
                b.hash,
                b.date,
                a.version,
            ))
        };
        if !entries.is_sorted_by(|a, b| order(a, b).is_le()) {
            entries.par_sort_unstable_by(order);
        }
        let groups: Vec<&[Entry]> = entries
            .chunk_by(|a, b| a.hash.bucket(buckets) == b.hash.bucket(buckets))
            .collect();
        // Buckets a few at a time: each read, merged and encoded on the thread pool
        // (a build writes 256 of them), then stored while the next few are encoded.
        let mut stored: Vec<(String, Bytes)> = Vec::new();
        for batch in groups.chunks(16) {
            let mut merged = Vec::with_capacity(batch.len());
            for new in batch {
                let path = bucket_path(new[0].hash.bucket(buckets));
                let mut all = Vec::new();
                self.read(&path, &mut all).await?;
                merged.push((path, all, *new));
            }
            let mut puts = std::pin::pin!(self.put_all(std::mem::take(&mut stored)));
            // Started (a local write runs on the blocking pool once started), then
            // awaited after this batch is encoded.
            let started = futures::poll!(&mut puts);
            let storing = started.is_pending();
            if let Poll::Ready(done) = started {
                done?;
            }
            stored = merged
                .into_par_iter()
                .map(|(path, mut all, new)| {
                    // A fresh build hands entries already sorted and unique per
                    // (identity, day); merging with a base file or several deltas
                    // needs the sort.
                    let merging = !all.is_empty()
                        || new
                            .windows(2)
                            .any(|w| (w[0].hash, w[0].date) >= (w[1].hash, w[1].date));
                    if !merging {
                        return Ok((path, encode(new)?));
                    }
                    all.extend_from_slice(new);
                    // Latest version per (identity, day), in hash order.
                    all.sort_unstable_by(|a, b| {
                        (a.hash, a.date, b.version).cmp(&(b.hash, b.date, a.version))
                    });
                    all.dedup_by(|later, first| {
                        later.hash == first.hash && later.date == first.date
                    });
                    Ok((path, encode(&all)?))
                })
                .collect::<Result<Vec<_>, Error>>()?;
            if storing {
                puts.await?;
            }
        }
        self.put_all(stored).await
    }

    /// Stores objects side by side (each local write waits on its own `fsync`).
    async fn put_all(&self, objects: Vec<(String, Bytes)>) -> Result<(), Error> {
        futures::future::try_join_all(
            objects
                .into_iter()
                .map(|(path, data)| async move { self.storage.put(&path, data).await }),
        )
        .await?;
        Ok(())
    }

    /// Merges every delta into the base buckets and rebuilds the Bloom filter, sized
    /// for twice the identities now held.
    async fn compact(&mut self) -> Result<(), Error> {
        let deltas = std::mem::take(&mut self.state.deltas);
        let entries = match self.deltas.take() {
            Some(d) => d,
            None => {
                let mut all = Vec::new();
                for d in &deltas {
                    self.read(&format!("{INDEX_DIR}/{d}"), &mut all).await?;
                }
                all
            }
        };
        self.write_base(entries).await?;
        // Sized from the entries counted so far (merging only removes some), filled a
        // bucket at a time: no list of every identity is held.
        let mut bloom = Bloom::with_capacity(self.state.entries * 2);
        let mut total = 0u64;
        for b in 0..self.state.buckets {
            let mut part = Vec::new();
            self.read(&bucket_path(b), &mut part).await?;
            total += part.len() as u64;
            bloom.insert_many(&part, |e| e.hash);
        }
        self.bloom = bloom;
        self.state.entries = total;
        self.deltas = Some(Vec::new());
        for d in deltas {
            self.storage.delete(&format!("{INDEX_DIR}/{d}")).await?;
        }
        tracing::info!(entries = total, "identity index compacted");
        Ok(())
    }
}

/// Removes the whole index (before a full rebuild).
pub async fn remove_all(storage: &Storage) -> Result<(), Error> {
    for obj in storage.list(&format!("{INDEX_DIR}/")).await? {
        storage.delete(&obj.path).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64, date: i32, ts: i64) -> Entry {
        Entry {
            hash: IdentityHash::of("D", &format!("I{i}"), 0),
            date,
            version: Version {
                timestamp_ms: ts,
                partition: 0,
                offset: ts,
                line: 0,
            },
        }
    }

    #[tokio::test]
    async fn deltas_compact_and_lookups_see_every_day_and_latest_version() {
        let storage = Storage::memory();
        let mut idx = IdentityIndex::empty(storage.clone());
        idx.append((0..100).map(|i| entry(i, 1, 1)).collect())
            .await
            .unwrap();
        idx.finish().await.unwrap();
        assert!(
            idx.state().deltas.is_empty(),
            "a fresh index is written as base"
        );
        // Identity 7 is corrected on day 2, then again on day 1; identity 8 redelivered.
        for run in 0..(MAX_DELTAS as i64 + 3) {
            let mut idx2 = IdentityIndex::open(storage.clone(), idx.state().clone())
                .await
                .unwrap();
            let mut new = vec![entry(1000 + run as u64, 3, 10 + run)];
            if run == 2 {
                new.push(entry(7, 2, 50));
            }
            if run == 5 {
                new.push(entry(7, 1, 60));
                new.push(entry(8, 1, 70));
            }
            idx2.append(new).await.unwrap();
            idx2.finish().await.unwrap();
            idx = idx2;
        }
        assert!(
            idx.state().deltas.len() < MAX_DELTAS,
            "compacted: {:?}",
            idx.state().deltas
        );
        let hashes: BTreeSet<IdentityHash> = [
            entry(7, 0, 0).hash,
            entry(8, 0, 0).hash,
            entry(1003, 0, 0).hash,
            entry(5000, 0, 0).hash,
        ]
        .into_iter()
        .collect();
        let mut idx = IdentityIndex::open(storage, idx.state().clone())
            .await
            .unwrap();
        let found = idx.lookup(&hashes).await.unwrap();
        let days = |i: u64| -> Vec<(i32, i64)> {
            found[&entry(i, 0, 0).hash]
                .iter()
                .map(|(d, v)| (*d, v.timestamp_ms))
                .collect()
        };
        assert_eq!(days(7), [(1, 60), (2, 50)]);
        assert_eq!(days(8), [(1, 70)]);
        assert_eq!(days(1003), [(3, 13)]);
        assert!(!found.contains_key(&entry(5000, 0, 0).hash));
        for i in [0, 99, 1000, 1018] {
            assert!(idx.may_contain(&entry(i, 0, 0).hash), "{i}");
        }
    }
}
