//! Two ingest processes of one group, killed and restarted at random moments while
//! storage stalls, on `file://` and on an S3-compatible server (moto, started by
//! `scripts/test.sh`): every produced line is stored, none twice. And a topic deleted
//! and recreated while ingest is stopped: ingest refuses loudly, skips nothing, and
//! re-ingests only when told to (`--reset-checkpoint`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use spectra_tests::*;

/// Where a test keeps its tables.
#[derive(Clone)]
enum Store {
    File,
    /// The S3 server's endpoint.
    S3(String),
}

/// A setup whose storage is the given store (a fresh bucket on S3).
fn setup(dir: &Path, store: &Store) -> (Setup, Vec<(&'static str, String)>) {
    let mut s = Setup::new(dir);
    match store {
        Store::File => (s, Vec::new()),
        Store::S3(endpoint) => {
            let (bucket, env) = s3_bucket(endpoint);
            s.storage = format!("s3://{bucket}/tables");
            (s, env)
        }
    }
}

fn command(s: &Setup, env: &[(&'static str, String)], extra: &[&str]) -> Command {
    let mut c = Command::new(spectra_bin());
    c.arg("ingest").args(s.flags()).args(extra);
    c.env("RUST_LOG", "warn,spectra_ingest=info");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Every stored invoice line: (partition, offset, invoice id).
fn stored(storage: &spectra_core::Storage) -> Vec<(i32, i64, String)> {
    block_on(async {
        let mut out = Vec::new();
        for o in storage.list("raw/invoices/").await.unwrap() {
            if !o.path.ends_with(".parquet") {
                continue;
            }
            let data = storage.get(&o.path).await.unwrap().unwrap();
            let batches: Vec<RecordBatch> = spectra_core::schema::from_parquet(data).unwrap();
            for b in batches {
                let p = b
                    .column_by_name("source_partition")
                    .unwrap()
                    .as_primitive::<Int32Type>();
                let off = b
                    .column_by_name("source_offset")
                    .unwrap()
                    .as_primitive::<Int64Type>();
                let inv = b.column_by_name("invoice_id").unwrap().as_string::<i32>();
                for r in 0..b.num_rows() {
                    out.push((p.value(r), off.value(r), inv.value(r).to_owned()));
                }
            }
        }
        out
    })
}

fn line(n: usize) -> (String, String) {
    let outlet = format!("O{}", n % 541);
    let msg = format!(
        r#"{{"distributor_id":"D1","invoice_id":"F/{n}","line_no":1,"invoice_date":"2026-04-{:02}","outlet_id":"{outlet}","sku_id":"S1","quantity":1,"net_value":1.5}}"#,
        1 + n % 5
    );
    (outlet, msg)
}

fn produce(topic: &str, range: std::ops::Range<usize>, pace: Option<Duration>) {
    let p = producer();
    for n in range {
        let (k, v) = line(n);
        send(&p, topic, Some(k.as_bytes()), Some(v.as_bytes()));
        if let Some(d) = pace {
            if n % 500 == 0 {
                std::thread::sleep(d);
            }
        }
    }
    flush(&p);
}

fn spawn(s: &Setup, env: &[(&'static str, String)], flags: &[&str], log: &Path) -> Child {
    spawn_stalling(s, env, flags, log, "0.03:2500")
}

/// `spectra ingest` whose storage operations stall as `stall` says (see
/// `SPECTRA_TEST_STORAGE_STALL` in `spectra_core::storage`), its log appended to `log`.
fn spawn_stalling(
    s: &Setup,
    env: &[(&'static str, String)],
    flags: &[&str],
    log: &Path,
    stall: &str,
) -> Child {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    command(s, env, flags)
        .env("SPECTRA_TEST_STORAGE_STALL", stall)
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap()
}

/// The multi-process tests take turns: each runs two or three ingest processes, and
/// three at once on two cores stretch their rebalances past their deadlines.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn chaos(store: Store, total: usize, kills: usize, seed: u64) {
    let _turn = heavy();
    let dir = tempfile::tempdir().unwrap();
    let (setup, env) = setup(dir.path(), &store);
    setup.create_topics(4);
    let storage = spectra_core::Storage::from_url(&setup.storage).unwrap();
    // Half the stream is there from the start, half arrives during the chaos.
    produce(&setup.invoices, 0..total / 2, None);
    let invoices = setup.invoices.clone();
    let producer_thread = std::thread::spawn(move || {
        produce(
            &invoices,
            total / 2..total,
            Some(Duration::from_millis(150)),
        )
    });
    let flags = [
        "--set",
        "ingest.flush_rows=1500",
        "--set",
        "ingest.flush_age_ms=150",
        "--set",
        "kafka.session_timeout_ms=4000",
    ];
    let logs = [dir.path().join("a.log"), dir.path().join("b.log")];
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let started = Instant::now();
    let mut procs = [
        spawn(&setup, &env, &flags, &logs[0]),
        spawn(&setup, &env, &flags, &logs[1]),
    ];
    // Wait for progress, then kill one of the two at random moments, restarting it at once.
    let deadline = Instant::now() + Duration::from_secs(90);
    while stored(&storage).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.gen_range(500..5000)));
        let victim = rng.gen_range(0..2);
        procs[victim].kill().unwrap(); // SIGKILL
        procs[victim].wait().unwrap();
        procs[victim] = spawn(&setup, &env, &flags, &logs[victim]);
    }
    producer_thread.join().unwrap();
    // Let the survivors run a little, then stop them the hard way too.
    std::thread::sleep(Duration::from_secs(2));
    for p in &mut procs {
        p.kill().unwrap();
        p.wait().unwrap();
    }
    let chaos_secs = started.elapsed().as_secs_f64();
    let before_final = stored(&storage).len();
    let t = Instant::now();
    let out = command(&setup, &env, &["--once"])
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "final ingest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let final_secs = t.elapsed().as_secs_f64();
    let rows = stored(&storage);
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    let positions: BTreeSet<(i32, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    let log_text: String = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap_or_default())
        .collect();
    let count = |needle: &str| log_text.matches(needle).count();
    if let Ok(keep) = std::env::var("SPECTRA_TEST_KEEP_LOGS") {
        std::fs::write(&keep, &log_text).unwrap();
    }
    eprintln!(
        "chaos on {}: {kills} kills in {chaos_secs:.1} s, {before_final} lines stored before the final run ({final_secs:.1} s), \
         {} stored in the end for {total} produced; in the chaos runs: leases taken {}, batches fenced {}, unfinished batches removed {}, revocations {}",
        setup.storage,
        rows.len(),
        count("lease taken"),
        count("fenced: another ingest process"),
        count("removed objects of an unfinished batch"),
        count("partitions revoked"),
    );
    assert_eq!(
        positions.len(),
        rows.len(),
        "no (partition, offset) is stored twice"
    );
    assert_eq!(ids.len(), total, "every produced identity is stored");
    assert_eq!(rows.len(), total);
    assert!(before_final > 0, "the chaos runs made progress");
    // No batch is left half-written: every partition's state has no intent.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let states = storage
            .list(&format!(
                "state/ingest/checkpoints/{}/",
                setup.invoices.replace(['-'], "_")
            ))
            .await
            .unwrap();
        let mut n = 0;
        for s in states.iter().filter(|s| s.path.ends_with(".json")) {
            let v: serde_json::Value = storage.get_json(&s.path).await.unwrap().unwrap();
            assert!(v["pending"].is_null(), "{}: {v}", s.path);
            assert!(v["epoch"].as_u64().unwrap() >= 1);
            n += 1;
        }
        assert_eq!(n, 4, "one state object per partition");
        // The status document names every partition, caught up.
        let doc = spectra_core::status::read(&storage, &setup.group)
            .await
            .unwrap()
            .expect("status document");
        let inv: Vec<_> = doc
            .partitions
            .iter()
            .filter(|p| p.topic == setup.invoices)
            .collect();
        assert_eq!(inv.len(), 4, "{doc:?}");
        let written: u64 = inv.iter().map(|p| p.lines_written).sum();
        assert!(written >= total as u64, "{doc:?}");
    });
}

#[test]
fn two_processes_killed_at_random_with_storage_stalls_on_file() {
    chaos(Store::File, 40_000, 22, 5);
}

#[test]
fn two_processes_killed_at_random_with_storage_stalls_on_s3() {
    chaos(Store::S3(s3_endpoint()), 20_000, 20, 6);
}

#[test]
fn a_store_without_conditional_writes_is_refused() {
    // Conditional writes are checked, never assumed: the S3 client with them disabled
    // is what a store without them looks like.
    let dir = tempfile::tempdir().unwrap();
    let (setup, mut env) = setup(dir.path(), &Store::S3(s3_endpoint()));
    env.push(("AWS_CONDITIONAL_PUT", "disabled".into()));
    let out = command(&setup, &env, &["--once"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("does not honour conditional writes"), "{err}");
}

#[test]
fn a_recreated_topic_is_refused_until_reset_deliberately() {
    let dir = tempfile::tempdir().unwrap();
    let (setup, env) = setup(dir.path(), &Store::File);
    setup.create_topics(1);
    let storage = spectra_core::Storage::from_url(&setup.storage).unwrap();
    produce(&setup.invoices, 0..50, None);
    setup.ingest_once(&[]);
    assert_eq!(stored(&storage).len(), 50);

    // Deleted and recreated while ingest is stopped, with fewer messages than before.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use rdkafka::admin::{AdminClient, AdminOptions};
        let admin: AdminClient<_> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .unwrap();
        let r = admin
            .delete_topics(&[&setup.invoices], &AdminOptions::new())
            .await
            .unwrap();
        assert!(r.iter().all(Result::is_ok), "{r:?}");
    });
    std::thread::sleep(Duration::from_secs(1));
    setup.create_topics(1);
    produce(&setup.invoices, 1000..1020, None);
    let refused = |what: &str| {
        let out = command(&setup, &env, &["--once"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{what}: ingest should refuse: {err}");
        assert!(err.contains("offset domain mismatch"), "{what}: {err}");
        assert!(
            err.contains(&format!("--reset-checkpoint {}:0", setup.invoices)),
            "{what}: {err}"
        );
        assert_eq!(stored(&storage).len(), 50, "{what}: nothing was ingested");
        err
    };
    let err = refused("fewer messages");
    eprintln!(
        "refused (fewer messages): {}",
        err.lines().last().unwrap_or("")
    );
    // More messages than the checkpoint: the offsets exist again, but the message at
    // the last stored offset is another one.
    produce(&setup.invoices, 1020..1100, None);
    let err = refused("more messages");
    assert!(err.contains("topic_recreated"), "{err}");
    eprintln!(
        "refused (more messages): {}",
        err.lines().last().unwrap_or("")
    );

    // The deliberate re-ingest.
    let out = command(
        &setup,
        &env,
        &["--reset-checkpoint", &format!("{}:0", setup.invoices)],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("checkpoint reset"));
    setup.ingest_once(&[]);
    let rows = stored(&storage);
    assert_eq!(rows.len(), 50 + 100);
    let new: BTreeSet<&str> = rows
        .iter()
        .map(|r| r.2.as_str())
        .filter(|i| i[2..].parse::<usize>().unwrap() >= 1000)
        .collect();
    assert_eq!(new.len(), 100, "the recreated topic is ingested whole");
}

/// Every partition state (`state/ingest/checkpoints/…`): (path, owner, pending intent?).
fn partition_states(storage: &spectra_core::Storage) -> Vec<(String, String, bool)> {
    block_on(async {
        let mut out = Vec::new();
        for o in storage.list("state/ingest/checkpoints/").await.unwrap() {
            let Some(data) = storage.get(&o.path).await.unwrap() else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
            out.push((
                o.path.clone(),
                v["owner"].as_str().unwrap_or_default().to_owned(),
                !v["pending"].is_null(),
            ));
        }
        out
    })
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {}", child.id());
}

#[test]
fn a_stalled_owner_losing_its_partitions_is_fenced() {
    // A's object writes stall 6 to 8 s, so it is nearly always between a batch's intent
    // and its checkpoint. Once its state shows an intent, A is frozen (SIGSTOP: a long
    // pause, a VM migration): its session expires, B takes every partition's lease, and
    // when A thaws (SIGCONT) the write it was in must be fenced instead of landing.
    let _turn = heavy();
    let dir = tempfile::tempdir().unwrap();
    let (setup, env) = setup(dir.path(), &Store::File);
    setup.create_topics(4);
    let storage = spectra_core::Storage::from_url(&setup.storage).unwrap();
    let total = 30_000;
    produce(&setup.invoices, 0..total, None);
    let flags = [
        "--set",
        "ingest.flush_rows=1000",
        "--set",
        "ingest.flush_age_ms=100",
        "--set",
        "kafka.session_timeout_ms=4000",
    ];
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let count = |log: &Path, what: &str| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches(what)
            .count()
    };
    let started = Instant::now();
    let mut a = spawn_stalling(&setup, &env, &flags, &log_a, "1.0:6000-8000:puts");
    let a_owner = format!(":{}", a.id());
    let wait = |what: &str, secs: u64, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done() {
            assert!(Instant::now() < deadline, "waited {secs} s for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("A's first intent", 120, &|| {
        partition_states(&storage)
            .iter()
            .any(|(_, owner, pending)| owner.ends_with(&a_owner) && *pending)
    });
    signal(&a, "-STOP");
    let frozen = partition_states(&storage);
    let in_flight: Vec<&String> = frozen
        .iter()
        .filter(|(_, owner, pending)| owner.ends_with(&a_owner) && *pending)
        .map(|(path, _, _)| path)
        .collect();
    assert!(!in_flight.is_empty());
    let mut b = spawn_stalling(&setup, &env, &flags, &log_b, "0:0");
    wait("B to take A's partitions", 180, &|| {
        let now = partition_states(&storage);
        in_flight.iter().all(|p| {
            now.iter()
                .any(|(path, owner, _)| path == *p && !owner.ends_with(&a_owner))
        })
    });
    signal(&a, "-CONT");
    wait("A's write to be fenced", 120, &|| {
        count(&log_a, "fenced: another ingest process") >= 1
    });
    b.kill().unwrap();
    b.wait().unwrap();
    a.kill().unwrap();
    a.wait().unwrap();
    let out = command(&setup, &env, &["--once"])
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = stored(&storage);
    let positions: BTreeSet<(i32, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    eprintln!(
        "stalled owner: {} of A's batches fenced ({} partition(s) in flight when frozen); {} lines stored for {total}; {:.1} s",
        count(&log_a, "fenced: another ingest process"),
        in_flight.len(),
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    if let Ok(keep) = std::env::var("SPECTRA_TEST_KEEP_LOGS") {
        let a = std::fs::read_to_string(&log_a).unwrap_or_default();
        let b = std::fs::read_to_string(&log_b).unwrap_or_default();
        std::fs::write(&keep, format!("=== A\n{a}\n=== B\n{b}")).unwrap();
    }
    assert_eq!(
        positions.len(),
        rows.len(),
        "no (partition, offset) is stored twice"
    );
    assert_eq!(rows.len(), total, "every line is stored");
}
