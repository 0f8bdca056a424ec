//! Segment profiles (contract §3.2) — the one profile engine: computed here, once per
//! run, written to the run's `profiles.json` and published unchanged (the publisher
//! only puts the names people set in place of the proposed ones). Size and value
//! share, the spectrum and the penetration per feature with their index against all
//! assigned outlets (100 = average), KPIs, and the mix of the outlets' region, channel,
//! main distributor and attributes (numeric ones binned, [`crate::context::binned`]).
//! Names and patterns are added by the pipeline.

use std::collections::{BTreeMap, HashMap};

use ndarray::Array2;
use spectra_core::tables::profile::{
    index, AttributeMix, AttributeValue, FeatureShare, SegmentKpis, MAX_ATTRIBUTE_VALUES,
    OTHER_VALUES,
};

use crate::features::FeatureSet;

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

/// A profile without its ids, name and patterns.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileParts {
    /// Outlets assigned.
    pub outlets: usize,
    /// Share of the assigned outlets.
    pub outlet_share: f64,
    /// Net value of the segment's outlets.
    pub value: f64,
    /// Share of the assigned outlets' value.
    pub value_share: f64,
    /// Spend shares with index, largest first.
    pub spectrum: Vec<FeatureShare>,
    /// Penetration with index, largest first.
    pub penetration: Vec<FeatureShare>,
    /// KPIs.
    pub kpis: SegmentKpis,
    /// Attribute mix.
    pub attributes: Vec<AttributeMix>,
}

/// Features of `shares` (one row) against `average`, for the features with an average
/// above 0, largest share first.
fn versus(features: &[String], shares: &[f64], average: &[f64]) -> Vec<FeatureShare> {
    let mut v: Vec<FeatureShare> = (0..features.len())
        .filter(|&j| average[j] > 0.0)
        .map(|j| FeatureShare {
            feature: features[j].clone(),
            share: shares[j],
            average: average[j],
            index: index(shares[j], average[j]),
        })
        .collect();
    v.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.feature.cmp(&b.feature)));
    v
}

