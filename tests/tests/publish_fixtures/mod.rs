//! Fixtures for the publisher's tests: the tables the aggregator and the segmenter
//! write, built from seeded invoice lines exactly as the README's "Tables" section lays
//! them out (features per segmentation and as-of date, daily roll-ups, runs with
//! `latest.json` written last).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema};
use chrono::{Duration, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::json;

/// The features (categories) of the fixture's SKUs.
pub const FEATURES: [&str; 6] = ["coffee", "tea", "snacks", "beer", "dairy", "water"];
/// SKUs per feature.
pub const SKUS_PER_FEATURE: usize = 4;

/// A planted segment's favourite features.
pub fn favourites(segment: &str) -> [usize; 2] {
    match segment {
        "S1" => [0, 1],
        "S2" => [2, 3],
        _ => [4, 5],
    }
}

/// An outlet of the fixture.
#[derive(Clone, Debug)]
pub struct Outlet {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Channel.
    pub channel: String,
    /// Size attribute.
    pub size: String,
    /// The segment whose taste it has.
    pub taste: String,
}

/// One invoice line (already deduplicated).
#[derive(Clone, Debug)]
pub struct Line {
    /// Outlet.
    pub outlet: String,
    /// SKU.
    pub sku: String,
    /// Feature of the SKU.
    pub feature: String,
    /// Date.
    pub date: NaiveDate,
    /// Quantity.
    pub quantity: f64,
    /// Net value.
    pub value: f64,
}

/// `n` outlets, a third of each taste.
pub fn outlets(n: usize) -> Vec<Outlet> {
    let regions = ["Małopolska", "Mazowsze", "Pomorze"];
    let channels = ["traditional", "modern", "horeca"];
    let sizes = ["S", "M", "L"];
    (0..n)
        .map(|i| Outlet {
            id: format!("PL-{i:05}"),
            name: format!("Sklep {i}"),
            region: regions[i % 3].into(),
            channel: channels[(i / 3) % 3].into(),
            size: sizes[(i / 9) % 3].into(),
            taste: ["S1", "S2", "S3"][i % 3].into(),
        })
        .collect()
}

/// Seeded lines: each outlet buys mostly its taste's features, over the `days` before
/// `as_of` (inclusive) and in the four weeks after `as_of` a year earlier.
pub fn lines(
    seed: u64,
    outlets: &[Outlet],
    as_of: NaiveDate,
    days: i64,
    per_outlet: usize,
) -> Vec<Line> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut out = Vec::new();
    for (i, o) in outlets.iter().enumerate() {
        let fav = favourites(&o.taste);
        let scale = 1.0 + (i % 5) as f64;
        for n in 0..per_outlet {
            let f = if rng.gen_bool(0.8) {
                fav[n % 2]
            } else {
                rng.gen_range(0..FEATURES.len())
            };
            let sku = format!(
                "{}-{}",
                &FEATURES[f][..3].to_uppercase(),
                rng.gen_range(0..SKUS_PER_FEATURE)
            );
            let quantity = rng.gen_range(1..12) as f64;
            let date = as_of - Duration::days(rng.gen_range(0..days));
            out.push(Line {
                outlet: o.id.clone(),
                sku,
                feature: FEATURES[f].into(),
                date,
                quantity,
                value: (quantity * rng.gen_range(2.0..9.0) * scale * 100.0).round() / 100.0,
            });
        }
        // Last year's coming weeks: ice cream season for everyone (the "water" SKU 3).
        for _ in 0..3 {
            out.push(Line {
                outlet: o.id.clone(),
                sku: "WAT-3".into(),
                feature: "water".into(),
                date: as_of + Duration::days(rng.gen_range(1..28)) - Duration::days(365),
                quantity: 10.0,
                value: 50.0,
            });
        }
    }
    out
}

fn s(v: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}
fn f(v: Vec<f64>) -> ArrayRef {
    Arc::new(Float64Array::from(v))
}
fn i(v: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(v))
}

/// Writes `cols` as one Parquet file.
pub fn write_parquet(path: &Path, cols: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch =
        RecordBatch::try_new(schema.clone(), cols.into_iter().map(|(_, a)| a).collect()).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        spectra_core::schema::to_parquet(schema, &[batch]).unwrap(),
    )
    .unwrap();
}

