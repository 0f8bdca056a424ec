//! A JSON value of an invoice message as far as validation needs to see it, read
//! through its own text so an integer past 64 bits keeps its digits.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::scan;

/// A JSON value as far as validation needs to see it.
#[derive(Debug, Default)]
pub(super) enum Field<'a> {
    #[default]
    Missing,
    Null,
    Str(Cow<'a, str>),
    Int(i128),
    /// An integer literal too long for 64 bits: its text, and the `f64` serde_json
    /// reads it as.
    Digits(&'a str, f64),
    Float(f64),
    Bool,
    Array,
    Object,
}

impl Field<'_> {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Field::Missing => "missing",
            Field::Null => "null",
            Field::Str(_) => "a string",
            Field::Int(_) | Field::Digits(..) | Field::Float(_) => "a number",
            Field::Bool => "a boolean",
            Field::Array => "an array",
            Field::Object => "an object",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Field::Bool)
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Field::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Field::Int(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Field::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Object)
            }
        }
        // Through the value's own text: serde_json hands an integer too long for 64
        // bits to a visitor as an `f64`, and an identifier needs its digits.
        let raw = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        if let Some(plain) = scan::plain_value(text) {
            return Ok(plain);
        }
        let field = match serde_json::Deserializer::from_str(text).deserialize_any(V) {
            Ok(field) => field,
            // A number past `f64` (`1e999`): valid JSON, not a finite number.
            Err(_) if text.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) => {
                Field::Float(if text.starts_with('-') {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                })
            }
            // What serde_json says of the value (a lone surrogate escape), without its
            // position in the value: serde_json adds the message's.
            Err(e) => {
                let what = e.to_string();
                let what = what
                    .rsplit_once(" at line ")
                    .map_or(what.as_str(), |(w, _)| w);
                return Err(de::Error::custom(what));
            }
        };
        Ok(match field {
            // serde_json reads `-0` as the float −0 too; it stays one. An integer past
            // `f64` (310 digits) is `±inf` beside its digits.
            Field::Float(x) if text != "-0" && is_integer_literal(text) => Field::Digits(text, x),
            other => other,
        })
    }
}

/// Whether `text` is a JSON integer: an optional minus and digits only.
fn is_integer_literal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}
