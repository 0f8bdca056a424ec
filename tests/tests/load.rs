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
    let out = setup.load_retail(&file, &["--rejects", rejects.to_str().unwrap()]);
    let summary: serde_json::Value = serde_json::from_slice(&out).unwrap();
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

/// The first rows of the Online Retail file as the UCI original ships it — an XLSX
/// workbook with numbers as numbers (CustomerID, numeric StockCodes, Quantity,
/// UnitPrice) and InvoiceDate as a date cell — load with the same preset as the CSV, and
/// ingest stores exactly the customers' totals the CSV rows give; an attribute mapped
/// from a column lands in the derived outlets' `attributes`, a number as a number.
#[test]
fn an_online_retail_workbook_loads_like_the_csv_with_attributes() {
    const ROWS: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path()).accepting_history();
    let text = online_retail_text();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let records: Vec<csv::StringRecord> = reader.records().take(ROWS).map(Result::unwrap).collect();

    // The workbook.
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("Online Retail").unwrap();
    let date = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd hh:mm");
    for (c, h) in headers.iter().enumerate() {
        ws.write_string(0, c as u16, h).unwrap();
    }
    for (i, r) in records.iter().enumerate() {
        let row = i as u32 + 1;
        for (c, v) in r.iter().enumerate() {
            let c = c as u16;
            match headers[c as usize].as_ref() {
                "InvoiceDate" => {
                    let t = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S").unwrap();
                    let d = rust_xlsxwriter::ExcelDateTime::parse_from_str(
                        &t.format("%Y-%m-%dT%H:%M:%S").to_string(),
                    )
                    .unwrap();
                    ws.write_datetime_with_format(row, c, &d, &date).unwrap();
                }
                _ if v.is_empty() => {}
                _ => match v.parse::<f64>() {
                    Ok(x) if x.is_finite() => {
                        ws.write_number(row, c, x).unwrap();
                    }
                    _ => {
                        ws.write_string(row, c, v).unwrap();
                    }
                },
            }
        }
    }
    let file = dir.path().join("online_retail.xlsx");
    wb.save(&file).unwrap();

    let out = setup
        .command(
            "load",
            &[
                "--preset",
                "online-retail",
                "--derive-master",
                "--map",
                "outlet.attributes.first_stock_code=StockCode",
                "--map",
                "outlet.attributes.country=Country",
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
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (customer, qty, price) = (col("CustomerID"), col("Quantity"), col("UnitPrice"));
    let mut totals: HashMap<String, f64> = HashMap::new();
    let mut no_customer = 0;
    for r in &records {
        if r[customer].is_empty() {
            no_customer += 1;
            continue;
        }
        *totals.entry(r[customer].to_owned()).or_default() +=
            r[qty].parse::<f64>().unwrap() * r[price].parse::<f64>().unwrap();
    }
    assert!(no_customer > 0, "the sample has rows without a customer");
    assert_eq!(summary["sent"], ROWS - no_customer, "{summary}");
    assert_eq!(
        summary["rejected"]["empty_outlet_id"], no_customer,
        "{summary}"
    );

    setup.ingest_once(&[]);
    let mut stored: HashMap<String, f64> = HashMap::new();
    let mut dates = std::collections::BTreeSet::new();
    for b in read_parquet_dir(&dir.path().join("raw/invoices")) {
        let o = b.column_by_name("outlet_id").unwrap().as_string::<i32>();
        let v = b
            .column_by_name("net_value")
            .unwrap()
            .as_primitive::<Float64Type>();
        let d = b.column_by_name("invoice_date").unwrap();
        let d = arrow::compute::cast(d, &arrow::datatypes::DataType::Utf8).unwrap();
        let d = d.as_string::<i32>();
        for i in 0..b.num_rows() {
            *stored.entry(o.value(i).to_owned()).or_insert(0.0) += v.value(i);
            dates.insert(d.value(i).to_owned());
        }
    }
    // Customer ids as the CSV writes them ("17850", never "17850.0"), every total equal.
    assert_eq!(
        stored.keys().collect::<std::collections::BTreeSet<_>>(),
        totals.keys().collect()
    );
    for (c, v) in &totals {
        let s = stored[c];
        assert!(
            (s - v).abs() < 1e-6 * v.abs().max(1.0),
            "customer {c}: stored {s}, rows {v}"
        );
    }
    // Invoice dates from date cells: the CSV's date parts.
    let date_col = col("InvoiceDate");
    let expected: std::collections::BTreeSet<String> = records
        .iter()
        .filter(|r| !r[customer].is_empty())
        .map(|r| r[date_col][..10].to_owned())
        .collect();
    assert_eq!(dates, expected);

    // The derived outlets carry the mapped attributes: text stays text, a numeric
    // StockCode (a number cell) is a number.
    let mut attributes: HashMap<String, serde_json::Value> = HashMap::new();
    for b in read_parquet_dir(&dir.path().join("master/outlets")) {
        let o = b.column_by_name("outlet_id").unwrap().as_string::<i32>();
        let a = b.column_by_name("attributes").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            attributes.insert(
                o.value(i).to_owned(),
                serde_json::from_str(a.value(i)).unwrap(),
            );
        }
    }
    let first = records.iter().find(|r| r[customer] == *"17850").unwrap();
    assert_eq!(
        attributes["17850"],
        serde_json::json!({"country": "United Kingdom", "first_stock_code": first[col("StockCode")]}),
        "85123A stays text"
    );
    let mut first_rows: Vec<&csv::StringRecord> = Vec::new();
    for r in records.iter().filter(|r| !r[customer].is_empty()) {
        if !first_rows.iter().any(|f| f[customer] == r[customer]) {
            first_rows.push(r);
        }
    }
    let numeric = first_rows
        .iter()
        .find(|r| r[col("StockCode")].parse::<u64>().is_ok())
        .expect("a customer whose first line has a numeric StockCode");
    assert_eq!(
        attributes[&numeric[customer]]["first_stock_code"],
        serde_json::json!(numeric[col("StockCode")].parse::<f64>().unwrap()),
        "{:?}",
        numeric
    );

    // A mapping to a field a message has no place for is refused before anything is sent.
    let out = setup
        .command(
            "load",
            &[
                "--kind",
                "outlets",
                "--map",
                "outlet_id=CustomerID",
                "--map",
                "size=Country",
                "--no-progress",
                file.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mapping names field `size`") && err.contains("attributes.NAME"),
        "{err}"
    );
}
