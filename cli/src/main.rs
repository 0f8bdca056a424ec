//! `spectra`: the one binary. It parses arguments, loads configuration, starts
//! telemetry and the admin server, and dispatches to the service crates.

mod args;
mod demo;

use std::collections::BTreeMap;

use anyhow::Context as _;
use clap::Parser;
use serde_json::{json, Value};
use spectra_core::service::Context;
use spectra_core::{admin, shutdown, telemetry, Config};

use crate::args::{Cli, Command, Common};

/// jemalloc instead of the system allocator: at a million outlets glibc's malloc spent
/// about two thirds of the segment stage in `_int_malloc` and `malloc_consolidate`
/// (its heap fragmented by the run's many small strings); with jemalloc the same run
/// took 134 s instead of 372 s (`bench/scale/RESULTS.md`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The flags given, as `(key path, value)` overrides of the lower layers (figment
/// nests the key paths).
fn overrides(c: &Common) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = [
        ("kafka.brokers", &c.brokers),
        ("storage.url", &c.storage),
        ("admin.listen", &c.admin_listen),
        ("log.format", &c.log_format),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_owned(), json!(v.as_ref()?))))
    .collect();
    out.extend(c.set.iter().cloned());
    out
}

fn load_config(c: &Common) -> anyhow::Result<Config> {
    let cfg = Config::load_flags(c.config.as_deref(), &overrides(c))?;
    telemetry::init_logging(&cfg.log);
    Ok(cfg)
}

async fn start_admin(cfg: &Config, ctx: &Context) -> anyhow::Result<()> {
    let addr = admin::serve(
        &cfg.admin.listen,
        admin::router(ctx.admin_state()),
        ctx.shutdown.clone(),
    )
    .await
    .context("admin server")?;
    tracing::info!(%addr, "admin server: /healthz /readyz /metrics");
    Ok(())
}

