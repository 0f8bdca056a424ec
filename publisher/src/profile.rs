//! Segment profiles (contract §3.2), computed from a run's assignments and its
//! features: size and value share, the spectrum and penetration per feature with their
//! index against all assigned outlets (100 = average), KPIs, the mix of the outlets'
//! attributes, and purchasing patterns (the segmenter's, when its `profiles.json` has
//! them; otherwise the segment's leading features with their top SKUs).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::tables::{Features, Run};

/// A feature's share in a segment against the average over all assigned outlets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureShare {
    /// The feature (category, brand… of the segmentation's level).
    pub feature: String,
    /// The segment's share, 0–1.
    pub share: f64,
    /// The share over all assigned outlets, 0–1.
    pub average: f64,
    /// `100 × share / average` (100 = average; 0 when the average is 0).
    pub index: f64,
}

/// One value of an attribute among a segment's outlets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeValue {
    /// The value (`Małopolska`, `traditional`, `M`…).
    pub value: String,
    /// The segment's outlets with this value.
    pub outlets: usize,
    /// Their share of the segment's outlets.
    pub share: f64,
    /// The share among all assigned outlets.
    pub average: f64,
    /// `100 × share / average`.
    pub index: f64,
}

/// The mix of one attribute (region, channel, or a master-data attribute).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeMix {
    /// `region`, `channel` or the attribute's name.
    pub attribute: String,
    /// Its values, most frequent in the segment first.
    pub values: Vec<AttributeValue>,
}

/// A segment's KPIs over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SegmentKpis {
    /// Net value of the segment's outlets.
    pub value: f64,
    /// Invoice lines.
    pub lines: i64,
    /// Mean invoices per month per outlet.
    pub invoices_per_month: f64,
    /// Net value per invoice.
    pub avg_invoice_value: f64,
    /// Mean distinct SKUs per outlet.
    pub distinct_skus: f64,
    /// Mean net value per outlet.
    pub avg_outlet_value: f64,
}

/// A segment profile without the names people set (see [`crate::snapshot`]).
#[derive(Debug, Clone, Serialize)]
pub struct SegmentProfile {
    /// The segment.
    pub segment_id: String,
    /// Outlets in the segment.
    pub outlets: usize,
    /// Share of the assigned outlets.
    pub outlet_share: f64,
    /// Share of the assigned outlets' net value.
    pub value_share: f64,
    /// Share of spend per feature, with index; by share, largest first.
    pub spectrum: Vec<FeatureShare>,
    /// Share of the segment's outlets buying each feature, with index; largest first.
    pub penetration: Vec<FeatureShare>,
    /// Two or three purchasing patterns.
    pub patterns: Vec<Value>,
    /// KPIs.
    pub kpis: SegmentKpis,
    /// The outlets' attribute mix.
    pub attributes: Vec<AttributeMix>,
}

fn index(share: f64, average: f64) -> f64 {
    if average > 0.0 {
        (100.0 * share / average * 10.0).round() / 10.0
    } else {
        0.0
    }
}

/// Per outlet × feature spend (negative totals read as zero): from `spectrum.parquet`,
/// or from `sku_spend.parquet` when the spectrum is missing.
pub fn outlet_features(f: &Features) -> HashMap<&str, BTreeMap<&str, f64>> {
    let mut m: HashMap<&str, BTreeMap<&str, f64>> = HashMap::new();
    if f.spectrum.is_empty() {
        for s in &f.sku_spend {
            *m.entry(&s.outlet_id)
                .or_default()
                .entry(&s.feature)
                .or_default() += s.net_value;
        }
    } else {
        for s in &f.spectrum {
            *m.entry(&s.outlet_id)
                .or_default()
                .entry(&s.feature)
                .or_default() += s.value;
        }
    }
    for v in m.values_mut() {
        v.values_mut().for_each(|x| *x = x.max(0.0));
    }
    m
}

/// Turns summed spend and buyer counts of a group into shares and penetrations.
fn shares(spend: &BTreeMap<&str, f64>) -> BTreeMap<String, f64> {
    let total: f64 = spend.values().sum();
    spend
        .iter()
        .map(|(k, v)| (k.to_string(), if total > 0.0 { v / total } else { 0.0 }))
        .collect()
}

