//! Shared by the segmenter's service tests: planted outlets, their purchases written
//! in the raw layout ingest writes (README "Tables") with the real aggregator run over
//! them, and readers of the runs the service writes.

#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{json, Value};
use spectra_core::config::SegmentationConfig;
use spectra_core::master::{Outlet, Sku};
use spectra_core::message::InvoiceLine;
use spectra_core::schema::{
    outlet_schema, raw_invoice_schema, sku_schema, to_parquet, OutletBuilder, RawInvoiceBuilder,
    SkuBuilder, Source,
};
use spectra_core::service::Context;
use spectra_core::tables::read_rows;
use spectra_core::tables::runs::AssignmentRow;
use spectra_core::{Config, Storage};
use spectra_segmenter::{run, SegmentOptions, Summary};
use tokio_util::sync::CancellationToken;

/// Outlet sizes, an attribute.
pub const SIZES: [&str; 3] = ["S", "M", "L"];
/// Categories per planted segment.
pub const OWN: usize = 4;

/// An outlet of the fixture: which planted segment it follows and how much it buys.
#[derive(Clone, Debug)]
pub struct Planted {
    pub id: String,
    pub segment: usize,
    pub scale: f64,
}

pub fn category(segment: usize, c: usize) -> String {
    format!("cat{:02}", segment * OWN + c)
}

/// One day's purchases of the `n`-th outlet `o`, as (SKU, category, net value) lines: it
/// buys its segment's own categories (log-normal noise seeded per outlet, so an
/// unchanged outlet buys the same on every date) and a little of a shared `staples`
/// category; two SKUs per category, split by the outlet's parity (the purchasing
/// patterns). The number and order of the lines depend on the outlet alone, not on
/// its segment.
pub fn purchases(n: usize, o: &Planted) -> Vec<(String, String, f64)> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(n as u64 * 7919 + 13);
    let mut spend: Vec<(String, f64)> = Vec::new();
    for c in 0..OWN {
        let (u1, u2): (f64, f64) = (rng.gen_range(1e-9..1.0), rng.gen());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        if rng.gen_bool(0.9) {
            spend.push((category(o.segment, c), o.scale * (0.4 * z).exp()));
        }
    }
    spend.push(("staples".into(), o.scale * rng.gen_range(0.2..0.6)));
    let heavy = if n.is_multiple_of(2) { 0.8 } else { 0.2 };
    spend
        .into_iter()
        .flat_map(|(f, v)| {
            [(1, heavy), (2, 1.0 - heavy)].map(|(s, w)| (format!("{f}-sku{s}"), f.clone(), v * w))
        })
        .collect()
}

/// The master record of the `n`-th outlet.
pub fn master(n: usize, o: &Planted) -> Outlet {
    Outlet {
        outlet_id: o.id.clone(),
        name: Some(format!("Outlet {}", o.id)),
        region: Some(["north", "south"][n % 2].into()),
        channel: Some(
            if o.segment < 2 {
                "traditional"
            } else {
                "modern"
            }
            .into(),
        ),
        attributes: Some(json!({ "size": SIZES[n % 3] }).to_string()),
        deleted: false,
    }
}

/// The input side of one store: invoice lines and master data written as ingest writes
/// them, and the real aggregator run over them.
pub struct Feed {
    pub cfg: Config,
    pub storage: Storage,
    /// The next offset (and message timestamp) on the simulated topics: later writes
    /// are later versions.
    pub offset: i64,
}

impl Feed {
    pub fn new(cfg: &Config) -> Self {
        Self {
            cfg: cfg.clone(),
            storage: Storage::from_url(&cfg.storage.url).unwrap(),
            offset: 0,
        }
    }