/// Per outlet: (net value, lines) of the lines in `[as_of - window + 1, as_of]`.
pub fn window_totals(
    lines: &[Line],
    as_of: NaiveDate,
    window_days: i64,
) -> BTreeMap<String, (f64, i64)> {
    let from = as_of - Duration::days(window_days - 1);
    let mut m: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.date >= from && l.date <= as_of) {
        let e = m.entry(l.outlet.clone()).or_default();
        e.0 += l.value;
        e.1 += 1;
    }
    m
}

/// Writes `features/daily/` and `features/outlet_daily/` for every line.
pub fn write_daily(root: &Path, lines: &[Line]) {
    #[allow(clippy::type_complexity)] // date → (outlet, sku) → (value, quantity, lines)
    let mut by_day: BTreeMap<NaiveDate, BTreeMap<(String, String), (f64, f64, i64)>> =
        BTreeMap::new();
    for l in lines {
        let e = by_day
            .entry(l.date)
            .or_default()
            .entry((l.outlet.clone(), l.sku.clone()))
            .or_default();
        e.0 += l.value;
        e.1 += l.quantity;
        e.2 += 1;
    }
    for (day, rows) in by_day {
        let d = spectra_core::message::date_to_days(day);
        let n = rows.len();
        write_parquet(
            &root.join(format!("features/daily/date={day}/daily.parquet")),
            vec![
                ("outlet_id", s(rows.keys().map(|k| k.0.clone()).collect())),
                ("sku_id", s(rows.keys().map(|k| k.1.clone()).collect())),
                ("date", Arc::new(Date32Array::from(vec![d; n]))),
                ("net_value", f(rows.values().map(|v| v.0).collect())),
                ("quantity", f(rows.values().map(|v| v.1).collect())),
                ("lines", i(rows.values().map(|v| v.2).collect())),
                ("invoices", i(rows.values().map(|v| v.2).collect())),
                ("returns_value", f(vec![0.0; n])),
            ],
        );
        let mut per_outlet: BTreeMap<String, (f64, i64)> = BTreeMap::new();
        for ((o, _), v) in &rows {
            let e = per_outlet.entry(o.clone()).or_default();
            e.0 += v.0;
            e.1 += v.2;
        }
        let n = per_outlet.len();
        write_parquet(
            &root.join(format!(
                "features/outlet_daily/date={day}/outlet_daily.parquet"
            )),
            vec![
                ("outlet_id", s(per_outlet.keys().cloned().collect())),
                ("date", Arc::new(Date32Array::from(vec![d; n]))),
                ("net_value", f(per_outlet.values().map(|v| v.0).collect())),
                ("lines", i(per_outlet.values().map(|v| v.1).collect())),
            ],
        );
    }
}