/// Computes every segment's profile, in segment id order.
pub fn compute(run: &Run, f: &Features) -> Vec<SegmentProfile> {
    let of = outlet_features(f);
    let kpi: HashMap<&str, &crate::tables::OutletKpi> =
        f.kpis.iter().map(|k| (k.outlet_id.as_str(), k)).collect();
    let mut members: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in &run.assignments {
        members.entry(&a.segment_id).or_default().push(&a.outlet_id);
    }
    for p in &run.profiles {
        if let Some(Value::String(id)) = p.get("segment_id") {
            members.entry(id.as_str()).or_default();
        }
    }
    let all: Vec<&str> = run
        .assignments
        .iter()
        .map(|a| a.outlet_id.as_str())
        .collect();
    let value_of = |o: &str| -> f64 {
        kpi.get(o).map(|k| k.net_value).unwrap_or_else(|| {
            run.assignments
                .iter()
                .find(|a| a.outlet_id == o)
                .map_or(0.0, |a| a.value)
        })
    };
    let values: HashMap<&str, f64> = all.iter().map(|o| (*o, value_of(o))).collect();
    let total_value: f64 = values.values().map(|v| v.max(0.0)).sum();

    let group = |outlets: &[&str]| {
        let mut spend: BTreeMap<&str, f64> = BTreeMap::new();
        let mut buyers: BTreeMap<&str, usize> = BTreeMap::new();
        for o in outlets {
            for (feat, v) in of.get(o).into_iter().flatten() {
                *spend.entry(feat).or_default() += v;
                if *v > 0.0 {
                    *buyers.entry(feat).or_default() += 1;
                }
            }
        }
        let n = outlets.len().max(1) as f64;
        let pen: BTreeMap<String, f64> = buyers
            .iter()
            .map(|(k, b)| (k.to_string(), *b as f64 / n))
            .collect();
        (shares(&spend), pen)
    };
    let (avg_share, avg_pen) = group(&all);
    let avg_attrs = attribute_counts(&all, &kpi);
    let segmenter: HashMap<&str, &Map<String, Value>> = run
        .profiles
        .iter()
        .filter_map(|p| Some((p.get("segment_id")?.as_str()?, p)))
        .collect();

    members
        .into_iter()
        .map(|(seg, outlets)| {
            let (share, pen) = group(&outlets);
            let vs = |m: &BTreeMap<String, f64>, avg: &BTreeMap<String, f64>| {
                let mut v: Vec<FeatureShare> = avg
                    .iter()
                    .map(|(feat, a)| {
                        let s = m.get(feat).copied().unwrap_or(0.0);
                        FeatureShare {
                            feature: feat.clone(),
                            share: s,
                            average: *a,
                            index: index(s, *a),
                        }
                    })
                    .collect();
                v.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.feature.cmp(&b.feature)));
                v
            };
            let spectrum = vs(&share, &avg_share);
            let penetration = vs(&pen, &avg_pen);
            let seg_value: f64 = outlets.iter().map(|o| values[o]).sum();
            let kpis = segment_kpis(&outlets, &kpi, seg_value);
            let patterns = match segmenter.get(seg).and_then(|p| p.get("patterns")) {
                Some(Value::Array(p)) if !p.is_empty() => p.clone(),
                _ => patterns(&outlets, f, &spectrum),
            };
            let attributes = attribute_mix(&outlets, &kpi, &avg_attrs, all.len());
            SegmentProfile {
                segment_id: seg.to_owned(),
                outlets: outlets.len(),
                outlet_share: outlets.len() as f64 / all.len().max(1) as f64,
                value_share: if total_value > 0.0 {
                    seg_value.max(0.0) / total_value
                } else {
                    0.0
                },
                spectrum,
                penetration,
                patterns,
                kpis,
                attributes,
            }
        })
        .collect()
}

fn segment_kpis(
    outlets: &[&str],
    kpi: &HashMap<&str, &crate::tables::OutletKpi>,
    value: f64,
) -> SegmentKpis {
    let ks: Vec<_> = outlets.iter().filter_map(|o| kpi.get(o)).collect();
    let n = ks.len().max(1) as f64;
    let invoices: i64 = ks.iter().map(|k| k.invoices).sum();
    SegmentKpis {
        value,
        lines: ks.iter().map(|k| k.lines).sum(),
        invoices_per_month: ks.iter().map(|k| k.invoices_per_month).sum::<f64>() / n,
        avg_invoice_value: if invoices > 0 {
            value / invoices as f64
        } else {
            0.0
        },
        distinct_skus: ks.iter().map(|k| k.distinct_skus as f64).sum::<f64>() / n,
        avg_outlet_value: value / outlets.len().max(1) as f64,
    }
}

