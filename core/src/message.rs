//! Invoice messages (contract §2.1): parsing and validation.
//!
//! A message is either one invoice line or a whole invoice whose header fields its
//! lines inherit. Parsing borrows from the message bytes wherever the JSON allows, so
//! the ingest hot path allocates only for escaped strings. Every rejection names the
//! field and the problem in a sentence a person can act on.

use std::borrow::Cow;
use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

mod dates;
mod field;
mod limits;
mod rejection;
mod scan;
pub use dates::parse_date;
use field::Field;
pub use limits::{Conversion, Limits};
pub use rejection::{Reason, Rejection};

/// The fields of an invoice line (contract §2.1), in the contract's order; every one
/// but the last (`currency`) is required.
pub const FIELDS: [&str; 9] = [
    "distributor_id",
    "invoice_id",
    "line_no",
    "invoice_date",
    "outlet_id",
    "sku_id",
    "quantity",
    "net_value",
    "currency",
];

/// Longest identifier accepted, in characters.
pub const MAX_ID_CHARS: usize = 256;
/// Earliest invoice date accepted.
pub const MIN_YEAR: i32 = 1900;
/// Latest invoice date accepted (anything later is a typo, not an invoice).
pub const MAX_YEAR: i32 = 2199;

/// One validated invoice line, borrowing from the message where possible.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceLine<'a> {
    /// Distributor that issued the invoice (identity, part 1).
    pub distributor_id: Cow<'a, str>,
    /// Invoice number (identity, part 2).
    pub invoice_id: Cow<'a, str>,
    /// Line number within the invoice (identity, part 3).
    pub line_no: i64,
    /// Invoice date (the date part of a date-time).
    pub invoice_date: NaiveDate,
    /// The outlet (point of sale) that bought.
    pub outlet_id: Cow<'a, str>,
    /// The product.
    pub sku_id: Cow<'a, str>,
    /// Quantity; negative for returns.
    pub quantity: f64,
    /// Net value; negative for returns and credit notes. In the base currency when
    /// `ingest.currency.base` is set (converted on the invoice date), else as sent.
    pub net_value: f64,
    /// Currency code as sent, when sent.
    pub currency: Option<Cow<'a, str>>,
}

impl InvoiceLine<'_> {
    /// Days since 1970-01-01, as Arrow's `Date32` stores dates.
    pub fn date32(&self) -> i32 {
        date_to_days(self.invoice_date)
    }
}

/// Days since the Unix epoch of a date.
pub fn date_to_days(date: NaiveDate) -> i32 {
    crate::tables::date32(date)
}

/// The date of an Arrow `Date32` value.
pub fn days_to_date(days: i32) -> NaiveDate {
    crate::tables::date_of(days)
}

/// Declares [`RawLine`] and [`NestedLine`], which read the line's fields named here
/// (each from the member of its name; every other member is ignored), and the move
/// of a nested line's fields into a `RawLine`.
macro_rules! line_fields {
    ($($field:ident),* $(,)?) => {
        /// The fields of a message as sent: a line, or the header of a whole invoice.
        #[derive(Debug, Default, Deserialize)]
        struct RawLine<'a> {
            $(
                #[serde(borrow, default)]
                $field: Field<'a>,
            )*
            /// Present on a whole invoice: its lines (the other fields are then its
            /// header). Read in the same pass as the header: `#[serde(flatten)]` would
            /// buffer every field first and cost the ingest hot path about half its speed.
            #[serde(borrow, default)]
            lines: Option<LinesField<'a>>,
        }

        /// The fields of one of a whole invoice's lines as sent. A line has no `lines`
        /// of its own: a member of that name is unknown there, and ignored as any other.
        #[derive(Debug, Deserialize)]
        struct NestedLine<'a> {
            $(
                #[serde(borrow, default)]
                $field: Field<'a>,
            )*
        }

        impl<'a> From<NestedLine<'a>> for RawLine<'a> {
            fn from(l: NestedLine<'a>) -> Self {
                RawLine {
                    $($field: l.$field,)*
                    lines: None,
                }
            }
        }
    };
}

line_fields!(
    distributor_id,
    invoice_id,
    line_no,
    invoice_date,
    outlet_id,
    sku_id,
    quantity,
    net_value,
    currency,
);

