//! The aggregator's benchmark: generates a seeded raw invoice table (the core schema,
//! Hive layout `raw/invoices/date=…/`), runs the full daily roll-up, then adds one day
//! (with corrections of older days) and runs the incremental pass. Prints one JSON
//! line per step; `bench/aggregate/run.sh` runs it beside DuckDB.
//!
//! ```sh
//! cargo run --release -p spectra-bench --bin aggregate_bench -- generate --dir /tmp/agg-bench --lines 10000000
//! cargo run --release -p spectra-bench --bin aggregate_bench -- full --dir /tmp/agg-bench
//! cargo run --release -p spectra-bench --bin aggregate_bench -- add-day --dir /tmp/agg-bench
//! cargo run --release -p spectra-bench --bin aggregate_bench -- incremental --dir /tmp/agg-bench
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use chrono::{Days, NaiveDate};
use clap::{Parser, Subcommand};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::json;
use spectra_aggregator::metrics::AggregateMetrics;
use spectra_aggregator::{run_once, AggregateOptions};
use spectra_core::message::InvoiceLine;
use spectra_core::schema::{raw_invoice_schema, to_parquet, RawInvoiceBuilder, Source};
use spectra_core::telemetry::Metrics;
use spectra_core::{Config, Storage};

/// The allocator of the `spectra` binary (`cli/src/main.rs`), so that the roll-up is
/// measured as `spectra aggregate` runs it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(about = "Benchmark of the aggregator's daily roll-up")]
struct Args {
    #[command(subcommand)]
    step: Step,
}

#[derive(Subcommand)]
enum Step {
    /// Writes the raw table.
    Generate {
        #[arg(long)]
        dir: PathBuf,
        /// Raw lines in total.
        #[arg(long, default_value_t = 10_000_000)]
        lines: u64,
        /// Days of invoices.
        #[arg(long, default_value_t = 730)]
        days: u32,
        /// Outlets.
        #[arg(long, default_value_t = 20_000)]
        outlets: u32,
        /// SKUs.
        #[arg(long, default_value_t = 3_000)]
        skus: u32,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Full roll-up (state forgotten).
    Full {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Writes one more day, with corrections of lines on older days.
    AddDay {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 43)]
        seed: u64,
        /// Lines on random older days redelivered with new values (the first moved to
        /// the new day).
        #[arg(long, default_value_t = 20)]
        corrections: u32,
    },
    /// Incremental pass.
    Incremental {
        #[arg(long)]
        dir: PathBuf,
    },
}

const FIRST_DAY: (i32, u32, u32) = (2024, 1, 1);
const LINES_PER_INVOICE: u64 = 10;
/// Kafka partitions the feed is spread over (one raw file per day and partition).
const PARTITIONS: i32 = 3;

fn day(n: u32) -> NaiveDate {
    let (y, m, d) = FIRST_DAY;
    NaiveDate::from_ymd_opt(y, m, d).expect("valid") + Days::new(u64::from(n))
}

fn storage(dir: &std::path::Path) -> anyhow::Result<Storage> {
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    Ok(Storage::from_url(&format!("file://{}", dir.display()))?)
}

struct Generator {
    rng: Xoshiro256PlusPlus,
    outlets: u32,
    skus: u32,
    offset: i64,
}

impl Generator {
    /// One day's invoices, `lines` lines, one file per partition.
    async fn day(
        &mut self,
        storage: &Storage,
        n: u32,
        lines: u64,
        tag: &str,
    ) -> anyhow::Result<()> {
        let date = day(n);
        let mut builders: Vec<RawInvoiceBuilder> = (0..PARTITIONS)
            .map(|_| RawInvoiceBuilder::default())
            .collect();
        let invoices = lines.div_ceil(LINES_PER_INVOICE);
        for inv in 0..invoices {
            let outlet = format!("O{:06}", self.rng.gen_range(0..self.outlets));
            let invoice = format!("FV/{date}/{tag}{inv:06}");
            let p = self.rng.gen_range(0..PARTITIONS);
            for line_no in 0..LINES_PER_INVOICE.min(lines - inv * LINES_PER_INVOICE) {
                // Popular SKUs first: a squared uniform skews towards low ids.
                let u: f64 = self.rng.gen();
                let sku = format!("S{:05}", (u * u * f64::from(self.skus)) as u32);
                let quantity = f64::from(self.rng.gen_range(-1..12i32));
                let line = InvoiceLine {
                    distributor_id: "D01".into(),
                    invoice_id: invoice.as_str().into(),
                    line_no: line_no as i64,
                    invoice_date: date,
                    outlet_id: outlet.as_str().into(),
                    sku_id: sku.as_str().into(),
                    quantity,
                    net_value: quantity * 3.25,
                    currency: Some("PLN".into()),
                };
                self.offset += 1;
                let src = Source {
                    topic: "invoices",
                    partition: p,
                    offset: self.offset,
                    timestamp_ms: 1_700_000_000_000 + self.offset,
                };
                builders[p as usize].append(&line, &src, 0);
            }
        }
        for (p, b) in builders.iter_mut().enumerate() {
            if b.is_empty() {
                continue;
            }
            let data = to_parquet(raw_invoice_schema(), &[b.finish()])?;
            storage
                .put(
                    &format!("raw/invoices/date={date}/invoices-{p}-{tag}.parquet"),
                    data,
                )
                .await?;
        }
        Ok(())
    }
}

