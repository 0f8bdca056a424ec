//! Issue 14, segmentations people steer, through the HTTP API against the real broker:
//! a generated feed (3 planted segments, a quarter of the outlets drifting from day 30)
//! is ingested, aggregated, segmented and published by the real services, and then
//! - a segmentation is created through the API (no config file change) and runs;
//! - a draft of the configured one (another level and k) is computed beside it, never
//!   published, and compared with the live run: the crosswalk covers every outlet, and
//!   the console's comparison page shows it (DOM and screenshot, headless Chromium);
//! - the draft is promoted: the next run takes the draft's partition with the live ids
//!   where segments correspond, and the compacted topic equals it;
//! - an outlet pinned by hand stays in its segment across a run with drift, though
//!   other drifting outlets move; every change is in the definition's history;
//! - a segment split by hand gets a new id for part of its outlets, and merged back its
//!   outlets return and the id retires, each published like any run.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use spectra_core::crosswalk::{adjusted_rand_index, Crosswalk, Member};
use spectra_tests::services::{
    compacted_assignments, count_colours, free_port, http, ok, run, run_assignments, wait_until,
    write_config, Publisher,
};
use spectra_tests::Setup;

const START: &str = "2026-06-01";
const DAY_29: &str = "2026-06-30";
const DAY_59: &str = "2026-07-29";
const TOKEN: &str = "steer-token";

