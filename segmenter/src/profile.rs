//! Segment profiles (contract §3.2), written to a run's `profiles.json`: size, the
//! spectrum with its index against all assigned outlets (100 = average), penetration,
//! mean KPIs, the attribute mix with its index, purchasing patterns, and the name.
//! Description and tags stay empty: people set them through the publisher's API.

use std::collections::BTreeMap;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::features::FeatureSet;
use crate::patterns::Pattern;

/// One segment's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Segmentation name.
    pub segmentation: String,
    /// Run that produced the profile.
    pub run_id: String,
    /// As-of date of the features.
    pub as_of: String,
    /// Stable segment id.
    pub segment_id: String,
    /// Automatic name, kept across runs while the segment keeps its character.
    pub name: String,
    /// The over-indexed features the name was made from.
    pub name_features: Vec<String>,
    /// Empty: set by people through the publisher's API.
    pub description: String,
    /// Empty: set by people through the publisher's API.
    pub tags: Vec<String>,
    /// Outlets and value.
    pub size: Size,
    /// Per feature with spend anywhere: share, index, penetration; by share, largest first.
    pub spectrum: Vec<FeatureProfile>,
    /// Mean KPIs of the segment's outlets.
    pub kpis: KpiMeans,
    /// Region, channel and attribute values of the segment's outlets, with index.
    pub attributes: Vec<AttributeShare>,
    /// Two or three purchasing patterns (one for very small segments).
    pub patterns: Vec<Pattern>,
}

/// Size of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Size {
    /// Outlets assigned.
    pub outlets: usize,
    /// Share of the segmentation's assigned outlets.
    pub outlet_share: f64,
    /// Net value of the outlets in the window.
    pub value: f64,
    /// Share of the segmentation's value.
    pub value_share: f64,
}

/// One feature of a segment's spectrum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    /// Feature (value of the segmentation's level).
    pub feature: String,
    /// Segment's share of spend on the feature.
    pub share: f64,
    /// `100 × share / share over all assigned outlets`.
    pub index: f64,
    /// Share of the segment's outlets buying the feature.
    pub penetration: f64,
    /// `100 × penetration / penetration over all assigned outlets`.
    pub penetration_index: f64,
}

/// Mean KPIs of a segment's outlets.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct KpiMeans {
    /// Net value in the window.
    pub value: f64,
    /// Invoices per month.
    pub invoices_per_month: f64,
    /// Average invoice value.
    pub avg_invoice_value: f64,
    /// Distinct SKUs.
    pub distinct_skus: f64,
}

/// One value of an outlet attribute within a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeShare {
    /// `region`, `channel` or the attribute's name.
    pub attribute: String,
    /// The value.
    pub value: String,
    /// Share of the segment's outlets with this value.
    pub share: f64,
    /// `100 × share / share over all assigned outlets`.
    pub index: f64,
}

/// Most values listed per attribute and segment (by count).
const MAX_ATTRIBUTE_VALUES: usize = 20;

/// Spend-weighted share of each feature per segment (`k × F`): the segment's summed
/// positive spend on the feature over its summed positive spend.
pub fn segment_shares(fs: &FeatureSet, rows: &[usize], labels: &[usize], k: usize) -> Array2<f64> {
    let mut m = Array2::<f64>::zeros((k, fs.features.len()));
    for (&i, &s) in rows.iter().zip(labels) {
        for (j, v) in fs.spend.row(i).iter().enumerate() {
            m[[s, j]] += v.max(0.0);
        }
    }
    for mut r in m.rows_mut() {
        let t: f64 = r.sum();
        if t > 0.0 {
            r.mapv_inplace(|v| v / t);
        }
    }
    m
}

