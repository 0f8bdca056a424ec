//! The Grafana dashboard (`deploy/observability/grafana/dashboards/spectra.json`) against
//! the metrics the services really export: a small feed goes through ingest, aggregate,
//! segment and publish (in this process, each with its own registry and admin port, as
//! four pods have), with a segmentation whose run fails and one whose publish cycle fails
//! so the error families exist too; then every metric named by any panel or variable must
//! be a series in the scrapes, `histogram_quantile` must read a histogram's `_bucket`, and
//! `rate`/`increase` must read a counter or a histogram part. Then a real Prometheus
//! (Debian's package) scrapes the four services through the shipped scrape configuration
//! and every panel's query, and the variable's, must return data through its HTTP API.
//! The shipped configuration files must load as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spectra_core::admin::Health;
use spectra_core::service::Context;
use spectra_core::telemetry::Metrics;
use spectra_core::Config;
use spectra_tests::prometheus::Prometheus;
use spectra_tests::Setup;
use tokio_util::sync::CancellationToken;

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel)
}

/// A metric named in a dashboard expression, with the functions enclosing it.
#[derive(Debug, Clone, PartialEq)]
struct Use {
    name: String,
    enclosing: Vec<String>,
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// The metric names of a PromQL expression: label matchers, ranges, strings, numbers,
/// functions, keywords and `by (…)` label lists are not metrics.
fn metric_uses(expr: &str) -> Vec<Use> {
    let b = expr.as_bytes();
    let (mut i, mut out) = (0, Vec::new());
    let mut stack: Vec<String> = Vec::new();
    // The aggregation whose `by (…)` list was just closed: its body opens next.
    let mut pending: Option<String> = None;
    let skip_to = |mut i: usize, close: u8| {
        while i < b.len() && b[i] != close {
            if b[i] == b'"' || b[i] == b'\'' {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        i + 1
    };
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let call = j < b.len() && b[j] == b'(';
            let in_label_list = stack.last().is_some_and(|f| KEYWORDS.contains(&f.as_str()));
            if call {
                stack.push(word.to_owned());
                i = j + 1;
            } else if AGGREGATIONS.contains(&word) {
                pending = Some(word.to_owned());
            } else if !KEYWORDS.contains(&word) && !in_label_list {
                out.push(Use {
                    name: word.to_owned(),
                    enclosing: stack.clone(),
                });
            }
        } else if c.is_ascii_digit() || c == b'.' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else {
            match c {
                b'{' => i = skip_to(i + 1, b'}'),
                b'[' => i = skip_to(i + 1, b']'),
                b'"' | b'\'' => i = skip_to(i + 1, c),
                b'(' => {
                    stack.push(pending.take().unwrap_or_default());
                    i += 1;
                }
                b')' => {
                    stack.pop();
                    i += 1;
                }
                _ => i += 1,
            }
        }
    }
    out
}

/// Every (panel title, expression) of the dashboard, variables' queries included.
fn expressions(v: &Value, title: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            let title = m.get("title").and_then(Value::as_str).unwrap_or(title);
            if let Some(e) = m.get("expr").and_then(Value::as_str) {
                out.push((title.to_owned(), e.to_owned()));
            }
            if let Some(q) = m.get("definition").and_then(Value::as_str) {
                // label_values(metric, label): only the metric is a series name.
                let inner = q
                    .trim()
                    .trim_start_matches("label_values(")
                    .trim_end_matches(')');
                let metric = inner.split(',').next().unwrap_or(inner);
                out.push((format!("variable {title}"), metric.to_owned()));
            }
            for (k, x) in m {
                if k != "definition" && k != "query" {
                    expressions(x, title, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| expressions(x, title, out)),
        _ => {}
    }
}

/// A scraped series: its family (`# TYPE` name) and the family's type.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    family: String,
    kind: String,
}

/// A scrape's series names (sample lines), each with its family and type.
fn series(scrape: &str) -> BTreeMap<String, Series> {
    let mut types = BTreeMap::new();
    for l in scrape.lines() {
        if let Some(t) = l.strip_prefix("# TYPE ") {
            let (fam, ty) = t.split_once(' ').unwrap();
            types.insert(fam.to_owned(), ty.to_owned());
        }
    }
    let mut out = BTreeMap::new();
    for l in scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = l.split(['{', ' ']).next().unwrap();
        let (family, kind) = ["", "_total", "_bucket", "_sum", "_count", "_created"]
            .iter()
            .find_map(|s| {
                let f = name.strip_suffix(s)?;
                Some((f.to_owned(), types.get(f)?.clone()))
            })
            .unwrap_or_else(|| panic!("series {name} has no # TYPE line"));
        out.insert(name.to_owned(), Series { family, kind });
    }
    out
}

