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
//!   positives) are looked up, in the base and merged files of their hash bucket
//!   (`identities/bucket=NNN.parquet`) and in the recent delta files;
//! - each run appends its new entries as one delta file; after [`MAX_DELTAS`] deltas
//!   (or when the filter is full) the deltas are merged into a second, smaller set of
//!   bucket files (the merged level, `identities/merged/bucket=NNN.parquet`), and the
//!   merged level into the base only once it holds more than 1/[`MERGED_SHARE`] of the
//!   entries: a merge of a few weeks of deltas then rewrites those weeks, not the
//!   whole history, and the base is rewritten once per many merges;
//! - the stored filter covers the base and merged files: a run reads the few deltas anyway
//!   (for lookups) and adds their identities to its copy, so a daily run does not
//!   rewrite the whole filter (tens of megabytes) to add a day's identities. It is
//!   written when the base is built and when deltas are merged — before the
//!   merged deltas are deleted, so no state, committed or not, can see an identity the
//!   stored filter and the listed deltas both miss;
//! - index files are written in row groups of [`ROW_GROUP_ROWS`] with the hash range of
//!   each in the footer, so a lookup decodes only the row groups that can hold one of
//!   its identities, not whole buckets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::task::Poll;

use bytes::Bytes;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use spectra_core::Storage;

use crate::hash::{Bloom, IdentityHash};
use crate::state::IndexState;
use crate::Error;
use file::{decode, decode_holding, encode};

mod file;

/// Folder of the index, relative to the storage root.
pub const INDEX_DIR: &str = "state/aggregate/identities";
/// Number of hash buckets of the base files.
pub const BUCKETS: u32 = 256;
/// Delta files kept before they are merged into the base.
pub const MAX_DELTAS: usize = 16;
/// The merged level is merged into the base once it holds more than this share
/// (1/n) of the entries.
pub const MERGED_SHARE: u64 = 8;
/// Entries per row group of an index file: a lookup decodes whole row groups.
pub const ROW_GROUP_ROWS: usize = 4096;

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

impl Entry {
    /// The order of index files: by identity, then day, the latest version first.
    pub fn latest_first(&self, other: &Self) -> std::cmp::Ordering {
        (self.hash, self.date, other.version).cmp(&(other.hash, other.date, self.version))
    }

    /// The same identity on the same day (one of the two is kept).
    pub fn same_day(&self, other: &Self) -> bool {
        self.hash == other.hash && self.date == other.date
    }
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
    /// Entries of the deltas (read when the index is opened).
    deltas: Vec<Entry>,
    /// The lease epoch of the pass writing (named in its delta files).
    epoch: u64,
    /// Built from nothing in this pass: entries go straight into the base buckets.
    building: bool,
    /// A base built in this pass whose filter [`IdentityIndex::finish`] writes.
    bloom_changed: bool,
}

/// The two sets of bucket files: the base, and the merged deltas not yet in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Base,
    Merged,
}

