//! `spectra export`: CSV and XLSX rows match the latest run, and `value` totals match
//! the invoice lines fed in (each counted once, only those inside the window).

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
