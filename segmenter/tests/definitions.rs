//! Stored definitions drive the segment service (`spectra_core::tables::definitions`):
//! an edit of a run parameter is due at once on the same features (k turned "auto"
//! over a range that excludes the current k is chosen over it); an edit of the
//! level waits for features rolled up for it; a draft runs beside its segmentation
//! without touching it; a split and a merge by hand change only the segments they
//! name; a retired segmentation stops. The features are the real
//! aggregator's, over lines written as ingest writes them.

mod common;

use serde_json::json;
use spectra_core::config::KSpec;
use spectra_core::service::Context;
use std::collections::BTreeMap;

use spectra_core::tables::definitions::{self, Action, Appended, Operation, Source};
use spectra_core::Storage;
use tokio_util::sync::CancellationToken;

use common::*;

/// Writes the next version of `name` with `edit` applied to its definition.
async fn edit(
    storage: &Storage,
    name: &str,
    action: Action,
    f: impl FnOnce(&mut spectra_core::config::SegmentationConfig),
) {
    let cur = definitions::current(storage, name).await.unwrap().unwrap();
    let mut d = cur.definition.clone().unwrap();
    f(&mut d);
    let next = cur.next("test", Source::Api, action, "", Some(d));
    assert!(matches!(
        definitions::append(storage, next).await.unwrap(),
        Appended::Written(_)
    ));
}

/// Writes the next version of `mix` with `operation` and `k`.
async fn by_hand(storage: &Storage, action: Action, operation: Operation, k: usize) {
    let cur = definitions::current(storage, "mix").await.unwrap().unwrap();
    let mut d = cur.definition.clone().unwrap();
    d.k = KSpec::Fixed(k);
    let mut next = cur.next("test", Source::Api, action, "", Some(d));
    next.operation = Some(operation);
    assert!(matches!(
        definitions::append(storage, next).await.unwrap(),
        Appended::Written(_)
    ));
}

