//! The ingest hot path's reader of the common messages: one flat JSON object of
//! plain values, or a whole invoice, whose `lines` are an array of such objects. It
//! takes what `serde_json` would give [`RawLine`] for such a message, field for field
//! and bit for bit, in a single forward scan — and gives up (`None`) at anything
//! else: an escape or control character in a string, an exponent or a long number,
//! any other nested value, a repeated field, malformed or trailing text. The caller
//! then parses the message with `serde_json`, which decides and words every
//! rejection; this reader never rejects.
//!
//! Written by hand rather than with a faster JSON crate: most of the parse pool's
//! time went into `serde_json`'s general machinery (visitors per field, key
//! matching through `Deserialize`), while invoice lines are a dozen flat fields;
//! falling back on anything unusual keeps `serde_json` the one judge of hostile
//! input. The unit tests check both readers agree on generated messages.

use std::borrow::Cow;

use super::{Field, LinesField, RawLine};

/// `text` read as a flat invoice line or a whole invoice of flat lines, or `None`
/// when `serde_json` must read it.
pub(super) fn usual_message(text: &str) -> Option<RawLine<'_>> {
    let mut s = Scanner {
        b: text.as_bytes(),
        text,
        at: 0,
    };
    let mut line = RawLine::default();
    s.ws();
    s.object::<true>(&mut line)?;
    s.ws();
    (s.at == s.b.len()).then_some(line)
}

/// `text`, the raw text of one value, read as serde_json reads it when it is a plain
/// value (as [`usual_message`] reads one); `None` when serde_json must read it.
pub(super) fn plain_value(text: &str) -> Option<Field<'_>> {
    let mut s = Scanner {
        b: text.as_bytes(),
        text,
        at: 0,
    };
    let value = s.value()?;
    (s.at == s.b.len()).then_some(value)
}

