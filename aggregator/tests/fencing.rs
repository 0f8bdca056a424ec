//! One pass at a time: the aggregator's lease, the conditional commit of its state,
//! and raw objects deleted under it (retention) held instead of silently re-rolled.

mod common;

use std::time::Duration;

use common::*;
use spectra_aggregator::lease::Lease;
use spectra_aggregator::metrics::AggregateMetrics;
use spectra_aggregator::state::State;
use spectra_aggregator::{date_text, run_once, AggregateOptions, Error};
use spectra_core::telemetry::Metrics;
use spectra_core::{Config, Storage};

fn line(invoice: usize, line_no: i64, day: i32, net: f64, offset: i64) -> Delivery {
    Delivery {
        distributor: "D1".into(),
        invoice: format!("INV-{invoice}"),
        line_no,
        date: base_day() + day,
        outlet: format!("O{}", invoice % 3),
        sku: format!("S{}", line_no % 2),
        quantity: 1.0,
        net_value: net,
        ts: 1_000 + offset,
        partition: 0,
        offset,
    }
}

/// Daily rows without their first field.
fn strip(v: Vec<String>) -> Vec<String> {
    v.into_iter()
        .map(|r| r.split_once(' ').unwrap().1.to_owned())
        .collect()
}

/// A store holding `raw` only, rolled up by one pass: what a store's tables must equal.
async fn rolled_up_from_scratch(
    cfg: &Config,
    metrics: &AggregateMetrics,
    raw: &[Delivery],
) -> Storage {
    let fresh = Storage::memory();
    write_raw(&fresh, "all", raw).await;
    run_once(cfg, &fresh, &opts(true, false), metrics)
        .await
        .unwrap();
    fresh
}

fn opts(once: bool, full: bool) -> AggregateOptions {
    AggregateOptions {
        once,
        full,
        ..AggregateOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_incremental_and_full_passes_equal_a_from_scratch_run() {
    let storage = Storage::memory();
    let cfg = Config::default();
    let metrics = AggregateMetrics::register(&Metrics::new());
    let mut feed = Vec::new();
    let mut offset = 0;
    for round in 0..6usize {
        let mut batch = Vec::new();
        for inv in 0..4 {
            for l in 0..3 {
                offset += 1;
                batch.push(line(
                    round * 10 + inv,
                    l,
                    (round % 4) as i32,
                    1.0 + offset as f64,
                    offset,
                ));
            }
        }
        // Redeliveries of earlier lines: a later offset with another value wins.
        if round > 0 {
            for d in feed
                .iter()
                .step_by(7)
                .take(3)
                .cloned()
                .collect::<Vec<Delivery>>()
            {
                offset += 1;
                batch.push(Delivery {
                    net_value: d.net_value + 100.0,
                    offset,
                    ts: 1_000 + offset,
                    ..d
                });
            }
        }
        write_raw(&storage, &format!("r{round}"), &batch).await;
        feed.extend(batch);
        let (inc, full) = (opts(true, false), opts(true, round % 2 == 0));
        let (a, b) = tokio::join!(
            run_once(&cfg, &storage, &inc, &metrics),
            run_once(&cfg, &storage, &full, &metrics),
        );
        a.unwrap();
        b.unwrap();
    }
    run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    let fresh = rolled_up_from_scratch(&cfg, &metrics, &feed).await;
    assert_eq!(
        daily_rows(&storage).await.len(),
        daily_rows(&fresh).await.len()
    );
    assert_eq!(
        strip(daily_rows(&storage).await),
        strip(daily_rows(&fresh).await)
    );
}

#[tokio::test]
async fn a_live_lease_defers_the_service_and_a_stale_commit_is_fenced() {
    let storage = Storage::memory();
    let cfg = Config::default();
    let metrics = AggregateMetrics::register(&Metrics::new());
    write_raw(&storage, "a", &[line(1, 0, 0, 5.0, 1)]).await;
    let other = Lease::try_acquire(&storage, "other", Duration::from_secs(60))
        .await
        .unwrap()
        .ok()
        .unwrap();
    let e = run_once(&cfg, &storage, &opts(false, false), &metrics)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Busy { owner, .. } if owner == "other"),
        "{e}"
    );
    other.release().await;
    run_once(&cfg, &storage, &opts(false, false), &metrics)
        .await
        .unwrap();
    // A pass that read the state before another pass committed cannot commit.
    let (state, version) = State::load_versioned(&storage).await.unwrap();
    let state = state.unwrap();
    state.commit(&storage, version.clone()).await.unwrap();
    assert!(matches!(
        state.commit(&storage, version).await,
        Err(Error::Fenced(_))
    ));
}

