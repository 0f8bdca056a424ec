//! One pass at a time: the aggregator's lease, the conditional commit of its state,
//! and raw objects deleted under it (retention) held instead of silently re-rolled.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use spectra_aggregator::lease::Lease;
use spectra_aggregator::metrics::AggregateMetrics;
use spectra_aggregator::state::State;
use spectra_aggregator::{date_of, date_text, run_once, AggregateOptions, Error};
use spectra_core::tables::{layout, rolling};
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

/// An in-memory store that, once armed, holds back (or fails) the writes of one object:
/// a pass stopped between two of its daily writes, deterministically.
#[derive(Debug, Default)]
struct Gate {
    inner: InMemory,
    rule: std::sync::Mutex<Option<Hold>>,
}

/// The object [`Gate`] holds back (once `after` writes of it went through), what it
/// says when a write reaches it, and what lets the write through (or that it fails).
#[derive(Debug, Clone)]
struct Hold {
    path: String,
    after: Arc<std::sync::atomic::AtomicUsize>,
    reached: Arc<tokio::sync::Notify>,
    open: Arc<tokio::sync::Semaphore>,
    fail: bool,
}

impl Hold {
    /// Holds back the writes of `path` until let through.
    fn new(path: &str) -> Self {
        Hold {
            path: path.to_owned(),
            after: Arc::default(),
            reached: Arc::default(),
            open: Arc::new(tokio::sync::Semaphore::new(0)),
            fail: false,
        }
    }
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gate({})", self.inner)
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for Gate {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let hold = self.rule.lock().unwrap().clone();
        let through = |h: &Hold| {
            use std::sync::atomic::Ordering::SeqCst;
            h.after
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
        };
        if let Some(h) = hold.filter(|h| h.path == location.as_ref() && !through(h)) {
            if h.fail {
                return Err(object_store::Error::Generic {
                    store: "Gate",
                    source: format!("{location}: held back").into(),
                });
            }
            h.reached.notify_one();
            h.open.acquire().await.unwrap().forget();
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// Net value and lines of every day in the daily table, as a reader of it sums them.
async fn totals(storage: &Storage) -> spectra_core::Result<(f64, i64)> {
    let days = [(date_of(base_day() - 1), date_of(base_day() + 9))];
    let rows = spectra_core::tables::features::read_daily(storage, &days).await?;
    Ok((
        rows.iter().map(|r| r.net_value).sum(),
        rows.iter().map(|r| r.lines).sum(),
    ))
}

/// A correction that moves a line to another day re-rolls both days, one write after
/// the other. A reader between the two (the segmenter's recommendations, the 360
/// history) counted the line on neither day, or on both; it now waits for the pass,
/// or reads again when one ran meanwhile, and a pass that stopped part-way holds
/// readers off until the next pass has re-rolled what it left.
#[tokio::test]
async fn readers_never_see_a_line_moved_between_days_half_way() {
    let gate = Arc::new(Gate::default());
    let storage = Storage::wrapping(gate.clone());
    let cfg = Config::default();
    let metrics = AggregateMetrics::register(&Metrics::new());
    let first = vec![
        line(1, 0, 0, 10.0, 1),
        line(2, 0, 0, 20.0, 2),
        line(3, 0, 1, 5.0, 3),
    ];
    write_raw(&storage, "a", &first).await;
    run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    assert_eq!(totals(&storage).await.unwrap(), (35.0, 3));
    let settled = |patience| {
        let storage = storage.clone();
        async move {
            rolling::settled(&storage, patience, || totals(&storage))
                .await
                .unwrap()
        }
    };

    // Invoice 1's line corrected (10 → 11) and moved from day 0 to day 1; the pass's
    // write of day 1 held back once day 0's has landed.
    let moved = vec![line(1, 0, 1, 11.0, 4)];
    write_raw(&storage, "b", &moved).await;
    let hold = Hold::new(&layout::daily(date_of(base_day() + 1)));
    *gate.rule.lock().unwrap() = Some(hold.clone());
    let mut pass = tokio::spawn({
        let (cfg, storage, metrics) = (cfg.clone(), storage.clone(), metrics.clone());
        async move { run_once(&cfg, &storage, &opts(true, false), &metrics).await }
    });
    tokio::select! {
        () = hold.reached.notified() => {}
        ended = &mut pass => panic!("the pass ended before its write of day 1: {ended:?}"),
        () = tokio::time::sleep(Duration::from_secs(60)) => panic!("no write of day 1"),
    }
    let day0 = [(date_of(base_day()), date_of(base_day()))];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while spectra_core::tables::features::read_daily(&storage, &day0)
        .await
        .unwrap()
        .iter()
        .map(|r| r.net_value)
        .sum::<f64>()
        != 20.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "day 0 never re-rolled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // What a plain read of the folders sees now: the moved line on neither day.
    assert_eq!(totals(&storage).await.unwrap(), (25.0, 2));
    // A reader that does not wait is told why; one that waits gets the pass's result.
    let refused = settled(Duration::ZERO).await.unwrap_err();
    assert!(refused.0.rolling, "{refused}");
    let waiting = tokio::spawn(settled(Duration::from_secs(60)));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!waiting.is_finished(), "the reader waits for the pass");
    hold.open.add_permits(1);
    let s = pass.await.unwrap().unwrap();
    assert_eq!(s.lines_moved, 1);
    assert_eq!(waiting.await.unwrap(), Ok((36.0, 3)));
    // The first roll-up (a rebuild) was generation 1, this pass 2.
    let marker = rolling::load(&storage).await.unwrap();
    assert_eq!((marker.generation, marker.rolling), (2, false));

    // Moved back (12, day 0) by a pass that stops at day 1's write: the mark stays, and
    // readers are held off until the next pass has re-rolled what it left.
    let back = vec![line(1, 0, 0, 12.0, 5)];
    write_raw(&storage, "c", &back).await;
    *gate.rule.lock().unwrap() = Some(Hold { fail: true, ..hold });
    assert!(run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .is_err());
    assert!(settled(Duration::ZERO).await.is_err());
    *gate.rule.lock().unwrap() = None;
    let s = run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    assert_eq!(s.lines_moved, 1);
    assert_eq!(settled(Duration::ZERO).await, Ok((37.0, 3)));
    let fresh = rolled_up_from_scratch(&cfg, &metrics, &[first, moved, back].concat()).await;
    assert_eq!(
        strip(daily_rows(&storage).await),
        strip(daily_rows(&fresh).await)
    );

    // Invoice 2's line moved to day 1 (21) by a pass that commits but cannot clear its
    // mark: readers are held off until the next pass, which moves nothing, clears it.
    let again = vec![line(2, 0, 1, 21.0, 6)];
    write_raw(&storage, "d", &again).await;
    *gate.rule.lock().unwrap() = Some(Hold {
        after: Arc::new(1.into()),
        fail: true,
        ..Hold::new(layout::DAILY_ROLLING)
    });
    assert!(run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .is_err());
    assert!(settled(Duration::ZERO).await.unwrap_err().0.rolling);
    *gate.rule.lock().unwrap() = None;
    write_raw(&storage, "e", &[line(4, 0, 2, 1.0, 7)]).await;
    let s = run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    assert_eq!(s.lines_moved, 0);
    assert_eq!(settled(Duration::ZERO).await, Ok((39.0, 4)));
    // The stopped pass was 3, the next 4, the one that could not clear 5; the pass
    // after it cleared it, and a pass with nothing to move leaves it as it is.
    write_raw(&storage, "f", &[line(5, 0, 2, 2.0, 8)]).await;
    run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    let marker = rolling::load(&storage).await.unwrap();
    assert_eq!((marker.generation, marker.rolling), (5, false));
}

/// A correction that moves a line onto a held day (a raw object of it gone) lands when
/// the object is restored: that pass moves no line itself, yet re-rolls the day a line
/// moved to, so it marks the daily tables part-way like a pass that moves lines.
#[tokio::test]
async fn a_released_day_is_re_rolled_under_the_mark() {
    let storage = Storage::memory();
    let cfg = Config::default();
    let metrics = AggregateMetrics::register(&Metrics::new());
    let first = vec![line(1, 0, 0, 10.0, 1), line(2, 0, 1, 20.0, 2)];
    write_raw(&storage, "a", &first[..1]).await;
    write_raw(&storage, "b", &first[1..]).await;
    run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    let b = format!(
        "raw/invoices/date={}/invoices-b.parquet",
        date_text(base_day() + 1)
    );
    let kept = storage.get(&b).await.unwrap().unwrap();
    storage.delete(&b).await.unwrap();
    // Invoice 1's line moved onto day 1, held: day 0 loses it, day 1 is not re-rolled.
    let moved = vec![line(1, 0, 1, 11.0, 3)];
    write_raw(&storage, "c", &moved).await;
    let s = run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    assert_eq!((s.lines_moved, s.missing_days.len()), (1, 1));
    let before = rolling::load(&storage).await.unwrap().generation;

    storage.put(&b, kept).await.unwrap();
    let s = run_once(&cfg, &storage, &opts(true, false), &metrics)
        .await
        .unwrap();
    assert_eq!((s.lines_moved, s.days_rerolled), (0, 1));
    let marker = rolling::load(&storage).await.unwrap();
    assert_eq!((marker.generation, marker.rolling), (before + 1, false));
    let fresh = rolled_up_from_scratch(&cfg, &metrics, &[first, moved].concat()).await;
    assert_eq!(
        strip(daily_rows(&storage).await),
        strip(daily_rows(&fresh).await)
    );
}
