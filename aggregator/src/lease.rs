//! The aggregator's lease, `state/aggregate/lease.json`: one pass at a time.
//!
//! A pass (incremental or `--full`) takes the lease with a conditional write that bumps
//! the epoch and names its owner (host, pid, a random tag) and an expiry (now +
//! `aggregate.lease_seconds`). While it runs it renews the lease — a conditional write
//! against the version it holds — every third of the TTL and before every write of its
//! state, so a pass whose lease another process took over (after it expired: the pass
//! stalled longer than the TTL) fails at its next write instead of landing it. The
//! pass's commit point, `state.json`, is itself written conditionally on the version
//! the pass read at its start, so two passes can never both commit. At the end the
//! pass releases the lease (expiry = now).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spectra_core::storage::{Condition, PutOutcome, Version};
use spectra_core::Storage;
use tokio::sync::Mutex;

use crate::Error;

/// Where the lease lives.
pub const LEASE_PATH: &str = "state/aggregate/lease.json";

/// The lease document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LeaseDoc {
    /// Bumped by every take-over.
    pub epoch: u64,
    /// `host:pid:random` of the holder.
    pub owner: String,
    /// The lease is free after this instant.
    pub expires_at: DateTime<Utc>,
}

impl LeaseDoc {
    /// True while the holder's lease has not expired.
    pub fn live(&self) -> bool {
        self.expires_at > Utc::now()
    }
}

/// A held lease.
#[derive(Clone)]
pub struct Lease {
    storage: Storage,
    ttl: Duration,
    inner: Arc<Mutex<Held>>,
}

struct Held {
    doc: LeaseDoc,
    version: Version,
    fenced: bool,
}

/// This process's owner id.
pub fn owner_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let tag = nanos ^ std::process::id().rotate_left(16);
    // Every pass is its own owner, also two passes of one process.
    static PASSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PASSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{host}:{}:{tag:08x}-{n}", std::process::id())
}

fn encode(doc: &LeaseDoc) -> Result<bytes::Bytes, Error> {
    Ok(serde_json::to_vec_pretty(doc)
        .map_err(|e| Error::Corrupt(format!("{LEASE_PATH}: {e}")))?
        .into())
}

fn expiry(ttl: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(300))
}

/// Reads the lease document.
pub async fn read(storage: &Storage) -> Result<Option<LeaseDoc>, Error> {
    Ok(storage.get_json(LEASE_PATH).await?)
}

impl Lease {
    /// Takes the lease when it is free (absent, expired or released); otherwise returns
    /// the live holder's document.
    pub async fn try_acquire(
        storage: &Storage,
        owner: &str,
        ttl: Duration,
    ) -> Result<Result<Lease, LeaseDoc>, Error> {
        let current = storage.get_versioned(LEASE_PATH).await?;
        let (prev, cond) = match current {
            Some((b, v)) => {
                let doc: LeaseDoc = serde_json::from_slice(&b)
                    .map_err(|e| Error::Corrupt(format!("{LEASE_PATH}: {e}")))?;
                (doc, Condition::Matches(v))
            }
            None => (LeaseDoc::default(), Condition::Absent),
        };
        if prev.live() && prev.owner != owner {
            return Ok(Err(prev));
        }
        let doc = LeaseDoc {
            epoch: prev.epoch + 1,
            owner: owner.to_owned(),
            expires_at: expiry(ttl),
        };
        match storage.put_if(LEASE_PATH, encode(&doc)?, &cond).await? {
            PutOutcome::Written(version) => {
                if prev.live() {
                    tracing::warn!(previous = %prev.owner, epoch = doc.epoch, "took over the aggregator lease");
                }
                Ok(Ok(Lease {
                    storage: storage.clone(),
                    ttl,
                    inner: Arc::new(Mutex::new(Held {
                        doc,
                        version,
                        fenced: false,
                    })),
                }))
            }
            // Another process took it between our read and write.
            PutOutcome::Conflict => Ok(Err(read(storage).await?.unwrap_or_default())),
        }
    }

    /// The epoch of this lease.
    pub async fn epoch(&self) -> u64 {
        self.inner.lock().await.doc.epoch
    }

