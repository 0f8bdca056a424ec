//! Service mode: a pass at start, another when new raw data lands (polled), none while
//! nothing changes, one when an object ingest had not committed is committed (its
//! listing unchanged), and a clean stop on shutdown.

mod common;

use std::time::Duration;

use common::*;
use spectra_aggregator::{date_text, run, AggregateOptions};
use spectra_core::checkpoint::{checkpoint_path, object_name, Intent, PartitionState};
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

    // An object of ingest's batch in flight (its intent pending in the partition's
    // state): left alone until the checkpoint lands, then rolled up though the
    // listing did not change.
    let object = |epoch| {
        format!(
            "raw/invoices/date={}/{}",
            date_text(base_day() + 2),
            object_name("invoices", 0, 200, 202, epoch)
        )
    };
    let mut state = PartitionState {
        next_offset: Some(200),
        epoch: 1,
        pending: Some(Intent {
            epoch: 1,
            first: 200,
            last: 202,
            objects: vec![object(1)],
        }),
        ..PartitionState::default()
    };
    let state_path = checkpoint_path("invoices", 0);
    storage.put_json(&state_path, &state).await.unwrap();
    let tag = object(1)
        .rsplit('/')
        .next()
        .unwrap()
        .strip_prefix("invoices-")
        .unwrap()
        .strip_suffix(".parquet")
        .unwrap()
        .to_owned();
    write_raw(&storage, &tag, &day_lines(2, 200)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(storage.get(&manifest(2)).await.unwrap().is_none());
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("spectra_aggregate_days_rerolled_total 2"),
        "{metrics}"
    );
    state.pending = None;
    state.next_offset = Some(203);
    storage.put_json(&state_path, &state).await.unwrap();
    wait_for(manifest(2)).await;

    ctx.shutdown.cancel();
    let last = tokio::time::timeout(Duration::from_secs(10), service)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(last.as_of, Some(date_text(base_day() + 2)));
    assert_eq!(last.days_rerolled, 1);
    assert!(last.deferred_raw_objects.is_empty());
}
