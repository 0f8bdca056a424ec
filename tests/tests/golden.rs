//! The end-to-end golden test: the seeded feed of `spectra_tests::fixture` through the
//! real ingest, aggregator, segmenter and publisher, summed up (feature manifests,
//! each run's segments, sizes, names, spectra and changes, every outlet's segment in
//! both runs as `"{run 1} {run 2}"` (`-` when not assigned), and what the publisher put
//! on its topics) and compared with
//! `tests/data/golden/pipeline.json`. Numbers are rounded so that only a change of
//! behaviour shows, not the order of a floating-point sum.
//!
//! A change of behaviour that is meant: rerun with `SPECTRA_UPDATE_GOLDEN=1`, which
//! rewrites the file, and review its diff. On a mismatch the summary of this run is
//! written to `{target}/artifacts/golden-actual.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use spectra_core::service::Context;
use spectra_publisher::PublishOptions;
use spectra_tests::fixture::{fixture, Fixture, RunInfo, Stage, Store, SEGMENTATION};
use spectra_tests::served;
use tokio_util::sync::CancellationToken;

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn golden_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/golden/pipeline.json")
}

fn manifest(store: &Store, run: &RunInfo) -> Value {
    let path = store.root.join(format!(
        "features/segmentation={SEGMENTATION}/as_of={}/_manifest.json",
        run.as_of
    ));
    let m: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    json!({
        "as_of": m["as_of"], "window_start": m["window_start"], "level": m["level"],
        "outlets": m["outlets"], "features": m["features"],
        "unknown_skus": m["unknown_skus"], "unknown_outlets": m["unknown_outlets"],
    })
}

fn run_summary(fx: &Fixture, run: &RunInfo, previous: Option<&RunInfo>) -> Value {
    let segments: Vec<Value> = run
        .segments()
        .iter()
        .map(|s| {
            let p = run
                .profiles
                .iter()
                .find(|p| p["segment_id"] == s.as_str())
                .unwrap();
            let spectrum: Map<String, Value> = served::spectrum(p)
                .into_iter()
                .map(|f| (f.feature, json!(round(f.share, 4))))
                .collect();
            let value: f64 = run
                .members(s)
                .iter()
                .map(|o| run.assignments[*o].value)
                .sum();
            json!({
                "segment_id": s,
                "name": run.proposed_name(s),
                "outlets": run.members(s).len(),
                "value": round(value, 2),
                "spectrum": spectrum,
                "patterns": served::patterns(p).len(),
            })
        })
        .collect();
    let mut changes: BTreeMap<&str, usize> = BTreeMap::new();
    for a in run.assignments.values() {
        *changes.entry(a.change.as_str()).or_default() += 1;
    }
    let left = previous.map_or(0, |p| {
        p.assignments
            .keys()
            .filter(|o| !run.assignments.contains_key(*o))
            .count()
    });
    let drifted_moved = fx
        .drifted()
        .iter()
        .filter(|o| {
            run.assignments
                .get(&o.id)
                .is_some_and(|a| a.change == "moved")
        })
        .count();
    json!({
        "run_id": run.run_id,
        "segments": segments,
        "changes": changes,
        "left": left,
        "drifted_moved": drifted_moved,
        "silhouette": round(run.model["quality"]["silhouette"].as_f64().unwrap(), 3),
    })
}

/// The most frequent first item of each recommendation list, per segment.
fn recommendations(recs: &BTreeMap<String, Value>) -> Value {
    let mut firsts: BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>> = BTreeMap::new();
    for r in recs.values() {
        let seg = r["segment_id"].as_str().unwrap().to_owned();
        for list in [
            "new_for_outlet",
            "should_have",
            "popular_in_segment",
            "seasonal_soon",
        ] {
            let first = r[list][0]["sku_id"].as_str().unwrap_or("-").to_owned();
            *firsts
                .entry(seg.clone())
                .or_default()
                .entry(list.to_owned())
                .or_default()
                .entry(first)
                .or_default() += 1;
        }
    }
    let out: Map<String, Value> = firsts
        .into_iter()
        .map(|(seg, lists)| {
            let lists: Map<String, Value> = lists
                .into_iter()
                .map(|(list, counts)| {
                    let (sku, n) = counts
                        .into_iter()
                        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                        .unwrap();
                    (list, json!({"sku_id": sku, "outlets": n}))
                })
                .collect();
            (seg, Value::Object(lists))
        })
        .collect();
    Value::Object(out)
}

