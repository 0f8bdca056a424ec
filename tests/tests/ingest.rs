//! End-to-end tests of `spectra ingest` against the real test broker: redeliveries,
//! corrections and every kind of bad message; and SIGKILL at random moments mid-stream.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use spectra_tests::*;

type Identity = (String, String, i64);

/// One stored row: identity, values, source.
#[derive(Debug, Clone)]
struct Row {
    id: Identity,
    net_value: f64,
    partition: i32,
    offset: i64,
    source_line: i32,
}

fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (d, i) = (s("distributor_id"), s("invoice_id"));
        let line = b
            .column_by_name("line_no")
            .unwrap()
            .as_primitive::<Int64Type>();
        let v = b
            .column_by_name("net_value")
            .unwrap()
            .as_primitive::<Float64Type>();
        let p = b
            .column_by_name("source_partition")
            .unwrap()
            .as_primitive::<Int32Type>();
        let o = b
            .column_by_name("source_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        let sl = b
            .column_by_name("source_line")
            .unwrap()
            .as_primitive::<Int32Type>();
        for r in 0..b.num_rows() {
            out.push(Row {
                id: (d.value(r).into(), i.value(r).into(), line.value(r)),
                net_value: v.value(r),
                partition: p.value(r),
                offset: o.value(r),
                source_line: sl.value(r),
            });
        }
    }
    out
}

fn line_json(
    d: &str,
    inv: &str,
    line: i64,
    date: &str,
    outlet: &str,
    sku: &str,
    value: f64,
) -> String {
    format!(
        r#"{{"distributor_id":"{d}","invoice_id":"{inv}","line_no":{line},"invoice_date":"{date}","outlet_id":"{outlet}","sku_id":"{sku}","quantity":2,"net_value":{value}}}"#
    )
}

