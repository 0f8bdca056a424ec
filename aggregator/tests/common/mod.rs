//! Test support: a model of a distributor feed (deliveries of invoice lines with
//! redeliveries and corrections), writing it as raw Parquet the way ingest does, a
//! brute-force computation of the window features straight from the lines, and
//! reading the aggregator's feature tables back.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use chrono::NaiveDate;
use spectra_aggregator::{date_text, days_of};
use spectra_core::config::{KSpec, SegmentationConfig};
use spectra_core::master::Sku;
use spectra_core::message::InvoiceLine;
use spectra_core::schema::{
    from_parquet, raw_invoice_schema, sku_schema, to_parquet, RawInvoiceBuilder, SkuBuilder, Source,
};
use spectra_core::Storage;

/// One delivered version of a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub distributor: String,
    pub invoice: String,
    pub line_no: i64,
    pub date: i32,
    pub outlet: String,
    pub sku: String,
    pub quantity: f64,
    pub net_value: f64,
    pub ts: i64,
    pub partition: i32,
    pub offset: i64,
}

impl Delivery {
    pub fn identity(&self) -> (String, String, i64) {
        (self.distributor.clone(), self.invoice.clone(), self.line_no)
    }
    fn version(&self) -> (i64, i32, i64, i32) {
        (self.ts, self.partition, self.offset, 0)
    }
}

/// The first day of every generated feed.
pub fn base_day() -> i32 {
    days_of(NaiveDate::from_ymd_opt(2024, 3, 1).unwrap())
}

/// Writes one raw file per date for `batch` under `raw/invoices/date=…/` named `tag`.
pub async fn write_raw(storage: &Storage, tag: &str, batch: &[Delivery]) {
    let mut by_date: BTreeMap<i32, Vec<&Delivery>> = BTreeMap::new();
    for d in batch {
        by_date.entry(d.date).or_default().push(d);
    }
    for (date, ds) in by_date {
        let mut b = RawInvoiceBuilder::default();
        for d in ds {
            let line = InvoiceLine {
                distributor_id: d.distributor.as_str().into(),
                invoice_id: d.invoice.as_str().into(),
                line_no: d.line_no,
                invoice_date: spectra_aggregator::date_of(date),
                outlet_id: d.outlet.as_str().into(),
                sku_id: d.sku.as_str().into(),
                quantity: d.quantity,
                net_value: d.net_value,
                currency: None,
            };
            let src = Source {
                topic: "invoices",
                partition: d.partition,
                offset: d.offset,
                timestamp_ms: d.ts,
            };
            b.append(&line, &src, 0);
        }
        let data = to_parquet(raw_invoice_schema(), &[b.finish()]).unwrap();
        let path = format!(
            "raw/invoices/date={}/invoices-{tag}.parquet",
            date_text(date)
        );
        storage.put(&path, data).await.unwrap();
    }
}

/// Writes SKU master records (`category` given; `None` = tombstone) as the `seq`-th
/// master file: later files carry later offsets and timestamps.
pub async fn write_skus(storage: &Storage, seq: i64, skus: &[(&str, Option<&str>)]) {
    let mut b = SkuBuilder::default();
    for (i, (id, cat)) in skus.iter().enumerate() {
        let sku = Sku {
            sku_id: (*id).to_owned(),
            name: None,
            category: cat.map(str::to_owned),
            subcategory: None,
            brand: None,
            attributes: None,
            deleted: cat.is_none(),
        };
        let src = Source {
            topic: "skus",
            partition: 0,
            offset: seq * 1_000 + i as i64,
            timestamp_ms: 1_000 * (seq + 1) + i as i64,
        };
        b.append(&sku, &src);
    }
    let data = to_parquet(sku_schema(), &[b.finish()]).unwrap();
    storage
        .put(&format!("master/skus/skus-{seq}.parquet"), data)
        .await
        .unwrap();
}

/// A segmentation for tests.
pub fn segmentation(
    name: &str,
    level: &str,
    window_days: u32,
    half_life: Option<f64>,
) -> SegmentationConfig {
    SegmentationConfig {
        name: name.to_owned(),
        level: level.to_owned(),
        window_days,
        half_life_days: half_life,
        k: KSpec::Auto("auto".into()),
        k_range: [3, 12],
        min_value: 0.0,
        filter: None,
        schedule: "daily".into(),
        move_margin: 0.1,
        kpi_weight: 0.0,
        seed: 42,
        // A third of the window, so every test also checks the recent-window columns.
        recent_days: (window_days / 3).max(1),
        ..SegmentationConfig::named(name)
    }
}