/// Every problem of the dashboard against a scrape, one line each.
fn problems(dashboard: &Value, scraped: &BTreeMap<String, Series>) -> Vec<String> {
    let mut exprs = Vec::new();
    expressions(dashboard, "", &mut exprs);
    let mut p = Vec::new();
    for (panel, e) in &exprs {
        let uses = metric_uses(e);
        if uses.is_empty() {
            p.push(format!("panel `{panel}`: `{e}` names no metric"));
        }
        for u in uses {
            let Some(Series { kind: ty, .. }) = scraped.get(&u.name) else {
                p.push(format!(
                    "panel `{panel}`: `{}` is not exported by any service",
                    u.name
                ));
                continue;
            };
            let ranged = u
                .enclosing
                .last()
                .is_some_and(|f| ["rate", "irate", "increase"].contains(&f.as_str()));
            if u.enclosing.iter().any(|f| f == "histogram_quantile")
                && !(ty == "histogram" && u.name.ends_with("_bucket"))
            {
                p.push(format!("panel `{panel}`: histogram_quantile over `{}` ({ty}), not a histogram's _bucket", u.name));
            }
            if ranged && ty != "counter" && ty != "histogram" {
                p.push(format!(
                    "panel `{panel}`: rate/increase over `{}`, a {ty}",
                    u.name
                ));
            }
        }
    }
    p
}

#[test]
fn the_checker_rejects_what_it_must() {
    let names = |e: &str| {
        metric_uses(e)
            .into_iter()
            .map(|u| u.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            r#"histogram_quantile(0.95, sum by (le) (rate(a_bucket{x=~"5.."}[$__rate_interval])))"#
        ),
        ["a_bucket"]
    );
    assert_eq!(
        names("max by (s) (g) / on (s) sum(c_total) or vector(0)"),
        ["g", "c_total"]
    );
    let scraped = series(
        "# TYPE a histogram\na_bucket{le=\"1\"} 1\na_sum 1\na_count 1\n\
         # TYPE g gauge\ng 2\n# TYPE c counter\nc_total 3\n",
    );
    assert_eq!(scraped["a_sum"].family, "a");
    assert_eq!(scraped["c_total"].kind, "counter");
    let dash = |e: &str| json!({"panels": [{"title": "t", "targets": [{"expr": e}]}]});
    assert!(problems(&dash("sum(rate(c_total[5m])) + max(g)"), &scraped).is_empty());
    for bad in [
        "up",
        "rate(g[5m])",
        "histogram_quantile(0.5, rate(c_total[5m]))",
        "vector(1)",
    ] {
        assert_eq!(problems(&dash(bad), &scraped).len(), 1, "{bad}");
    }
}

