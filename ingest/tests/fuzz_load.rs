//! Fuzzing `spectra load`'s CSV mapping: arbitrary cell text through the Online Retail
//! preset and through a mapping that takes `line_no` from a column. Mapping never
//! panics; what it accepts passes the ingest decoder or is rejected with a reason, and a
//! line number is never truncated (`3.5` is rejected, not read as line 3).

use chrono::NaiveDate;
use proptest::prelude::*;
use spectra_core::config::IngestConfig;
use spectra_core::message::{parse_invoice_message, Limits};
use spectra_ingest::load::{mapping, RowMapper};

const RETAIL_HEADERS: &[&str] = &[
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
];

fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,6}",
        "-?[0-9]{1,4}\\.[0-9]{1,3}",
        Just("2011-12-09 12:50".to_owned()),
        Just("2026-11-20".to_owned()),
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("1e308".to_owned()),
        Just(String::new()),
        "\\PC{0,12}",
        "[\\x00-\\x1f]{1,2}",
        Just("=HYPERLINK(\"http://x\",\"y\")".to_owned()),
    ]
}

fn limits() -> Limits {
    let cfg = IngestConfig {
        max_age_days: 365 * 40,
        ..IngestConfig::default()
    };
    Limits::new(&cfg, NaiveDate::from_ymd_opt(2026, 11, 29).unwrap())
}

/// Cases per property: `PROPTEST_CASES`, else a brief run for CI.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(500)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn online_retail_rows_map_or_are_rejected(rows in prop::collection::vec(
        prop::collection::vec(cell(), RETAIL_HEADERS.len()), 1..8)
    ) {
        let headers = csv::StringRecord::from(RETAIL_HEADERS.to_vec());
        let maps = mapping(Some("online-retail"), &[]).unwrap();
        let mut m = RowMapper::new(&headers, &maps).unwrap();
        let limits = limits();
        for row in rows {
            let Ok(mapped) = m.map(&csv::StringRecord::from(row)) else { continue };
            let payload = serde_json::to_vec(&mapped.record).unwrap();
            if let Ok(lines) = parse_invoice_message(Some(&payload), &limits) {
                prop_assert_eq!(lines.len(), 1);
                prop_assert!(lines[0].line_no >= 1);
                prop_assert!(lines[0].net_value.is_finite());
            }
        }
    }

    #[test]
    fn line_numbers_are_whole_or_rejected(raw in prop_oneof![
        "[0-9]{1,5}", "[0-9]{1,3}\\.[0-9]{1,2}", "-[0-9]{1,3}", "\\PC{0,6}"
    ]) {
        let headers = csv::StringRecord::from(vec!["inv", "line", "day", "shop", "item", "qty", "value"]);
        let flags: Vec<String> = [
            "distributor_id==D1", "invoice_id=inv", "line_no=line", "invoice_date=day",
            "outlet_id=shop", "sku_id=item", "quantity=qty", "net_value=value",
        ].iter().map(|s| s.to_string()).collect();
        let maps = mapping(None, &flags).unwrap();
        let mut m = RowMapper::new(&headers, &maps).unwrap();
        let row = csv::StringRecord::from(vec!["I1", raw.as_str(), "2026-11-20", "O1", "S1", "1", "2.5"]);
        match m.map(&row) {
            Ok(mapped) => {
                let n = mapped.record["line_no"].as_i64().expect("an integer line_no");
                let x: f64 = raw.trim().parse().expect("accepted only when numeric");
                prop_assert_eq!(n as f64, x, "line_no {} read as {}", raw, n);
            }
            Err(reason) => {
                let numeric_whole = raw.trim().parse::<f64>().is_ok_and(|x| x.fract() == 0.0 && x >= 0.0);
                prop_assert!(!numeric_whole || raw.trim().is_empty(), "{} rejected: {}", raw, reason);
                prop_assert!(reason.contains("line_no"), "{}", reason);
            }
        }
    }
}
