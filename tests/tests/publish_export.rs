//! `spectra export` on the runs the real services made of a seeded feed
//! (`spectra_tests::fixture`): CSV and XLSX rows match the latest run, and `value`
//! totals match the invoice lines fed in (each counted once whatever the redeliveries,
//! its corrected version winning, only those inside the window); text a spreadsheet
//! would run as a formula is neutralised in CSV and a plain string in XLSX.

use std::collections::BTreeMap;

use spectra_tests::fixture::{fixture, Stage, Store};
use spectra_tests::services::{publisher_on_run2, xlsx_rows};

fn export(
    store: &Store,
    cfg: &spectra_core::Config,
    format: &str,
    out: &std::path::Path,
) -> serde_json::Value {
    let o = std::process::Command::new(spectra_tests::spectra_bin())
        .args([
            "export",
            "--segmentation",
            "mix",
            "--format",
            format,
            "--out",
        ])
        .arg(out)
        .args(store.flags(cfg))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Sets a segment's name and description as the API would: a message on the
/// compacted `segment-metadata` topic, which the export reads from the beginning.
fn describe(cfg: &spectra_core::Config, segment: &str, name: &str, description: &str) {
    let topic = cfg.kafka.topics.metadata.clone();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(spectra_core::kafka::ensure_topics(
            cfg,
            &[(&topic, spectra_core::kafka::Retention::Compact)],
        ))
        .unwrap();
    let p = spectra_tests::producer();
    let key = format!("mix:{segment}");
    let value = serde_json::json!({
        "segmentation": "mix", "segment_id": segment, "name": name,
        "description": description, "tags": ["#coffee"], "updated_by": "test",
        "updated_at": "2026-11-30T12:00:00Z",
    });
    spectra_tests::send(
        &p,
        &topic,
        Some(key.as_bytes()),
        Some(value.to_string().as_bytes()),
    );
    spectra_tests::flush(&p);
}

#[test]
fn csv_and_xlsx_match_the_latest_run_and_the_lines_fed_in() {
    let fx = fixture();
    let run2 = &fx.run2;
    let store = fx.store(Stage::Run2);
    let cfg = store.config(&spectra_tests::fresh("exp"));

    let (from, to) = fx.window(run2);
    let assigned: BTreeMap<&str, &str> = run2
        .assignments
        .iter()
        .map(|(o, a)| (o.as_str(), a.segment_id.as_str()))
        .collect();
    let in_window = || {
        fx.lines
            .iter()
            .filter(|l| l.date >= from && l.date <= to && assigned.contains_key(l.outlet.as_str()))
    };
    let fed: f64 = in_window().map(|l| l.value).sum();
    let fed_lines = in_window().count();
    assert!(
        fx.lines.iter().any(|l| l.date < from),
        "the fixture has lines outside the window"
    );
    assert!(
        fx.redelivered > 0 && fx.corrected > 0,
        "the feed redelivers and corrects lines: {} redelivered, {} corrected",
        fx.redelivered,
        fx.corrected
    );
    let totals = fx.window_totals(run2);
    // One segment described by people (a description starting like a formula).
    let coffee = fx.segment_of_taste(run2, 0);
    let description = "=1+1 Coffee first: espresso bars and cafés";
    describe(&cfg, &coffee, "Coffee first", description);

    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("mix.csv");
    let s = export(&store, &cfg, "csv", &csv_path);
    assert_eq!(s["rows"], assigned.len());
    assert_eq!(s["run_id"], run2.run_id.as_str());
    let mut r = csv::Reader::from_path(&csv_path).unwrap();
    let headers: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(
        headers,
        [
            "segmentation",
            "outlet_id",
            "outlet_name",
            "segment_id",
            "segment_name",
            "tags",
            "confidence",
            "value",
            "lines",
            "as_of",
            "run_id",
            "region",
            "channel",
            "change",
            "potential",
            "segment_description",
            "tier"
        ]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let got: BTreeMap<&str, &str> = rows.iter().map(|r| (&r[1], &r[3])).collect();
    assert_eq!(
        got, assigned,
        "one row per assigned outlet, in its latest segment"
    );
    let value: f64 = rows.iter().map(|r| r[7].parse::<f64>().unwrap()).sum();
    let line_count: i64 = rows.iter().map(|r| r[8].parse::<i64>().unwrap()).sum();
    assert!(
        (value - fed).abs() < 1e-6 * fed.max(1.0),
        "export value {value} vs lines fed {fed}"
    );
    assert_eq!(line_count as usize, fed_lines);
    for r in &rows {
        let (value, lines) = totals[&r[1]];
        let got: f64 = r[7].parse().unwrap();
        assert!(
            (got - value).abs() < 0.005 + 1e-9 * value.abs(),
            "{}: exported {got}, fed {value}",
            &r[1]
        );
        assert_eq!(r[8].parse::<i64>().unwrap(), lines, "{}", &r[1]);
        assert_eq!(&r[0], "mix");
        assert_eq!(r[9], run2.as_of.to_string());
        assert_eq!(r[10], run2.run_id);
        let o = fx.outlet(&r[1]);
        assert!(
            r[2] == o.name || r[2] == format!("'{}", o.name),
            "{r:?} vs {o:?}"
        );
        assert_eq!((&r[11], &r[12]), (o.region.as_str(), o.channel.as_str()));
        assert_eq!(&r[13], run2.assignments[&r[1]].change.as_str());
        assert_eq!(&r[16], run2.assignments[&r[1]].tier.as_str(), "{}", &r[1]);
        if r[3] == coffee {
            assert_eq!(
                (&r[4], &r[15]),
                ("Coffee first", format!("'{description}").as_str())
            );
        } else {
            assert_eq!(&r[4], run2.proposed_name(&r[3]).as_str());
            assert_eq!(&r[15], "");
        }
    }

    let xlsx_path = dir.path().join("mix.xlsx");
    export(&store, &cfg, "xlsx", &xlsx_path);
    let sheet = xlsx_rows(&xlsx_path, 1);
    assert_eq!(sheet[0], headers);
    assert_eq!(sheet.len(), rows.len() + 1);
    for (x, c) in sheet[1..].iter().zip(&rows) {
        // The text as typed; the CSV shows text starting like a formula behind a `'`.
        for i in 0..6 {
            assert!(
                x[i] == c[i] || format!("'{}", x[i]) == c[i],
                "column {i}: {x:?} vs {c:?}"
            );
        }
        assert!((x[7].parse::<f64>().unwrap() - c[7].parse::<f64>().unwrap()).abs() < 1e-9);
        assert_eq!(
            x[8].parse::<f64>().unwrap() as i64,
            c[8].parse::<i64>().unwrap()
        );
        // An empty string cell is not written at all.
        let d = x.get(15).map_or("", String::as_str);
        assert!(d == &c[15] || format!("'{d}") == c[15], "{x:?} vs {c:?}");
    }

    // The segments sheet: one row per segment of the run, sizes summing to the
    // outlets sheet, names and descriptions as people set them, and the spectrum's
    // strongest features; the spectrum sheet: every feature of every segment.
    let segments = xlsx_rows(&xlsx_path, 2);
    assert_eq!(
        segments[0],
        [
            "segment_id",
            "segment_name",
            "description",
            "tags",
            "outlets",
            "outlet_share",
            "value",
            "value_share",
            "spectrum"
        ]
    );
    let ids: std::collections::BTreeSet<String> =
        segments[1..].iter().map(|r| r[0].clone()).collect();
    assert_eq!(ids, run2.segments());
    assert_eq!(ids.len(), segments.len() - 1, "one row per segment");
    let outlets: usize = segments[1..]
        .iter()
        .map(|r| r[4].parse::<f64>().unwrap() as usize)
        .sum();
    assert_eq!(
        outlets,
        rows.len(),
        "segment sizes sum to the outlets sheet"
    );
    for r in &segments[1..] {
        let id = r[0].as_str();
        assert_eq!(
            r[4].parse::<f64>().unwrap() as usize,
            run2.members(id).len(),
            "{id}"
        );
        let profile = run2
            .profiles
            .iter()
            .find(|p| p["segment_id"] == id)
            .unwrap();
        let v = r[6].parse::<f64>().unwrap();
        let expected = profile["value"].as_f64().unwrap();
        assert!(
            (v - expected).abs() < 1e-6 * expected.abs().max(1.0),
            "{id}: {v} vs {expected}"
        );
        let top = &profile["spectrum"][0];
        assert!(
            r[8].starts_with(&format!(
                "{} {:.1}%",
                top["feature"].as_str().unwrap(),
                100.0 * top["share"].as_f64().unwrap()
            )),
            "{id}: {} vs {top}",
            r[8]
        );
        if id == coffee {
            assert_eq!(
                (&r[1], &r[2], &r[3]),
                (
                    &"Coffee first".to_owned(),
                    &description.to_owned(),
                    &"#coffee".to_owned()
                )
            );
        } else {
            assert_eq!(
                (r[1].as_str(), r[2].as_str()),
                (run2.proposed_name(id).as_str(), "")
            );
        }
    }
    let spectrum = xlsx_rows(&xlsx_path, 3);
    let expected: usize = run2
        .profiles
        .iter()
        .map(|p| p["spectrum"].as_array().unwrap().len())
        .sum();
    assert_eq!(spectrum.len(), expected + 1);
    let mut share_sums: BTreeMap<&str, f64> = BTreeMap::new();
    for r in &spectrum[1..] {
        *share_sums.entry(r[0].as_str()).or_default() += r[3].parse::<f64>().unwrap();
    }
    for (id, sum) in share_sums {
        assert!((sum - 1.0).abs() < 1e-3, "{id}: shares sum to {sum}");
    }

    // A segmentation without a run says so.
    let o = std::process::Command::new(spectra_tests::spectra_bin())
        .args(["export", "--segmentation", "nope", "--out"])
        .arg(dir.path().join("x.csv"))
        .args(store.flags(&cfg))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("segmentation `nope` has no run yet"));
}

/// Counts, in the first sheet of an XLSX file, the formula cells (`<f>`) and the cells
/// holding `text` as a string (shared or inline).
fn xlsx_formulas_and_string_cells(path: &std::path::Path, text: &str) -> (usize, usize) {
    let script = r#"
import json, sys, zipfile, xml.etree.ElementTree as ET
ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
z = zipfile.ZipFile(sys.argv[1])
shared = [ "".join(t.text or "" for t in si.iter("{%s}t" % ns["m"])) for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", ns)] if "xl/sharedStrings.xml" in z.namelist() else []
sheet = ET.fromstring(z.read("xl/worksheets/sheet1.xml"))
formulas = len(list(sheet.iter("{%s}f" % ns["m"])))
strings = 0
for c in sheet.iter("{%s}c" % ns["m"]):
    t, v = c.get("t"), c.find("m:v", ns)
    if t == "s" and shared[int(v.text)] == sys.argv[2]: strings += 1
    if t == "inlineStr" and "".join(x.text or "" for x in c.iter("{%s}t" % ns["m"])) == sys.argv[2]: strings += 1
print(json.dumps([formulas, strings]))
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .arg(text)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A segment name, tags and an outlet name that spreadsheets would run as formulas: the
/// CSV (from the API and from `spectra export`) shows them as text behind a `'`, keeps
/// negative values as numbers, and the XLSX holds them as plain string cells.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn formula_like_names_are_neutralised_in_csv_and_plain_strings_in_xlsx() {
    use serde_json::json;

    let fx = fixture();
    let run2 = &fx.run2;
    let (store, cfg, base, token) = publisher_on_run2("expx", "s3cret").await;
    // The feed's outlet named like a formula, and the one whose credit note exceeds its
    // purchases: its value is negative, and must stay a number.
    let evil = fx.outlets.iter().find(|o| o.name.starts_with('=')).unwrap();
    let evil_outlet = evil.name.as_str();
    let returner = fx.outlets.iter().find(|o| o.returner).unwrap().id.as_str();
    assert!(run2.assignments.contains_key(&evil.id));
    assert!(
        run2.assignments[returner].value < 0.0,
        "the returner's value is negative: {:?}",
        run2.assignments[returner]
    );
    let segment = fx.segment_of_taste(run2, 0);

    let evil_name = r#"=HYPERLINK("http://x","y")"#;
    let r = reqwest::Client::new()
        .put(format!("{base}/api/segmentations/mix/segments/{segment}"))
        .bearer_auth("s3cret")
        .json(&json!({"name": evil_name, "tags": ["+SUM(1;2)", "#ok"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let check = |data: &[u8], source: &str| {
        let mut r = csv::Reader::from_reader(data);
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), run2.assignments.len(), "{source}");
        let s1: Vec<_> = rows.iter().filter(|r| r[3] == segment).collect();
        assert!(!s1.is_empty());
        for r in &s1 {
            assert_eq!(&r[4], format!("'{evil_name}"), "{source}: segment name");
            assert_eq!(&r[5], "'+SUM(1;2) #ok", "{source}: tags");
        }
        let evil = rows.iter().find(|r| r[1] == evil.id).unwrap();
        assert_eq!(&evil[2], format!("'{evil_outlet}"), "{source}: outlet name");
        let neg = rows.iter().find(|r| &r[1] == returner).unwrap();
        let value: f64 = neg[7].parse().unwrap_or_else(|e| {
            panic!(
                "{source}: the negative value `{}` is not a number: {e}",
                &neg[7]
            )
        });
        assert!(value < 0.0, "{source}: {value}");
        // Nothing else starts like a formula.
        for r in &rows {
            for (i, cell) in r.iter().enumerate() {
                if ![7, 8, 6, 14].contains(&i) {
                    assert!(
                        !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                        "{source}: column {i} starts like a formula: {cell:?}"
                    );
                }
            }
        }
    };
    let api_csv = reqwest::get(format!("{base}/api/segmentations/mix/export.csv"))
        .await
        .unwrap();
    assert_eq!(api_csv.status(), 200);
    check(&api_csv.bytes().await.unwrap(), "API export.csv");

    let dir = tempfile::tempdir().unwrap();
    let (csv_path, xlsx_path) = (dir.path().join("mix.csv"), dir.path().join("mix.xlsx"));
    tokio::task::block_in_place(|| {
        export(&store, &cfg, "csv", &csv_path);
        export(&store, &cfg, "xlsx", &xlsx_path);
    });
    check(
        &std::fs::read(&csv_path).unwrap(),
        "spectra export --format csv",
    );

    // XLSX: the text as it was typed, in string cells; no cell is a formula.
    let (formulas, cells) = xlsx_formulas_and_string_cells(&xlsx_path, evil_name);
    assert_eq!(formulas, 0, "no formula cells in the XLSX");
    let members = run2.members(&segment).len();
    assert_eq!(
        cells, members,
        "every {segment} row holds the name as a string cell"
    );
    assert_eq!(xlsx_formulas_and_string_cells(&xlsx_path, evil_outlet).1, 1);
    token.cancel();
}
