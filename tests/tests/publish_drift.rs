//! `spectra publish` against a real broker: two runs with drift and a crash in the
//! middle of publishing the second; the compacted view of `segment-assignments` must
//! be exactly the latest run, and every republished value identical to the one it
//! repeats.

mod publish_fixtures;

use std::collections::{BTreeMap, HashMap};

use publish_fixtures as fx;
use spectra_core::service::Context;
use spectra_publisher::PublishOptions;
use tokio_util::sync::CancellationToken;

fn as_of() -> chrono::NaiveDate {
    "2026-11-21".parse().unwrap()
}

async fn publish_once(
    cfg: &spectra_core::Config,
    crash_after: Option<u64>,
) -> Result<spectra_publisher::Summary, spectra_publisher::Error> {
    let ctx = Context::new(CancellationToken::new());
    spectra_publisher::run(
        cfg.clone(),
        ctx,
        PublishOptions {
            once: true,
            crash_after,
            ..Default::default()
        },
    )
    .await
}

fn expected(assign: &[fx::Assign]) -> BTreeMap<String, String> {
    assign
        .iter()
        .map(|a| (format!("mix:{}", a.0), a.1.clone()))
        .collect()
}

fn view(topic: &str) -> BTreeMap<String, String> {
    spectra_tests::compacted(topic)
        .into_iter()
        .map(|(k, v)| (k, v["segment_id"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_assignments_equal_the_latest_run_after_drift_and_a_crash() {
    let (_dir, url, root) = fx::storage();
    let cfg = fx::config(&url, &spectra_tests::fresh("pub"));
    let outlets = fx::outlets(90);
    let lines = fx::lines(7, &outlets, as_of(), 91, 30);
    fx::write_daily(&root, &lines);
    fx::write_features(&root, "mix", as_of(), 91, &outlets, &lines);
    let totals = fx::window_totals(&lines, as_of(), 91);

    // Run 1: everything is new.
    let run1 = fx::first_assignments(&outlets[..80]);
    fx::write_run(&root, "mix", as_of(), 1, &run1, &totals);
    let s = publish_once(&cfg, None).await.unwrap();
    assert_eq!(s.segmentations[0].assignments.get("new"), Some(&80));
    assert_eq!(view(&cfg.kafka.topics.assignments), expected(&run1));
    let first_messages = spectra_tests::read_topic(&cfg.kafka.topics.assignments).len();
    assert_eq!(
        first_messages, 80,
        "the first run publishes each outlet once"
    );

    // A second cycle over the same run publishes nothing.
    let s = publish_once(&cfg, None).await.unwrap();
    assert_eq!(s.messages, 0, "{s:?}");

    // Run 2 with drift; the publisher crashes after 10 acknowledged messages.
    let run2 = fx::drift(&run1, &outlets[80..]);
    let moved = run2
        .iter()
        .filter(|a| a.2.as_ref().is_some_and(|p| p != &a.1))
        .count();
    let left = run1.len() + 10 - run2.len();
    assert!(
        moved > 5 && left > 5,
        "the drift moves and removes outlets: {moved} moved, {left} left"
    );
    fx::write_run(&root, "mix", as_of(), 2, &run2, &totals);
    let e = publish_once(&cfg, Some(10)).await.unwrap_err();
    assert!(
        matches!(e, spectra_publisher::Error::InjectedCrash { acked: 10 }),
        "{e}"
    );
    assert!(
        std::fs::read_to_string(root.join("state/publisher/mix/cycle.json"))
            .unwrap()
            .contains("mix/2026-11-21/1"),
        "the crashed cycle must not record its state"
    );

    // Recovery through the binary, as an operator would run it.
    let out = std::process::Command::new(spectra_tests::spectra_bin())
        .args([
            "publish",
            "--once",
            "--brokers",
            &cfg.kafka.brokers,
            "--storage",
            &url,
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--set",
            &format!("kafka.topics.assignments={}", cfg.kafka.topics.assignments),
        ])
        .args([
            "--set",
            &format!("kafka.topics.profiles={}", cfg.kafka.topics.profiles),
        ])
        .args([
            "--set",
            &format!(
                "kafka.topics.recommendations={}",
                cfg.kafka.topics.recommendations
            ),
        ])
        .args([
            "--set",
            &format!("kafka.topics.metadata={}", cfg.kafka.topics.metadata),
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publish --once failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seg = &summary["segmentations"][0];
    assert_eq!(seg["run_id"], "mix/2026-11-21/2");
    assert_eq!(seg["assignments"]["moved"], moved as u64);
    assert_eq!(seg["assignments"]["tombstone"], left as u64);
    assert_eq!(seg["assignments"]["new"], 10);

    // The compacted view is exactly the latest run.
    assert_eq!(view(&cfg.kafka.topics.assignments), expected(&run2));

    // Nothing contradicts: a key's messages after run 1 are identical repeats of one
    // value (the crash republished), never two different values.
    let all = spectra_tests::read_topic(&cfg.kafka.topics.assignments);
    let mut after: HashMap<String, Vec<Option<Vec<u8>>>> = HashMap::new();
    let mut seen_first: HashMap<String, usize> = HashMap::new();
    for m in &all {
        let k = String::from_utf8(m.key.clone().unwrap()).unwrap();
        let n = seen_first.entry(k.clone()).or_default();
        *n += 1;
        let is_first_run = m
            .value
            .as_ref()
            .is_some_and(|v| String::from_utf8_lossy(v).contains("mix/2026-11-21/1"));
        if !is_first_run {
            after.entry(k).or_default().push(m.value.clone());
        }
    }
    for (k, vals) in &after {
        assert!(
            vals.windows(2).all(|w| w[0] == w[1]),
            "key {k} got different values after the crash: {vals:?}"
        );
    }
    for m in all.iter().filter_map(|m| m.value.as_ref()) {
        let v: serde_json::Value = serde_json::from_slice(m).unwrap();
        assert_eq!(v["segmentation"], "mix");
        assert!(v["run_id"].as_str().unwrap().starts_with("mix/2026-11-21/"));
    }
    let moved_msg = spectra_tests::compacted(&cfg.kafka.topics.assignments)
        .into_values()
        .find(|v| v["change"] == "moved")
        .expect("a moved assignment");
    assert_ne!(moved_msg["previous_segment_id"], moved_msg["segment_id"]);
    assert_eq!(moved_msg["as_of"], "2026-11-21");

    // Profiles and recommendations follow the latest run too.
    let profiles = spectra_tests::compacted(&cfg.kafka.topics.profiles);
    assert_eq!(
        profiles.keys().cloned().collect::<Vec<_>>(),
        vec!["mix:S1", "mix:S2", "mix:S3"]
    );
    let p = &profiles["mix:S1"];
    assert_eq!(p["run_id"], "mix/2026-11-21/2");
    assert_eq!(p["name"], "coffee lovers");
    let coffee = p["spectrum"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == "coffee")
        .unwrap();
    assert!(
        coffee["index"].as_f64().unwrap() > 150.0,
        "S1 over-indexes on coffee: {coffee}"
    );
    let recs = spectra_tests::compacted(&cfg.kafka.topics.recommendations);
    assert_eq!(
        recs.keys().cloned().collect::<Vec<_>>(),
        expected(&run2).into_keys().collect::<Vec<_>>()
    );
    let r = recs.values().next().unwrap();
    for list in [
        "new_for_outlet",
        "should_have",
        "popular_in_segment",
        "seasonal_soon",
    ] {
        assert!(r[list].is_array(), "{list} missing in {r}");
    }
    // Last year's coming weeks were all WAT-3: it is the seasonal pick everywhere.
    assert!(
        recs.values()
            .all(|r| r["seasonal_soon"][0]["sku_id"] == "WAT-3"),
        "{r}"
    );
}
