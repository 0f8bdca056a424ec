//! `spectra export`: CSV and XLSX rows match the latest run, and `value` totals match
//! the invoice lines fed in (each counted once, only those inside the window); text a
//! spreadsheet would run as a formula is neutralised in CSV and a plain string in XLSX.

mod publish_fixtures;

use std::collections::BTreeMap;

use publish_fixtures as fx;

fn export(
    url: &str,
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
        .args(["--brokers", &cfg.kafka.brokers, "--storage", url])
        .args([
            "--set",
            &format!("kafka.topics.metadata={}", cfg.kafka.topics.metadata),
        ])
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

/// The first sheet of an XLSX file as rows of strings, blank cells as "" (python3's
/// zipfile, no extra crates).
fn xlsx_rows(path: &std::path::Path) -> Vec<Vec<String>> {
    let script = r#"
import json, sys, zipfile, xml.etree.ElementTree as ET
ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
z = zipfile.ZipFile(sys.argv[1])
shared = [ "".join(t.text or "" for t in si.iter("{%s}t" % ns["m"])) for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", ns)] if "xl/sharedStrings.xml" in z.namelist() else []
rows = []
for r in ET.fromstring(z.read("xl/worksheets/sheet1.xml")).iter("{%s}row" % ns["m"]):
    row = []
    for c in r.findall("m:c", ns):
        col = 0
        for ch in c.get("r"):
            if ch.isalpha(): col = col * 26 + ord(ch) - 64
        while len(row) < col - 1: row.append("")
        v = c.find("m:v", ns)
        t = c.get("t")
        if t == "s": row.append(shared[int(v.text)])
        elif t == "inlineStr": row.append("".join(x.text or "" for x in c.iter("{%s}t" % ns["m"])))
        else: row.append(v.text if v is not None else "")
    rows.append(row)
print(json.dumps(rows))
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn csv_and_xlsx_match_the_latest_run_and_the_lines_fed_in() {
    let as_of: chrono::NaiveDate = "2026-11-21".parse().unwrap();
    let (_dir, url, root) = fx::storage();
    let cfg = fx::config(&url, &spectra_tests::fresh("exp"));
    let outlets = fx::outlets(45);
    // Lines over 120 days: those older than the 91-day window must not count.
    let lines = fx::lines(3, &outlets, as_of, 120, 20);
    fx::write_daily(&root, &lines);
    fx::write_features(&root, "mix", as_of, 91, &outlets, &lines);
    let totals = fx::window_totals(&lines, as_of, 91);
    let run1 = fx::first_assignments(&outlets[..40]);
    fx::write_run(&root, "mix", as_of, 1, &run1, &totals);
    let run2 = fx::drift(&run1, &outlets[40..]);
    fx::write_run(&root, "mix", as_of, 2, &run2, &totals);

    let from = as_of - chrono::Duration::days(90);
    let assigned: BTreeMap<&str, &str> =
        run2.iter().map(|a| (a.0.as_str(), a.1.as_str())).collect();
    let fed: f64 = lines
        .iter()
        .filter(|l| l.date >= from && l.date <= as_of && assigned.contains_key(l.outlet.as_str()))
        .map(|l| l.value)
        .sum();
    let fed_lines = lines
        .iter()
        .filter(|l| l.date >= from && l.date <= as_of && assigned.contains_key(l.outlet.as_str()))
        .count();
    assert!(
        lines.iter().any(|l| l.date < from),
        "the fixture has lines outside the window"
    );

    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("mix.csv");
    let s = export(&url, &cfg, "csv", &csv_path);
    assert_eq!(s["rows"], run2.len());
    assert_eq!(s["run_id"], "mix/2026-11-21/2");
    let mut r = csv::Reader::from_path(&csv_path).unwrap();
    let headers: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(
        &headers[..10],
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
            "as_of"
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
    assert!(rows
        .iter()
        .all(|r| &r[0] == "mix" && &r[9] == "2026-11-21" && r[2].starts_with("Sklep ")));
    assert_eq!(
        rows.iter().find(|r| &r[3] == "S1").unwrap()[4].to_owned(),
        "coffee lovers"
    );

    let xlsx_path = dir.path().join("mix.xlsx");
    export(&url, &cfg, "xlsx", &xlsx_path);
    let sheet = xlsx_rows(&xlsx_path);
    assert_eq!(sheet[0], headers);
    assert_eq!(sheet.len(), rows.len() + 1);
    for (x, c) in sheet[1..].iter().zip(&rows) {
        assert_eq!(
            &x[..6],
            &c.iter().take(6).map(str::to_owned).collect::<Vec<_>>()[..]
        );
        assert!((x[7].parse::<f64>().unwrap() - c[7].parse::<f64>().unwrap()).abs() < 1e-9);
        assert_eq!(
            x[8].parse::<f64>().unwrap() as i64,
            c[8].parse::<i64>().unwrap()
        );
    }

    // A segmentation without a run says so.
    let o = std::process::Command::new(spectra_tests::spectra_bin())
        .args(["export", "--segmentation", "nope", "--out"])
        .arg(dir.path().join("x.csv"))
        .args(["--brokers", &cfg.kafka.brokers, "--storage", &url])
        .args([
            "--set",
            &format!("kafka.topics.metadata={}", cfg.kafka.topics.metadata),
        ])
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
    use spectra_core::service::Context;
    use tokio_util::sync::CancellationToken;

    let as_of: chrono::NaiveDate = "2026-11-21".parse().unwrap();
    let (_dir, url, root) = fx::storage();
    let cfg = fx::config(&url, &spectra_tests::fresh("expx"));
    let mut outlets = fx::outlets(30);
    let evil_outlet = "=cmd|' /C calc'!A0";
    outlets[0].name = evil_outlet.into();
    let mut lines = fx::lines(4, &outlets, as_of, 91, 20);
    // The second outlet only returned goods: its value is negative, and must stay a number.
    let returner = outlets[1].id.clone();
    for l in lines.iter_mut().filter(|l| l.outlet == returner) {
        l.value = -l.value.abs();
    }
    fx::write_daily(&root, &lines);
    fx::write_features(&root, "mix", as_of, 91, &outlets, &lines);
    let totals = fx::window_totals(&lines, as_of, 91);
    fx::write_run(
        &root,
        "mix",
        as_of,
        1,
        &fx::first_assignments(&outlets),
        &totals,
    );
    let token = CancellationToken::new();
    let svc = spectra_publisher::start(
        cfg.clone(),
        Context::new(token.clone()),
        spectra_publisher::PublishOptions::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", svc.addr().unwrap());

    let evil_name = r#"=HYPERLINK("http://x","y")"#;
    let r = reqwest::Client::new()
        .put(format!("{base}/api/segmentations/mix/segments/S1"))
        .bearer_auth("s3cret")
        .json(&json!({"name": evil_name, "tags": ["+SUM(1;2)", "#ok"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let check = |data: &[u8], source: &str| {
        let mut r = csv::Reader::from_reader(data);
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), outlets.len(), "{source}");
        let s1: Vec<_> = rows.iter().filter(|r| &r[3] == "S1").collect();
        assert!(!s1.is_empty());
        for r in &s1 {
            assert_eq!(&r[4], format!("'{evil_name}"), "{source}: segment name");
            assert_eq!(&r[5], "'+SUM(1;2) #ok", "{source}: tags");
        }
        let evil = rows
            .iter()
            .find(|r| &r[1] == outlets[0].id.as_str())
            .unwrap();
        assert_eq!(&evil[2], format!("'{evil_outlet}"), "{source}: outlet name");
        let neg = rows.iter().find(|r| r[1] == returner).unwrap();
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
    let (url2, cfg2) = (url.clone(), cfg.clone());
    let (cp, xp) = (csv_path.clone(), xlsx_path.clone());
    tokio::task::spawn_blocking(move || {
        export(&url2, &cfg2, "csv", &cp);
        export(&url2, &cfg2, "xlsx", &xp);
    })
    .await
    .unwrap();
    check(
        &std::fs::read(&csv_path).unwrap(),
        "spectra export --format csv",
    );

    // XLSX: the text as it was typed, in string cells; no cell is a formula.
    let (formulas, cells) = xlsx_formulas_and_string_cells(&xlsx_path, evil_name);
    assert_eq!(formulas, 0, "no formula cells in the XLSX");
    let s1 = fx::first_assignments(&outlets)
        .iter()
        .filter(|a| a.1 == "S1")
        .count();
    assert_eq!(cells, s1, "every S1 row holds the name as a string cell");
    assert_eq!(xlsx_formulas_and_string_cells(&xlsx_path, evil_outlet).1, 1);
    token.cancel();
}