/// Writes `features/segmentation={name}/as_of={as_of}/` from the lines in the window.
pub fn write_features(
    root: &Path,
    name: &str,
    as_of: NaiveDate,
    window_days: i64,
    outlets: &[Outlet],
    lines: &[Line],
) {
    let dir = root.join(format!("features/segmentation={name}/as_of={as_of}"));
    let from = as_of - Duration::days(window_days - 1);
    let in_window: Vec<&Line> = lines
        .iter()
        .filter(|l| l.date >= from && l.date <= as_of)
        .collect();
    let totals = window_totals(lines, as_of, window_days);
    let known: Vec<&Outlet> = outlets
        .iter()
        .filter(|o| totals.contains_key(&o.id))
        .collect();
    write_parquet(
        &dir.join("kpis.parquet"),
        vec![
            ("outlet_id", s(known.iter().map(|o| o.id.clone()).collect())),
            (
                "net_value",
                f(known.iter().map(|o| totals[&o.id].0).collect()),
            ),
            ("lines", i(known.iter().map(|o| totals[&o.id].1).collect())),
            (
                "invoices",
                i(known.iter().map(|o| totals[&o.id].1).collect()),
            ),
            (
                "invoices_per_month",
                f(known
                    .iter()
                    .map(|o| totals[&o.id].1 as f64 * 30.0 / window_days as f64)
                    .collect()),
            ),
            (
                "avg_invoice_value",
                f(known
                    .iter()
                    .map(|o| totals[&o.id].0 / totals[&o.id].1 as f64)
                    .collect()),
            ),
            ("distinct_skus", i(vec![5; known.len()])),
            ("days_since_last_invoice", i(vec![1; known.len()])),
            ("active_weeks", i(vec![10; known.len()])),
            ("return_share", f(vec![0.0; known.len()])),
            ("name", s(known.iter().map(|o| o.name.clone()).collect())),
            (
                "region",
                s(known.iter().map(|o| o.region.clone()).collect()),
            ),
            (
                "channel",
                s(known.iter().map(|o| o.channel.clone()).collect()),
            ),
            (
                "attributes",
                s(known
                    .iter()
                    .map(|o| json!({"size": o.size}).to_string())
                    .collect()),
            ),
        ],
    );
    let mut spend: BTreeMap<(String, String, String), (f64, f64, i64)> = BTreeMap::new();
    for l in &in_window {
        let e = spend
            .entry((l.outlet.clone(), l.sku.clone(), l.feature.clone()))
            .or_default();
        e.0 += l.value;
        e.1 += l.quantity;
        e.2 += 1;
    }
    write_parquet(
        &dir.join("sku_spend.parquet"),
        vec![
            ("outlet_id", s(spend.keys().map(|k| k.0.clone()).collect())),
            ("sku_id", s(spend.keys().map(|k| k.1.clone()).collect())),
            ("feature", s(spend.keys().map(|k| k.2.clone()).collect())),
            ("net_value", f(spend.values().map(|v| v.0).collect())),
            ("quantity", f(spend.values().map(|v| v.1).collect())),
            ("lines", i(spend.values().map(|v| v.2).collect())),
        ],
    );
    let mut spectrum: BTreeMap<(String, String), f64> = BTreeMap::new();
    for l in &in_window {
        *spectrum
            .entry((l.outlet.clone(), l.feature.clone()))
            .or_default() += l.value;
    }
    write_parquet(
        &dir.join("spectrum.parquet"),
        vec![
            (
                "outlet_id",
                s(spectrum.keys().map(|k| k.0.clone()).collect()),
            ),
            ("feature", s(spectrum.keys().map(|k| k.1.clone()).collect())),
            ("value", f(spectrum.values().copied().collect())),
            ("raw_value", f(spectrum.values().copied().collect())),
        ],
    );
    std::fs::write(
        dir.join("_manifest.json"),
        json!({"segmentation": name, "as_of": as_of.to_string(), "window_start": from.to_string(), "level": "category",
            "outlets": known.len(), "features": FEATURES.len(), "unknown_skus": 0, "unknown_outlets": 0, "created_at": "2026-01-01T00:00:00Z"})
        .to_string(),
    )
    .unwrap();
}

/// An assignment of the fixture's run: outlet, segment, previous segment.
pub type Assign = (String, String, Option<String>);