#[tokio::test]
async fn deleted_raw_objects_are_reported_and_their_days_held() {
    let storage = Storage::memory();
    let cfg = Config::default();
    let metrics = AggregateMetrics::register(&Metrics::new());
    let day0: Vec<Delivery> = (0..3).map(|l| line(1, l, 0, 10.0, l + 1)).collect();
    let day1a: Vec<Delivery> = (0..3).map(|l| line(2, l, 1, 20.0, l + 10)).collect();
    let day1b: Vec<Delivery> = (0..3).map(|l| line(3, l, 1, 30.0, l + 20)).collect();
    write_raw(&storage, "a", &[day0.clone(), day1a].concat()).await;
    write_raw(&storage, "b", &day1b).await;
    run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    let before = daily_rows(&storage).await;

    // Retention deletes one of day 1's objects.
    let gone = format!(
        "raw/invoices/date={}/invoices-b.parquet",
        date_text(base_day() + 1)
    );
    storage.delete(&gone).await.unwrap();
    let s = run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    assert_eq!(s.missing_raw_objects, [gone.as_str()]);
    assert_eq!(s.missing_days, [date_text(base_day() + 1)]);
    assert_eq!(metrics.raw_missing_objects.get(), 1);
    let status = spectra_core::status::read_aggregator(&storage)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.missing_raw_objects, [gone.as_str()]);
    assert_eq!(status.missing_days, [date_text(base_day() + 1)]);
    assert_eq!(daily_rows(&storage).await, before);

    // New lines for the held day do not re-roll it from what is left.
    write_raw(
        &storage,
        "c",
        &[line(4, 0, 1, 1.0, 40), line(5, 0, 0, 1.0, 41)],
    )
    .await;
    let s = run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    assert_eq!(s.days_rerolled, 1);
    assert_eq!(s.missing_days, [date_text(base_day() + 1)]);
    let day1 = |rows: &[String]| -> Vec<String> {
        let d = format!("date={}", date_text(base_day() + 1));
        rows.iter().filter(|r| r.contains(&d)).cloned().collect()
    };
    assert_eq!(day1(&daily_rows(&storage).await), day1(&before));

    // The operator's deliberate rebuild: from the raw data as it is now.
    let s = run_once(&cfg, &storage, &opts(true, true), &metrics)
        .await
        .unwrap();
    assert!(s.missing_raw_objects.is_empty());
    assert_eq!(metrics.raw_missing_objects.get(), 0);
    assert_ne!(day1(&daily_rows(&storage).await), day1(&before));
    let status = spectra_core::status::read_aggregator(&storage)
        .await
        .unwrap()
        .unwrap();
    assert!(status.missing_days.is_empty() && status.last_pass_full);
}

/// The objects under a folder, sorted.
async fn paths(storage: &Storage, folder: &str) -> Vec<String> {
    let mut paths: Vec<String> = storage
        .list(folder)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    paths.sort();
    paths
}

