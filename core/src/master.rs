//! Master data (contract §2.2 outlets, §2.3 SKUs): parsing and validation.
//!
//! Both topics are compacted and keyed by id; a null value is a tombstone (the outlet
//! or SKU was removed), whose id comes from the message key.

use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::message::{
    identifier_in_json, identifier_text, json_kind, number_kind, Reason, Rejection,
};

/// An outlet master record, or its removal.
#[derive(Debug, Clone, PartialEq)]
pub struct Outlet {
    /// The outlet id.
    pub outlet_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Channel (traditional, modern, horeca…).
    pub channel: Option<String>,
    /// Free-form attributes as a JSON object text (strings or numbers).
    pub attributes: Option<String>,
    /// True for a tombstone: the outlet was removed.
    pub deleted: bool,
}

/// A SKU master record, or its removal.
#[derive(Debug, Clone, PartialEq)]
pub struct Sku {
    /// The SKU id.
    pub sku_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Subcategory.
    pub subcategory: Option<String>,
    /// Brand.
    pub brand: Option<String>,
    /// Free-form attributes as a JSON object text (strings or numbers).
    pub attributes: Option<String>,
    /// True for a tombstone: the SKU was removed.
    pub deleted: bool,
}

/// A record's fields, and the message text they were read from.
type Record<'a> = (Map<String, Value>, &'a str);

/// The record's JSON object (`id`: its id field's name), or `None` for a removal.
fn object<'a>(value: Option<&'a [u8]>, id: &str) -> Result<Option<Record<'a>>, Rejection> {
    let Some(bytes) = value else { return Ok(None) };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Rejection::new(
            Reason::NotUtf8,
            format!(
                "the message is not UTF-8 text (invalid byte at position {})",
                e.valid_up_to()
            ),
        )
    })?;
    if text.trim().is_empty() {
        return Err(Rejection::new(
            Reason::Empty,
            "the message is empty; send a JSON object, or a null value to remove the record",
        ));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(Some((m, text))),
        Ok(Value::Null) => Ok(None),
        Ok(other) => Err(Rejection::new(
            Reason::NotObject,
            format!(
                "the message is not a JSON object (it is {})",
                json_kind(&other)
            ),
        )),
        // Valid JSON that `Value` cannot hold: a number past `f64` (`1e999`, 310 digits
        // and more). Named by its field, as an invoice's would be.
        Err(e) => Err(match out_of_range(text) {
            Some((field, raw)) if field == id => match identifier_in_json(raw, id) {
                Err(rejection) => rejection,
                Ok(_) => out_of_range_rejection(&field),
            },
            Some((field, _)) => out_of_range_rejection(&field),
            None => Rejection::new(
                Reason::NotJson,
                format!("the message is not valid JSON: {e}"),
            ),
        }),
    }
}

/// The field of a JSON object text (`a.b` for one inside another object) whose value
/// `Value` cannot read, with that value's text; `None` when the text is no object or
/// every field reads.
fn out_of_range(text: &str) -> Option<(String, &str)> {
    let fields: HashMap<String, &RawValue> = serde_json::from_str(text).ok()?;
    let mut fields: Vec<(String, &RawValue)> = fields.into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields.into_iter().find_map(|(name, raw)| {
        serde_json::from_str::<Value>(raw.get())
            .is_err()
            .then(|| match out_of_range(raw.get()) {
                Some((inner, value)) => (format!("{name}.{inner}"), value),
                None => (name, raw.get()),
            })
    })
}

fn out_of_range_rejection(field: &str) -> Rejection {
    Rejection::new(
        Reason::BadNumber,
        format!("{field} is {}", number_kind(f64::INFINITY)),
    )
}

fn key_id(key: Option<&[u8]>, name: &str) -> Result<String, Rejection> {
    let k = key
        .and_then(|k| std::str::from_utf8(k).ok())
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            Rejection::new(
                Reason::BadIdentifier,
                format!(
                "a null value (removal) needs the {name} as the message key, and the key is missing"
            ),
            )
        })?;
    identifier_text(&Value::String(k.to_owned()), name)
}

/// `id` (the record's own `name`) when it is the message key, or there is none. The
/// topic is compacted by key: a record under another outlet's or SKU's key would be
/// stored as its own id here, and replaced, kept or removed by the other's messages
/// wherever the topic is read again from its compacted log.
fn keyed(id: String, key: Option<&[u8]>, name: &str) -> Result<String, Rejection> {
    let Some(key) = key.filter(|k| !k.iter().all(u8::is_ascii_whitespace)) else {
        return Ok(id);
    };
    let same = std::str::from_utf8(key)
        .ok()
        .and_then(|k| identifier_text(&Value::String(k.to_owned()), name).ok())
        .is_some_and(|k| k == id);
    match same {
        true => Ok(id),
        false => Err(Rejection::new(
            Reason::BadIdentifier,
            format!(
                "{name} {id:?} is not the message key {:?}: the topic is compacted by key, so a record must be keyed by its own {name}",
                String::from_utf8_lossy(key)
            ),
        )),
    }
}

