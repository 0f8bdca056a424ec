//! `spectra demo`: the whole pipeline on this machine with nothing installed.
//!
//! An embedded Kafka-protocol broker (librdkafka's mock cluster, on a real local port
//! that any Kafka client — kcat included — can reach), a local `file://` store, the
//! feed generator replaying simulated days, and all four services. Interactive mode
//! runs the services as services (ingest consuming, aggregate/segment/publish polling)
//! while days pass, and serves the console until Ctrl-C. `--once` runs the story in
//! three chapters of one cycle each (before drift, at drift, after drift) and prints a
//! summary: segments, sizes, agreement with the planted truth, outlets moved.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arrow::array::AsArray;
use rdkafka::mocking::MockCluster;
use serde_json::json;
use spectra_core::config::{KSpec, SegmentationConfig};
use spectra_core::service::Context;
use spectra_core::{Config, Storage};
use spectra_ingest::generate::{to_kafka, Feed, FeedOptions};
use tokio_util::sync::CancellationToken;

/// How the demo runs.
pub struct DemoOptions {
    /// Run the story once and exit with a summary.
    pub once: bool,
    /// The feed.
    pub feed: FeedOptions,
    /// Console address.
    pub listen: String,
    /// Storage directory (default: a fresh temporary directory).
    pub dir: Option<PathBuf>,
    /// Wall-clock milliseconds per simulated day (interactive mode).
    pub day_ms: u64,
    /// A config file over the demo's settings.
    pub config: Option<PathBuf>,
    /// `--set` overrides over it, as `(key path, value)`.
    pub settings: Vec<(String, serde_json::Value)>,
}

/// The demo's settings, then the config file, `SPECTRA__…` variables and `--set` over
/// them (every subcommand takes a config file); the embedded broker, the store and the
/// console address stay the demo's.
fn demo_config(
    brokers: &str,
    storage: &str,
    listen: &str,
    file: Option<&std::path::Path>,
    settings: &[(String, serde_json::Value)],
) -> anyhow::Result<Config> {
    let mut cfg = Config::load_flags_over(demo_defaults(), file, settings)?;
    cfg.kafka.brokers = brokers.to_owned();
    cfg.storage.url = storage.to_owned();
    cfg.publish.listen = listen.to_owned();
    // The embedded mock broker can neither describe nor compact topics.
    cfg.publish.require_compacted_topics = false;
    Ok(cfg)
}

/// The demo's own settings.
fn demo_defaults() -> Config {
    let mut cfg = Config::default();
    cfg.kafka.partitions = 3;
    cfg.kafka.session_timeout_ms = 6000;
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.publish.api_token = "demo-token".into();
    cfg.publish.poll_seconds = 1;
    cfg.aggregate.poll_seconds = 2;
    cfg.segment.poll_seconds = 2;
    cfg.ingest.flush_age_ms = 500;
    cfg.ingest.group_id = "spectra-demo-ingest".into();
    cfg.segmentation = vec![SegmentationConfig {
        name: "category-mix".into(),
        level: "category".into(),
        window_days: 56,
        half_life_days: Some(21.0),
        k: KSpec::Auto("auto".into()),
        k_range: [3, 8],
        min_value: 0.0,
        filter: None,
        schedule: "daily".into(),
        move_margin: 0.1,
        kpi_weight: 0.0,
        seed: 42,
        // The demo replays its days in seconds and segments daily from the first
        // ones: a first run on a dozen days of spend is followed two weeks later by
        // centroids too far from it to keep their ids (same partition, new ids), and
        // the circuit breaker would hold the demo at its thin first run.
        max_change_share: 1.0,
        ..SegmentationConfig::named("category-mix")
    }];
    cfg
}

/// Runs the demo.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let cluster = MockCluster::new(1).context("starting the embedded Kafka broker")?;
    let brokers = cluster.bootstrap_servers();
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("spectra-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let storage_url = format!("file://{}", dir.canonicalize()?.display());
    let cfg = demo_config(
        &brokers,
        &storage_url,
        &opts.listen,
        opts.config.as_deref(),
        &opts.settings,
    )?;
    // The mock broker does not serve CreateTopics: create every topic up front.
    let t = &cfg.kafka.topics;
    for topic in [
        &t.invoices,
        &t.outlets,
        &t.skus,
        &t.dlq,
        &t.assignments,
        &t.profiles,
        &t.recommendations,
        &t.metadata,
    ] {
        cluster
            .create_topic(topic, cfg.kafka.partitions, 1)
            .with_context(|| format!("creating topic {topic} on the embedded broker"))?;
    }
    println!("spectra demo");
    println!("  broker (Kafka protocol, e.g. `kcat -b {brokers} -L`): {brokers}");
    println!("  storage: {storage_url}");
    let result = if opts.once {
        story_once(&cfg, opts.feed).await
    } else {
        interactive(&cfg, opts.feed, opts.day_ms).await
    };
    // Let background readers notice their cancelled cycles before the broker goes away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(cluster);
    result
}

