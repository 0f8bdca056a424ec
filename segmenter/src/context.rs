//! Segment contexts (`contexts.parquet`, [`spectra_core::tables::context`]): every
//! segment's mix over every product level and every outlet field, for all outlets
//! and under each listed value of region, channel and distributor.
//!
//! - **Product levels**: category, subcategory, brand, SKU and each SKU attribute from
//!   the current SKU master; per value, the net value spent in the window and the
//!   outlets that bought it. SKUs the master does not know count as `(none)`.
//! - **Outlet fields** ([`outlet_fields`], shared with the profiles' attribute mix):
//!   region, channel, the main distributor and each outlet attribute; per value, the
//!   outlets and their value.
//! - **Listed values**: per dimension the [`MAX_ATTRIBUTE_VALUES`] largest over all
//!   outlets (by spend for product levels, by outlets for outlet fields), the same
//!   list for every segment and filter so they compare; the rest sum into `(other)`.
//! - **Numeric attributes** with more than [`BIN_ABOVE`] distinct values are binned
//!   into [`BINS`] quantile bins over the outlets (or SKUs) that have them, labelled by
//!   the smallest and largest value in the bin (`3 – 5`).
//! - **Filters**: the listed values of region, channel and distributor.
//!
//! Cost: one pass over the outlets' SKU spend into cells (segment × region × channel
//! × distributor), then each cell into its eight (filter, segment) targets, so the
//! work grows with the data plus the number of occupied cells, never with outlets ×
//! filters.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;

use spectra_core::tables::context::{ContextRow, FILTER_FIELDS, OUTLET, PRODUCT, TOTAL};
use spectra_core::tables::master::{attribute_text, Current};
use spectra_core::tables::profile::{MAX_ATTRIBUTE_VALUES, NO_VALUE, OTHER_VALUES};
use spectra_core::tables::runs::AssignmentRow;

use crate::features::{Bought, FeatureSet, OutletRecord};

/// Numeric attributes with more distinct values than this are binned.
pub const BIN_ABOVE: usize = 8;
/// Quantile bins of a binned attribute.
pub const BINS: usize = 5;
/// The SKU master fields that are product levels, besides the SKU itself and its
/// attributes.
const PRODUCT_FIELDS: [&str; 3] = ["category", "subcategory", "brand"];

/// One field's value per item (`None` where an item lacks the attribute).
pub type Field = (String, Vec<Option<String>>);

/// The outlet fields of the outlets `rows` of `fs`: region, channel (`(none)` when
/// missing), the main distributor (when the features carry it) and each attribute,
/// numeric attributes binned.
pub fn outlet_fields(fs: &FeatureSet, rows: &[usize]) -> Vec<Field> {
    let o = |i: usize| &fs.outlets[i];
    let fixed = |f: fn(&OutletRecord) -> &Option<String>| -> Vec<Option<String>> {
        rows.iter()
            .map(|&i| Some(f(o(i)).clone().unwrap_or_else(|| NO_VALUE.to_owned())))
            .collect()
    };
    let mut out: Vec<Field> = vec![
        ("region".into(), fixed(|o| &o.region)),
        ("channel".into(), fixed(|o| &o.channel)),
    ];
    if rows.iter().any(|&i| o(i).distributor.is_some()) {
        out.push(("distributor".into(), fixed(|o| &o.distributor)));
    }
    let names: BTreeSet<&str> = rows
        .iter()
        .flat_map(|&i| o(i).attributes.keys().map(String::as_str))
        .collect();
    for name in names {
        let values: Vec<Option<&str>> = rows
            .iter()
            .map(|&i| o(i).attributes.get(name).map(String::as_str))
            .collect();
        out.push((format!("attributes.{name}"), binned(&values)));
    }
    out
}

