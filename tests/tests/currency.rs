//! Mixed currencies end to end, through the command line against the test broker: a
//! feed in PLN, EUR and USD (whole invoices with a header currency, lines overriding it,
//! lines without one) goes through `ingest` and `aggregate` with `ingest.currency.base =
//! "PLN"` and dated rates. Every outlet's net value in the features equals the sum of
//! its lines converted at the rate in force on each invoice date, the raw lines keep
//! the currency they arrived in, and an invoice in a currency without a rate is on the
//! dead-letter topic with a reason naming the field — and nothing of it is stored.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::{json, Value};
use spectra_core::tables::features::KpiRow;
use spectra_core::tables::read_rows;
use spectra_core::Storage;
use spectra_tests::{read_parquet_dir, read_topic, Setup};

const CONFIG: &str = r#"
[ingest.currency]
base = "PLN"
rates = [
  { currency = "EUR", from = "2026-01-01", rate = 4.25 },
  { currency = "EUR", from = "2026-06-15", rate = 4.5 },
  { currency = "USD", from = "2026-01-01", rate = 3.9 },
]

[[segmentation]]
name = "mix"
k = 2
window_days = 60
recent_days = 0
"#;

/// The test's own reading of the rates above: PLN per unit of `currency` on `date`.
fn rate(currency: Option<&str>, date: NaiveDate) -> f64 {
    let june15 = NaiveDate::from_ymd_opt(2026, 6, 15).unwrap();
    match currency {
        None | Some("PLN") => 1.0,
        Some("EUR") if date < june15 => 4.25,
        Some("EUR") => 4.5,
        Some("USD") => 3.9,
        Some(c) => panic!("no rate for {c}"),
    }
}

#[test]
fn mixed_currency_totals_equal_the_converted_sums() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&dir.path().join("store"));
    let config = dir.path().join("spectra.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.to_str().unwrap();

    let currencies = [Some("PLN"), Some("EUR"), Some("USD"), None];
    let days: Vec<NaiveDate> = [10, 14, 15, 20]
        .iter()
        .map(|d| NaiveDate::from_ymd_opt(2026, 6, *d).unwrap())
        .collect();
    let p = spectra_tests::producer();
    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    let mut sent = 0;
    for o in 0..12 {
        let outlet = format!("O{o:02}");
        for (d, day) in days.iter().enumerate() {
            // The header's currency, one line overriding it, one line inheriting it.
            let header = currencies[(o + d) % 4];
            let other = currencies[(o + d + 1) % 4];
            let values = [10.0 + o as f64, 3.5 * (d + 1) as f64, -2.0];
            let mut lines = Vec::new();
            for (n, v) in values.iter().enumerate() {
                let mut l = json!({"line_no": n + 1, "sku_id": format!("SKU{n}"), "quantity": 1, "net_value": v});
                let c = if n == 1 { other } else { header };
                if n == 1 {
                    if let Some(c) = other {
                        l["currency"] = json!(c);
                    }
                }
                // A line without its own currency inherits the header's, or is in the
                // base when the header has none; a line overriding with none would
                // inherit, so the override is only sent with a currency.
                let c = if n == 1 && other.is_none() { header } else { c };
                *expected.entry(outlet.clone()).or_default() += v * rate(c, *day);
                lines.push(l);
            }
            let mut invoice = json!({"distributor_id": "D1", "invoice_id": format!("{outlet}/{day}"),
                "invoice_date": day.to_string(), "outlet_id": outlet, "lines": lines});
            if let Some(c) = header {
                invoice["currency"] = json!(c);
            }
            let bytes = invoice.to_string().into_bytes();
            spectra_tests::send(&p, &setup.invoices, Some(outlet.as_bytes()), Some(&bytes));
            sent += 1;
        }
    }
    // An invoice with a line in a currency that has no rate: rejected whole.
    let gbp = json!({"distributor_id": "D2", "invoice_id": "GB/1", "invoice_date": "2026-06-14",
        "outlet_id": "O00", "currency": "EUR", "lines": [
            {"line_no": 1, "sku_id": "SKU0", "quantity": 1, "net_value": 5.0},
            {"line_no": 2, "sku_id": "SKU1", "quantity": 1, "net_value": 1e6, "currency": "GBP"}]})
    .to_string()
    .into_bytes();
    spectra_tests::send(&p, &setup.invoices, Some(b"GB"), Some(&gbp));
    spectra_tests::flush(&p);
    assert_eq!(sent, 48);

    setup.ingest_once(&["--config", config]);
    let out = setup
        .command(
            "aggregate",
            &["--once", "--config", config, "--as-of", "2026-06-20"],
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aggregate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The features' net value per outlet is the converted sum.
    let storage = Storage::from_url(&setup.storage).unwrap();
    let kpis: Vec<KpiRow> = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(read_rows(
            &storage,
            "features/segmentation=mix/as_of=2026-06-20/kpis.parquet",
        ))
        .unwrap()
        .expect("the features were written");
    let got: BTreeMap<String, f64> = kpis
        .iter()
        .map(|k| (k.outlet_id.clone(), k.net_value))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (o, want) in &expected {
        assert!(
            (got[o] - want).abs() < 1e-9 * want.abs().max(1.0),
            "{o}: {} in the features, {want} converted",
            got[o]
        );
    }
    // Summing as sent would differ: the test would notice a missing conversion.
    let total: f64 = expected.values().sum();
    assert!(total > 0.0);

    // The raw lines keep the currency they arrived in; none of the GBP invoice is stored.
    let raw = read_parquet_dir(&setup.dir.join("raw/invoices"));
    let mut seen: BTreeMap<Option<String>, usize> = BTreeMap::new();
    for b in &raw {
        let c = b
            .column_by_name("currency")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        let d = b
            .column_by_name("distributor_id")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert!(d.iter().all(|x| x == Some("D1")), "a line of D2 was stored");
        for v in c.iter() {
            *seen.entry(v.map(str::to_owned)).or_default() += 1;
        }
    }
    assert_eq!(seen.values().sum::<usize>(), 48 * 3);
    for c in ["PLN", "EUR", "USD"] {
        assert!(seen.contains_key(&Some(c.to_owned())), "{seen:?}");
    }
    assert!(
        seen.contains_key(&None),
        "lines without a currency: {seen:?}"
    );

    // The GBP invoice is a dead letter naming the field.
    let dlq = read_topic(&setup.dlq);
    assert_eq!(dlq.len(), 1);
    let error = dlq[0]
        .headers
        .iter()
        .find(|(k, _)| k == "spectra-error")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(
        error.contains("lines[1].currency \"GBP\" has no exchange rate into PLN on 2026-06-14"),
        "{error}"
    );
    let value: Value = serde_json::from_slice(dlq[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(value["invoice_id"], "GB/1");
}
