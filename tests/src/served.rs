//! Reading a segment profile as the publisher serves it (`GET
//! /api/segmentations/{name}/segments`, the `segment-profiles` topic): the one place
//! that knows its shape, so that a change of shape is mended here. The served profile
//! is the run's `profiles.json` entry (`outlets`, `value_share` at the top,
//! `attributes` as `[{attribute, values: [{value, outlets, share}]}]`; see
//! `spectra_core::tables::profile`). Also how the console's outlet page explains a
//! move ([`assert_the_outlet_page_says_why`]).

use serde_json::Value;

/// The segment's id.
pub fn segment_id(p: &Value) -> &str {
    p["segment_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a profile without segment_id: {p}"))
}

/// The segment's outlets.
pub fn outlets(p: &Value) -> u64 {
    p["outlets"]
        .as_u64()
        .unwrap_or_else(|| panic!("a profile without outlets: {p}"))
}

/// The segment's share of the assigned outlets' value.
pub fn value_share(p: &Value) -> f64 {
    p["value_share"]
        .as_f64()
        .unwrap_or_else(|| panic!("a profile without value_share: {p}"))
}

/// One feature of a profile's spectrum.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// The feature.
    pub feature: String,
    /// The segment's share of spend on it.
    pub share: f64,
    /// Its index against all assigned outlets (100 = average).
    pub index: f64,
}

/// The spectrum, as served (largest share first).
pub fn spectrum(p: &Value) -> Vec<Feature> {
    p["spectrum"]
        .as_array()
        .unwrap_or_else(|| panic!("a profile without spectrum: {p}"))
        .iter()
        .map(|f| Feature {
            feature: f["feature"].as_str().unwrap().to_owned(),
            share: f["share"].as_f64().unwrap(),
            index: f["index"].as_f64().unwrap(),
        })
        .collect()
}

/// One value of an attribute in a profile's attribute mix.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeValue {
    /// `region`, `channel` or the attribute's name.
    pub attribute: String,
    /// The value.
    pub value: String,
    /// Its share of the segment's outlets.
    pub share: f64,
}

/// The attribute mix, flattened to (attribute, value, share).
pub fn attributes(p: &Value) -> Vec<AttributeValue> {
    let mut out = Vec::new();
    for a in p["attributes"]
        .as_array()
        .unwrap_or_else(|| panic!("a profile without attributes: {p}"))
    {
        let attribute = a["attribute"].as_str().unwrap().to_owned();
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let values = a["values"]
            .as_array()
            .unwrap_or_else(|| panic!("attribute mix without values: {a}"));
        out.extend(values.iter().map(|v| AttributeValue {
            attribute: attribute.clone(),
            value: text(&v["value"]),
            share: v["share"].as_f64().unwrap(),
        }));
    }
    out
}

/// The values of one attribute in the mix.
pub fn attribute(p: &Value, name: &str) -> Vec<AttributeValue> {
    attributes(p)
        .into_iter()
        .filter(|a| a.attribute == name)
        .collect()
}

/// The purchasing patterns.
pub fn patterns(p: &Value) -> &Vec<Value> {
    p["patterns"]
        .as_array()
        .unwrap_or_else(|| panic!("a profile without patterns: {p}"))
}

/// The values of one dimension of a served segment context (`GET
/// …/segments/{id}/context`): `kind` is `product` or `outlet`, `dimension` e.g.
/// `brand` or `attributes.size`.
pub fn context_values(ctx: &Value, kind: &str, dimension: &str) -> Vec<Value> {
    ctx[kind]
        .as_array()
        .unwrap_or_else(|| panic!("a context without `{kind}`: {ctx}"))
        .iter()
        .find(|d| d["dimension"] == dimension)
        .unwrap_or_else(|| panic!("no {kind} dimension `{dimension}`: {ctx}"))["values"]
        .as_array()
        .unwrap()
        .clone()
}

/// The median of `values` (the mean of the middle two for an even count), computed
/// here rather than taken from the segmenter, so tests check it independently.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n.is_multiple_of(2) {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    } else {
        values[n / 2]
    }
}

/// The tiers the ABC rule gives a segment's outlets, written out here rather than
/// taken from the segmenter: `members` as `(outlet, potential)` are sorted largest
/// potential first (then by outlet) and returned with their tier — `A` while the
/// potential before them is under half of the segment's, `B` under 80%, `C` after and
/// for every outlet without potential.
pub fn abc_tiers<'a>(members: &[(&'a str, f64)]) -> Vec<(&'a str, f64, &'static str)> {
    let mut sorted = members.to_vec();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let total: f64 = sorted.iter().map(|m| m.1.max(0.0)).sum();
    let mut before = 0.0;
    sorted
        .into_iter()
        .map(|(o, p)| {
            let tier = if p <= 0.0 {
                "C"
            } else if before < 0.5 * total {
                "A"
            } else if before < 0.8 * total {
                "B"
            } else {
                "C"
            };
            before += p.max(0.0);
            (o, p, tier)
        })
        .collect()
}

/// The outlet 360 page of a moved outlet (`dom`) says why, with the move's (`first`,
/// as the movements route serves it) segments, reason and strongest driver.
pub fn assert_the_outlet_page_says_why(dom: &str, first: &Value) {
    let why = dom
        .split("class=\"moved-why\"")
        .nth(1)
        .expect("the outlet page explains the move");
    let why = why.split("</div>").next().unwrap();
    let (from, to) = (
        first["previous_segment_id"].as_str().unwrap(),
        first["segment_id"].as_str().unwrap(),
    );
    assert!(why.contains(&format!("{from} → {to}")), "{why}");
    assert!(
        why.contains(&format!(
            "<b class=\"reason\">{}</b>",
            first["reason"].as_str().unwrap()
        )),
        "{why}"
    );
    if let Some(d) = first["drivers"].as_array().and_then(|d| d.first()) {
        assert!(why.contains(d["feature"].as_str().unwrap()), "{why}");
    }
}
