//! `spectra generate`: a synthetic distributor feed with planted segments.
//!
//! Outlets belong to planted segments, each with its own spectrum over categories;
//! outlets order on random days with seasonality, some lines are returns, a share of
//! messages is redelivered or broken, and optionally a share of outlets switches to
//! another segment's behaviour from a given day (drift). Everything is seeded; the
//! planted truth is returned beside the messages so tests and the demo can score the
//! segmentation.

mod sink;

pub use sink::{to_files, to_kafka, GenerateSummary};

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use rand::distributions::{Distribution, WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_distr::{Dirichlet, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::json;

/// What to generate.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// Seed of every random choice.
    pub seed: u64,
    /// Outlets.
    pub outlets: usize,
    /// Planted segments.
    pub segments: usize,
    /// SKUs in the catalogue.
    pub skus: usize,
    /// Distributors issuing invoices.
    pub distributors: usize,
    /// First invoice date.
    pub start: NaiveDate,
    /// Days of invoices.
    pub days: u32,
    /// Mean invoices per outlet per week.
    pub visits_per_week: f64,
    /// Share of invoice messages delivered twice.
    pub redelivery_share: f64,
    /// Share of messages that are broken (for the dead-letter topic).
    pub bad_share: f64,
    /// Share of outlets that change behaviour from `drift_day` on.
    pub drift_share: f64,
    /// Day index (from `start`) at which drift begins.
    pub drift_day: u32,
}

impl Default for FeedOptions {
    fn default() -> Self {
        Self {
            seed: 42,
            outlets: 600,
            segments: 5,
            skus: 160,
            distributors: 3,
            start: NaiveDate::from_ymd_opt(2026, 6, 1).expect("valid date"),
            days: 120,
            visits_per_week: 1.5,
            redelivery_share: 0.03,
            bad_share: 0.005,
            drift_share: 0.0,
            drift_day: 90,
        }
    }
}

/// Categories with their subcategories, and a seasonal peak (day of year) when seasonal.
const CATEGORIES: &[(&str, &[&str], Option<u32>)] = &[
    ("coffee", &["beans", "ground", "instant"], None),
    ("tea", &["black", "green", "herbal"], Some(20)),
    ("dairy", &["milk", "yoghurt", "cheese"], None),
    ("snacks", &["chips", "nuts", "crackers"], None),
    ("beverages", &["water", "juice", "soda"], Some(200)),
    ("confectionery", &["chocolate", "candy"], Some(350)),
    ("household", &["detergent", "paper"], None),
    ("personal-care", &["soap", "shampoo"], None),
    ("beer", &["lager", "craft"], Some(190)),
    ("ice-cream", &["cones", "tubs"], Some(195)),
];
const BRANDS: &[&str] = &[
    "Aroma", "Polana", "Zorza", "Mleczna", "Krak", "Sunny", "Vista", "Bory",
];
const REGIONS: &[&str] = &[
    "Mazowieckie",
    "Malopolska",
    "Slask",
    "Pomorze",
    "Wielkopolska",
];
const CHANNELS: &[&str] = &["traditional", "modern", "horeca"];

/// One SKU of the catalogue.
#[derive(Debug, Clone)]
pub struct SkuSpec {
    /// Id.
    pub sku_id: String,
    /// Category index into the category list.
    pub category: usize,
    /// Subcategory name.
    pub subcategory: String,
    /// Brand.
    pub brand: String,
    /// Unit price.
    pub price: f64,
    /// Popularity weight within its category.
    pub popularity: f64,
}

/// One outlet with its planted segment.
#[derive(Debug, Clone)]
pub struct OutletSpec {
    /// Id.
    pub outlet_id: String,
    /// Planted segment.
    pub segment: usize,
    /// Segment it drifts to, from the drift day on.
    pub drifts_to: Option<usize>,
    /// Its spectrum over categories (before drift).
    pub spectrum: Vec<f64>,
    /// Its spectrum after drift.
    pub drift_spectrum: Option<Vec<f64>>,
    /// Size multiplier of its orders.
    pub size: f64,
    /// Region, channel, size class.
    pub region: &'static str,
    /// Channel.
    pub channel: &'static str,
}

/// A generated message: key and value (`None` = null value).
pub type Generated = (Option<String>, Option<Vec<u8>>);

/// The feed: catalogue, outlets and their planted truth.
pub struct Feed {
    /// Options it was built with.
    pub opts: FeedOptions,
    /// SKUs.
    pub skus: Vec<SkuSpec>,
    /// Outlets.
    pub outlets: Vec<OutletSpec>,
    /// Planted spectra of the segments.
    pub segment_spectra: Vec<Vec<f64>>,
    rng: Xoshiro256PlusPlus,
    invoice_seq: u64,
    /// Per category: its SKUs (indices into `skus`) and their popularity as a
    /// distribution, built once (per line it cost a pass over the whole catalogue).
    by_category: Vec<Option<(Vec<usize>, WeightedIndex<f64>)>>,
}

impl Feed {
    /// Builds catalogue, segments and outlets from the seed.
    pub fn new(opts: FeedOptions) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(opts.seed);
        let nc = CATEGORIES.len();
        // Each planted segment leans on two or three categories.
        let segment_spectra: Vec<Vec<f64>> = (0..opts.segments)
            .map(|s| {
                let mut alpha = vec![0.3; nc];
                for j in 0..3 {
                    alpha[(s * 3 + j * 2 + s / nc) % nc] = 4.0 - j as f64;
                }
                Dirichlet::new(&alpha)
                    .expect("valid alpha")
                    .sample(&mut rng)
            })
            .collect();
        let skus: Vec<SkuSpec> = (0..opts.skus)
            .map(|i| {
                let category = i % nc;
                let subs = CATEGORIES[category].1;
                SkuSpec {
                    sku_id: format!("590{:010}", 1_000_000 + i * 7919),
                    category,
                    subcategory: subs[rng.gen_range(0..subs.len())].to_owned(),
                    brand: BRANDS[rng.gen_range(0..BRANDS.len())].to_owned(),
                    price: (rng.gen_range(1.5f64..40.0) * 100.0).round() / 100.0,
                    popularity: 1.0 / (1.0 + (i / nc) as f64),
                }
            })
            .collect();
        let spectrum_of = |seg: usize, rng: &mut Xoshiro256PlusPlus| -> Vec<f64> {
            let alpha: Vec<f64> = segment_spectra[seg]
                .iter()
                .map(|p| (p * 40.0).max(0.05))
                .collect();
            Dirichlet::new(&alpha).expect("valid alpha").sample(rng)
        };
        let outlets: Vec<OutletSpec> = (0..opts.outlets)
            .map(|i| {
                let segment = i % opts.segments;
                let drifts = rng.gen_bool(opts.drift_share.clamp(0.0, 1.0));
                let drifts_to = drifts
                    .then(|| (segment + 1 + rng.gen_range(0..opts.segments - 1)) % opts.segments);
                let spectrum = spectrum_of(segment, &mut rng);
                let drift_spectrum = drifts_to.map(|t| spectrum_of(t, &mut rng));
                OutletSpec {
                    outlet_id: format!("PL-{:06}", 100 + i),
                    segment,
                    drifts_to,
                    spectrum,
                    drift_spectrum,
                    size: rng.gen_range(0.5f64..2.0),
                    region: REGIONS[rng.gen_range(0..REGIONS.len())],
                    channel: CHANNELS[(segment + usize::from(rng.gen_bool(0.2))) % CHANNELS.len()],
                }
            })
            .collect();
        let by_category = (0..nc)
            .map(|c| {
                let members: Vec<usize> =
                    (0..skus.len()).filter(|&i| skus[i].category == c).collect();
                let w = WeightedIndex::new(members.iter().map(|&i| skus[i].popularity)).ok()?;
                Some((members, w))
            })
            .collect();
        Self {
            opts,
            skus,
            outlets,
            segment_spectra,
            rng,
            invoice_seq: 0,
            by_category,
        }
    }

    /// The category names.
    pub fn categories() -> Vec<&'static str> {
        CATEGORIES.iter().map(|c| c.0).collect()
    }

    /// Outlet master messages (key = outlet id).
    pub fn outlet_messages(&self) -> Vec<Generated> {
        self.outlets
            .iter()
            .map(|o| {
                let size = if o.size < 1.0 {
                    "S"
                } else if o.size < 1.5 {
                    "M"
                } else {
                    "L"
                };
                let v = json!({"outlet_id": o.outlet_id, "name": format!("Sklep {}", o.outlet_id),
                    "region": o.region, "channel": o.channel, "attributes": {"size": size}});
                (Some(o.outlet_id.clone()), Some(v.to_string().into_bytes()))
            })
            .collect()
    }

    /// SKU master messages (key = SKU id).
    pub fn sku_messages(&self) -> Vec<Generated> {
        self.skus
            .iter()
            .map(|s| {
                let cat = CATEGORIES[s.category].0;
                let v = json!({"sku_id": s.sku_id, "name": format!("{} {} {}", s.brand, cat, s.subcategory),
                    "category": cat, "subcategory": s.subcategory, "brand": s.brand});
                (Some(s.sku_id.clone()), Some(v.to_string().into_bytes()))
            })
            .collect()
    }

    /// The date of a day index.
    pub fn date(&self, day: u32) -> NaiveDate {
        self.opts.start + Duration::days(i64::from(day))
    }

    /// Invoice messages of one day (whole invoices and single lines, with redeliveries
    /// and broken messages mixed in).
    pub fn day_messages(&mut self, day: u32) -> Vec<Generated> {
        let date = self.date(day);
        let doy = date.ordinal();
        let season: Vec<f64> = CATEGORIES
            .iter()
            .map(|(_, _, peak)| match peak {
                Some(p) => {
                    let d = (f64::from(doy) - f64::from(*p))
                        .abs()
                        .min(365.0 - (f64::from(doy) - f64::from(*p)).abs());
                    0.4 + 1.2 * (-(d / 30.0).powi(2)).exp()
                }
                None => 1.0,
            })
            .collect();
        let p_visit = (self.opts.visits_per_week / 7.0).min(1.0);
        let mut out = Vec::new();
        for oi in 0..self.outlets.len() {
            if !self.rng.gen_bool(p_visit) {
                continue;
            }
            let o = &self.outlets[oi];
            let spectrum = match (&o.drift_spectrum, day >= self.opts.drift_day) {
                (Some(d), true) => d,
                _ => &o.spectrum,
            };
            let weights: Vec<f64> = spectrum
                .iter()
                .zip(&season)
                .map(|(a, b)| a * b + 1e-9)
                .collect();
            let cats = WeightedIndex::new(&weights).expect("positive weights");
            let n_lines = self.rng.gen_range(3..=10);
            self.invoice_seq += 1;
            let dist = self.rng.gen_range(0..self.opts.distributors);
            let invoice_id = format!("FV/{}/{:07}", date.format("%Y/%m"), self.invoice_seq);
            let mut lines = Vec::with_capacity(n_lines);
            for l in 0..n_lines {
                let c = cats.sample(&mut self.rng);
                let (members, popularity) = self.by_category[c]
                    .as_ref()
                    .expect("every category has a SKU (--skus at least the categories)");
                let sku = &self.skus[members[popularity.sample(&mut self.rng)]];
                let mean = (4.0 * o.size).max(0.5);
                let mut qty = Poisson::new(mean)
                    .expect("mean > 0")
                    .sample(&mut self.rng)
                    .max(1.0);
                if self.rng.gen_bool(0.02) {
                    qty = -qty.min(3.0); // a return
                }
                let value = (qty * sku.price * 100.0).round() / 100.0;
                lines.push(json!({"line_no": l + 1, "sku_id": sku.sku_id, "quantity": qty, "net_value": value}));
            }
            let key = Some(o.outlet_id.clone());
            let messages: Vec<Vec<u8>> = if self.rng.gen_bool(0.5) {
                vec![json!({"distributor_id": format!("D{:02}", dist + 1), "invoice_id": invoice_id,
                    "invoice_date": date.to_string(), "outlet_id": o.outlet_id, "currency": "PLN", "lines": lines})
                .to_string()
                .into_bytes()]
            } else {
                lines
                    .into_iter()
                    .map(|mut l| {
                        let m = l.as_object_mut().expect("object");
                        m.insert("distributor_id".into(), json!(format!("D{:02}", dist + 1)));
                        m.insert("invoice_id".into(), json!(invoice_id));
                        m.insert("invoice_date".into(), json!(date.to_string()));
                        m.insert("outlet_id".into(), json!(o.outlet_id));
                        l.to_string().into_bytes()
                    })
                    .collect()
            };
            for m in messages {
                if self
                    .rng
                    .gen_bool(self.opts.redelivery_share.clamp(0.0, 1.0))
                {
                    out.push((key.clone(), Some(m.clone())));
                }
                out.push((key.clone(), Some(m)));
            }
            if self.rng.gen_bool(self.opts.bad_share.clamp(0.0, 1.0)) {
                out.push((key.clone(), Some(self.broken(&o.outlet_id.clone(), date))));
            }
        }
        out
    }

    fn broken(&mut self, outlet: &str, date: NaiveDate) -> Vec<u8> {
        match self.rng.gen_range(0..4) {
            0 => b"{\"distributor_id\": \"D01\", \"invoice_id\": ".to_vec(),
            1 => json!({"distributor_id": "D01", "invoice_id": "X", "line_no": 1, "invoice_date": date.to_string(),
                "sku_id": "590", "quantity": 1, "net_value": 1.0})
            .to_string()
            .into_bytes(),
            2 => json!({"distributor_id": "D01", "invoice_id": "X", "line_no": 1, "invoice_date": "2026-02-30",
                "outlet_id": outlet, "sku_id": "590", "quantity": 1, "net_value": 1.0})
            .to_string()
            .into_bytes(),
            _ => json!({"distributor_id": "D01", "invoice_id": "X", "line_no": 1, "invoice_date": date.to_string(),
                "outlet_id": outlet, "sku_id": "590", "quantity": "one", "net_value": 1.0})
            .to_string()
            .into_bytes(),
        }
    }

    /// The planted truth as CSV: `outlet_id,segment,drifts_to,drift_date`.
    pub fn truth_csv(&self) -> String {
        let mut s = String::from("outlet_id,segment,drifts_to,drift_date\n");
        let drift_date = self.date(self.opts.drift_day);
        for o in &self.outlets {
            let (to, when) = match o.drifts_to {
                Some(t) => (format!("P{}", t + 1), drift_date.to_string()),
                None => (String::new(), String::new()),
            };
            s.push_str(&format!(
                "{},P{},{},{}\n",
                o.outlet_id,
                o.segment + 1,
                to,
                when
            ));
        }
        s
    }

    /// Planted segment per outlet id (after drift when `after_drift`).
    pub fn truth(&self, after_drift: bool) -> BTreeMap<String, usize> {
        self.outlets
            .iter()
            .map(|o| {
                let s = if after_drift {
                    o.drifts_to.unwrap_or(o.segment)
                } else {
                    o.segment
                };
                (o.outlet_id.clone(), s)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spectra_core::message::{parse_invoice_message, Limits};

    #[test]
    fn the_feed_is_seeded_and_mostly_valid() {
        let opts = FeedOptions {
            outlets: 50,
            days: 10,
            bad_share: 0.2,
            drift_share: 0.2,
            ..Default::default()
        };
        let mut a = Feed::new(opts.clone());
        let mut b = Feed::new(opts);
        let (mut good, mut bad) = (0, 0);
        for d in 0..10 {
            let ma = a.day_messages(d);
            assert_eq!(ma, b.day_messages(d), "same seed, same feed");
            for (_, v) in &ma {
                match parse_invoice_message(v.as_deref(), &Limits::unbounded()) {
                    Ok(_) => good += 1,
                    Err(_) => bad += 1,
                }
            }
        }
        assert!(good > 100, "{good}");
        assert!(bad > 0 && bad * 10 < good, "{bad} bad of {good}");
        assert!(a.outlets.iter().any(|o| o.drifts_to.is_some()));
        assert_eq!(a.truth_csv().lines().count(), 51);
        assert_eq!(a.outlet_messages().len(), 50);
    }
}
