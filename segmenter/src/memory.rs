//! What a run will need against the memory this process may use, checked before the
//! run's arrays are made.
//!
//! A run holds its outlets × columns arrays at once (see [`BYTES_PER_CELL`]); at a
//! million outlets a segmentation with `max_features = 1024` needs 37 GB for them
//! alone. On top of them come each outlet's SKU spend, read after the arrays, and the
//! run's outputs: at `level = "category"` those are most of the run (4.1 of the 4.5 GB
//! a run added at a million outlets with 20,000 SKUs). Made on a machine or in a
//! container without that memory, the run is paged in as it is filled and the kernel
//! kills the process, with every other segmentation it was running, and again at each
//! restart. The check turns that into the segmentation's own error, naming the setting
//! to lower.
//!
//! The memory this process may use is the least of the system's available memory
//! (`MemAvailable` in `/proc/meminfo`: free memory and the page cache it can drop)
//! and, for each cgroup from the process's own up to the root that has a memory limit,
//! that limit less what the cgroup uses other than page cache (v2: `memory.max`,
//! `memory.current`, `file` in `memory.stat`; v1: `memory.limit_in_bytes`,
//! `memory.usage_in_bytes`, `total_cache`). Read by hand: a few small files the kernel
//! writes, where a system-information crate would bring a prober of every process,
//! disk and network interface for this one number. What the process holds already
//! (the outlets' records and KPIs, read before the check) is used memory there, so
//! the check counts only what the run adds.
//!
//! What the run adds beside its arrays is counted at rates below what each measured
//! run added ([`BYTES_PER_SKU_PAIR`], [`BYTES_PER_OUTLET`]; `bench/scale/RESULTS.md`,
//! "What a run needs besides its arrays"), so a run like those measured is refused
//! only when even this low estimate exceeds the room. Rates fitted to one store's
//! runs put a larger store's run 28% above its peak, which would refuse runs that
//! fit. The estimate is not a bound: other feeds may add less per SKU row or outlet,
//! and a page of an array that nothing is written to takes no memory, so at `level =
//! "sku"` a store whose outlets each buy a handful of the columns' values could need
//! less than the arrays' share.

use std::path::{Path, PathBuf};

use crate::Error;

/// Bytes a run holds per outlet × column, all at once: the spend (`f64`), the change
/// detector's earlier and recent spend and lines (four `f32` arrays), the clustered
/// matrix (`f64`) and a cold k-means fit's `f32` copy of it. Measured as the slope of
/// the segment stage's peak memory between 257 and 1,025 columns at 200,000 outlets:
/// 36.1 bytes (`bench/scale/RESULTS.md`, "36 bytes a cell").
pub const BYTES_PER_CELL: u64 = 36;

/// Bytes a run adds at least per row of the window's SKU spend (one outlet × SKU
/// bought): the outlet's entry alone is 16 bytes, kept to the end of the run, and the
/// file is read whole while the entries are made. Six runs (200,000 and 1,000,000
/// outlets, 8 to 257 columns, windows of 28 to 91 days) each added more than their
/// arrays and this rate and [`BYTES_PER_OUTLET`] count: those came to 51% to 90% of
/// what each added.
pub const BYTES_PER_SKU_PAIR: u64 = 24;

/// Bytes a run adds at least per outlet besides its cells and SKU rows: its
/// assignment row alone holds four strings and five numbers (see
/// [`BYTES_PER_SKU_PAIR`] for how it was measured).
pub const BYTES_PER_OUTLET: u64 = 500;

/// What a run will hold by a low estimate, besides what its process holds already:
/// sized before its arrays are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// Outlets in its features.
    pub outlets: usize,
    /// Columns of its arrays (`max_features` and `(other)`, or fewer values).
    pub columns: usize,
    /// Rows of its SKU spend (outlet × SKU pairs bought in the window).
    pub sku_pairs: u64,
}