/// The product levels of `skus` from the SKU master: category, subcategory, brand,
/// the SKU itself and each attribute (numeric ones binned over the SKUs). Levels the
/// master never fills are left out.
pub fn product_fields(skus: &[String], master: &Current) -> Vec<Field> {
    let rec = |s: &String| master.get(s);
    let mut out: Vec<Field> = Vec::new();
    for f in PRODUCT_FIELDS {
        let v: Vec<Option<String>> = skus
            .iter()
            .map(|s| {
                Some(
                    rec(s)
                        .and_then(|r| r.fields.get(f).filter(|x| !x.is_empty()))
                        .cloned()
                        .unwrap_or_else(|| NO_VALUE.to_owned()),
                )
            })
            .collect();
        if v.iter().any(|x| x.as_deref() != Some(NO_VALUE)) {
            out.push((f.to_owned(), v));
        }
    }
    out.push(("sku".to_owned(), skus.iter().cloned().map(Some).collect()));
    let names: BTreeSet<&str> = skus
        .iter()
        .filter_map(rec)
        .flat_map(|r| r.attributes.keys().map(String::as_str))
        .collect();
    for name in names {
        let texts: Vec<Option<String>> = skus
            .iter()
            .map(|s| {
                rec(s)
                    .and_then(|r| r.attributes.get(name))
                    .and_then(attribute_text)
            })
            .collect();
        let values: Vec<Option<&str>> = texts.iter().map(Option::as_deref).collect();
        let v = binned(&values)
            .into_iter()
            .map(|x| Some(x.unwrap_or_else(|| NO_VALUE.to_owned())))
            .collect();
        out.push((format!("attributes.{name}"), v));
    }
    out
}

/// Values as labels: numeric values with more than [`BIN_ABOVE`] distinct values
/// become their quantile bin's label, anything else stays as it is.
pub fn binned(values: &[Option<&str>]) -> Vec<Option<String>> {
    let numbers: Option<Vec<f64>> = values
        .iter()
        .flatten()
        .map(|v| v.trim().parse::<f64>().ok().filter(|x| x.is_finite()))
        .collect();
    let mut sorted = numbers.unwrap_or_default();
    sorted.sort_by(f64::total_cmp);
    let mut distinct = sorted.clone();
    distinct.dedup();
    if distinct.len() <= BIN_ABOVE {
        return values.iter().map(|v| v.map(str::to_owned)).collect();
    }
    // Upper edges at the quantiles; a value goes to the first bin whose edge holds it.
    let mut edges: Vec<f64> = (1..=BINS)
        .map(|b| sorted[(b * sorted.len()).div_ceil(BINS).clamp(1, sorted.len()) - 1])
        .collect();
    edges.dedup();
    let bin = |x: f64| edges.partition_point(|e| *e < x).min(edges.len() - 1);
    let mut range = vec![(f64::INFINITY, f64::NEG_INFINITY); edges.len()];
    for &x in &sorted {
        let r = &mut range[bin(x)];
        *r = (r.0.min(x), r.1.max(x));
    }
    let label = |(lo, hi): (f64, f64)| {
        if lo == hi {
            format!("{lo}")
        } else {
            format!("{lo} – {hi}")
        }
    };
    values
        .iter()
        .map(|v| {
            v.map(|v| match v.trim().parse::<f64>() {
                Ok(x) => label(range[bin(x)]),
                Err(_) => v.to_owned(),
            })
        })
        .collect()
}

/// A dimension's listed values: value → slot, and the slot of `(other)` when there is
/// a rest.
struct Listing {
    dimension: String,
    values: Vec<String>,
    slot_of: HashMap<String, usize>,
}

impl Listing {
    /// The [`MAX_ATTRIBUTE_VALUES`] values with the largest `weight`, then `(other)`.
    fn new(dimension: String, weight: HashMap<&str, f64>) -> Self {
        let mut v: Vec<(&str, f64)> = weight.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let rest = v.len() > MAX_ATTRIBUTE_VALUES;
        let mut values: Vec<String> = v
            .iter()
            .take(MAX_ATTRIBUTE_VALUES)
            .map(|x| x.0.to_owned())
            .collect();
        let slot_of = values.iter().cloned().zip(0..).collect();
        if rest {
            values.push(OTHER_VALUES.to_owned());
        }
        Listing {
            dimension,
            values,
            slot_of,
        }
    }

    /// The slot of `value`: its own, or `(other)`'s; `None` for a value the listing
    /// never saw when there is no rest.
    fn slot(&self, value: &str) -> Option<usize> {
        match self.slot_of.get(value) {
            Some(&s) => Some(s),
            None => (self.values.len() > self.slot_of.len()).then(|| self.values.len() - 1),
        }
    }
}

/// What one cell or target adds up: outlets and value, then per product slot the
/// spend and buyers, per outlet slot the outlets and value.
#[derive(Clone)]
struct Sums {
    outlets: i64,
    value: f64,
    spend: Vec<f64>,
    buyers: Vec<i64>,
}

impl Sums {
    fn new(slots: usize) -> Self {
        Sums {
            outlets: 0,
            value: 0.0,
            spend: vec![0.0; slots],
            buyers: vec![0; slots],
        }
    }

