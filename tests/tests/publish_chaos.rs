//! Issue 10, the publisher under crashes, through the `spectra` binary against a real
//! broker: the publish service is killed with SIGKILL at random moments — half of them
//! while a cycle is delivering (its `pending.json` exists) — across seven runs of a
//! real pipeline (a generated feed with drift; outlets that leave the window and come
//! back; segments renamed and renamed back through `segment-metadata`). After one
//! clean cycle the compacted view of every output topic equals the latest run
//! exactly: every assigned outlet with its segment, name and tags, nothing else; every
//! segment's profile; every outlet's recommendations. Before the kills, the stops
//! between a cycle's writes, made deterministic: a rename delivered but not recorded,
//! then renamed back (the case a diff cannot see); a pending record left behind; a
//! cycle recorded in `published.parquet` but not in `cycle.json`. Then `spectra publish --reconcile` repairs a topic someone wrote
//! behind the publisher's back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as Days, NaiveDate};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use spectra_core::tables::profile::SegmentProfile;
use spectra_core::tables::runs::{Latest, Run};
use spectra_core::Storage;
use spectra_tests::{compacted, producer, read_topic, send, Setup};

const START: &str = "2026-06-01";
const NAME: &str = "mix";

fn day(n: i64) -> NaiveDate {
    START.parse::<NaiveDate>().unwrap() + Days::days(n)
}

struct Env {
    setup: Setup,
    config: std::path::PathBuf,
    prefix: String,
}

impl Env {
    fn topic(&self, t: &str) -> String {
        format!("{}.{t}", self.prefix)
    }

