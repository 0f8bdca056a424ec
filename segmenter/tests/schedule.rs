//! Schedules, with the clock in the test's hand: `spectra segment` as a service runs a
//! cron-scheduled segmentation at its fire times when its features changed — a
//! same-date correction (late lines) included, features rewritten unchanged not — and
//! `daily` runs a new as-of date at once and a same-date correction at midnight. The
//! features are the real aggregator's, over lines written as ingest writes them.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use spectra_core::schedule::Clock;
use spectra_core::service::Context;
use spectra_core::tables::runs::Latest;
use spectra_core::{Config, Storage};
use spectra_segmenter::{run, SegmentOptions, Summary};
use tokio_util::sync::CancellationToken;

use common::*;

/// A clock the test sets.
#[derive(Debug)]
struct HandClock(Mutex<DateTime<Utc>>);

impl HandClock {
    fn at(t: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(t)))
    }
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for HandClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn utc(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap()
}

async fn latest(storage: &Storage, name: &str) -> Option<Latest> {
    spectra_segmenter::runs::latest(storage, name)
        .await
        .unwrap()
}

/// Waits (up to 30 s) for the latest run to be `run_id`.
async fn wait_for_run(storage: &Storage, name: &str, run_id: &str) -> Latest {
    for _ in 0..300 {
        if let Some(l) = latest(storage, name).await {
            if l.run_id == run_id {
                return l;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no run {run_id} within 30 s; latest: {:?}",
        latest(storage, name).await
    );
}

/// Three polls of the service (1 s each) go by without a new run.
async fn no_run_for_three_polls(storage: &Storage, name: &str, still: &str) {
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert_eq!(
        latest(storage, name).await.map(|l| l.run_id).as_deref(),
        Some(still),
        "the schedule did not fire, yet the segmentation ran"
    );
}

async fn once_at(cfg: &Config, clock: Arc<HandClock>, all: bool) -> Summary {
    let opts = SegmentOptions {
        once: true,
        all,
        clock: Some(clock),
        ..Default::default()
    };
    run(cfg.clone(), Context::new(CancellationToken::new()), opts)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_segmentation_runs_at_its_fire_times_when_its_features_changed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let storage = Storage::from_url(&url).unwrap();
    // 06:00 in Warsaw every day: 05:00 UTC in November.
    let mut cfg = config(
        &url,
        segmentation(json!({
            "name": "cron", "k": 3, "seed": 3, "max_change_share": 1.0,
            "schedule": "0 6 * * *", "timezone": "Europe/Warsaw",
        })),
    );
    cfg.segment.poll_seconds = 1;
    let clock = HandClock::at(utc(1, 10, 0));
    let mut feed = Feed::new(&cfg);
    let mut planted = outlets(300);
    feed.day(&planted, date(1)).await;

    let token = CancellationToken::new();
    let opts = SegmentOptions {
        clock: Some(clock.clone()),
        ..Default::default()
    };
    let service = tokio::spawn(run(cfg.clone(), Context::new(token.clone()), opts));

    // The first run does not wait for a fire.
    let first = wait_for_run(&storage, "cron", "cron/2026-11-01/1").await;
    assert_eq!(first.ran_at, Some(utc(1, 10, 0)), "ran_at is the clock's");

    // Late lines correct 2026-11-01: 30 outlets bought like the next group. The
    // features change, but the next fire is 2026-11-02 05:00 UTC.
    for o in planted.iter_mut().take(90).filter(|o| o.segment == 0) {
        o.segment = 1;
    }
    feed.day(&planted, date(1)).await;
    clock.set(utc(2, 4, 59));
    no_run_for_three_polls(&storage, "cron", "cron/2026-11-01/1").await;

    // The fire: the corrected date is segmented again.
    clock.set(utc(2, 5, 0));
    let second = wait_for_run(&storage, "cron", "cron/2026-11-01/2").await;
    assert_eq!(second.ran_at, Some(utc(2, 5, 0)));
    assert_ne!(second.features_hash, first.features_hash);
    let (a1, a2) = (
        assignments(&storage, &first.path).await,
        assignments(&storage, &second.path).await,
    );
    let corrected: Vec<&Planted> = planted
        .iter()
        .take(90)
        .filter(|o| o.segment == 1 && a1[&o.id].0 != a2[&o.id].0)
        .collect();
    assert!(
        corrected.len() >= 27,
        "the corrected outlets moved: {} of 30",
        corrected.len()
    );

    // An aggregator pass with nothing new rewrites the same features (same hash): the
    // next fire does not run.
    feed.aggregate(date(1)).await;
    clock.set(utc(3, 5, 0));
    no_run_for_three_polls(&storage, "cron", "cron/2026-11-01/2").await;

    // A new as-of date after that fire waits for the next one.
    feed.day(&planted, date(2)).await;
    clock.set(utc(3, 12, 0));
    no_run_for_three_polls(&storage, "cron", "cron/2026-11-01/2").await;
    clock.set(utc(4, 5, 1));
    wait_for_run(&storage, "cron", "cron/2026-11-02/1").await;

    token.cancel();
    let summary = service.await.unwrap().unwrap();
    let ids: Vec<&str> = summary.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "cron/2026-11-01/1",
            "cron/2026-11-01/2",
            "cron/2026-11-02/1"
        ]
    );

    // `--once` runs what is due (nothing), `--once --all` everything.
    let s = once_at(&cfg, HandClock::at(utc(4, 6, 0)), false).await;
    assert!(s.runs.is_empty() && s.up_to_date == ["cron"], "{s:?}");
    let s = once_at(&cfg, HandClock::at(utc(4, 6, 0)), true).await;
    assert_eq!(s.runs.len(), 1, "{s:?}");
    assert_eq!(s.runs[0].run_id, "cron/2026-11-02/2");
    assert_eq!(s.runs[0].moved, 0, "identical data moves nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_runs_a_new_date_at_once_and_a_same_date_correction_at_midnight() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let storage = Storage::from_url(&url).unwrap();
    let cfg = config(
        &url,
        segmentation(json!({
            "name": "day", "k": 3, "seed": 3, "max_change_share": 1.0,
            "timezone": "America/New_York",
        })),
    );
    let mut feed = Feed::new(&cfg);
    let mut planted = outlets(150);
    feed.day(&planted, date(1)).await;
    let s = once_at(&cfg, HandClock::at(utc(1, 15, 0)), false).await;
    assert_eq!(s.runs.len(), 1);
    feed.day(&planted, date(2)).await;
    let s = once_at(&cfg, HandClock::at(utc(1, 15, 5)), false).await;
    assert_eq!(
        s.runs[0].run_id, "day/2026-11-02/1",
        "a new date runs at once"
    );

    // A correction of 2026-11-02 waits for midnight in New York (05:00 UTC).
    planted[0].segment = 2;
    feed.day(&planted, date(2)).await;
    let s = once_at(&cfg, HandClock::at(utc(2, 4, 59)), false).await;
    assert!(s.runs.is_empty(), "{s:?}");
    let s = once_at(&cfg, HandClock::at(utc(2, 5, 0)), false).await;
    assert_eq!(s.runs.len(), 1, "{s:?}");
    assert_eq!(s.runs[0].run_id, "day/2026-11-02/2");
    let l = latest(&storage, "day").await.unwrap();
    assert_eq!(l.ran_at, Some(utc(2, 5, 0)));
    // Once run, it is up to date until the features change again.
    let s = once_at(&cfg, HandClock::at(utc(3, 5, 0)), false).await;
    assert!(s.runs.is_empty(), "{s:?}");
}
