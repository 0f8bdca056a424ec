//! The UCI Online Retail file end to end: `spectra load --preset online-retail` →
//! `spectra ingest --once` → `spectra aggregate --once --as-of 2011-12-09`, then every
//! customer's window total (kpis `net_value`) against a direct computation from the CSV
//! (rows without CustomerID skipped, net = Quantity × UnitPrice, cancellations netted),
//! and every row of the window features (`sku_spend`, `spectrum`, the KPIs that count
//! days, weeks, SKUs and invoices) against the same computation per StockCode.
//! Then a SKU-level segmentation run twice (as of 2011-11-09 and 2011-12-09) and
//! published: SKU names from the fed master beside every SKU id people read, A/B/C
//! tiers by potential, trends over both runs, and contexts filtered by country.

use std::collections::BTreeMap;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int64Type};
use serde_json::Value;
use spectra_tests::served::{abc_tiers, context_values};
use spectra_tests::services::*;
use spectra_tests::*;

/// CustomerID → (net value, lines), straight from the CSV.
fn direct_totals() -> BTreeMap<String, (f64, i64)> {
    let mut out: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    for row in online_retail_rows()
        .into_iter()
        .filter(|r| !r.customer.is_empty())
    {
        let e = out.entry(row.customer).or_default();
        e.0 += row.quantity * row.unit_price;
        e.1 += 1;
    }
    out
}

#[test]
fn online_retail_totals_per_customer_match_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&dir.path().join("store")).accepting_history();
    setup.create_topics(3);
    let file = online_retail_file();
    let started = std::time::Instant::now();
    let out = setup.load_retail(&file, &[]);
    eprintln!(
        "load: {:?} {}",
        started.elapsed(),
        String::from_utf8_lossy(&out).trim()
    );
    let t = std::time::Instant::now();
    let ingested = setup.ingest_once(&[]);
    eprintln!("ingest: {:?} {}", t.elapsed(), ingested.trim());

    let config = dir.path().join("spectra.toml");
    std::fs::write(
        &config,
        "[[segmentation]]\nname = \"retail\"\nlevel = \"sku\"\nwindow_days = 400\nk = 6\n",
    )
    .unwrap();
    let aggregate = |as_of: &str| {
        let extra = [
            "--once",
            "--as-of",
            as_of,
            "--config",
            config.to_str().unwrap(),
        ];
        ok(
            setup.command("aggregate", &extra).output().unwrap(),
            "aggregate",
        )
    };
    // Run 1, a month earlier.
    aggregate("2011-11-09");
    let t = std::time::Instant::now();
    let seg = ok(run(&setup, "segment", &config, &["--once"]), "segment");
    assert_eq!(seg["runs"][0]["run_id"], "retail/2011-11-09/1", "{seg}");
    eprintln!("segment (sku level, k = 6): {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let summary = aggregate("2011-12-09");
    eprintln!("aggregate: {:?} {summary}", t.elapsed());

    let want = direct_totals();
    let features = setup
        .dir
        .join("features/segmentation=retail/as_of=2011-12-09");
    let kpis = Table::read(&features, "kpis.parquet");
    let got: BTreeMap<String, (f64, i64)> = kpis
        .text("outlet_id")
        .into_iter()
        .zip(kpis.float("net_value").into_iter().zip(kpis.int("lines")))
        .collect();
    assert_eq!(
        got.len(),
        want.len(),
        "customers: aggregated {} vs CSV {}",
        got.len(),
        want.len()
    );
    let seg = &summary["segmentations"][0];
    assert_eq!(seg["outlets"].as_u64(), Some(want.len() as u64));
    assert_eq!(
        seg["unknown_skus"].as_u64(),
        Some(0),
        "--derive-master sent every SKU"
    );
    for (c, (v, n)) in &want {
        let (gv, gn) = got.get(c).unwrap_or_else(|| panic!("customer {c} missing"));
        assert!(
            (gv - v).abs() <= 1e-6 * (1.0 + v.abs()),
            "customer {c}: net {gv} vs CSV {v}"
        );
        assert_eq!(gn, n, "customer {c}: lines");
    }
    window_features_match_the_csv(&features, "2011-12-09");
    let total: f64 = want.values().map(|(v, _)| v).sum();
    insight(&setup, &config);
    eprintln!(
        "{} customers, net {total:.2}, end to end {:?}",
        want.len(),
        started.elapsed()
    );
}

/// One file of a features folder, every batch, with a column reader by name.
struct Table(Vec<arrow::array::RecordBatch>);