struct Scanner<'a> {
    b: &'a [u8],
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    /// An object of plain values into `line` (filled in place: it is a few hundred
    /// bytes); at the top (`INVOICE`), also a whole invoice's `lines`.
    #[inline]
    fn object<const INVOICE: bool>(&mut self, line: &mut RawLine<'a>) -> Option<()> {
        if !self.open(b'{', b'}')? {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            if key == "lines" {
                // A line's own `lines` (an unknown member there, whose value may be
                // nested: serde_json skips it), or `lines` twice (an error serde_json
                // words): serde_json's to read.
                if !INVOICE || line.lines.is_some() {
                    return None;
                }
                line.lines = Some(LinesField::Lines(self.lines()?));
            } else {
                let value = self.value()?;
                let slot = match key {
                    "distributor_id" => Some(&mut line.distributor_id),
                    "invoice_id" => Some(&mut line.invoice_id),
                    "line_no" => Some(&mut line.line_no),
                    "invoice_date" => Some(&mut line.invoice_date),
                    "outlet_id" => Some(&mut line.outlet_id),
                    "sku_id" => Some(&mut line.sku_id),
                    "quantity" => Some(&mut line.quantity),
                    "net_value" => Some(&mut line.net_value),
                    "currency" => Some(&mut line.currency),
                    // Other fields are ignored, as serde ignores them.
                    _ => None,
                };
                if let Some(slot) = slot {
                    // A repeated field is an error serde_json words.
                    if !matches!(slot, Field::Missing) {
                        return None;
                    }
                    *slot = value;
                }
            }
            self.ws();
            if !self.next(b'}')? {
                return Some(());
            }
        }
    }

    /// A whole invoice's `lines`: an array of flat objects. Anything else (`null`,
    /// an element that is not an object, whose rejection names its index) is
    /// serde_json's to read.
    fn lines(&mut self) -> Option<Vec<RawLine<'a>>> {
        let mut out = Vec::new();
        if !self.open(b'[', b']')? {
            return Some(out);
        }
        loop {
            let mut line = RawLine::default();
            self.object::<false>(&mut line)?;
            out.push(line);
            self.ws();
            if !self.next(b']')? {
                return Some(out);
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.at += 1)
    }

    /// JSON's whitespace (as serde_json skips it).
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.at += 1;
        }
    }

    /// The start of an object or array (`open`): `false` when it closes at once
    /// (`close`, read), `true` when it holds something (then at its first item).
    fn open(&mut self, open: u8, close: u8) -> Option<bool> {
        self.eat(open)?;
        self.ws();
        if self.peek()? == close {
            self.at += 1;
            return Some(false);
        }
        Some(true)
    }

    /// After an item of an object or array: `true` on `,` (then at the next item),
    /// `false` on `close` (read).
    fn next(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                self.ws();
                Some(true)
            }
            c if c == close => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let len = self.b[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        self.at = start + len;
        self.eat(b'"')?;
        // Both ends are ASCII quotes, so character boundaries.
        Some(&self.text[start..start + len])
    }

    /// A plain value: a string, a number or a literal; `None` for arrays and
    /// objects.
    fn value(&mut self) -> Option<Field<'a>> {
        match self.peek()? {
            b'"' => self.string().map(|v| Field::Str(Cow::Borrowed(v))),
            b'n' => self.literal("null", Field::Null),
            b't' => self.literal("true", Field::Bool),
            b'f' => self.literal("false", Field::Bool),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str, field: Field<'a>) -> Option<Field<'a>> {
        self.b[self.at..].starts_with(word.as_bytes()).then(|| {
            self.at += word.len();
            field
        })
    }

    /// A number as serde_json reads it (without `float_roundtrip`): an integer of
    /// at most 18 digits is exact; a decimal of at most 15 digits (below 2⁵³) is its
    /// digits divided by a power of ten, one correctly rounded division, as
    /// serde_json computes it. Exponents and longer numbers are left to serde_json.
    fn number(&mut self) -> Option<Field<'a>> {
        let negative = self.peek()? == b'-';
        if negative {
            self.at += 1;
        }
        let int_start = self.at;
        let mut digits: u64 = 0;
        let mut count = 0usize;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            digits = digits * 10 + u64::from(c - b'0');
            count += 1;
            self.at += 1;
            if count > 18 {
                return None;
            }
        }
        let int_len = self.at - int_start;
        // No digits, or a leading zero before more digits: invalid JSON.
        if int_len == 0 || (int_len > 1 && self.b[int_start] == b'0') {
            return None;
        }
        let mut fraction = 0usize;
        if self.peek() == Some(b'.') {
            self.at += 1;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                digits = digits * 10 + u64::from(c - b'0');
                count += 1;
                fraction += 1;
                self.at += 1;
                if count > 15 {
                    return None;
                }
            }
            if fraction == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            return None;
        }
        if fraction > 0 {
            let v = digits as f64 / POW10[fraction];
            return Some(Field::Float(if negative { -v } else { v }));
        }
        Some(match (negative, digits) {
            // serde_json reads `-0` as the float −0.
            (true, 0) => Field::Float(-0.0),
            (true, d) => Field::Int(-i128::from(d)),
            (false, d) => Field::Int(i128::from(d)),
        })
    }
}

/// Powers of ten exact in `f64`, as serde_json divides by them.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

#[cfg(test)]
mod tests {
    use super::super::FIELDS;
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    /// What serde_json makes of `text`, as the scanner would have to give it.
    fn by_serde(text: &str) -> Option<String> {
        serde_json::from_str::<RawLine<'_>>(text)
            .ok()
            .map(|l| format!("{l:?}"))
    }

    /// Whenever the scanner reads a message, serde_json reads the same fields
    /// (compared through `Debug`, so `-0.0` and `0.0` differ).
    fn agrees(text: &str) {
        if let Some(line) = usual_message(text) {
            let ours = format!("{line:?}");
            assert_eq!(Some(&ours), by_serde(text).as_ref(), "{text:?}");
        }
    }