fn bucket_path(level: Level, b: u32) -> String {
    match level {
        Level::Base => format!("{INDEX_DIR}/bucket={b:03}.parquet"),
        Level::Merged => format!("{INDEX_DIR}/merged/bucket={b:03}.parquet"),
    }
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
            deltas: Vec::new(),
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
        let mut index = Self {
            storage,
            state,
            bloom: Bloom::with_capacity(0),
            deltas: Vec::new(),
            epoch: 0,
            building: false,
            bloom_changed: false,
        };
        // The deltas first, then the filter: a merge stores its filter before it
        // deletes the deltas it merged, so a delta already gone here (merged by a pass
        // that lost its lease and does not know it yet) is in the filter read next.
        let deltas = index.read_deltas().await?;
        let path = bloom_path();
        let data = index
            .storage
            .get(&path)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("{path} is missing; run with --full")))?;
        index.bloom = Bloom::from_bytes(&data).ok_or_else(|| {
            Error::Corrupt(format!("{path} is not a Bloom filter; run with --full"))
        })?;
        drop(data);
        // The stored filter covers the base and merged files; the deltas' identities
        // are added to this copy.
        index.bloom.insert_many(&deltas, |e| e.hash);
        index.deltas = deltas;
        Ok(index)
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

    /// Reads the listed deltas (a delta a merge deleted reads as empty: its entries
    /// are in the merged or base files and in the filter stored before the deletion).
    async fn read_deltas(&self) -> Result<Vec<Entry>, Error> {
        let mut all = Vec::new();
        for d in &self.state.deltas {
            self.read(&format!("{INDEX_DIR}/{d}"), &mut all).await?;
        }
        Ok(all)
    }

    /// The days (and latest versions) the index holds for each of `hashes`.
    pub async fn lookup(
        &self,
        hashes: &BTreeSet<IdentityHash>,
    ) -> Result<HashMap<IdentityHash, Days>, Error> {
        let mut found = HashMap::new();
        if hashes.is_empty() {
            return Ok(found);
        }
        let mut wanted: BTreeMap<u32, Vec<IdentityHash>> = BTreeMap::new();
        for h in hashes {
            wanted
                .entry(h.bucket(self.state.buckets))
                .or_default()
                .push(*h);
        }
        // The buckets fetched side by side, the merged files before the base ones: a
        // fold stores a base file before it deletes the merged one, so an entry moved
        // between the two reads is in the base file read second. Then only the row
        // groups whose hash range holds a wanted identity are decoded, on the pool.
        let storage = &self.storage;
        let fetch = |level: Level| {
            futures::future::try_join_all(wanted.iter().map(move |(&b, hs)| async move {
                let path = bucket_path(level, b);
                Ok::<_, Error>(storage.get(&path).await?.map(|d| (path, d, hs)))
            }))
        };
        let mut files = fetch(Level::Merged).await?;
        files.extend(fetch(Level::Base).await?);
        let held = files
            .into_par_iter()
            .flatten()
            .map(|(path, data, hs)| {
                let mut out = Vec::new();
                decode_holding(&path, data, hs, &mut out)?;
                Ok(out)
            })
            .collect::<Result<Vec<Vec<Entry>>, Error>>()?;
        for e in held.iter().flatten().chain(&self.deltas) {
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
        self.state.entries += entries.len() as u64;
        if self.building {
            self.bloom_changed = true;
            let dropped = self.write_level(Level::Base, entries).await?;
            self.state.entries = self.state.entries.saturating_sub(dropped);
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
            self.deltas.extend(entries);
            if self.state.deltas.len() > MAX_DELTAS || self.state.entries > self.bloom.capacity() {
                self.compact().await?;
            }
        }
        Ok(())
    }

    /// Writes the filter of a base built in this pass (once per pass: at national scale
    /// it is hundreds of megabytes). A pass that only added a delta writes nothing: the
    /// next reads the delta into its filter.
    pub async fn finish(&mut self) -> Result<(), Error> {
        if self.bloom_changed {
            self.write_bloom().await?;
            self.bloom_changed = false;
        }
        Ok(())
    }

    async fn write_bloom(&self) -> Result<(), Error> {
        self.storage
            .put(&bloom_path(), Bytes::from(self.bloom.to_bytes()))
            .await?;
        Ok(())
    }

    /// Merges `entries` into the bucket files of `level` they fall in; returns how many
    /// entries the merge found already held (the same identity and day: one is kept).
    async fn write_level(&mut self, level: Level, mut entries: Vec<Entry>) -> Result<u64, Error> {
        // Grouped by bucket in place, each bucket in the order a fresh build hands them
        // (identity, day, latest version first): a first roll-up's entries are every
        // line's identity, not to be copied again. A build's absorb hands them in this
        // order already.
        let buckets = self.state.buckets;
        let order = |a: &Entry, b: &Entry| {
            a.hash
                .bucket(buckets)
                .cmp(&b.hash.bucket(buckets))
                .then_with(|| a.latest_first(b))
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
        let mut dropped = 0;
        for batch in groups.chunks(16) {
            let storage = &self.storage;
            let fetched = futures::future::try_join_all(batch.iter().map(|new| async move {
                let path = bucket_path(level, new[0].hash.bucket(buckets));
                let data = storage.get(&path).await?;
                Ok::<_, Error>((path, data, *new))
            }))
            .await?;
            let mut puts =
                std::pin::pin!(crate::put_all(&self.storage, std::mem::take(&mut stored)));
            // Started (a local write runs on the blocking pool once started), then
            // awaited after this batch is encoded.
            let started = futures::poll!(&mut puts);
            let storing = started.is_pending();
            if let Poll::Ready(done) = started {
                done?;
            }
            let written = fetched
                .into_par_iter()
                .map(|(path, data, new)| {
                    let mut all = Vec::new();
                    if let Some(data) = data {
                        decode(&path, data, &mut all)?;
                    }
                    // A fresh build hands entries already sorted and unique per
                    // (identity, day); merging with a base file or several deltas
                    // needs the sort.
                    let merging = !all.is_empty()
                        || new
                            .windows(2)
                            .any(|w| w[0].same_day(&w[1]) || w[0].latest_first(&w[1]).is_gt());
                    if !merging {
                        return Ok((path, encode(new)?, 0));
                    }
                    let before = all.len() + new.len();
                    all.extend_from_slice(new);
                    // Latest version per (identity, day), in hash order. Stable: the
                    // base file and the new entries are two sorted runs, merged in
                    // one linear pass.
                    all.sort_by(Entry::latest_first);
                    all.dedup_by(|later, first| later.same_day(first));
                    Ok((path, encode(&all)?, (before - all.len()) as u64))
                })
                .collect::<Result<Vec<_>, Error>>()?;
            stored = written
                .into_iter()
                .map(|(path, data, gone)| {
                    dropped += gone;
                    (path, data)
                })
                .collect();
            if storing {
                puts.await?;
            }
        }
        crate::put_all(&self.storage, stored).await?;
        Ok(dropped)
    }

    /// Merges every delta into the merged level (and that into the base once it holds
    /// more than 1/[`MERGED_SHARE`] of the entries), then stores the filter: the one in
    /// memory, which holds every identity, or one rebuilt from the bucket files, sized
    /// for twice the identities held, when the index outgrew it.
    async fn compact(&mut self) -> Result<(), Error> {
        let deltas = std::mem::take(&mut self.state.deltas);
        let entries = std::mem::take(&mut self.deltas);
        let outgrown = self.state.entries > self.bloom.capacity();
        let added = entries.len() as u64;
        let dropped = self.write_level(Level::Merged, entries).await?;
        self.state.entries = self.state.entries.saturating_sub(dropped);
        self.state.merged_entries += added.saturating_sub(dropped);
        let into_base = self.state.merged_entries * MERGED_SHARE > self.state.entries;
        if into_base {
            self.merge_into_base().await?;
        }
        if outgrown {
            // Filled a bucket at a time: no list of every identity is held.
            let mut bloom = Bloom::with_capacity(self.state.entries * 2);
            let mut total = 0u64;
            for b in 0..self.state.buckets {
                let mut part = Vec::new();
                self.read(&bucket_path(Level::Base, b), &mut part).await?;
                self.read(&bucket_path(Level::Merged, b), &mut part).await?;
                total += part.len() as u64;
                bloom.insert_many(&part, |e| e.hash);
            }
            self.bloom = bloom;
            self.state.entries = total;
        }
        // Stored before the merged deltas go: a crash between the two leaves a state
        // listing deltas that are gone, whose identities this filter then holds.
        self.write_bloom().await?;
        for d in deltas {
            self.storage.delete(&format!("{INDEX_DIR}/{d}")).await?;
        }
        tracing::info!(
            entries = self.state.entries,
            merged_entries = self.state.merged_entries,
            into_base,
            outgrown,
            "identity index compacted"
        );
        Ok(())
    }

    /// Merges the merged level into the base, a few buckets at a time, deleting each
    /// merged file once the base holds its entries (a crash between the two leaves an
    /// entry in both: lookups keep the latest version of each, and a later merge one).
    async fn merge_into_base(&mut self) -> Result<(), Error> {
        let buckets: Vec<u32> = (0..self.state.buckets).collect();
        for group in buckets.chunks(16) {
            let mut entries = Vec::new();
            for &b in group {
                self.read(&bucket_path(Level::Merged, b), &mut entries)
                    .await?;
            }
            let dropped = self.write_level(Level::Base, entries).await?;
            self.state.entries = self.state.entries.saturating_sub(dropped);
            for &b in group {
                self.storage.delete(&bucket_path(Level::Merged, b)).await?;
            }
        }
        self.state.merged_entries = 0;
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
mod tests;
