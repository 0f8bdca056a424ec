//! Incrementality: a pass re-rolls only the days that received lines (and the days a
//! correction took a line from), touching only their daily partitions, and its result
//! equals a from-scratch run over the same raw files.

mod common;

use std::collections::BTreeMap;

use common::*;
use futures::TryStreamExt;
use spectra_aggregator::metrics::AggregateMetrics;
use spectra_aggregator::{date_text, run_once, AggregateOptions, Summary};
use spectra_core::telemetry::Metrics;
use spectra_core::{Config, Storage};

fn line(
    invoice: usize,
    line_no: i64,
    day: i32,
    outlet: usize,
    sku: usize,
    net: f64,
    offset: i64,
) -> Delivery {
    Delivery {
        distributor: "D1".into(),
        invoice: format!("INV-{invoice}"),
        line_no,
        date: base_day() + day,
        outlet: format!("O{outlet}"),
        sku: format!("S{sku}"),
        quantity: 1.0,
        net_value: net,
        ts: 1_000 + offset,
        partition: 0,
        offset,
    }
}

/// Last-modified time of every daily partition.
async fn daily_stamps(storage: &Storage) -> BTreeMap<String, chrono::DateTime<chrono::Utc>> {
    let store = storage.object_store();
    let prefix = storage.path("features/daily/");
    store
        .list(Some(&prefix))
        .map_ok(|m| (m.location.to_string(), m.last_modified))
        .try_collect()
        .await
        .unwrap()
}

fn touched(
    before: &BTreeMap<String, chrono::DateTime<chrono::Utc>>,
    after: &BTreeMap<String, chrono::DateTime<chrono::Utc>>,
) -> Vec<String> {
    after
        .iter()
        .filter(|(p, t)| before.get(*p) != Some(t))
        .map(|(p, _)| {
            p.split('/')
                .find(|s| s.starts_with("date="))
                .unwrap()
                .to_owned()
        })
        .collect()
}

struct Fixture {
    cfg: Config,
    metrics: AggregateMetrics,
    feed: Vec<Delivery>,
}

impl Fixture {
    async fn pass(&self, storage: &Storage, full: bool) -> Summary {
        let opts = AggregateOptions {
            once: true,
            full,
            as_of: Some(spectra_aggregator::date_of(base_day() + 11)),
            ..AggregateOptions::default()
        };
        run_once(&self.cfg, storage, &opts, &self.metrics)
            .await
            .unwrap()
    }

    /// Asserts that a from-scratch run over the same deliveries gives the same tables.
    async fn assert_equals_from_scratch(&self, storage: &Storage) {
        let fresh = Storage::memory();
        write_skus(&fresh, 0, &[("S0", Some("A")), ("S1", Some("B"))]).await;
        write_raw(&fresh, "all", &self.feed).await;
        let s = self.pass(&fresh, false).await;
        assert!(s.full);
        assert_eq!(daily_rows(storage).await, daily_rows(&fresh).await);
        let as_of = base_day() + 11;
        assert_eq!(
            read_features(storage, "mix", as_of).await,
            read_features(&fresh, "mix", as_of).await
        );
        let seg = &self.cfg.segmentation[0];
        let category = |s: &str| match s {
            "S0" => "A".to_owned(),
            "S1" => "B".to_owned(),
            _ => "unknown".to_owned(),
        };
        assert_features_eq(
            &read_features(storage, "mix", as_of).await,
            &brute_force(&self.feed, seg, as_of, &category),
            "incremental vs brute force",
        );
    }
}

#[tokio::test]
async fn one_new_day_rerolls_one_day_and_equals_a_full_run() {
    let storage = Storage::memory();
    write_skus(&storage, 0, &[("S0", Some("A")), ("S1", Some("B"))]).await;
    let cfg = Config {
        segmentation: vec![segmentation("mix", "category", 30, Some(7.0))],
        ..Config::default()
    };
    let mut fx = Fixture {
        cfg,
        metrics: AggregateMetrics::register(&Metrics::new()),
        feed: Vec::new(),
    };
    let mut offset = 0;
    for day in 0..10 {
        for inv in 0..3 {
            for l in 0..3 {
                offset += 1;
                let (o, s) = ((inv + day as usize) % 4, (l as usize + inv) % 3);
                fx.feed.push(line(
                    day as usize * 10 + inv,
                    l,
                    day,
                    o,
                    s,
                    10.0 + offset as f64,
                    offset,
                ));
            }
        }
    }
    write_raw(&storage, "p0", &fx.feed).await;
    let s = fx.pass(&storage, false).await;
    assert!(s.full);
    assert_eq!(s.days_rerolled, 10);

    // A new day: exactly one partition re-rolled.
    let before = daily_stamps(&storage).await;
    let new_day: Vec<Delivery> = (0..4)
        .map(|l| {
            offset += 1;
            line(100, l, 10, 1, 0, 5.0, offset)
        })
        .collect();
    write_raw(&storage, "p1", &new_day).await;
    fx.feed.extend(new_day);
    let s = fx.pass(&storage, false).await;
    assert!(!s.full);
    assert_eq!((s.files_new, s.days_rerolled, s.rows_read), (1, 1, 4));
    assert_eq!(
        touched(&before, &daily_stamps(&storage).await),
        [format!("date={}", date_text(base_day() + 10))]
    );
    fx.assert_equals_from_scratch(&storage).await;

    // A late line for an old day re-rolls that day only.
    let before = daily_stamps(&storage).await;
    offset += 1;
    let late = vec![line(101, 0, 4, 2, 1, 7.5, offset)];
    write_raw(&storage, "p2", &late).await;
    fx.feed.extend(late);
    let s = fx.pass(&storage, false).await;
    assert_eq!(s.days_rerolled, 1);
    assert_eq!(
        touched(&before, &daily_stamps(&storage).await),
        [format!("date={}", date_text(base_day() + 4))]
    );
    fx.assert_equals_from_scratch(&storage).await;

    // A correction moving a day-2 line to day 11: both days re-rolled, day 2 loses it.
    let before = daily_stamps(&storage).await;
    offset += 1;
    let mut moved = fx
        .feed
        .iter()
        .find(|d| d.date == base_day() + 2)
        .unwrap()
        .clone();
    moved.date = base_day() + 11;
    moved.net_value = 99.0;
    moved.offset = offset;
    moved.ts = 1_000 + offset;
    write_raw(&storage, "p3", std::slice::from_ref(&moved)).await;
    fx.feed.push(moved);
    let s = fx.pass(&storage, false).await;
    assert_eq!((s.days_rerolled, s.lines_moved), (2, 1));
    assert_eq!(
        touched(&before, &daily_stamps(&storage).await),
        [
            format!("date={}", date_text(base_day() + 2)),
            format!("date={}", date_text(base_day() + 11))
        ]
    );
    fx.assert_equals_from_scratch(&storage).await;

    // Nothing new: nothing re-rolled.
    let before = daily_stamps(&storage).await;
    let s = fx.pass(&storage, false).await;
    assert_eq!((s.files_new, s.days_rerolled), (0, 0));
    assert!(touched(&before, &daily_stamps(&storage).await).is_empty());
}
