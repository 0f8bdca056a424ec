//! Ingest throughput, side by side with a bare rdkafka consumer (the ceiling) reading
//! the same topic from the same broker in the same run.
//!
//! ```sh
//! B=$(scripts/tansu.sh start)
//! cargo run --release -p spectra-bench --bin ingest_bench -- --brokers $B --lines 1000000
//! ```
//! Prints a table and one JSON line with lines/s of both and their ratio.

use std::time::{Duration, Instant};

use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use spectra_core::service::Context;
use spectra_core::Config;
use spectra_ingest::{run, IngestOptions};

/// Flags.
#[derive(Parser)]
struct Args {
    /// Broker address.
    #[arg(long)]
    brokers: String,
    /// Invoice lines to produce (one per message).
    #[arg(long, default_value_t = 1_000_000)]
    lines: usize,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Rounds of each contender (the best is reported).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Seed of the generated feed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn produce(brokers: &str, topic: &str, lines: usize, seed: u64) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut buf = String::with_capacity(300);
    let start = chrono::NaiveDate::from_ymd_opt(2026, 10, 1).expect("valid date");
    for n in 0..lines {
        let day = (n * 30 / lines.max(1)) as i64;
        let outlet = format!("PL-{:06}", rng.gen_range(0..20_000));
        buf.clear();
        use std::fmt::Write;
        let _ = write!(
            buf,
            r#"{{"distributor_id":"D{:02}","invoice_id":"FV/2026/{:07}","line_no":{},"invoice_date":"{}","outlet_id":"{outlet}","sku_id":"59012{:08}","quantity":{},"net_value":{:.2},"currency":"PLN"}}"#,
            rng.gen_range(1..6),
            n / 5,
            n % 5 + 1,
            // A month of days in feed order, 1% of lines arriving late for an older day.
            start
                + chrono::Duration::days(if rng.gen_bool(0.01) {
                    rng.gen_range(0..=day)
                } else {
                    day
                }),
            rng.gen_range(0..3000),
            rng.gen_range(1..24),
            rng.gen_range(1.0..500.0f64),
        );
        let mut rec: BaseRecord<'_, str, str> = BaseRecord::to(topic)
            .key(outlet.as_str())
            .payload(buf.as_str());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    std::thread::sleep(Duration::from_millis(1));
                    rec = r;
                }
            }
        }
    }
    p.flush(Duration::from_secs(300)).expect("flush");
}

/// Reads every partition to its end with a bare consumer in a consumer group
/// (subscribe, as ingest does) and nothing else; returns the seconds from its first
/// message to its last (the group join excluded).
fn bare_group(brokers: &str, topic: &str, lines: u64) -> f64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bare-group-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut n = 0u64;
    let mut first: Option<Instant> = None;
    while n < lines {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            n += 1;
            std::hint::black_box(m.payload());
        }
    }
    first.map_or(0.0, |f| f.elapsed().as_secs_f64())
}

