//! One bad distributor must not wreck anyone's segments (issue 9), end to end through
//! the command line against the test broker: a good first cycle (generate → ingest →
//! aggregate → segment → publish), then a batch of every hostile kind, then a normal
//! next day.
//!
//! After the hostile batch no previously assigned outlet lost or changed its
//! assignment, nothing hostile is stored or assigned, and every hostile message is on
//! the dead-letter topic with a reason naming the field (a poison pill larger than the
//! dead-letter limit as a truncated copy with its size and SHA-256). The normal next day
//! then re-segments and publishes.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use spectra_tests::{compacted, read_parquet_dir, read_topic, Setup};

/// Runs `spectra <sub> --once` and returns its stdout's last line as JSON (ingest
/// prints nothing parseable: `Value::Null`).
fn once(setup: &Setup, sub: &str, config: &Path) -> Value {
    let out = setup
        .command(sub, &["--once", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{sub} --once failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null)
}

fn cycle(setup: &Setup, config: &Path) -> (Value, Value) {
    once(setup, "ingest", config);
    once(setup, "aggregate", config);
    let seg = once(setup, "segment", config);
    let publ = once(setup, "publish", config);
    (seg, publ)
}

fn segment_of(view: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    view.iter()
        .map(|(k, v)| (k.clone(), v["segment_id"].as_str().unwrap().to_owned()))
        .collect()
}

fn generate(setup: &Setup, config: &Path, days: u32) {
    let out = setup
        .command(
            "generate",
            &[
                "--config",
                config.to_str().unwrap(),
                "--outlets",
                "240",
                "--segments",
                "4",
                "--days",
                &days.to_string(),
                "--bad-share",
                "0",
            ],
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A valid line of distributor `EVIL` with one field replaced.
fn evil_line(n: usize, field: &str, value: Value) -> Vec<u8> {
    let mut v = json!({"distributor_id": "EVIL", "invoice_id": format!("X{n}"), "line_no": 1,
        "invoice_date": "2026-07-01", "outlet_id": "O-EVIL", "sku_id": "SKU-EVIL",
        "quantity": 1, "net_value": 10.0});
    v[field] = value;
    v.to_string().into_bytes()
}

fn whole_invoice(n: usize, outlet: &str, lines: Vec<Value>) -> Vec<u8> {
    json!({"distributor_id": "EVIL", "invoice_id": format!("W{n}"), "invoice_date": "2026-07-01",
        "outlet_id": outlet, "lines": lines})
    .to_string()
    .into_bytes()
}

#[test]
fn a_hostile_distributor_changes_nobody_and_the_next_day_resegments() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(&dir.path().join("store"));
    let prefix = spectra_tests::fresh("hostile");
    for (k, t) in [
        ("assignments", "segment-assignments"),
        ("profiles", "segment-profiles"),
        ("recommendations", "outlet-recommendations"),
        ("metadata", "segment-metadata"),
    ] {
        setup
            .settings
            .push(format!("kafka.topics.{k}={prefix}.{t}"));
    }
    setup.settings.extend([
        "publish.listen=127.0.0.1:0".to_owned(),
        // A small limit, so the poison pill below needs no megabytes.
        "ingest.dlq_max_message_bytes=20000".to_owned(),
    ]);
    let assignments = format!("{prefix}.segment-assignments");
    let config = dir.path().join("spectra.toml");
    std::fs::write(
        &config,
        "[[segmentation]]\nname = \"mix\"\nk = 4\nwindow_days = 56\nseed = 7\n",
    )
    .unwrap();

    // 1. A good first cycle: 240 outlets, 60 days from 2026-06-01.
    generate(&setup, &config, 60);
    let (seg, publ) = cycle(&setup, &config);
    assert_eq!(seg["runs"][0]["run_id"], "mix/2026-07-30/1", "{seg}");
    assert_eq!(publ["segmentations"][0]["run_id"], "mix/2026-07-30/1");
    let before = compacted(&assignments);
    assert!(before.len() > 200, "{} assigned", before.len());

    // 2. Every hostile kind, from one distributor, beside nothing good.
    let p = spectra_tests::producer();
    let outlet = before
        .keys()
        .next()
        .unwrap()
        .trim_start_matches("mix:")
        .to_owned();
    // Past the default tolerance of seven days, whenever the test runs.
    let future = chrono::Utc::now().date_naive() + chrono::Days::new(30);
    let future_reason = format!("invoice_date {future} is in the future");
    let mut hostile: Vec<(Vec<u8>, &str)> = Vec::new();
    for i in 0..12 {
        // Twelve unknown outlets far in the future (the incident).
        let mut v: Value =
            serde_json::from_slice(&evil_line(i, "invoice_date", json!("2199-12-31"))).unwrap();
        v["outlet_id"] = json!(format!("UNKNOWN-{i}"));
        hostile.push((
            v.to_string().into_bytes(),
            "invoice_date 2199-12-31 is in the future",
        ));
    }
    hostile.extend([
        (
            evil_line(20, "invoice_date", json!(future.to_string())),
            &*future_reason,
        ),
        (
            evil_line(21, "invoice_date", json!("2001-01-01")),
            "invoice_date 2001-01-01 is too old",
        ),
        (
            evil_line(22, "net_value", json!(1.7e308)),
            "net_value is 1.7e308",
        ),
        (
            evil_line(23, "net_value", json!(-1.7e308)),
            "net_value is -1.7e308",
        ),
        (evil_line(24, "quantity", json!(1e12)), "quantity is 1e12"),
        (
            evil_line(25, "outlet_id", json!("PL-1\u{0}")),
            "outlet_id holds the control character U+0000",
        ),
        (
            evil_line(26, "sku_id", json!("A\u{1b}[2J")),
            "sku_id holds the control character U+001B",
        ),
        (
            evil_line(29, "outlet_id", json!(format!("{outlet}\u{200b}"))),
            "outlet_id holds the invisible character U+200B",
        ),
        (evil_line(27, "line_no", json!(1.5)), "line_no is 1.5"),
        (
            evil_line(28, "invoice_id", json!("x".repeat(300))),
            "invoice_id is 300 characters long",
        ),
    ]);
    // A real outlet's whole invoice repeating line_no 1, with values that would move it.
    let line =
        |n: i64| json!({"line_no": n, "sku_id": "SKU-EVIL", "quantity": 1, "net_value": 1e6});
    hostile.push((
        whole_invoice(30, &outlet, vec![line(1), line(2), line(1)]),
        "lines[2].line_no 1 repeats lines[0]",
    ));
    // A whole invoice with more lines than a message may carry.
    hostile.push((
        whole_invoice(31, &outlet, (0..10_001).map(line).collect()),
        "`lines` holds 10001 lines",
    ));
    // A poison pill: 2,000 good lines and one bad, far above the dead-letter limit.
    let mut lines: Vec<Value> = (0..2_000).map(line).collect();
    lines.push(json!({"line_no": 5000, "sku_id": "S", "quantity": "lots", "net_value": 1}));
    let pill = whole_invoice(32, &outlet, lines);
    assert!(pill.len() > 100_000);
    hostile.push((pill.clone(), "lines[2000].quantity is a string"));
    for (value, _) in &hostile {
        spectra_tests::send(&p, &setup.invoices, Some(b"EVIL"), Some(value));
    }
    // A well-formed line its producer stamped in 2100: it would outrank every
    // correction of it.
    let stamped = evil_line(40, "quantity", json!(2));
    let record = rdkafka::producer::BaseRecord::<[u8], [u8]>::to(&setup.invoices)
        .key(&b"EVIL"[..])
        .payload(stamped.as_slice())
        .timestamp(4_102_444_800_000);
    p.send(record).map_err(|(e, _)| e).unwrap();
    hostile.push((
        stamped.clone(),
        "Kafka timestamp 2100-01-01T00:00:00+00:00 is more than a day ahead of ingest's clock",
    ));
    spectra_tests::flush(&p);

    let (seg, publ) = cycle(&setup, &config);
    assert_eq!(seg["runs"], json!([]), "nothing new to segment: {seg}");
    assert_eq!(publ["messages"], 0, "nothing to publish: {publ}");
    let after = compacted(&assignments);
    assert_eq!(
        segment_of(&after),
        segment_of(&before),
        "no assignment lost or changed"
    );
    assert!(!after.keys().any(|k| k.contains("UNKNOWN")));

    // Nothing hostile was stored.
    let raw = read_parquet_dir(&setup.dir.join("raw/invoices"));
    for b in &raw {
        let d = b
            .column_by_name("distributor_id")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert!(
            d.iter().all(|x| x != Some("EVIL")),
            "a hostile line was stored"
        );
    }

    // Every hostile message is on the dead-letter topic, its reason naming the field.
    let dlq = read_topic(&setup.dlq);
    assert_eq!(
        dlq.len(),
        hostile.len(),
        "one dead letter per hostile message"
    );
    let header = |m: &spectra_tests::Consumed, name: &str| {
        m.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    for (value, reason) in &hostile {
        let found = dlq.iter().find(|m| {
            header(m, "spectra-error").is_some_and(|e| e.contains(reason))
                && (m.value.as_deref() == Some(value.as_slice())
                    || header(m, "spectra-original-size") == Some(value.len().to_string()))
        });
        assert!(
            found.is_some(),
            "no dead letter with `{reason}`; got {:?}",
            dlq.iter()
                .map(|m| header(m, "spectra-error"))
                .collect::<Vec<_>>()
        );
    }
    let truncated = dlq
        .iter()
        .find(|m| {
            header(m, "spectra-truncated").as_deref() == Some("true")
                && header(m, "spectra-original-size") == Some(pill.len().to_string())
        })
        .expect("the poison pill is dead-lettered as a truncated copy");
    let v = truncated.value.as_deref().unwrap();
    assert!(v.len() < 20_000 && pill.starts_with(v), "{} bytes", v.len());
    use sha2::Digest as _;
    let sha: String = sha2::Sha256::digest(&pill)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(header(truncated, "spectra-original-sha256"), Some(sha));

    // 3. A normal next day re-segments and publishes.
    generate(&setup, &config, 61);
    let (seg, publ) = cycle(&setup, &config);
    assert_eq!(seg["runs"][0]["run_id"], "mix/2026-07-31/1", "{seg}");
    assert_eq!(
        publ["segmentations"][0]["run_id"], "mix/2026-07-31/1",
        "{publ}"
    );
    let latest: Value = serde_json::from_slice(
        &std::fs::read(setup.dir.join("segmentations/mix/latest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(latest["as_of"], "2026-07-31");
    // The topic's view is the new run, outlet for outlet.
    let run = setup.dir.join(latest["path"].as_str().unwrap());
    let mut want = BTreeMap::new();
    for b in read_parquet_dir(&run)
        .into_iter()
        .filter(|b| b.schema().field_with_name("change").is_ok())
    {
        let o = b.column_by_name("outlet_id").unwrap();
        let s = b.column_by_name("segment_id").unwrap();
        let o = o
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        let s = s
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        for i in 0..b.num_rows() {
            want.insert(format!("mix:{}", o.value(i)), s.value(i).to_owned());
        }
    }
    assert_eq!(segment_of(&compacted(&assignments)), want);
}

/// A dead-letter topic that does not exist (and may not be created) stops ingest at
/// once with its name, instead of a silent retry loop.
#[test]
fn a_missing_dead_letter_topic_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.create_topics(1);
    setup.dlq = spectra_tests::fresh("missing-dlq");
    setup.settings.push("kafka.create_topics=false".into());
    let started = std::time::Instant::now();
    let out = setup.command("ingest", &["--once"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("topic `{}` does not exist", setup.dlq)),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}