/// An attribute with its listed values and outlet counts, and the outlets of the
/// values summed into `(other)`.
type Listed<'a> = (&'a str, Vec<(&'a str, usize)>, usize);

/// The attribute mixes of every segment: per attribute, the [`MAX_ATTRIBUTE_VALUES`]
/// most frequent values over all assigned outlets (the same list for every segment, so
/// segments compare), the rest summed into [`OTHER_VALUES`].
fn attribute_mixes(
    fs: &FeatureSet,
    rows: &[usize],
    labels: &[usize],
    k: usize,
    count: &[usize],
) -> Vec<Vec<AttributeMix>> {
    let n = rows.len().max(1) as f64;
    // attribute → value → outlets, over all and per segment: the outlet fields of the
    // contexts (region, channel, distributor, attributes with numbers binned), each
    // attribute under its own name.
    let fields = crate::context::outlet_fields(fs, rows);
    let mut all: BTreeMap<&str, HashMap<&str, usize>> = BTreeMap::new();
    let mut per: Vec<HashMap<(&str, &str), usize>> = vec![HashMap::new(); k];
    for (name, per_row) in &fields {
        let a = name.strip_prefix("attributes.").unwrap_or(name);
        for (v, &s) in per_row.iter().zip(labels) {
            if let Some(v) = v.as_deref() {
                *all.entry(a).or_default().entry(v).or_default() += 1;
                *per[s].entry((a, v)).or_default() += 1;
            }
        }
    }
    // Per attribute: the listed values and the set summed into "(other)".
    let listed: Vec<Listed<'_>> = all
        .iter()
        .map(|(a, values)| {
            let mut v: Vec<(&str, usize)> = values.iter().map(|(x, c)| (*x, *c)).collect();
            v.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
            let rest: usize = v.iter().skip(MAX_ATTRIBUTE_VALUES).map(|x| x.1).sum();
            v.truncate(MAX_ATTRIBUTE_VALUES);
            (*a, v, rest)
        })
        .collect();
    (0..k)
        .map(|s| {
            let c = count[s].max(1) as f64;
            listed
                .iter()
                .map(|(a, values, rest_all)| {
                    let value = |name: &str, outlets: usize, total: usize| {
                        let (share, average) = (outlets as f64 / c, total as f64 / n);
                        AttributeValue {
                            value: name.to_owned(),
                            outlets,
                            share,
                            average,
                            index: index(share, average),
                        }
                    };
                    let mut out: Vec<AttributeValue> = values
                        .iter()
                        .map(|(v, total)| {
                            value(v, per[s].get(&(*a, *v)).copied().unwrap_or(0), *total)
                        })
                        .collect();
                    if *rest_all > 0 {
                        let listed_here: usize = out.iter().map(|v| v.outlets).sum();
                        let with_attr: usize = per[s]
                            .iter()
                            .filter(|((x, _), _)| x == a)
                            .map(|(_, c)| c)
                            .sum();
                        out.push(value(OTHER_VALUES, with_attr - listed_here, *rest_all));
                    }
                    out.sort_by(|x, y| y.outlets.cmp(&x.outlets).then(x.value.cmp(&y.value)));
                    AttributeMix {
                        attribute: (*a).to_owned(),
                        values: out,
                    }
                })
                .collect()
        })
        .collect()
}

/// The parts of every segment's profile for the assignment `labels` of `rows`
/// (`values[r]` = the value of `rows[r]`).
pub fn profile_parts(
    fs: &FeatureSet,
    rows: &[usize],
    labels: &[usize],
    values: &[f64],
    k: usize,
) -> Vec<ProfileParts> {
    let n = rows.len().max(1) as f64;
    let nf = fs.features.len();
    let shares = segment_shares(fs, rows, labels, k);
    let overall = segment_shares(fs, rows, &vec![0; rows.len()], 1);
    let mut count = vec![0usize; k];
    let mut value = vec![0.0; k];
    let mut kpis = vec![SegmentKpis::default(); k];
    let mut net = vec![0.0; k];
    let mut pen = Array2::<f64>::zeros((k, nf));
    let mut pen_all = vec![0.0; nf];
    for (r, (&i, &s)) in rows.iter().zip(labels).enumerate() {
        count[s] += 1;
        value[s] += values[r];
        let o = &fs.outlets[i].kpis;
        let m = &mut kpis[s];
        m.lines += o.lines as i64;
        m.invoices += o.invoices as i64;
        m.invoices_per_month += o.invoices_per_month;
        m.distinct_skus += o.distinct_skus;
        net[s] += o.net_value;
        for j in (0..nf).filter(|&j| fs.spend[[i, j]] > 0.0) {
            pen[[s, j]] += 1.0;
            pen_all[j] += 1.0;
        }
    }
    let total_value: f64 = value.iter().map(|v| v.max(0.0)).sum();
    let pen_avg: Vec<f64> = pen_all.iter().map(|p| p / n).collect();
    let mut mixes = attribute_mixes(fs, rows, labels, k, &count).into_iter();
    (0..k)
        .map(|s| {
            let c = count[s].max(1) as f64;
            let m = kpis[s];
            let pen_s: Vec<f64> = pen.row(s).iter().map(|p| p / c).collect();
            ProfileParts {
                outlets: count[s],
                outlet_share: count[s] as f64 / n,
                value: value[s],
                value_share: if total_value > 0.0 {
                    value[s].max(0.0) / total_value
                } else {
                    0.0
                },
                spectrum: versus(
                    &fs.features,
                    &shares.row(s).to_vec(),
                    &overall.row(0).to_vec(),
                ),
                penetration: versus(&fs.features, &pen_s, &pen_avg),
                kpis: SegmentKpis {
                    value: value[s],
                    lines: m.lines,
                    invoices: m.invoices,
                    invoices_per_month: m.invoices_per_month / c,
                    avg_invoice_value: if m.invoices > 0 {
                        net[s] / m.invoices as f64
                    } else {
                        0.0
                    },
                    distinct_skus: m.distinct_skus / c,
                    avg_outlet_value: value[s] / c,
                },
                attributes: mixes.next().unwrap_or_default(),
            }
        })
        .collect()
}
