//! Storage chosen by URL scheme: `file:///path`, `s3://bucket/prefix`, `memory://`.
//!
//! Every table path in Spectra is relative to the storage root (`raw/invoices/…`);
//! [`Storage`] joins it with the URL's prefix, and [`Storage::table_url`] gives the
//! URL a query engine (DataFusion, DuckDB) reads the same objects by.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
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
                })
            }
            "s3" => {
                let bucket = parsed.host_str().ok_or_else(|| bad("missing bucket"))?;
                let store = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| bad(&e.to_string()))?;
                Ok(Self {
                    store: Arc::new(store),
                    prefix: Path::from(parsed.path().trim_matches('/')),
                    base: Url::parse(&format!("s3://{bucket}")).map_err(|e| bad(&e.to_string()))?,
                    url: url.to_owned(),
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
        }
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
    /// ends with `/`.
    pub fn table_url(&self, rel: &str) -> String {
        let full = self.path(rel);
        let mut s = format!(
            "{}://{}/{}",
            self.base.scheme(),
            self.base.host_str().unwrap_or(""),
            full.as_ref()
        );
        if rel.ends_with('/') && !s.ends_with('/') {
            s.push('/');
        }
        s
    }

    /// The store path of a path relative to the root.
    pub fn path(&self, rel: &str) -> Path {
        let rel = rel.trim_matches('/');
        if self.prefix.as_ref().is_empty() {
            Path::from(rel)
        } else if rel.is_empty() {
            self.prefix.clone()
        } else {
            Path::from(format!("{}/{}", self.prefix.as_ref(), rel))
        }
    }

    fn relative(&self, p: &Path) -> String {
        let s = p.as_ref();
        let pre = self.prefix.as_ref();
        if pre.is_empty() {
            s.to_owned()
        } else {
            s.strip_prefix(pre)
                .map(|r| r.trim_start_matches('/').to_owned())
                .unwrap_or_else(|| s.to_owned())
        }
    }

    /// Writes an object whole (atomically: readers see the old object or the new one).
    pub async fn put(&self, rel: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&self.path(rel), PutPayload::from_bytes(data))
            .await?;
        Ok(())
    }

    /// Reads an object whole; `None` when it does not exist.
    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
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

    /// Writes a value as pretty JSON.
    pub async fn put_json<T: serde::Serialize>(&self, rel: &str, value: &T) -> Result<()> {
        let data = serde_json::to_vec_pretty(value).map_err(|e| Error::Json {
            path: rel.to_owned(),
            source: e,
        })?;
        self.put(rel, Bytes::from(data)).await
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_round_trip_and_urls() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/root", dir.path().display());
        let s = Storage::from_url(&url).unwrap();
        s.put(
            "raw/invoices/date=2026-11-20/a.parquet",
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
        s.put_json("state/x.json", &serde_json::json!({"n": 1}))
            .await
            .unwrap();
        let listed = s.list("raw/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, "raw/invoices/date=2026-11-20/a.parquet");
        let v: serde_json::Value = s.get_json("state/x.json").await.unwrap().unwrap();
        assert_eq!(v["n"], 1);
        assert!(s.get("nope").await.unwrap().is_none());
        assert!(dir
            .path()
            .join("root/raw/invoices/date=2026-11-20/a.parquet")
            .exists());
        let t = s.table_url("raw/invoices/");
        assert!(
            t.starts_with("file:///") && t.ends_with("/root/raw/invoices/"),
            "{t}"
        );
        s.delete("state/x.json").await.unwrap();
        s.delete("state/x.json").await.unwrap();
        assert!(s.list("missing/").await.unwrap().is_empty());
    }

    #[test]
    fn bad_urls_say_why() {
        let e = Storage::from_url("ftp://x").unwrap_err().to_string();
        assert!(e.contains("unsupported scheme `ftp`"), "{e}");
        assert!(Storage::from_url("not a url").is_err());
    }
}
