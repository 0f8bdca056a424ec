//! `spectra load` on the real Online Retail file: every row with a customer becomes an
//! invoice line on the topic, every row without one is rejected with its reason, and
//! ingest stores exactly the lines sent.

use std::collections::HashMap;
use std::io::Read;

use arrow::array::AsArray;
use arrow::datatypes::Float64Type;
use spectra_tests::*;

const FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/online-retail/online_retail.csv.gz"
);

/// Net value per customer straight from the CSV (Quantity × UnitPrice, cancellations
/// netted), and the number of rows without a customer.
fn direct_totals() -> (HashMap<String, f64>, usize, usize) {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(FILE).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let (q, p, c) = (col("Quantity"), col("UnitPrice"), col("CustomerID"));
    let mut totals = HashMap::new();
    let (mut rows, mut no_customer) = (0, 0);
    for r in rdr.records() {
        let r = r.unwrap();
        rows += 1;
        if r[c].trim().is_empty() {
            no_customer += 1;
            continue;
        }
        let v: f64 = r[q].parse::<f64>().unwrap() * r[p].parse::<f64>().unwrap();
        *totals.entry(r[c].to_owned()).or_insert(0.0) += v;
    }
    (totals, rows, no_customer)
}

#[test]
fn online_retail_loads_and_ingests_every_customer_line() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let rejects = dir.path().join("rejects.csv");
    let out = setup
        .command(
            "load",
            &[
                "--preset",
                "online-retail",
                "--derive-master",
                "--no-progress",
                "--rejects",
                rejects.to_str().unwrap(),
                FILE,
            ],
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (totals, rows, no_customer) = direct_totals();
    assert_eq!(rows, 541_909);
    assert_eq!(no_customer, 135_080);
    assert_eq!(
        summary["rejected"]["empty_outlet_id"], no_customer,
        "{summary}"
    );
    assert_eq!(summary["sent"], rows - no_customer, "{summary}");
    assert_eq!(
        summary["master_sent"].as_u64().unwrap() as usize,
        totals.len() + 4_070 - count_missing_skus(),
        "{summary}"
    );
    let reasons = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(reasons.lines().count(), no_customer);
    assert!(reasons
        .lines()
        .next()
        .unwrap()
        .contains("column CustomerID is empty"));

    setup.ingest_once(&["--set", "ingest.flush_rows=100000"]);
    let mut stored: HashMap<String, f64> = HashMap::new();
    let mut n = 0;
    for b in read_parquet_dir(&dir.path().join("raw/invoices")) {
        let o = b.column_by_name("outlet_id").unwrap().as_string::<i32>();
        let v = b
            .column_by_name("net_value")
            .unwrap()
            .as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            *stored.entry(o.value(i).to_owned()).or_insert(0.0) += v.value(i);
            n += 1;
        }
    }
    assert_eq!(n, rows - no_customer);
    assert_eq!(stored.len(), totals.len());
    for (c, v) in &totals {
        // CustomerID is read as text ("17850.0" in some exports, "17850" here).
        let s = stored
            .get(c)
            .unwrap_or_else(|| panic!("customer {c} missing"));
        assert!(
            (s - v).abs() < 1e-6 * v.abs().max(1.0),
            "customer {c}: stored {s}, csv {v}"
        );
    }
}

/// Stock codes seen only on rows without a customer are not derived as SKUs.
fn count_missing_skus() -> usize {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(FILE).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let mut with: std::collections::HashSet<String> = Default::default();
    let mut all: std::collections::HashSet<String> = Default::default();
    for r in rdr.records() {
        let r = r.unwrap();
        all.insert(r[1].to_owned());
        if !r[6].trim().is_empty() {
            with.insert(r[1].to_owned());
        }
    }
    all.len() - with.len()
}