/// Every segmentation that failed in a `--once` run, as one error (after the summary was
/// printed): the others ran, and the exit code says something did not.
fn failed(failures: &[spectra_core::service::SegmentationFailure]) -> anyhow::Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = failures.iter().map(|f| format!("  - {f}")).collect();
    anyhow::bail!(
        "{} segmentation(s) failed (the others completed):\n{}",
        failures.len(),
        lines.join("\n")
    )
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::BuildInfo => {
            println!(
                "{}",
                json!({
                    "package_dir": env!("CARGO_MANIFEST_DIR"),
                    "version": env!("CARGO_PKG_VERSION"),
                })
            );
            Ok(())
        }
        Command::Ingest {
            common,
            once,
            reset_checkpoint,
        } => {
            let cfg = load_config(&common)?;
            if let Some(spec) = reset_checkpoint {
                for line in spectra_ingest::reset_checkpoint(&cfg, &spec).await? {
                    println!("{line}");
                }
                return Ok(());
            }
            let ctx = Context::new(shutdown::on_signals());
            start_admin(&cfg, &ctx).await?;
            let s = spectra_ingest::run(cfg, ctx.clone(), spectra_ingest::IngestOptions { once })
                .await?;
            ctx.shutdown.cancel();
            println!(
                "{}",
                json!({"messages": s.messages, "rows": s.rows, "rejected": s.rejected})
            );
            Ok(())
        }
        Command::Aggregate {
            common,
            once,
            as_of,
            segmentation,
            full,
        } => {
            let cfg = load_config(&common)?;
            let ctx = Context::new(shutdown::on_signals());
            start_admin(&cfg, &ctx).await?;
            let opts = spectra_aggregator::AggregateOptions {
                once,
                as_of,
                segmentation,
                full,
            };
            let s = spectra_aggregator::run(cfg, ctx.clone(), opts).await?;
            ctx.shutdown.cancel();
            println!("{}", serde_json::to_string(&s)?);
            failed(&s.failures)
        }
        Command::Segment {
            common,
            once,
            all,
            segmentation,
        } => {
            let cfg = load_config(&common)?;
            let ctx = Context::new(shutdown::on_signals());
            start_admin(&cfg, &ctx).await?;
            let opts = spectra_segmenter::SegmentOptions {
                once,
                all,
                segmentation,
                ..Default::default()
            };
            let s = spectra_segmenter::run(cfg, ctx.clone(), opts).await?;
            ctx.shutdown.cancel();
            println!(
                "{}",
                json!({"runs": s.runs, "up_to_date": s.up_to_date, "failures": s.failures})
            );
            failed(&s.failures)
        }
        Command::Publish {
            common,
            once,
            reconcile,
        } => {
            let cfg = load_config(&common)?;
            let ctx = Context::new(shutdown::on_signals());
            if once || reconcile {
                // The service merges the admin routes into its own server on
                // publish.listen; a one-off run has no server of its own.
                start_admin(&cfg, &ctx).await?;
            }
            let opts = spectra_publisher::PublishOptions { once, reconcile };
            let s = spectra_publisher::run(cfg, ctx.clone(), opts).await?;
            ctx.shutdown.cancel();
            println!("{}", serde_json::to_string(&s)?);
            failed(&s.failures)
        }
        Command::Export {
            common,
            segmentation,
            format,
            out,
        } => {
            let cfg = load_config(&common)?;
            let s = spectra_publisher::export_file(&cfg, &segmentation, &format, &out).await?;
            println!("{}", serde_json::to_string(&s)?);
            Ok(())
        }
        Command::Demo {
            mut feed,
            once,
            listen,
            dir,
            day_ms,
            config,
            set,
        } => {
            // Quiet by default: the demo prints its own story (RUST_LOG overrides).
            telemetry::init_logging(&spectra_core::config::LogConfig {
                format: "plain".into(),
                level: "warn,rdkafka=off,librdkafka=off".into(),
            });
            if feed.drift_share == 0.0 {
                // The story shows outlets moving: some outlets change behaviour.
                feed.drift_share = 0.05;
            }
            demo::run(demo::DemoOptions {
                once,
                feed: feed.options(),
                listen,
                dir,
                day_ms,
                config,
                settings: set,
            })
            .await
        }
        Command::Generate {
            common,
            feed,
            out_dir,
            truth,
            from_day,
            to_day,
        } => {
            let cfg = load_config(&common)?;
            let mut f = spectra_ingest::generate::Feed::new(feed.options());
            let summary = match out_dir {
                Some(dir) => spectra_ingest::generate::to_files(&mut f, &dir)?,
                None => {
                    let to = to_day.unwrap_or(f.opts.days).min(f.opts.days);
                    anyhow::ensure!(
                        from_day <= to,
                        "--from-day {from_day} is after --to-day {to}"
                    );
                    // The feed's random choices run day after day: skipped days are
                    // generated so that the days sent are those of the whole feed.
                    for day in 0..from_day {
                        f.day_messages(day);
                    }
                    let s = spectra_ingest::generate::to_kafka(&cfg, &mut f, from_day, to, |_| {})
                        .await?;
                    if let Some(t) = truth {
                        std::fs::write(&t, f.truth_csv())
                            .with_context(|| format!("writing {}", t.display()))?;
                    }
                    s
                }
            };
            println!("{}", serde_json::to_string(&summary)?);
            Ok(())
        }
        Command::Load {
            common,
            kind,
            files,
            preset,
            map,
            derive_master,
            rejects,
            no_progress,
            sheet,
        } => {
            let cfg = load_config(&common)?;
            let opts = spectra_ingest::load::LoadOptions {
                kind,
                files,
                preset,
                maps: map,
                derive_master,
                rejects,
                progress: !no_progress,
                sheet,
            };
            let s = spectra_ingest::load::run(&cfg, opts).await?;
            let rejected: BTreeMap<_, _> = s.rejected.clone();
            println!(
                "{}",
                json!({"sent": s.sent, "master_sent": s.master_sent, "rejected": rejected})
            );
            Ok(())
        }
    }
}
