//! Absorbing newly landed raw files into the identity index: every line's identity,
//! day and version is recorded, and every (identity, day) that a newer version on
//! another day now beats is noted in the superseded list, so the re-roll of that day
//! drops the line.
//!
//! Memory is bounded. A first roll-up of a national history absorbs every line at once
//! (130M lines at 1M outlets × 91 days); the lines' identities (an [`Entry`], 48 bytes)
//! are held in memory up to `aggregate.absorb_memory_mb`, and past it every entry is
//! spilled to one temporary file per index bucket and absorbed a group of buckets at a
//! time. An identity lies in one bucket, so each group is absorbed exactly as the
//! whole would be, and the groups write disjoint base files of the index.
//!
//! The identity text (needed only for lines that moved day, which are rare) is not
//! held: after the groups, the new files are scanned once more for the identities
//! that moved.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Write};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use datafusion::execution::context::SessionContext;
use futures::TryStreamExt;
use rayon::prelude::*;
use spectra_core::schema::raw_invoice_schema;
use spectra_core::Storage;

use crate::hash::IdentityHash;
use crate::index::{Entry, IdentityIndex, Version, VersionedRows, BUCKETS};
use crate::session::register_files;
use crate::superseded::{Identity, Superseded};
use crate::Error;

/// What absorbing new raw files found.
#[derive(Debug, Clone, Default)]
pub struct Absorbed {
    /// Raw rows read from the new files.
    pub rows: u64,
    /// Days to re-roll: the new rows' days and the days corrections took lines from.
    pub days: BTreeSet<i32>,
    /// (identity, day) pairs newly superseded by a version on another day.
    pub moved: u64,
    /// Days that now hold more than one version of some identity: their re-roll must
    /// deduplicate. Every other day holds each identity once and is summed directly.
    pub duplicated: BTreeSet<i32>,
    /// Groups of index buckets absorbed one after the other (1 when nothing spilled).
    pub groups: u32,
}

/// Rows hashed together on the thread pool.
const HASH_ROWS: usize = 1 << 20;

/// Bytes of an entry in a spill file: hash (16), date (4), version (24).
const SPILLED: usize = 44;

/// Reads the identities and versions of `files`, records them in `index`, and notes in
/// `superseded` every (identity, day) a newer version on another day now beats.
/// Holds at most `memory_bytes` of entries before spilling them by bucket.
pub async fn absorb(
    ctx: &SessionContext,
    storage: &Storage,
    files: &[String],
    index: &mut IdentityIndex,
    superseded: &mut Superseded,
    memory_bytes: u64,
) -> Result<Absorbed, Error> {
    let limit = (memory_bytes / std::mem::size_of::<Entry>() as u64).max(1024) as usize;
    register_files(ctx, storage, "new_raw", files, raw_invoice_schema())?;
    let mut stream = ctx
        .sql(
            "SELECT distributor_id, invoice_id, line_no, invoice_date, kafka_timestamp_ms, \
             source_partition, source_offset, source_line FROM new_raw",
        )
        .await?
        .execute_stream()
        .await?;
    let started = std::time::Instant::now();
    let mut out = Absorbed::default();
    let mut held: Vec<Entry> = Vec::new();
    let mut spill: Option<Spill> = None;
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    loop {
        let next = stream.try_next().await?;
        let done = next.is_none();
        if let Some(b) = next {
            pending_rows += b.num_rows();
            pending.push(b);
        }
        if pending_rows >= HASH_ROWS || (done && pending_rows > 0) {
            // Hashing millions of identities (a full rebuild) uses every core.
            held.par_extend(pending.par_iter().flat_map_iter(|b| {
                let v = VersionedRows::of(b);
                (0..b.num_rows()).map(move |r| Entry {
                    hash: v.hash(r),
                    date: v.date(r),
                    version: v.version(r),
                })
            }));
            out.rows += pending_rows as u64;
            pending.clear();
            pending_rows = 0;
        }
        if held.len() >= limit || (done && spill.is_some()) {
            spill.get_or_insert(Spill::new()?).write(&held)?;
            held.clear();
        }
        if done {
            break;
        }
    }

    let read_ms = started.elapsed().as_millis() as u64;
    let mut moved: HashMap<IdentityHash, Vec<(i32, Version)>> = HashMap::new();
    match spill {
        None => {
            index.expect(held.len() as u64);
            out.groups = 1;
            absorb_group(held, index, &mut out, &mut moved).await?;
        }
        Some(mut spill) => {
            drop(held);
            index.expect(out.rows);
            spill.finish()?;
            // Consecutive buckets while they fit (a bucket larger than the limit alone).
            let mut bucket = 0;
            while bucket < BUCKETS {
                let mut group = spill.read(bucket)?;
                bucket += 1;
                while bucket < BUCKETS && group.len() + spill.rows[bucket as usize] <= limit {
                    group.extend(spill.read(bucket)?);
                    bucket += 1;
                }
                out.groups += 1;
                absorb_group(group, index, &mut out, &mut moved).await?;
            }
            tracing::info!(
                rows = out.rows,
                groups = out.groups,
                "identities spilled to disk and absorbed a group of buckets at a time"
            );
        }
    }
    let indexed_ms = started.elapsed().as_millis() as u64 - read_ms;
    index.finish().await?;
    if !moved.is_empty() {
        record_moved(ctx, moved, superseded, &mut out).await?;
    }
    tracing::debug!(
        rows = out.rows,
        read_ms,
        indexed_ms,
        finished_ms = started.elapsed().as_millis() as u64 - read_ms - indexed_ms,
        "absorbed: identities read and hashed, sorted and indexed, filter and moved lines"
    );
    Ok(out)
}