/// Every JSON path where `a` and `b` differ.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (u, v) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differences(&format!("{path}.{k}"), u, v, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if a != b => out.push(format!("{path}: expected {a}, got {b}")),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeded_feed_through_the_whole_pipeline_matches_the_golden_summary() {
    let fx = fixture();
    let (run1, run2) = (&fx.run1, &fx.run2);
    let store = fx.store(Stage::Run1);
    let cfg = store.config(&spectra_tests::fresh("golden"));
    let publish = || async {
        spectra_publisher::run(
            cfg.clone(),
            Context::new(CancellationToken::new()),
            PublishOptions {
                once: true,
                ..Default::default()
            },
        )
        .await
        .unwrap()
    };
    let first = publish().await;
    store.advance_to_run2();
    let second = publish().await;
    let counts = |s: &spectra_publisher::Summary| json!(s.segmentations[0].assignments);
    let profiles: Map<String, Value> = spectra_tests::compacted(&cfg.kafka.topics.profiles)
        .into_iter()
        .map(|(k, p)| {
            let spectrum: Map<String, Value> = served::spectrum(&p)
                .into_iter()
                .map(|f| (f.feature, json!(round(f.index, 1))))
                .collect();
            let v = json!({
                "name": p["name"],
                "outlets": served::outlets(&p),
                "value_share": round(served::value_share(&p), 4),
                "index": spectrum,
            });
            (k, v)
        })
        .collect();
    let assignments: Map<String, Value> = fx
        .outlets
        .iter()
        .map(|o| {
            let seg = |r: &'static RunInfo| {
                r.assignments
                    .get(&o.id)
                    .map_or("-", |a| a.segment_id.as_str())
            };
            (o.id.clone(), json!(format!("{} {}", seg(run1), seg(run2))))
        })
        .collect();
    let actual = json!({
        "feed": {
            "outlets": fx.outlets.len(),
            "lines": fx.lines.len(),
            "messages": fx.messages,
            "redelivered": fx.redelivered,
            "corrected": fx.corrected,
            "drifted": fx.drifted().len(),
        },
        "features": [manifest(&store, run1), manifest(&store, run2)],
        "runs": [run_summary(fx, run1, None), run_summary(fx, run2, Some(run1))],
        "published": {
            "run1": counts(&first),
            "run2": counts(&second),
            "assignments": spectra_tests::compacted(&cfg.kafka.topics.assignments).len(),
            "profiles": profiles,
            "recommendations": recommendations(
                &spectra_tests::compacted(&cfg.kafka.topics.recommendations)
            ),
        },
        "assignments": assignments,
    });

    let file = golden_file();
    let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
    if std::env::var_os("SPECTRA_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
        eprintln!("wrote {}", file.display());
        return;
    }
    let expected: Value = serde_json::from_slice(&std::fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with SPECTRA_UPDATE_GOLDEN=1 to write it",
            file.display()
        )
    }))
    .unwrap();
    let mut diff = Vec::new();
    differences("", &expected, &actual, &mut diff);
    if !diff.is_empty() {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.ancestors().nth(3).unwrap().join("artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("golden-actual.json"), text).unwrap();
        panic!(
            "the pipeline's output differs from {} in {} place(s) (this run's summary: {}; \
             if the change is meant, rerun with SPECTRA_UPDATE_GOLDEN=1 and review the diff):\n{}",
            file.display(),
            diff.len(),
            dir.join("golden-actual.json").display(),
            diff.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}