/// `lines` as sent: an array of objects, or something else to reject.
#[derive(Debug)]
enum LinesField<'a> {
    Lines(Vec<RawLine<'a>>),
    NotArray(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for LinesField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read the array element by element so a non-object element is reported by index.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LinesField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of line objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(line) = seq.next_element::<LineElement<'de>>()? {
                    match line {
                        LineElement::Line(l) => out.push(*l),
                        LineElement::NotObject(kind) => {
                            return Err(de::Error::custom(format!(
                                "lines[{}] is {kind}, not an object",
                                out.len()
                            )))
                        }
                    }
                }
                Ok(LinesField::Lines(out))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(LinesField::NotArray("null"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LinesField::NotArray("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LinesField::NotArray("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LinesField::NotArray("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LinesField::NotArray("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LinesField::NotArray("a string"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LinesField::NotArray("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

enum LineElement<'a> {
    Line(Box<RawLine<'a>>),
    NotObject(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for LineElement<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A line object is read in place (borrowing its strings); anything else is
        // reported by kind.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LineElement<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a line object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                NestedLine::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|l| LineElement::Line(Box::new(l.into())))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(LineElement::NotObject("null"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LineElement::NotObject("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LineElement::NotObject("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LineElement::NotObject("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LineElement::NotObject("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LineElement::NotObject("a string"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LineElement::NotObject("an array"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses one message of the invoices topic into its lines, or says why not.
///
/// `None` (a null value) and empty or non-UTF-8 bytes are rejected like malformed JSON;
/// lines beyond `limits` (dates, values, line count) and whole invoices that repeat an
/// identity are rejected too, the whole message with them.
pub fn parse_invoice_message<'a>(
    value: Option<&'a [u8]>,
    limits: &Limits,
) -> Result<Vec<InvoiceLine<'a>>, Rejection> {
    let bytes = match value {
        None => {
            return Err(Rejection::new(
                Reason::Empty,
                "the message is null (a tombstone); an invoice message must be a JSON object",
            ))
        }
        Some(b) => b,
    };
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
            "the message is empty; expected a JSON object with an invoice line or a whole invoice",
        ));
    }
    if !text.trim_start().starts_with('{') {
        // Tell "not JSON at all" from "JSON, but not an object".
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => Rejection::new(Reason::NotObject, "the message is not a JSON object (an invoice line or a whole invoice is an object)"),
            Err(e) => Rejection::new(Reason::NotJson, format!("the message is not valid JSON: {e}")),
        });
    }
    // The usual messages, a flat line or a whole invoice of flat lines, are read by
    // the scanner; anything else (escapes, nested values, an error to word) by
    // serde_json.
    let mut msg: RawLine<'_> = match scan::usual_message(text) {
        Some(line) => line,
        None => serde_json::from_str(text).map_err(|e| {
            let s = e.to_string();
            if e.is_syntax() || e.is_eof() {
                Rejection::new(
                    Reason::NotJson,
                    format!("the message is not valid JSON: {s}"),
                )
            } else {
                Rejection::new(Reason::BadField, s)
            }
        })?,
    };
    match msg.lines.take() {
        None => Ok(vec![validate(&msg, None, "", limits)?]),
        Some(LinesField::NotArray(kind)) => Err(Rejection::new(Reason::BadField, format!(
            "`lines` is {kind}; a whole invoice needs `lines` to be a non-empty array of line objects"
        ))),
        Some(LinesField::Lines(lines)) if lines.is_empty() => Err(Rejection::new(Reason::BadField,
            "`lines` is an empty array; a whole invoice needs at least one line (the whole invoice is rejected)",
        )),
        Some(LinesField::Lines(lines)) if lines.len() > limits.max_lines => Err(Rejection::new(
            Reason::TooManyLines,
            format!(
                "`lines` holds {} lines; a message may carry at most {} (ingest.max_lines_per_message; the whole invoice is rejected)",
                lines.len(),
                limits.max_lines
            ),
        )),
        Some(LinesField::Lines(lines)) => {
            let mut out: Vec<InvoiceLine<'_>> = Vec::with_capacity(lines.len());
            for (i, line) in lines.iter().enumerate() {
                // Checked without the line's place first: the rejection that names
                // it is worded only for a line that has one (validation is pure,
                // so the second check fails as the first did).
                let parsed = validate(line, Some(&msg), "", limits).map_err(|_| {
                    let r = validate(line, Some(&msg), &format!("lines[{i}]."), limits)
                        .expect_err("a line fails its check again");
                    Rejection::new(r.reason, format!("{} (the whole invoice is rejected)", r.text))
                })?;
                out.push(parsed);
            }
            if let Some((first, again)) = repeated_identity(&out) {
                return Err(Rejection::new(
                    Reason::DuplicateLine,
                    format!(
                        "lines[{again}].line_no {} repeats lines[{first}] (same distributor_id, invoice_id and line_no); every line of an invoice needs its own line_no (the whole invoice is rejected)",
                        out[again].line_no
                    ),
                ));
            }
            Ok(out)
        }
    }
}

/// The first pair of lines (earlier, later) that share an identity, if any.
fn repeated_identity(lines: &[InvoiceLine<'_>]) -> Option<(usize, usize)> {
    fn key<'l>(l: &'l InvoiceLine<'_>) -> (&'l str, &'l str, i64) {
        (&l.distributor_id, &l.invoice_id, l.line_no)
    }
    // The usual invoice has a few lines: compared pairwise, without a table.
    if lines.len() <= SMALL_INVOICE {
        return (1..lines.len()).find_map(|i| {
            let k = key(&lines[i]);
            (0..i).find(|&j| key(&lines[j]) == k).map(|j| (j, i))
        });
    }
    let mut seen = std::collections::HashMap::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        if let Some(first) = seen.insert(key(l), i) {
            return Some((first, i));
        }
    }
    None
}