async fn pass(dir: &std::path::Path, full: bool) -> anyhow::Result<()> {
    let storage = storage(dir)?;
    let mut cfg = Config::default();
    cfg.storage.url = storage.url().to_owned();
    let metrics = AggregateMetrics::register(&Metrics::new());
    let opts = AggregateOptions {
        once: true,
        full,
        ..AggregateOptions::default()
    };
    let t = Instant::now();
    let s = run_once(&cfg, &storage, &opts, &metrics).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"step": if full { "full" } else { "incremental" }, "seconds": secs,
               "files_new": s.files_new, "rows_read": s.rows_read,
               "days_rerolled": s.days_rerolled, "lines_moved": s.lines_moved,
               "rows_written": s.rows_written})
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The aggregator's own log lines say where a pass spent its time.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        ))
        .with_writer(std::io::stderr)
        .init();
    match Args::parse().step {
        Step::Generate {
            dir,
            lines,
            days,
            outlets,
            skus,
            seed,
        } => {
            let storage = storage(&dir)?;
            let mut g = Generator {
                rng: Xoshiro256PlusPlus::seed_from_u64(seed),
                outlets,
                skus,
                offset: 0,
            };
            let t = Instant::now();
            let per_day = lines / u64::from(days);
            for n in 0..days {
                let extra = u64::from(n < (lines % u64::from(days)) as u32);
                g.day(&storage, n, per_day + extra, "g").await?;
            }
            std::fs::write(
                dir.join("bench.json"),
                serde_json::to_vec(&json!({"days": days, "outlets": outlets, "skus": skus,
                    "offset": g.offset, "lines_per_day": per_day}))?,
            )?;
            println!(
                "{}",
                json!({"step": "generate", "lines": lines, "days": days, "seconds": t.elapsed().as_secs_f64()})
            );
        }
        Step::Full { dir } => pass(&dir, true).await?,
        Step::Incremental { dir } => pass(&dir, false).await?,
        Step::AddDay {
            dir,
            seed,
            corrections,
        } => {
            let meta: serde_json::Value = serde_json::from_slice(
                &std::fs::read(dir.join("bench.json")).context("run generate first")?,
            )?;
            let get = |k: &str| meta[k].as_u64().unwrap_or(0);
            let storage = storage(&dir)?;
            let mut g = Generator {
                rng: Xoshiro256PlusPlus::seed_from_u64(seed),
                outlets: get("outlets") as u32,
                skus: get("skus") as u32,
                offset: get("offset") as i64,
            };
            let days = get("days") as u32;
            g.day(&storage, days, get("lines_per_day"), "a").await?;
            // Corrections: redeliver 20 lines of older invoices (one moved to the new day).
            let mut b = RawInvoiceBuilder::default();
            for i in 0..corrections {
                let old = g.rng.gen_range(0..days);
                let date = if i == 0 { day(days) } else { day(old) };
                let line = InvoiceLine {
                    distributor_id: "D01".into(),
                    invoice_id: format!("FV/{}/g{:06}", day(old), 0).into(),
                    line_no: 0,
                    invoice_date: date,
                    outlet_id: "O000000".into(),
                    sku_id: "S00000".into(),
                    quantity: 1.0,
                    net_value: 1.0,
                    currency: None,
                };
                g.offset += 1;
                let src = Source {
                    topic: "invoices",
                    partition: 0,
                    offset: g.offset,
                    timestamp_ms: 1_800_000_000_000 + g.offset,
                };
                b.append(&line, &src, 0);
                let data = to_parquet(raw_invoice_schema(), &[b.finish()])?;
                storage
                    .put(
                        // Named by the day added too: raw objects are written once
                        // (the aggregator tells new ones by path and size), and a name
                        // reused by a later add-day would overwrite an absorbed one.
                        &format!("raw/invoices/date={date}/corrections-{days}-{i}.parquet"),
                        data,
                    )
                    .await?;
            }
            let mut meta = meta.clone();
            meta["days"] = json!(days + 1);
            meta["offset"] = json!(g.offset);
            std::fs::write(dir.join("bench.json"), serde_json::to_vec(&meta)?)?;
            println!(
                "{}",
                json!({"step": "add-day", "day": day(days).to_string(), "corrections": corrections})
            );
        }
    }
    Ok(())
}