/// The latest version of every identity.
pub fn winners(all: &[Delivery]) -> Vec<Delivery> {
    let mut best: HashMap<(String, String, i64), &Delivery> = HashMap::new();
    for d in all {
        let e = best.entry(d.identity()).or_insert(d);
        if d.version() > e.version() {
            *e = d;
        }
    }
    best.into_values().cloned().collect()
}

/// (weighted, raw value, recent value, lines, recent lines) of an outlet × feature.
pub type SpectrumValue = (f64, f64, f64, i64, i64);

/// Spectrum by (outlet, feature) → [`SpectrumValue`], and KPIs by outlet.
pub type Features = (
    BTreeMap<(String, String), SpectrumValue>,
    BTreeMap<String, Kpi>,
);

/// KPIs of one outlet, computed by brute force.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kpi {
    pub net_value: f64,
    pub lines: i64,
    pub invoices: i64,
    pub distinct_skus: i64,
    pub days_since_last_invoice: i64,
    pub active_weeks: i64,
    pub return_share: f64,
}

/// Brute force: (spectrum by (outlet, feature) → (weighted, raw), KPIs by outlet).
pub fn brute_force(
    all: &[Delivery],
    seg: &SegmentationConfig,
    as_of: i32,
    feature_of: &dyn Fn(&str) -> String,
) -> Features {
    let start = as_of - seg.window_days as i32 + 1;
    let lines: Vec<Delivery> = winners(all)
        .into_iter()
        .filter(|d| d.date >= start && d.date <= as_of)
        .collect();
    let mut spectrum: BTreeMap<(String, String), SpectrumValue> = BTreeMap::new();
    let recent_start = if seg.recent_days > 0 && seg.recent_days < seg.window_days {
        as_of - seg.recent_days as i32 + 1
    } else {
        as_of + 1
    };
    let mut kpis: BTreeMap<String, Kpi> = BTreeMap::new();
    let mut invoices: BTreeMap<String, BTreeSet<(String, String, i32)>> = BTreeMap::new();
    let mut skus: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut weeks: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let mut last: BTreeMap<String, i32> = BTreeMap::new();
    let mut sales: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for d in &lines {
        let age = f64::from(as_of - d.date);
        let w = seg.half_life_days.map_or(1.0, |h| 0.5f64.powf(age / h));
        let e = spectrum
            .entry((d.outlet.clone(), feature_of(&d.sku)))
            .or_default();
        e.0 += d.net_value * w;
        e.1 += d.net_value;
        e.3 += 1;
        if d.date >= recent_start {
            e.2 += d.net_value;
            e.4 += 1;
        }
        let k = kpis.entry(d.outlet.clone()).or_default();
        k.net_value += d.net_value;
        k.lines += 1;
        invoices.entry(d.outlet.clone()).or_default().insert((
            d.distributor.clone(),
            d.invoice.clone(),
            d.date,
        ));
        skus.entry(d.outlet.clone())
            .or_default()
            .insert(d.sku.clone());
        weeks
            .entry(d.outlet.clone())
            .or_default()
            .insert((as_of - d.date) / 7);
        let l = last.entry(d.outlet.clone()).or_insert(d.date);
        *l = (*l).max(d.date);
        let s = sales.entry(d.outlet.clone()).or_default();
        if d.net_value < 0.0 {
            s.1 += -d.net_value;
        } else {
            s.0 += d.net_value;
        }
    }
    for (o, k) in kpis.iter_mut() {
        k.invoices = invoices[o].len() as i64;
        k.distinct_skus = skus[o].len() as i64;
        k.active_weeks = weeks[o].len() as i64;
        k.days_since_last_invoice = i64::from(as_of - last[o]);
        let (pos, ret) = sales[o];
        k.return_share = if pos > 0.0 { ret / pos } else { 0.0 };
    }
    (spectrum, kpis)
}

async fn read(storage: &Storage, path: &str) -> Vec<RecordBatch> {
    let data = storage
        .get(path)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} missing"));
    from_parquet(data).unwrap()
}

fn f64s(b: &RecordBatch, name: &str) -> Vec<f64> {
    let c = arrow::compute::cast(
        b.column_by_name(name).unwrap(),
        &arrow::datatypes::DataType::Float64,
    )
    .unwrap();
    c.as_primitive::<Float64Type>().values().to_vec()
}

fn i64s(b: &RecordBatch, name: &str) -> Vec<i64> {
    let c = arrow::compute::cast(
        b.column_by_name(name).unwrap(),
        &arrow::datatypes::DataType::Int64,
    )
    .unwrap();
    c.as_primitive::<Int64Type>().values().to_vec()
}