    #[test]
    fn the_usual_line_is_read_by_the_scanner_as_serde_reads_it() {
        let usual = [
            r#"{"distributor_id":"D01","invoice_id":"FV/2026/0000001","line_no":1,"invoice_date":"2026-11-20","outlet_id":"PL-000042","sku_id":"5901200000001","quantity":3,"net_value":12.50,"currency":"PLN"}"#,
            " { \"distributor_id\" : \"D1\" ,\n\t\"invoice_id\": \"I-1\", \"line_no\": 0, \"invoice_date\": \"2026-11-20T10:00:00Z\", \"outlet_id\": 17, \"sku_id\": \"S\", \"quantity\": -2, \"net_value\": -0.5, \"note\": \"ignored\", \"currency\": null }\r\n",
            r#"{"distributor_id":"Dé","invoice_id":"ß","line_no":123456789012345678,"invoice_date":"2026-11-20","outlet_id":"O","sku_id":"S","quantity":0.001,"net_value":123456789012.345,"x":true,"y":false}"#,
            r#"{"quantity":-0,"net_value":0.0,"line_no":-0.0}"#,
            "{}",
            r#"{"distributor_id":"D01","invoice_id":"FV/1","invoice_date":"2026-11-20","outlet_id":"O","currency":"PLN","lines":[{"line_no":1,"sku_id":"S1","quantity":2,"net_value":4.5},{"line_no":2,"sku_id":"S2","quantity":-1,"net_value":-2.25,"note":"x"}]}"#,
            " {\"lines\" : [ { } ,\n{\"sku_id\":\"S\"} ] , \"outlet_id\": 7 } ",
            r#"{"lines":[]}"#,
        ];
        for text in usual {
            assert!(usual_message(text).is_some(), "{text}");
            agrees(text);
        }
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        let unusual = [
            r#"{"invoice_id":"a\"b"}"#,
            r#"{"invoice_id":"a\u0041"}"#,
            "{\"invoice_id\":\"a\u{1}b\"}",
            r#"{"quantity":1e3}"#,
            r#"{"quantity":01}"#,
            r#"{"quantity":1.}"#,
            r#"{"quantity":.5}"#,
            r#"{"quantity":+1}"#,
            r#"{"quantity":1234567890123456789}"#,
            r#"{"net_value":1234567890.1234567}"#,
            r#"{"lines":null}"#,
            r#"{"lines":{}}"#,
            r#"{"lines":[1]}"#,
            r#"{"lines":[{"sku_id":"S"},null]}"#,
            r#"{"lines":[{"lines":[]}]}"#,
            r#"{"lines":[],"lines":[]}"#,
            r#"{"lines":[{"sku_id":"S"},]}"#,
            r#"{"lines":[{"sku_id":"S"}}"#,
            r#"{"lines":[{"sku_id":"S","sku_id":"T"}]}"#,
            r#"{"lines":[{"sku_id":"a\"b"}]}"#,
            r#"{"sku_id":"S","sku_id":"T"}"#,
            r#"{"sku_id":["S"]}"#,
            r#"{"note":{"a":1},"sku_id":"S"}"#,
            r#"{"sku_id":"S",}"#,
            r#"{"sku_id":"S"} x"#,
            r#"{"sku_id":"S""#,
            r#"{"sku_id":nul}"#,
            r#"{"sku_id":"S" "outlet_id":"O"}"#,
            "\u{a0}{\"sku_id\":\"S\"}",
        ];
        for text in unusual {
            assert!(usual_message(text).is_none(), "{text}");
        }
    }