impl Table {
    fn read(dir: &std::path::Path, file: &str) -> Self {
        let data = bytes::Bytes::from(std::fs::read(dir.join(file)).unwrap());
        Self(spectra_core::schema::from_parquet(data).unwrap())
    }
    fn text(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name(name).unwrap().as_string::<i32>();
                c.iter()
                    .map(|v| v.unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
    fn float(&self, name: &str) -> Vec<f64> {
        self.0
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name(name).unwrap();
                c.as_primitive::<Float64Type>().values().to_vec()
            })
            .collect()
    }
    fn int(&self, name: &str) -> Vec<i64> {
        self.0
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name(name).unwrap();
                c.as_primitive::<Int64Type>().values().to_vec()
            })
            .collect()
    }
}

/// Sums of one customer's lines of one StockCode: net, quantity, lines, and net and
/// lines of the recent window.
#[derive(Default, Debug)]
struct SkuSums {
    net: f64,
    quantity: f64,
    lines: i64,
    recent_net: f64,
    recent_lines: i64,
}

/// Every window feature of the SKU-level segmentation (400 days: the whole file; no
/// half-life; the default 28 recent days) against the CSV, per customer and StockCode:
/// `sku_spend` and `spectrum` rows and sums, their order, and the KPIs that count days,
/// weeks, SKUs and invoices.
fn window_features_match_the_csv(features: &std::path::Path, as_of: &str) {
    use chrono::NaiveDate;
    use std::collections::BTreeSet;
    let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let as_of = day(as_of);
    let recent_start = as_of - chrono::Duration::days(27);
    let mut sums: BTreeMap<(String, String), SkuSums> = BTreeMap::new();
    // Per customer: its dates, its invoices (date, number), those of the recent window.
    type Days = BTreeSet<NaiveDate>;
    type Invoices = BTreeSet<(NaiveDate, String)>;
    let mut per: BTreeMap<String, (Days, Invoices, Invoices)> = BTreeMap::new();
    for r in online_retail_rows()
        .into_iter()
        .filter(|r| !r.customer.is_empty())
    {
        let date = day(&r.date);
        let net = r.quantity * r.unit_price;
        let recent = date >= recent_start;
        let s = sums
            .entry((r.customer.clone(), r.stock_code.clone()))
            .or_default();
        s.net += net;
        s.quantity += r.quantity;
        s.lines += 1;
        if recent {
            s.recent_net += net;
            s.recent_lines += 1;
        }
        let c = per.entry(r.customer).or_default();
        c.0.insert(date);
        c.1.insert((date, r.invoice.clone()));
        if recent {
            c.2.insert((date, r.invoice));
        }
    }
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * (1.0 + b.abs());

    let spend = Table::read(features, "sku_spend.parquet");
    let (outlets, skus) = (spend.text("outlet_id"), spend.text("sku_id"));
    let (net, quantity, lines) = (
        spend.float("net_value"),
        spend.float("quantity"),
        spend.int("lines"),
    );
    assert_eq!(
        outlets.len(),
        sums.len(),
        "sku_spend rows vs CSV (customer, StockCode) pairs"
    );
    for (i, key) in outlets
        .iter()
        .cloned()
        .zip(skus.iter().cloned())
        .enumerate()
    {
        if i > 0 {
            assert!(
                (&outlets[i - 1], &skus[i - 1]) < (&key.0, &key.1),
                "sku_spend is not in (outlet_id, sku_id) order at row {i}"
            );
        }
        let want = sums
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} is not in the CSV"));
        assert!(
            close(net[i], want.net),
            "{key:?}: net {} vs CSV {}",
            net[i],
            want.net
        );
        assert!(
            close(quantity[i], want.quantity),
            "{key:?}: quantity {} vs CSV {}",
            quantity[i],
            want.quantity
        );
        assert_eq!(lines[i], want.lines, "{key:?}: lines");
    }

    // At the SKU level the spectrum's features are the StockCodes.
    let spectrum = Table::read(features, "spectrum.parquet");
    let (outlets, feats) = (spectrum.text("outlet_id"), spectrum.text("feature"));
    let (value, raw, lines) = (
        spectrum.float("value"),
        spectrum.float("raw_value"),
        spectrum.int("lines"),
    );
    let (recent, recent_lines) = (spectrum.float("recent_value"), spectrum.int("recent_lines"));
    assert_eq!(outlets.len(), sums.len(), "spectrum rows vs CSV pairs");
    for (i, key) in outlets.into_iter().zip(feats).enumerate() {
        let want = &sums[&key];
        assert!(
            close(value[i], want.net) && close(raw[i], want.net),
            "{key:?}: value {} raw {} vs CSV {}",
            value[i],
            raw[i],
            want.net
        );
        assert_eq!(lines[i], want.lines, "{key:?}: lines");
        assert!(
            close(recent[i], want.recent_net),
            "{key:?}: recent {} vs CSV {}",
            recent[i],
            want.recent_net
        );
        assert_eq!(recent_lines[i], want.recent_lines, "{key:?}: recent lines");
    }

    let kpis = Table::read(features, "kpis.parquet");
    let ids = kpis.text("outlet_id");
    let (distinct, since, weeks) = (
        kpis.int("distinct_skus"),
        kpis.int("days_since_last_invoice"),
        kpis.int("active_weeks"),
    );
    let (invoices, recent_invoices) = (kpis.int("invoices"), kpis.int("recent_invoices"));
    let mut skus_of: BTreeMap<&str, i64> = BTreeMap::new();
    for (c, _) in sums.keys() {
        *skus_of.entry(c.as_str()).or_default() += 1;
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "kpis in outlet_id order"
    );
    for (i, c) in ids.iter().enumerate() {
        let (days, inv, recent_inv) = &per[c];
        let last = *days.iter().next_back().unwrap();
        let week_set: BTreeSet<i64> = days.iter().map(|d| (as_of - *d).num_days() / 7).collect();
        assert_eq!(
            distinct[i],
            skus_of[c.as_str()],
            "customer {c}: distinct SKUs"
        );
        assert_eq!(
            since[i],
            (as_of - last).num_days(),
            "customer {c}: days since the last invoice"
        );
        assert_eq!(
            weeks[i],
            week_set.len() as i64,
            "customer {c}: active weeks"
        );
        assert_eq!(invoices[i], inv.len() as i64, "customer {c}: invoices");
        assert_eq!(
            recent_invoices[i],
            recent_inv.len() as i64,
            "customer {c}: recent invoices"
        );
    }
}