/// Lines up to which [`repeated_identity`] compares every pair.
const SMALL_INVOICE: usize = 16;

/// Picks a line's own field, else the header's.
fn pick<'f, 'a>(own: &'f Field<'a>, header: Option<&'f Field<'a>>) -> &'f Field<'a> {
    match (own, header) {
        (Field::Missing, Some(h)) => h,
        _ => own,
    }
}

fn validate<'a>(
    line: &RawLine<'a>,
    header: Option<&RawLine<'a>>,
    prefix: &str,
    limits: &Limits,
) -> Result<InvoiceLine<'a>, Rejection> {
    macro_rules! h {
        ($f:ident) => {
            pick(&line.$f, header.map(|h| &h.$f))
        };
    }
    let distributor_id = identifier(h!(distributor_id), prefix, "distributor_id")?;
    let invoice_id = identifier(h!(invoice_id), prefix, "invoice_id")?;
    let line_no = line_no(h!(line_no), prefix)?;
    let invoice_date = date(h!(invoice_date), prefix, limits)?;
    let outlet_id = identifier(h!(outlet_id), prefix, "outlet_id")?;
    let sku_id = identifier(h!(sku_id), prefix, "sku_id")?;
    let quantity = bounded(
        number(h!(quantity), prefix, "quantity")?,
        limits.max_abs_quantity,
        prefix,
        "quantity",
    )?;
    let sent = number(h!(net_value), prefix, "net_value")?;
    let currency = currency(h!(currency), prefix)?;
    let net_value = match &limits.currency {
        None => sent,
        Some(c) => {
            let rate = c.rate(currency.as_deref(), invoice_date).ok_or_else(|| {
                Rejection::new(
                    Reason::UnknownCurrency,
                    format!(
                        "{prefix}currency \"{}\" has no exchange rate into {} on {invoice_date} \
                         (ingest.currency.rates); add one, or send the line in {}",
                        currency.as_deref().unwrap_or_default(),
                        c.base,
                        c.base
                    ),
                )
            })?;
            sent * rate
        }
    };
    Ok(InvoiceLine {
        distributor_id,
        invoice_id,
        line_no,
        invoice_date,
        outlet_id,
        sku_id,
        quantity,
        net_value: bounded(net_value, limits.max_abs_net_value, prefix, "net_value")?,
        currency,
    })
}

fn missing(prefix: &str, name: &str) -> Rejection {
    Rejection::new(
        Reason::MissingField,
        format!("{prefix}{name} is missing; it is required"),
    )
}

/// Reads an identifier: a non-empty string of at most 256 characters, or an integer.
pub(crate) fn identifier_text(value: &serde_json::Value, name: &str) -> Result<String, Rejection> {
    match value {
        serde_json::Value::String(s) => {
            identifier(&Field::Str(Cow::Borrowed(s)), "", name).map(|c| c.into_owned())
        }
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        serde_json::Value::Null => Err(Rejection::new(
            Reason::MissingField,
            format!("{name} is null; it is required"),
        )),
        other => Err(Rejection::new(
            Reason::BadIdentifier,
            format!("{name} is {}, not a string or an integer", json_kind(other)),
        )),
    }
}

pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() => number_kind(x),
            _ => "a number",
        },
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A number JSON did not write as an integer, as a rejection words it.
pub(crate) fn number_kind(x: f64) -> &'static str {
    if !x.is_finite() {
        "a number beyond the range of a 64-bit float"
    } else if x.fract() == 0.0 {
        "a number written with a decimal point or an exponent"
    } else {
        "a number with a fraction"
    }
}