    fn command(&self, sub: &str, extra: &[&str]) -> std::process::Command {
        let mut args = vec!["--config", self.config.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut c = self.setup.command(sub, &args);
        for t in ["assignments", "profiles", "recommendations", "metadata"] {
            c.args(["--set", &format!("kafka.topics.{t}={}", self.topic(t))]);
        }
        c.args(["--set", "publish.listen=127.0.0.1:0"]);
        c.env("RUST_LOG", "warn");
        c
    }

    fn ok(&self, sub: &str, extra: &[&str]) -> Output {
        let out = self.command(sub, extra).output().unwrap();
        assert!(
            out.status.success(),
            "{sub} {extra:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn spawn_publisher(&self) -> Child {
        self.command("publish", &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

fn kill(mut c: Child) {
    // SIGKILL: no shutdown hook, no flush, no state written.
    c.kill().unwrap();
    c.wait().unwrap();
}

/// Lines for outlets that buy only in some weeks, so they leave the 21-day window and
/// come back.
fn occasional_lines(
    p: &rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    topic: &str,
) {
    for o in 0..12 {
        for d in (20..36).chain(58..76) {
            let line = json!({"distributor_id": "DX", "invoice_id": format!("X-{o}-{d}"), "line_no": 1,
                "invoice_date": day(d).to_string(), "outlet_id": format!("OCC-{o:02}"),
                "sku_id": format!("SKU{:05}", 1 + (o % 5)), "quantity": 3, "net_value": 40.0 + o as f64});
            send(
                p,
                topic,
                Some(format!("OCC-{o}").as_bytes()),
                Some(&serde_json::to_vec(&line).unwrap()),
            );
        }
    }
}

fn rename(env: &Env, segment: &str, name: &str) {
    let p = producer();
    // An empty name (and no tags) gives the segment back its proposed name.
    let tags: Vec<String> = (!name.is_empty())
        .then(|| format!("#{}", name.to_lowercase()))
        .into_iter()
        .collect();
    let m = json!({"segmentation": NAME, "segment_id": segment, "name": name, "description": "",
        "tags": tags, "updated_by": "chaos", "updated_at": "2026-11-30T00:00:00Z"});
    send(
        &p,
        &env.topic("metadata"),
        Some(format!("{NAME}:{segment}").as_bytes()),
        Some(&serde_json::to_vec(&m).unwrap()),
    );
    spectra_tests::flush(&p);
}

/// What the latest run says every output topic must hold, with the names set.
fn expected(
    env: &Env,
    storage: &Storage,
    names: &BTreeMap<String, String>,
) -> (
    BTreeMap<String, Value>,
    BTreeMap<String, Value>,
    BTreeMap<String, Value>,
) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (run, lists) = rt.block_on(async {
        let latest: Latest = storage
            .get_json(&format!("segmentations/{NAME}/latest.json"))
            .await
            .unwrap()
            .unwrap();
        // The lists as the segmenter wrote them, every row grouped at once (the
        // publisher streams them a batch at a time).
        let file = latest.file(spectra_core::tables::layout::run_files::RECOMMENDATIONS);
        let rows = spectra_core::tables::read_rows(storage, &file)
            .await
            .unwrap()
            .unwrap();
        let run = Run::read(storage, NAME, latest).await.unwrap();
        (run, spectra_core::tables::runs::group_recommendations(rows))
    });
    let label = |p: &SegmentProfile| -> (String, Vec<String>) {
        match names.get(&p.segment_id) {
            Some(n) => (n.clone(), vec![format!("#{}", n.to_lowercase())]),
            None => (p.name.clone(), p.tags.clone()),
        }
    };
    // SKU names come from the master data fed.
    let skus = spectra_tests::services::fed_sku_names(&env.setup.skus);
    let mut profiles = BTreeMap::new();
    let mut labels = BTreeMap::new();
    for p in &run.profiles {
        let (name, tags) = label(p);
        labels.insert(p.segment_id.clone(), (name.clone(), tags.clone()));
        let mut p = p.clone();
        p.name = name;
        p.tags = tags;
        profiles.insert(
            format!("{NAME}:{}", p.segment_id),
            spectra_tests::services::named_profile(serde_json::to_value(&p).unwrap(), &skus),
        );
    }
    let assignments = run
        .assignments
        .iter()
        .map(|a| {
            let (name, tags) = &labels[&a.segment_id];
            (
                format!("{NAME}:{}", a.outlet_id),
                json!({"segment_id": a.segment_id, "segment_name": name, "tags": tags}),
            )
        })
        .collect();
    let recommendations = run
        .assignments
        .iter()
        .map(|a| {
            let r = lists.get(&a.outlet_id).cloned().unwrap_or_default();
            (
                format!("{NAME}:{}", a.outlet_id),
                spectra_tests::services::named_recommendations(
                    serde_json::to_value(r).unwrap(),
                    &skus,
                ),
            )
        })
        .collect();
    (assignments, profiles, recommendations)
}

/// The topics as their consumers see them, reduced to what `expected` compares.
fn on_topics(
    env: &Env,
) -> (
    BTreeMap<String, Value>,
    BTreeMap<String, Value>,
    BTreeMap<String, Value>,
) {
    let assignments = compacted(&env.topic("assignments"))
        .into_iter()
        .map(|(k, v)| (k, json!({"segment_id": v["segment_id"], "segment_name": v["segment_name"], "tags": v["tags"]})))
        .collect();
    let profiles = compacted(&env.topic("profiles"));
    let recommendations = compacted(&env.topic("recommendations"))
        .into_iter()
        .map(|(k, v)| {
            let lists = [
                "new_for_outlet",
                "should_have",
                "popular_in_segment",
                "seasonal_soon",
            ]
            .iter()
            .map(|l| (l.to_string(), v[*l].clone()))
            .collect::<serde_json::Map<_, _>>();
            (k, Value::Object(lists))
        })
        .collect();
    (assignments, profiles, recommendations)
}

fn assert_topics_equal_latest_run(
    env: &Env,
    storage: &Storage,
    names: &BTreeMap<String, String>,
    when: &str,
) {
    let (ea, ep, er) = expected(env, storage, names);
    let (ta, tp, tr) = on_topics(env);
    let diff = |e: &BTreeMap<String, Value>, t: &BTreeMap<String, Value>| -> Vec<String> {
        let keys: BTreeSet<&String> = e.keys().chain(t.keys()).collect();
        keys.into_iter()
            .filter(|k| e.get(*k) != t.get(*k))
            .map(|k| format!("{k}: run {:?} topic {:?}", e.get(k), t.get(k)))
            .take(5)
            .collect()
    };
    assert!(
        ta == ea,
        "{when}: segment-assignments differs from the latest run: {:?}",
        diff(&ea, &ta)
    );
    assert!(
        tp == ep,
        "{when}: segment-profiles differs from the latest run: {:?}",
        diff(&ep, &tp)
    );
    assert!(
        tr == er,
        "{when}: outlet-recommendations differs from the latest run: {:?}",
        diff(&er, &tr)
    );
}

/// Runs a cycle that cannot write the state file `file` (a real storage fault, made by
/// putting a folder where the file goes): it must fail there and leave its pending
/// record.
fn publish_unable_to_write(env: &Env, file: &Path, pending: &Path) {
    std::fs::remove_file(file).unwrap();
    std::fs::create_dir_all(file.join("blocked")).unwrap();
    let out = env.command("publish", &["--once"]).output().unwrap();
    assert!(
        !out.status.success(),
        "recording the cycle must fail while {} cannot be written",
        file.display()
    );
    assert!(
        pending.exists(),
        "the failed cycle leaves its pending record"
    );
}

/// The case a diff against the recorded state cannot see: a cycle delivers a rename
/// and stops before recording it (its state file cannot be written: a real storage
/// fault, made by putting a folder where the file goes); the segment is renamed back;
/// the next cycle's diff sees no change, yet the topic holds the rename. The pending
/// record makes that cycle send those keys again.
fn delivered_but_not_recorded_then_renamed_back(env: &Env, storage: &Storage, pending: &Path) {
    env.ok("publish", &["--once"]);
    let names = BTreeMap::new();
    assert_topics_equal_latest_run(env, storage, &names, "the first run");
    rename(env, "S1", "Beta");
    let blocker = pending.with_file_name("published.parquet");
    publish_unable_to_write(env, &blocker, pending);
    let renamed = compacted(&env.topic("assignments"))
        .values()
        .filter(|v| v["segment_name"] == "Beta")
        .count();
    assert!(
        renamed > 0,
        "the rename was delivered before the record failed"
    );
    std::fs::remove_dir_all(&blocker).unwrap();
    rename(env, "S1", "");
    env.ok("publish", &["--once"]);
    assert_topics_equal_latest_run(
        env,
        storage,
        &names,
        "a delivered, unrecorded rename, renamed back",
    );
}

/// A cycle delivers and records what it delivered, then stops before it removes its
/// pending record (killed between the two writes, or the removal fails). The record
/// is put back as that cycle wrote it before delivering: its mark (the one `cycle.json`
/// now holds) and the assignments it sent. The next cycle has nothing to repair: it
/// sends nothing, and removes the record. (Before the mark it sent every key of the
/// record again, as `renamed` from the segment each outlet is in.)
fn recorded_but_pending_left(env: &Env, storage: &Storage, pending: &Path) {
    rename(env, "S2", "Delta");
    env.ok("publish", &["--once"]);
    assert!(
        !pending.exists(),
        "a recorded cycle leaves no pending record"
    );
    let cycle: Value =
        serde_json::from_slice(&std::fs::read(pending.with_file_name("cycle.json")).unwrap())
            .unwrap();
    let mark = cycle["cycle"].as_str().expect("a recorded cycle's mark");
    let sent: Vec<Value> = compacted(&env.topic("assignments"))
        .values()
        .filter(|v| v["segment_name"] == "Delta")
        .map(|v| json!([v["outlet_id"], v["segment_id"]]))
        .collect();
    assert!(!sent.is_empty(), "the rename was delivered");
    let record = json!({"run_id": cycle["run_id"], "cycle": mark, "assignments": sent});
    std::fs::write(pending, serde_json::to_vec(&record).unwrap()).unwrap();
    let before = read_topic(&env.topic("assignments")).len();
    env.ok("publish", &["--once"]);
    assert!(
        !pending.exists(),
        "the recorded cycle's pending record is removed"
    );
    assert_eq!(
        read_topic(&env.topic("assignments")).len(),
        before,
        "a recorded cycle's keys are not sent again"
    );
    rename(env, "S2", "");
    env.ok("publish", &["--once"]);
    assert_topics_equal_latest_run(
        env,
        storage,
        &BTreeMap::new(),
        "a recorded cycle's pending record left behind",
    );
}

/// A cycle delivers, writes `published.parquet` and stops before `cycle.json` (its
/// write fails: a folder where the file goes). The rows' footer holds the cycle's
/// record: the next cycle writes `cycle.json` from it and sends nothing again.
/// (Before, it sent every key of the pending record again, as `renamed` where the
/// outlet's segment was the one sent, and every profile and list of the run, as a new
/// run's.)
fn recorded_in_the_rows_only(env: &Env, storage: &Storage, pending: &Path) {
    rename(env, "S1", "Gamma");
    let cycle = pending.with_file_name("cycle.json");
    publish_unable_to_write(env, &cycle, pending);
    let counts =
        || ["assignments", "profiles", "recommendations"].map(|t| read_topic(&env.topic(t)).len());
    let before = counts();
    let renamed = compacted(&env.topic("assignments"))
        .values()
        .filter(|v| v["segment_name"] == "Gamma")
        .count();
    assert!(
        renamed > 0,
        "the rename was delivered before cycle.json failed"
    );
    std::fs::remove_dir_all(&cycle).unwrap();
    env.ok("publish", &["--once"]);
    assert!(
        !pending.exists(),
        "the completed cycle's pending record is removed"
    );
    let recorded: Value = serde_json::from_slice(&std::fs::read(&cycle).unwrap()).unwrap();
    assert!(
        recorded["cycle"].is_string(),
        "cycle.json written from the rows' footer"
    );
    assert_eq!(
        counts(),
        before,
        "a cycle recorded in its rows sends nothing again"
    );
    rename(env, "S1", "");
    env.ok("publish", &["--once"]);
    assert_topics_equal_latest_run(
        env,
        storage,
        &BTreeMap::new(),
        "a cycle recorded in its rows only",
    );
}

#[test]
fn sigkilled_publishers_leave_the_compacted_topics_equal_to_the_latest_run() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let prefix = setup.group.trim_end_matches(".ingest").to_owned();
    let config = dir.path().join("spectra.toml");
    std::fs::write(
        &config,
        format!(
            "[publish]\npoll_seconds = 1\n\n[[segmentation]]\nname = \"{NAME}\"\nlevel = \"category\"\n\
             window_days = 21\nk = 3\nmin_value = 0.0\nmax_change_share = 1.0\nrecent_days = 0\n"
        ),
    )
    .unwrap();
    let env = Env {
        setup,
        config,
        prefix,
    };
    env.setup.create_topics(3);
    env.ok(
        "generate",
        &[
            "--outlets",
            "150",
            "--segments",
            "3",
            "--days",
            "90",
            "--start",
            START,
            "--drift-share",
            "0.3",
            "--drift-day",
            "45",
            "--bad-share",
            "0",
            "--seed",
            "21",
        ],
    );
    let p = producer();
    occasional_lines(&p, &env.setup.invoices);
    spectra_tests::flush(&p);
    env.setup.ingest_once(&[]);
    let storage = Storage::from_url(&env.setup.storage).unwrap();

    let seed: u64 = std::env::var("SPECTRA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    let pending = dir
        .path()
        .join(format!("state/publisher/{NAME}/pending.json"));
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let (mut kills, mut mid_cycle) = (0, 0);
    let runs = [30, 40, 50, 60, 70, 80, 89];
    for (i, d) in runs.iter().enumerate() {
        env.ok("aggregate", &["--once", "--as-of", &day(*d).to_string()]);
        env.ok("segment", &["--once"]);
        if i == 0 {
            delivered_but_not_recorded_then_renamed_back(&env, &storage, &pending);
            recorded_but_pending_left(&env, &storage, &pending);
            recorded_in_the_rows_only(&env, &storage, &pending);
        }
        // Renames, and one renamed back, between runs.
        match i {
            2 => {
                rename(&env, "S1", "Alpha");
                names.insert("S1".into(), "Alpha".into());
            }
            4 => {
                rename(&env, "S1", "Beta");
                rename(&env, "S2", "Gamma");
                names.insert("S1".into(), "Beta".into());
                names.insert("S2".into(), "Gamma".into());
            }
            5 => {
                rename(&env, "S1", "Alpha");
                names.insert("S1".into(), "Alpha".into());
            }
            _ => {}
        }
        for attempt in 0..3 {
            let child = env.spawn_publisher();
            let started = Instant::now();
            if attempt % 2 == 0 {
                // While a cycle delivers: as soon as it recorded what it is about to send.
                while !pending.exists() && started.elapsed() < Duration::from_secs(20) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..40)));
                if pending.exists() {
                    mid_cycle += 1;
                }
            } else {
                std::thread::sleep(Duration::from_millis(rng.gen_range(100..2500)));
            }
            kill(child);
            kills += 1;
        }
    }
    eprintln!("{kills} SIGKILLs over {} runs, {mid_cycle} of them while a cycle was delivering (seed {seed})", runs.len());
    assert!(kills >= 20);

    // One clean cycle, then the topics are the latest run exactly.
    env.ok("publish", &["--once"]);
    assert!(
        !pending.exists(),
        "a recorded cycle leaves no pending record"
    );
    assert_topics_equal_latest_run(&env, &storage, &names, "after the crashes");

    // Someone writes the assignments topic behind the publisher's back: a stray key and
    // a wrong segment. `--reconcile` puts it right; a normal cycle would not see it.
    let p = producer();
    send(
        &p,
        &env.topic("assignments"),
        Some(format!("{NAME}:GHOST").as_bytes()),
        Some(br#"{"segment_id":"S9"}"#),
    );
    let (ea, _, _) = expected(&env, &storage, &names);
    let victim = ea.keys().next().unwrap().clone();
    send(
        &p,
        &env.topic("assignments"),
        Some(victim.as_bytes()),
        Some(br#"{"segment_id":"S9","segment_name":"x","tags":[]}"#),
    );
    spectra_tests::flush(&p);
    let out = env.ok("publish", &["--reconcile"]);
    let summary: Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        summary["segmentations"][0]["repaired"],
        json!(2),
        "{summary}"
    );
    assert_topics_equal_latest_run(&env, &storage, &names, "after --reconcile");
}
