//! `spectra segment` through its library entry, on features the real aggregator rolled
//! up from planted invoice lines (written in the raw layout ingest writes, README
//! "Tables"): drift (drifted outlets move, others stay, identical data moves nothing),
//! k chosen by silhouette, outlets leaving below `min_value`, profiles and gaps; and
//! segment ids never reused after a segment is retired.
//!
//! Each segmentation here has a one-day window: the features of an as-of date are the
//! lines dated that day, so every run sees exactly the outlets written for it. The
//! change detector is off (`recent_days = 0`): outlets move on distance and
//! `move_margin`, which is what these tests are about (`drift.rs` and the movement
//! bench test the detector).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{json, Value};
use spectra_core::service::Context;
use spectra_core::Storage;
use spectra_segmenter::cluster::adjusted_rand_index;
use spectra_segmenter::{run, SegmentOptions};
use tokio_util::sync::CancellationToken;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drifted_outlets_move_others_keep_their_ids_and_identical_data_moves_nothing() {
    const SEGMENTS: usize = 5;
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let storage = Storage::from_url(&url).unwrap();
    let seg = segmentation(
        json!({"name": "mix", "k": "auto", "k_range": [3, 8], "min_value": 5.0, "seed": 7}),
    );
    let cfg = config(&url, seg);
    let ctx = Context::new(CancellationToken::new());
    let mut feed = Feed::new(&cfg);
    let mut outlets: Vec<Planted> = (0..N)
        .map(|i| Planted {
            id: format!("PL-{i:05}"),
            segment: i % SEGMENTS,
            // Every 100th outlet is too small to be assigned.
            scale: if i % 100 == 99 { 0.5 } else { 100.0 },
        })
        .collect();

    // Nothing to do before the aggregator wrote anything.
    let s = once(&cfg, &ctx).await;
    assert!(s.runs.is_empty() && s.up_to_date == ["mix"], "{s:?}");

    // Run 1: cold, k by silhouette.
    feed.day(&outlets, date(1)).await;
    let s = once(&cfg, &ctx).await;
    assert_eq!(s.runs.len(), 1);
    assert_eq!(s.runs[0].run_id, "mix/2026-11-01/1");
    let run1 = "segmentations/mix/runs/2026-11-01.1";
    let mut latest = json_at(&storage, "segmentations/mix/latest.json").await;
    let manifest = json_at(
        &storage,
        "features/segmentation=mix/as_of=2026-11-01/_manifest.json",
    )
    .await;
    let hash = manifest["content_hash"].as_str().expect("a content hash");
    assert_eq!(hash.len(), 64, "SHA-256 hex: {hash}");
    assert_eq!(
        latest["features_hash"], hash,
        "the run names the features it read"
    );
    assert!(latest["ran_at"].is_string(), "{latest}");
    assert_eq!(
        latest["definition_hash"],
        cfg.segmentation[0].run_fingerprint(),
        "the run names the definition it ran"
    );
    let obj = latest.as_object_mut().unwrap();
    obj.remove("features_hash");
    obj.remove("ran_at");
    obj.remove("definition_hash");
    assert_eq!(
        latest,
        json!({"run_id": "mix/2026-11-01/1", "as_of": "2026-11-01", "path": run1})
    );
    let model1 = json_at(&storage, &format!("{run1}/model.json")).await;
    assert_eq!(
        model1["k_selection"]["best_k"], SEGMENTS,
        "{}",
        model1["k_selection"]
    );
    assert_eq!(model1["next_id"], SEGMENTS + 1);
    let a1 = assignments(&storage, run1).await;
    assert_eq!(a1.len(), N - N / 100, "small outlets are not assigned");
    assert!(a1.values().all(|a| a.2 == "new" && a.1.is_none()));
    let truth: Vec<usize> = a1
        .keys()
        .map(|o| outlets[o[3..].parse::<usize>().unwrap()].segment)
        .collect();
    let ids: HashMap<&str, usize> = model1["centroids"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(j, s)| (s["segment_id"].as_str().unwrap(), j))
        .collect();
    let labels: Vec<usize> = a1.values().map(|a| ids[a.0.as_str()]).collect();
    let ari = adjusted_rand_index(&labels, &truth);
    assert!(
        ari > 0.98,
        "run 1 should recover the planted segments: ARI {ari}"
    );

    // Profiles: each segment named after, and over-indexed on, its planted categories.
    let profiles = json_at(&storage, &format!("{run1}/profiles.json")).await;
    let profiles = profiles.as_array().unwrap();
    assert_eq!(profiles.len(), SEGMENTS);
    let outlets_in: u64 = profiles
        .iter()
        .map(|p| p["outlets"].as_u64().unwrap())
        .sum();
    assert_eq!(outlets_in as usize, a1.len());
    let mut names = HashSet::new();
    for p in profiles {
        let top = p["spectrum"].as_array().unwrap();
        let own = top[0]["feature"].as_str().unwrap();
        assert!(own.starts_with("cat"), "{own}");
        assert!(top[0]["index"].as_f64().unwrap() > 300.0, "{}", top[0]);
        let staples = top.iter().find(|f| f["feature"] == "staples").unwrap();
        let staples_penetration = p["penetration"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feature"] == "staples")
            .unwrap();
        assert!((staples_penetration["share"].as_f64().unwrap() - 1.0).abs() < 1e-9);
        assert!(
            (staples["index"].as_f64().unwrap() - 100.0).abs() < 30.0,
            "{staples}"
        );
        assert!(
            names.insert(p["name"].as_str().unwrap().to_owned()),
            "names are distinct"
        );
        assert!(
            p["name"].as_str().unwrap().contains("-led"),
            "{}",
            p["name"]
        );
        assert_eq!(p["description"], "");
        let patterns = p["patterns"].as_array().unwrap();
        assert!((2..=3).contains(&patterns.len()), "{patterns:?}");
        for pat in patterns {
            let pct: f64 = pat["skus"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["share_pct"].as_f64().unwrap())
                .sum();
            assert!(pct > 50.0 && pct <= 100.0 + 1e-9, "{pat}");
        }
        let channel: Vec<&Value> = p["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["attribute"] == "channel")
            .unwrap()["values"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["outlets"].as_u64().unwrap() > 0)
            .collect();
        assert_eq!(
            channel.len(),
            1,
            "a segment is all one channel: {channel:?}"
        );
        assert!(channel[0]["index"].as_f64().unwrap() > 100.0);
    }
    let q1 = &model1["quality"];
    assert!(q1["silhouette"].as_f64().unwrap() > 0.3, "{q1}");
    assert!(q1["ari_previous"].is_null());

    // Run 2: 5% of the outlets switch to another planted segment; 10 outlets shrink
    // below min_value and leave.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(99);
    let mut drifted: HashMap<String, usize> = HashMap::new();
    for o in outlets.iter_mut().filter(|o| o.scale > 1.0) {
        if rng.gen_bool(0.05) {
            o.segment = (o.segment + rng.gen_range(1..SEGMENTS)) % SEGMENTS;
            drifted.insert(o.id.clone(), o.segment);
        }
    }
    let shrunk: Vec<String> = outlets
        .iter_mut()
        .filter(|o| o.scale > 1.0 && !drifted.contains_key(&o.id))
        .step_by(140)
        .map(|o| {
            o.scale = 0.5;
            o.id.clone()
        })
        .collect();
    feed.day(&outlets, date(2)).await;
    let s = once(&cfg, &ctx).await;
    assert_eq!(s.runs[0].run_id, "mix/2026-11-02/1");
    let run2 = "segmentations/mix/runs/2026-11-02.1";
    let a2 = assignments(&storage, run2).await;
    let model2 = json_at(&storage, &format!("{run2}/model.json")).await;
    let seg_ids = |m: &Value| -> Vec<String> {
        m["centroids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["segment_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        seg_ids(&model2),
        seg_ids(&model1),
        "every segment keeps its id"
    );
    assert_eq!(model2["quality"]["outlets_left"], shrunk.len());
    for o in &shrunk {
        assert!(!a2.contains_key(o), "{o} fell below min_value and leaves");
    }
    // Which id run 1 gave each planted segment.
    let id_of = |segment: usize| -> String {
        let mut c: HashMap<&str, usize> = HashMap::new();
        for (o, a) in &a1 {
            if outlets[o[3..].parse::<usize>().unwrap()].segment == segment
                && !drifted.contains_key(o)
            {
                *c.entry(a.0.as_str()).or_default() += 1;
            }
        }
        c.into_iter().max_by_key(|e| e.1).unwrap().0.to_owned()
    };
    let followed = drifted
        .iter()
        .filter(|(o, s)| a2[*o].0 == id_of(**s))
        .count();
    let others_moved: Vec<&String> = a2
        .iter()
        .filter(|(o, a)| !drifted.contains_key(*o) && a.2 == "moved")
        .map(|e| e.0)
        .collect();
    println!(
        "run 2: {} drifted, {followed} followed their new segment; {} others moved",
        drifted.len(),
        others_moved.len()
    );
    assert!(drifted.len() > 40);
    assert!(
        followed as f64 >= 0.9 * drifted.len() as f64,
        "{followed}/{}",
        drifted.len()
    );
    assert!(others_moved.len() * 200 <= a2.len(), "{others_moved:?}");
    for (o, a) in &a2 {
        assert_eq!(a.1.as_deref(), Some(a1[o].0.as_str()), "previous id of {o}");
        assert_eq!(a.2 == "moved", a.0 != a1[o].0, "change of {o}");
        assert!((0.0..=1.0).contains(&a.3) && a.4 >= 0.0);
    }
    assert_eq!(
        model2["quality"]["outlets_moved"],
        a2.values().filter(|a| a.2 == "moved").count()
    );
    let ari2 = model2["quality"]["ari_previous"].as_f64().unwrap();
    assert!(ari2 > 0.85 && ari2 < 1.0, "{ari2}");

    // No new features: nothing to do.
    let s = once(&cfg, &ctx).await;
    assert!(s.runs.is_empty() && s.up_to_date == ["mix"]);

    // Run 3: identical data on a new date moves nothing; names hold.
    feed.day(&outlets, date(3)).await;
    let ctx = Context::new(CancellationToken::new()); // a fresh registry, as a new process
    let s = once(&cfg, &ctx).await;
    assert_eq!(s.runs[0].moved, 0, "{:?}", s.runs[0]);
    let run3 = "segmentations/mix/runs/2026-11-03.1";
    let a3 = assignments(&storage, run3).await;
    assert_eq!(a3.len(), a2.len());
    assert!(a3.iter().all(|(o, a)| a.2 == "same" && a.0 == a2[o].0));
    let model3 = json_at(&storage, &format!("{run3}/model.json")).await;
    assert_eq!(model3["quality"]["ari_previous"], 1.0);
    assert_eq!(model3["k_check"]["runs_since"], 2);
    let names = |p: Value| -> BTreeMap<String, String> {
        p.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["segment_id"].as_str().unwrap().to_owned(),
                    p["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        names(json_at(&storage, &format!("{run3}/profiles.json")).await),
        names(json_at(&storage, &format!("{run1}/profiles.json")).await),
        "names hold while segments keep their character"
    );
    let gaps = read_batches(&storage, &format!("{run3}/outlet_gaps.parquet")).await;
    let rows: usize = gaps.iter().map(|b| b.num_rows()).sum();
    assert!(rows >= a3.len() * 5, "every outlet has gap rows: {rows}");

    let m = ctx.metrics.encode();
    assert!(
        m.contains(r#"spectra_segment_runs_total{segmentation="mix"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"spectra_segment_outlets_moved_last_run{segmentation="mix"} 0"#),
        "{m}"
    );
    let assigned = format!(
        r#"spectra_segment_outlets_assigned{{segmentation="mix"}} {}"#,
        a3.len()
    );
    assert!(m.contains(&assigned), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_segment_id_is_never_given_again() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let storage = Storage::from_url(&url).unwrap();
    let cfg = config(
        &url,
        // A whole group replaced is a quarter of the outlets: beyond the circuit
        // breaker's default, which this test is not about.
        segmentation(json!({"name": "ids", "k": 4, "seed": 3, "max_change_share": 1.0})),
    );
    let ctx = Context::new(CancellationToken::new());
    let mut feed = Feed::new(&cfg);
    let group = |segment: usize| -> Vec<Planted> {
        (0..120)
            .map(|i| Planted {
                id: format!("G{segment}-{i:03}"),
                segment,
                scale: 100.0,
            })
            .collect()
    };
    let model_ids = |m: &Value| -> Vec<String> {
        m["centroids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["segment_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut next_id = 0;
    // Groups 0–3, then 3 is replaced by 4, then 4 by 3 again.
    for (day, groups) in [(1, [0, 1, 2, 3]), (2, [0, 1, 2, 4]), (3, [0, 1, 2, 3])] {
        let outlets: Vec<Planted> = groups.iter().flat_map(|&g| group(g)).collect();
        feed.day(&outlets, date(day)).await;
        let s = once(&cfg, &ctx).await;
        let folder = format!("segmentations/ids/runs/2026-11-0{day}.1");
        let model = json_at(&storage, &format!("{folder}/model.json")).await;
        let ids = model_ids(&model);
        assert_eq!(ids.len(), 4);
        let created: Vec<String> = serde_json::from_value(model["created"].clone()).unwrap();
        let retired: Vec<String> = serde_json::from_value(model["retired"].clone()).unwrap();
        println!("day {day}: ids {ids:?} created {created:?} retired {retired:?}");
        if day > 1 {
            assert_eq!(
                created.len(),
                1,
                "the replaced group is a new segment: {created:?}"
            );
            assert_eq!(
                retired.len(),
                1,
                "the vanished group's segment retires: {retired:?}"
            );
            assert_eq!(s.runs[0].retired, retired);
        }
        for id in &created {
            assert!(seen.insert(id.clone()), "id {id} given twice");
        }
        for id in &ids {
            assert!(seen.contains(id));
        }
        let n = model["next_id"].as_u64().unwrap();
        assert!(n > next_id, "the id counter only grows");
        next_id = n;
        // The returning group 3 is a new segment: its old id stays retired.
        let a = assignments(&storage, &folder).await;
        let g3: HashSet<&String> = a
            .iter()
            .filter(|(o, _)| o.starts_with("G3-"))
            .map(|(_, a)| &a.0)
            .collect();
        if day == 3 {
            assert_eq!(g3.len(), 1);
            assert_eq!(g3.into_iter().next().unwrap(), &format!("S{}", next_id - 1));
        }
    }
    assert_eq!(next_id, 7, "S1–S4, then S5 and S6");
}

#[tokio::test]
async fn bad_schedules_and_unknown_segmentations_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let cfg = config(
        &url,
        segmentation(json!({"name": "c", "schedule": "0 3 * * *"})),
    );
    let ctx = Context::new(CancellationToken::new());
    let opts = SegmentOptions {
        once: true,
        segmentation: Some("nope".into()),
        ..Default::default()
    };
    let e = run(cfg, ctx, opts).await.unwrap_err().to_string();
    assert!(
        e.contains("`nope` is not configured (configured: c)"),
        "{e}"
    );
    // A cron expression is a schedule; one that is not, or an unknown time zone, is
    // refused before anything runs, each named.
    let mut cfg = config(
        &url,
        segmentation(json!({"name": "c", "schedule": "at three"})),
    );
    let mut zoned =
        segmentation(json!({"name": "z", "schedule": "0 3 * * *", "timezone": "Europe/Atlantis"}));
    zoned.window_days = 1;
    cfg.segmentation.push(zoned);
    let e = run(
        cfg,
        Context::new(CancellationToken::new()),
        SegmentOptions {
            once: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("schedule `at three` is neither \"daily\" nor a valid cron expression"),
        "{e}"
    );
    assert!(e.contains("timezone `Europe/Atlantis`"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_kind_of_outlet_splits_off_when_k_is_auto() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let storage = Storage::from_url(&url).unwrap();
    let cfg = config(
        &url,
        segmentation(json!({"name": "auto", "k": "auto", "k_range": [3, 8], "seed": 5})),
    );
    let ctx = Context::new(CancellationToken::new());
    let mut feed = Feed::new(&cfg);
    let planted = |groups: usize| -> Vec<Planted> {
        (0..groups * 150)
            .map(|i| Planted {
                id: format!("O{i:04}"),
                segment: i / 150,
                scale: 100.0,
            })
            .collect()
    };
    feed.day(&planted(4), date(1)).await;
    once(&cfg, &ctx).await;
    let a1 = assignments(&storage, "segmentations/auto/runs/2026-11-01.1").await;
    let m1 = json_at(&storage, "segmentations/auto/runs/2026-11-01.1/model.json").await;
    assert_eq!(m1["k_selection"]["best_k"], 4);

    // A fifth kind of outlet appears: the fit degrades, k is re-evaluated, it splits off.
    feed.day(&planted(5), date(2)).await;
    let s = once(&cfg, &ctx).await;
    let m2 = json_at(&storage, "segmentations/auto/runs/2026-11-02.1/model.json").await;
    println!("restructure: {}", m2["restructure"]);
    assert_eq!(m2["restructure"]["kind"], "split", "{}", m2["restructure"]);
    assert_eq!(s.runs[0].created, vec!["S5"]);
    assert!(s.runs[0].retired.is_empty());
    assert_eq!(m2["k_check"]["runs_since"], 0);
    let a2 = assignments(&storage, "segmentations/auto/runs/2026-11-02.1").await;
    let kept = a1.iter().filter(|(o, a)| a2[*o].0 == a.0).count();
    assert_eq!(kept, a1.len(), "the old outlets keep their segments");
    let newcomers: HashSet<&String> = a2
        .iter()
        .filter(|(o, _)| !a1.contains_key(*o))
        .map(|(_, a)| &a.0)
        .collect();
    assert_eq!(newcomers, HashSet::from([&"S5".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_runs_when_a_new_as_of_date_appears_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let storage = Storage::from_url(&url).unwrap();
    let mut cfg = config(
        &url,
        segmentation(json!({"name": "svc", "k": 3, "seed": 1})),
    );
    cfg.segment.poll_seconds = 1;
    let token = CancellationToken::new();
    let ctx = Context::new(token.clone());
    let mut feed = Feed::new(&cfg);
    let service = tokio::spawn(run(cfg, ctx.clone(), SegmentOptions::default()));
    let outlets: Vec<Planted> = (0..90)
        .map(|i| Planted {
            id: format!("O{i:03}"),
            segment: i % 3,
            scale: 100.0,
        })
        .collect();
    let wait_for = |as_of: &'static str| {
        let storage = storage.clone();
        async move {
            for _ in 0..200 {
                let latest = spectra_segmenter::runs::latest(&storage, "svc")
                    .await
                    .unwrap();
                if latest.is_some_and(|l| l.as_of.to_string() == as_of) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("no run for {as_of} within 20 s");
        }
    };
    for day in [1, 2] {
        feed.day(&outlets, date(day)).await;
        wait_for(if day == 1 { "2026-11-01" } else { "2026-11-02" }).await;
    }
    assert!(ctx.health.is_ready());
    token.cancel();
    let summary = service.await.unwrap().unwrap();
    let ids: Vec<&str> = summary.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["svc/2026-11-01/1", "svc/2026-11-02/1"]);
    assert_eq!(summary.runs[1].moved, 0);
    assert!(!ctx.health.is_ready());
}

/// The circuit breaker: a run moving half the outlets is written but held; the next run
/// starts from, and is compared with, the accepted run (not the held one); a release
/// document makes the held run the accepted one; and the segmenter re-runs when the
/// current as-of date moves back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_moving_half_the_outlets_is_held_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let storage = Storage::from_url(&url).unwrap();
    let cfg = config(&url, segmentation(json!({"name": "cb", "k": 3, "seed": 2})));
    let ctx = Context::new(CancellationToken::new());
    let mut feed = Feed::new(&cfg);
    let planted = |shift: usize| -> Vec<Planted> {
        (0..300)
            .map(|i| Planted {
                id: format!("O{i:03}"),
                // With `shift`, every other outlet buys like the next segment.
                segment: (i % 3 + if i % 2 == 0 { shift } else { 0 }) % 3,
                scale: 100.0,
            })
            .collect()
    };
    feed.day(&planted(0), date(1)).await;
    let s = once(&cfg, &ctx).await;
    assert!(s.runs[0].held.is_none(), "the first run is never held");

    // Half the outlets change behaviour: held.
    feed.day(&planted(1), date(2)).await;
    let s = once(&cfg, &ctx).await;
    let held = s.runs[0].held.clone().expect("held");
    assert_eq!(held.baseline.run_id, "cb/2026-11-01/1");
    assert_eq!(held.baseline_outlets, 300);
    assert!(held.change_share > 0.4, "{held:?}");
    let latest = json_at(&storage, "segmentations/cb/latest.json").await;
    assert_eq!(latest["run_id"], "cb/2026-11-02/1");
    assert_eq!(latest["held"]["baseline"]["run_id"], "cb/2026-11-01/1");
    let model = json_at(&storage, "segmentations/cb/runs/2026-11-02.1/model.json").await;
    assert_eq!(model["hold"]["moved"], held.moved);
    assert!(ctx
        .metrics
        .encode()
        .contains(r#"spectra_segment_runs_held{segmentation="cb"} 1"#));

    // The next day looks like the first again: compared with run 1 (accepted), not with
    // the held run, so it is not held and moves nothing.
    feed.day(&planted(0), date(3)).await;
    let s = once(&cfg, &ctx).await;
    assert!(s.runs[0].held.is_none(), "{:?}", s.runs[0]);
    assert_eq!(s.runs[0].moved, 0, "{:?}", s.runs[0]);
    let a3 = assignments(&storage, "segmentations/cb/runs/2026-11-03.1").await;
    assert!(a3.values().all(|a| a.2 == "same"));
    assert!(ctx
        .metrics
        .encode()
        .contains(r#"spectra_segment_runs_held{segmentation="cb"} 0"#));

    // Shifted again (held), then released: the next run starts from the released one.
    feed.day(&planted(1), date(4)).await;
    let s = once(&cfg, &ctx).await;
    assert!(s.runs[0].held.is_some());
    spectra_core::hold::save_release(
        &storage,
        "cb",
        &spectra_core::hold::Release {
            run_id: "cb/2026-11-04/1".into(),
            released_by: "test".into(),
            released_at: "2026-11-04T12:00:00Z".into(),
            note: String::new(),
        },
    )
    .await
    .unwrap();
    let (accepted, held) = spectra_segmenter::runs::accepted(&storage, "cb", 0.2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((accepted.run_id.as_str(), held), ("cb/2026-11-04/1", None));

    // The distributors correct the 3rd (every line of it re-sent as the outlets bought
    // on the 4th) and the aggregator is run as of the 3rd again: the as-of moves back,
    // and the run for the earlier date is compared with the released run.
    feed.day(&planted(1), date(3)).await;
    let s = once(&cfg, &ctx).await;
    assert_eq!(s.runs.len(), 1, "{s:?}");
    assert_eq!(s.runs[0].run_id, "cb/2026-11-03/2");
    assert!(s.runs[0].held.is_none());
    assert_eq!(s.runs[0].moved, 0, "{:?}", s.runs[0]);
    let s = once(&cfg, &ctx).await;
    assert!(s.runs.is_empty() && s.up_to_date == ["cb"], "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_sku_level_the_values_beyond_max_features_are_summed_and_the_segments_hold() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let storage = Storage::from_url(&url).unwrap();
    // One store, two segmentations of its 34 SKUs: every SKU its own column, and 12
    // columns plus `(other)`.
    let mut cfg = config(
        &url,
        segmentation(json!({"name": "skus", "level": "sku", "k": 4, "seed": 5})),
    );
    let mut few = cfg.segmentation[0].clone();
    few.name = "few".into();
    few.max_features = 12;
    cfg.segmentation.push(few);
    let ctx = Context::new(CancellationToken::new());
    let mut feed = Feed::new(&cfg);
    let planted: Vec<Planted> = (0..600)
        .map(|i| Planted {
            id: format!("O{i:04}"),
            segment: i % 4,
            scale: 100.0,
        })
        .collect();
    feed.day(&planted, date(1)).await;
    once(&cfg, &ctx).await;

    let truth: Vec<usize> = planted.iter().map(|p| p.segment).collect();
    for (name, columns) in [("skus", 34), ("few", 13)] {
        let run = format!("segmentations/{name}/runs/2026-11-01.1");
        let model = json_at(&storage, &format!("{run}/model.json")).await;
        let features: Vec<&str> = model["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(features.len(), columns, "{name}: {features:?}");
        assert_eq!(
            features.last() == Some(&"(other)"),
            name == "few",
            "{name}: {features:?}"
        );
        let a = assignments(&storage, &run).await;
        assert_eq!(a.len(), planted.len(), "{name}");
        let ids: Vec<String> = planted.iter().map(|p| a[&p.id].0.clone()).collect();
        let distinct: Vec<&String> = ids.iter().collect::<HashSet<_>>().into_iter().collect();
        let labels: Vec<usize> = ids
            .iter()
            .map(|id| distinct.iter().position(|d| *d == id).unwrap())
            .collect();
        let ari = adjusted_rand_index(&labels, &truth);
        assert!(ari > 0.99, "{name}: ARI {ari} against the planted segments");
        // No segment is named after the summed rest, and no outlet is told to buy it.
        let profiles = json_at(&storage, &format!("{run}/profiles.json")).await;
        for p in profiles.as_array().unwrap() {
            assert!(!p["name"].as_str().unwrap().contains("(other)"), "{p}");
        }
        let gaps = read_batches(&storage, &format!("{run}/outlet_gaps.parquet")).await;
        let mut listed = HashSet::new();
        for b in &gaps {
            let c = spectra_core::tables::Columns::new(b, "outlet gaps");
            let features = c.strings("feature").unwrap();
            assert!(features.iter().all(|f| f != Some("(other)")), "{name}");
            listed.extend(
                c.strings("outlet_id")
                    .unwrap()
                    .iter()
                    .flatten()
                    .map(str::to_owned),
            );
        }
        assert_eq!(listed.len(), planted.len(), "{name}: every outlet has gaps");
    }
}
