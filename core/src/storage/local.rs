//! `file://` writes: durable (fsync of file and directories) and compare-and-swap;
//! positioned reads of byte ranges (hand-written: see [`super::Storage`]).

use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use object_store::UpdateVersion;

use super::{Condition, PutOutcome, Version};

/// The version of a state object: its length and a hash of its bytes. Spectra's
/// conditionally written objects never return to an earlier content (their epoch or
/// offset only grows), so equal content means the same version.
pub fn version(data: &[u8]) -> Version {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    Version(UpdateVersion {
        e_tag: Some(format!("{}-{:016x}", data.len(), h.finish())),
        version: None,
    })
}

pub fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `data` at `path` so that, once this returns, a power loss cannot lose it:
/// a hidden temporary file beside it is written and synced, renamed into place,
/// and the directory (and its parent, which may have just gained it) is synced.
pub fn write_durably(path: &Path, data: &[u8]) -> io::Result<()> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("object path has no directory"))?;
    // The folders this write creates: each must be reachable after a crash too.
    let mut created = Vec::new();
    let mut d = dir;
    while !d.exists() {
        created.push(d.to_owned());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)?;
        for c in &created {
            if let Some(parent) = c.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Compare-and-swap of one object: under an exclusive lock every Spectra process
/// takes for these writes, the current content's version is compared with `cond`
/// and, when it holds, `data` is written durably.
pub fn compare_and_swap(
    lock: &Path,
    path: &Path,
    data: &[u8],
    cond: &Condition,
) -> io::Result<PutOutcome> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock)?;
    lock.lock()?;
    let current = read(path)?;
    let holds = match (cond, &current) {
        (Condition::Absent, None) => true,
        (Condition::Matches(v), Some(c)) => version(c) == *v,
        _ => false,
    };
    let out = if holds {
        write_durably(path, data)?;
        PutOutcome::Written(version(data))
    } else {
        PutOutcome::Conflict
    };
    drop(lock); // unlocks
    Ok(out)
}

/// The bytes of `ranges` of the file at `path` (in their order), ranges less than
/// `gap` apart with one positioned read ([`super::Storage::get_ranges`]).
pub fn read_ranges(path: &Path, ranges: &[Range<u64>], gap: u64) -> io::Result<Vec<Bytes>> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path)?;
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| ranges[i].start);
    let mut out = vec![Bytes::new(); ranges.len()];
    let mut i = 0;
    while i < order.len() {
        // One read from the first range's start to the end of the last one near it.
        let start = ranges[order[i]].start;
        let (mut end, mut j) = (ranges[order[i]].end, i + 1);
        while j < order.len() && ranges[order[j]].start <= end + gap {
            end = end.max(ranges[order[j]].end);
            j += 1;
        }
        let mut buf = vec![0; (end - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        let buf = Bytes::from(buf);
        for &k in &order[i..j] {
            let r = &ranges[k];
            out[k] = buf.slice((r.start - start) as usize..(r.end - start) as usize);
        }
        i = j;
    }
    Ok(out)
}