    pub fn source(&mut self, topic: &'static str) -> Source<'static> {
        self.offset += 1;
        Source {
            topic,
            partition: 0,
            offset: self.offset,
            timestamp_ms: 1_700_000_000_000 + self.offset,
        }
    }

    /// Writes one invoice per outlet dated `day` and the master data of the outlets
    /// and SKUs, then runs one aggregator pass as of `day`. An outlet's lines of a day
    /// have the same identities whatever it buys, so writing a day again corrects it
    /// (the later version of each line wins).
    pub async fn day(&mut self, outlets: &[Planted], day: NaiveDate) {
        let first = self.offset + 1;
        let (mut lines, mut records) = (RawInvoiceBuilder::default(), OutletBuilder::default());
        let mut categories: BTreeMap<String, String> = BTreeMap::new();
        for (n, o) in outlets.iter().enumerate() {
            let invoice = format!("{}/{day}", o.id);
            for (k, (sku, feature, value)) in purchases(n, o).into_iter().enumerate() {
                let line = InvoiceLine {
                    distributor_id: "D1".into(),
                    invoice_id: invoice.as_str().into(),
                    line_no: k as i64 + 1,
                    invoice_date: day,
                    outlet_id: o.id.as_str().into(),
                    sku_id: sku.as_str().into(),
                    quantity: 1.0,
                    net_value: value,
                    currency: None,
                };
                let src = self.source("invoices");
                lines.append(&line, &src, 0);
                categories.insert(sku, feature);
            }
            let src = self.source("outlets");
            records.append(&master(n, o), &src);
        }
        let mut skus = SkuBuilder::default();
        for (sku, feature) in &categories {
            let src = self.source("skus");
            skus.append(
                &Sku {
                    sku_id: sku.clone(),
                    name: Some(format!("{feature} {sku}")),
                    category: Some(feature.clone()),
                    subcategory: None,
                    brand: None,
                    attributes: None,
                    deleted: false,
                },
                &src,
            );
        }
        let last = self.offset;
        let put = |path: String, schema, batch: RecordBatch| {
            let data = to_parquet(schema, &[batch]).unwrap();
            let storage = self.storage.clone();
            async move { storage.put(&path, data).await.unwrap() }
        };
        put(
            format!("raw/invoices/date={day}/invoices-0-{first}-{last}.parquet"),
            raw_invoice_schema(),
            lines.finish(),
        )
        .await;
        put(
            format!("master/outlets/outlets-0-{first}-{last}.parquet"),
            outlet_schema(),
            records.finish(),
        )
        .await;
        put(
            format!("master/skus/skus-0-{first}-{last}.parquet"),
            sku_schema(),
            skus.finish(),
        )
        .await;
        self.aggregate(day).await;
    }

    /// One aggregator pass as of `day`, over what is written.
    pub async fn aggregate(&self, day: NaiveDate) {
        let summary = spectra_aggregator::run(
            self.cfg.clone(),
            Context::new(CancellationToken::new()),
            spectra_aggregator::AggregateOptions {
                once: true,
                as_of: Some(day),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(summary.failures.is_empty(), "{summary:?}");
    }
}

/// `n` outlets `O0000…` in three planted groups, in turn, at scale 100.
pub fn outlets(n: usize) -> Vec<Planted> {
    (0..n)
        .map(|i| Planted {
            id: format!("O{i:04}"),
            segment: i % 3,
            scale: 100.0,
        })
        .collect()
}

pub fn segmentation(v: Value) -> SegmentationConfig {
    serde_json::from_value(v).unwrap()
}

/// A configuration with `seg` over a one-day window, the change detector off.
pub fn config(storage: &str, mut seg: SegmentationConfig) -> Config {
    seg.window_days = 1;
    seg.recent_days = 0;
    let mut c = Config::default();
    c.storage.url = storage.to_owned();
    c.segmentation = vec![seg];
    c
}

pub async fn once(cfg: &Config, ctx: &Context) -> Summary {
    let opts = SegmentOptions {
        once: true,
        ..Default::default()
    };
    run(cfg.clone(), ctx.clone(), opts).await.unwrap()
}

pub fn date(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

pub async fn read_batches(storage: &Storage, path: &str) -> Vec<RecordBatch> {
    let bytes = storage
        .get(path)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} missing"));
    spectra_core::schema::from_parquet(bytes).unwrap()
}

/// Per outlet: (segment_id, previous_segment_id, change, confidence, potential).
pub type Assigned = BTreeMap<String, (String, Option<String>, String, f64, f64)>;

pub async fn assignments(storage: &Storage, run_folder: &str) -> Assigned {
    let path = format!("{run_folder}/assignments.parquet");
    read_rows::<AssignmentRow>(storage, &path)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} missing"))
        .into_iter()
        .map(|a| {
            (
                a.outlet_id,
                (
                    a.segment_id,
                    a.previous_segment_id,
                    a.change.as_str().to_owned(),
                    a.confidence,
                    a.potential,
                ),
            )
        })
        .collect()
}

pub async fn json_at(storage: &Storage, path: &str) -> Value {
    storage
        .get_json(path)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} missing"))
}
