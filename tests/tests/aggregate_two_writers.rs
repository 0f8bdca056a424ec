//! Two aggregate processes over a growing raw table: the service (poll 1 s) and
//! `aggregate --once --full` started again and again beside it, while ingest adds
//! rounds of lines with redeliveries and corrections; some full passes spill their
//! identities to disk (a tiny `aggregate.absorb_memory_mb`). At the end the daily table equals
//! a brute-force deduplication of `raw/` (latest version per identity by
//! (kafka_timestamp_ms, source_partition, source_offset, source_line)).
//! And a pass between an ingest batch's objects and its checkpoint, the ingest process
//! then killed: the pass leaves the uncommitted objects alone, and after the next ingest
//! replays the batch the daily table is again that of `raw/`, no day held.

use std::collections::BTreeSet;
use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type};
use spectra_core::checkpoint::{checkpoint_path, PartitionState};
use spectra_core::tables::features::DailyRow;
use spectra_core::tables::{date32, Columns, Rows};
use spectra_tests::*;

type Key = (String, String, i32);

fn brute_force(batches: &[RecordBatch]) -> BTreeMap<Key, (f64, f64, i64)> {
    type Ver = (i64, i32, i64, i32);
    type Latest = (Ver, Key, f64, f64);
    let mut latest: HashMap<(String, String, i64), Latest> = HashMap::new();
    for b in batches {
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let i64s = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone()
        };
        let i32s = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<Int32Type>()
                .clone()
        };
        let f64s = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<Float64Type>()
                .clone()
        };
        let (d, i, o, sku) = (
            s("distributor_id"),
            s("invoice_id"),
            s("outlet_id"),
            s("sku_id"),
        );
        let (ln, ts, off) = (
            i64s("line_no"),
            i64s("kafka_timestamp_ms"),
            i64s("source_offset"),
        );
        let (part, sl) = (i32s("source_partition"), i32s("source_line"));
        let (nv, q) = (f64s("net_value"), f64s("quantity"));
        let date = b
            .column_by_name("invoice_date")
            .unwrap()
            .as_primitive::<Date32Type>()
            .clone();
        for r in 0..b.num_rows() {
            let v = (ts.value(r), part.value(r), off.value(r), sl.value(r));
            let id = (d.value(r).to_owned(), i.value(r).to_owned(), ln.value(r));
            let key = (
                o.value(r).to_owned(),
                sku.value(r).to_owned(),
                date.value(r),
            );
            let e = latest
                .entry(id)
                .or_insert((v, key.clone(), nv.value(r), q.value(r)));
            if v > e.0 {
                *e = (v, key, nv.value(r), q.value(r));
            }
        }
    }
    let mut out: BTreeMap<Key, (f64, f64, i64)> = BTreeMap::new();
    for (_, (_, key, nv, q)) in latest {
        let e = out.entry(key).or_default();
        e.0 += nv;
        e.1 += q;
        e.2 += 1;
    }
    out
}

/// The daily table through the table layer's definition (`DailyRow`), by key.
fn daily(batches: &[RecordBatch]) -> BTreeMap<Key, (f64, f64, i64)> {
    let mut out = BTreeMap::new();
    for b in batches {
        let rows = DailyRow::from_batch(&Columns::new(b, "features/daily")).unwrap();
        for r in rows {
            let key = (r.outlet_id, r.sku_id, date32(r.date));
            assert!(out
                .insert(key, (r.net_value, r.quantity, r.lines))
                .is_none());
        }
    }
    out
}

fn msg(inv: usize, line: i64, day: usize, outlet: usize, sku: usize, value: f64) -> String {
    format!(
        r#"{{"distributor_id":"D1","invoice_id":"INV/{inv}","line_no":{line},"invoice_date":"2026-03-{:02}","outlet_id":"O{outlet}","sku_id":"S{sku}","quantity":{line},"net_value":{value}}}"#,
        1 + day % 20
    )
}

