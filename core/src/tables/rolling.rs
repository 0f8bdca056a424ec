//! The daily tables' re-roll marker, `features/daily_rolling.json` ([`layout::DAILY_ROLLING`]),
//! written by the aggregator and read by every reader of `features/daily/` and
//! `features/outlet_daily/`.
//!
//! Each day's file is written whole, so a reader never sees half a day. But a correction
//! that moves a line to another date re-rolls both days, one file after the other (in
//! chunks, for a long pass): a reader that reads the two days between those writes counts
//! the line twice, or not at all. A pass that re-rolls such days (and every `--full`
//! rebuild) therefore marks the tables as part-way ([`begin`]: the generation bumped,
//! `rolling` set) before its first daily write, and clears the mark once it has committed
//! ([`end`]). A pass that stops part-way leaves the mark; the next pass, which re-rolls
//! what the stopped one left, clears it.
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
use crate::{Result, Storage};

/// The marker document (absent: generation 0, not rolling).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rolling {
    /// Bumped by every pass that moves lines between days.
    pub generation: u64,
    /// Such a pass is part-way through the daily tables (or stopped part-way, and the
    /// next pass finishes it).
    pub rolling: bool,
    /// The aggregator lease epoch of the pass that set the generation.
    pub epoch: u64,
    /// When that pass began its re-roll.
    pub since: Option<DateTime<Utc>>,
}

/// The marker as stored.
pub async fn load(storage: &Storage) -> Result<Rolling> {
    Ok(storage
        .get_json(layout::DAILY_ROLLING)
        .await?
        .unwrap_or_default())
}

/// Marks the daily tables part-way, before the first daily write of a pass (of lease
/// `epoch`) that moves lines between days; `seen` is the marker the pass read at its
/// start. Returns the marker written, for [`end`].
pub async fn begin(storage: &Storage, seen: &Rolling, epoch: u64) -> Result<Rolling> {
    let begun = Rolling {
        generation: seen.generation + 1,
        rolling: true,
        epoch,
        since: Some(Utc::now()),
    };
    storage.put_json(layout::DAILY_ROLLING, &begun).await?;
    Ok(begun)
}

/// Clears the part-way mark of `begun` (a pass's own, or one a stopped pass left) once
/// the daily tables are whole again.
pub async fn end(storage: &Storage, begun: &Rolling) -> Result<()> {
    let ended = Rolling {
        rolling: false,
        ..begun.clone()
    };
    storage.put_json(layout::DAILY_ROLLING, &ended).await
}

/// Why [`settled`] gave up: the daily tables stayed part-way for longer than the reader
/// would wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled(pub Rolling);

impl std::fmt::Display for Unsettled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = self.0.since.map_or("an unknown time".to_owned(), |t| {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        });
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

/// Reads the daily tables with `read` once no pass is part-way through moving lines
/// between days, and again (from scratch: `read` starts over) when one began or ended
/// while it read. Waits up to `patience` for a pass under way to end; `Ok(Err(..))`
/// when it did not.
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
    let started = Instant::now();
    let mut seen = load(storage).await?;
    loop {
        if seen.rolling {
            if started.elapsed() + POLL > patience {
                return Ok(Err(Unsettled(seen)));
            }
            tokio::time::sleep(POLL).await;
            seen = load(storage).await?;
            continue;
        }
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
    /// read that a whole pass overlapped is done again, a plain read once.
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

        let seen = load(&storage).await.unwrap();
        let begun = begin(&storage, &seen, 7).await.unwrap();
        let waited = settled(&storage, Duration::ZERO, count).await.unwrap();
        assert_eq!(waited, Err(Unsettled(begun.clone())));
        assert!(waited.unwrap_err().to_string().contains("lease epoch 7"));
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);

        // A reader that waits sees the pass end, then reads once.
        let (ended, read) = tokio::join!(
            async {
                tokio::time::sleep(POLL * 2).await;
                end(&storage, &begun).await.unwrap();
            },
            settled(&storage, POLL * 20, count)
        );
        let () = ended;
        assert_eq!(read.unwrap(), Ok(2));

        // A whole pass within one read: the read is done again.
        let (passes, store) = (&std::sync::atomic::AtomicUsize::new(0), &storage);
        let got = settled(&storage, Duration::ZERO, move || async move {
            if passes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                let seen = load(store).await?;
                let b = begin(store, &seen, 8).await?;
                end(store, &b).await?;
            }
            count().await
        })
        .await
        .unwrap();
        assert_eq!(got, Ok(4));
        assert_eq!(load(&storage).await.unwrap().generation, 2);
    }
}