/// A day whose raw objects are all deleted is held until an operator's `--full`
/// rebuild accepts the loss. The rebuild then removes the day's daily files too: the
/// window features read only the days the state names, but the recommendations and the
/// 360 view list the files, and the deleted lines still counted there.
#[tokio::test]
async fn a_full_rebuild_removes_the_days_left_without_raw_objects() {
    let storage = Storage::memory();
    let cfg = Config::default();
    let metrics = AggregateMetrics::register(&Metrics::new());
    let days: Vec<Vec<Delivery>> = (0..3)
        .map(|d| {
            (0..3)
                .map(|l| line(d * 10 + l as usize, l, d as i32, 5.0, d as i64 * 10 + l))
                .collect()
        })
        .collect();
    for (d, lines) in days.iter().enumerate() {
        write_raw(&storage, &format!("d{d}"), lines).await;
    }
    run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    let day0 = date_text(base_day());
    let on_day0 = |paths: &[String]| {
        paths
            .iter()
            .filter(|p| p.contains(&format!("date={day0}/")))
            .count()
    };
    assert_eq!(on_day0(&paths(&storage, "features/daily/").await), 1);
    assert_eq!(on_day0(&paths(&storage, "features/outlet_daily/").await), 1);

    // Every object of day 0 deleted: the day is held as it was.
    storage
        .delete(&format!("raw/invoices/date={day0}/invoices-d0.parquet"))
        .await
        .unwrap();
    let s = run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    assert_eq!(s.missing_days, [day0.as_str()]);
    assert_eq!(on_day0(&paths(&storage, "features/daily/").await), 1);

    // The rebuild accepts the loss: day 0's files go, the rest is a roll-up of the raw
    // objects that remain.
    let s = run_once(&cfg, &storage, &opts(true, true), &metrics)
        .await
        .unwrap();
    assert_eq!(s.days_removed, [day0.as_str()]);
    assert_eq!(on_day0(&paths(&storage, "features/daily/").await), 0);
    assert_eq!(on_day0(&paths(&storage, "features/outlet_daily/").await), 0);
    let fresh =
        rolled_up_from_scratch(&cfg, &metrics, &[days[1].clone(), days[2].clone()].concat()).await;
    assert_eq!(
        strip(daily_rows(&storage).await),
        strip(daily_rows(&fresh).await)
    );
    assert_eq!(
        paths(&storage, "features/outlet_daily/").await,
        paths(&fresh, "features/outlet_daily/").await
    );

    // A second rebuild finds nothing to remove.
    let s = run_once(&cfg, &storage, &opts(true, true), &metrics)
        .await
        .unwrap();
    assert!(s.days_removed.is_empty());
}

/// A `--full` pass removes the index and the superseded lines the committed state
/// names before it rebuilds them. One that stops part-way (here: an object it cannot
/// read) leaves a state that says a rebuild is under way, so the next pass rebuilds in
/// full; before, the old state stood with its index and superseded lines gone, and a
/// line moved to another day counted on both days once its first day was re-rolled.
#[tokio::test]
async fn an_interrupted_full_pass_leaves_a_full_rebuild() {
    let storage = Storage::memory();
    let cfg = Config::default();
    let metrics = AggregateMetrics::register(&Metrics::new());
    let first = vec![line(1, 0, 0, 10.0, 1), line(2, 0, 0, 20.0, 2)];
    // Invoice 1's line corrected: moved from day 0 to day 1.
    let moved = vec![line(1, 0, 1, 11.0, 3)];
    write_raw(&storage, "a", &first).await;
    run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    write_raw(&storage, "b", &moved).await;
    let s = run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    assert_eq!(s.lines_moved, 1);

    let bad = format!(
        "raw/invoices/date={}/invoices-bad.parquet",
        date_text(base_day() + 2)
    );
    storage
        .put(&bad, bytes::Bytes::from_static(b"not parquet"))
        .await
        .unwrap();
    assert!(run_once(&cfg, &storage, &opts(true, true), &metrics)
        .await
        .is_err());
    assert!(State::load(&storage).await.unwrap().is_none());
    storage.delete(&bad).await.unwrap();

    // A late line for day 0: the next (incremental) pass rebuilds in full.
    let late = vec![line(3, 0, 0, 30.0, 4)];
    write_raw(&storage, "c", &late).await;
    let s = run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    assert!(s.full, "the pass after an interrupted rebuild rebuilds");

    let fresh = rolled_up_from_scratch(&cfg, &metrics, &[first, moved, late].concat()).await;
    assert_eq!(
        strip(daily_rows(&storage).await),
        strip(daily_rows(&fresh).await)
    );
}
