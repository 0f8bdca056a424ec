//! The publisher's HTTP API, route by route, against a running service with a real
//! broker, on the runs the real services made of a seeded feed
//! (`spectra_tests::fixture`): status codes, auth and bad input, the rename flow
//! (metadata topic → `renamed` assignments), exports, the console files and the admin
//! routes. What the insight routes serve, figure by figure, is in `publish_insight.rs`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spectra_core::service::Context;
use spectra_core::tables::rolling;
use spectra_publisher::PublishOptions;
use spectra_tests::fixture::{fixture, SEGMENTATION};
use spectra_tests::served;
use spectra_tests::services::{get_json, publisher_on_run2};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_with_auth_bad_input_and_the_rename_flow() {
    let (store, cfg, base, token) = publisher_on_run2("api", "s3cret").await;
    let fx = fixture();
    let run2 = &fx.run2;
    let n = run2.assignments.len();
    // The coffee-and-tea outlets' segment is renamed below; another one is listed.
    let coffee = fx.segment_of_taste(run2, 0);
    let other = fx.segment_of_taste(run2, 1);
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
    let (s, v) = get_json(&c, &format!("{base}/api/nope")).await;
    assert_eq!(s, 404);
    assert!(v["error"].as_str().unwrap().contains("no such route"));

    // Segmentations and segments.
    let (s, v) = get_json(&c, &format!("{base}/api/segmentations")).await;
    assert_eq!(s, 200);
    assert_eq!(v[0]["name"], SEGMENTATION);
    assert_eq!(v[0]["latest"]["run_id"], run2.run_id.as_str());
    assert_eq!(v[0]["outlets"], n);
    assert_eq!(
        v[0]["quality"]["silhouette"],
        run2.model["quality"]["silhouette"]
    );
    let (s, segs) = get_json(&c, &format!("{base}/api/segmentations/mix/segments")).await;
    assert_eq!(s, 200);
    let segs = segs.as_array().unwrap().clone();
    assert_eq!(
        segs.iter()
            .map(|p| served::segment_id(p).to_owned())
            .collect::<std::collections::BTreeSet<_>>(),
        run2.segments()
    );
    for p in &segs {
        let id = served::segment_id(p);
        assert_eq!(served::outlets(p) as usize, run2.members(id).len(), "{id}");
        let spectrum = served::spectrum(p);
        let share: f64 = spectrum.iter().map(|f| f.share).sum();
        assert!(
            (share - 1.0).abs() < 1e-6,
            "{id}: spectrum shares sum to {share}"
        );
        assert!(spectrum.windows(2).all(|w| w[0].share >= w[1].share));
        assert!(!served::patterns(p).is_empty(), "{id}");
        // SKUs carry their master-data names; a pattern is named after its leader's.
        for pattern in p["patterns"].as_array().unwrap() {
            for k in pattern["skus"].as_array().unwrap() {
                assert_eq!(k["sku_name"], fx.sku_name(&k["sku_id"]), "{id}: {k}");
            }
            let lead = &pattern["skus"][0]["sku_name"];
            assert!(
                pattern["name"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("led by {}", lead.as_str().unwrap())),
                "{id}: {pattern}"
            );
        }
        // Region, channel and size: every outlet has one value, shares sum to 1.
        for attr in ["region", "channel", "size"] {
            let values = served::attribute(p, attr);
            let total: f64 = values.iter().map(|v| v.share).sum();
            assert!((total - 1.0).abs() < 1e-6, "{id} {attr}: {values:?}");
        }
        // Every listed value of every attribute is a share of the segment's outlets;
        // `postcode`, nearly one value per outlet, does not flood the mix.
        let mut listed: std::collections::BTreeMap<String, usize> = Default::default();
        for a in served::attributes(p) {
            assert!((0.0..=1.0 + 1e-9).contains(&a.share), "{id}: {a:?}");
            *listed.entry(a.attribute).or_default() += 1;
        }
        assert!(listed.values().all(|n| *n <= 30), "{id}: {listed:?}");
        assert!(
            listed.contains_key("staff"),
            "a number attribute: {listed:?}"
        );
    }
    let outlets_total: u64 = segs.iter().map(served::outlets).sum();
    assert_eq!(outlets_total as usize, n);
    // The shares of the assigned outlets' value sum to 1, the returner's negative
    // value included (its segment's value is the signed sum of its outlets').
    let value_share: f64 = segs.iter().map(served::value_share).sum();
    assert!(
        run2.assignments.values().any(|a| a.value < 0.0),
        "the fixture has an outlet with a negative value"
    );
    assert!(
        (value_share - 1.0).abs() <= 1e-9,
        "value shares sum to {value_share}"
    );
    let regions = served::attribute(&segs[0], "region");
    assert_eq!(regions.len(), 3, "{regions:?}");
    assert_eq!(
        get_json(&c, &format!("{base}/api/segmentations/nope/segments"))
            .await
            .0,
        404
    );
    assert_eq!(
        get_json(
            &c,
            &format!("{base}/api/segmentations/mix/segments/{coffee}")
        )
        .await
        .1["segment_id"],
        coffee.as_str()
    );
    assert_eq!(
        get_json(&c, &format!("{base}/api/segmentations/mix/segments/S99"))
            .await
            .0,
        404
    );
    let (s, outs) = get_json(
        &c,
        &format!("{base}/api/segmentations/mix/segments/{other}/outlets?limit=5"),
    )
    .await;
    assert_eq!(s, 200);
    let outs = outs.as_array().unwrap();
    assert_eq!(outs.len(), 5);
    assert!(outs
        .windows(2)
        .all(|w| w[0]["value"].as_f64() >= w[1]["value"].as_f64()));
    let (s, m) = get_json(&c, &format!("{base}/api/segmentations/mix/movement")).await;
    assert_eq!(s, 200);
    let moved = run2.with_change("moved").len();
    assert!(moved > 0);
    assert_eq!(m["moved"], moved);
    let flow_total: u64 = m["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["outlets"].as_u64().unwrap())
        .sum();
    assert_eq!(flow_total as usize, n);

    // Potential and tiers. An outlet below its segment's median value has at least
    // the volume it lacks to win; within each segment the A outlets hold the first half
    // of the potential and the B outlets the next 30%; `?sort=tier` lists A first, by
    // potential.
    let mut tiers_seen = std::collections::BTreeSet::new();
    for id in run2.segments() {
        let mut members: Vec<(&String, &spectra_tests::fixture::Assignment)> = run2
            .assignments
            .iter()
            .filter(|(_, a)| a.segment_id == id)
            .collect();
        let median = served::median(members.iter().map(|m| m.1.value.max(0.0)).collect());
        for (o, a) in &members {
            assert!(
                a.potential >= median - a.value.max(0.0) - 1e-6 * median,
                "{id} {o}: potential {} below the volume gap {}",
                a.potential,
                median - a.value
            );
        }
        let potentials: Vec<(&str, f64)> = members
            .iter()
            .map(|(o, a)| (o.as_str(), a.potential))
            .collect();
        for (o, _, expected) in served::abc_tiers(&potentials) {
            let tier = &run2.assignments[o].tier;
            assert_eq!(tier, expected, "{id} {o}");
            tiers_seen.insert(tier.clone());
        }
        let (s, listed) = get_json(
            &c,
            &format!("{base}/api/segmentations/mix/segments/{id}/outlets?sort=tier&limit=1000"),
        )
        .await;
        assert_eq!(s, 200);
        let got: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["outlet_id"].as_str().unwrap())
            .collect();
        members.sort_by(|a, b| {
            a.1.tier
                .cmp(&b.1.tier)
                .then(b.1.potential.total_cmp(&a.1.potential))
                .then(a.0.cmp(b.0))
        });
        let want: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(got, want, "{id}");
    }
    assert_eq!(tiers_seen.len(), 3, "A, B and C all occur: {tiers_seen:?}");
    let (s, v) = get_json(
        &c,
        &format!(
            "{base}/api/segmentations/mix/segments/{}/outlets?sort=size",
            run2.segments().first().unwrap()
        ),
    )
    .await;
    assert_eq!(s, 400, "{v}");

    // Outlet 360 and search. While the aggregator moves lines between days (its marker,
    // written as a pass writes it), the view has no weeks and says why, and the pipeline
    // shows the re-roll; once it ends, the weeks.
    let (id, a) = run2.assignments.iter().next().unwrap();
    let storage = spectra_core::Storage::from_url(&store.url).unwrap();
    let seen = rolling::load_marked(&storage).await.unwrap();
    let pass = rolling::begin(&storage, &seen, 9).await.unwrap().unwrap();
    let (s, o) = get_json(&c, &format!("{base}/api/outlets/{id}")).await;
    assert_eq!(s, 200, "{o}");
    let note = o["history_note"].as_str().unwrap_or_default();
    assert!(note.contains("re-rolls days"), "{o}");
    assert_eq!(o["history"], json!([]), "{o}");
    let (_, p) = get_json(&c, &format!("{base}/api/pipeline")).await;
    assert_eq!(p["aggregator"]["rerolling"]["lease_epoch"], 9, "{p}");
    assert!(rolling::end(&storage, &pass).await.unwrap());
    let (s, o) = get_json(&c, &format!("{base}/api/outlets/{id}")).await;
    assert_eq!(s, 200, "{o}");
    // Run 2 is published (`publisher_on_run2`): no cycle works, the weeks are there.
    assert!(o["history_note"].is_null(), "{o}");
    assert_eq!(o["name"], fx.outlet(id).name.as_str());
    let view = &o["segmentations"][0];
    assert_eq!(view["segment_id"], a.segment_id.as_str());
    assert!(!view["spectrum"].as_array().unwrap().is_empty());
    let potential = view["potential"].as_f64().unwrap();
    assert!(
        (potential - a.potential).abs() < 0.01 * a.potential.max(1.0),
        "{potential} vs {}",
        a.potential
    );
    assert!(view["recommendations"]["should_have"].is_array());
    assert_eq!(view["tier"], a.tier.as_str());
    // Every item says why it is on its list and carries the SKU's name; the run's
    // notes come with the view.
    for list in spectra_core::tables::runs::REC_LISTS {
        for item in view["recommendations"][list].as_array().unwrap() {
            assert_eq!(item["sku_name"], fx.sku_name(&item["sku_id"]), "{item}");
            assert!(
                item["reason"].as_str().is_some_and(|r| r.len() > 30),
                "{list}: {item}"
            );
        }
    }
    assert!(view["recommendation_notes"].is_object(), "{view}");
    let weeks = o["history"].as_array().unwrap();
    assert_eq!(weeks.len(), 26);
    // Each week holds the lines fed in for the outlet that week (the 26 weeks ending at
    // the run's as-of date), through ingest, the daily roll-up and the history index.
    let from = run2.as_of - chrono::Days::new(7 * 26 - 1);
    let mut bought = 0;
    for (w, week) in weeks.iter().enumerate() {
        let start = from + chrono::Days::new(7 * w as u64);
        let end = start + chrono::Days::new(6);
        let (value, lines) = fx
            .lines
            .iter()
            .filter(|l| l.outlet == *id && start <= l.date && l.date <= end)
            .fold((0.0, 0), |(v, n), l| (v + l.value, n + 1));
        bought += lines;
        assert_eq!(week["week"], start.to_string(), "{week}");
        let got = week["value"].as_f64().unwrap();
        assert!(
            (got - value).abs() < 1e-6 * value.abs().max(1.0),
            "{week} vs {value}"
        );
        assert_eq!(week["lines"], lines, "{week}");
    }
    assert!(bought > 0, "the outlet bought in the history's weeks");
    assert_eq!(
        get_json(&c, &format!("{base}/api/outlets/NOPE-1")).await.0,
        404
    );
    let (s, hits) = get_json(&c, &format!("{base}/api/outlets?q=sklep%201")).await;
    assert_eq!(s, 200);
    let hits = hits.as_array().unwrap();
    assert!(!hits.is_empty());
    assert!(hits
        .iter()
        .all(|h| h["name"].as_str().unwrap().starts_with("Sklep 1")));
    assert_eq!(get_json(&c, &format!("{base}/api/outlets?q=")).await.0, 400);

    // Pipeline.
    let (s, p) = get_json(&c, &format!("{base}/api/pipeline")).await;
    assert_eq!(s, 200);
    assert_eq!(p["segmentations"][0]["runs"].as_array().unwrap().len(), 2);
    assert_eq!(p["features_latest_date"], run2.as_of.to_string());
    assert_eq!(p["kafka"]["dead_letters"], 0, "{p}");
    // The aggregator's passes are over: no re-roll under way.
    assert!(p["aggregator"]["runs"].as_u64().unwrap() > 0, "{p}");
    assert!(p["aggregator"]["rerolling"].is_null(), "{p}");
    // Ingest's progress comes from the status document ingest publishes (topic names
    // with `-`, as every test topic has), every partition caught up.
    let lag = p["kafka"]["ingest_lag"].as_array().unwrap();
    assert!(
        lag.iter()
            .any(|l| l["topic"].as_str().unwrap().ends_with(".invoices")
                && l["lines_written"].as_u64().unwrap() > 0),
        "{p}"
    );
    assert!(lag.iter().all(|l| l["lag"] == 0), "{p}");

    // Exports.
    let r = c
        .get(format!("{base}/api/segmentations/mix/export.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("segmentation,outlet_id,outlet_name,segment_id,segment_name,tags,confidence,value,lines,as_of"));
    assert_eq!(csv.lines().count(), n + 1);
    let r = c
        .get(format!("{base}/api/segmentations/mix/export.xlsx"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let xlsx = r.bytes().await.unwrap();
    assert_eq!(&xlsx[..2], b"PK");
    // The streamed workbook holds what the streamed CSV holds, outlet for outlet.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mix.xlsx"), &xlsx).unwrap();
    let sheet = spectra_tests::services::xlsx_rows(&dir.path().join("mix.xlsx"), 1);
    let mut from_csv = csv::Reader::from_reader(csv.as_bytes());
    let csv_outlets: Vec<String> = from_csv
        .records()
        .map(|r| r.unwrap()[1].to_owned())
        .collect();
    let xlsx_outlets: Vec<&str> = sheet[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(xlsx_outlets, csv_outlets);
    assert_eq!(
        get_json(&c, &format!("{base}/api/segmentations/nope/export.csv"))
            .await
            .0,
        404
    );

    // Editing: auth first, then bad input, then the real thing.
    let url = format!("{base}/api/segmentations/mix/segments/{coffee}");
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
        .put(format!("{base}/api/segmentations/mix/segments/S99"))
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

    // The name is stored on the metadata topic and the segment's outlets are
    // republished.
    let meta = spectra_tests::compacted(&cfg.kafka.topics.metadata);
    assert_eq!(
        meta[&format!("mix:{coffee}")]["name"],
        "Coffee-led convenience"
    );
    let s1: Vec<String> = run2
        .members(&coffee)
        .iter()
        .map(|o| format!("mix:{o}"))
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
                .filter(|v| v["segment_id"] != coffee.as_str())
                .all(|v| v["change"] != "renamed"));
            assert_eq!(view.len(), n);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {renamed} of {} {coffee} outlets were republished as renamed",
            s1.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, p) = get_json(&c, &url).await;
    assert_eq!(p["name"], "Coffee-led convenience");
    let profiles = spectra_tests::compacted(&cfg.kafka.topics.profiles);
    assert_eq!(
        profiles[&format!("mix:{coffee}")]["tags"],
        json!(["#premium", "#coffee"])
    );

    // Two edits of one segment at once, of different fields: neither is lost.
    let put = |b: Value| c.put(&url).bearer_auth("s3cret").json(&b).send();
    for i in 0..6 {
        let (a, b) = tokio::join!(
            put(json!({"description": format!("d{i}")})),
            put(json!({"tags": [format!("#t{i}")]}))
        );
        assert_eq!(a.unwrap().status(), 200);
        assert_eq!(b.unwrap().status(), 200);
        let (_, p) = get_json(&c, &url).await;
        assert_eq!(
            (&p["description"], &p["tags"]),
            (&json!(format!("d{i}")), &json!([format!("#t{i}")])),
            "edits {i}"
        );
    }

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
    let (_, p) = get_json(
        &c,
        &format!("{base2}/api/segmentations/mix/segments/{coffee}"),
    )
    .await;
    assert_eq!(p["name"], "Coffee-led convenience");
    token2.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn editing_is_forbidden_without_a_configured_token() {
    let (_store, _cfg, base, token) = publisher_on_run2("api", "").await;
    let segment = fixture().run2.segments().into_iter().next().unwrap();
    let r = reqwest::Client::new()
        .put(format!("{base}/api/segmentations/mix/segments/{segment}"))
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