/// `100 × part / whole`, 0 when the whole is 0.
pub(crate) fn index(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

/// Everything of a profile but its name and patterns, for segment `s` of the
/// assignment `labels` of `rows` (`values[r]` = value of `rows[r]`).
pub(crate) struct ProfileParts {
    pub size: Size,
    pub spectrum: Vec<FeatureProfile>,
    pub kpis: KpiMeans,
    pub attributes: Vec<AttributeShare>,
}

/// Builds the parts of every segment's profile.
pub(crate) fn profile_parts(
    fs: &FeatureSet,
    rows: &[usize],
    labels: &[usize],
    values: &[f64],
    k: usize,
) -> Vec<ProfileParts> {
    let n = rows.len().max(1) as f64;
    let shares = segment_shares(fs, rows, labels, k);
    let overall = segment_shares(fs, rows, &vec![0; rows.len()], 1);
    let buys = |i: usize, j: usize| fs.spend[[i, j]] > 0.0;
    let nf = fs.features.len();
    let mut count = vec![0usize; k];
    let mut value = vec![0.0; k];
    let mut kpis = vec![KpiMeans::default(); k];
    let mut pen = Array2::<f64>::zeros((k, nf));
    let mut pen_all = vec![0.0; nf];
    let mut attrs: Vec<BTreeMap<(String, String), usize>> = vec![BTreeMap::new(); k];
    let mut attrs_all: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (r, (&i, &s)) in rows.iter().zip(labels).enumerate() {
        count[s] += 1;
        value[s] += values[r];
        let o = &fs.outlets[i];
        let m = &mut kpis[s];
        m.value += o.kpis.net_value;
        m.invoices_per_month += o.kpis.invoices_per_month;
        m.avg_invoice_value += o.kpis.avg_invoice_value;
        m.distinct_skus += o.kpis.distinct_skus;
        for j in (0..nf).filter(|&j| buys(i, j)) {
            pen[[s, j]] += 1.0;
            pen_all[j] += 1.0;
        }
        let fixed = [("region", &o.region), ("channel", &o.channel)];
        let pairs = fixed
            .into_iter()
            .filter_map(|(a, v)| v.as_ref().map(|v| (a.to_owned(), v.clone())))
            .chain(o.attributes.iter().map(|(a, v)| (a.clone(), v.clone())));
        for p in pairs {
            *attrs[s].entry(p.clone()).or_default() += 1;
            *attrs_all.entry(p).or_default() += 1;
        }
    }
    let total_value: f64 = value.iter().sum();
    (0..k)
        .map(|s| {
            let c = count[s].max(1) as f64;
            let mut spectrum: Vec<FeatureProfile> = (0..nf)
                .filter(|&j| overall[[0, j]] > 0.0)
                .map(|j| {
                    let p = pen[[s, j]] / c;
                    FeatureProfile {
                        feature: fs.features[j].clone(),
                        share: shares[[s, j]],
                        index: index(shares[[s, j]], overall[[0, j]]),
                        penetration: p,
                        penetration_index: index(p, pen_all[j] / n),
                    }
                })
                .collect();
            spectrum.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.feature.cmp(&b.feature)));
            let mut by_attr: BTreeMap<&str, Vec<AttributeShare>> = BTreeMap::new();
            for ((a, v), &m) in &attrs[s] {
                let share = m as f64 / c;
                by_attr.entry(a).or_default().push(AttributeShare {
                    attribute: a.clone(),
                    value: v.clone(),
                    share,
                    index: index(share, attrs_all[&(a.clone(), v.clone())] as f64 / n),
                });
            }
            let attributes = by_attr
                .into_values()
                .flat_map(|mut v| {
                    v.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.value.cmp(&b.value)));
                    v.truncate(MAX_ATTRIBUTE_VALUES);
                    v
                })
                .collect();
            let m = kpis[s];
            ProfileParts {
                size: Size {
                    outlets: count[s],
                    outlet_share: count[s] as f64 / n,
                    value: value[s],
                    value_share: if total_value > 0.0 {
                        value[s] / total_value
                    } else {
                        0.0
                    },
                },
                spectrum,
                kpis: KpiMeans {
                    value: m.value / c,
                    invoices_per_month: m.invoices_per_month / c,
                    avg_invoice_value: m.avg_invoice_value / c,
                    distinct_skus: m.distinct_skus / c,
                },
                attributes,
            }
        })
        .collect()
}
