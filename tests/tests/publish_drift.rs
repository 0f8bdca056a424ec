//! `spectra publish` against a real broker, on the runs the real services made of a
//! seeded feed (`spectra_tests::fixture`): run 1 is published, then run 2 (some outlets
//! changed taste, some stopped buying, new ones opened) with a crash (the process
//! aborts after 10 acknowledged messages) in the middle of publishing it. The compacted view of `segment-assignments` must be exactly the latest
//! run, every republished value identical to the one it repeats, and what moved, left
//! and joined what the feed planted. Recommendations go out only for the outlets whose
//! lists (in the runs' files) or segment changed; a third run over the same features
//! sends none.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use spectra_core::service::Context;
use spectra_core::tables::read_rows;
use spectra_core::tables::runs::{
    group_recommendations, MovementRow, RecommendationRow, Recommendations,
};
use spectra_publisher::PublishOptions;
use spectra_tests::fixture::{fixture, RunInfo, Stage, SEASONAL, SEGMENTATION};
use spectra_tests::served;
use tokio_util::sync::CancellationToken;

async fn publish_once(
    cfg: &spectra_core::Config,
) -> Result<spectra_publisher::Summary, spectra_publisher::Error> {
    let ctx = Context::new(CancellationToken::new());
    spectra_publisher::run(
        cfg.clone(),
        ctx,
        PublishOptions {
            once: true,
            ..Default::default()
        },
    )
    .await
}

