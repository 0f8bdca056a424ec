//! Service mode: a pass at start, another when new raw data lands (polled), none while
//! nothing changes, and a clean stop on shutdown.

mod common;

use std::time::Duration;

use common::*;
use spectra_aggregator::{date_text, run, AggregateOptions};
use spectra_core::service::Context;
use spectra_core::{Config, Storage};
use tokio_util::sync::CancellationToken;

fn day_lines(day: i32, offset: i64) -> Vec<Delivery> {
    (0..3)
        .map(|l| Delivery {
            distributor: "D".into(),
            invoice: format!("I{day}"),
            line_no: l,
            date: base_day() + day,
            outlet: format!("O{l}"),
            sku: "S0".into(),
            quantity: 1.0,
            net_value: 2.0,
            ts: offset + l,
            partition: 0,
            offset: offset + l,
        })
        .collect()
}

#[tokio::test]
async fn service_rolls_up_what_lands_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let storage = Storage::from_url(&url).unwrap();
    write_raw(&storage, "a", &day_lines(0, 0)).await;
    let mut cfg = Config::default();
    cfg.storage.url = url;
    cfg.aggregate.poll_seconds = 1;
    cfg.segmentation = vec![segmentation("mix", "sku", 7, None)];
    let ctx = Context::new(CancellationToken::new());
    let service = tokio::spawn(run(cfg, ctx.clone(), AggregateOptions::default()));

    let manifest = |day: i32| {
        format!(
            "features/segmentation=mix/as_of={}/_manifest.json",
            date_text(base_day() + day)
        )
    };
    let wait_for = |path: String| {
        let storage = storage.clone();
        async move {
            for _ in 0..100 {
                if storage.get(&path).await.unwrap().is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{path} never appeared");
        }
    };
    wait_for(manifest(0)).await;
    // The pass writes its manifest last and is counted when it returns, a moment later.
    let mut counted = false;
    for _ in 0..50 {
        counted = ctx
            .metrics
            .encode()
            .contains("spectra_aggregate_runs_total 1");
        if counted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(counted, "{}", ctx.metrics.encode());
    write_raw(&storage, "b", &day_lines(1, 100)).await;
    wait_for(manifest(1)).await;
    let (_, kpis) = read_features(&storage, "mix", base_day() + 1).await;
    assert_eq!(kpis["O0"].lines, 2, "both days in the window");
    // Nothing new: no further pass.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("spectra_aggregate_runs_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("spectra_aggregate_days_rerolled_total 2"),
        "{metrics}"
    );
    ctx.shutdown.cancel();
    let last = tokio::time::timeout(Duration::from_secs(10), service)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(last.as_of, Some(date_text(base_day() + 1)));
    assert_eq!(last.days_rerolled, 1);
}