#[test]
fn shipped_configurations_load() {
    let compose = deploy("compose/spectra.toml");
    let k8s = std::fs::read_to_string(deploy("k8s/10-configmap.yaml")).unwrap();
    let body: String = k8s
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("spectra.toml: |"))
        .skip(1)
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let from_configmap = dir.path().join("spectra.toml");
    std::fs::write(&from_configmap, body).unwrap();
    for f in [compose, from_configmap] {
        let c = Config::load(Some(&f), &json!({}))
            .unwrap_or_else(|e| panic!("{} does not load: {e}", f.display()));
        assert_eq!(c.segmentation.len(), 1, "{}", f.display());
        assert_eq!(c.segmentation[0].name, "category-mix");
        assert_eq!(c.segmentation[0].schedule, "0 6 * * *", "a cron schedule");
        assert!(
            spectra_core::schedule::Schedule::parse(
                &c.segmentation[0].schedule,
                &c.segmentation[0].timezone
            )
            .is_ok_and(|s| !s.is_daily()),
            "{}",
            f.display()
        );
        assert_eq!(c.kafka.partitions, 3, "{}", f.display());
    }
    // Replicas beyond the partitions of `invoices` would sit idle.
    let ingest = std::fs::read_to_string(deploy("k8s/30-ingest.yaml")).unwrap();
    let replicas: i32 = ingest
        .lines()
        .find_map(|l| l.trim().strip_prefix("replicas: "))
        .expect("the ingest Deployment sets replicas")
        .parse()
        .unwrap();
    assert!((1..=3).contains(&replicas), "ingest replicas {replicas}");
}

/// A context of its own (readiness, shutdown) on the shared registry, as a pod has.
fn context(metrics: &Metrics) -> Context {
    Context {
        metrics: metrics.clone(),
        health: Health::default(),
        shutdown: CancellationToken::new(),
    }
}