fn text(m: &Map<String, Value>, name: &str) -> Result<Option<String>, Rejection> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > 1024 => Err(Rejection::new(
            Reason::BadField,
            format!("{name} is longer than 1024 characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(Rejection::new(
            Reason::BadField,
            format!("{name} is {}; expected a string", json_kind(other)),
        )),
    }
}

/// Most attribute keys one outlet or SKU record may carry.
pub const MAX_ATTRIBUTES: usize = 64;

fn attributes(m: &Map<String, Value>) -> Result<Option<String>, Rejection> {
    match m.get("attributes") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(a)) => {
            // Each attribute key becomes a column of segmentation filters and a mix of
            // the profiles: bounded, so one record cannot add thousands.
            if a.len() > MAX_ATTRIBUTES {
                return Err(Rejection::new(
                    Reason::BadField,
                    format!(
                        "attributes has {} keys; a record may carry at most {MAX_ATTRIBUTES}",
                        a.len()
                    ),
                ));
            }
            for (k, v) in a {
                if k.is_empty() || k.chars().count() > 64 || k.chars().any(char::is_control) {
                    return Err(Rejection::new(
                        Reason::BadField,
                        format!(
                            "attributes has the key {:?}; keys are 1–64 printable characters",
                            k.chars().take(70).collect::<String>()
                        ),
                    ));
                }
                if matches!(v, Value::String(s) if s.chars().count() > 1024) {
                    return Err(Rejection::new(
                        Reason::BadField,
                        format!("attributes.{k} is longer than 1024 characters"),
                    ));
                }
                if !matches!(v, Value::String(_) | Value::Number(_) | Value::Null) {
                    return Err(Rejection::new(
                        Reason::BadField,
                        format!(
                            "attributes.{k} is {}; attributes are strings or numbers",
                            json_kind(v)
                        ),
                    ));
                }
            }
            Ok(Some(Value::Object(a.clone()).to_string()))
        }
        Some(other) => Err(Rejection::new(
            Reason::BadField,
            format!(
                "attributes is {}; expected an object of strings or numbers",
                json_kind(other)
            ),
        )),
    }
}

/// The record's `name` as an identifier. An integer too long for 64 bits is read
/// again from the message `text` as the digits sent: `Value` holds it as an `f64`.
fn required_id(m: &Map<String, Value>, text: &str, name: &str) -> Result<String, Rejection> {
    match m.get(name) {
        None => Err(Rejection::new(
            Reason::MissingField,
            format!("{name} is missing; it is required"),
        )),
        Some(Value::Number(n)) if n.is_f64() => {
            let fields = serde_json::from_str::<HashMap<String, &RawValue>>(text).ok();
            match fields.as_ref().and_then(|f| f.get(name).copied()) {
                Some(raw) => identifier_in_json(raw.get(), name),
                None => identifier_text(&Value::Number(n.clone()), name),
            }
        }
        Some(v) => identifier_text(v, name),
    }
}

