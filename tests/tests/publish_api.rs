//! The publisher's HTTP API, route by route, against a running service with a real
//! broker: status codes, auth and bad input, the rename flow (metadata topic →
//! `renamed` assignments), exports, the console files and the admin routes.

mod publish_fixtures;

use std::time::{Duration, Instant};

use publish_fixtures as fx;
use reqwest::StatusCode;
use serde_json::{json, Value};
use spectra_core::service::Context;
use spectra_publisher::PublishOptions;
use tokio_util::sync::CancellationToken;

fn as_of() -> chrono::NaiveDate {
    "2026-11-21".parse().unwrap()
}

/// Storage with two runs of `mix` (the second drifted) and the service started on it.
async fn service(
    token: &str,
) -> (
    tempfile::TempDir,
    spectra_core::Config,
    String,
    CancellationToken,
    Vec<fx::Assign>,
) {
    let (dir, url, root) = fx::storage();
    let mut cfg = fx::config(&url, &spectra_tests::fresh("api"));
    cfg.publish.api_token = token.into();
    let outlets = fx::outlets(60);
    let lines = fx::lines(11, &outlets, as_of(), 91, 25);
    fx::write_daily(&root, &lines);
    fx::write_features(&root, "mix", as_of(), 91, &outlets, &lines);
    let totals = fx::window_totals(&lines, as_of(), 91);
    let run1 = fx::first_assignments(&outlets[..54]);
    fx::write_run(&root, "mix", as_of(), 1, &run1, &totals);
    let run2 = fx::drift(&run1, &outlets[54..]);
    fx::write_run(&root, "mix", as_of(), 2, &run2, &totals);
    let token = CancellationToken::new();
    let svc = spectra_publisher::start(
        cfg.clone(),
        Context::new(token.clone()),
        PublishOptions::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", svc.addr().unwrap());
    tokio::spawn(svc.wait());
    (dir, cfg, base, token, run2)
}

async fn get(c: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let r = c.get(url).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_with_auth_bad_input_and_the_rename_flow() {
    let (_dir, cfg, base, token, run2) = service("s3cret").await;
    let c = reqwest::Client::new();

    // Console and admin routes.
    let r = c.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("/console/app.js"));
    for (f, ty) in [("app.js", "javascript"), ("style.css", "text/css")] {
        let r = c.get(format!("{base}/console/{f}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().contains(ty));
    }
    assert_eq!(
        c.get(format!("{base}/console/x.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (s, v) = get(&c, &format!("{base}/api/nope")).await;
    assert_eq!(s, 404);
    assert!(v["error"].as_str().unwrap().contains("no such route"));

    // Segmentations and segments.
    let (s, v) = get(&c, &format!("{base}/api/segmentations")).await;
    assert_eq!(s, 200);
    assert_eq!(v[0]["name"], "mix");
    assert_eq!(v[0]["latest"]["run_id"], "mix/2026-11-21/2");
    assert_eq!(v[0]["outlets"], run2.len());
    assert_eq!(v[0]["quality"]["silhouette"], 0.41);
    let (s, segs) = get(&c, &format!("{base}/api/segmentations/mix/segments")).await;
    assert_eq!(s, 200);
    let segs = segs.as_array().unwrap().clone();
    assert_eq!(segs.len(), 3);
    let outlets_total: u64 = segs.iter().map(|p| p["outlets"].as_u64().unwrap()).sum();
    assert_eq!(outlets_total as usize, run2.len());
    let value_share: f64 = segs
        .iter()
        .map(|p| p["value_share"].as_f64().unwrap())
        .sum();
    assert!((value_share - 1.0).abs() < 1e-9, "{value_share}");
    let region = segs[0]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["attribute"] == "region")
        .unwrap();
    assert_eq!(region["values"].as_array().unwrap().len(), 3);
    assert!(!segs[0]["patterns"].as_array().unwrap().is_empty());
    assert_eq!(
        get(&c, &format!("{base}/api/segmentations/nope/segments"))
            .await
            .0,
        404
    );
    assert_eq!(
        get(&c, &format!("{base}/api/segmentations/mix/segments/S1"))
            .await
            .1["segment_id"],
        "S1"
    );
    assert_eq!(
        get(&c, &format!("{base}/api/segmentations/mix/segments/S9"))
            .await
            .0,
        404
    );
    let (s, outs) = get(
        &c,
        &format!("{base}/api/segmentations/mix/segments/S2/outlets?limit=5"),
    )
    .await;
    assert_eq!(s, 200);
    let outs = outs.as_array().unwrap();
    assert_eq!(outs.len(), 5);
    assert!(outs
        .windows(2)
        .all(|w| w[0]["value"].as_f64() >= w[1]["value"].as_f64()));
    let (s, m) = get(&c, &format!("{base}/api/segmentations/mix/movement")).await;
    assert_eq!(s, 200);
    let moved = run2
        .iter()
        .filter(|a| a.2.as_ref().is_some_and(|p| p != &a.1))
        .count();
    assert_eq!(m["moved"], moved);
    let flow_total: u64 = m["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["outlets"].as_u64().unwrap())
        .sum();
    assert_eq!(flow_total as usize, run2.len());

    // Outlet 360 and search.
    let id = &run2[0].0;
    let (s, o) = get(&c, &format!("{base}/api/outlets/{id}")).await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(o["name"], "Sklep 0");
    let view = &o["segmentations"][0];
    assert_eq!(view["segment_id"], run2[0].1.as_str());
    assert!(!view["spectrum"].as_array().unwrap().is_empty());
    assert_eq!(view["potential"], 123.0);
    assert!(view["recommendations"]["should_have"].is_array());
    let weeks = o["history"].as_array().unwrap();
    assert_eq!(weeks.len(), 26);
    assert!(
        weeks
            .iter()
            .map(|w| w["value"].as_f64().unwrap())
            .sum::<f64>()
            > 0.0
    );
    assert_eq!(get(&c, &format!("{base}/api/outlets/NOPE-1")).await.0, 404);
    let (s, hits) = get(&c, &format!("{base}/api/outlets?q=sklep%201")).await;
    assert_eq!(s, 200);
    assert!(hits
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["name"].as_str().unwrap().starts_with("Sklep 1")));
    assert_eq!(get(&c, &format!("{base}/api/outlets?q=")).await.0, 400);

    // Pipeline.
    let (s, p) = get(&c, &format!("{base}/api/pipeline")).await;
    assert_eq!(s, 200);
    assert_eq!(p["segmentations"][0]["runs"].as_array().unwrap().len(), 2);
    assert_eq!(p["features_latest_date"], "2026-11-21");
    assert_eq!(p["kafka"]["dead_letters"], 0, "{p}");

    // Exports.
    let r = c
        .get(format!("{base}/api/segmentations/mix/export.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("segmentation,outlet_id,outlet_name,segment_id,segment_name,tags,confidence,value,lines,as_of"));
    assert_eq!(csv.lines().count(), run2.len() + 1);
    let r = c
        .get(format!("{base}/api/segmentations/mix/export.xlsx"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..2], b"PK");
    assert_eq!(
        get(&c, &format!("{base}/api/segmentations/nope/export.csv"))
            .await
            .0,
        404
    );

    // Editing: auth first, then bad input, then the real thing.
    let url = format!("{base}/api/segmentations/mix/segments/S1");
    let body = json!({"name": "Coffee-led convenience", "tags": ["#premium", "#coffee"], "updated_by": "test"});
    let r = c.put(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        c.put(&url)
            .bearer_auth("wrong")
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let bad = |b: &'static str| {
        c.put(&url)
            .bearer_auth("s3cret")
            .header("content-type", "application/json")
            .body(b)
            .send()
    };
    for (b, needle) in [
        ("{not json", "not a valid update"),
        (r#"{"tags": "x"}"#, "not a valid update"),
        (r#"{"colour": "red"}"#, "unknown field"),
        (r#"{"tags": ["two words"]}"#, "tags[0]"),
        (r#"{"name": ""}"#, "`name` is empty"),
        ("{}", "nothing to change"),
    ] {
        let r = bad(b).await.unwrap();
        assert_eq!(r.status(), 400, "{b}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(needle), "{b}: {v}");
    }
    let r = c
        .put(format!("{base}/api/segmentations/mix/segments/S9"))
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .put(&url)
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let saved: Value = r.json().await.unwrap();
    assert_eq!(saved["tags"], json!(["#premium", "#coffee"]));
    assert_eq!(saved["updated_by"], "test");

    // The name is stored on the metadata topic and the S1 outlets are republished.
    let meta = spectra_tests::compacted(&cfg.kafka.topics.metadata);
    assert_eq!(meta["mix:S1"]["name"], "Coffee-led convenience");
    let s1: Vec<String> = run2
        .iter()
        .filter(|a| a.1 == "S1")
        .map(|a| format!("mix:{}", a.0))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = spectra_tests::compacted(&cfg.kafka.topics.assignments);
        let renamed = s1
            .iter()
            .filter(|k| {
                view[*k]["change"] == "renamed"
                    && view[*k]["segment_name"] == "Coffee-led convenience"
            })
            .count();
        if renamed == s1.len() {
            assert!(view
                .values()
                .filter(|v| v["segment_id"] != "S1")
                .all(|v| v["change"] != "renamed"));
            assert_eq!(view.len(), run2.len());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {renamed} of {} S1 outlets were republished as renamed",
            s1.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, p) = get(&c, &format!("{base}/api/segmentations/mix/segments/S1")).await;
    assert_eq!(p["name"], "Coffee-led convenience");
    let profiles = spectra_tests::compacted(&cfg.kafka.topics.profiles);
    assert_eq!(profiles["mix:S1"]["tags"], json!(["#premium", "#coffee"]));

    // Metrics count requests by route and messages by change.
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"route="/api/segmentations/{name}/segments/{id}",status="401""#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"change="renamed""#));
    assert!(metrics.contains("spectra_publish_cycle_seconds"));
    token.cancel();

    // A restarted publisher rebuilds the names from the metadata topic.
    let token2 = CancellationToken::new();
    let svc = spectra_publisher::start(
        cfg.clone(),
        Context::new(token2.clone()),
        PublishOptions::default(),
    )
    .await
    .unwrap();
    let base2 = format!("http://{}", svc.addr().unwrap());
    let (_, p) = get(&c, &format!("{base2}/api/segmentations/mix/segments/S1")).await;
    assert_eq!(p["name"], "Coffee-led convenience");
    token2.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn editing_is_forbidden_without_a_configured_token() {
    let (_dir, _cfg, base, token, _) = service("").await;
    let r = reqwest::Client::new()
        .put(format!("{base}/api/segmentations/mix/segments/S1"))
        .bearer_auth("anything")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("publish.api_token"));
    token.cancel();
}