fn run_ids(s: &spectra_segmenter::Summary) -> Vec<&str> {
    s.runs.iter().map(|r| r.run_id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_run_at_once_level_edits_wait_for_their_features_and_drafts_run_apart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let storage = Storage::from_url(&url).unwrap();
    let cfg = config(
        &url,
        segmentation(json!({"name": "mix", "k": 3, "seed": 3, "max_change_share": 1.0})),
    );
    let ctx = Context::new(CancellationToken::new());
    let mut feed = Feed::new(&cfg);
    feed.day(&outlets(240), date(1)).await;
    let s = once(&cfg, &ctx).await;
    assert_eq!(run_ids(&s), ["mix/2026-11-01/1"]);
    let s = once(&cfg, &ctx).await;
    assert!(s.runs.is_empty(), "nothing changed: {s:?}");

    // k edited through the stored definition: due at once, on the same features.
    edit(&storage, "mix", Action::Edited, |d| d.k = KSpec::Fixed(4)).await;
    let s = once(&cfg, &ctx).await;
    assert_eq!(run_ids(&s), ["mix/2026-11-01/2"], "{s:?}");
    assert_eq!(s.runs[0].segments, 4);
    let latest = spectra_segmenter::runs::latest(&storage, "mix")
        .await
        .unwrap()
        .unwrap();
    let cur = definitions::current(&storage, "mix")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        latest.definition_hash.as_deref(),
        Some(cur.definition.unwrap().run_fingerprint().as_str())
    );
    // The config file, unchanged, does not take the segmentation back.
    let s = once(&cfg, &ctx).await;
    assert!(s.runs.is_empty(), "{s:?}");

    // A split by hand: the largest segment's outlets divide between it and a new id,
    // every other outlet stays; a merge back returns them and retires the id.
    let run2 = assignments(&storage, "segmentations/mix/runs/2026-11-01.2").await;
    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for a in run2.values() {
        *sizes.entry(a.0.as_str()).or_default() += 1;
    }
    let (largest, n) = sizes.iter().max_by_key(|(_, n)| **n).unwrap();
    let largest = largest.to_string();
    let n = *n;
    by_hand(
        &storage,
        Action::Split,
        Operation::Split {
            segment_id: largest.clone(),
        },
        sizes.len() + 1,
    )
    .await;
    let s = once(&cfg, &ctx).await;
    assert_eq!(run_ids(&s), ["mix/2026-11-01/3"], "{s:?}");
    assert_eq!(s.runs[0].created.len(), 1, "{s:?}");
    let new_id = s.runs[0].created[0].clone();
    let run3 = assignments(&storage, "segmentations/mix/runs/2026-11-01.3").await;
    let (mut kept, mut split) = (0, 0);
    for (o, a) in &run2 {
        let now = &run3[o].0;
        if a.0 == largest {
            kept += usize::from(*now == largest);
            split += usize::from(*now == new_id);
            assert!(*now == largest || *now == new_id, "{o}: {now}");
        } else {
            assert_eq!(*now, a.0, "{o} is not in the split segment and stays");
        }
    }
    assert_eq!(kept + split, n);
    assert!(
        kept > 0 && split > 0,
        "both halves have outlets: {kept} + {split}"
    );
    let movements = json_at(&storage, "segmentations/mix/latest.json").await;
    assert_eq!(movements["run_id"], "mix/2026-11-01/3");

    by_hand(
        &storage,
        Action::Merged,
        Operation::Merge {
            kept: largest.clone(),
            retired: new_id.clone(),
        },
        sizes.len(),
    )
    .await;
    let s = once(&cfg, &ctx).await;
    assert_eq!(run_ids(&s), ["mix/2026-11-01/4"], "{s:?}");
    assert_eq!(s.runs[0].retired, std::slice::from_ref(&new_id));
    assert_eq!(s.runs[0].moved, split, "the split half comes back");
    let run4 = assignments(&storage, "segmentations/mix/runs/2026-11-01.4").await;
    for (o, a) in &run2 {
        assert_eq!(run4[o].0, a.0, "{o} is back where it was before the split");
    }

    // The level edited: the features on storage are the category ones; nothing runs
    // until the aggregator rolls them up again.
    edit(&storage, "mix", Action::Edited, |d| {
        d.level = "subcategory".into()
    })
    .await;
    let s = once(&cfg, &ctx).await;
    assert!(s.runs.is_empty(), "features of the old level: {s:?}");
    assert_eq!(s.up_to_date, ["mix"]);
    feed.aggregate(date(1)).await;
    let s = once(&cfg, &ctx).await;
    assert_eq!(run_ids(&s), ["mix/2026-11-01/5"], "{s:?}");
    let model = json_at(&storage, "segmentations/mix/runs/2026-11-01.5/model.json").await;
    assert_eq!(model["level"], "subcategory");

    // A draft runs beside it, under its own name; `mix` is untouched.
    let cur = definitions::current(&storage, "mix")
        .await
        .unwrap()
        .unwrap();
    let mut d = cur.definition.clone().unwrap();
    d.k = KSpec::Fixed(2);
    let draft = definitions::open_draft(&storage, "mix", "test", "", d)
        .await
        .unwrap();
    assert_eq!(draft.name, "mix.draft-1");
    feed.aggregate(date(1)).await;
    let s = once(&cfg, &ctx).await;
    assert_eq!(run_ids(&s), ["mix.draft-1/2026-11-01/1"], "{s:?}");
    assert_eq!(s.runs[0].segments, 2);
    let latest = spectra_segmenter::runs::latest(&storage, "mix")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.run_id, "mix/2026-11-01/5");

    // A value of the level excluded (back on categories): it leaves the features the
    // run clusters on.
    let features = json_at(&storage, "segmentations/mix/runs/2026-11-01.2/model.json").await;
    let first = features["features"][0].as_str().unwrap().to_owned();
    edit(&storage, "mix", Action::Edited, |d| {
        d.level = "category".into();
        d.exclude = vec![first.clone()];
    })
    .await;
    feed.aggregate(date(1)).await;
    let s = once(&cfg, &ctx).await;
    assert!(run_ids(&s).contains(&"mix/2026-11-01/6"), "{s:?}");
    let model = json_at(&storage, "segmentations/mix/runs/2026-11-01.6/model.json").await;
    let names: Vec<&str> = model["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&first.as_str()),
        "{first} excluded: {names:?}"
    );
    assert_eq!(
        names.len() + 1,
        features["features"].as_array().unwrap().len()
    );

    // A fixed k (4) turned "auto" over a range above it: k is chosen over the new
    // range at once, not stepped one segment at a time (never back into the range).
    edit(&storage, "mix", Action::Edited, |d| {
        d.k = KSpec::Auto("auto".into());
        d.k_range = [6, 8];
    })
    .await;
    let s = once(&cfg, &ctx).await;
    let run = s
        .runs
        .iter()
        .find(|r| r.run_id == "mix/2026-11-01/7")
        .unwrap_or_else(|| panic!("{s:?}"));
    assert!((6..=8).contains(&run.segments), "{run:?}");

    // Retired: neither it nor its draft runs any more.
    let cur = definitions::current(&storage, "mix")
        .await
        .unwrap()
        .unwrap();
    let retired = cur.next("test", Source::Api, Action::Retired, "", None);
    definitions::append(&storage, retired).await.unwrap();
    feed.day(&outlets(240), date(2)).await;
    let err = spectra_segmenter::run(
        cfg.clone(),
        ctx.clone(),
        spectra_segmenter::SegmentOptions {
            once: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no [[segmentation]] is configured or stored"),
        "{err}"
    );
}
