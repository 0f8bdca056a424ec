//! `spectra load` on the real Online Retail file: every row with a customer becomes an
//! invoice line on the topic, every row without one is rejected with its reason, and
//! ingest stores exactly the lines sent.

use std::collections::HashMap;

use arrow::array::AsArray;
use arrow::datatypes::Float64Type;
use spectra_tests::*;

/// Net value per customer straight from the CSV (Quantity × UnitPrice, cancellations
/// netted), the number of rows, and the number of rows without a customer.
fn direct_totals(rows: &[RetailRow]) -> (HashMap<String, f64>, usize, usize) {
    let mut totals = HashMap::new();
    for r in rows.iter().filter(|r| !r.customer.is_empty()) {
        *totals.entry(r.customer.clone()).or_insert(0.0) += r.quantity * r.unit_price;
    }
    let no_customer = rows.iter().filter(|r| r.customer.is_empty()).count();
    (totals, rows.len(), no_customer)
}

#[test]
fn online_retail_loads_and_ingests_every_customer_line() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path()).accepting_history();
    let rejects = dir.path().join("rejects.csv");
    let file = online_retail_file();
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
                file.to_str().unwrap(),
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
    let retail = online_retail_rows();
    let (totals, rows, no_customer) = direct_totals(&retail);
    assert_eq!(rows, 541_909);
    assert_eq!(no_customer, 135_080);
    assert_eq!(
        summary["rejected"]["empty_outlet_id"], no_customer,
        "{summary}"
    );
    assert_eq!(summary["sent"], rows - no_customer, "{summary}");
    assert_eq!(
        summary["master_sent"].as_u64().unwrap() as usize,
        totals.len() + 4_070 - count_missing_skus(&retail),
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
fn count_missing_skus(rows: &[RetailRow]) -> usize {
    let all: std::collections::HashSet<&str> = rows.iter().map(|r| r.stock_code.as_str()).collect();
    let with: std::collections::HashSet<&str> = rows
        .iter()
        .filter(|r| !r.customer.is_empty())
        .map(|r| r.stock_code.as_str())
        .collect();
    all.len() - with.len()
}