    /// Plain values, and values the scanner leaves to serde_json (escapes, control
    /// characters, long numbers, exponents, broken literals, nested values).
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            plain(),
            Just(r#""a\"b""#.to_string()),
            Just("\"a\u{7f}\u{1}\"".to_string()),
            "-?[0-9]{1,20}",
            "-?[0-9]{1,10}\\.[0-9]{0,10}",
            "-?[0-9]{1,3}[eE][+-]?[0-9]{1,3}",
            Just("fals".to_string()),
            Just("[1,2]".to_string()),
            Just("{\"a\":1}".to_string()),
        ]
    }

    /// The fields, `lines` (a whole invoice) and an escaped field name.
    fn key() -> impl Strategy<Value = String> {
        let mut keys = keys();
        keys.extend(["lines", "sku\\u005fid"]);
        prop::sample::select(keys).prop_map(String::from)
    }

    fn space() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(""),
            Just(" "),
            Just("\n\t"),
            Just("\r"),
            Just("\u{a0}")
        ]
        .prop_map(String::from)
    }

    /// Spacing around an element of `lines`: mostly JSON's, sometimes not.
    fn element_space() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => Just(""),
            3 => Just(" "),
            2 => Just("\n\t "),
            1 => Just("\r"),
            1 => Just("\u{a0}"),
        ]
        .prop_map(String::from)
    }

    /// Plain values, as most messages carry them.
    fn plain() -> impl Strategy<Value = String> {
        prop_oneof![
            "\"[A-Za-z0-9/ _-]{0,8}\"",
            "\"\\PC{0,4}\"",
            "-?[0-9]{1,19}",
            "-?[0-9]{1,9}\\.[0-9]{1,9}",
            Just("-0".to_string()),
            Just("null".to_string()),
            Just("true".to_string()),
        ]
    }

    /// Members of an object: distinct fields with plain values, or hostile members
    /// and spacing.
    fn members() -> impl Strategy<Value = Vec<String>> {
        let hostile = (space(), key(), space(), value(), space())
            .prop_map(|(a, k, b, v, c)| format!("{a}\"{k}\"{b}:{c}{v}"));
        prop_oneof![prop::collection::vec(hostile, 0..8), plain_members()]
    }

    /// Distinct fields with plain values.
    fn plain_members() -> impl Strategy<Value = Vec<String>> {
        (
            prop::sample::subsequence(keys(), 0..keys().len()),
            prop::collection::vec(plain(), keys().len()),
        )
            .prop_map(|(keys, values)| {
                keys.iter()
                    .zip(values)
                    .map(|(k, v)| format!("\"{k}\": {v}"))
                    .collect()
            })
    }

    /// A flat object.
    fn flat() -> impl Strategy<Value = String> {
        (members(), space()).prop_map(|(m, tail)| format!("{{{}{tail}}}", m.join(",")))
    }

    /// A whole invoice: a header's members and `lines`, of flat objects or of
    /// elements serde_json rejects or reads otherwise.
    fn whole() -> impl Strategy<Value = String> {
        let element = prop_oneof![
            12 => plain_members().prop_map(|m| format!("{{{}}}", m.join(","))),
            3 => flat(),
            1 => Just("1".to_string()),
            1 => Just("null".to_string()),
            1 => Just("[]".to_string()),
            1 => Just(r#"{"lines":[]}"#.to_string()),
        ];
        (
            prop_oneof![3 => plain_members(), 1 => members()],
            prop::collection::vec((element_space(), element, element_space()), 0..4),
            space(),
            space(),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(mut m, elements, a, b, at)| {
                let elements: Vec<String> = elements
                    .into_iter()
                    .map(|(before, e, after)| format!("{before}{e}{after}"))
                    .collect();
                let lines = format!("\"lines\":{a}[{}]{b}", elements.join(","));
                m.insert(at.index(m.len() + 1), lines);
                format!("{{{}}}", m.join(","))
            })
    }

    /// Flat objects and whole invoices, then, in some, text cut or spliced in at a
    /// random place.
    fn message() -> impl Strategy<Value = String> {
        (
            prop_oneof![1 => flat(), 2 => whole()],
            any::<prop::sample::Index>(),
            prop_oneof![
                3 => Just(None),
                1 => Just(Some("")),
                1 => Just(Some(",")),
                1 => Just(Some("}x")),
            ],
        )
            .prop_map(|(text, at, splice)| match splice {
                None => text,
                Some(s) => {
                    let mut cut = at.index(text.len() + 1);
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    format!("{}{s}{}", &text[..cut], &text[cut..])
                }
            })
    }

    /// The fields and one that is not.
    fn keys() -> Vec<&'static str> {
        FIELDS.iter().copied().chain(["note"]).collect()
    }

    /// The property below is not vacuous: a good share of the generated messages,
    /// whole invoices among them, is read by the scanner (the rest go to
    /// serde_json).
    #[test]
    fn the_generator_feeds_the_scanner() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = message();
        let (mut read, mut invoices) = (0, 0);
        for _ in 0..1000 {
            let text = strategy.new_tree(&mut runner).unwrap().current();
            if let Some(line) = usual_message(&text) {
                read += 1;
                invoices += usize::from(
                    matches!(line.lines, Some(LinesField::Lines(ref l)) if !l.is_empty()),
                );
            }
        }
        assert!(
            read >= 150 && invoices >= 40,
            "only {read} of 1000 messages read by the scanner, {invoices} whole invoices with lines"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        #[test]
        fn the_scanner_never_reads_otherwise_than_serde(text in message()) {
            agrees(&text);
        }
    }
}