/// Reads every partition to its end with a bare consumer; returns messages read.
fn bare(brokers: &str, topic: &str, partitions: i32) -> u64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bare-{}", std::process::id()))
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut at_end = vec![false; partitions as usize];
    let mut n = 0u64;
    let mut bytes = 0usize;
    while at_end.iter().any(|d| !d) {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
                at_end[m.partition() as usize] = false;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => at_end[p as usize] = true,
            _ => {}
        }
    }
    std::hint::black_box(bytes);
    n
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    spectra_core::telemetry::init_logging(&spectra_core::config::LogConfig {
        format: "plain".into(),
        // `SPECTRA_BENCH_LOG=info` (or `debug`) shows ingest's timeline.
        level: std::env::var("SPECTRA_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
    });
    let rt = tokio::runtime::Runtime::new()?;
    let topic = format!("bench-invoices-{}", std::process::id());
    let mut cfg = Config::default();
    cfg.kafka.brokers = args.brokers.clone();
    cfg.kafka.partitions = args.partitions;
    cfg.kafka.topics.invoices = topic.clone();
    cfg.kafka.topics.outlets = format!("{topic}.outlets");
    cfg.kafka.topics.skus = format!("{topic}.skus");
    cfg.kafka.topics.dlq = format!("{topic}.dlq");
    use spectra_core::kafka::Retention::*;
    rt.block_on(spectra_core::kafka::ensure_topics(
        &cfg,
        &[
            (topic.as_str(), Delete),
            (cfg.kafka.topics.outlets.as_str(), Compact),
            (cfg.kafka.topics.skus.as_str(), Compact),
            (cfg.kafka.topics.dlq.as_str(), Delete),
        ],
    ))?;
    let t = Instant::now();
    produce(&args.brokers, &topic, args.lines, args.seed);
    eprintln!(
        "produced {} lines in {:.1}s",
        args.lines,
        t.elapsed().as_secs_f64()
    );

    let mut best_bare = f64::MAX;
    let mut best_ingest = f64::MAX;
    let mut best_steady = f64::MAX;
    let mut best_group = f64::MAX;
    for round in 0..args.rounds {
        let t = Instant::now();
        let n = bare(&args.brokers, &topic, args.partitions);
        let s = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            n as usize == args.lines,
            "bare consumer read {n} of {}",
            args.lines
        );
        best_bare = best_bare.min(s);
        let g = bare_group(&args.brokers, &topic, args.lines as u64);
        best_group = best_group.min(g);
        eprintln!(
            "round {round}: bare group consumer {} messages in {g:.2}s after the join",
            args.lines
        );
        eprintln!("round {round}: bare consumer {n} messages in {s:.2}s");

        let dir = tempfile_dir(round)?;
        let mut c = cfg.clone();
        c.storage.url = format!("file://{}", dir.display());
        c.ingest.group_id = format!("bench-ingest-{}-{round}", std::process::id());
        c.ingest.flush_rows = std::env::var("FLUSH_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(250_000);
        c.ingest.flush_age_ms = 10_000;
        // `SPECTRA_BENCH_KAFKA_DEBUG=fetch` (with `SPECTRA_BENCH_LOG=debug`) shows
        // librdkafka's fetch decisions, as in RESULTS.md.
        if let Ok(d) = std::env::var("SPECTRA_BENCH_KAFKA_DEBUG") {
            c.kafka.properties.insert("debug".into(), d);
        }
        // `SPECTRA_BENCH_KAFKA_PROPS=queued.min.messages=500000,…` tries librdkafka
        // settings on ingest's consumer (as `[kafka.properties]` would).
        for kv in std::env::var("SPECTRA_BENCH_KAFKA_PROPS")
            .unwrap_or_default()
            .split(',')
        {
            if let Some((k, v)) = kv.split_once('=') {
                c.kafka.properties.insert(k.trim().into(), v.trim().into());
            }
        }
        let ctx = Context::new(tokio_util_token());
        let t = Instant::now();
        // When the first message is read (after the group join), from the metrics.
        let metrics = ctx.metrics.clone();
        let first_read = std::sync::Arc::new(std::sync::Mutex::new(None::<f64>));
        let fr = first_read.clone();
        let watcher = std::thread::spawn(move || {
            while fr.lock().expect("lock").is_none() && t.elapsed() < Duration::from_secs(120) {
                if metrics.encode().lines().any(|l| {
                    l.starts_with("spectra_ingest_messages_read_total") && !l.ends_with(" 0")
                }) {
                    *fr.lock().expect("lock") = Some(t.elapsed().as_secs_f64());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let summary = rt.block_on(run(c, ctx, IngestOptions { once: true }))?;
        let s = t.elapsed().as_secs_f64();
        let _ = watcher.join();
        let join = first_read.lock().expect("lock").unwrap_or(0.0);
        best_steady = best_steady.min(s - join);
        anyhow::ensure!(
            summary.rows as usize == args.lines,
            "ingest wrote {} of {}",
            summary.rows,
            args.lines
        );
        best_ingest = best_ingest.min(s);
        eprintln!("round {round}: spectra ingest {} lines in {s:.2}s, of which {join:.2}s joining the consumer group", summary.rows);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let bare_rate = args.lines as f64 / best_bare;
    let ingest_rate = args.lines as f64 / best_ingest;
    let steady_rate = args.lines as f64 / best_steady;
    let group_rate = args.lines as f64 / best_group;
    println!("| contender | lines | best seconds | lines/s |");
    println!("|---|---|---|---|");
    println!(
        "| bare rdkafka consumer | {} | {best_bare:.2} | {bare_rate:.0} |",
        args.lines
    );
    println!(
        "| bare rdkafka consumer in a group, after the join | {} | {best_group:.2} | {group_rate:.0} |",
        args.lines
    );
    println!(
        "| spectra ingest, whole run (group join + read + durable Parquet) | {} | {best_ingest:.2} | {ingest_rate:.0} |",
        args.lines
    );
    println!(
        "| spectra ingest, after the group join (read + durable Parquet) | {} | {best_steady:.2} | {steady_rate:.0} |",
        args.lines
    );
    println!(
        "{}",
        serde_json::json!({"lines": args.lines, "bare_lines_per_s": bare_rate.round(), "ingest_lines_per_s": ingest_rate.round(), "ingest_after_join_lines_per_s": steady_rate.round(), "bare_group_after_join_lines_per_s": group_rate.round(), "ratio": (ingest_rate / bare_rate * 1000.0).round() / 1000.0, "ratio_after_join": (steady_rate / bare_rate * 1000.0).round() / 1000.0})
    );
    Ok(())
}

fn tempfile_dir(round: usize) -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "spectra-ingest-bench-{}-{round}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn tokio_util_token() -> tokio_util::sync::CancellationToken {
    tokio_util::sync::CancellationToken::new()
}