#[test]
fn service_and_repeated_full_rebuilds_equal_a_brute_force_dedup_of_raw() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.settings.push("aggregate.poll_seconds=1".into());
    setup.create_topics(2);
    let p = producer();
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("service.log");
    let mut service = setup
        .command("aggregate", &[])
        .env("RUST_LOG", "warn,spectra_aggregator=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut sent: Vec<(String, String)> = Vec::new();
    let (mut full_ok, mut full_runs, mut spilled) = (0, 0, 0);
    let mut n = 0usize;
    for round in 0..6 {
        for _ in 0..300 {
            n += 1;
            let outlet = n % 37;
            let m = msg(
                n / 3,
                (n % 3) as i64 + 1,
                n % 20,
                outlet,
                n % 11,
                n as f64 / 4.0,
            );
            send(
                &p,
                &setup.invoices,
                Some(format!("O{outlet}").as_bytes()),
                Some(m.as_bytes()),
            );
            sent.push((format!("O{outlet}"), m));
        }
        // Redeliveries (exact copies) and corrections (a new value, maybe a new date).
        for k in (0..sent.len()).step_by(17 + round) {
            let (key, m) = sent[k].clone();
            send(
                &p,
                &setup.invoices,
                Some(key.as_bytes()),
                Some(m.as_bytes()),
            );
        }
        for k in (round..sent.len()).step_by(29) {
            let inv = k / 3;
            let line = (k % 3) as i64 + 1;
            let m = msg(
                inv,
                line,
                (k + round) % 20,
                k % 37,
                k % 11,
                1000.0 + k as f64 + round as f64,
            );
            send(
                &p,
                &setup.invoices,
                Some(format!("O{}", k % 37).as_bytes()),
                Some(m.as_bytes()),
            );
        }
        flush(&p);
        setup.ingest_once(&[]);
        // A full rebuild beside the running service, while the service sees new files.
        // Every other one holds at most 1,024 identities in memory (a budget of 0 MiB):
        // once the raw table holds more, it spills them by bucket, and the index it
        // builds is the one the service's later passes continue from.
        let mut args = vec!["--once", "--full"];
        if round % 2 == 0 {
            args.extend(["--set", "aggregate.absorb_memory_mb=0"]);
        }
        let full = setup
            .command("aggregate", &args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        full_runs += 1;
        if full.status.success() {
            full_ok += 1;
            let summary: serde_json::Value = serde_json::from_slice(&full.stdout).unwrap();
            let groups = summary["absorb_groups"].as_u64().unwrap();
            let rows = summary["rows_read"].as_u64().unwrap();
            if round % 2 == 0 && rows > 1024 {
                spilled += 1;
                assert!(groups > 1, "{rows} rows absorbed in {groups} group(s)");
            } else {
                assert_eq!(groups, 1, "{rows} rows within the default budget");
            }
        } else {
            eprintln!("full pass: {}", String::from_utf8_lossy(&full.stderr));
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    std::thread::sleep(Duration::from_secs(3));
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(service.id().to_string())
        .status();
    let _ = service.wait();
    aggregate_once(&setup);
    assert_eq!(
        full_ok, full_runs,
        "every --full pass waits for the lease and succeeds"
    );
    assert!(spilled >= 1, "a full pass spilled its identities");

    let raw = read_parquet_dir(&dir.path().join("raw/invoices"));
    let want = brute_force(&raw);
    let got = daily(&read_parquet_dir(&dir.path().join("features/daily")));
    // A day emptied by corrections keeps an empty file; compare the rows with lines.
    let got: BTreeMap<_, _> = got.into_iter().filter(|(_, v)| v.2 > 0).collect();
    assert_eq!(got.len(), want.len(), "rows of the daily table");
    for (k, w) in &want {
        let g = got
            .get(k)
            .unwrap_or_else(|| panic!("missing daily row {k:?}"));
        assert!(
            (g.0 - w.0).abs() < 1e-6 && (g.1 - w.1).abs() < 1e-6 && g.2 == w.2,
            "{k:?}: {g:?} vs {w:?}"
        );
    }
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("status/aggregator.json")).unwrap())
            .unwrap();
    let lease: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("state/aggregate/lease.json")).unwrap(),
    )
    .unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let deferred = log.matches("aggregation pass deferred").count();
    let fenced = log.matches("aggregation pass fenced").count();
    let passes = log.matches("daily roll-up done").count();
    eprintln!(
        "service: {passes} roll-ups, {deferred} passes deferred by the lease, {fenced} fenced"
    );
    eprintln!(
        "raw rows {}, daily rows compared {}, --full passes {full_runs}, lease epoch {}, status {status}",
        raw.iter().map(|b| b.num_rows()).sum::<usize>(),
        want.len(),
        lease["epoch"]
    );
    assert!(status["missing_raw_objects"].as_array().unwrap().is_empty());
}

