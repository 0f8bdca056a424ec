//! The daily tables' re-roll marker, `features/daily_rolling.json` ([`layout::DAILY_ROLLING`]),
//! written by the aggregator and read by every reader of `features/daily/` and
//! `features/outlet_daily/`.
//!
//! Each day's file is written whole, so a reader never sees half a day. But a correction
//! that moves a line to another date re-rolls both days, one file after the other (in
//! chunks, for a long pass): a reader that reads the two days between those writes counts
//! the line twice, or not at all. A pass that re-rolls such days (or releases a held day,
//! where a move recorded while it was held lands, or rebuilds) therefore marks the tables
//! as part-way ([`begin`]: the generation bumped, `rolling` set) before its first daily
//! write, and clears the mark once it has committed ([`end`]); both writes conditional on
//! the version the pass read. A pass that stops part-way leaves the mark; the next pass
//! that succeeds, which re-rolls what the stopped one left, clears it.
//!
//! A reader ([`settled`]) reads only while no such pass is under way and reads again
//! when the marker changed while it read: a sequence lock, so a pass never waits on a
//! reader. Passes that only add lines to days (the daily case) leave the marker alone:
//! a reader that sees some of their days new and others not yet sees the lines as if
//! they had arrived a moment later, each counted once.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::layout;
use crate::storage::{Condition, PutOutcome};
use crate::{Result, Storage};

/// The marker document (absent: generation 0, not rolling).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rolling {
    /// Bumped by every pass that moves lines between days or rebuilds the tables (the
    /// first roll-up of a store is a rebuild).
    pub generation: u64,
    /// Such a pass is part-way through the daily tables (or stopped part-way, and the
    /// next pass finishes it).
    pub rolling: bool,
    /// The aggregator lease epoch of the pass that set the generation.
    pub epoch: u64,
    /// When that pass began its re-roll.
    pub since: Option<DateTime<Utc>>,
}

/// The marker as the aggregator read or wrote it, with the version its next write is
/// conditional on: of two passes that overlapped (one fenced by the other's lease,
/// its write late), a late write never replaces the live pass's marker.
#[derive(Debug, Clone)]
pub struct Marked {
    /// The marker.
    pub marker: Rolling,
    /// That it is still the stored one.
    stored: Condition,
}

/// The marker as stored.
pub async fn load(storage: &Storage) -> Result<Rolling> {
    Ok(load_marked(storage).await?.marker)
}

/// The marker as stored, for [`begin`] or [`end`].
pub async fn load_marked(storage: &Storage) -> Result<Marked> {
    let (marker, stored) = storage.get_json_versioned(layout::DAILY_ROLLING).await?;
    Ok(Marked { marker, stored })
}

/// Writes `marker` if the stored one is still `over`'s; `None` when another writer
/// changed it since.
async fn replace(storage: &Storage, over: &Marked, marker: Rolling) -> Result<Option<Marked>> {
    Ok(
        match storage
            .put_json_if(layout::DAILY_ROLLING, &marker, &over.stored)
            .await?
        {
            PutOutcome::Written(version) => Some(Marked {
                marker,
                stored: Condition::Matches(version),
            }),
            PutOutcome::Conflict => None,
        },
    )
}

/// Marks the daily tables part-way, before the first daily write of a pass (of lease
/// `epoch`) that moves lines between days; `seen` is the marker the pass read at its
/// start. Returns the marker written, for [`end`]; `None` when another pass wrote the
/// marker since `seen` was read (this pass has been taken over).
pub async fn begin(storage: &Storage, seen: &Marked, epoch: u64) -> Result<Option<Marked>> {
    let begun = Rolling {
        generation: seen.marker.generation + 1,
        rolling: true,
        epoch,
        since: Some(Utc::now()),
    };
    replace(storage, seen, begun).await
}

/// Clears the part-way mark of `begun` (a pass's own, or one a stopped pass left) once
/// the daily tables are whole again; `false` when another pass wrote the marker since.
pub async fn end(storage: &Storage, begun: &Marked) -> Result<bool> {
    let ended = Rolling {
        rolling: false,
        ..begun.marker.clone()
    };
    Ok(replace(storage, begun, ended).await?.is_some())
}

/// Why [`settled`] gave up: the daily tables stayed part-way for longer than the reader
/// would wait, or a pass moved lines during each of its [`MAX_READS`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled(pub Rolling);