/// The identifier a value's raw JSON text gives, read as an invoice field is: for
/// readers that hold the value as a `serde_json::Value` (master records), whose
/// numbers past 64 bits have lost their digits.
pub(crate) fn identifier_in_json(raw: &str, name: &str) -> Result<String, Rejection> {
    let field: Field<'_> = serde_json::from_str(raw)
        .map_err(|e| Rejection::new(Reason::BadIdentifier, format!("{name}: {e}")))?;
    identifier(&field, "", name).map(Cow::into_owned)
}

/// A character that shows nothing and is never part of a spelling: the zero-width
/// space, word joiner and invisible operators, bidi controls, the byte order mark, the
/// soft hyphen, the Mongolian vowel separator, interlinear annotation marks, and line
/// or paragraph separators. In an identifier it makes two ids that look alike
/// different outlets (or SKUs). Written out rather than read from a Unicode table:
/// the general category these belong to (format characters) also holds the
/// zero-width joiner and non-joiner, which Persian, Urdu and Indic spellings need.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// A control or an [`invisible`] character: none belongs in an identifier.
fn unprintable(c: char) -> bool {
    c.is_control() || invisible(c)
}

/// Whether `s` holds an [`unprintable`] character (ASCII text can hold only control
/// characters: one scan of its bytes).
fn has_unprintable(s: &str) -> bool {
    if s.is_ascii() {
        s.bytes().any(|b| b < 0x20 || b == 0x7f)
    } else {
        s.chars().any(unprintable)
    }
}

fn identifier<'a>(f: &Field<'a>, prefix: &str, name: &str) -> Result<Cow<'a, str>, Rejection> {
    match f {
        Field::Missing => Err(missing(prefix, name)),
        Field::Str(s) if s.is_empty() => Err(Rejection::new(
            Reason::BadIdentifier,
            format!("{prefix}{name} is empty; identifiers are non-empty strings"),
        )),
        Field::Str(s) if s.trim().is_empty() => Err(Rejection::new(
            Reason::BadIdentifier,
            format!("{prefix}{name} is only white space; identifiers are non-empty strings"),
        )),
        Field::Str(s) if has_unprintable(s) => {
            let (at, c) = s
                .chars()
                .enumerate()
                .find(|(_, c)| unprintable(*c))
                .expect("an unprintable character");
            let what = if c.is_control() {
                "the control character"
            } else {
                "the invisible character"
            };
            Err(Rejection::new(
                Reason::BadIdentifier,
                format!(
                    "{prefix}{name} holds {what} U+{:04X} at position {at}; identifiers are printable text",
                    u32::from(c)
                ),
            ))
        }
        Field::Str(s) => {
            // Byte length bounds the character count from above: only count when needed.
            if s.len() > MAX_ID_CHARS && s.chars().count() > MAX_ID_CHARS {
                return Err(Rejection::new(Reason::BadIdentifier, format!(
                    "{prefix}{name} is {} characters long; identifiers are at most {MAX_ID_CHARS} characters",
                    s.chars().count()
                )));
            }
            Ok(s.clone())
        }
        Field::Int(i) => Ok(Cow::Owned(i.to_string())),
        Field::Digits(text, _) if text.len() > MAX_ID_CHARS => Err(Rejection::new(
            Reason::BadIdentifier,
            format!(
                "{prefix}{name} is an integer of {} characters; identifiers are at most {MAX_ID_CHARS} characters",
                text.len()
            ),
        )),
        Field::Digits(text, _) => Ok(Cow::Borrowed(text)),
        Field::Float(x) => Err(Rejection::new(
            Reason::BadIdentifier,
            format!(
                "{prefix}{name} is {}; identifiers are strings or integers",
                number_kind(*x)
            ),
        )),
        other => Err(Rejection::new(
            Reason::BadIdentifier,
            format!(
                "{prefix}{name} is {}; identifiers are non-empty strings or integers",
                other.kind()
            ),
        )),
    }
}

