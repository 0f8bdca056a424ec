//! Storage chosen by URL scheme: `file:///path`, `s3://bucket/prefix`, `memory://`.
//!
//! Every table path in Spectra is relative to the storage root (`raw/invoices/…`);
//! [`Storage`] joins it with the URL's prefix, and [`Storage::table_url`] gives the
//! URL a query engine (DataFusion, DuckDB) reads the same objects by.
//!
//! # Conditional writes and durability
//!
//! State that more than one process may write (ingest's per-partition checkpoints, which
//! are also its leases) is written with [`Storage::put_if`]: create-if-absent or
//! replace-if-unchanged against the [`Version`] read by [`Storage::get_versioned`]. A
//! writer whose version is stale gets [`PutOutcome::Conflict`] and its write does not
//! land. Per scheme:
//!
//! - `s3://`: `If-None-Match: *` and `If-Match: <etag>` (object_store's
//!   `S3ConditionalPut::ETagMatch`). A store that ignores them (or refuses them) is
//!   caught by [`Storage::verify_conditional_puts`], which ingest runs at start and
//!   which refuses to go on: it is never assumed.
//! - `file://`: object_store's `LocalFileSystem` has no `PutMode::Update` (it returns
//!   `NotImplemented`) and never calls `fsync`, so both are hand-written here: a
//!   compare-and-swap under an exclusive `flock` on `{root}/.spectra.lock` (every
//!   Spectra process on the machine takes the same lock), the version being the
//!   content's length and hash; and every write (objects and state alike) goes to a
//!   hidden temporary file that is synced, renamed into place, and whose directory
//!   (and the directory above, for a folder just created) is synced, so an object is
//!   durable before the checkpoint that covers it is written, and a checkpoint
//!   survives a power loss only with the objects it names.
//! - `memory://`: object_store's `InMemory` supports both modes.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use url::Url;

use crate::{Error, Result};

/// An object store plus the prefix under which Spectra keeps its tables.
#[derive(Clone, Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Prefix inside the store (for `file://` the absolute directory).
    prefix: Path,
    /// `scheme://authority` the store is registered under for query engines.
    base: Url,
    url: String,
    /// For `file://`: the root directory (writes and compare-and-swap are hand-written).
    local: Option<std::path::PathBuf>,
    /// Objects read with [`Storage::get_write_once`], shared by clones.
    write_once: Arc<std::sync::Mutex<WriteOnce>>,
    /// Unique per opened store, shared by clones ([`Storage::id`]).
    id: u64,
}

/// The next [`Storage::id`].
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The cache of [`Storage::get_write_once`]: objects by relative path, and their bytes.
#[derive(Debug, Default)]
struct WriteOnce {
    objects: std::collections::HashMap<String, Bytes>,
    bytes: usize,
}

/// Bytes [`Storage::get_write_once`] keeps at most (then it forgets them all at once).
const WRITE_ONCE_BYTES: usize = 16 << 20;

/// Bytes between two ranges [`Storage::get_ranges`] reads with one read on `file://`
/// (reading them from the page cache costs less than another system call).
const RANGE_GAP: u64 = 16 * 1024;

/// The version of an object as read by [`Storage::get_versioned`], to make a later
/// [`Storage::put_if`] conditional on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(UpdateVersion);

impl Version {
    /// A short text for logs.
    pub fn describe(&self) -> String {
        self.0
            .e_tag
            .clone()
            .or_else(|| self.0.version.clone())
            .unwrap_or_default()
    }
}

/// The condition of a [`Storage::put_if`].
#[derive(Clone, Debug)]
pub enum Condition {
    /// The object must not exist.
    Absent,
    /// The object must still be at this version.
    Matches(Version),
}

/// What a [`Storage::put_if`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written; the object's new version.
    Written(Version),
    /// The condition did not hold (another writer got there first): nothing was written.
    Conflict,
}

