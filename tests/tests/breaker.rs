//! Issue 9, downstream defences, through the `spectra` binary against a real broker:
//! a generated feed (planted segments, half the outlets drifting) is ingested,
//! aggregated, segmented and published by the real services.
//!
//! - The circuit breaker: the run that moves half the outlets is held — visible in
//!   `/api/segmentations` and the `spectra_publish_runs_held` metric, nothing of it on
//!   `segment-assignments`, a Release button in the console — until released through
//!   the API; then the compacted topic equals the run.
//! - The incident replay: a dozen lines dated 2199-12-31 for unknown outlets do not
//!   move the as-of, so nothing is re-segmented or tombstoned.
//! - A corrected last day moves the as-of back, and the segmenter runs for it.
//! - Isolation: a broken filter, a filter over an attribute nobody has, and a
//!   segmentation with no run to publish never stop the good segmentation; `--once`
//!   exits non-zero naming the broken ones.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, Float64Type, Int64Type};
use serde_json::{json, Value};
use spectra_tests::services::{
    compacted_assignments, free_port, http, ok, rendered, run, run_assignments, wait_until,
    write_config, Publisher,
};
use spectra_tests::{producer, read_parquet_dir, send, Setup};

/// The generated feed: 120 outlets in 3 planted segments over 60 days from 2026-06-01;
/// half the outlets buy like another segment from day 30 on.
const START: &str = "2026-06-01";
const DAY_29: &str = "2026-06-30";
const DAY_58: &str = "2026-07-29";
const DAY_59: &str = "2026-07-30";

/// Generates the feed onto the test's topics and ingests it.
fn feed(setup: &Setup, config: &Path, outlets: &str, drift: &str) {
    setup.create_topics(3);
    ok(
        run(
            setup,
            "generate",
            config,
            &[
                "--outlets",
                outlets,
                "--segments",
                "3",
                "--days",
                "60",
                "--start",
                START,
                "--drift-share",
                drift,
                "--drift-day",
                "30",
                "--bad-share",
                "0",
                "--seed",
                "9",
            ],
        ),
        "generate",
    );
    setup.ingest_once(&[]);
}

fn segmentations(base: &str) -> Value {
    let (s, body) = http(
        reqwest::Method::GET,
        &format!("{base}/api/segmentations"),
        None,
        None,
    );
    assert_eq!(s, 200, "{body}");
    let all: Value = serde_json::from_str(&body).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "mix")
        .cloned()
        .unwrap()
}

/// A raw line: (distributor, invoice, line_no, outlet, sku, quantity, net_value).
type RawLine = (String, String, i64, String, String, f64, f64);

/// Every line of the raw table dated `date`, latest version per identity.
fn raw_lines(root: &Path, date: &str) -> Vec<RawLine> {
    let mut best: BTreeMap<(String, String, i64), (i64, RawLine)> = BTreeMap::new();
    for b in read_parquet_dir(&root.join(format!("raw/invoices/date={date}"))) {
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let f = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<Float64Type>()
                .clone()
        };
        let i = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone()
        };
        let (d, inv, o, k) = (
            s("distributor_id"),
            s("invoice_id"),
            s("outlet_id"),
            s("sku_id"),
        );
        let (q, v) = (f("quantity"), f("net_value"));
        let (ln, ts) = (i("line_no"), i("kafka_timestamp_ms"));
        let dates = b
            .column_by_name("invoice_date")
            .unwrap()
            .as_primitive::<Date32Type>()
            .clone();
        for r in 0..b.num_rows() {
            assert!(dates.is_valid(r));
            let key = (d.value(r).to_owned(), inv.value(r).to_owned(), ln.value(r));
            let val = (
                key.0.clone(),
                key.1.clone(),
                key.2,
                o.value(r).to_owned(),
                k.value(r).to_owned(),
                q.value(r),
                v.value(r),
            );
            if best.get(&key).is_none_or(|(t, _)| *t <= ts.value(r)) {
                best.insert(key, (ts.value(r), val));
            }
        }
    }
    best.into_values().map(|(_, line)| line).collect()
}