/// Writes a run folder and then `latest.json`; returns the run id.
pub fn write_run(
    root: &Path,
    name: &str,
    as_of: NaiveDate,
    seq: u32,
    assign: &[Assign],
    totals: &BTreeMap<String, (f64, i64)>,
) -> String {
    let dir = root.join(format!("segmentations/{name}/runs/{as_of}.{seq}"));
    let n = assign.len();
    let change: Vec<String> = assign
        .iter()
        .map(|(_, seg, prev)| match prev {
            None => "new".into(),
            Some(p) if p != seg => "moved".into(),
            Some(_) => "same".into(),
        })
        .collect();
    write_parquet(
        &dir.join("assignments.parquet"),
        vec![
            ("outlet_id", s(assign.iter().map(|a| a.0.clone()).collect())),
            (
                "segment_id",
                s(assign.iter().map(|a| a.1.clone()).collect()),
            ),
            (
                "previous_segment_id",
                Arc::new(StringArray::from(
                    assign.iter().map(|a| a.2.clone()).collect::<Vec<_>>(),
                )),
            ),
            ("change", s(change)),
            (
                "distance",
                f((0..n).map(|k| 0.1 + k as f64 / 1000.0).collect()),
            ),
            (
                "confidence",
                f((0..n).map(|k| 0.5 + (k % 50) as f64 / 100.0).collect()),
            ),
            (
                "value",
                f(assign
                    .iter()
                    .map(|a| totals.get(&a.0).map_or(0.0, |t| t.0))
                    .collect()),
            ),
            (
                "lines",
                i(assign
                    .iter()
                    .map(|a| totals.get(&a.0).map_or(0, |t| t.1))
                    .collect()),
            ),
            ("potential", f(vec![123.0; n])),
        ],
    );
    let segs: std::collections::BTreeSet<&str> = assign.iter().map(|a| a.1.as_str()).collect();
    let profiles: Vec<_> = segs
        .iter()
        .map(|sg| json!({"segment_id": sg, "name": format!("{} lovers", FEATURES[favourites(sg)[0]]), "outlets": assign.iter().filter(|a| a.1 == *sg).count()}))
        .collect();
    std::fs::write(
        dir.join("profiles.json"),
        serde_json::to_vec(&profiles).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("model.json"),
        json!({"features": FEATURES, "centroids": segs.iter().map(|s| json!({"segment_id": s})).collect::<Vec<_>>(),
            "next_id": segs.len() + 1, "quality": {"inertia": 12.5, "silhouette": 0.41, "ari_previous": 0.93, "outlets_moved": change_count(assign), "duration_ms": 840}})
        .to_string(),
    )
    .unwrap();
    let run_id = format!("{name}/{as_of}/{seq}");
    std::fs::write(
        root.join(format!("segmentations/{name}/latest.json")),
        json!({"run_id": run_id, "as_of": as_of.to_string(), "path": format!("segmentations/{name}/runs/{as_of}.{seq}")}).to_string(),
    )
    .unwrap();
    run_id
}

fn change_count(assign: &[Assign]) -> usize {
    assign
        .iter()
        .filter(|a| a.2.as_ref().is_some_and(|p| p != &a.1))
        .count()
}

/// The first run's assignments: every outlet in its taste's segment.
pub fn first_assignments(outlets: &[Outlet]) -> Vec<Assign> {
    outlets
        .iter()
        .map(|o| (o.id.clone(), o.taste.clone(), None))
        .collect()
}

/// Drift: every 7th outlet moves to the next segment, every 11th leaves, and `new`
/// outlets join.
pub fn drift(prev: &[Assign], new: &[Outlet]) -> Vec<Assign> {
    let next = |s: &str| match s {
        "S1" => "S2",
        "S2" => "S3",
        _ => "S1",
    };
    let mut out: Vec<Assign> = prev
        .iter()
        .enumerate()
        .filter(|(k, _)| k % 11 != 5)
        .map(|(k, a)| {
            let seg = if k % 7 == 3 {
                next(&a.1).to_owned()
            } else {
                a.1.clone()
            };
            (a.0.clone(), seg, Some(a.1.clone()))
        })
        .collect();
    out.extend(new.iter().map(|o| (o.id.clone(), o.taste.clone(), None)));
    out
}

/// A fresh storage directory with its `file://` URL.
pub fn storage() -> (tempfile::TempDir, String, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let path = dir.path().to_owned();
    (dir, url, path)
}

/// A configuration for the publisher against the test broker with fresh topics.
pub fn config(storage_url: &str, prefix: &str) -> spectra_core::Config {
    let mut cfg = spectra_core::Config::default();
    cfg.kafka.brokers = spectra_tests::brokers();
    cfg.kafka.partitions = 3;
    cfg.storage.url = storage_url.to_owned();
    let t = &mut cfg.kafka.topics;
    t.assignments = format!("{prefix}.segment-assignments");
    t.profiles = format!("{prefix}.segment-profiles");
    t.recommendations = format!("{prefix}.outlet-recommendations");
    t.metadata = format!("{prefix}.segment-metadata");
    t.invoices = format!("{prefix}.invoices");
    t.dlq = format!("{prefix}.invoices.dlq");
    cfg.publish.listen = "127.0.0.1:0".into();
    cfg.publish.api_token = "s3cret".into();
    cfg.publish.poll_seconds = 1;
    cfg
}