/// The compacted view a run must leave: `mix:{outlet}` → segment.
fn expected(run: &RunInfo) -> BTreeMap<String, String> {
    run.assignments
        .iter()
        .map(|(o, a)| (format!("{SEGMENTATION}:{o}"), a.segment_id.clone()))
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
    let fx = fixture();
    let (run1, run2) = (&fx.run1, &fx.run2);
    let store = fx.store(Stage::Run1);
    let cfg = store.config(&spectra_tests::fresh("pub"));

    // Run 1: everything is new.
    let s = publish_once(&cfg).await.unwrap();
    assert_eq!(
        s.segmentations[0].assignments.get("new"),
        Some(&(run1.assignments.len() as u64)),
        "{s:?}"
    );
    assert_eq!(view(&cfg.kafka.topics.assignments), expected(run1));
    let first_messages = spectra_tests::read_topic(&cfg.kafka.topics.assignments).len();
    assert_eq!(
        first_messages,
        run1.assignments.len(),
        "the first run publishes each outlet once"
    );

    // A second cycle over the same run publishes nothing.
    let s = publish_once(&cfg).await.unwrap();
    assert_eq!(s.messages, 0, "{s:?}");

    // Run 2: what moved, left and joined is what the feed planted.
    let moved = run2.with_change("moved");
    let joined: BTreeSet<&str> = run2.with_change("new");
    let left: BTreeSet<&str> = run1
        .assignments
        .keys()
        .filter(|o| !run2.assignments.contains_key(*o))
        .map(String::as_str)
        .collect();
    let churned: BTreeSet<&str> = fx
        .outlets
        .iter()
        .filter(|o| o.churns)
        .map(|o| o.id.as_str())
        .collect();
    let opened: BTreeSet<&str> = fx
        .outlets
        .iter()
        .filter(|o| o.joins)
        .map(|o| o.id.as_str())
        .collect();
    assert_eq!(left, churned, "the outlets that stopped buying leave");
    assert_eq!(joined, opened, "the outlets that opened are new");
    let drifted = fx.drifted();
    let followed = drifted
        .iter()
        .filter(|o| {
            moved.contains(o.id.as_str())
                && run2.assignments[&o.id].segment_id
                    == fx.segment_of_taste(run2, o.drifts_to.unwrap())
        })
        .count();
    assert!(
        followed * 10 >= drifted.len() * 8,
        "most outlets that changed taste moved to their new taste's segment: {followed} of {}",
        drifted.len()
    );
    let others: Vec<&&str> = moved
        .iter()
        .filter(|o| !drifted.iter().any(|d| d.id == **o))
        .collect();
    assert!(
        others.len() <= 2,
        "outlets that did not change moved: {others:?}"
    );
    assert!(moved.len() > 5 && left.len() > 5);

    // The publish process dies (SIGABRT, no shutdown) after 10 acknowledged messages
    // of run 2, between delivering and recording.
    store.advance_to_run2();
    let t = &cfg.kafka.topics;
    let outputs = [&t.assignments, &t.profiles, &t.recommendations];
    let on_outputs = || -> usize {
        outputs
            .iter()
            .map(|topic| spectra_tests::read_topic(topic).len())
            .sum()
    };
    let before = on_outputs();
    let out = std::process::Command::new(spectra_tests::spectra_bin())
        .args(["publish", "--once", "--admin-listen", "127.0.0.1:0"])
        .args(store.flags(&cfg))
        .env("RUST_LOG", "warn")
        .env("SPECTRA_TEST_ABORT_AFTER_ACKS", "10")
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(6), // SIGABRT
        "the publisher must die mid-cycle: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let delivered = on_outputs() - before;
    assert!(
        delivered >= 10,
        "the crashed cycle delivered part of run 2 ({delivered} messages)"
    );
    assert!(
        std::fs::read_to_string(store.root.join("state/publisher/mix/cycle.json"))
            .unwrap()
            .contains(&run1.run_id),
        "the crashed cycle must not record its state"
    );

    // Recovery through the binary, as an operator would run it.
    let out = spectra_ok(&store, &cfg, &["publish", "--once"]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seg = &summary["segmentations"][0];
    assert_eq!(seg["run_id"], run2.run_id.as_str());
    assert_eq!(seg["assignments"]["moved"], moved.len() as u64, "{summary}");
    assert_eq!(seg["assignments"]["tombstone"], left.len() as u64);
    assert_eq!(seg["assignments"]["new"], joined.len() as u64);

    // The compacted view is exactly the latest run.
    assert_eq!(view(&cfg.kafka.topics.assignments), expected(run2));

    // Nothing contradicts: a key's messages after run 1 are identical repeats of one
    // value (the crash republished), never two different values.
    let all = spectra_tests::read_topic(&cfg.kafka.topics.assignments);
    let mut after: HashMap<String, Vec<Option<Vec<u8>>>> = HashMap::new();
    for m in &all {
        let k = String::from_utf8(m.key.clone().unwrap()).unwrap();
        let is_first_run = m
            .value
            .as_ref()
            .is_some_and(|v| String::from_utf8_lossy(v).contains(&run1.run_id));
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
        assert_eq!(v["segmentation"], SEGMENTATION);
        assert!(v["run_id"] == run1.run_id.as_str() || v["run_id"] == run2.run_id.as_str());
    }
    let compacted = spectra_tests::compacted(&cfg.kafka.topics.assignments);
    for o in &moved {
        let m = &compacted[&format!("{SEGMENTATION}:{o}")];
        assert_eq!(m["change"], "moved", "{m}");
        assert_eq!(
            m["previous_segment_id"],
            run1.assignments[*o].segment_id.as_str()
        );
        assert_eq!(m["segment_id"], run2.assignments[*o].segment_id.as_str());
        assert_eq!(m["as_of"], run2.as_of.to_string());
    }
    // Each move carries its evidence: the run's movements.parquet row of that outlet
    // (reason, score, fit, recent invoices, its three strongest drivers).
    let storage = spectra_core::Storage::from_url(&cfg.storage.url).unwrap();
    let movements: Vec<MovementRow> =
        read_rows(&storage, &format!("{}/movements.parquet", run2.path))
            .await
            .unwrap()
            .expect("the run's movements.parquet");
    let rows: BTreeMap<&str, &MovementRow> = movements
        .iter()
        .map(|m| (m.outlet_id.as_str(), m))
        .collect();
    let mut tested = 0;
    for o in &moved {
        let m = &compacted[&format!("{SEGMENTATION}:{o}")];
        let row = rows
            .get(o)
            .unwrap_or_else(|| panic!("{o} moved without a movements.parquet row"));
        let e = &m["evidence"];
        assert_eq!(e["reason"], row.reason.as_str(), "{m}");
        // JSON keeps a float to its last digit or so (serde_json's fast parsing).
        let same = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * b.abs().max(1.0),
            (a, b) => a.is_none() && b.is_none(),
        };
        assert!(same(e["score"].as_f64(), row.score), "{m}");
        assert!(same(e["fit"].as_f64(), row.fit), "{m}");
        assert_eq!(e["recent_invoices"].as_f64(), Some(row.recent_invoices));
        let drivers: Vec<&str> = e["drivers"]
            .as_array()
            .unwrap_or_else(|| panic!("{m}"))
            .iter()
            .map(|d| d["feature"].as_str().unwrap())
            .collect();
        let strongest: Vec<&str> = row
            .drivers
            .iter()
            .take(3)
            .map(|d| d.feature.as_str())
            .collect();
        assert_eq!(drivers, strongest, "{m}");
        tested += usize::from(row.score.is_some());
    }
    assert!(tested > 0, "no move came from the change detector");
    // Each segment's own drift in both readings (the features have lines per
    // feature); `drifted` from 0.1 in either.
    let drift = run2.model["movement"]["segments"]
        .as_array()
        .expect("the segments' drift in model.json");
    assert!(!drift.is_empty());
    for s in drift {
        let (spend, lines) = (s["drift"].as_f64(), s["line_drift"].as_f64());
        let (Some(spend), Some(lines)) = (spend, lines) else {
            panic!("a drift in spend and in lines: {s}");
        };
        assert!(s["line_own_drift"].is_f64(), "{s}");
        assert_eq!(s["drifted"], spend >= 0.1 || lines >= 0.1, "{s}");
        // Its drivers are of the reading that drifted more.
        let reading = if lines > spend { "lines" } else { "spend" };
        let drivers = s["drivers"].as_array().expect("drivers");
        assert!(
            !drivers.is_empty() && drivers.iter().all(|d| d["reading"] == reading),
            "{s}"
        );
    }
    // Messages of outlets that did not move carry none.
    for (k, m) in &compacted {
        if m["change"] != "moved" {
            assert!(m.get("evidence").is_none(), "{k}: {m}");
        }
    }

    // Profiles and recommendations follow the latest run too.
    let profiles = spectra_tests::compacted(&cfg.kafka.topics.profiles);
    assert_eq!(
        profiles.keys().cloned().collect::<Vec<_>>(),
        run2.segments()
            .iter()
            .map(|s| format!("{SEGMENTATION}:{s}"))
            .collect::<Vec<_>>()
    );
    for (k, p) in &profiles {
        let seg = served::segment_id(p);
        assert_eq!(k, &format!("{SEGMENTATION}:{seg}"));
        assert_eq!(p["run_id"], run2.run_id.as_str());
        assert_eq!(p["name"], run2.proposed_name(seg).as_str());
        assert_eq!(served::outlets(p) as usize, run2.members(seg).len());
    }
    let coffee_segment = fx.segment_of_taste(run2, 0);
    let coffee = served::spectrum(&profiles[&format!("{SEGMENTATION}:{coffee_segment}")])
        .into_iter()
        .find(|f| f.feature == "coffee")
        .expect("coffee in the spectrum");
    assert!(
        coffee.index > 150.0,
        "the coffee-and-tea outlets' segment over-indexes on coffee: {coffee:?}"
    );
    let recs = spectra_tests::compacted(&cfg.kafka.topics.recommendations);
    assert_eq!(
        recs.keys().cloned().collect::<Vec<_>>(),
        expected(run2).into_keys().collect::<Vec<_>>()
    );
    for r in recs.values() {
        for list in [
            "new_for_outlet",
            "should_have",
            "popular_in_segment",
            "seasonal_soon",
        ] {
            assert!(r[list].is_array(), "{list} missing in {r}");
        }
    }
    // Run 2 sent the lists of the outlets whose lists differ from run 1's (read from
    // the two runs' files) or whose segment changed, and no others; the rest keep run
    // 1's message, which says the same.
    let lists1 = run_lists(&storage, &run1.path).await;
    let lists2 = run_lists(&storage, &run2.path).await;
    let (segments1, segments2) = (segments_of(run1), segments_of(run2));
    let want = to_send((&segments1, &lists1), (&segments2, &lists2));
    let t = &cfg.kafka.topics;
    assert_eq!(
        sent_by(&t.recommendations, &run2.run_id),
        want,
        "run 2's recommendations: the changed lists only"
    );
    let listed = |segments: &BTreeMap<String, String>, lists: &Lists| {
        segments.keys().filter(|o| lists.contains_key(*o)).count()
    };
    assert_eq!(
        seg["recommendations_unchanged"].as_u64().unwrap() as usize,
        listed(&segments2, &lists2) - want.len(),
        "{summary}"
    );
    for (k, r) in &recs {
        let o = k.strip_prefix(&format!("{SEGMENTATION}:")).unwrap();
        let items = |list: &str| -> Vec<(String, f64)> {
            r[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    let sku = i["sku_id"].as_str().unwrap().to_owned();
                    (sku, i["score"].as_f64().unwrap())
                })
                .collect()
        };
        let now = lists2.get(o).cloned().unwrap_or_default();
        for (list, items_now) in now.lists() {
            let want: Vec<(String, f64)> = items_now
                .iter()
                .map(|i| (i.sku_id.clone(), i.score))
                .collect();
            assert_eq!(
                items(list),
                want,
                "{k} {list}: the topic holds run 2's list"
            );
        }
    }
    // Last year's weeks after the as-of date were ice cream, bought nowhere since: the
    // seasonal pick everywhere.
    let seasonal: Vec<&str> = fx
        .skus
        .iter()
        .filter(|s| s.category == SEASONAL)
        .map(|s| s.id.as_str())
        .collect();
    for (k, r) in &recs {
        let first = r["seasonal_soon"][0]["sku_id"].as_str().unwrap_or_default();
        assert!(seasonal.contains(&first), "{k}: {r}");
    }

    // The same features once more (`spectra segment --once --all`): a new run whose
    // lists are run 2's sends none of them again, only what differs.
    spectra_ok(&store, &cfg, &["segment", "--once", "--all"]);
    let latest = spectra_core::tables::runs::latest(&storage, SEGMENTATION)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(latest.run_id, run2.run_id, "a third run");
    let run3 = spectra_core::tables::runs::Run::read(&storage, SEGMENTATION, latest.clone())
        .await
        .unwrap();
    let segments3: BTreeMap<String, String> = run3
        .assignments
        .iter()
        .map(|a| (a.outlet_id.clone(), a.segment_id.clone()))
        .collect();
    assert_eq!(segments3, segments2, "nothing moves on the same features");
    let lists3 = run_lists(&storage, &latest.path).await;
    let s = publish_once(&cfg).await.unwrap();
    let report = &s.segmentations[0];
    let want = to_send((&segments2, &lists2), (&segments3, &lists3));
    assert_eq!(sent_by(&t.recommendations, &latest.run_id), want, "{s:?}");
    assert_eq!(report.recommendations as usize, want.len(), "{s:?}");
    assert_eq!(
        report.recommendations_unchanged as usize,
        listed(&segments3, &lists3) - want.len()
    );
    assert!(
        want.is_empty(),
        "the same features give the same lists: {} of {} sent again",
        want.len(),
        listed(&segments3, &lists3)
    );
}