/// Every bad message we can think of, with a word its DLQ reason must contain.
fn bad_messages() -> Vec<(Option<Vec<u8>>, &'static str)> {
    let ok = |f: &str, v: &str| {
        let mut m: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&line_json("D9", "BAD", 1, "2026-03-01", "O1", "S1", 1.0))
                .unwrap();
        if v == "<remove>" {
            m.remove(f);
        } else {
            m.insert(f.into(), serde_json::from_str(v).unwrap());
        }
        Some(serde_json::to_vec(&m).unwrap())
    };
    vec![
        (Some(b"{\"distributor_id\": ".to_vec()), "not valid JSON"),
        (Some(vec![0xff, 0xfe, 0x7b, 0x7d]), "not UTF-8"),
        (Some(Vec::new()), "empty"),
        (None, "null"),
        (Some(b"[1,2,3]".to_vec()), "not a JSON object"),
        (Some(b"42".to_vec()), "not a JSON object"),
        (ok("outlet_id", "<remove>"), "outlet_id is missing"),
        (ok("sku_id", "\"\""), "sku_id is empty"),
        (ok("quantity", "\"three\""), "quantity is a string"),
        (ok("net_value", "null"), "net_value is null"),
        (ok("line_no", "-3"), "line_no is -3"),
        (ok("line_no", "2.5"), "line_no is 2.5"),
        (ok("invoice_date", "\"2026-02-30\""), "invoice_date"),
        (ok("invoice_date", "\"yesterday\""), "invoice_date"),
        (ok("invoice_date", "20260301"), "invoice_date is a number"),
        (ok("outlet_id", &format!("\"{}\"", "x".repeat(100_000))), "outlet_id is 100000 characters"),
        (ok("distributor_id", "{\"a\":1}"), "distributor_id is an object"),
        (ok("currency", "7"), "currency is a number"),
        (
            Some(br#"{"distributor_id":"D9","invoice_id":"BADINV","invoice_date":"2026-03-01","outlet_id":"O1","lines":[{"line_no":1,"sku_id":"A","quantity":1,"net_value":2.5},{"line_no":2,"sku_id":"B","quantity":1}]}"#.to_vec()),
            "lines[1].net_value is missing",
        ),
        (Some(br#"{"distributor_id":"D9","invoice_id":"BADINV2","invoice_date":"2026-03-01","outlet_id":"O1","lines":[]}"#.to_vec()), "empty array"),
        (
            Some(line_json("D9", "BAD", 1, "2026-03-01", "O1", "S1", 1.0)
                .replace(r#""outlet_id":"O1""#, &format!(r#""outlet_id":{}"#, "9".repeat(300)))
                .into_bytes()),
            "outlet_id is an integer of 300 characters",
        ),
    ]
}

#[test]
fn feed_with_redeliveries_corrections_and_bad_messages() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    setup.create_topics(3);
    let p = producer();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    // Expected final value per identity; deliveries of good lines in total.
    let mut latest: HashMap<Identity, f64> = HashMap::new();
    let mut good_lines_delivered = 0usize;
    let mut sent: Vec<(String, Vec<u8>)> = Vec::new();
    for n in 0..2000 {
        let outlet = format!("O{}", rng.gen_range(0..200));
        let date = format!("2026-03-{:02}", 1 + n % 28);
        let inv = format!("INV/{n}");
        let msg = if n % 4 == 0 {
            // A whole invoice of three lines.
            let lines: Vec<String> = (1..=3)
                .map(|l| {
                    let v = (n * 10 + l) as f64 / 4.0;
                    latest.insert(("D1".into(), inv.clone(), l), v);
                    format!(r#"{{"line_no":{l},"sku_id":"S{l}","quantity":1,"net_value":{v}}}"#)
                })
                .collect();
            good_lines_delivered += 3;
            format!(
                r#"{{"distributor_id":"D1","invoice_id":"{inv}","invoice_date":"{date}","outlet_id":"{outlet}","lines":[{}]}}"#,
                lines.join(",")
            )
        } else {
            let v = n as f64 / 2.0;
            latest.insert(("D1".into(), inv.clone(), 1), v);
            good_lines_delivered += 1;
            line_json("D1", &inv, 1, &date, &outlet, "S9", v)
        };
        send(
            &p,
            &setup.invoices,
            Some(outlet.as_bytes()),
            Some(msg.as_bytes()),
        );
        sent.push((outlet, msg.into_bytes()));
    }
    // ≥ 3% exact redeliveries.
    let redeliveries = 100;
    for _ in 0..redeliveries {
        let (k, m) = sent[rng.gen_range(0..sent.len())].clone();
        good_lines_delivered += if m.starts_with(br#"{"distributor_id":"D1","invoice_id":"INV/"#)
            && m.windows(7).any(|w| w == b"\"lines\"")
        {
            3
        } else {
            1
        };
        send(&p, &setup.invoices, Some(k.as_bytes()), Some(&m));
    }
    flush(&p);
    // Corrections: the same identity with a new value, sent after the original.
    for n in (1..2000).filter(|n| n % 4 != 0).step_by(37) {
        let inv = format!("INV/{n}");
        let v = 1000.0 + n as f64;
        latest.insert(("D1".into(), inv.clone(), 1), v);
        good_lines_delivered += 1;
        let outlet = String::from_utf8(sent[n].0.clone().into_bytes()).unwrap();
        let date = format!("2026-03-{:02}", 1 + n % 28);
        send(
            &p,
            &setup.invoices,
            Some(outlet.as_bytes()),
            Some(line_json("D1", &inv, 1, &date, &outlet, "S9", v).as_bytes()),
        );
    }
    // An integer outlet id past 64 bits: its digits, as sent, are the outlet's id.
    let long_outlet = "123456789012345678901234567890";
    let long = line_json("D1", "INV/LONG", 1, "2026-03-02", "O0", "S9", 7.5).replace(
        r#""outlet_id":"O0""#,
        &format!(r#""outlet_id":{long_outlet}"#),
    );
    send(&p, &setup.invoices, Some(b"LONG"), Some(long.as_bytes()));
    latest.insert(("D1".into(), "INV/LONG".into(), 1), 7.5);
    good_lines_delivered += 1;
    let bad = bad_messages();
    for (v, _) in &bad {
        send(&p, &setup.invoices, Some(b"BADKEY"), v.as_deref());
    }
    flush(&p);

    let out = setup.ingest_once(&["--set", "ingest.flush_rows=700"]);
    assert!(out.contains("\"rejected\":21"), "{out}");

    let batches = read_parquet_dir(&dir.path().join("raw/invoices"));
    let long_outlets: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
            let (i, o) = (s("invoice_id"), s("outlet_id"));
            (0..b.num_rows())
                .filter(|&r| i.value(r) == "INV/LONG")
                .map(|r| o.value(r).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(long_outlets, [long_outlet]);
    let stored = rows(&batches);
    // Every delivery of a good line is stored exactly once (redeliveries are distinct
    // messages: the aggregator deduplicates identities); no source position twice.
    assert_eq!(stored.len(), good_lines_delivered);
    let positions: BTreeSet<(i32, i64, i32)> = stored
        .iter()
        .map(|r| (r.partition, r.offset, r.source_line))
        .collect();
    assert_eq!(
        positions.len(),
        stored.len(),
        "a source position is stored twice"
    );
    // Every good identity is present, and its latest version carries the corrected value.
    let mut last: BTreeMap<Identity, (i32, i64, f64)> = BTreeMap::new();
    for r in &stored {
        let e = last
            .entry(r.id.clone())
            .or_insert((r.partition, r.offset, r.net_value));
        assert_eq!(e.0, r.partition, "an outlet's lines share a partition");
        if r.offset > e.1 {
            *e = (r.partition, r.offset, r.net_value);
        }
    }
    assert_eq!(last.len(), latest.len());
    for (id, v) in &latest {
        assert_eq!(last[id].2, *v, "latest value of {id:?}");
    }
    assert!(
        !stored.iter().any(|r| r.id.0 == "D9"),
        "a line of a rejected message was stored"
    );

    // The DLQ holds every bad message, bytes unchanged, with a reason naming the field.
    let dlq = read_topic(&setup.dlq);
    assert_eq!(dlq.len(), bad.len(), "dead letters");
    for (value, want) in &bad {
        let m = dlq
            .iter()
            .find(|m| &m.value == value)
            .unwrap_or_else(|| panic!("missing dead letter for {want}"));
        let err = &m
            .headers
            .iter()
            .find(|(k, _)| k == "spectra-error")
            .unwrap()
            .1;
        assert!(err.contains(want), "reason `{err}` should contain `{want}`");
        let src = &m
            .headers
            .iter()
            .find(|(k, _)| k == "spectra-source")
            .unwrap()
            .1;
        assert!(src.starts_with(&format!("{}/", setup.invoices)), "{src}");
        assert_eq!(m.key.as_deref(), Some(&b"BADKEY"[..]));
    }

    // A second run finds nothing new: nothing is stored twice.
    setup.ingest_once(&[]);
    assert_eq!(
        rows(&read_parquet_dir(&dir.path().join("raw/invoices"))).len(),
        good_lines_delivered
    );
    assert_eq!(read_topic(&setup.dlq).len(), bad.len());
}

#[test]
fn master_data_and_tombstones_land_in_master_tables() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    setup.create_topics(1);
    let p = producer();
    send(&p, &setup.outlets, Some(b"PL-1"), Some(br#"{"outlet_id":"PL-1","name":"Sklep","region":"Malopolska","channel":"traditional","attributes":{"size":"M"}}"#));
    send(
        &p,
        &setup.outlets,
        Some(b"PL-2"),
        Some(br#"{"outlet_id":"PL-2"}"#),
    );
    send(&p, &setup.outlets, Some(b"PL-2"), None);
    send(
        &p,
        &setup.outlets,
        Some(b"PL-3"),
        Some(br#"{"name":"no id"}"#),
    );
    // Under another outlet's key: compaction would keep or drop it as PL-1's.
    send(
        &p,
        &setup.outlets,
        Some(b"PL-1"),
        Some(br#"{"outlet_id":"PL-9","name":"not PL-1"}"#),
    );
    send(
        &p,
        &setup.skus,
        Some(b"A"),
        Some(br#"{"sku_id":"A","category":"coffee","brand":"Aroma"}"#),
    );
    flush(&p);
    setup.ingest_once(&[]);
    let outlets = read_parquet_dir(&dir.path().join("master/outlets"));
    let n: usize = outlets.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n, 3);
    let deleted: usize = outlets
        .iter()
        .map(|b| {
            b.column_by_name("deleted")
                .unwrap()
                .as_boolean()
                .true_count()
        })
        .sum();
    assert_eq!(deleted, 1);
    let skus = read_parquet_dir(&dir.path().join("master/skus"));
    assert_eq!(skus.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let cat = skus[0]
        .column_by_name("category")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(cat.value(0), "coffee");
    let dlq = read_topic(&setup.dlq);
    assert_eq!(dlq.len(), 2);
    let error = |m: &spectra_tests::Consumed| {
        m.headers
            .iter()
            .find(|(k, _)| k == "spectra-error")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert!(dlq
        .iter()
        .any(|m| error(m).contains("outlet_id is missing")));
    assert!(dlq
        .iter()
        .any(|m| m.key.as_deref() == Some(b"PL-1".as_slice())
            && error(m).starts_with("outlet_id \"PL-9\" is not the message key \"PL-1\"")));
}

#[test]
fn sigkill_mid_stream_loses_nothing_and_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    setup.create_topics(3);
    let p = producer();
    let total = 120_000usize;
    for n in 0..total {
        let outlet = format!("O{}", n % 997);
        let msg = line_json(
            "D1",
            &format!("K/{n}"),
            1,
            &format!("2026-04-{:02}", 1 + n % 30),
            &outlet,
            "S1",
            1.0,
        );
        send(
            &p,
            &setup.invoices,
            Some(outlet.as_bytes()),
            Some(msg.as_bytes()),
        );
    }
    flush(&p);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let flags = [
        "--set",
        "ingest.flush_rows=3000",
        "--set",
        "ingest.flush_age_ms=200",
    ];
    let mut kills = 0;
    let raw = dir.path().join("raw/invoices");
    for _ in 0..4 {
        let before = walk(&raw);
        let mut child = setup.spawn_ingest(&flags);
        // Wait until this run has made progress, then kill it at a random moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while walk(&raw) <= before && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..700)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    assert_eq!(kills, 4);
    let stored_before_final = rows(&read_parquet_dir(&dir.path().join("raw/invoices"))).len();
    setup.ingest_once(&flags);
    let stored = rows(&read_parquet_dir(&dir.path().join("raw/invoices")));
    let ids: BTreeSet<&Identity> = stored.iter().map(|r| &r.id).collect();
    let positions: BTreeSet<(i32, i64)> = stored.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(ids.len(), total, "every identity is present");
    assert_eq!(
        positions.len(),
        stored.len(),
        "no (topic, partition, offset) is stored twice"
    );
    assert_eq!(stored.len(), total);
    assert!(stored_before_final > 0, "the killed runs had made progress");
    // No half-written batch intents are left behind.
    let pending = dir.path().join("state/ingest/pending");
    let leftovers: usize = walk(&pending);
    assert_eq!(leftovers, 0);
}

fn walk(dir: &std::path::Path) -> usize {
    if !dir.exists() {
        return 0;
    }
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p)
            } else {
                1
            }
        })
        .sum()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match reqwest::get(format!("http://{addr}{path}")).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    })
}

#[test]
fn sigterm_drains_and_commits_and_metrics_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    setup.create_topics(2);
    let p = producer();
    let total = 30_000usize;
    for n in 0..total {
        let outlet = format!("O{}", n % 101);
        let msg = if n % 1000 == 999 {
            "not json".to_owned()
        } else {
            line_json("D1", &format!("T/{n}"), 1, "2026-05-01", &outlet, "S1", 2.0)
        };
        send(
            &p,
            &setup.invoices,
            Some(outlet.as_bytes()),
            Some(msg.as_bytes()),
        );
    }
    flush(&p);
    let bad = total / 1000;
    let admin = format!("127.0.0.1:{}", free_port());
    // Large batches and a long age: whatever is buffered at SIGTERM must be drained.
    let mut child = setup.spawn_ingest(&[
        "--admin-listen",
        &admin,
        "--set",
        "ingest.flush_rows=1000000",
        "--set",
        "ingest.flush_age_ms=600000",
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut ready = false;
    while std::time::Instant::now() < deadline {
        if http_get(&admin, "/readyz").0 == 200 {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ready, "/readyz never turned 200");
    assert_eq!(http_get(&admin, "/healthz").0, 200);
    // Wait until the consumer has read everything (nothing is flushed yet: huge batches).
    let mut metrics = String::new();
    while std::time::Instant::now() < deadline {
        metrics = http_get(&admin, "/metrics").1;
        let read: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("spectra_ingest_messages_read_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if read as usize >= total && metrics.contains("spectra_ingest_consumer_lag{") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        walk(&dir.path().join("raw/invoices")) == 0,
        "nothing should be flushed before SIGTERM"
    );
    let pid = child.id() as i32;
    let rc = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(rc.success());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "ingest exited with {status:?} after SIGTERM"
    );
    let stored = rows(&read_parquet_dir(&dir.path().join("raw/invoices")));
    assert_eq!(
        stored.len(),
        total - bad,
        "SIGTERM drained every buffered line"
    );
    // The drain also committed: a second run finds nothing to add.
    setup.ingest_once(&[]);
    assert_eq!(
        rows(&read_parquet_dir(&dir.path().join("raw/invoices"))).len(),
        total - bad
    );
    assert_eq!(read_topic(&setup.dlq).len(), bad);
    for name in [
        "messages_read",
        "rows_written",
        "flush_seconds",
        "consumer_lag",
        "objects_written",
    ] {
        let family = format!("# TYPE spectra_ingest_{name} ");
        assert!(
            metrics.contains(&family),
            "{family} missing from /metrics:\n{metrics}"
        );
    }
}