/// A listed object, its path relative to the storage root.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Path relative to the storage root, e.g. `raw/invoices/date=2026-11-20/x.parquet`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

impl Storage {
    /// Opens the store a URL names. `file://` directories are created when missing.
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |reason: &str| Error::StorageUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|_| bad("not an absolute local path (use file:///abs/path)"))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| bad(&format!("cannot create directory: {e}")))?;
                let dir = dir.canonicalize().map_err(|e| bad(&e.to_string()))?;
                let prefix = Path::from_filesystem_path(&dir).map_err(|e| bad(&e.to_string()))?;
                Ok(Self {
                    store: Arc::new(LocalFileSystem::new()),
                    prefix,
                    base: Url::parse("file:///").expect("valid"),
                    url: url.to_owned(),
                    local: Some(dir),
                    write_once: Arc::default(),
                    id: next_id(),
                })
            }
            "s3" => {
                let bucket = parsed.host_str().ok_or_else(|| bad("missing bucket"))?;
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if std::env::var_os("AWS_CONDITIONAL_PUT").is_none() {
                    // If-Match / If-None-Match (what ingest's fencing needs), unless the
                    // operator said otherwise; ingest checks the store honours them.
                    builder = builder
                        .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch);
                }
                let store = builder.build().map_err(|e| bad(&e.to_string()))?;
                Ok(Self {
                    store: Arc::new(store),
                    // The URL's path, percent-decoded, is the keys' own text
                    // (`s3://b/run%201` keeps its objects under `run 1/`).
                    prefix: Path::from_url_path(parsed.path()).map_err(|e| bad(&e.to_string()))?,
                    base: Url::parse(&format!("s3://{bucket}")).map_err(|e| bad(&e.to_string()))?,
                    url: url.to_owned(),
                    local: None,
                    write_once: Arc::default(),
                    id: next_id(),
                })
            }
            "memory" => Ok(Self::memory()),
            other => Err(bad(&format!(
                "unsupported scheme `{other}`; use file://, s3:// or memory://"
            ))),
        }
    }

    /// A fresh in-memory store (tests, `memory://`).
    pub fn memory() -> Self {
        Self {
            store: Arc::new(InMemory::new()),
            prefix: Path::default(),
            base: Url::parse("memory://").expect("valid"),
            url: "memory://".into(),
            local: None,
            write_once: Arc::default(),
            id: next_id(),
        }
    }

    /// A store over any `object_store` implementation, its objects at the root (as
    /// `memory://`'s; its URL is `memory://`): a wrapper that observes or holds back
    /// operations, in tests.
    pub fn wrapping(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            ..Self::memory()
        }
    }

    /// This store's identity in the process: the same for its clones, another for
    /// every store opened (two opens of one URL included), so caches outside it key
    /// by it and never mix two stores' objects of one path.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The URL this storage was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying object store (for query engines).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// `scheme://authority` to register [`Storage::object_store`] under.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The URL of a path relative to the root, for a query engine: a directory when it
    /// ends with `/`. Its parts are percent-encoded as URL path segments, so a query
    /// engine that decodes the URL's path (DataFusion's `ListingTableUrl`) reads the
    /// objects of [`Storage::path`], whatever characters the root's name holds.
    pub fn table_url(&self, rel: &str) -> String {
        let mut url = self.base.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .expect("a store's base URL has a path");
            segments.pop_if_empty().extend(self.path(rel).parts());
            if rel.ends_with('/') {
                segments.push("");
            }
        }
        url.into()
    }

    /// The store path of a path relative to the root: the prefix's parts as they are
    /// (the keys' own text: `Path::from` on the joined text would escape its `%`, `~`
    /// or `#` and name other keys) and the relative path's parts after them.
    pub fn path(&self, rel: &str) -> Path {
        Path::from_iter(self.prefix.parts().chain(Path::from(rel).parts()))
    }

    /// The path relative to the root of a store path under the prefix.
    fn relative(&self, p: &Path) -> String {
        match p.prefix_match(&self.prefix) {
            Some(parts) => parts
                .map(|part| part.as_ref().to_owned())
                .collect::<Vec<_>>()
                .join("/"),
            None => p.as_ref().to_owned(),
        }
    }

    /// Writes an object whole (atomically: readers see the old object or the new one).
    /// On `file://` the object is synced to disk, with its directory, before this returns.
    pub async fn put(&self, rel: &str, data: Bytes) -> Result<()> {
        test_stall(Stalled::Put).await;
        if let Some(root) = &self.local {
            let path = root.join(rel.trim_matches('/'));
            return blocking(move || local::write_durably(&path, &data)).await;
        }
        self.store
            .put(&self.path(rel), PutPayload::from_bytes(data))
            .await?;
        Ok(())
    }

    /// Reads an object whole with its version; `None` when it does not exist.
    pub async fn get_versioned(&self, rel: &str) -> Result<Option<(Bytes, Version)>> {
        test_stall(Stalled::Other).await;
        if let Some(root) = &self.local {
            let path = root.join(rel.trim_matches('/'));
            return blocking(move || {
                Ok(local::read(&path)?.map(|b| {
                    let v = local::version(&b);
                    (Bytes::from(b), v)
                }))
            })
            .await;
        }
        match self.store.get(&self.path(rel)).await {
            Ok(r) => {
                let v = Version(UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                });
                Ok(Some((r.bytes().await?, v)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes an object whole only if `cond` holds (see the module docs): a writer
    /// holding a stale version gets [`PutOutcome::Conflict`] and nothing lands.
    pub async fn put_if(&self, rel: &str, data: Bytes, cond: &Condition) -> Result<PutOutcome> {
        test_stall(Stalled::ConditionalPut).await;
        if let Some(root) = &self.local {
            let path = root.join(rel.trim_matches('/'));
            let lock = root.join(".spectra.lock");
            let cond = cond.clone();
            return blocking(move || local::compare_and_swap(&lock, &path, &data, &cond)).await;
        }
        let mode = match cond {
            Condition::Absent => PutMode::Create,
            Condition::Matches(v) => PutMode::Update(v.0.clone()),
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(rel), PutPayload::from_bytes(data), opts)
            .await
        {
            Ok(r) => Ok(PutOutcome::Written(Version(UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            }))),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(PutOutcome::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks that this store really does conditional writes (create-if-absent and
    /// replace-if-unchanged), on a probe object under `state/probe/`: a store that
    /// ignores the conditions (both writes of a race would land) or refuses them is an
    /// error naming the store, never assumed to work.
    pub async fn verify_conditional_puts(&self, probe_name: &str) -> Result<()> {
        let rel = format!("state/probe/{probe_name}.json");
        let refuse = |what: &str| {
            Error::StorageUrl {
            url: self.url.clone(),
            reason: format!(
                "this store does not honour conditional writes ({what}); ingest needs them to fence a \
                 second writer. For S3-compatible stores use one that supports If-None-Match and \
                 If-Match on PUT (AWS S3, MinIO, R2, moto >= 5.1)"
            ),
        }
        };
        let attempt = |r: Result<PutOutcome>| match r {
            Err(Error::ObjectStore(
                e @ (object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. }),
            )) => Err(refuse(&e.to_string())),
            other => other,
        };
        self.delete(&rel).await?;
        let data = |n: u32| Bytes::from(format!("{{\"probe\":{n}}}"));
        let v1 = match attempt(self.put_if(&rel, data(1), &Condition::Absent).await)? {
            PutOutcome::Written(v) => v,
            PutOutcome::Conflict => {
                return Err(refuse("a create-if-absent of a new object failed"))
            }
        };
        if attempt(self.put_if(&rel, data(2), &Condition::Absent).await)? != PutOutcome::Conflict {
            return Err(refuse(
                "a create-if-absent over an existing object succeeded",
            ));
        }
        let v2 = match attempt(
            self.put_if(&rel, data(3), &Condition::Matches(v1.clone()))
                .await,
        )? {
            PutOutcome::Written(v) => v,
            PutOutcome::Conflict => {
                return Err(refuse(
                    "a replace-if-unchanged at the current version failed",
                ))
            }
        };
        if v2 == v1 {
            return Err(refuse("a replace did not change the object's version"));
        }
        if attempt(self.put_if(&rel, data(4), &Condition::Matches(v1)).await)?
            != PutOutcome::Conflict
        {
            return Err(refuse(
                "a replace-if-unchanged at a stale version succeeded",
            ));
        }
        self.delete(&rel).await
    }

    /// Reads an object whole; `None` when it does not exist.
    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        test_stall(Stalled::Other).await;
        match self.store.get(&self.path(rel)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Byte ranges of one object, in one request. On `file://` they are read in
    /// place, ranges less than [`RANGE_GAP`] apart with one positioned read: an object
    /// read by ranges is a keyed table's pages (a few kilobytes an outlet 360 view,
    /// from the page cache), and object_store's local store hands every request to
    /// tokio's blocking pool, whose hand-off cost more than the reads, and reads each
    /// range apart (thirty reads a 360 view).
    pub async fn get_ranges(&self, rel: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let Some(root) = &self.local else {
            return Ok(self.store.get_ranges(&self.path(rel), ranges).await?);
        };
        Ok(local::read_ranges(
            &root.join(rel.trim_matches('/')),
            ranges,
            RANGE_GAP,
        )?)
    }

    /// Reads and parses a JSON object; `None` when it does not exist.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, rel: &str) -> Result<Option<T>> {
        match self.get(rel).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::Json {
                    path: rel.to_owned(),
                    source: e,
                }),
        }
    }

    /// An object written once and never rewritten (a create-only path, such as a
    /// definition version), read from storage the first time only: a reader that
    /// lists such objects on every request (the API) then costs one listing, not one
    /// read per object. Never use it for a path that is written again.
    pub async fn get_write_once(&self, rel: &str) -> Result<Option<Bytes>> {
        let cached = |s: &Self| {
            s.write_once
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .objects
                .get(rel)
                .cloned()
        };
        if let Some(b) = cached(self) {
            return Ok(Some(b));
        }
        let Some(b) = self.get(rel).await? else {
            return Ok(None);
        };
        let mut c = self.write_once.lock().unwrap_or_else(|p| p.into_inner());
        if c.bytes + b.len() > WRITE_ONCE_BYTES {
            *c = WriteOnce::default();
        }
        c.bytes += b.len();
        c.objects.insert(rel.to_owned(), b.clone());
        Ok(Some(b))
    }

    /// A JSON document to replace with a conditional write ([`Storage::put_json_if`]):
    /// the document and the condition that it is still the stored one; when there is
    /// none, the default and [`Condition::Absent`].
    pub async fn get_json_versioned<T: serde::de::DeserializeOwned + Default>(
        &self,
        rel: &str,
    ) -> Result<(T, Condition)> {
        Ok(match self.get_versioned(rel).await? {
            None => (T::default(), Condition::Absent),
            Some((b, v)) => (
                serde_json::from_slice(&b).map_err(|e| Error::Json {
                    path: rel.to_owned(),
                    source: e,
                })?,
                Condition::Matches(v),
            ),
        })
    }

    /// A value as pretty JSON.
    fn json_bytes<T: serde::Serialize>(rel: &str, value: &T) -> Result<Bytes> {
        let data = serde_json::to_vec_pretty(value).map_err(|e| Error::Json {
            path: rel.to_owned(),
            source: e,
        })?;
        Ok(Bytes::from(data))
    }

    /// Writes a value as pretty JSON.
    pub async fn put_json<T: serde::Serialize>(&self, rel: &str, value: &T) -> Result<()> {
        self.put(rel, Self::json_bytes(rel, value)?).await
    }

    /// Writes a value as pretty JSON if `cond` holds ([`Storage::put_if`]).
    pub async fn put_json_if<T: serde::Serialize>(
        &self,
        rel: &str,
        value: &T,
        cond: &Condition,
    ) -> Result<PutOutcome> {
        self.put_if(rel, Self::json_bytes(rel, value)?, cond).await
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        test_stall(Stalled::Other).await;
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether an object exists (one `HEAD`).
    pub async fn exists(&self, rel: &str) -> Result<bool> {
        match self.store.head(&self.path(rel)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The folders directly under a relative prefix (one listing call, not recursive),
    /// as relative paths ending in `/`, sorted.
    pub async fn list_folders(&self, rel_prefix: &str) -> Result<Vec<String>> {
        let prefix = self.path(rel_prefix);
        let listed = match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out: Vec<String> = listed
            .common_prefixes
            .iter()
            .map(|p| format!("{}/", self.relative(p)))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Lists every object under a relative prefix (recursively), sorted by path.
    pub async fn list(&self, rel_prefix: &str) -> Result<Vec<Listed>> {
        let prefix = self.path(rel_prefix);
        let mut out: Vec<Listed> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| Listed {
                path: self.relative(&m.location),
                size: m.size,
            })
            .try_collect()
            .await
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(Vec::new()),
                e => Err(e),
            })?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?
        .map_err(Error::Io)
}

/// The storage operations [`test_stall`] tells apart.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stalled {
    /// [`Storage::put`]: an object written whole.
    Put,
    /// [`Storage::put_if`]: a state document written conditionally.
    ConditionalPut,
    /// Reads, lists, deletes.
    Other,
}

/// A test hook: `SPECTRA_TEST_STORAGE_STALL=PROBABILITY:[MIN_MS-]MAX_MS[:puts|:states]`
/// makes each storage operation (with `:puts`, each object write of [`Storage::put`]
/// only; with `:states`, each conditional write of [`Storage::put_if`] only) stall
/// before it starts, with that probability, for between `MIN_MS` (default 0) and
/// `MAX_MS` milliseconds, as a slow or hung object store would. Unset in production:
/// nothing.
async fn test_stall(op: Stalled) {
    /// Probability, min and max ms, and the one kind of operation stalled (if one).
    type Stall = (f64, u64, u64, Option<Stalled>);
    static STALL: std::sync::OnceLock<Option<Stall>> = std::sync::OnceLock::new();
    let cfg = STALL.get_or_init(|| {
        let v = std::env::var("SPECTRA_TEST_STORAGE_STALL").ok()?;
        let mut it = v.split(':');
        let p = it.next()?.parse().ok()?;
        let range = it.next()?;
        let (min_ms, max_ms) = match range.split_once('-') {
            Some((lo, hi)) => (lo.parse().ok()?, hi.parse().ok()?),
            None => (0, range.parse().ok()?),
        };
        let only = match it.next() {
            Some("puts") => Some(Stalled::Put),
            Some("states") => Some(Stalled::ConditionalPut),
            _ => None,
        };
        Some((p, min_ms, max_ms, only))
    });
    let Some((p, min_ms, max_ms, only)) = *cfg else {
        return;
    };
    if only.is_some_and(|o| o != op) {
        return;
    }
    // A small xorshift seeded from the clock: no RNG dependency for a test hook.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut x = seed ^ (std::process::id() as u64) << 32;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let roll = (x % 1_000_000) as f64 / 1_000_000.0;
    if roll < p {
        let ms = min_ms + (x >> 20) % max_ms.saturating_sub(min_ms).max(1);
        tracing::debug!(ms, "test hook: stalling a storage operation");
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// `file://` writes: durable (fsync of file and directories) and compare-and-swap;
/// positioned reads of byte ranges.
mod local;

#[cfg(test)]
mod tests;