impl Need {
    /// Bytes of the outlets × columns arrays.
    pub fn arrays(&self) -> u64 {
        (self.outlets as u64)
            .saturating_mul(self.columns as u64)
            .saturating_mul(BYTES_PER_CELL)
    }

    /// Bytes of everything else, by a low estimate: the SKU spend and the per-outlet
    /// outputs.
    pub fn rest(&self) -> u64 {
        self.sku_pairs
            .saturating_mul(BYTES_PER_SKU_PAIR)
            .saturating_add((self.outlets as u64).saturating_mul(BYTES_PER_OUTLET))
    }

    /// Bytes in all.
    pub fn bytes(&self) -> u64 {
        self.arrays().saturating_add(self.rest())
    }
}

/// Memory this process may use now, and what limits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    /// Bytes.
    pub bytes: u64,
    /// `MemAvailable`, or the cgroup whose limit leaves the least.
    pub limited_by: String,
}

/// The memory this process may use now (see the module's documentation); `None` where
/// neither `/proc/meminfo` nor a cgroup limit can be read (not Linux).
pub fn available() -> Option<Available> {
    let system = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_available(&t))
        .map(|bytes| Available {
            bytes,
            limited_by: "MemAvailable".to_owned(),
        });
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let limits = cgroup_dirs(&own, Path::new("/sys/fs/cgroup"))
        .into_iter()
        .filter_map(|dir| headroom(&dir).map(|bytes| (bytes, dir)));
    let least_cgroup = limits
        .min_by_key(|(bytes, _)| *bytes)
        .map(|(bytes, dir)| Available {
            bytes,
            limited_by: format!("the memory limit of cgroup {}", dir.display()),
        });
    [system, least_cgroup]
        .into_iter()
        .flatten()
        .min_by_key(|a| a.bytes)
}

/// Fails when what the run will hold by a low estimate (`need`) is more than
/// `available` (when known).
pub fn check(segmentation: &str, need: &Need, available: Option<&Available>) -> Result<(), Error> {
    let Some(available) = available else {
        return Ok(());
    };
    if need.bytes() <= available.bytes {
        return Ok(());
    }
    // The most columns that fit beside the rest, one of them `(other)`; none when not
    // even three do (`max_features` is at least 2).
    let per_column = (need.outlets as u64).saturating_mul(BYTES_PER_CELL).max(1);
    let fit = available.bytes.saturating_sub(need.rest()) / per_column;
    Err(Error::TooLittleMemory {
        segmentation: segmentation.to_owned(),
        need: *need,
        available: available.bytes,
        limited_by: available.limited_by.clone(),
        max_features: (fit >= 3).then(|| (fit - 1) as usize),
    })
}

/// What to change when a run does not fit: `max_features` when fewer columns could
/// fit (`max_features`), else what the rest grows with.
pub fn advice(max_features: Option<usize>) -> String {
    match max_features {
        Some(m) => {
            format!("lower max_features to at most {m}, or give the segmenter more memory")
        }
        None => "it does not fit with the fewest columns either: shorten window_days (fewer SKU rows), narrow the segmentation's filter (fewer outlets), or give the segmenter more memory".to_owned(),
    }
}

/// Bytes as gigabytes, two decimals.
pub fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(value * 1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// The memory cgroup directories of this process, its own first, then each parent up
/// to the root, from its `/proc/self/cgroup` text: the unified (v2) hierarchy's
/// `0::PATH` line, or v1's `memory` controller line (mounted at `root/memory`).
fn cgroup_dirs(own: &str, root: &Path) -> Vec<PathBuf> {
    let mut found = None;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            found = found.or(Some(root.to_path_buf().join(path.trim_start_matches('/'))));
        } else if controllers.split(',').any(|c| c == "memory") {
            found = Some(root.join("memory").join(path.trim_start_matches('/')));
        }
    }
    let Some(mut dir) = found else {
        return Vec::new();
    };
    let mut dirs = vec![dir.clone()];
    while dir.pop() && dir.starts_with(root) {
        dirs.push(dir.clone());
    }
    dirs
}

