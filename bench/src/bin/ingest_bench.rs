//! Ingest throughput, side by side with a bare rdkafka consumer (the ceiling) reading
//! the same topic from the same broker in the same run.
//!
//! ```sh
//! B=$(scripts/tansu.sh start)
//! cargo run --release -p spectra-bench --bin ingest_bench -- --brokers $B --lines 1000000
//! ```
//! Prints a table and one JSON line with lines/s of both and their ratio.
//!
//! Each consumer is timed two ways: from its start (the bare `assign` consumer's
//! connection, metadata and first fetch included; ingest's group join excluded) and
//! from its first message to its last, which compares the reading itself like for
//! like. Every round is printed; the table gives the best and the median of the
//! rounds.

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
use spectra_segmenter::gaps::median;

/// The allocator of the `spectra` binary (`cli/src/main.rs`), so that ingest is
/// measured as it runs there.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Flags.
#[derive(Parser)]
struct Args {
    /// Broker address.
    #[arg(long)]
    brokers: String,
    /// Invoice lines to produce.
    #[arg(long, default_value_t = 1_000_000)]
    lines: usize,
    /// Lines per message: 1 sends flat lines; more sends whole invoices (a header
    /// and `lines`) of this many lines each (`--lines` must be a multiple of it).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    invoice_lines: u32,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Rounds of each contender (the best and the median are reported; on a 2-core
    /// machine one round moves by ±10%, and two rounds left the best ratio 0.77–1.02).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seed of the generated feed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn produce(brokers: &str, topic: &str, lines: usize, per: usize, seed: u64) {
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
    for n in (0..lines).step_by(per) {
        let day = (n * 30 / lines.max(1)) as i64;
        // A month of days in feed order, 1% of lines arriving late for an older day.
        let date = |rng: &mut Xoshiro256PlusPlus| {
            start
                + chrono::Duration::days(if rng.gen_bool(0.01) {
                    rng.gen_range(0..=day)
                } else {
                    day
                })
        };
        let outlet = format!("PL-{:06}", rng.gen_range(0..20_000));
        buf.clear();
        use std::fmt::Write;
        if per > 1 {
            // A whole invoice: the header once, then its lines.
            let _ = write!(
                buf,
                r#"{{"distributor_id":"D{:02}","invoice_id":"FV/2026/{:07}","invoice_date":"{}","outlet_id":"{outlet}","currency":"PLN","lines":["#,
                rng.gen_range(1..6),
                n / per,
                date(&mut rng),
            );
            for l in 0..per {
                let _ = write!(
                    buf,
                    r#"{}{{"line_no":{},"sku_id":"59012{:08}","quantity":{},"net_value":{:.2}}}"#,
                    if l == 0 { "" } else { "," },
                    l + 1,
                    rng.gen_range(0..3000),
                    rng.gen_range(1..24),
                    rng.gen_range(1.0..500.0f64),
                );
            }
            buf.push_str("]}");
        } else {
            let _ = write!(
                buf,
                r#"{{"distributor_id":"D{:02}","invoice_id":"FV/2026/{:07}","line_no":{},"invoice_date":"{}","outlet_id":"{outlet}","sku_id":"59012{:08}","quantity":{},"net_value":{:.2},"currency":"PLN"}}"#,
                rng.gen_range(1..6),
                n / 5,
                n % 5 + 1,
                date(&mut rng),
                rng.gen_range(0..3000),
                rng.gen_range(1..24),
                rng.gen_range(1.0..500.0f64),
            );
        }
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

/// Reads every partition to its end with a bare consumer; returns messages read and
/// the seconds from its first message to its last.
fn bare(brokers: &str, topic: &str, partitions: i32) -> (u64, f64) {
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
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while at_end.iter().any(|d| !d) {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                first.get_or_insert(last);
                n += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
                at_end[m.partition() as usize] = false;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => at_end[p as usize] = true,
            _ => {}
        }
    }
    std::hint::black_box(bytes);
    (n, first.map_or(0.0, |f| (last - f).as_secs_f64()))
}

/// Best (lowest) and median of `v` (the segmenter's median: the mean of the middle
/// two for an even count).
fn best_and_median(v: &[f64]) -> (f64, f64) {
    let best = v.iter().copied().fold(f64::INFINITY, f64::min);
    (best, median(v.to_vec()))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
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
    let per = args.invoice_lines as usize;
    anyhow::ensure!(
        args.lines % per == 0,
        "--lines must be a multiple of --invoice-lines"
    );
    let messages = args.lines / per;
    let t = Instant::now();
    produce(&args.brokers, &topic, args.lines, per, args.seed);
    eprintln!(
        "produced {} lines in {:.1}s",
        args.lines,
        t.elapsed().as_secs_f64()
    );

    // Seconds per round: the bare consumer from its start and from its first
    // message, the bare group consumer from its first message, ingest's whole run
    // and ingest from its first message (its group join excluded).
    let (mut bare_all, mut bare_read, mut group_read) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ingest_all, mut ingest_read) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let t = Instant::now();
        let (n, read) = bare(&args.brokers, &topic, args.partitions);
        let s = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            n as usize == messages,
            "bare consumer read {n} of {messages} messages"
        );
        bare_all.push(s);
        bare_read.push(read);
        let g = bare_group(&args.brokers, &topic, messages as u64);
        group_read.push(g);
        eprintln!(
            "round {round}: bare group consumer {messages} messages in {g:.2}s after the join"
        );
        eprintln!(
            "round {round}: bare consumer {n} messages in {s:.2}s, {read:.2}s from its first message"
        );

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
        ingest_read.push(s - join);
        anyhow::ensure!(
            summary.rows as usize == args.lines,
            "ingest wrote {} of {}",
            summary.rows,
            args.lines
        );
        ingest_all.push(s);
        eprintln!("round {round}: spectra ingest {} lines in {s:.2}s, of which {join:.2}s joining the consumer group", summary.rows);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let lines = args.lines as f64;
    let rows = [
        (
            "bare rdkafka consumer (`assign`), from its start",
            &bare_all,
        ),
        (
            "bare rdkafka consumer (`assign`), from its first message",
            &bare_read,
        ),
        (
            "bare rdkafka consumer in a group, from its first message",
            &group_read,
        ),
        (
            "spectra ingest, whole run (group join + read + durable Parquet)",
            &ingest_all,
        ),
        (
            "spectra ingest, from its first message (read + durable Parquet)",
            &ingest_read,
        ),
    ];
    println!("| contender | lines | best s | median s | lines/s (best) | lines/s (median) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, v) in rows {
        let (b, m) = best_and_median(v);
        println!(
            "| {name} | {} | {b:.2} | {m:.2} | {:.0} | {:.0} |",
            args.lines,
            lines / b,
            lines / m
        );
    }
    // Ingest's rate over the bare consumer's: `b` over `a` seconds, of the rounds'
    // best (`median` false) or median.
    let ratio = |a: &[f64], b: &[f64], median: bool| {
        let pick = |v: &[f64]| {
            let (best, mid) = best_and_median(v);
            if median {
                mid
            } else {
                best
            }
        };
        (pick(b) / pick(a) * 1000.0).round() / 1000.0
    };
    let rate = |v: &[f64]| (lines / best_and_median(v).0).round();
    println!(
        "{}",
        serde_json::json!({
            "lines": args.lines,
            "lines_per_message": per,
            "rounds": args.rounds,
            "bare_lines_per_s": rate(&bare_all),
            "bare_from_first_message_lines_per_s": rate(&bare_read),
            "bare_group_after_join_lines_per_s": rate(&group_read),
            "ingest_lines_per_s": rate(&ingest_all),
            "ingest_after_join_lines_per_s": rate(&ingest_read),
            // Ingest after its join against the bare consumer from its start (the
            // issue's measure), best and median of the rounds.
            "ratio_after_join": ratio(&ingest_read, &bare_all, false),
            "ratio_after_join_median": ratio(&ingest_read, &bare_all, true),
            // Like for like: both from their first message.
            "ratio_reading": ratio(&ingest_read, &bare_read, false),
            "ratio_reading_median": ratio(&ingest_read, &bare_read, true),
            "ratio_whole_run": ratio(&ingest_all, &bare_all, false),
        })
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