type Lists = BTreeMap<String, Recommendations>;

/// Runs `spectra {args}` on the store, as an operator would, and checks it succeeded.
fn spectra_ok(
    store: &spectra_tests::fixture::Store,
    cfg: &spectra_core::Config,
    args: &[&str],
) -> std::process::Output {
    let out = std::process::Command::new(spectra_tests::spectra_bin())
        .args(args)
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(store.flags(cfg))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spectra {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A run's lists, from its `recommendations.parquet`.
async fn run_lists(storage: &spectra_core::Storage, run_path: &str) -> Lists {
    let file = format!("{run_path}/recommendations.parquet");
    let rows: Vec<RecommendationRow> = read_rows(storage, &file).await.unwrap().unwrap();
    group_recommendations(rows)
}

/// Outlet → segment of a run.
fn segments_of(run: &RunInfo) -> BTreeMap<String, String> {
    run.assignments
        .iter()
        .map(|(o, a)| (o.clone(), a.segment_id.clone()))
        .collect()
}

/// The keys whose recommendations a new run (`next`: segments, lists) sends after
/// `before` was published: the outlets with lists that differ, or in another segment
/// (or new); an outlet whose lists emptied gets empty ones.
fn to_send(
    before: (&BTreeMap<String, String>, &Lists),
    next: (&BTreeMap<String, String>, &Lists),
) -> BTreeSet<String> {
    next.0
        .iter()
        .filter(|(o, segment)| {
            let reassigned = before.0.get(*o) != Some(*segment);
            let had = before.1.get(*o).filter(|_| before.0.contains_key(*o));
            match next.1.get(*o) {
                Some(now) => reassigned || had != Some(now),
                None => had.is_some(),
            }
        })
        .map(|(o, _)| format!("{SEGMENTATION}:{o}"))
        .collect()
}

/// The keys of the messages on `topic` that name run `run_id`.
fn sent_by(topic: &str, run_id: &str) -> BTreeSet<String> {
    spectra_tests::read_topic(topic)
        .into_iter()
        .filter(|m| {
            let value = m.value.as_deref().unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(value).is_ok_and(|v| v["run_id"] == run_id)
        })
        .map(|m| String::from_utf8(m.key.unwrap()).unwrap())
        .collect()
}