/// Run 2 and the published views a marketing team reads, on the real file.
fn insight(setup: &Setup, config: &std::path::Path) {
    let seg = ok(run(setup, "segment", config, &["--once"]), "segment");
    let run2 = seg["runs"][0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(run2, "retail/2011-12-09/1", "{seg}");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _publisher = Publisher::spawn(setup, config, port);
    let get = |path: &str| -> Value {
        let (s, body) = http(reqwest::Method::GET, &format!("{base}{path}"), None, None);
        assert_eq!(s, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    wait_until("run 2 published", || {
        http(reqwest::Method::GET, &format!("{base}/healthz"), None, None).0 == 200
            && get("/api/segmentations")
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["published"]["run_id"] == run2.as_str())
    });
    let names = fed_sku_names(&setup.skus);
    let regions: std::collections::BTreeMap<String, String> = compacted(&setup.outlets)
        .into_iter()
        .filter_map(|(k, v)| Some((k, v["region"].as_str()?.to_owned())))
        .collect();

    // Names: the spectrum's features are StockCodes; each carries the fed name, and
    // so does every pattern SKU.
    let segments = get("/api/segmentations/retail/segments");
    let segments = segments.as_array().unwrap();
    assert_eq!(segments.len(), 6);
    let mut named = 0;
    for s in segments {
        for f in s["spectrum"].as_array().unwrap() {
            let code = f["feature"].as_str().unwrap();
            assert_eq!(
                f["name"].as_str(),
                names.get(code).map(String::as_str),
                "{code}"
            );
            named += usize::from(f["name"].is_string());
        }
        for p in s["patterns"].as_array().unwrap() {
            for k in p["skus"].as_array().unwrap() {
                let code = k["sku_id"].as_str().unwrap();
                assert_eq!(k["sku_name"].as_str(), names.get(code).map(String::as_str));
            }
        }
    }
    assert!(named > 100, "{named} named spectrum entries");

    // Tiers: the run's assignments follow the ABC rule on potential within each
    // segment, and `?sort=tier` lists tier A first.
    let latest: Value = serde_json::from_slice(
        &std::fs::read(setup.dir.join("segmentations/retail/latest.json")).unwrap(),
    )
    .unwrap();
    let folder = setup.dir.join(latest["path"].as_str().unwrap());
    let assignments: Vec<spectra_core::tables::runs::AssignmentRow> =
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(spectra_core::tables::read_rows(
                &spectra_core::Storage::from_url(&setup.storage).unwrap(),
                &format!("{}/assignments.parquet", latest["path"].as_str().unwrap()),
            ))
            .unwrap()
            .unwrap();
    assert!(folder.join("sku_gaps.parquet").exists());
    for s in segments {
        let id = s["segment_id"].as_str().unwrap();
        let members: Vec<&spectra_core::tables::runs::AssignmentRow> =
            assignments.iter().filter(|a| a.segment_id == id).collect();
        let potentials: Vec<(&str, f64)> = members
            .iter()
            .map(|a| (a.outlet_id.as_str(), a.potential))
            .collect();
        let tier_of: std::collections::HashMap<&str, &str> = members
            .iter()
            .map(|a| (a.outlet_id.as_str(), a.tier.as_str()))
            .collect();
        let mut equal: std::collections::HashMap<u64, usize> = Default::default();
        for (_, p) in &potentials {
            *equal.entry(p.to_bits()).or_default() += 1;
        }
        for (o, p, want) in abc_tiers(&potentials) {
            // Ties in potential may order either way; only strict cases are checked.
            if equal[&p.to_bits()] == 1 {
                assert_eq!(tier_of[o], want, "{id} {o}: potential {p}");
            }
        }
        let listed = get(&format!(
            "/api/segmentations/retail/segments/{id}/outlets?sort=tier&limit=5"
        ));
        assert_eq!(listed[0]["tier"], "A", "{id}: {listed}");
    }

    // Trends: both runs, every segment of run 2 with a point per run.
    let t = get("/api/segmentations/retail/trends");
    let runs: Vec<&str> = t["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(runs, ["retail/2011-11-09/1", run2.as_str()]);
    for s in t["segments"].as_array().unwrap() {
        assert_eq!(s["outlets"].as_array().unwrap().len(), 2, "{s}");
    }

    // Contexts under a country: the segment's and all outlets' counts are the fed
    // regions of the assigned customers; SKU values carry names.
    let id = segments[0]["segment_id"].as_str().unwrap();
    let country = "United Kingdom";
    let c = get(&format!(
        "/api/segmentations/retail/segments/{id}/context?region=United%20Kingdom"
    ));
    let in_country = |a: &&spectra_core::tables::runs::AssignmentRow| {
        regions.get(&a.outlet_id).map(String::as_str) == Some(country)
    };
    let all = assignments.iter().filter(in_country).count();
    let mine = assignments
        .iter()
        .filter(|a| a.segment_id == id)
        .filter(in_country)
        .count();
    assert_eq!(c["all_outlets"], all, "{}", c["filters"]);
    assert_eq!(c["outlets"], mine);
    assert!(all > 3000, "most customers are in the UK: {all}");
    let skus = context_values(&c, "product", "sku");
    for k in skus.iter().filter(|k| k["value"] != "(other)") {
        let code = k["value"].as_str().unwrap();
        assert_eq!(
            k["name"].as_str(),
            names.get(code).map(String::as_str),
            "{k}"
        );
    }

    // The 360 view of the segment's largest customer: its SKU gaps, named.
    let top = assignments
        .iter()
        .filter(|a| a.segment_id == id)
        .max_by(|a, b| a.value.total_cmp(&b.value))
        .unwrap();
    let o = get(&format!("/api/outlets/{}", top.outlet_id));
    let gaps = o["segmentations"][0]["sku_gaps"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!gaps.is_empty(), "{o}");
    for g in &gaps {
        let code = g["sku_id"].as_str().unwrap();
        assert_eq!(g["sku_name"].as_str(), names.get(code).map(String::as_str));
        assert!(g["potential"].as_f64().unwrap() > 0.0);
    }

    // The XLSX export's spectrum sheet names every StockCode the master names.
    let path = setup.dir.join("retail.xlsx");
    ok(
        run(
            setup,
            "export",
            config,
            &[
                "--segmentation",
                "retail",
                "--format",
                "xlsx",
                "--out",
                path.to_str().unwrap(),
            ],
        ),
        "export",
    );
    let sheet = xlsx_rows(&path, 3);
    let col = sheet[0]
        .iter()
        .position(|h| h == "feature_name")
        .expect("a feature_name column");
    let mut checked = 0;
    for r in &sheet[1..] {
        if let Some(n) = names.get(&r[2]) {
            assert_eq!(r.get(col).map(String::as_str), Some(n.as_str()), "{r:?}");
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked} named rows");
}