impl std::fmt::Display for Unsettled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = self.0.since.map_or("an unknown time".to_owned(), |t| {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        });
        if !self.0.rolling {
            return write!(
                f,
                "the daily tables were re-rolled (lines moved between days) while read, \
                 {MAX_READS} reads in a row (`{}`, generation {})",
                layout::DAILY_ROLLING,
                self.0.generation
            );
        }
        write!(
            f,
            "the daily tables are part-way through a re-roll that moves lines between days \
             (aggregation pass of lease epoch {}, since {since}; `{}`); the aggregator's \
             next pass finishes a re-roll that stopped",
            self.0.epoch,
            layout::DAILY_ROLLING
        )
    }
}

/// How often a waiting reader looks at the marker again.
const POLL: Duration = Duration::from_millis(250);

/// Reads a reader makes at most, each overlapped by a pass that moved lines, before it
/// gives up.
const MAX_READS: usize = 3;

/// Reads the daily tables with `read` once no pass is part-way through moving lines
/// between days, and again (from scratch: `read` starts over) when one began or ended
/// while it read. Waits up to `patience` for a pass under way to end (counted from
/// when the reader finds it under way, not from its own start); `Ok(Err(..))` when it
/// did not, or when [`MAX_READS`] reads in a row were each overlapped by a pass.
pub async fn settled<T, E, F, Fut>(
    storage: &Storage,
    patience: Duration,
    mut read: F,
) -> std::result::Result<std::result::Result<T, Unsettled>, E>
where
    E: From<crate::Error>,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let mut seen = load(storage).await?;
    let (mut waiting, mut reads) = (None::<Instant>, 0);
    loop {
        if seen.rolling {
            let since = *waiting.get_or_insert_with(Instant::now);
            if since.elapsed() + POLL > patience {
                return Ok(Err(Unsettled(seen)));
            }
            tokio::time::sleep(POLL).await;
            seen = load(storage).await?;
            continue;
        }
        waiting = None;
        if reads == MAX_READS {
            return Ok(Err(Unsettled(seen)));
        }
        reads += 1;
        let value = read().await?;
        let after = load(storage).await?;
        if after == seen {
            return Ok(Ok(value));
        }
        tracing::debug!(
            generation = after.generation,
            "the daily tables were re-rolled while read: read again"
        );
        seen = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence lock on its own: a read during a marked pass waits or gives up, a
    /// read that a whole pass overlapped is done again (up to [`MAX_READS`]), a plain
    /// read once; a pass's late write never replaces a newer pass's marker.
    #[tokio::test]
    async fn a_read_is_done_again_when_a_pass_moved_lines_meanwhile() {
        let storage = Storage::memory();
        let reads = &std::sync::atomic::AtomicUsize::new(0);
        let count = move || async move {
            Ok::<_, crate::Error>(reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
        };
        assert_eq!(
            settled(&storage, Duration::ZERO, count).await.unwrap(),
            Ok(1)
        );

        let seen = load_marked(&storage).await.unwrap();
        let begun = begin(&storage, &seen, 7).await.unwrap().unwrap();
        // A pass that read the marker before this one began cannot write it.
        assert!(begin(&storage, &seen, 6).await.unwrap().is_none());
        assert!(!end(&storage, &seen).await.unwrap());
        let waited = settled(&storage, Duration::ZERO, count).await.unwrap();
        assert_eq!(waited, Err(Unsettled(begun.marker.clone())));
        assert!(waited.unwrap_err().to_string().contains("lease epoch 7"));
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);

        // A reader that waits sees the pass end, then reads once.
        let (ended, read) = tokio::join!(
            async {
                tokio::time::sleep(POLL * 2).await;
                end(&storage, &begun).await.unwrap()
            },
            settled(&storage, POLL * 20, count)
        );
        assert!(ended);
        assert_eq!(read.unwrap(), Ok(2));

        // A whole pass within a read: the read is done again; within every read: the
        // reader gives up after MAX_READS.
        let store = &storage;
        let passing = |passes: usize| {
            let left = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(passes));
            move || {
                let left = left.clone();
                async move {
                    if left.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                        left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        let seen = load_marked(store).await?;
                        let b = begin(store, &seen, 8).await?.expect("written");
                        assert!(end(store, &b).await?);
                    }
                    count().await
                }
            }
        };
        assert_eq!(
            settled(store, Duration::ZERO, passing(1)).await.unwrap(),
            Ok(4)
        );
        assert_eq!(load(store).await.unwrap().generation, 2);
        let gave_up = settled(store, Duration::ZERO, passing(MAX_READS))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(gave_up.0.generation, 2 + MAX_READS as u64);
        assert!(
            gave_up.to_string().contains("3 reads in a row"),
            "{gave_up}"
        );
    }
}