/// Absorbs the entries of a group of whole buckets: notes duplicated days and, in
/// `moved`, identities whose versions now lie on several days (the winning day's
/// version beats the others); appends the latest entry per (identity, day).
async fn absorb_group(
    mut rows: Vec<Entry>,
    index: &mut IdentityIndex,
    out: &mut Absorbed,
    moved: &mut HashMap<IdentityHash, Vec<(i32, Version)>>,
) -> Result<(), Error> {
    // Grouped by index bucket, then the latest version per (identity, day) first: the
    // order the base files are written in, so a build's append sorts nothing again.
    let buckets = index.buckets();
    sort_by_bucket(&mut rows, buckets);
    for w in rows.windows(2) {
        if w[0].same_day(&w[1]) {
            out.duplicated.insert(w[0].date);
        }
    }
    rows.dedup_by(|later, first| later.same_day(first));

    // A first roll-up's index holds nothing yet: no identity to look up (and no
    // filter probe, a cache miss each, for every line).
    let maybe: BTreeSet<IdentityHash> = if index.state().entries == 0 {
        BTreeSet::new()
    } else {
        rows.par_iter()
            .map(|r| r.hash)
            .filter(|h| index.may_contain(h))
            .collect::<Vec<_>>()
            .into_iter()
            .collect()
    };
    let mut existing = index.lookup(&maybe).await?;
    let mut days_seen: foldhash::HashSet<i32> = foldhash::HashSet::default();
    for group in rows.chunk_by(|a, b| a.hash == b.hash) {
        let Some(mut days) = existing.remove(&group[0].hash) else {
            // Never seen before (almost every line): the group's entries are its days,
            // one each, none delivered before.
            days_seen.extend(group.iter().map(|r| r.date));
            if group.len() > 1 {
                moved.insert(
                    group[0].hash,
                    lost_days(group.iter().map(|r| (r.date, r.version))),
                );
            }
            continue;
        };
        for r in group {
            days_seen.insert(r.date);
            if days.contains_key(&r.date) {
                // Delivered on this day before: the day now holds two versions.
                out.duplicated.insert(r.date);
            }
            let v = days.entry(r.date).or_insert(r.version);
            *v = (*v).max(r.version);
        }
        if days.len() > 1 {
            moved.insert(group[0].hash, lost_days(days.iter().map(|(&d, &v)| (d, v))));
        }
    }
    out.days.extend(days_seen);
    // The entries reuse the rows' allocation: a first roll-up holds every line's
    // identity here once, not twice.
    index.append(rows).await
}

/// Of an identity's days (one latest version each), those the latest version of all
/// beats, each with that version.
fn lost_days(days: impl Iterator<Item = (i32, Version)> + Clone) -> Vec<(i32, Version)> {
    let Some((won_on, winner)) = days.clone().max_by_key(|(_, v)| *v) else {
        return Vec::new();
    };
    days.filter(|(d, _)| *d != won_on)
        .map(|(d, _)| (d, winner))
        .collect()
}

/// Sorts `rows` by index bucket, then by (identity, day, latest version first): the
/// buckets by one in-place counting pass (American flag), then each bucket on the
/// thread pool. A comparison sort with the bucket in its key would divide twice per
/// comparison, and sort 10⁸ entries as one.
fn sort_by_bucket(rows: &mut [Entry], buckets: u32) {
    let n = buckets as usize;
    let mut ends = vec![0usize; n];
    for r in rows.iter() {
        ends[r.hash.bucket(buckets) as usize] += 1;
    }
    let mut heads = vec![0usize; n];
    let mut at = 0;
    for b in 0..n {
        heads[b] = at;
        at += ends[b];
        ends[b] = at;
    }
    let starts = heads.clone();
    for b in 0..n {
        while heads[b] < ends[b] {
            let t = rows[heads[b]].hash.bucket(buckets) as usize;
            if t == b {
                heads[b] += 1;
            } else {
                rows.swap(heads[b], heads[t]);
                heads[t] += 1;
            }
        }
    }
    let mut parts = Vec::with_capacity(n);
    let mut rest = rows;
    for b in 0..n {
        let (part, tail) = rest.split_at_mut(ends[b] - starts[b]);
        parts.push(part);
        rest = tail;
    }
    parts
        .into_par_iter()
        .for_each(|p| p.sort_unstable_by(Entry::latest_first));
}