/// A context of its own for each one-shot cycle (each registers its metrics once), and
/// cancelled afterwards so background readers it started stop.
struct Cycle(Context);

impl Cycle {
    fn new() -> Self {
        Self(Context::new(CancellationToken::new()))
    }
    fn ctx(&self) -> Context {
        self.0.clone()
    }
}

impl Drop for Cycle {
    fn drop(&mut self) {
        self.0.shutdown.cancel();
    }
}

async fn story_once(cfg: &Config, feed_opts: FeedOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let days = feed_opts.days;
    let drift = feed_opts.drift_day.min(days);
    let mut feed = Feed::new(feed_opts);
    let truth_after = feed.truth(true);
    let mut chapters = vec![(drift * 2 / 3).max(1), drift, days];
    chapters.dedup();
    let mut from = 0;
    let mut last_run: Option<spectra_segmenter::RunSummary> = None;
    let mut moved_after_drift = 0;
    for to in chapters {
        if to <= from {
            continue;
        }
        to_kafka(cfg, &mut feed, from, to, |_| {}).await?;
        let as_of = feed.date(to - 1);
        let ing = spectra_ingest::run(
            cfg.clone(),
            Cycle::new().ctx(),
            spectra_ingest::IngestOptions { once: true },
        )
        .await?;
        let agg = spectra_aggregator::run(
            cfg.clone(),
            Cycle::new().ctx(),
            spectra_aggregator::AggregateOptions {
                once: true,
                as_of: Some(as_of),
                ..Default::default()
            },
        )
        .await?;
        let seg = spectra_segmenter::run(
            cfg.clone(),
            Cycle::new().ctx(),
            spectra_segmenter::SegmentOptions {
                once: true,
                ..Default::default()
            },
        )
        .await?;
        let publish_cycle = Cycle::new();
        let publ = spectra_publisher::run(
            cfg.clone(),
            publish_cycle.ctx(),
            spectra_publisher::PublishOptions {
                once: true,
                ..Default::default()
            },
        )
        .await?;
        drop(publish_cycle);
        let run = seg.runs.last().cloned();
        if let Some(r) = &run {
            if to > drift {
                moved_after_drift += r.moved;
            }
            println!(
                "  day {to:>3} ({as_of}): {} lines ingested, {} rejected to the DLQ; run {}: {} segments, {} outlets, {} moved; {} messages published",
                ing.rows, ing.rejected, r.run_id, r.segments, r.outlets, r.moved, publ.messages
            );
        } else {
            println!(
                "  day {to:>3} ({as_of}): {} lines ingested; no new run ({agg:?})",
                ing.rows
            );
        }
        last_run = run.or(last_run);
        from = to;
    }
    let run = last_run.context("the story produced no segmentation run")?;
    let storage = Storage::from_url(&cfg.storage.url)?;
    let assignments = read_assignments(&storage, &run.run_id).await?;
    let mut ids: HashMap<String, usize> = HashMap::new();
    let (mut found, mut planted) = (Vec::new(), Vec::new());
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    for (outlet, seg) in &assignments {
        *sizes.entry(seg.clone()).or_default() += 1;
        if let Some(t) = truth_after.get(outlet) {
            let n = ids.len();
            found.push(*ids.entry(seg.clone()).or_insert(n));
            planted.push(*t);
        }
    }
    let ari = spectra_segmenter::cluster::metrics::adjusted_rand_index(&found, &planted);
    let recovered = ari >= 0.6;
    println!(
        "{}",
        json!({
            "segmentation": run.run_id.split('/').next().unwrap_or_default(),
            "run_id": run.run_id,
            "segments": sizes,
            "outlets": assignments.len(),
            "ari_vs_planted": (ari * 1000.0).round() / 1000.0,
            "planted_segments_recovered": recovered,
            "outlets_moved_after_drift": moved_after_drift,
            "seconds": started.elapsed().as_secs(),
        })
    );
    anyhow::ensure!(
        recovered,
        "the planted segments were not recovered (ARI {ari:.3} < 0.6)"
    );
    Ok(())
}

/// Outlet → segment of a run (`run_id` = `{name}/{as_of}/{seq}`).
async fn read_assignments(
    storage: &Storage,
    run_id: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    Ok(read_changes(storage, run_id)
        .await?
        .into_iter()
        .map(|(o, s, _)| (o, s))
        .collect())
}