    /// Renews the lease (a conditional write against the version held): an error once
    /// another process took it over — the pass must stop writing.
    pub async fn check(&self) -> Result<(), Error> {
        let mut h = self.inner.lock().await;
        if h.fenced {
            return Err(Error::Fenced(format!(
                "epoch {} of {} was taken over",
                h.doc.epoch, h.doc.owner
            )));
        }
        let mut doc = h.doc.clone();
        doc.expires_at = expiry(self.ttl);
        let cond = Condition::Matches(h.version.clone());
        match self
            .storage
            .put_if(LEASE_PATH, encode(&doc)?, &cond)
            .await?
        {
            PutOutcome::Written(v) => {
                h.doc = doc;
                h.version = v;
                Ok(())
            }
            PutOutcome::Conflict => {
                // An earlier renewal may have landed though its answer was lost (the
                // timeout a retry follows): a document of our epoch and owner is ours.
                let stored = self
                    .storage
                    .get_versioned(LEASE_PATH)
                    .await?
                    .and_then(|(data, v)| {
                        Some((serde_json::from_slice::<LeaseDoc>(&data).ok()?, v))
                    });
                if let Some((doc, v)) = stored.as_ref() {
                    if (doc.epoch, &doc.owner) == (h.doc.epoch, &h.doc.owner) {
                        (h.doc, h.version) = (doc.clone(), v.clone());
                        return Ok(());
                    }
                }
                h.fenced = true;
                let now = stored.map(|(doc, _)| doc).unwrap_or_default();
                Err(Error::Fenced(format!(
                    "epoch {} was taken over by {} (epoch {})",
                    h.doc.epoch, now.owner, now.epoch
                )))
            }
        }
    }

    /// Renews the lease every third of its TTL until the returned handle is dropped
    /// or aborted. A renewal that fails for another reason than a take-over (a storage
    /// timeout) is tried again, every twentieth of the TTL, until it lands: a pass
    /// that stopped renewing after one failed request would let its lease expire while
    /// it runs on, and another pass take over beside it.
    pub fn keep_alive(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(me.ttl / 3).await;
                loop {
                    match me.check().await {
                        Ok(()) => break,
                        Err(e @ Error::Fenced(_)) => {
                            tracing::error!(error = %e, "aggregator lease lost; the pass will fail at its next write");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "renewing the aggregator lease failed; trying again");
                            tokio::time::sleep(me.ttl / 20).await;
                        }
                    }
                }
            }
        })
    }

    /// Gives the lease up (expiry = now), if it is still ours.
    pub async fn release(&self) {
        let h = self.inner.lock().await;
        if h.fenced {
            return;
        }
        let mut doc = h.doc.clone();
        doc.expires_at = Utc::now();
        let Ok(data) = encode(&doc) else { return };
        let cond = Condition::Matches(h.version.clone());
        if let Err(e) = self.storage.put_if(LEASE_PATH, data, &cond).await {
            tracing::warn!(error = %e, "releasing the aggregator lease failed; it expires by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_owner_waits_then_fences_the_first() {
        let s = Storage::memory();
        let ttl = Duration::from_millis(300);
        let a = Lease::try_acquire(&s, "a", ttl).await.unwrap().unwrap();
        let Err(held) = Lease::try_acquire(&s, "b", ttl).await.unwrap() else {
            panic!("a live lease was taken over")
        };
        assert_eq!(held.owner, "a");
        a.check().await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let b = Lease::try_acquire(&s, "b", ttl).await.unwrap().unwrap();
        assert_eq!(b.epoch().await, 2);
        assert!(matches!(a.check().await, Err(Error::Fenced(_))));
        b.release().await;
        let c = Lease::try_acquire(&s, "c", ttl).await.unwrap().unwrap();
        assert_eq!(c.epoch().await, 3);
    }

    /// A renewal that landed though its answer was lost: the retry's conditional write
    /// conflicts with our own document, which is taken as ours, not as a take-over.
    #[tokio::test]
    async fn a_renewal_whose_answer_was_lost_is_not_a_take_over() {
        let s = Storage::memory();
        let ttl = Duration::from_secs(60);
        let a = Lease::try_acquire(&s, "a", ttl).await.unwrap().unwrap();
        // The renewal lands; the holder never learns its new version.
        let (doc, version) = {
            let h = a.inner.lock().await;
            (h.doc.clone(), h.version.clone())
        };
        let mut renewed = doc.clone();
        renewed.expires_at = expiry(ttl);
        let PutOutcome::Written(_) = s
            .put_if(
                LEASE_PATH,
                encode(&renewed).unwrap(),
                &Condition::Matches(version),
            )
            .await
            .unwrap()
        else {
            panic!("the renewal lands")
        };
        a.check().await.unwrap();
        a.check().await.unwrap();
        // Another owner's document is a take-over.
        let mut other = renewed.clone();
        other.epoch += 1;
        other.owner = "b".into();
        s.put(LEASE_PATH, encode(&other).unwrap()).await.unwrap();
        assert!(matches!(a.check().await, Err(Error::Fenced(_))));
    }
}