    fn add(&mut self, o: &Sums) {
        self.outlets += o.outlets;
        self.value += o.value;
        for (a, b) in self.spend.iter_mut().zip(&o.spend) {
            *a += b;
        }
        for (a, b) in self.buyers.iter_mut().zip(&o.buyers) {
            *a += b;
        }
    }
}

/// The contexts rows of a run from its assignments (outlets of `fs`, each with its
/// segment and value).
pub fn for_assignments(
    fs: &FeatureSet,
    assignments: &[AssignmentRow],
    master: &Current,
) -> Vec<ContextRow> {
    let ids: Vec<String> = assignments
        .iter()
        .map(|a| a.segment_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (mut rows, mut labels, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for a in assignments {
        if let Some(i) = fs.row(&a.outlet_id) {
            rows.push(i);
            labels.push(ids.binary_search(&a.segment_id).unwrap_or_default());
            values.push(a.value);
        }
    }
    compute(fs, &rows, &labels, &ids, &values, master)
}

/// The contexts rows of a run: `rows` are the assigned outlets of `fs` (row `r` in
/// segment `segment_ids[labels[r]]`, worth `values[r]`); `master` the current SKU
/// master.
pub fn compute(
    fs: &FeatureSet,
    rows: &[usize],
    labels: &[usize],
    segment_ids: &[String],
    values: &[f64],
    master: &Current,
) -> Vec<ContextRow> {
    let outlet = outlet_fields(fs, rows);
    let product = product_fields(&fs.skus, master);
    // Listings: product levels by spend over all outlets, outlet fields by outlets.
    let mut listings: Vec<Listing> = Vec::new();
    // Each SKU's weight once (a bought SKU weighs more than nothing), then summed per
    // value of each level: one pass over the outlets' purchases, not one per level.
    let mut sku_weight = vec![0.0f64; fs.skus.len()];
    for &i in rows {
        for &Bought {
            sku: s, value: v, ..
        } in &fs.sku_spend[i]
        {
            sku_weight[s as usize] += v.max(0.0) + 1e-12;
        }
    }
    for (name, per_sku) in &product {
        let mut w: HashMap<&str, f64> = HashMap::default();
        for (s, &x) in sku_weight.iter().enumerate().filter(|(_, x)| **x > 0.0) {
            *w.entry(per_sku[s].as_deref().unwrap_or(NO_VALUE))
                .or_default() += x;
        }
        listings.push(Listing::new(format!("{PRODUCT}{name}"), w));
    }
    let product_dims = listings.len();
    for (name, per_row) in &outlet {
        let mut w: HashMap<&str, f64> = HashMap::default();
        for v in per_row.iter().flatten() {
            *w.entry(v).or_default() += 1.0;
        }
        listings.push(Listing::new(format!("{OUTLET}{name}"), w));
    }
    let offsets: Vec<usize> = listings
        .iter()
        .scan(0, |acc, l| {
            let o = *acc;
            *acc += l.values.len();
            Some(o)
        })
        .collect();
    let slots: usize = listings.iter().map(|l| l.values.len()).sum();
    // Per SKU, its slot in each product level.
    let sku_slots: Vec<Vec<usize>> = (0..fs.skus.len())
        .map(|s| {
            product
                .iter()
                .enumerate()
                .filter_map(|(d, (_, per_sku))| {
                    let slot = listings[d].slot(per_sku[s].as_deref().unwrap_or(NO_VALUE))?;
                    Some(offsets[d] + slot)
                })
                .collect()
        })
        .collect();
    // Filters: the listed values of region, channel and distributor (not `(other)`).
    let filter_fields: Vec<(usize, &Listing)> = FILTER_FIELDS
        .iter()
        .filter_map(|f| {
            let d = outlet.iter().position(|(n, _)| n == f)?;
            Some((d, &listings[product_dims + d]))
        })
        .collect();
    // Cells: (segment, one slot per filter field, `usize::MAX` when not listed).
    // In key order: the targets add their cells up in one order, so a rerun gives the
    // same sums to the bit (a hash map's order differs between maps).
    let mut cells: BTreeMap<Vec<usize>, Sums> = BTreeMap::new();
    let mut seen = vec![usize::MAX; slots];
    for (r, &i) in rows.iter().enumerate() {
        let mut key = vec![labels[r]];
        for (d, l) in &filter_fields {
            let v = outlet[*d].1[r].as_deref().unwrap_or(NO_VALUE);
            key.push(l.slot_of.get(v).copied().unwrap_or(usize::MAX));
        }
        let cell = cells.entry(key).or_insert_with(|| Sums::new(slots));
        cell.outlets += 1;
        cell.value += values[r];
        for &Bought {
            sku: s, value: v, ..
        } in &fs.sku_spend[i]
        {
            for &slot in &sku_slots[s as usize] {
                cell.spend[slot] += v;
                if seen[slot] != r {
                    seen[slot] = r;
                    cell.buyers[slot] += 1;
                }
            }
        }
        for (d, (_, per_row)) in outlet.iter().enumerate() {
            let listing = &listings[product_dims + d];
            if let Some(slot) = per_row[r].as_deref().and_then(|v| listing.slot(v)) {
                let slot = offsets[product_dims + d] + slot;
                cell.buyers[slot] += 1;
                cell.spend[slot] += values[r];
            }
        }
    }
    // Targets: (filter, segment or all).
    let all = segment_ids.len();
    let mut targets: BTreeMap<(String, usize), Sums> = BTreeMap::new();
    for (key, sums) in &cells {
        let mut filters = vec![String::new()];
        for ((d, l), &slot) in filter_fields.iter().zip(&key[1..]) {
            if slot != usize::MAX {
                filters.push(format!("{}={}", outlet[*d].0, l.values[slot]));
            }
        }
        for f in filters {
            for s in [key[0], all] {
                targets
                    .entry((f.clone(), s))
                    .or_insert_with(|| Sums::new(slots))
                    .add(sums);
            }
        }
    }
    let mut out = Vec::new();
    for ((filter, s), sums) in targets {
        let segment_id = if s == all {
            String::new()
        } else {
            segment_ids[s].clone()
        };
        let row = |dimension: &str, value: &str, outlets: i64, spend: f64| ContextRow {
            filter: filter.clone(),
            segment_id: segment_id.clone(),
            dimension: dimension.to_owned(),
            value: value.to_owned(),
            outlets,
            spend,
        };
        out.push(row(TOTAL, "", sums.outlets, sums.value));
        for (l, offset) in listings.iter().zip(&offsets) {
            for (k, v) in l.values.iter().enumerate() {
                let (outlets, spend) = (sums.buyers[offset + k], sums.spend[offset + k]);
                if outlets > 0 || spend != 0.0 {
                    out.push(row(&l.dimension, v, outlets, spend));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::bought;

    #[test]
    fn numbers_with_many_values_are_binned_by_quantile_and_the_rest_stay() {
        // 1..=10: ten distinct values, five bins of two.
        let texts: Vec<String> = (1..=10).map(|x| x.to_string()).collect();
        let mut values: Vec<Option<&str>> = texts.iter().map(|s| Some(s.as_str())).collect();
        values.push(None);
        let b = binned(&values);
        assert_eq!(b[0].as_deref(), Some("1 – 2"));
        assert_eq!(b[1].as_deref(), Some("1 – 2"));
        assert_eq!(b[2].as_deref(), Some("3 – 4"));
        assert_eq!(b[9].as_deref(), Some("9 – 10"));
        assert_eq!(b[10], None);
        let distinct: BTreeSet<_> = b.iter().flatten().collect();
        assert_eq!(distinct.len(), BINS);
        // Eight distinct numbers, or any text among them, stay as they are.
        let few: Vec<Option<&str>> = ["1", "2", "3", "4", "5", "6", "7", "8", "8"]
            .into_iter()
            .map(Some)
            .collect();
        assert_eq!(binned(&few)[7].as_deref(), Some("8"));
        let mut mixed = values.clone();
        mixed.push(Some("M"));
        assert_eq!(binned(&mixed)[0].as_deref(), Some("1"));
        // A skewed attribute: ties collapse edges, never an empty bin.
        let skew: Vec<String> = (0..100)
            .map(|i| if i < 70 { "0".into() } else { i.to_string() })
            .collect();
        let sv: Vec<Option<&str>> = skew.iter().map(|s| Some(s.as_str())).collect();
        let b = binned(&sv);
        assert_eq!(b[0].as_deref(), Some("0"));
        let labels: BTreeSet<_> = b.iter().flatten().collect();
        assert!(labels.len() >= 3 && labels.len() <= BINS, "{labels:?}");
    }

    #[test]
    fn contexts_add_up_per_segment_filter_and_dimension() {
        use ndarray::Array2;
        use spectra_core::tables::master::Record;
        let outlet = |id: &str, region: &str, dist: &str| OutletRecord {
            outlet_id: id.into(),
            region: Some(region.into()),
            distributor: Some(dist.into()),
            ..Default::default()
        };
        let fs = FeatureSet {
            as_of: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            features: vec!["f".into()],
            outlets: vec![
                outlet("a", "North", "D1"),
                outlet("b", "North", "D2"),
                outlet("c", "South", "D1"),
            ],
            spend: Array2::zeros((3, 1)),
            skus: vec!["k1".into(), "k2".into(), "k3".into()],
            sku_spend: bought(&[&[(0, 10.0), (1, 5.0)], &[(0, 2.0)], &[(1, 1.0), (2, 4.0)]]),
            history: None,
        };
        let sku = |brand: &str| Record {
            fields: [("brand".to_owned(), brand.to_owned())].into(),
            ..Default::default()
        };
        let master: Current = [("k1".into(), sku("A")), ("k2".into(), sku("A"))].into();
        let ids = vec!["S1".to_owned(), "S2".to_owned()];
        let rows = compute(
            &fs,
            &[0, 1, 2],
            &[0, 0, 1],
            &ids,
            &[15.0, 2.0, 5.0],
            &master,
        );
        let get = |f: &str, s: &str, d: &str, v: &str| {
            rows.iter()
                .find(|r| r.filter == f && r.segment_id == s && r.dimension == d && r.value == v)
                .map(|r| (r.outlets, r.spend))
        };
        // S1 = a, b: brand A 17 from both; k3 has no brand in the master.
        assert_eq!(get("", "S1", "product.brand", "A"), Some((2, 17.0)));
        assert_eq!(get("", "", "product.brand", "A"), Some((3, 18.0)));
        assert_eq!(get("", "", "product.brand", NO_VALUE), Some((1, 4.0)));
        assert_eq!(get("", "S1", "total", ""), Some((2, 17.0)));
        // Under region=North only a and b count; under distributor=D1 only a and c.
        assert_eq!(get("region=North", "", "total", ""), Some((2, 17.0)));
        assert_eq!(get("region=North", "S2", "total", ""), None);
        assert_eq!(
            get("distributor=D1", "", "product.sku", "k2"),
            Some((2, 6.0))
        );
        assert_eq!(
            get("distributor=D1", "S2", "outlet.region", "South"),
            Some((1, 5.0))
        );
        assert_eq!(get("", "S1", "outlet.distributor", "D2"), Some((1, 2.0)));
    }

    /// Each target adds up the cells under it (segment × region × distributor ×
    /// channel): made twice from the same features the sums are the same to the bit.
    #[test]
    fn contexts_are_the_same_on_every_call() {
        use ndarray::Array2;
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(9);
        let n = 300;
        let outlets = (0..n)
            .map(|i| OutletRecord {
                outlet_id: format!("O{i:03}"),
                region: Some(format!("R{}", rng.gen_range(0..6))),
                channel: Some(format!("C{}", rng.gen_range(0..4))),
                distributor: Some(format!("D{}", rng.gen_range(0..5))),
                ..Default::default()
            })
            .collect();
        let sku_spend = (0..n)
            .map(|_| {
                let mut list = Vec::new();
                for sku in 0..40u32 {
                    if rng.gen_bool(0.3) {
                        let value = rng.gen_range(0.01..100.0);
                        list.push(crate::features::Bought {
                            sku,
                            quantity: 1.0,
                            value,
                        });
                    }
                }
                list
            })
            .collect();
        let fs = FeatureSet {
            as_of: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            features: vec!["f".into()],
            outlets,
            spend: Array2::zeros((n, 1)),
            skus: (0..40).map(|k| format!("K{k:02}")).collect(),
            sku_spend,
            history: None,
        };
        let rows: Vec<usize> = (0..n).collect();
        let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
        let values: Vec<f64> = (0..n).map(|_| rng.gen_range(1.0..1000.0)).collect();
        let ids = vec!["S1".to_owned(), "S2".to_owned(), "S3".to_owned()];
        let first = compute(&fs, &rows, &labels, &ids, &values, &Current::default());
        assert!(!first.is_empty());
        for _ in 0..10 {
            assert!(compute(&fs, &rows, &labels, &ids, &values, &Current::default()) == first);
        }
    }
}