async fn interactive(cfg: &Config, feed_opts: FeedOptions, day_ms: u64) -> anyhow::Result<()> {
    let shutdown = spectra_core::shutdown::on_signals();
    let ctx = Context::new(shutdown.clone());
    let admin = spectra_core::admin::serve(
        &cfg.admin.listen,
        spectra_core::admin::router(ctx.admin_state()),
        shutdown.clone(),
    )
    .await?;
    let publisher = spectra_publisher::start(
        cfg.clone(),
        ctx.clone(),
        spectra_publisher::PublishOptions::default(),
    )
    .await?;
    let console = publisher
        .addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| cfg.publish.listen.clone());
    println!("  console: http://{console}/   (API token for edits: demo-token)");
    println!("  metrics: http://{admin}/metrics");
    let c = cfg.clone();
    let x = ctx.clone();
    let ingest = tokio::spawn(async move { spectra_ingest::run(c, x, Default::default()).await });
    let c = cfg.clone();
    let x = ctx.clone();
    let aggregate =
        tokio::spawn(async move { spectra_aggregator::run(c, x, Default::default()).await });
    let c = cfg.clone();
    let x = ctx.clone();
    let segment = tokio::spawn(async move {
        spectra_segmenter::run(
            c,
            x,
            spectra_segmenter::SegmentOptions {
                once: false,
                ..Default::default()
            },
        )
        .await
    });
    let watcher = tokio::spawn(watch_runs(cfg.clone(), shutdown.clone()));
    let days = feed_opts.days;
    let mut feed = Feed::new(feed_opts);
    let c = cfg.clone();
    let stop = shutdown.clone();
    let feeder = tokio::task::spawn_blocking(move || {
        let handle = tokio::runtime::Handle::current();
        handle.block_on(to_kafka(&c, &mut feed, 0, days, |day| {
            if day % 7 == 6 {
                println!("  simulated day {} of {days}", day + 1);
            }
            if !stop.is_cancelled() {
                std::thread::sleep(Duration::from_millis(day_ms));
            }
        }))
    });
    let fed = feeder.await?;
    println!("  the feed is complete ({fed:?}); the services keep running — Ctrl-C to stop");
    shutdown.cancelled().await;
    let _ = tokio::join!(ingest, aggregate, segment, watcher);
    let _ = publisher.wait().await;
    Ok(())
}

/// Prints each new segmentation run as the services produce it.
async fn watch_runs(cfg: Config, shutdown: CancellationToken) {
    let Ok(storage) = Storage::from_url(&cfg.storage.url) else {
        return;
    };
    let mut last = String::new();
    while !shutdown.is_cancelled() {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for seg in &cfg.segmentation {
            let path = format!("segmentations/{}/latest.json", seg.name);
            let Ok(Some(latest)) = storage.get_json::<serde_json::Value>(&path).await else {
                continue;
            };
            let run_id = latest["run_id"].as_str().unwrap_or_default().to_owned();
            if run_id.is_empty() || run_id == last {
                continue;
            }
            last = run_id.clone();
            if let Ok(rows) = read_changes(&storage, &run_id).await {
                let segments: std::collections::BTreeSet<&str> =
                    rows.iter().map(|(_, s, _)| s.as_str()).collect();
                let moved = rows.iter().filter(|(_, _, c)| c == "moved").count();
                println!(
                    "  run {run_id}: {} segments, {} outlets, {moved} moved",
                    segments.len(),
                    rows.len()
                );
            }
        }
    }
}

/// Outlet, segment and change of a run's assignments.
async fn read_changes(
    storage: &Storage,
    run_id: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut parts = run_id.splitn(3, '/');
    let (name, as_of, seq) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = format!("segmentations/{name}/runs/{as_of}.{seq}/assignments.parquet");
    let data = storage
        .get(&path)
        .await?
        .with_context(|| format!("{path} is missing"))?;
    let mut out = Vec::new();
    for b in spectra_core::schema::from_parquet(data)? {
        let col = |n: &str| -> anyhow::Result<arrow::array::StringArray> {
            Ok(b.column_by_name(n)
                .with_context(|| format!("{n} column"))?
                .as_string::<i32>()
                .clone())
        };
        let (o, s, c) = (col("outlet_id")?, col("segment_id")?, col("change")?);
        for i in 0..b.num_rows() {
            out.push((
                o.value(i).to_owned(),
                s.value(i).to_owned(),
                c.value(i).to_owned(),
            ));
        }
    }
    Ok(out)
}
