//! `spectra segment --once` as a process on feature tables written here from the
//! README's column lists (the aggregator's contract, independently of its code): the run
//! folder and `latest.json`, the exact columns of `assignments.parquet` and
//! `outlet_gaps.parquet`, an up-to-date second call, and configuration errors.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::Value;
use spectra_tests::{read_parquet_dir, spectra_bin};

fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        cols.into_iter().map(|c| c.1).collect(),
    )
    .unwrap()
}

fn text(v: &[String]) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}
fn num(v: &[f64]) -> ArrayRef {
    Arc::new(Float64Array::from(v.to_vec()))
}
fn int(v: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(v.to_vec()))
}

fn write(dir: &Path, name: &str, b: RecordBatch) {
    std::fs::create_dir_all(dir).unwrap();
    let bytes = spectra_core::schema::to_parquet(b.schema(), &[b]).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Three kinds of outlet (coffee, tea, snacks shops), 40 each, in the README layout.
fn features(root: &Path, as_of: &str) {
    let dir = root.join(format!("features/segmentation=cli/as_of={as_of}"));
    let kinds = ["coffee", "tea", "snacks"];
    let (mut o, mut f, mut v) = (vec![], vec![], vec![]);
    let (mut ko, mut kv) = (vec![], vec![]);
    let (mut so, mut ss, mut sf, mut sv) = (vec![], vec![], vec![], vec![]);
    for i in 0..120 {
        let id = format!("PL-{i:04}");
        let main = kinds[i % 3];
        let mut total = 0.0;
        for k in kinds {
            let value = if k == main {
                80.0 + (i % 7) as f64
            } else {
                10.0 + (i % 5) as f64
            };
            total += value;
            o.push(id.clone());
            f.push(k.to_string());
            v.push(value);
            so.push(id.clone());
            ss.push(format!("{k}-{}", i % 2));
            sf.push(k.to_string());
            sv.push(value);
        }
        ko.push(id);
        kv.push(total);
    }
    let n = ko.len();
    write(
        &dir,
        "spectrum.parquet",
        batch(vec![
            ("outlet_id", text(&o)),
            ("feature", text(&f)),
            ("value", num(&v)),
            ("raw_value", num(&v)),
            ("lines", int(&vec![10; v.len()])),
            (
                "recent_value",
                num(&v.iter().map(|x| x / 3.0).collect::<Vec<_>>()),
            ),
            ("recent_lines", int(&vec![3; v.len()])),
        ]),
    );
    let strings = |s: &str| text(&vec![s.to_string(); n]);
    write(
        &dir,
        "kpis.parquet",
        batch(vec![
            ("outlet_id", text(&ko)),
            ("net_value", num(&kv)),
            ("lines", int(&vec![30; n])),
            ("invoices", int(&vec![10; n])),
            ("invoices_per_month", num(&vec![3.3; n])),
            (
                "avg_invoice_value",
                num(&kv.iter().map(|t| t / 10.0).collect::<Vec<_>>()),
            ),
            ("distinct_skus", int(&vec![6; n])),
            ("days_since_last_invoice", int(&vec![2; n])),
            ("active_weeks", int(&vec![12; n])),
            ("return_share", num(&vec![0.0; n])),
            ("recent_invoices", int(&vec![3; n])),
            ("name", strings("shop")),
            ("region", strings("Małopolska")),
            ("channel", strings("traditional")),
            ("attributes", strings(r#"{"size": "M"}"#)),
        ]),
    );
    let m = so.len();
    write(
        &dir,
        "sku_spend.parquet",
        batch(vec![
            ("outlet_id", text(&so)),
            ("sku_id", text(&ss)),
            ("feature", text(&sf)),
            ("net_value", num(&sv)),
            ("quantity", num(&vec![1.0; m])),
            ("lines", int(&vec![1; m])),
        ]),
    );
    let manifest = serde_json::json!({"segmentation": "cli", "as_of": as_of, "window_start": "2026-08-22",
        "level": "category", "outlets": n, "features": 3, "unknown_skus": 0, "unknown_outlets": 0,
        "created_at": "2026-11-20T03:00:00Z"});
    std::fs::write(dir.join("_manifest.json"), manifest.to_string()).unwrap();
}

fn segment(root: &Path, config: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(spectra_bin())
        .arg("segment")
        .args(["--config", config.to_str().unwrap()])
        .args(["--storage", &format!("file://{}", root.display())])
        .args(["--admin-listen", "127.0.0.1:0", "--once"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn columns(b: &[RecordBatch]) -> Vec<String> {
    b[0].schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

#[test]
fn segment_once_writes_a_complete_run_then_is_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let config = dir.path().join("spectra.toml");
    std::fs::write(
        &config,
        "[[segmentation]]\nname = \"cli\"\nk = 3\nseed = 1\n",
    )
    .unwrap();
    features(&root, "2026-11-20");

    let out = segment(&root, &config, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &summary["runs"][0];
    assert_eq!(run["run_id"], "cli/2026-11-20/1", "{summary}");
    assert_eq!(run["segments"], 3);
    assert_eq!(run["outlets"], 120);
    assert_eq!(run["new"], 120);

    let latest: Value =
        serde_json::from_slice(&std::fs::read(root.join("segmentations/cli/latest.json")).unwrap())
            .unwrap();
    assert_eq!(latest["path"], "segmentations/cli/runs/2026-11-20.1");
    let folder = root.join("segmentations/cli/runs/2026-11-20.1");
    for f in [
        "assignments.parquet",
        "outlet_gaps.parquet",
        "profiles.json",
        "model.json",
    ] {
        assert!(folder.join(f).exists(), "{f} missing");
    }
    let assignments: Vec<RecordBatch> = read_parquet_dir(&folder)
        .into_iter()
        .filter(|b| b.schema().field_with_name("change").is_ok())
        .collect();
    assert_eq!(
        columns(&assignments),
        [
            "outlet_id",
            "segment_id",
            "previous_segment_id",
            "change",
            "distance",
            "confidence",
            "value",
            "lines",
            "potential",
            "tier",
            "baseline"
        ]
    );
    let gaps: Vec<RecordBatch> = read_parquet_dir(&folder)
        .into_iter()
        .filter(|b| b.schema().field_with_name("gap").is_ok())
        .collect();
    assert_eq!(
        columns(&gaps),
        [
            "outlet_id",
            "segment_id",
            "feature",
            "outlet_share",
            "segment_share",
            "gap"
        ]
    );
    assert_eq!(gaps.iter().map(|b| b.num_rows()).sum::<usize>(), 360);
    let profiles: Value =
        serde_json::from_slice(&std::fs::read(folder.join("profiles.json")).unwrap()).unwrap();
    let mut names: Vec<&str> = profiles
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Coffee-led", "Snacks-led", "Tea-led"]);
    assert_eq!(
        *assignments[0].column_by_name("change").unwrap().data_type(),
        DataType::Utf8
    );

    // Nothing new: up to date, no second run.
    let out = segment(&root, &config, &[]);
    assert!(out.status.success());
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["runs"], serde_json::json!([]));
    assert_eq!(summary["up_to_date"], serde_json::json!(["cli"]));

    let out = segment(&root, &config, &["--segmentation", "other"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`other` is not configured"), "{err}");
}