#[test]
fn a_run_moving_half_the_outlets_is_held_until_released_and_stray_dates_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&dir.path().join("store"));
    let root = setup.dir.clone();
    let token = "breaker-token";
    let config = write_config(
        dir.path(),
        &format!(
            "[publish]\napi_token = \"{token}\"\npoll_seconds = 1\n\n\
             [[segmentation]]\nname = \"mix\"\nk = 3\nwindow_days = 28\nseed = 3\n"
        ),
    );
    feed(&setup, &config, "120", "0.5");
    let prefix = setup.group.trim_end_matches(".ingest").to_owned();
    let assignments_topic = format!("{prefix}.assignments");

    // Run 1 on the days before the drift (the first run is never held).
    let agg = ok(
        run(&setup, "aggregate", &config, &["--once", "--as-of", DAY_29]),
        "aggregate",
    );
    assert_eq!(agg["as_of"], DAY_29);
    let seg = ok(run(&setup, "segment", &config, &["--once"]), "segment");
    let run1 = seg["runs"][0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(run1, format!("mix/{DAY_29}/1"));
    assert!(seg["runs"][0]["held"].is_null(), "{seg}");

    // The publish service with its API.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _publisher = Publisher::spawn(&setup, &config, port);
    wait_until("run 1 published", || {
        http(reqwest::Method::GET, &format!("{base}/healthz"), None, None).0 == 200
            && segmentations(&base)["published"]["run_id"] == run1.as_str()
    });
    let a1 = run_assignments(&root, &run1);
    assert_eq!(a1.len(), 120);
    assert_eq!(compacted_assignments(&assignments_topic, "mix"), a1);

    // Run 2 on the last real day: the 28-day window is all after the drift, so about
    // half the outlets move. The default as-of is the feed's last day.
    let agg = ok(run(&setup, "aggregate", &config, &["--once"]), "aggregate");
    assert_eq!(agg["as_of"], DAY_59, "{agg}");
    let seg = ok(run(&setup, "segment", &config, &["--once"]), "segment");
    let run2 = seg["runs"][0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(run2, format!("mix/{DAY_59}/1"));
    let held = &seg["runs"][0]["held"];
    let share = held["change_share"].as_f64().expect("run 2 is held");
    println!("run 2 held: {held}");
    assert!(share > 0.35, "about half the outlets move: {held}");
    assert_eq!(held["baseline"]["run_id"], run1.as_str());
    let a2 = run_assignments(&root, &run2);
    let changed = a1.iter().filter(|(o, s)| a2.get(*o) != Some(s)).count();
    assert_eq!(
        changed as u64,
        held["moved"].as_u64().unwrap() + held["left"].as_u64().unwrap()
    );

    // Held: visible in the API and the metric, nothing of it published.
    wait_until("the hold in /api/segmentations", || {
        segmentations(&base)["held"]["run_id"] == run2.as_str()
    });
    std::thread::sleep(Duration::from_secs(3)); // a few publish cycles
    let s = segmentations(&base);
    assert_eq!(s["published"]["run_id"], run1.as_str(), "{s}");
    assert_eq!(
        s["latest"]["run_id"],
        run1.as_str(),
        "the API serves run 1: {s}"
    );
    assert_eq!(s["held"]["baseline"]["run_id"], run1.as_str());
    let release_path = s["held"]["release"].as_str().unwrap().to_owned();
    assert_eq!(
        release_path,
        format!("/api/segmentations/mix/runs/{DAY_59}.1/release")
    );
    let (_, metrics) = http(reqwest::Method::GET, &format!("{base}/metrics"), None, None);
    assert!(
        metrics.contains(r#"spectra_publish_runs_held{segmentation="mix"} 1"#),
        "{metrics}"
    );
    assert_eq!(
        compacted_assignments(&assignments_topic, "mix"),
        a1,
        "nothing of the held run is published"
    );
    // The console's segments view shows the hold with its Release button.
    let page = rendered(&format!("{base}/"));
    assert!(
        page.contains(&format!("Run {run2} is held, not published"))
            && page.contains(r#"id="release-btn""#),
        "{page}"
    );

    // Release: without the token refused, with it accepted and recorded.
    let release = format!("{base}{release_path}");
    let (s, _) = http(reqwest::Method::POST, &release, None, None);
    assert_eq!(s, 401);
    let (s, _) = http(reqwest::Method::POST, &release, Some("wrong"), None);
    assert_eq!(s, 401);
    let (s, body) = http(
        reqwest::Method::POST,
        &format!("{base}/api/segmentations/mix/runs/{DAY_29}.1/release"),
        Some(token),
        None,
    );
    assert_eq!(s, 409, "only the held run can be released: {body}");
    let (s, body) = http(
        reqwest::Method::POST,
        &release,
        Some(token),
        Some(json!({"released_by": "ops", "note": "real drift, checked"})),
    );
    assert_eq!(s, 200, "{body}");
    let doc: Value = serde_json::from_slice(
        &std::fs::read(root.join(format!("segmentations/mix/releases/{DAY_59}.1.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(doc["run_id"], run2.as_str());
    assert_eq!(doc["released_by"], "ops");
    wait_until("run 2 published", || {
        segmentations(&base)["published"]["run_id"] == run2.as_str()
    });
    let s = segmentations(&base);
    assert!(s["held"].is_null(), "{s}");
    assert_eq!(compacted_assignments(&assignments_topic, "mix"), a2);
    let (_, metrics) = http(reqwest::Method::GET, &format!("{base}/metrics"), None, None);
    assert!(
        metrics.contains(r#"spectra_publish_runs_held{segmentation="mix"} 0"#),
        "{metrics}"
    );

    // The incident: 12 lines dated 2199-12-31 for 12 unknown outlets. The as-of stays,
    // no run, nothing published.
    let p = producer();
    for i in 0..12 {
        let line = json!({"distributor_id": "D-ROGUE", "invoice_id": format!("X/{i}"), "line_no": 1,
            "invoice_date": "2199-12-31", "outlet_id": format!("GHOST-{i:02}"), "sku_id": "SKU-X",
            "quantity": 1, "net_value": 10.0});
        send(
            &p,
            &setup.invoices,
            Some(format!("GHOST-{i:02}").as_bytes()),
            Some(line.to_string().as_bytes()),
        );
    }
    spectra_tests::flush(&p);
    // Ingest's own bound would send them to the dead-letter topic (tests/tests/hostile.rs);
    // widened here, as a permissive configuration might, so that what is tested is the
    // defence downstream.
    setup.ingest_once(&["--set", "ingest.max_future_days=80000"]);
    assert!(
        root.join("raw/invoices/date=2199-12-31").exists(),
        "the stray lines got through ingest (the defence here is downstream)"
    );
    let agg = ok(run(&setup, "aggregate", &config, &["--once"]), "aggregate");
    assert_eq!(agg["as_of"], DAY_59, "{agg}");
    assert!(
        agg["as_of_passed_over"]
            .as_array()
            .unwrap()
            .contains(&json!("2199-12-31")),
        "{agg}"
    );
    let seg = ok(run(&setup, "segment", &config, &["--once"]), "segment");
    assert_eq!(seg["runs"], json!([]), "{seg}");
    assert_eq!(seg["up_to_date"], json!(["mix"]));

    // The distributors correct the last day: its lines re-sent dated the day before.
    // The as-of moves back and the segmenter runs for it (not held: little changes).
    let last_day = raw_lines(&root, DAY_59);
    assert!(last_day.len() > 20, "{}", last_day.len());
    for (d, i, l, o, k, q, v) in &last_day {
        let line = json!({"distributor_id": d, "invoice_id": i, "line_no": l, "invoice_date": DAY_58,
            "outlet_id": o, "sku_id": k, "quantity": q, "net_value": v});
        send(
            &p,
            &setup.invoices,
            Some(o.as_bytes()),
            Some(line.to_string().as_bytes()),
        );
    }
    spectra_tests::flush(&p);
    setup.ingest_once(&[]);
    let agg = ok(run(&setup, "aggregate", &config, &["--once"]), "aggregate");
    assert_eq!(agg["as_of"], DAY_58, "{agg}");
    let seg = ok(run(&setup, "segment", &config, &["--once"]), "segment");
    let run3 = seg["runs"][0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(run3, format!("mix/{DAY_58}/1"), "{seg}");
    assert!(seg["runs"][0]["held"].is_null(), "{seg}");
    wait_until("run 3 published", || {
        segmentations(&base)["published"]["run_id"] == run3.as_str()
    });
    let a3 = run_assignments(&root, &run3);
    assert_eq!(compacted_assignments(&assignments_topic, "mix"), a3);
    assert!(
        a3.keys().all(|o| !o.starts_with("GHOST")),
        "the unknown outlets never became the segmentation"
    );
}

#[test]
fn one_broken_segmentation_never_stops_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&dir.path().join("store"));
    let root = setup.dir.clone();
    let config = write_config(
        dir.path(),
        "[[segmentation]]\nname = \"broken\"\nk = 3\nfilter = \"size = = 'M'\"\n\n\
         [[segmentation]]\nname = \"good\"\nk = 3\nwindow_days = 28\n\n\
         [[segmentation]]\nname = \"colour\"\nk = 3\nfilter = \"colour = 'red'\"\n\n\
         [[segmentation]]\nname = \"large\"\nk = 2\nk_range = [2, 3]\nfilter = \"size = 'L'\"\n",
    );
    feed(&setup, &config, "90", "0");

    // Aggregate: the broken filter fails alone; `colour` selects nobody without failing.
    let out = run(&setup, "aggregate", &config, &["--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("1 segmentation(s) failed") && stderr.contains("`broken`"),
        "{stderr}"
    );
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    let written: Vec<&str> = summary["segmentations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["segmentation"].as_str().unwrap())
        .collect();
    // In name order: the services read the stored definitions (seeded from the file).
    assert_eq!(written, ["colour", "good", "large"], "{summary}");
    assert_eq!(summary["segmentations"][0]["outlets"], 0);
    assert!(summary["segmentations"][2]["outlets"].as_u64().unwrap() > 5);

    // Segment: `good` and `large` run, `colour` has no outlet to segment and fails
    // alone, `broken` has no features yet; --once exits non-zero naming `colour`.
    let out = run(&setup, "segment", &config, &["--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("`colour`") && !stderr.contains("`good`"),
        "{stderr}"
    );
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    let ran: Vec<&str> = summary["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().split('/').next().unwrap())
        .collect();
    assert_eq!(ran, ["good", "large"], "{summary}");
    assert!(root.join("segmentations/good/latest.json").exists());

    // Publish: a segmentation whose run cannot be read fails alone.
    std::fs::create_dir_all(root.join("segmentations/damaged")).unwrap();
    let mut f = std::fs::File::create(root.join("segmentations/damaged/latest.json")).unwrap();
    write!(
        f,
        r#"{{"run_id": "damaged/2026-07-30/1", "as_of": "2026-07-30", "path": "segmentations/damaged/runs/2026-07-30.1"}}"#
    )
    .unwrap();
    let out = run(&setup, "publish", &config, &["--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("`damaged`"), "{stderr}");
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    let published: Vec<&str> = summary["segmentations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outlets"].as_u64().unwrap_or(0) > 0)
        .map(|s| s["segmentation"].as_str().unwrap())
        .collect();
    assert_eq!(published, ["good", "large"], "{summary}");
    let prefix = setup.group.trim_end_matches(".ingest").to_owned();
    let good = compacted_assignments(&format!("{prefix}.assignments"), "good");
    assert_eq!(
        good.len(),
        run_assignments(&root, "good/2026-07-30/1").len()
    );
}