/// Attributes with more distinct values than this are identifiers, not contexts.
const MAX_ATTRIBUTE_VALUES: usize = 30;

/// Per attribute, per value: the number of outlets.
fn attribute_counts(
    outlets: &[&str],
    kpi: &HashMap<&str, &crate::tables::OutletKpi>,
) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut m: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for o in outlets {
        let Some(k) = kpi.get(o) else { continue };
        let mut add = |a: &str, v: &str| {
            *m.entry(a.to_owned())
                .or_default()
                .entry(v.to_owned())
                .or_default() += 1
        };
        add("region", k.region.as_deref().unwrap_or("(none)"));
        add("channel", k.channel.as_deref().unwrap_or("(none)"));
        for (a, v) in &k.attributes {
            add(a, v);
        }
    }
    m.retain(|_, v| v.len() <= MAX_ATTRIBUTE_VALUES);
    m
}

fn attribute_mix(
    outlets: &[&str],
    kpi: &HashMap<&str, &crate::tables::OutletKpi>,
    avg: &BTreeMap<String, BTreeMap<String, usize>>,
    all: usize,
) -> Vec<AttributeMix> {
    let counts = attribute_counts(outlets, kpi);
    let n = outlets.len().max(1) as f64;
    avg.iter()
        .map(|(attr, avg_values)| {
            let mut values: Vec<AttributeValue> = avg_values
                .iter()
                .map(|(v, total)| {
                    let c = counts
                        .get(attr)
                        .and_then(|m| m.get(v))
                        .copied()
                        .unwrap_or(0);
                    let share = c as f64 / n;
                    let average = *total as f64 / all.max(1) as f64;
                    AttributeValue {
                        value: v.clone(),
                        outlets: c,
                        share,
                        average,
                        index: index(share, average),
                    }
                })
                .collect();
            values.sort_by(|a, b| b.outlets.cmp(&a.outlets).then(a.value.cmp(&b.value)));
            AttributeMix {
                attribute: attr.clone(),
                values,
            }
        })
        .collect()
}

/// SKUs per pattern.
const PATTERN_SKUS: usize = 8;

/// Up to three patterns: the segment's over-indexed leading features, each with its
/// top SKUs and their percentage share of the pattern's spend.
fn patterns(outlets: &[&str], f: &Features, spectrum: &[FeatureShare]) -> Vec<Value> {
    let members: HashSet<&str> = outlets.iter().copied().collect();
    let mut lead: Vec<&FeatureShare> = spectrum
        .iter()
        .filter(|s| s.index >= 100.0 && s.share > 0.0)
        .collect();
    if lead.is_empty() {
        lead = spectrum.iter().filter(|s| s.share > 0.0).collect();
    }
    lead.truncate(3);
    lead.iter()
        .filter_map(|feat| {
            let mut by_sku: BTreeMap<&str, (f64, HashSet<&str>)> = BTreeMap::new();
            for s in f.sku_spend.iter().filter(|s| s.feature == feat.feature && members.contains(s.outlet_id.as_str())) {
                let e = by_sku.entry(&s.sku_id).or_default();
                e.0 += s.net_value.max(0.0);
                e.1.insert(&s.outlet_id);
            }
            let total: f64 = by_sku.values().map(|v| v.0).sum();
            if total <= 0.0 {
                return None;
            }
            let mut skus: Vec<_> = by_sku.into_iter().collect();
            skus.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0).then(a.0.cmp(b.0)));
            let buyers: HashSet<&str> = f
                .sku_spend
                .iter()
                .filter(|s| s.feature == feat.feature && members.contains(s.outlet_id.as_str()) && s.net_value > 0.0)
                .map(|s| s.outlet_id.as_str())
                .collect();
            let items: Vec<Value> = skus
                .into_iter()
                .take(PATTERN_SKUS)
                .map(|(sku, (v, _))| serde_json::json!({"sku_id": sku, "share_pct": (1000.0 * v / total).round() / 10.0}))
                .collect();
            Some(serde_json::json!({
                "name": format!("{}-led basket", feat.feature),
                "feature": feat.feature,
                "outlets_share": buyers.len() as f64 / outlets.len().max(1) as f64,
                "skus": items,
            }))
        })
        .collect()
}
