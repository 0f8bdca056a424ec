//! Parsing and validation of invoice messages: the contract samples, every rejection
//! naming its field, and the bounds of `Limits`.

use super::*;

#[derive(serde::Deserialize)]
struct Case {
    value: String,
    verdict: String,
    lines: usize,
    why: String,
}

/// Every worked example of the contract gets its verdict.
#[test]
fn contract_samples() {
    let text = include_str!("../../tests/data/contract-invoices.jsonl");
    let mut n = 0;
    for l in text.lines() {
        let case: Case = serde_json::from_str(l).unwrap();
        let got = parse_invoice_message(Some(case.value.as_bytes()), &Limits::unbounded());
        match case.verdict.as_str() {
            "accept" => {
                let lines = got.unwrap_or_else(|e| panic!("{}: rejected: {e}", case.why));
                assert_eq!(lines.len(), case.lines, "{}", case.why);
            }
            _ => {
                let err = got.expect_err(&case.why);
                assert!(!err.text.is_empty());
            }
        }
        n += 1;
    }
    assert_eq!(n, 20);
}

#[test]
fn rejections_name_the_field() {
    let cases = [
        (
            r#"{"distributor_id":"D","invoice_id":"I","line_no":1,"invoice_date":"2026-11-20","sku_id":"S","quantity":1,"net_value":1}"#,
            "outlet_id is missing",
        ),
        (
            r#"{"distributor_id":"D","invoice_id":"I","line_no":-1,"invoice_date":"2026-11-20","outlet_id":"O","sku_id":"S","quantity":1,"net_value":1}"#,
            "line_no is -1",
        ),
        (
            r#"{"distributor_id":"D","invoice_id":"I","line_no":1.5,"invoice_date":"2026-11-20","outlet_id":"O","sku_id":"S","quantity":1,"net_value":1}"#,
            "line_no is 1.5",
        ),
        (
            r#"{"distributor_id":"D","invoice_id":"I","line_no":1,"invoice_date":"2026-02-30","outlet_id":"O","sku_id":"S","quantity":1,"net_value":1}"#,
            "invoice_date \"2026-02-30\"",
        ),
        (
            r#"{"distributor_id":"D","invoice_id":"I","line_no":1,"invoice_date":"2026-11-20","outlet_id":"O","sku_id":"S","quantity":null,"net_value":1}"#,
            "quantity is null",
        ),
        (
            r#"{"distributor_id":"D","invoice_id":"I","line_no":1,"invoice_date":"2026-11-20","outlet_id":"O","sku_id":"S","quantity":1,"net_value":"45.6"}"#,
            "net_value is a string",
        ),
        (
            r#"{"distributor_id":"D","invoice_id":"I","invoice_date":"2026-11-20","outlet_id":"O","lines":[{"line_no":1,"sku_id":"A","quantity":1,"net_value":2},{"line_no":2,"sku_id":"B","quantity":"three","net_value":9}]}"#,
            "lines[1].quantity is a string",
        ),
        (
            r#"{"distributor_id":"D","invoice_id":"I","invoice_date":"2026-11-20","outlet_id":"O","lines":[]}"#,
            "`lines` is an empty array",
        ),
        (
            r#"{"distributor_id":"D","invoice_id":"I","invoice_date":"2026-11-20","outlet_id":"O","lines":[1]}"#,
            "lines[0] is a number",
        ),
        (
            r#"{"distributor_id":"D","invoice_id":"I","invoice_date":"2026-11-20","outlet_id":"O","lines":"x"}"#,
            "`lines` is a string",
        ),
        (
            r#"{"distributor_id":true,"invoice_id":"I","line_no":1,"invoice_date":"2026-11-20","outlet_id":"O","sku_id":"S","quantity":1,"net_value":1}"#,
            "distributor_id is a boolean",
        ),
        (
            r#"{"distributor_id":"D","invoice_id":"I","line_no":1,"invoice_date":"0999-01-01","outlet_id":"O","sku_id":"S","quantity":1,"net_value":1}"#,
            "outside the accepted years",
        ),
        (
            r#"{"distributor_id":"D","invoice_id":"I","line_no":1,"invoice_date":"2026-11-20","outlet_id":"O","sku_id":"S","quantity":1,"net_value":1e999}"#,
            "net_value is not a finite number",
        ),
        ("[1,2]", "not a JSON object"),
        ("\"x\"", "not a JSON object"),
        ("{\"a\":", "not valid JSON"),
        ("   ", "empty"),
    ];
    for (msg, want) in cases {
        let err = parse_invoice_message(Some(msg.as_bytes()), &Limits::unbounded()).expect_err(msg);
        assert!(err.text.contains(want), "{msg}: got `{err}`, want `{want}`");
    }
    let err = parse_invoice_message(Some(&[0xff, 0xfe, b'{']), &Limits::unbounded()).unwrap_err();
    assert!(err.text.contains("not UTF-8"));
    assert!(parse_invoice_message(None, &Limits::unbounded())
        .unwrap_err()
        .text
        .contains("null"));
    let long = format!(
        r#"{{"distributor_id":"D","invoice_id":"I","line_no":1,"invoice_date":"2026-11-20","outlet_id":"O","sku_id":"{}","quantity":1,"net_value":1}}"#,
        "x".repeat(100_000)
    );
    let err = parse_invoice_message(Some(long.as_bytes()), &Limits::unbounded()).unwrap_err();
    assert!(err.text.contains("sku_id is 100000 characters"), "{err}");
}

