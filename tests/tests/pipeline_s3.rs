//! The pipeline on S3 (moto, started by `scripts/test.sh`) under a prefix holding
//! characters object_store and URLs escape (`~ [ ] % #`, a space), against the same
//! pipeline on `file://` in a directory of such a name: the first 20,000 rows of the
//! Online Retail file loaded once, then `spectra ingest --once`, `aggregate --once` and
//! `segment --once` on each store. Every object lands under the prefix, keyed as the
//! URL writes it (decoded), and the window features and the run's assignments read
//! back from S3 are those of `file://`.

use std::collections::BTreeMap;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int64Type};
use spectra_core::tables::layout;
use spectra_core::Storage;
use spectra_tests::services::*;
use spectra_tests::*;

/// Rows of the Online Retail file the test loads (its first days).
const ROWS: usize = 20_000;

/// Writes the file's first `ROWS` rows as a CSV of their own; returns its last date.
fn first_rows(to: &std::path::Path) -> String {
    let text = online_retail_text();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let mut w = csv::Writer::from_path(to).unwrap();
    w.write_record(r.headers().unwrap()).unwrap();
    let date = r.headers().unwrap().iter().position(|c| c == "InvoiceDate");
    let mut last = String::new();
    for rec in r.records().take(ROWS) {
        let rec = rec.unwrap();
        last = rec[date.unwrap()][..10].to_owned();
        w.write_record(&rec).unwrap();
    }
    w.flush().unwrap();
    last
}

/// Parquet rows of every object under `rel` whose name ends with `file`.
fn batches(s: &Storage, rel: &str, file: &str) -> Vec<arrow::array::RecordBatch> {
    block_on(async {
        let mut out = Vec::new();
        for o in s.list(rel).await.unwrap() {
            if o.path.ends_with(file) {
                let data = s.get(&o.path).await.unwrap().unwrap();
                out.extend(spectra_core::schema::from_parquet(data).unwrap());
            }
        }
        out
    })
}

/// Outlet → (net value, lines) of the window features as of `as_of`.
fn kpis(s: &Storage, as_of: &str) -> BTreeMap<String, (f64, i64)> {
    let rel = format!("features/segmentation=retail/as_of={as_of}/");
    let mut out = BTreeMap::new();
    for b in batches(s, &rel, "kpis.parquet") {
        let o = b.column_by_name("outlet_id").unwrap().as_string::<i32>();
        let v = b.column_by_name("net_value").unwrap();
        let n = b.column_by_name("lines").unwrap();
        let (v, n) = (
            v.as_primitive::<Float64Type>(),
            n.as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            out.insert(o.value(i).to_owned(), (v.value(i), n.value(i)));
        }
    }
    out
}

/// Outlet → segment of the run `run_id` (`retail/{as_of}/{seq}`).
fn assignments(s: &Storage, run_id: &str) -> BTreeMap<String, String> {
    let rel = format!("{}/", layout::run_of_id(run_id).unwrap());
    let mut out = BTreeMap::new();
    for b in batches(s, &rel, "assignments.parquet") {
        let o = b.column_by_name("outlet_id").unwrap().as_string::<i32>();
        let g = b.column_by_name("segment_id").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            out.insert(o.value(i).to_owned(), g.value(i).to_owned());
        }
    }
    out
}

#[test]
fn the_pipeline_on_s3_under_an_escaped_prefix_matches_file() {
    let dir = tempfile::tempdir().unwrap();
    // A directory named `store~[1] #%`: its URL escapes the space, `#` and `%`.
    let mut on_file = Setup::new(&dir.path().join("store~[1] #%")).accepting_history();
    on_file.storage = format!("file://{}/store~[1]%20%23%25", dir.path().display());
    on_file.create_topics(3);
    let csv = dir.path().join("first-rows.csv");
    let as_of = first_rows(&csv);
    on_file.load_retail(&csv, &[]);
    // The same topics, read by a group of its own into the bucket.
    // Its environment is set in this process, so the `spectra` commands inherit it.
    let (bucket, _) = s3_bucket(&s3_endpoint());
    let mut on_s3 = on_file.clone();
    // The prefix `spectra~run [1]%#`.
    on_s3.storage = format!("s3://{bucket}/spectra~run%20[1]%25%23");
    on_s3.group = format!("{}.s3", on_file.group);
    let config = write_config(
        dir.path(),
        "[[segmentation]]\nname = \"retail\"\nlevel = \"sku\"\nwindow_days = 60\nk = 4\n",
    );
    let mut runs = Vec::new();
    for setup in [&on_file, &on_s3] {
        let step = |sub: &str, extra: &[&str]| {
            ok(
                run(setup, sub, &config, extra),
                &format!("{sub} on {}", setup.storage),
            )
        };
        step("ingest", &["--once"]);
        step("aggregate", &["--once", "--as-of", &as_of]);
        let seg = step("segment", &["--once"]);
        let run_id = seg["runs"][0]["run_id"].as_str().unwrap().to_owned();
        assert_eq!(run_id, format!("retail/{as_of}/1"), "{seg}");
        runs.push((Storage::from_url(&setup.storage).unwrap(), run_id));
    }
    assert!(dir.path().join("store~[1] #%/features").is_dir());
    let [(file, file_run), (s3, s3_run)] = &runs[..] else {
        unreachable!()
    };

    // Every object of the bucket is under the prefix, where the store lists it; the
    // server's own listing shows the prefix as the URL gives it, not escaped.
    let bucket_root = Storage::from_url(&format!("s3://{bucket}")).unwrap();
    let everything = block_on(bucket_root.list("")).unwrap();
    let under_prefix = block_on(s3.list("")).unwrap();
    assert!(under_prefix
        .iter()
        .any(|o| o.path.starts_with("raw/invoices/date=")));
    assert_eq!(everything.len(), under_prefix.len());
    let listing = block_on(async {
        // prefix=spectra~run [1]%#/raw/
        let url = format!(
            "{}/{bucket}?list-type=2&prefix=spectra~run%20%5B1%5D%25%23%2Fraw%2F",
            s3_endpoint()
        );
        reqwest::get(url).await.unwrap().text().await.unwrap()
    });
    assert!(
        listing.contains("<Key>spectra~run [1]%#/raw/invoices/date=") && !listing.contains("%25"),
        "{listing}"
    );
    for o in &under_prefix {
        assert!(
            block_on(s3.exists(&o.path)).unwrap(),
            "{} listed, not found",
            o.path
        );
    }
    // Listed alike on both stores: the same tables, the same run.
    let names = |s: &Storage, rel: &str| -> Vec<String> {
        let mut v: Vec<String> = block_on(s.list(rel))
            .unwrap()
            .into_iter()
            .map(|o| o.path)
            .collect();
        v.sort();
        v
    };
    for rel in ["features/", "segmentations/"] {
        assert_eq!(names(s3, rel), names(file, rel), "{rel}");
    }

    let (want, got) = (kpis(file, &as_of), kpis(s3, &as_of));
    assert!(want.len() > 100, "{} outlets on file://", want.len());
    assert_eq!(got.len(), want.len());
    for (outlet, (v, n)) in &want {
        let (gv, gn) = got[outlet];
        assert!(
            (gv - v).abs() <= 1e-9 * (1.0 + v.abs()),
            "{outlet}: {gv} vs {v}"
        );
        assert_eq!(gn, *n, "{outlet}: lines");
    }
    let want = assignments(file, file_run);
    assert!(
        want.len() > 100,
        "{} outlets assigned on file://",
        want.len()
    );
    assert_eq!(assignments(s3, s3_run), want);
}