fn get(base: &str, path: &str) -> Value {
    let (s, body) = http(reqwest::Method::GET, &format!("{base}{path}"), None, None);
    assert_eq!(s, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn send(method: reqwest::Method, base: &str, path: &str, body: Value) -> (u16, Value) {
    let (s, text) = http(method, &format!("{base}{path}"), Some(TOKEN), Some(body));
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn listed(base: &str, name: &str) -> Option<Value> {
    get(base, "/api/segmentations")
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

fn members(a: &BTreeMap<String, String>) -> BTreeMap<String, Member> {
    a.iter()
        .map(|(o, s)| {
            (
                o.clone(),
                Member {
                    segment: s.clone(),
                    value: 0.0,
                },
            )
        })
        .collect()
}

#[test]
fn create_draft_compare_promote_and_pin_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&dir.path().join("store"));
    let root = setup.dir.clone();
    let config = write_config(
        dir.path(),
        &format!(
            "[publish]\napi_token = \"{TOKEN}\"\npoll_seconds = 1\n\n\
             [[segmentation]]\nname = \"mix\"\nk = 3\nwindow_days = 28\nseed = 3\n\
             max_change_share = 1.0\n"
        ),
    );
    let truth = dir.path().join("truth.csv");
    setup.create_topics(3);
    ok(
        run(
            &setup,
            "generate",
            &config,
            &[
                "--outlets",
                "150",
                "--segments",
                "3",
                "--days",
                "60",
                "--start",
                START,
                "--drift-share",
                "0.25",
                "--drift-day",
                "30",
                "--bad-share",
                "0",
                "--seed",
                "14",
                "--truth",
                truth.to_str().unwrap(),
            ],
        ),
        "generate",
    );
    setup.ingest_once(&[]);
    let aggregate = |as_of: &str| {
        ok(
            run(&setup, "aggregate", &config, &["--once", "--as-of", as_of]),
            "aggregate",
        )
    };
    let segment = || ok(run(&setup, "segment", &config, &["--once"]), "segment");
    let run_of = |seg: &Value, name: &str| -> Option<String> {
        seg["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_owned())
            .find(|r| r.split('/').next() == Some(name))
    };

    aggregate(DAY_29);
    let seg = segment();
    let live1 = run_of(&seg, "mix").expect("the configured segmentation ran");

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _publisher = Publisher::spawn(&setup, &config, port);
    let prefix = setup.group.trim_end_matches(".ingest").to_owned();
    let topic = format!("{prefix}.assignments");
    wait_until("run 1 published", || {
        http(reqwest::Method::GET, &format!("{base}/healthz"), None, None).0 == 200
            && listed(&base, "mix").is_some_and(|s| s["published"]["run_id"] == live1.as_str())
    });
    assert_eq!(
        compacted_assignments(&topic, "mix"),
        run_assignments(&root, &live1)
    );

    // The config file seeded version 1.
    let d = get(&base, "/api/segmentations/mix/definition");
    assert_eq!(d["current"]["version"], 1, "{d}");
    assert_eq!(d["current"]["source"], "config");
    assert_eq!(d["current"]["action"], "seeded");

    // Changes need the token; bad definitions are refused naming the problem.
    let (s, _) = http(
        reqwest::Method::POST,
        &format!("{base}/api/segmentations"),
        None,
        Some(json!({"definition": {"name": "brands"}})),
    );
    assert_eq!(s, 401);
    let (s, body) = send(
        reqwest::Method::POST,
        &base,
        "/api/segmentations",
        json!({"definition": {"name": "brands", "level": "colour"}}),
    );
    assert_eq!(s, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("level `colour`"),
        "{body}"
    );
    // A filter the aggregator would refuse on every pass (a cross join that grows with
    // the square of the outlets) is refused when written.
    let (s, body) = send(
        reqwest::Method::POST,
        &base,
        "/api/segmentations",
        json!({"definition": {"name": "brands", "level": "brand",
            "filter": "region IN (SELECT a.region FROM outlet_master a, outlet_master b)"}}),
    );
    assert_eq!(s, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("filter `region IN (SELECT a.region FROM outlet_master a, outlet_master b)`: subqueries are not allowed"),
        "{body}"
    );

    // Create a segmentation through the API: the services run it without a restart.
    let (s, body) = send(
        reqwest::Method::POST,
        &base,
        "/api/segmentations",
        json!({"definition": {"name": "brands", "level": "brand", "k": 4, "window_days": 28},
               "by": "ana", "note": "brand mix for the key-account team"}),
    );
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["by"], "ana");
    let (s, _) = send(
        reqwest::Method::POST,
        &base,
        "/api/segmentations",
        json!({"definition": {"name": "brands"}}),
    );
    assert_eq!(s, 409, "a second create of one name is refused");
    aggregate(DAY_29);
    let seg = segment();
    let brands1 = run_of(&seg, "brands").expect("the created segmentation ran");
    assert!(run_of(&seg, "mix").is_none(), "mix is up to date: {seg}");
    wait_until("the created segmentation published", || {
        listed(&base, "brands").is_some_and(|s| s["published"]["run_id"] == brands1.as_str())
    });
    let b = listed(&base, "brands").unwrap();
    assert_eq!(b["level"], "brand", "{b}");
    assert_eq!(
        compacted_assignments(&topic, "brands"),
        run_assignments(&root, &brands1)
    );

    // A draft of `mix` with another level and k: computed, never published.
    let (s, draft) = send(
        reqwest::Method::POST,
        &base,
        "/api/segmentations/mix/drafts",
        json!({"changes": {"level": "subcategory", "k": 4}, "by": "ana", "note": "finer"}),
    );
    assert_eq!(s, 201, "{draft}");
    let draft_name = draft["name"].as_str().unwrap().to_owned();
    assert_eq!(draft_name, "mix.draft-1");
    let drafts = get(&base, "/api/segmentations/mix/drafts");
    assert_eq!(drafts[0]["status"], "open");
    assert_eq!(drafts[0]["ready"], false, "no run yet: {drafts}");
    let (s, body) = send(
        reqwest::Method::POST,
        &base,
        "/api/segmentations/mix/drafts/draft-1/promote",
        json!({}),
    );
    assert_eq!(s, 409, "a draft without a run cannot be promoted: {body}");
    aggregate(DAY_29);
    let seg = segment();
    let draft_run = run_of(&seg, &draft_name).expect("the draft ran");
    assert!(run_of(&seg, "mix").is_none(), "{seg}");
    let draft_assign = run_assignments(&root, &draft_run);
    let draft_segments: BTreeSet<&String> = draft_assign.values().collect();
    assert_eq!(draft_segments.len(), 4, "k = 4 in the draft");
    std::thread::sleep(std::time::Duration::from_secs(3)); // publish cycles pass
    assert!(
        spectra_tests::compacted(&topic)
            .keys()
            .all(|k| !k.starts_with("mix.draft")),
        "a draft is never published"
    );
    assert!(listed(&base, &draft_name).is_none());
    let drafts = get(&base, "/api/segmentations/mix/drafts");
    assert_eq!(drafts[0]["ready"], true, "{drafts}");

    // Compare the draft with the live run.
    let cmp = get(&base, "/api/segmentations/mix/compare?draft=draft-1");
    let live_assign = run_assignments(&root, &live1);
    assert_eq!(cmp["a"]["run_id"], live1.as_str());
    assert_eq!(cmp["b"]["run_id"], draft_run.as_str());
    assert_eq!(cmp["a"]["level"], "category");
    assert_eq!(cmp["b"]["level"], "subcategory");
    let union: BTreeSet<&String> = live_assign.keys().chain(draft_assign.keys()).collect();
    let cells = cmp["crosswalk"].as_array().unwrap();
    let total: u64 = cells.iter().map(|c| c["outlets"].as_u64().unwrap()).sum();
    assert_eq!(
        total as usize,
        union.len(),
        "the crosswalk covers every outlet"
    );
    let b_total: u64 = cells
        .iter()
        .filter(|c| !c["b"].is_null())
        .map(|c| c["outlets"].as_u64().unwrap())
        .sum();
    assert_eq!(b_total as usize, draft_assign.len());
    // Each crosswalk cell counts what the two run folders say.
    for c in cells
        .iter()
        .filter(|c| !c["a"].is_null() && !c["b"].is_null())
    {
        let n = live_assign
            .iter()
            .filter(|(o, s)| {
                **s == c["a"].as_str().unwrap()
                    && draft_assign.get(*o).map(String::as_str) == c["b"].as_str()
            })
            .count();
        assert_eq!(n as u64, c["outlets"].as_u64().unwrap(), "{c}");
    }
    let cells_ab: Vec<(String, String, usize)> = cells
        .iter()
        .filter(|c| !c["a"].is_null() && !c["b"].is_null())
        .map(|c| {
            (
                c["a"].as_str().unwrap().to_owned(),
                c["b"].as_str().unwrap().to_owned(),
                c["outlets"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    let ari = cmp["ari"].as_f64().unwrap();
    assert!((ari - adjusted_rand_index(&cells_ab)).abs() < 1e-9);
    assert!(ari > 0.2, "the same planted segments underlie both: {ari}");
    assert_eq!(cmp["same_level"], false);
    let matches: BTreeMap<String, String> = cmp["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["b"].as_str().unwrap().to_owned(),
                m["a"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let movers = live_assign
        .iter()
        .filter(|(o, s)| {
            draft_assign
                .get(*o)
                .is_some_and(|b| matches.get(b) != Some(*s))
        })
        .count();
    assert_eq!(cmp["movers"]["outlets"].as_u64().unwrap() as usize, movers);
    // Any two runs by id, too.
    let cmp2 = get(
        &base,
        &format!("/api/segmentations/mix/compare?a={live1}&b={draft_run}"),
    );
    assert_eq!(cmp2["crosswalk"], cmp["crosswalk"]);

    // The comparison page in headless Chromium: the crosswalk as the API gives it,
    // and on the screenshot the heatmap's strongest cell and the outlines of the
    // segments that correspond.
    let page = format!("{base}/#/compare/{draft_name}");
    let dom = spectra_tests::services::rendered(&page);
    assert!(dom.contains(r#"id="crosswalk""#), "{dom}");
    assert!(
        dom.contains(&format!(r#"id="ari">{:.3}<"#, ari)),
        "the page shows the API's ARI {ari:.3}"
    );
    let largest = cells
        .iter()
        .filter(|c| !c["a"].is_null() && !c["b"].is_null())
        .map(|c| c["outlets"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        dom.contains(&format!(">{largest}<small>")),
        "the largest crosswalk cell ({largest} outlets) is on the page"
    );
    let shot = spectra_tests::services::artifacts().join("console-compare.png");
    spectra_tests::services::browser(&[&format!("--screenshot={}", shot.display())], &page);
    let [teal, warm] = count_colours(&shot, [(12, 133, 153), (232, 89, 12)]);
    assert!(
        teal >= 800,
        "the crosswalk's largest cell is on the screenshot: {teal} pixels ({})",
        shot.display()
    );
    assert!(
        warm >= 150,
        "matched cells are outlined: {warm} pixels ({})",
        shot.display()
    );

    // The console's steering page lists the draft, ready to compare, and the history.
    let steer = spectra_tests::services::rendered(&format!("{base}/#/drafts/mix"));
    assert!(
        steer.contains(r#"data-draft="mix.draft-1""#)
            && steer.contains(r##"href="#/compare/mix.draft-1""##)
            && steer.contains(r#"id="history""#)
            && steer.contains("seeded"),
        "{steer}"
    );

    // Promote: the next run of `mix` takes the draft's partition, ids matched.
    let (s, body) = send(
        reqwest::Method::POST,
        &base,
        "/api/segmentations/mix/drafts/draft-1/promote",
        json!({"by": "ana", "note": "agreed in the workshop"}),
    );
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["segmentation"]["promoted_from"]["run_id"],
        draft_run.as_str()
    );
    assert_eq!(body["draft"]["action"], "promoted");
    aggregate(DAY_29);
    let seg = segment();
    let live2 = run_of(&seg, "mix").expect("the promotion ran at once");
    assert!(
        run_of(&seg, &draft_name).is_none(),
        "a closed draft no longer runs"
    );
    let promoted = run_assignments(&root, &live2);
    assert_eq!(promoted.len(), draft_assign.len());
    let same = Crosswalk::new(&members(&draft_assign), &members(&promoted));
    assert!(
        (same.ari - 1.0).abs() < 1e-9,
        "the promoted run is the draft's partition: ARI {}",
        same.ari
    );
    for (b, a) in &matches {
        let carried = same.matches.iter().find(|m| &m.a == b).unwrap();
        assert_eq!(&carried.b, a, "draft segment {b} takes the live id {a}");
    }
    wait_until("the promoted run published", || {
        listed(&base, "mix").is_some_and(|s| s["published"]["run_id"] == live2.as_str())
    });
    assert_eq!(compacted_assignments(&topic, "mix"), promoted);
    let d = get(&base, "/api/segmentations/mix/definition");
    assert_eq!(d["current"]["definition"]["level"], "subcategory");
    assert_eq!(d["current"]["action"], "promoted");
    assert_eq!(d["history"].as_array().unwrap().len(), 2);

    // Pin an outlet that drifts to its segment; run on the drifted window.
    let drifters: Vec<String> = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (!f[2].is_empty()).then(|| f[0].to_owned())
        })
        .filter(|o| promoted.contains_key(o))
        .collect();
    assert!(drifters.len() >= 20, "{}", drifters.len());
    let pinned: Vec<&String> = drifters.iter().take(3).collect();
    for o in &pinned {
        let (s, body) = send(
            reqwest::Method::PUT,
            &base,
            &format!("/api/segmentations/mix/pins/{o}"),
            json!({"segment_id": promoted[*o], "by": "rep-7", "note": "key account"}),
        );
        assert_eq!(s, 200, "{body}");
    }
    let (s, body) = send(
        reqwest::Method::PUT,
        &base,
        "/api/segmentations/mix/pins/X",
        json!({"segment_id": "S999"}),
    );
    assert_eq!(s, 400, "a pin to an unknown segment is refused: {body}");
    aggregate(DAY_59);
    let seg = segment();
    let live3 = run_of(&seg, "mix").expect("a run on the drifted window");
    let after = run_assignments(&root, &live3);
    for o in &pinned {
        assert_eq!(
            after.get(*o),
            promoted.get(*o),
            "pinned outlet {o} stays put"
        );
    }
    let moved_drifters = drifters
        .iter()
        .filter(|o| !pinned.contains(o) && after.get(*o) != promoted.get(*o))
        .count();
    assert!(
        moved_drifters * 2 >= drifters.len() - pinned.len(),
        "most unpinned drifters move ({moved_drifters} of {}), so the pins kept theirs",
        drifters.len() - pinned.len()
    );
    wait_until("the drifted run published", || {
        listed(&base, "mix").is_some_and(|s| s["published"]["run_id"] == live3.as_str())
    });
    assert_eq!(compacted_assignments(&topic, "mix"), after);
    let view = get(&base, &format!("/api/outlets/{}", pinned[0]));
    let mix = view["segmentations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["segmentation"] == "mix")
        .unwrap()
        .clone();
    assert_eq!(mix["pinned"], true, "{mix}");
    let d = get(&base, "/api/segmentations/mix/definition");
    let actions: Vec<&str> = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["seeded", "promoted", "pinned", "pinned", "pinned"]
    );

    // Split the largest segment by hand: a new id takes part of its outlets.
    let mut sizes: BTreeMap<&String, usize> = BTreeMap::new();
    for s in after.values() {
        *sizes.entry(s).or_default() += 1;
    }
    let (largest, n_largest) = sizes.iter().max_by_key(|(_, n)| **n).unwrap();
    let (largest, n_largest) = ((*largest).clone(), *n_largest);
    let (s, body) = send(
        reqwest::Method::POST,
        &base,
        &format!("/api/segmentations/mix/segments/{largest}/split"),
        json!({"by": "ana", "note": "two kinds of shop"}),
    );
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["definition"]["k"], sizes.len() + 1);
    let seg = segment();
    let live4 = run_of(&seg, "mix").expect("the split ran at once");
    let created: Vec<String> = seg["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == live4.as_str())
        .map(|r| serde_json::from_value(r["created"].clone()).unwrap())
        .unwrap();
    assert_eq!(created.len(), 1, "{seg}");
    let new_id = &created[0];
    assert!(!sizes.keys().any(|k| *k == new_id), "ids are never reused");
    let split = run_assignments(&root, &live4);
    let in_new: Vec<&String> = split
        .iter()
        .filter(|(_, s)| *s == new_id)
        .map(|(o, _)| o)
        .collect();
    let from_largest = in_new
        .iter()
        .filter(|o| after.get(**o) == Some(&largest))
        .count();
    assert!(
        !in_new.is_empty() && from_largest * 10 >= in_new.len() * 9,
        "the new segment comes out of {largest} ({n_largest} outlets): {from_largest} of {}; run: {seg}; sizes after: {:?}",
        in_new.len(),
        split.values().fold(BTreeMap::<&String, usize>::new(), |mut m, s| {
            *m.entry(s).or_default() += 1;
            m
        })
    );
    for o in &pinned {
        assert_eq!(split.get(*o), promoted.get(*o), "pins hold through a split");
    }
    let kept_unchanged = after
        .iter()
        .filter(|(_, s)| **s != largest)
        .filter(|(o, s)| split.get(*o) == Some(*s))
        .count();
    let others = after.values().filter(|s| **s != largest).count();
    assert!(
        kept_unchanged * 10 >= others * 9,
        "the other segments keep their outlets: {kept_unchanged} of {others}"
    );
    wait_until("the split published", || {
        listed(&base, "mix").is_some_and(|s| s["published"]["run_id"] == live4.as_str())
    });

    // Merge it back: its outlets join the split segment, its id retires.
    let (s, body) = send(
        reqwest::Method::POST,
        &base,
        &format!("/api/segmentations/mix/segments/{new_id}/merge"),
        json!({"into": largest, "by": "ana"}),
    );
    assert_eq!(s, 200, "{body}");
    let seg = segment();
    let live5 = run_of(&seg, "mix").expect("the merge ran at once");
    let merged = run_assignments(&root, &live5);
    assert!(merged.values().all(|s| s != new_id), "{new_id} is retired");
    for o in &in_new {
        if !pinned.contains(o) {
            assert_eq!(merged.get(*o), Some(&largest), "{o} joined {largest}");
        }
    }
    wait_until("the merge published", || {
        listed(&base, "mix").is_some_and(|s| s["published"]["run_id"] == live5.as_str())
    });
    assert_eq!(compacted_assignments(&topic, "mix"), merged);

    // Retire the created one: it no longer runs; its last run stays served.
    let (s, body) = send(
        reqwest::Method::DELETE,
        &base,
        "/api/segmentations/brands/definition",
        json!({"by": "ana"}),
    );
    assert_eq!(s, 200, "{body}");
    let seg = segment();
    assert!(run_of(&seg, "brands").is_none(), "{seg}");
    assert!(!seg["up_to_date"]
        .as_array()
        .unwrap()
        .contains(&json!("brands")));
}