fn strs(b: &RecordBatch, name: &str) -> Vec<String> {
    b.column_by_name(name)
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap().to_owned())
        .collect()
}

/// The aggregator's spectrum and KPIs of a segmentation at `as_of`.
pub async fn read_features(storage: &Storage, name: &str, as_of: i32) -> Features {
    let dir = format!("features/segmentation={name}/as_of={}", date_text(as_of));
    assert!(
        storage
            .get(&format!("{dir}/_manifest.json"))
            .await
            .unwrap()
            .is_some(),
        "{dir} has no manifest"
    );
    let mut spectrum = BTreeMap::new();
    for b in read(storage, &format!("{dir}/spectrum.parquet")).await {
        let (o, f, v, r) = (
            strs(&b, "outlet_id"),
            strs(&b, "feature"),
            f64s(&b, "value"),
            f64s(&b, "raw_value"),
        );
        let (rv, l, rl) = (
            f64s(&b, "recent_value"),
            i64s(&b, "lines"),
            i64s(&b, "recent_lines"),
        );
        for i in 0..b.num_rows() {
            assert!(
                spectrum
                    .insert(
                        (o[i].clone(), f[i].clone()),
                        (v[i], r[i], rv[i], l[i], rl[i])
                    )
                    .is_none(),
                "duplicate spectrum row {} {}",
                o[i],
                f[i]
            );
        }
    }
    let mut kpis = BTreeMap::new();
    for b in read(storage, &format!("{dir}/kpis.parquet")).await {
        let o = strs(&b, "outlet_id");
        let nv = f64s(&b, "net_value");
        let (lines, inv, skus) = (
            i64s(&b, "lines"),
            i64s(&b, "invoices"),
            i64s(&b, "distinct_skus"),
        );
        let (since, weeks) = (
            i64s(&b, "days_since_last_invoice"),
            i64s(&b, "active_weeks"),
        );
        let rs = f64s(&b, "return_share");
        for i in 0..b.num_rows() {
            kpis.insert(
                o[i].clone(),
                Kpi {
                    net_value: nv[i],
                    lines: lines[i],
                    invoices: inv[i],
                    distinct_skus: skus[i],
                    days_since_last_invoice: since[i],
                    active_weeks: weeks[i],
                    return_share: rs[i],
                },
            );
        }
    }
    (spectrum, kpis)
}

/// Every row of the daily table, sorted, as text (for comparing two runs).
pub async fn daily_rows(storage: &Storage) -> Vec<String> {
    let mut rows = Vec::new();
    for o in storage.list("features/daily/").await.unwrap() {
        for b in read(storage, &o.path).await {
            let (out, sku) = (strs(&b, "outlet_id"), strs(&b, "sku_id"));
            let (nv, q) = (f64s(&b, "net_value"), f64s(&b, "quantity"));
            let (l, inv) = (i64s(&b, "lines"), i64s(&b, "invoices"));
            for i in 0..b.num_rows() {
                rows.push(format!(
                    "{} {} {} {:.6} {:.6} {} {}",
                    o.path, out[i], sku[i], nv[i], q[i], l[i], inv[i]
                ));
            }
        }
    }
    rows.sort();
    rows
}

/// Asserts two feature sets agree within `tol` (relative to magnitude).
pub fn assert_features_eq(got: &Features, want: &Features, context: &str) {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()));
    let gk: Vec<_> = got.0.keys().collect();
    let wk: Vec<_> = want.0.keys().collect();
    assert_eq!(gk, wk, "{context}: spectrum keys");
    for (k, w) in &want.0 {
        let g = got.0[k];
        assert!(
            close(g.0, w.0) && close(g.1, w.1) && close(g.2, w.2) && (g.3, g.4) == (w.3, w.4),
            "{context}: spectrum {k:?}: got {g:?}, want {w:?}"
        );
    }
    let gk: Vec<_> = got.1.keys().collect();
    let wk: Vec<_> = want.1.keys().collect();
    assert_eq!(gk, wk, "{context}: kpi outlets");
    for (o, w) in &want.1 {
        let g = &got.1[o];
        assert!(
            close(g.net_value, w.net_value) && close(g.return_share, w.return_share),
            "{context}: kpis of {o}: got {g:?}, want {w:?}"
        );
        assert_eq!(
            (
                g.lines,
                g.invoices,
                g.distinct_skus,
                g.days_since_last_invoice,
                g.active_weeks
            ),
            (
                w.lines,
                w.invoices,
                w.distinct_skus,
                w.days_since_last_invoice,
                w.active_weeks
            ),
            "{context}: kpis of {o}"
        );
    }
}
