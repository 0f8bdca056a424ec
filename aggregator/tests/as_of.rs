//! The default as-of date: the last real day of the feed, never steered by a handful of
//! lines on a later or far-future date, and moving back when the latest day is
//! corrected away — computed from the daily table each pass, with `current.json`
//! following it.

mod common;

use common::*;
use spectra_aggregator::metrics::AggregateMetrics;
use spectra_aggregator::{date_text, run_once, AggregateOptions};
use spectra_core::telemetry::Metrics;
use spectra_core::{Config, Storage};

/// 20 outlets buying 3 SKUs every day for 30 days: 60 rows a day.
fn feed() -> Vec<Delivery> {
    let mut out = Vec::new();
    for day in 0..30 {
        for o in 0..20 {
            for l in 0..3 {
                out.push(Delivery {
                    distributor: "D1".into(),
                    invoice: format!("I{day}-{o}"),
                    line_no: l,
                    date: base_day() + day,
                    outlet: format!("O{o}"),
                    sku: format!("S{l}"),
                    quantity: 1.0,
                    net_value: 10.0,
                    ts: 1,
                    partition: 0,
                    offset: out.len() as i64,
                });
            }
        }
    }
    out
}

/// One stray line per unknown outlet on `date`, from another distributor.
fn stray(date: i32, n: usize, offset: i64) -> Vec<Delivery> {
    (0..n)
        .map(|i| Delivery {
            distributor: "D7".into(),
            invoice: format!("X{date}-{i}"),
            line_no: 0,
            date,
            outlet: format!("UNKNOWN-{i}"),
            sku: "S0".into(),
            quantity: 1.0,
            net_value: 5.0,
            ts: 2,
            partition: 1,
            offset: offset + i as i64,
        })
        .collect()
}

async fn pointer(storage: &Storage) -> String {
    let v: serde_json::Value = storage
        .get_json("features/segmentation=mix/current.json")
        .await
        .unwrap()
        .expect("current.json");
    v["as_of"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn stray_lines_never_move_the_as_of_and_a_correction_moves_it_back() {
    let storage = Storage::memory();
    let cfg = Config {
        segmentation: vec![segmentation("mix", "category", 7, None)],
        ..Config::default()
    };
    let metrics = AggregateMetrics::register(&Metrics::new());
    let opts = AggregateOptions {
        once: true,
        ..AggregateOptions::default()
    };
    let last = base_day() + 29;
    let feed = feed();
    write_raw(&storage, "feed", &feed).await;
    let s = run_once(&cfg, &storage, &opts, &metrics).await.unwrap();
    assert_eq!(s.as_of.as_deref(), Some(date_text(last).as_str()));
    assert!(s.as_of_passed_over.is_empty());
    assert_eq!(pointer(&storage).await, date_text(last));

    // 12 lines for 12 unknown outlets dated 2199-12-31 (far after today) and 3 on the
    // day after the last real day (in the past, but a twentieth of a normal day).
    let far = spectra_aggregator::days_of("2199-12-31".parse().unwrap());
    let mut junk = stray(far, 12, 100_000);
    junk.extend(stray(last + 1, 3, 200_000));
    write_raw(&storage, "junk", &junk).await;
    let s = run_once(&cfg, &storage, &opts, &metrics).await.unwrap();
    assert_eq!(s.as_of.as_deref(), Some(date_text(last).as_str()), "{s:?}");
    assert_eq!(
        s.as_of_passed_over,
        [date_text(last + 1), "2199-12-31".to_owned()]
    );
    assert_eq!(pointer(&storage).await, date_text(last));
    let (_, kpis) = read_features(&storage, "mix", last).await;
    assert_eq!(kpis.len(), 20, "the real outlets are the segmentation");

    // `--as-of` still overrides.
    let forced = AggregateOptions {
        as_of: Some(spectra_aggregator::date_of(last - 3)),
        ..opts.clone()
    };
    let s = run_once(&cfg, &storage, &forced, &metrics).await.unwrap();
    assert_eq!(s.as_of.as_deref(), Some(date_text(last - 3).as_str()));
    assert_eq!(pointer(&storage).await, date_text(last - 3));

    // The distributor corrects the last day: every line of it re-sent dated a day
    // earlier. The last day is empty now, so the as-of moves back.
    let corrected: Vec<Delivery> = feed
        .iter()
        .filter(|d| d.date == last)
        .enumerate()
        .map(|(i, d)| Delivery {
            date: last - 1,
            ts: 10,
            offset: 300_000 + i as i64,
            ..d.clone()
        })
        .collect();
    write_raw(&storage, "fix", &corrected).await;
    let s = run_once(&cfg, &storage, &opts, &metrics).await.unwrap();
    assert_eq!(
        s.as_of.as_deref(),
        Some(date_text(last - 1).as_str()),
        "{s:?}"
    );
    assert_eq!(pointer(&storage).await, date_text(last - 1));
    let (_, kpis) = read_features(&storage, "mix", last - 1).await;
    assert_eq!(kpis.len(), 20);
}
