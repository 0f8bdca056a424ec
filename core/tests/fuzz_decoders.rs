//! Fuzzing the decoders of everything that arrives from outside: the invoice message
//! (contract §2.1) and the outlet and SKU master records (§2.2, §2.3).
//!
//! Two generators: arbitrary bytes (most are not JSON), and JSON trees shaped like
//! invoices whose fields are drawn from hostile values (huge and tiny numbers, control
//! characters, long strings, odd dates, repeated line numbers, nested junk). Whatever
//! comes in, decoding never panics, and what it accepts keeps every bound that the
//! tables downstream rely on.
//!
//! `PROPTEST_CASES` sets the number of cases (CI runs the default; the closing note of
//! the hostile-input work gives a ten-minute run).

use chrono::NaiveDate;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use spectra_core::config::IngestConfig;
use spectra_core::master::{parse_outlet, parse_sku};
use spectra_core::message::{parse_invoice_message, Limits, FIELDS, MAX_ID_CHARS};

fn limits() -> Limits {
    Limits::new(
        &IngestConfig::default(),
        NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
    )
}

/// Every accepted line keeps the bounds: identifiers printable and short, dates in the
/// window, values finite and bounded, identities unique within the message.
fn assert_bounded(value: &[u8], limits: &Limits) {
    let Ok(lines) = parse_invoice_message(Some(value), limits) else {
        return;
    };
    assert!(!lines.is_empty() && lines.len() <= limits.max_lines);
    let mut ids = std::collections::HashSet::new();
    for l in &lines {
        for id in [&l.distributor_id, &l.invoice_id, &l.outlet_id, &l.sku_id] {
            assert!(!id.trim().is_empty(), "empty id accepted");
            assert!(id.chars().count() <= MAX_ID_CHARS, "long id accepted");
            assert!(!id.chars().any(char::is_control), "control char accepted");
        }
        assert!(l.line_no >= 0);
        assert!(l.invoice_date >= limits.earliest && l.invoice_date <= limits.latest);
        assert!(l.quantity.is_finite() && l.quantity.abs() <= limits.max_abs_quantity);
        assert!(l.net_value.is_finite() && l.net_value.abs() <= limits.max_abs_net_value);
        assert!(
            ids.insert((l.distributor_id.clone(), l.invoice_id.clone(), l.line_no)),
            "a repeated identity was accepted"
        );
    }
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9/_-]{1,12}",
        Just(String::new()),
        Just(" ".into()),
        "\\PC{0,8}",
        "[\\x00-\\x1f\\x7f]{1,3}",
        "x{250,260}",
        Just("2026-11-20".into()),
        Just("2199-12-31".into()),
        Just("2026-02-30".into()),
        Just("1900-01-01".into()),
        Just("2026-11-20T23:59:59+14:00".into()),
        Just("<img src=x onerror=alert(1)>".into()),
        Just("=HYPERLINK(\"http://x\",\"y\")".into()),
    ]
}

fn hostile_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-1000i64..1000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |x| x.is_finite())
            .prop_map(Value::from),
        Just(json!(1.7e308)),
        Just(json!(-1.7e308)),
        Just(json!(5e-324)),
        Just(json!(0.5)),
    ]
}

fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        hostile_string().prop_map(Value::String),
        hostile_number(),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A plausible field value most of the time, a hostile one otherwise, or absent.
fn field_value(name: &'static str) -> impl Strategy<Value = Option<Value>> {
    let plausible: BoxedStrategy<Value> = match name {
        "line_no" => prop_oneof![(0i64..5).prop_map(Value::from), hostile_number()].boxed(),
        "invoice_date" => prop_oneof![
            (0i64..4000).prop_map(|d| {
                let date =
                    NaiveDate::from_ymd_opt(2016, 1, 1).unwrap() + chrono::Days::new(d as u64);
                Value::String(date.to_string())
            }),
            hostile_string().prop_map(Value::String),
        ]
        .boxed(),
        "quantity" | "net_value" => hostile_number().boxed(),
        _ => hostile_string().prop_map(Value::String).boxed(),
    };
    prop_oneof![
        6 => plausible.prop_map(Some),
        1 => hostile_value().prop_map(Some),
        1 => Just(None),
    ]
}

fn object_of(fields: Vec<(&'static str, Option<Value>)>) -> Map<String, Value> {
    fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect()
}

fn line_object() -> impl Strategy<Value = Map<String, Value>> {
    FIELDS
        .iter()
        .map(|f| field_value(f).prop_map(move |v| (*f, v)))
        .collect::<Vec<_>>()
        .prop_map(object_of)
}

/// A single line, or a whole invoice: a header and 1–6 lines (some repeating a
/// line_no, some overriding header fields), sometimes with junk in `lines`.
fn invoice_message() -> impl Strategy<Value = Value> {
    prop_oneof![
        line_object().prop_map(Value::Object),
        (
            line_object(),
            prop::collection::vec(line_object(), 1..6),
            prop::option::of(hostile_value())
        )
            .prop_map(|(header, lines, junk)| {
                let mut h = header;
                let mut lines: Vec<Value> = lines.into_iter().map(Value::Object).collect();
                if let Some(j) = junk {
                    lines.push(j);
                }
                h.insert("lines".into(), Value::Array(lines));
                Value::Object(h)
            }),
    ]
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
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let limits = limits();
        assert_bounded(&bytes, &limits);
        let _ = parse_outlet(Some(&bytes), Some(&bytes));
        let _ = parse_sku(None, Some(&bytes));
    }

    #[test]
    fn invoice_shaped_json_keeps_every_bound(msg in invoice_message()) {
        let text = msg.to_string();
        assert_bounded(text.as_bytes(), &limits());
    }

    #[test]
    fn master_shaped_json_never_panics(v in hostile_value(), id in hostile_string()) {
        let mut m = match v { Value::Object(m) => m, other => {
            let mut m = Map::new();
            m.insert("attributes".into(), other);
            m
        }};
        m.insert("outlet_id".into(), Value::String(id.clone()));
        m.insert("sku_id".into(), Value::String(id.clone()));
        let text = Value::Object(m).to_string();
        if let Ok(o) = parse_outlet(Some(id.as_bytes()), Some(text.as_bytes())) {
            prop_assert!(!o.outlet_id.chars().any(char::is_control));
            prop_assert!(o.outlet_id.chars().count() <= MAX_ID_CHARS);
        }
        if let Ok(s) = parse_sku(None, Some(text.as_bytes())) {
            prop_assert!(!s.sku_id.chars().any(char::is_control));
        }
    }
}