/// Parses a message of the outlets topic.
pub fn parse_outlet(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Outlet, Rejection> {
    let Some((m, json)) = object(value, "outlet_id")? else {
        return Ok(Outlet {
            outlet_id: key_id(key, "outlet_id")?,
            name: None,
            region: None,
            channel: None,
            attributes: None,
            deleted: true,
        });
    };
    Ok(Outlet {
        outlet_id: keyed(required_id(&m, json, "outlet_id")?, key, "outlet_id")?,
        name: text(&m, "name")?,
        region: text(&m, "region")?,
        channel: text(&m, "channel")?,
        attributes: attributes(&m)?,
        deleted: false,
    })
}

/// Parses a message of the SKUs topic.
pub fn parse_sku(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Sku, Rejection> {
    let Some((m, json)) = object(value, "sku_id")? else {
        return Ok(Sku {
            sku_id: key_id(key, "sku_id")?,
            name: None,
            category: None,
            subcategory: None,
            brand: None,
            attributes: None,
            deleted: true,
        });
    };
    Ok(Sku {
        sku_id: keyed(required_id(&m, json, "sku_id")?, key, "sku_id")?,
        name: text(&m, "name")?,
        category: text(&m, "category")?,
        subcategory: text(&m, "subcategory")?,
        brand: text(&m, "brand")?,
        attributes: attributes(&m)?,
        deleted: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlet_round_trip_and_tombstone() {
        let o = parse_outlet(
            Some(b"PL-1"),
            Some(br#"{"outlet_id":"PL-1","name":"Sklep","region":"Ma\u0142opolska","attributes":{"size":"M","floor":120}}"#),
        )
        .unwrap();
        assert_eq!(o.region.as_deref(), Some("Małopolska"));
        assert!(o.attributes.unwrap().contains("\"floor\":120"));
        let t = parse_outlet(Some(b"PL-1"), None).unwrap();
        assert!(t.deleted);
        assert_eq!(t.outlet_id, "PL-1");
        assert!(parse_outlet(None, None).unwrap_err().text.contains("key"));
    }

    #[test]
    fn bad_master_records_name_the_field() {
        let e = parse_sku(None, Some(br#"{"name":"x"}"#)).unwrap_err();
        assert!(e.text.contains("sku_id is missing"), "{e}");
        let e = parse_sku(None, Some(br#"{"sku_id":"A","attributes":{"pack":[1]}}"#)).unwrap_err();
        assert!(e.text.contains("attributes.pack"), "{e}");
        let e = parse_outlet(None, Some(br#"{"outlet_id":1.5}"#)).unwrap_err();
        assert!(e.text.contains("outlet_id"), "{e}");
        let s = parse_sku(None, Some(br#"{"sku_id":5901234123457,"brand":"Aroma"}"#)).unwrap();
        assert_eq!(s.sku_id, "5901234123457");
        // Keyed by its id (as text, the integer's decimal text) or not keyed: kept.
        let s = parse_sku(Some(b"5901234123457"), Some(br#"{"sku_id":5901234123457}"#)).unwrap();
        assert_eq!(s.sku_id, "5901234123457");
        // An integer past 64 bits keeps its digits (an `f64` would round them).
        let long = "123456789012345678901234567890";
        let o = parse_outlet(
            Some(long.as_bytes()),
            Some(format!(r#"{{"outlet_id":{long}}}"#).as_bytes()),
        )
        .unwrap();
        assert_eq!(o.outlet_id, long);
        let e = parse_outlet(
            None,
            Some(format!(r#"{{"outlet_id":{}}}"#, "9".repeat(300)).as_bytes()),
        )
        .unwrap_err();
        assert!(
            e.text.contains("outlet_id is an integer of 300 characters"),
            "{e}"
        );
        let e = parse_sku(None, Some(br#"{"sku_id":1e30}"#)).unwrap_err();
        assert!(e.text.contains("sku_id"), "{e}");
        // Past `f64`, the field is named (the whole message was "not valid JSON").
        let e = parse_outlet(
            None,
            Some(format!(r#"{{"name":"x","outlet_id":{}}}"#, "9".repeat(400)).as_bytes()),
        )
        .unwrap_err();
        assert!(
            e.text
                .starts_with("outlet_id is an integer of 400 characters;"),
            "{e}"
        );
        let e = parse_outlet(None, Some(br#"{"outlet_id":1e999}"#)).unwrap_err();
        assert!(
            e.text.starts_with("outlet_id is a number beyond the range"),
            "{e}"
        );
        let e = parse_sku(
            None,
            Some(br#"{"sku_id":"A","attributes":{"pack":1,"weight":-1e400}}"#),
        )
        .unwrap_err();
        assert_eq!(
            e.text,
            "attributes.weight is a number beyond the range of a 64-bit float"
        );
        let e = parse_outlet(None, Some(br#"{"outlet_id":"A","region":2e308}"#)).unwrap_err();
        assert_eq!(e.reason, Reason::BadNumber);
        assert!(e.text.starts_with("region is a number beyond"), "{e}");
        let e = parse_outlet(None, Some(br#"{"outlet_id":"A","region":2e308"#)).unwrap_err();
        assert!(e.text.starts_with("the message is not valid JSON"), "{e}");
    }

    /// A record under another record's key is rejected, naming the id and the key.
    #[test]
    fn a_record_keyed_by_another_id_is_rejected() {
        let e = parse_outlet(Some(b"PL-1"), Some(br#"{"outlet_id":"PL-2"}"#)).unwrap_err();
        assert!(
            e.text
                .starts_with("outlet_id \"PL-2\" is not the message key \"PL-1\""),
            "{e}"
        );
        let e = parse_sku(Some(b"A"), Some(br#"{"sku_id":"B","name":"x"}"#)).unwrap_err();
        assert!(e.text.starts_with("sku_id \"B\""), "{e}");
        assert!(parse_sku(Some(b"\xff"), Some(br#"{"sku_id":"B"}"#)).is_err());
        assert!(parse_outlet(Some(b" "), Some(br#"{"outlet_id":"PL-2"}"#)).is_ok());
    }
}