fn line_no(f: &Field<'_>, prefix: &str) -> Result<i64, Rejection> {
    let n = match f {
        Field::Missing => return Err(missing(prefix, "line_no")),
        Field::Int(i) => *i,
        Field::Float(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => *x as i128,
        Field::Digits(text, _) => {
            return Err(Rejection::new(
                Reason::BadLineNo,
                format!("{prefix}line_no {} is out of range", truncate(text, 40)),
            ))
        }
        Field::Float(x) => {
            return Err(Rejection::new(
                Reason::BadLineNo,
                format!(
                    "{prefix}line_no is {x}, not an integer; line numbers are whole numbers ≥ 0"
                ),
            ))
        }
        other => {
            return Err(Rejection::new(
                Reason::BadLineNo,
                format!(
                    "{prefix}line_no is {}, not an integer; line numbers are whole numbers ≥ 0",
                    other.kind()
                ),
            ))
        }
    };
    if n < 0 {
        return Err(Rejection::new(
            Reason::BadLineNo,
            format!("{prefix}line_no is {n}; line numbers are whole numbers ≥ 0"),
        ));
    }
    i64::try_from(n).map_err(|_| {
        Rejection::new(
            Reason::BadLineNo,
            format!("{prefix}line_no {n} is too large"),
        )
    })
}

fn number(f: &Field<'_>, prefix: &str, name: &str) -> Result<f64, Rejection> {
    let x = match f {
        Field::Missing => return Err(missing(prefix, name)),
        Field::Int(i) => *i as f64,
        Field::Digits(_, x) | Field::Float(x) => *x,
        Field::Str(s) => {
            return Err(Rejection::new(
                Reason::BadNumber,
                format!(
                    "{prefix}{name} is a string (\"{}\"), not a number; send it as a JSON number",
                    truncate(s, 40)
                ),
            ))
        }
        other => {
            return Err(Rejection::new(
                Reason::BadNumber,
                format!("{prefix}{name} is {}, not a number", other.kind()),
            ))
        }
    };
    if !x.is_finite() {
        return Err(Rejection::new(
            Reason::BadNumber,
            format!("{prefix}{name} is not a finite number"),
        ));
    }
    Ok(x)
}

/// `x` unless `|x|` exceeds `max`.
fn bounded(x: f64, max: f64, prefix: &str, name: &str) -> Result<f64, Rejection> {
    if x.abs() > max {
        return Err(Rejection::new(
            Reason::ValueOutOfRange,
            format!(
                "{prefix}{name} is {x:e}; its magnitude may be at most {max:e} (ingest.max_abs_{name})"
            ),
        ));
    }
    Ok(x)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn date(f: &Field<'_>, prefix: &str, limits: &Limits) -> Result<NaiveDate, Rejection> {
    let s = match f {
        Field::Missing => return Err(missing(prefix, "invoice_date")),
        Field::Str(s) => s,
        other => {
            return Err(Rejection::new(
                Reason::BadDate,
                format!(
            "{prefix}invoice_date is {}; expected an ISO date like \"2026-11-20\" or a date-time",
            other.kind()
        ),
            ))
        }
    };
    let d = parse_date(s).ok_or_else(|| {
        Rejection::new(Reason::BadDate, format!(
            "{prefix}invoice_date \"{}\" is not a real ISO date (expected YYYY-MM-DD or an ISO date-time)",
            truncate(s, 40)
        ))
    })?;
    if !(MIN_YEAR..=MAX_YEAR).contains(&d.year()) {
        return Err(Rejection::new(
            Reason::BadDate,
            format!("{prefix}invoice_date {d} is outside the accepted years {MIN_YEAR}–{MAX_YEAR}"),
        ));
    }
    if d > limits.latest {
        return Err(Rejection::new(
            Reason::DateOutOfRange,
            format!(
                "{prefix}invoice_date {d} is in the future: the latest date accepted now is {} (ingest.max_future_days)",
                limits.latest
            ),
        ));
    }
    if d < limits.earliest {
        return Err(Rejection::new(
            Reason::DateOutOfRange,
            format!(
                "{prefix}invoice_date {d} is too old: the earliest date accepted now is {} (ingest.max_age_days)",
                limits.earliest
            ),
        ));
    }
    Ok(d)
}

fn currency<'a>(f: &Field<'a>, prefix: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
    match f {
        Field::Missing | Field::Null => Ok(None),
        Field::Str(s) if s.chars().count() > 16 => Err(Rejection::new(
            Reason::BadCurrency,
            format!(
                "{prefix}currency \"{}\" is longer than 16 characters; send an ISO 4217 code",
                truncate(s, 20)
            ),
        )),
        Field::Str(s) if s.chars().any(char::is_control) => Err(Rejection::new(
            Reason::BadCurrency,
            format!("{prefix}currency holds a control character; send an ISO 4217 code"),
        )),
        Field::Str(s) => Ok(Some(s.clone())),
        other => Err(Rejection::new(
            Reason::BadCurrency,
            format!(
                "{prefix}currency is {}; send it as a string like \"PLN\"",
                other.kind()
            ),
        )),
    }
}

#[cfg(test)]
mod tests;