/// Runs `spectra aggregate --once`; its summary.
fn aggregate_once(setup: &Setup) -> serde_json::Value {
    let out = setup
        .command("aggregate", &["--once"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn texts(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn objects_of_an_unfinished_ingest_batch_wait_for_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    setup.create_topics(1);
    let p = producer();
    let total = 3000;
    for n in 0..total {
        let m = msg(n, 1, n % 20, n % 37, n % 11, n as f64 / 4.0);
        let key = format!("O{}", n % 37);
        send(
            &p,
            &setup.invoices,
            Some(key.as_bytes()),
            Some(m.as_bytes()),
        );
    }
    flush(&p);
    let storage = spectra_core::Storage::from_url(&setup.storage).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = || -> Option<PartitionState> {
        rt.block_on(storage.get_json(&checkpoint_path(&setup.invoices, 0)))
            .unwrap()
    };
    let exists = |path: &str| rt.block_on(storage.get(path)).unwrap().is_some();
    // Every state write of this ingest process takes 3 s: each batch's objects land
    // 3 s before its checkpoint. It is killed in that gap.
    let flags = [
        "--set",
        "ingest.flush_rows=1000",
        "--set",
        "ingest.flush_age_ms=100",
    ];
    let mut a = setup
        .command("ingest", &flags)
        .env("SPECTRA_TEST_STORAGE_STALL", "1.0:3000-3000:states")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let intent = loop {
        assert!(
            Instant::now() < deadline,
            "waited 120 s for a batch written but not committed"
        );
        if let Some(i) = state().and_then(|s| s.pending) {
            if i.objects.iter().all(|o| exists(o)) {
                break i;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    assert_eq!(
        state().and_then(|s| s.pending).as_ref(),
        Some(&intent),
        "killed before the checkpoint"
    );
    let unfinished: BTreeSet<String> = intent.objects.iter().cloned().collect();

    // A pass now leaves the batch's objects alone: they are not committed.
    let between = aggregate_once(&setup);
    assert_eq!(texts(&between["deferred_raw_objects"]), unfinished);
    let committed: u64 = read_parquet_dir(&dir.path().join("raw/invoices"))
        .iter()
        .map(|b| b.num_rows() as u64)
        .sum::<u64>()
        - intent.last.saturating_sub(intent.first) as u64
        - 1;
    assert_eq!(between["rows_read"].as_u64().unwrap(), committed);

    // The next ingest takes the partition over, deletes them and replays the batch.
    setup.ingest_once(&flags);
    assert!(
        unfinished.iter().all(|o| !exists(o)),
        "the orphans are deleted"
    );
    let after = aggregate_once(&setup);
    assert!(texts(&after["deferred_raw_objects"]).is_empty());
    assert!(
        texts(&after["missing_raw_objects"]).is_empty(),
        "no day held: {after}"
    );
    let raw = read_parquet_dir(&dir.path().join("raw/invoices"));
    assert_eq!(raw.iter().map(|b| b.num_rows()).sum::<usize>(), total);
    let want = brute_force(&raw);
    let got = daily(&read_parquet_dir(&dir.path().join("features/daily")));
    assert_eq!(got, want);
    eprintln!(
        "unfinished batch of {} objects (offsets {}..={}) left by a pass between its objects and its checkpoint; {} daily rows equal raw's after the replay",
        unfinished.len(),
        intent.first,
        intent.last,
        want.len()
    );
}