/// A cgroup directory's limit less its usage, when it has a limit (v2 or v1 files).
/// The usage a cgroup reports includes the page cache of the files its processes read
/// (the segmenter's own Parquet among them), which the kernel drops when memory is
/// asked for: that part counts as available, as `MemAvailable` counts it (`file` in
/// v2's `memory.stat`, `total_cache` in v1's). Without it a long-running segmenter
/// whose cgroup had filled with cache would see no room at all.
fn headroom(dir: &Path) -> Option<u64> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let (limit, usage, cache) = match read("memory.max") {
        Some(max) => (max, read("memory.current")?, "file"),
        None => (
            read("memory.limit_in_bytes")?,
            read("memory.usage_in_bytes")?,
            "total_cache",
        ),
    };
    let limit = limit_bytes(&limit)?;
    let usage: u64 = usage.trim().parse().ok()?;
    let cache = read("memory.stat")
        .and_then(|stat| stat_value(&stat, cache))
        .unwrap_or(0);
    Some(limit.saturating_sub(usage.saturating_sub(cache)))
}

/// The value of `key` in a cgroup's `memory.stat` text (`key value` lines).
fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A cgroup memory limit in bytes; `None` for none: v2 writes `max`, v1 a number
/// near `i64::MAX` (no machine has 2⁶² bytes).
fn limit_bytes(text: &str) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    (v < 1 << 62).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_reads_kilobytes() {
        let meminfo =
            "MemTotal:       24567892 kB\nMemFree:         1234 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(mem_available(meminfo), Some(20_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn cgroup_paths_of_both_hierarchies_and_their_parents() {
        let root = Path::new("/sys/fs/cgroup");
        let v2 = cgroup_dirs("0::/kubepods/pod1/ctr\n", root);
        assert_eq!(
            v2,
            [
                "/sys/fs/cgroup/kubepods/pod1/ctr",
                "/sys/fs/cgroup/kubepods/pod1",
                "/sys/fs/cgroup/kubepods",
                "/sys/fs/cgroup"
            ]
            .map(PathBuf::from)
        );
        // Inside a container the process's cgroup is the root of what it sees.
        assert_eq!(
            cgroup_dirs("0::/\n", root),
            [PathBuf::from("/sys/fs/cgroup")]
        );
        let v1 = "12:cpu,cpuacct:/a\n5:memory:/docker/abc\n0::/\n";
        assert_eq!(
            cgroup_dirs(v1, root)[0],
            PathBuf::from("/sys/fs/cgroup/memory/docker/abc")
        );
        assert!(cgroup_dirs("", root).is_empty());
    }

    #[test]
    fn a_limit_less_its_usage_and_no_limit() {
        let dir = std::env::temp_dir().join(format!("spectra-memory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.max"), "8589934592\n").unwrap();
        std::fs::write(dir.join("memory.current"), "1073741824\n").unwrap();
        assert_eq!(headroom(&dir), Some(7 << 30));
        // A cgroup filled with page cache: what the kernel can drop is room.
        std::fs::write(dir.join("memory.current"), "8589934592\n").unwrap();
        std::fs::write(
            dir.join("memory.stat"),
            "anon 1073741824\nfile 7516192768\nfile_mapped 0\n",
        )
        .unwrap();
        assert_eq!(headroom(&dir), Some(7 << 30));
        std::fs::remove_file(dir.join("memory.stat")).unwrap();
        assert_eq!(headroom(&dir), Some(0), "no stat: every used byte counts");
        std::fs::write(dir.join("memory.max"), "max\n").unwrap();
        assert_eq!(headroom(&dir), None);
        std::fs::remove_file(dir.join("memory.max")).unwrap();
        std::fs::remove_file(dir.join("memory.current")).unwrap();
        std::fs::write(dir.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(dir.join("memory.usage_in_bytes"), "100\n").unwrap();
        assert_eq!(headroom(&dir), None, "v1's unlimited");
        std::fs::write(dir.join("memory.limit_in_bytes"), "1000\n").unwrap();
        assert_eq!(headroom(&dir), Some(900));
        std::fs::write(dir.join("memory.stat"), "cache 60\ntotal_cache 40\n").unwrap();
        assert_eq!(headroom(&dir), Some(940));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_machine_has_memory_available() {
        // Linux: MemAvailable at least, and no more than the machine has.
        let a = available().expect("/proc/meminfo");
        let total = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total: u64 = total
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(a.bytes > 0 && a.bytes <= total * 1024, "{a:?}");
    }

    #[test]
    fn a_run_that_cannot_fit_names_the_columns_that_would() {
        let gb = |g: u64| Available {
            bytes: g << 30,
            limited_by: "MemAvailable".to_owned(),
        };
        // A million outlets × 1,025 columns: 36.9 GB of arrays; 50M SKU rows and the
        // outlets' outputs, at least 1.2 GB and 0.5 GB more.
        let need = Need {
            outlets: 1_000_000,
            columns: 1025,
            sku_pairs: 50_000_000,
        };
        assert_eq!(need.arrays(), 36_900_000_000);
        assert_eq!(need.rest(), 1_200_000_000 + 500_000_000);
        check("national", &need, Some(&gb(64))).unwrap();
        let err = check("national", &need, Some(&gb(16))).unwrap_err();
        let Error::TooLittleMemory {
            need: needed,
            max_features,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*needed, need);
        assert_eq!(needed.bytes(), 38_600_000_000);
        // (16 GiB − 1.7 GB) / 36 MB an outlet column: 429 columns, one of them
        // `(other)`.
        assert_eq!(*max_features, Some(428));
        let text = err.to_string();
        assert!(
            text.contains("need 38.60 GB by a low estimate")
                && text.contains("36.90 GB for the outlets × columns arrays")
                && text.contains("max_features to at most 428"),
            "{text}"
        );
        // Room for three columns beside the rest gives `max_features = 2`, the least a
        // segmentation may set; room for two gives no columns to suggest.
        let room = |columns: u64| Available {
            bytes: need.rest() + columns * 36_000_000,
            limited_by: "MemAvailable".to_owned(),
        };
        let suggested = |a: &Available| match check("national", &need, Some(a)) {
            Err(Error::TooLittleMemory { max_features, .. }) => max_features,
            other => panic!("{other:?}"),
        };
        assert_eq!(suggested(&room(3)), Some(2));
        assert_eq!(suggested(&room(2)), None);
        // Unknown: no check.
        let huge = Need {
            outlets: usize::MAX,
            columns: usize::MAX,
            sku_pairs: u64::MAX,
        };
        check("national", &huge, None).unwrap();
    }

    #[test]
    fn a_run_whose_sku_rows_alone_cannot_fit_asks_for_a_shorter_window() {
        // At `level = "category"` the arrays are small and the rest is the run: 4M
        // outlets buying 100 SKUs each add at least 9.6 GB + 2 GB beside 1.6 GB of
        // arrays.
        let need = Need {
            outlets: 4_000_000,
            columns: 11,
            sku_pairs: 400_000_000,
        };
        let available = Available {
            bytes: 8 << 30,
            limited_by: "the memory limit of cgroup /sys/fs/cgroup/segmenter".to_owned(),
        };
        let err = check("regions", &need, Some(&available)).unwrap_err();
        let Error::TooLittleMemory { max_features, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*max_features, None);
        let text = err.to_string();
        assert!(
            text.contains("4000000 outlets × 11 columns and 400000000 outlet × SKU rows")
                && text.contains("cgroup /sys/fs/cgroup/segmenter")
                && text.contains("shorten window_days")
                && text.contains("narrow the segmentation's filter"),
            "{text}"
        );
        assert!(!text.contains("max_features to at most"), "{text}");
    }
}