/// The features folder of `segmentation` the aggregator completed.
fn spectrum_file(storage: &Path, segmentation: &str) -> PathBuf {
    let dir = storage.join(format!("features/segmentation={segmentation}"));
    let as_of = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .find(|p| p.join("_manifest.json").exists())
        .unwrap_or_else(|| panic!("no complete features folder under {}", dir.display()));
    as_of.join("spectrum.parquet")
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let r = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert!(r.status().is_success(), "GET /metrics: {}", r.status());
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_panel_has_data_in_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let id = setup.invoices.trim_end_matches(".invoices");
    let overrides = json!({
        "kafka": {"brokers": setup.brokers, "session_timeout_ms": 6000, "topics": {
            "invoices": setup.invoices, "outlets": setup.outlets, "skus": setup.skus,
            "dlq": setup.dlq, "assignments": format!("{id}.assignments"),
            "profiles": format!("{id}.profiles"),
            "recommendations": format!("{id}.recommendations"),
            "metadata": format!("{id}.metadata")}},
        "storage": {"url": setup.storage},
        "ingest": {"group_id": setup.group},
        "publish": {"listen": "127.0.0.1:0", "poll_seconds": 1},
    });
    let mut cfg = Config::load(Some(&deploy("compose/spectra.toml")), &overrides).unwrap();
    // A second segmentation whose features get damaged: its run and its cycle fail.
    let mut broken = cfg.segmentation[0].clone();
    broken.name = "broken-mix".into();
    broken.level = "brand".into();
    cfg.segmentation.push(broken);

    let opts = spectra_ingest::generate::FeedOptions {
        seed: 7,
        outlets: 160,
        segments: 4,
        skus: 60,
        distributors: 2,
        start: chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
        days: 45,
        visits_per_week: 2.0,
        redelivery_share: 0.02,
        bad_share: 0.02,
        drift_share: 0.0,
        drift_day: 0,
    };
    let mut feed = spectra_ingest::generate::Feed::new(opts);
    let sent = spectra_ingest::generate::to_kafka(&cfg, &mut feed, 0, 45, |_| {})
        .await
        .unwrap();
    assert!(sent.invoice_messages > 500, "{sent:?}");

    // One registry and admin port per service, as four pods have.
    let mut pods = BTreeMap::new();
    for service in ["ingest", "aggregate", "segment", "publish"] {
        let ctx = context(&Metrics::new());
        let addr = spectra_core::admin::serve(
            "127.0.0.1:0",
            spectra_core::admin::router(ctx.admin_state()),
            ctx.shutdown.clone(),
        )
        .await
        .unwrap();
        pods.insert(service, (ctx, addr));
    }
    let pod = |s: &str| pods[s].0.clone();

    let once = spectra_ingest::IngestOptions { once: true };
    let s = spectra_ingest::run(cfg.clone(), pod("ingest"), once)
        .await
        .unwrap();
    assert!(s.rows > 0 && s.rejected > 0, "{s:?}");

    let agg = spectra_aggregator::AggregateOptions {
        once: true,
        ..Default::default()
    };
    spectra_aggregator::run(cfg.clone(), pod("aggregate"), agg)
        .await
        .unwrap();

    std::fs::write(spectrum_file(dir.path(), "broken-mix"), b"not parquet").unwrap();
    let seg = spectra_segmenter::SegmentOptions {
        once: true,
        ..Default::default()
    };
    let r = spectra_segmenter::run(cfg.clone(), pod("segment"), seg)
        .await
        .unwrap();
    let failed: Vec<&str> = r.failures.iter().map(|f| f.segmentation.as_str()).collect();
    assert_eq!(
        failed,
        ["broken-mix"],
        "the damaged segmentation's run must fail"
    );
    assert!(dir
        .path()
        .join("segmentations/category-mix/latest.json")
        .exists());

    // A latest run whose folder is gone: every publish cycle of it fails.
    let latest = dir.path().join("segmentations/broken-mix/latest.json");
    std::fs::create_dir_all(latest.parent().unwrap()).unwrap();
    let pointer = json!({"run_id": "broken-mix/2026-07-15/1", "as_of": "2026-07-15",
        "path": "segmentations/broken-mix/runs/2026-07-15.1"});
    std::fs::write(&latest, pointer.to_string()).unwrap();

    let publish_ctx = pod("publish");
    let publish = spectra_publisher::start(cfg.clone(), publish_ctx.clone(), Default::default())
        .await
        .unwrap();
    let api = publish.addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = scrape(api).await;
        if text.contains("spectra_publish_messages_total{")
            && text.contains("spectra_publish_cycle_errors_total{")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no publish cycle within 120 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One segmentation's damaged run does not stop the others being served.
    let r = reqwest::get(format!(
        "http://{api}/api/segmentations/category-mix/segments"
    ))
    .await
    .unwrap();
    let status = r.status();
    let profiles: Value = r.json().await.unwrap();
    assert!(status.is_success(), "GET segments: {status} {profiles}");
    assert!(
        profiles.as_array().is_some_and(|a| a.len() >= 3),
        "{profiles}"
    );
    // The damaged one answers a server error (the "Errors" panel counts it per route).
    let r = reqwest::get(format!(
        "http://{api}/api/segmentations/broken-mix/segments"
    ))
    .await
    .unwrap();
    assert!(
        r.status().is_server_error(),
        "GET segments of a run whose folder is gone: {}",
        r.status()
    );

    // The publish port and the publisher's admin port serve the same registry.
    assert_eq!(
        series(&scrape(api).await).keys().collect::<Vec<_>>(),
        series(&scrape(pods["publish"].1).await)
            .keys()
            .collect::<Vec<_>>()
    );
    let mut scraped = BTreeMap::new();
    for (_, addr) in pods.values() {
        scraped.extend(series(&scrape(*addr).await));
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("observability/grafana/dashboards/spectra.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    expressions(&dashboard, "", &mut exprs);
    assert!(
        exprs.len() > 30,
        "the dashboard has {} expressions",
        exprs.len()
    );
    let p = problems(&dashboard, &scraped);
    assert!(p.is_empty(), "dashboard problems:\n{}", p.join("\n"));

    // Every service's families appear on the dashboard (a new metric gets a panel).
    let used: BTreeSet<String> = exprs
        .iter()
        .flat_map(|(_, e)| metric_uses(e))
        .map(|u| u.name)
        .collect();
    let used: BTreeSet<&str> = used
        .iter()
        .filter_map(|n| Some(scraped.get(n)?.family.as_str()))
        .collect();
    let missing: BTreeSet<&str> = scraped
        .values()
        .map(|s| s.family.as_str())
        .filter(|f| f.starts_with("spectra_") && !used.contains(f))
        .collect();
    assert!(missing.is_empty(), "exported but on no panel: {missing:?}");

    // Prometheus scrapes the four services through the shipped configuration, and every
    // panel's query returns data through its HTTP API.
    every_panel_has_data_in_prometheus(&dashboard, &exprs, &pods, api, dir.path()).await;

    publish_ctx.shutdown.cancel();
    publish.wait().await.unwrap();
    for (ctx, _) in pods.values() {
        ctx.shutdown.cancel();
    }
}

/// Grafana's values of the dashboard's variables for a query sent to Prometheus
/// directly: the rate interval at four scrape intervals (Grafana's rule), every
/// segmentation (the variable's "All").
fn as_grafana_sends(expr: &str) -> String {
    expr.replace("$__rate_interval", "4s")
        .replace("$segmentation", ".*")
}

async fn every_panel_has_data_in_prometheus(
    dashboard: &Value,
    exprs: &[(String, String)],
    pods: &BTreeMap<&str, (Context, std::net::SocketAddr)>,
    api: std::net::SocketAddr,
    dir: &Path,
) {
    let shipped = std::fs::read_to_string(deploy("observability/prometheus.yml")).unwrap();
    let mut targets: BTreeMap<&str, std::net::SocketAddr> = BTreeMap::new();
    for (service, (_, addr)) in pods {
        // The publisher is scraped on its API port, as the shipped file says.
        let addr = if *service == "publish" { api } else { *addr };
        targets.insert(
            match *service {
                "ingest" => "spectra-ingest",
                "aggregate" => "spectra-aggregate",
                "segment" => "spectra-segment",
                _ => "spectra-publish",
            },
            addr,
        );
    }
    let own = Prometheus::reserve();
    let config = spectra_tests::prometheus::scrape_config(&shipped, &targets, own, "1s");
    let prom_dir = dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom = Prometheus::start(&config, own, &prom_dir).await;

    // Every target up, with enough samples for a rate over the rate interval.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let up = prom
            .query("count_over_time(up{job=~\"spectra-.*\"}[1m]) >= 6 and up == 1")
            .await;
        if up.len() == targets.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus does not scrape every service within 90 s: {up:?}\n{}",
            std::fs::read_to_string(prom_dir.join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let services: BTreeSet<String> = prom
        .query("up")
        .await
        .iter()
        .filter_map(|s| s["metric"]["service"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        services,
        ["aggregate", "ingest", "publish", "segment"]
            .map(String::from)
            .into(),
        "the shipped relabelling names each service"
    );

    let mut empty = Vec::new();
    for (panel, e) in exprs {
        if panel.starts_with("variable ") {
            continue;
        }
        let q = as_grafana_sends(e);
        if prom.query(&q).await.is_empty() {
            empty.push(format!("panel `{panel}`: `{q}`"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data in Prometheus:\n{}",
        empty.join("\n")
    );
    // The variable's query (label_values) offers the segmentations of the run.
    let definition = dashboard["templating"]["list"][0]["definition"]
        .as_str()
        .unwrap();
    assert_eq!(
        definition,
        "label_values(spectra_segment_runs_total, segmentation)"
    );
    let values = prom
        .label_values("segmentation", "spectra_segment_runs_total")
        .await;
    assert!(
        values.contains(&"category-mix".to_owned()) && values.contains(&"broken-mix".to_owned()),
        "{values:?}"
    );
}
