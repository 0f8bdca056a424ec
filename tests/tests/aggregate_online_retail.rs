//! The UCI Online Retail file end to end: `spectra load --preset online-retail` →
//! `spectra ingest --once` → `spectra aggregate --once --as-of 2011-12-09`, then every
//! customer's window total (kpis `net_value`) against a direct computation from the CSV
//! (rows without CustomerID skipped, net = Quantity × UnitPrice, cancellations netted).

use std::collections::BTreeMap;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int64Type};
use spectra_tests::*;

/// CustomerID → (net value, lines), straight from the CSV.
fn direct_totals() -> BTreeMap<String, (f64, i64)> {
    let mut out: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    for row in online_retail_rows()
        .into_iter()
        .filter(|r| !r.customer.is_empty())
    {
        let e = out.entry(row.customer).or_default();
        e.0 += row.quantity * row.unit_price;
        e.1 += 1;
    }
    out
}

#[test]
fn online_retail_totals_per_customer_match_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&dir.path().join("store")).accepting_history();
    setup.create_topics(3);
    let file = online_retail_file();
    let started = std::time::Instant::now();
    let out = setup
        .command(
            "load",
            &[
                "--preset",
                "online-retail",
                "--derive-master",
                "--no-progress",
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
    eprintln!(
        "load: {:?} {}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let t = std::time::Instant::now();
    let ingested = setup.ingest_once(&[]);
    eprintln!("ingest: {:?} {}", t.elapsed(), ingested.trim());

    let config = dir.path().join("spectra.toml");
    std::fs::write(
        &config,
        "[[segmentation]]\nname = \"retail\"\nlevel = \"sku\"\nwindow_days = 400\n",
    )
    .unwrap();
    let t = std::time::Instant::now();
    let out = setup
        .command(
            "aggregate",
            &[
                "--once",
                "--as-of",
                "2011-12-09",
                "--config",
                config.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aggregate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("aggregate: {:?} {summary}", t.elapsed());

    let want = direct_totals();
    let features = setup
        .dir
        .join("features/segmentation=retail/as_of=2011-12-09");
    let mut got: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    let data = bytes::Bytes::from(std::fs::read(features.join("kpis.parquet")).unwrap());
    for b in spectra_core::schema::from_parquet(data).unwrap() {
        let ids = b
            .column_by_name("outlet_id")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let nv = b
            .column_by_name("net_value")
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone();
        let lines = b
            .column_by_name("lines")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        for i in 0..b.num_rows() {
            got.insert(ids.value(i).to_owned(), (nv.value(i), lines.value(i)));
        }
    }
    assert_eq!(
        got.len(),
        want.len(),
        "customers: aggregated {} vs CSV {}",
        got.len(),
        want.len()
    );
    let seg = &summary["segmentations"][0];
    assert_eq!(seg["outlets"].as_u64(), Some(want.len() as u64));
    assert_eq!(
        seg["unknown_skus"].as_u64(),
        Some(0),
        "--derive-master sent every SKU"
    );
    for (c, (v, n)) in &want {
        let (gv, gn) = got.get(c).unwrap_or_else(|| panic!("customer {c} missing"));
        assert!(
            (gv - v).abs() <= 1e-6 * (1.0 + v.abs()),
            "customer {c}: net {gv} vs CSV {v}"
        );
        assert_eq!(gn, n, "customer {c}: lines");
    }
    let total: f64 = want.values().map(|(v, _)| v).sum();
    eprintln!(
        "{} customers, net {total:.2}, end to end {:?}",
        want.len(),
        started.elapsed()
    );
}