/// Records in `superseded` the days each moved identity lost, reading the identities'
/// text from the new files (the entries hold only their hashes).
async fn record_moved(
    ctx: &SessionContext,
    mut moved: HashMap<IdentityHash, Vec<(i32, Version)>>,
    superseded: &mut Superseded,
    out: &mut Absorbed,
) -> Result<(), Error> {
    let mut stream = ctx
        .sql("SELECT distributor_id, invoice_id, line_no FROM new_raw")
        .await?
        .execute_stream()
        .await?;
    while let Some(b) = stream.try_next().await? {
        let (distributor, invoice) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        let line_no = b.column(2).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            let h = IdentityHash::of(distributor.value(r), invoice.value(r), line_no.value(r));
            let Some(lost) = moved.remove(&h) else {
                continue;
            };
            let id = Identity {
                distributor_id: distributor.value(r).to_owned(),
                invoice_id: invoice.value(r).to_owned(),
                line_no: line_no.value(r),
            };
            for (day, winner) in lost {
                if superseded.record(id.clone(), day, winner) {
                    out.days.insert(day);
                    out.moved += 1;
                }
            }
        }
        if moved.is_empty() {
            break;
        }
    }
    Ok(())
}

/// Entries spilled to one temporary file per index bucket.
struct Spill {
    dir: tempfile::TempDir,
    files: Vec<BufWriter<File>>,
    rows: Vec<usize>,
}

impl Spill {
    fn new() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("spectra-absorb-")
            .tempdir()?;
        let files = (0..BUCKETS)
            .map(|b| {
                Ok(BufWriter::with_capacity(
                    64 << 10,
                    File::create(dir.path().join(format!("bucket-{b:03}")))?,
                ))
            })
            .collect::<Result<_, std::io::Error>>()?;
        Ok(Self {
            dir,
            files,
            rows: vec![0; BUCKETS as usize],
        })
    }

    fn write(&mut self, entries: &[Entry]) -> Result<(), Error> {
        for e in entries {
            let b = e.hash.bucket(BUCKETS) as usize;
            let mut buf = [0u8; SPILLED];
            buf[0..8].copy_from_slice(&e.hash.hi.to_le_bytes());
            buf[8..16].copy_from_slice(&e.hash.lo.to_le_bytes());
            buf[16..20].copy_from_slice(&e.date.to_le_bytes());
            buf[20..28].copy_from_slice(&e.version.timestamp_ms.to_le_bytes());
            buf[28..32].copy_from_slice(&e.version.partition.to_le_bytes());
            buf[32..40].copy_from_slice(&e.version.offset.to_le_bytes());
            buf[40..44].copy_from_slice(&e.version.line.to_le_bytes());
            self.files[b].write_all(&buf)?;
            self.rows[b] += 1;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        for f in &mut self.files {
            f.flush()?;
        }
        Ok(())
    }

    /// The entries of bucket `b` (its file is removed).
    fn read(&mut self, b: u32) -> Result<Vec<Entry>, Error> {
        let path = self.dir.path().join(format!("bucket-{b:03}"));
        let mut bytes = Vec::with_capacity(self.rows[b as usize] * SPILLED);
        File::open(&path)?.read_to_end(&mut bytes)?;
        std::fs::remove_file(&path)?;
        let i64_at = |c: &[u8], at: usize| i64::from_le_bytes(c[at..at + 8].try_into().expect("8"));
        let i32_at = |c: &[u8], at: usize| i32::from_le_bytes(c[at..at + 4].try_into().expect("4"));
        Ok(bytes
            .chunks_exact(SPILLED)
            .map(|c| Entry {
                hash: IdentityHash {
                    hi: i64_at(c, 0) as u64,
                    lo: i64_at(c, 8) as u64,
                },
                date: i32_at(c, 16),
                version: Version {
                    timestamp_ms: i64_at(c, 20),
                    partition: i32_at(c, 28),
                    offset: i64_at(c, 32),
                    line: i32_at(c, 40),
                },
            })
            .collect())
    }
}
