//! Property: for random feeds with redeliveries and corrections (lines moved to other
//! days, values changed, exact duplicates, versions arriving out of order) delivered
//! over several incremental passes, every window feature equals a brute-force
//! recomputation from the raw lines, and a from-scratch rebuild gives the same daily
//! table.

mod common;

use common::*;
use proptest::prelude::*;
use spectra_aggregator::metrics::AggregateMetrics;
use spectra_aggregator::{run_once, AggregateOptions};
use spectra_core::telemetry::Metrics;
use spectra_core::{Config, Storage};

#[derive(Debug, Clone)]
struct Raw {
    identity: (u8, u8, u8),
    day: i32,
    outlet: u8,
    sku: u8,
    quantity: i8,
    net: i16,
    ts: i64,
    partition: i32,
    duplicate: bool,
}

fn raw() -> impl Strategy<Value = Raw> {
    (
        (0u8..2, 0u8..4, 0u8..3),
        0i32..10,
        0u8..3,
        0u8..5,
        -3i8..10,
        -50i16..200,
        0i64..40,
        0i32..2,
        proptest::bool::weighted(0.15),
    )
        .prop_map(
            |(identity, day, outlet, sku, quantity, net, ts, partition, duplicate)| Raw {
                identity,
                day,
                outlet,
                sku,
                quantity,
                net,
                ts,
                partition,
                duplicate,
            },
        )
}

fn feed(raws: &[Raw]) -> Vec<Delivery> {
    let mut out: Vec<Delivery> = Vec::new();
    for (i, r) in raws.iter().enumerate() {
        if r.duplicate && !out.is_empty() {
            // The same message delivered again, unchanged.
            let again = out[i / 2].clone();
            out.push(again);
            continue;
        }
        out.push(Delivery {
            distributor: format!("D{}", r.identity.0),
            invoice: format!("INV-{}", r.identity.1),
            line_no: i64::from(r.identity.2),
            date: base_day() + r.day,
            outlet: format!("O{}", r.outlet),
            sku: format!("S{}", r.sku),
            quantity: f64::from(r.quantity),
            net_value: f64::from(r.net) / 4.0,
            ts: r.ts,
            partition: r.partition,
            offset: i as i64,
        });
    }
    out
}

fn category(sku: &str) -> String {
    match sku {
        "S0" | "S1" => "A".into(),
        "S2" => "B".into(),
        _ => "unknown".into(),
    }
}

fn sku_level(sku: &str) -> String {
    match sku {
        "S0" | "S1" | "S2" => sku.into(),
        _ => "unknown".into(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 32, ..ProptestConfig::default() })]

    #[test]
    fn window_features_equal_brute_force(
        raws in proptest::collection::vec(raw(), 1..36),
        passes in 1usize..4,
        as_of_day in 0i32..12,
        window in 1u32..12,
        half_life in proptest::option::of(1u8..10),
        by_sku in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let storage = Storage::memory();
            write_skus(&storage, 0, &[("S0", Some("A")), ("S1", Some("A")), ("S2", Some("B")), ("S3", Some("C"))]).await;
            // S3 removed later: a tombstone wins over the earlier record.
            write_skus(&storage, 1, &[("S9", Some("Z")), ("S3", None)]).await;
            let level = if by_sku { "sku" } else { "category" };
            let seg = segmentation("mix", level, window, half_life.map(f64::from));
            let mut cfg = Config::default();
            cfg.storage.url = "memory://".into();
            cfg.segmentation = vec![seg.clone()];
            let metrics = AggregateMetrics::register(&Metrics::new());
            let as_of = base_day() + as_of_day;
            let opts = AggregateOptions {
                once: true,
                as_of: Some(spectra_aggregator::date_of(as_of)),
                ..AggregateOptions::default()
            };
            let feed = feed(&raws);
            let feature_of: &dyn Fn(&str) -> String = if by_sku { &sku_level } else { &category };
            let per_pass = feed.len().div_ceil(passes);
            for (p, part) in feed.chunks(per_pass).enumerate() {
                write_raw(&storage, &format!("pass{p}"), part).await;
                let s = run_once(&cfg, &storage, &opts, &metrics).await.unwrap();
                assert_eq!(s.full, p == 0);
                let delivered = &feed[..(p * per_pass + part.len())];
                let want = brute_force(delivered, &seg, as_of, feature_of);
                let got = read_features(&storage, "mix", as_of).await;
                assert_features_eq(&got, &want, &format!("after pass {p}"));
            }
            let incremental = daily_rows(&storage).await;
            let full = AggregateOptions { full: true, ..opts.clone() };
            let s = run_once(&cfg, &storage, &full, &metrics).await.unwrap();
            assert!(s.full);
            assert_eq!(daily_rows(&storage).await, incremental, "full rebuild differs from incremental passes");
            let want = brute_force(&feed, &seg, as_of, feature_of);
            assert_features_eq(&read_features(&storage, "mix", as_of).await, &want, "after full rebuild");
        });
    }
}