fn limits_on(today: &str) -> Limits {
    Limits::new(
        &crate::config::IngestConfig::default(),
        NaiveDate::parse_from_str(today, "%Y-%m-%d").unwrap(),
    )
}

fn line_with(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(
        r#"{"distributor_id":"D","invoice_id":"I","line_no":1,"invoice_date":"2026-11-20","outlet_id":"O","sku_id":"S","quantity":1,"net_value":1}"#,
    )
    .unwrap();
    v[field] = serde_json::from_str(value).unwrap();
    v.to_string()
}

/// Every bound of the ingest configuration rejects with a reason naming the field.
#[test]
fn hostile_lines_are_rejected_naming_the_field() {
    let limits = limits_on("2026-11-29");
    let accept = |m: &str| {
        parse_invoice_message(Some(m.as_bytes()), &limits)
            .unwrap_or_else(|e| panic!("{m}: {e}"))
            .len()
    };
    let reject = |m: &str, reason: Reason, want: &str| {
        let e = parse_invoice_message(Some(m.as_bytes()), &limits).expect_err(m);
        assert_eq!(e.reason, reason, "{m}: {e}");
        assert!(e.text.contains(want), "{m}: got `{e}`, want `{want}`");
    };
    // Dates: seven days ahead and ten years back are the defaults.
    accept(&line_with("invoice_date", r#""2026-12-06""#));
    reject(
        &line_with("invoice_date", r#""2026-12-07""#),
        Reason::DateOutOfRange,
        "invoice_date 2026-12-07 is in the future",
    );
    reject(
        &line_with("invoice_date", r#""2199-12-31""#),
        Reason::DateOutOfRange,
        "ingest.max_future_days",
    );
    // 3653 days: ten years and a day, whatever the leap years.
    accept(&line_with("invoice_date", r#""2016-11-28""#));
    reject(
        &line_with("invoice_date", r#""2016-11-27""#),
        Reason::DateOutOfRange,
        "invoice_date 2016-11-27 is too old",
    );
    // Values.
    accept(&line_with("net_value", "-1e12"));
    reject(
        &line_with("net_value", "1.7e308"),
        Reason::ValueOutOfRange,
        "net_value is 1.7e308",
    );
    reject(
        &line_with("quantity", "-2e9"),
        Reason::ValueOutOfRange,
        "quantity is -2e9",
    );
    // Identifiers with control characters.
    reject(
        &line_with("outlet_id", r#""PL\u0000-1""#),
        Reason::BadIdentifier,
        "outlet_id holds the control character U+0000 at position 2",
    );
    reject(
        &line_with("sku_id", r#""A\nB""#),
        Reason::BadIdentifier,
        "sku_id holds the control character U+000A",
    );
    // Invisible characters: an id that looks like another one.
    reject(
        &line_with("outlet_id", r#""PL-1\u200b""#),
        Reason::BadIdentifier,
        "outlet_id holds the invisible character U+200B at position 4",
    );
    reject(
        &line_with("sku_id", "\"\u{feff}SKU-9\""),
        Reason::BadIdentifier,
        "sku_id holds the invisible character U+FEFF at position 0",
    );
    reject(
        &line_with("outlet_id", r#""PL\u202e1-""#),
        Reason::BadIdentifier,
        "outlet_id holds the invisible character U+202E",
    );
    // Escaped in the JSON (read by serde_json rather than the scanner).
    reject(
        r#"{"distributor_id":"D","invoice_id":"I","line_no":1,"invoice_date":"2026-11-20","outlet_id":"PL-1\u2066","sku_id":"S","quantity":1,"net_value":1}"#,
        Reason::BadIdentifier,
        "outlet_id holds the invisible character U+2066 at position 4",
    );
    accept(&line_with("outlet_id", r#""Łódź-Śródmieście 7""#));
    // The zero-width non-joiner and joiner belong to spellings (Persian, Sinhala).
    accept(&line_with("outlet_id", "\"می\u{200c}خواهم\""));
    accept(&line_with("outlet_id", "\"ශ්\u{200d}රී\""));
    reject(
        &line_with("currency", r#""PL\u001bN""#),
        Reason::BadCurrency,
        "currency holds a control character",
    );
    // A whole invoice repeating an identity, and one carrying too many lines.
    let invoice = |lines: &str| {
        format!(
            r#"{{"distributor_id":"D","invoice_id":"I","invoice_date":"2026-11-20","outlet_id":"O","lines":[{lines}]}}"#
        )
    };
    let l = |n: i64| format!(r#"{{"line_no":{n},"sku_id":"A","quantity":1,"net_value":2}}"#);
    reject(
        &invoice(&[l(1), l(2), l(1)].join(",")),
        Reason::DuplicateLine,
        "lines[2].line_no 1 repeats lines[0]",
    );
    // The first repeat is named, whether the lines are compared pairwise (up to 16)
    // or through a table (more).
    reject(
        &invoice(&[l(1), l(2), l(2), l(1)].join(",")),
        Reason::DuplicateLine,
        "lines[2].line_no 2 repeats lines[1]",
    );
    let long: Vec<String> = (0..20).chain([7, 3]).map(l).collect();
    reject(
        &invoice(&long.join(",")),
        Reason::DuplicateLine,
        "lines[20].line_no 7 repeats lines[7]",
    );
    assert_eq!(accept(&invoice(&long[..20].join(","))), 20);
    // The same line_no under another invoice id is another identity.
    let other = r#"{"line_no":1,"invoice_id":"J","sku_id":"A","quantity":1,"net_value":2}"#;
    assert_eq!(accept(&invoice(&[l(1), other.into()].join(","))), 2);
    let many: Vec<String> = (0..10_001).map(l).collect();
    reject(
        &invoice(&many.join(",")),
        Reason::TooManyLines,
        "`lines` holds 10001 lines; a message may carry at most 10000",
    );
    let max: Vec<String> = (0..10_000).map(l).collect();
    assert_eq!(accept(&invoice(&max.join(","))), 10_000);
}

/// The class of a rejection comes from where it was raised, not from its words: a
/// quantity of "update" is a bad number, not a bad date.
#[test]
fn reasons_are_classes_not_substrings() {
    let e = parse_invoice_message(
        Some(line_with("quantity", r#""update""#).as_bytes()),
        &Limits::unbounded(),
    )
    .unwrap_err();
    assert_eq!(e.class(), "bad_number", "{e}");
}

#[test]
fn header_is_inherited_and_lines_may_override() {
    let msg = br#"{"distributor_id":"D","invoice_id":"I","invoice_date":"2026-11-20T23:59:00-05:00","outlet_id":7,"currency":"PLN",
        "lines":[{"line_no":1,"sku_id":"A","quantity":1,"net_value":2.5},{"line_no":2,"sku_id":"B","quantity":3,"net_value":9,"currency":"EUR"}]}"#;
    let lines = parse_invoice_message(Some(msg), &Limits::unbounded()).unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].outlet_id, "7");
    assert_eq!(
        lines[0].invoice_date,
        NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
    );
    assert_eq!(lines[0].currency.as_deref(), Some("PLN"));
    assert_eq!(lines[1].currency.as_deref(), Some("EUR"));
    assert_eq!(lines[1].net_value, 9.0);
}

/// A line's own `lines` is a member the contract does not know on a line: ignored,
/// whatever it holds, as any other unknown member is.
#[test]
fn a_lines_member_inside_a_line_is_ignored() {
    let plain = r#"{"distributor_id":"D","invoice_id":"I","invoice_date":"2026-11-20","outlet_id":"O","lines":[{"line_no":1,"sku_id":"A","quantity":1,"net_value":2.5},{"line_no":2,"sku_id":"B","quantity":1,"net_value":1}]}"#;
    let expected = parse_invoice_message(Some(plain.as_bytes()), &Limits::unbounded()).unwrap();
    assert_eq!(expected.len(), 2);
    let nested = [
        "[1]",
        "null",
        "{}",
        r#""x""#,
        "[]",
        r#"[{"line_no":"bad"}]"#,
        r#"[{"lines":[2]}]"#,
        r#"1,"lines":2"#,
    ];
    // The member among a line's others, first, and last, in either line.
    let places = [
        (r#""sku_id":"B","#, r#""sku_id":"B","lines":V,"#),
        (r#"{"line_no":1,"#, r#"{"lines":V,"line_no":1,"#),
        (r#""net_value":2.5}"#, r#""net_value":2.5,"lines":V}"#),
    ];
    for value in nested {
        for (from, to) in places {
            let msg = plain.replacen(from, &to.replace('V', value), 1);
            assert_ne!(msg, plain);
            let got = parse_invoice_message(Some(msg.as_bytes()), &Limits::unbounded())
                .unwrap_or_else(|e| panic!("{msg}: {e}"));
            assert_eq!(got, expected, "{msg}");
        }
    }
}

#[test]
fn escaped_strings_are_unescaped() {
    let msg = br#"{"distributor_id":"D\u0031","invoice_id":"FV\/1","line_no":0,"invoice_date":"2026-11-20","outlet_id":"O","sku_id":"S","quantity":1,"net_value":1}"#;
    let l = &parse_invoice_message(Some(msg), &Limits::unbounded()).unwrap()[0];
    assert_eq!(l.distributor_id, "D1");
    assert_eq!(l.invoice_id, "FV/1");
    assert_eq!(l.line_no, 0);
}

#[test]
fn dates_parse_strictly() {
    let d = |s| parse_date(s);
    assert_eq!(d("2026-11-20"), NaiveDate::from_ymd_opt(2026, 11, 20));
    assert_eq!(d("2024-02-29"), NaiveDate::from_ymd_opt(2024, 2, 29));
    assert_eq!(
        d("2026-11-20T23:30:00+01:00"),
        NaiveDate::from_ymd_opt(2026, 11, 20)
    );
    assert_eq!(
        d("2010-12-01 08:26:00"),
        NaiveDate::from_ymd_opt(2010, 12, 1)
    );
    // Every ISO 8601 time of day a date-time may carry: the date is the date part.
    for good in [
        "2026-11-20T14:03Z",
        "2026-11-20T14:03+01:00",
        "2026-11-20T14:03:07.125-05:30",
        "2026-11-20T14:03:07,5Z",
        "2026-11-20T140307Z",
        "2026-11-20T1403+0100",
        "2026-11-20T14",
        "2026-11-20t14:03:07z",
        "2026-11-20 14:03:07+01",
        "2026-11-20T23:59:60Z",
        "2026-11-20 8:26:00",
        "2026-11-20T8:26",
    ] {
        assert_eq!(d(good), NaiveDate::from_ymd_opt(2026, 11, 20), "{good}");
    }
    for bad in [
        "2026-02-29",
        "2026-13-01",
        "2026-1-01",
        "2026/11/20",
        "20261120",
        "2026-11-2x",
        "2026-11-20Tnope",
        "+026-11-20",
        "2026-11-20T",
        "2026-11-20T24:00",
        "2026-11-20T140",
        "2026-11-20T1403:07",
        "2026-11-20T14:03:07.",
        "2026-11-20T14:03+1",
        "2026-11-20T14:03+01:60",
        "2026-11-20T14:03Z+01:00",
        "2026-11-20T14:03:07:01",
        "2026-11-20X14:03",
    ] {
        assert_eq!(d(bad), None, "{bad}");
    }
}

#[test]
fn date32_round_trips() {
    let d = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    assert_eq!(days_to_date(date_to_days(d)), d);
    assert_eq!(
        date_to_days(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()),
        0
    );
}

/// With a base currency, values are converted at the rate in force on the invoice
/// date; the base and lines without a currency are taken as they are; a currency
/// without a rate that day rejects the whole invoice, naming the field.
#[test]
fn values_are_converted_into_the_base_currency_on_the_invoice_date() {
    let cfg: crate::config::IngestConfig = serde_json::from_value(serde_json::json!({
        "max_age_days": 3650,
        "currency": {"base": "PLN", "rates": [
            {"currency": "EUR", "from": "2026-01-01", "rate": 4.25},
            {"currency": "eur", "from": "2026-11-15", "rate": 4.5},
            {"currency": "USD", "from": "2026-11-20", "rate": 4.0},
        ]},
    }))
    .unwrap();
    let limits = Limits::new(&cfg, NaiveDate::from_ymd_opt(2026, 11, 29).unwrap());
    let value = |date: &str, currency: &str| -> Result<f64, Rejection> {
        let mut v: serde_json::Value =
            serde_json::from_str(&line_with("invoice_date", &format!("\"{date}\""))).unwrap();
        v["net_value"] = serde_json::json!(10.0);
        if !currency.is_empty() {
            v["currency"] = serde_json::json!(currency);
        }
        let m = v.to_string();
        parse_invoice_message(Some(m.as_bytes()), &limits).map(|l| l[0].net_value)
    };
    assert_eq!(value("2026-11-20", "PLN").unwrap(), 10.0);
    assert_eq!(
        value("2026-11-20", "").unwrap(),
        10.0,
        "no currency: the base"
    );
    assert_eq!(
        value("2026-11-14", "EUR").unwrap(),
        42.5,
        "the January rate"
    );
    assert_eq!(
        value("2026-11-15", "Eur").unwrap(),
        45.0,
        "from its first day"
    );
    assert_eq!(value("2026-11-20", "USD").unwrap(), 40.0);
    let e = value("2026-11-19", "USD").unwrap_err();
    assert_eq!(e.class(), "unknown_currency");
    assert!(
        e.text
            .contains("currency \"USD\" has no exchange rate into PLN on 2026-11-19"),
        "{e}"
    );
    let e = value("2026-11-20", "GBP").unwrap_err();
    assert!(e.text.contains("currency \"GBP\""), "{e}");
    // One line without a rate rejects its whole invoice.
    let msg = br#"{"distributor_id":"D","invoice_id":"I","invoice_date":"2026-11-20","outlet_id":"O","currency":"EUR",
        "lines":[{"line_no":1,"sku_id":"A","quantity":1,"net_value":2},{"line_no":2,"sku_id":"B","quantity":1,"net_value":2,"currency":"CHF"}]}"#;
    let e = parse_invoice_message(Some(msg), &limits).unwrap_err();
    assert!(e.text.contains("lines[1].currency \"CHF\""), "{e}");
    // Without a base, values are as sent.
    let m = line_with("currency", "\"EUR\"");
    assert_eq!(
        parse_invoice_message(Some(m.as_bytes()), &limits_on("2026-11-29")).unwrap()[0].net_value,
        1.0
    );
}

/// A Kafka timestamp may lie at most a day ahead of ingest's clock: on a fixed day,
/// a day after its end; now, a day after now.
#[test]
fn timestamps_ahead_of_the_clock_are_bounded() {
    let cfg = crate::config::IngestConfig::default();
    let limits = Limits::new(&cfg, NaiveDate::from_ymd_opt(2026, 11, 29).unwrap());
    let ms = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    };
    assert!(limits.check_timestamp(ms("2026-12-01T00:00:00Z")).is_ok());
    let e = limits
        .check_timestamp(ms("2026-12-01T00:00:00.001Z"))
        .unwrap_err();
    assert_eq!(e.class(), "future_timestamp");
    assert!(
        e.text.starts_with(
            "the message's Kafka timestamp 2026-12-01T00:00:00.001+00:00 is more than a day ahead"
        ),
        "{e}"
    );
    let now = Limits::today(&cfg);
    let at = chrono::Utc::now().timestamp_millis();
    assert!(now.check_timestamp(at + 23 * 3_600_000).is_ok());
    assert!(now.check_timestamp(at + 25 * 3_600_000).is_err());
    assert!(Limits::unbounded().check_timestamp(i64::MAX).is_ok());
}

/// An integer identifier longer than 64 bits is its digits as sent, on a line and on
/// a whole invoice; as a line number or a quantity it is out of range.
#[test]
fn long_integer_identifiers_keep_their_digits() {
    // Written as text: `serde_json::Value` would turn the long integers into floats.
    let line_text = |field: &str, value: &str| {
        let fields = [
            ("distributor_id", "\"D\""),
            ("invoice_id", "\"I\""),
            ("line_no", "1"),
            ("invoice_date", "\"2026-11-20\""),
            ("outlet_id", "\"O\""),
            ("sku_id", "\"S\""),
            ("quantity", "1"),
            ("net_value", "1"),
        ];
        let members: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("\"{k}\":{}", if *k == field { value } else { v }))
            .collect();
        format!("{{{}}}", members.join(","))
    };
    let limits = Limits::unbounded();
    let long = "123456789012345678901234567890";
    let m = line_text("outlet_id", long);
    let lines = parse_invoice_message(Some(m.as_bytes()), &limits).unwrap();
    assert_eq!(lines[0].outlet_id, long);
    let negative = format!("-{long}");
    let m = line_text("sku_id", &negative);
    let lines = parse_invoice_message(Some(m.as_bytes()), &limits).unwrap();
    assert_eq!(lines[0].sku_id, negative);
    let m = format!(
        r#"{{"distributor_id":"D","invoice_id":{long},"invoice_date":"2026-11-20","outlet_id":"O","lines":[{{"line_no":1,"sku_id":{long}0,"quantity":1,"net_value":1}}]}}"#
    );
    let lines = parse_invoice_message(Some(m.as_bytes()), &limits).unwrap();
    assert_eq!(lines[0].invoice_id, long);
    assert_eq!(lines[0].sku_id, format!("{long}0"));
    let reject = |field: &str, value: &str, want: &str| {
        let m = line_text(field, value);
        let e = parse_invoice_message(Some(m.as_bytes()), &limits).unwrap_err();
        assert!(e.text.contains(want), "{field} {value}: {e}");
    };
    reject(
        "outlet_id",
        &"9".repeat(257),
        "outlet_id is an integer of 257 characters",
    );
    let minus = format!("-{}", "9".repeat(256));
    reject(
        "outlet_id",
        &minus,
        "outlet_id is an integer of 257 characters",
    );
    // Past `f64` (310 digits and more), still an integer.
    let huge = "9".repeat(400);
    reject(
        "outlet_id",
        &huge,
        "outlet_id is an integer of 400 characters",
    );
    reject(
        "outlet_id",
        "1e999",
        "outlet_id is a number beyond the range",
    );
    reject(
        "line_no",
        &negative,
        &format!("line_no {negative} is out of range"),
    );
    // A lone surrogate: serde_json's reason, at its place in the message.
    let m = line_text("outlet_id", "\"\\ud800\"");
    let e = parse_invoice_message(Some(m.as_bytes()), &limits).unwrap_err();
    let column: usize = e
        .text
        .split_once("hex escape at line 1 column ")
        .and_then(|(_, c)| c.parse().ok())
        .unwrap_or_else(|| panic!("{e}"));
    let at = m.find("\\ud800").unwrap();
    assert!(column > at, "{e}: the value starts at {at}");
    reject(
        "outlet_id",
        "1e30",
        "outlet_id is a number written with a decimal point or an exponent",
    );
    reject("outlet_id", "17.5", "outlet_id is a number with a fraction");
    reject("line_no", long, &format!("line_no {long} is out of range"));
    let limits = limits_on("2026-11-29");
    let m = line_text("quantity", long);
    let e = parse_invoice_message(Some(m.as_bytes()), &limits).unwrap_err();
    assert!(e.text.contains("quantity is 1.2345678901234568e29"), "{e}");
}
