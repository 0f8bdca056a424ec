//! Command-line arguments. Every subcommand takes the common flags; `--help` explains
//! each one.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use spectra_ingest::load::Kind;

/// Spectra: segments retail outlets by what they buy, continuously.
#[derive(Debug, Parser)]
#[command(name = "spectra", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes. Configuration layers: defaults, then `--config`, then
/// `SPECTRA__SECTION__KEY` environment variables, then these flags.
#[derive(Debug, Args, Clone, Default)]
pub struct Common {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers, `host:port[,host:port…]` (kafka.brokers).
    #[arg(long, value_name = "HOST:PORT")]
    pub brokers: Option<String>,
    /// Storage URL: `file:///path`, `s3://bucket/prefix` or `memory://` (storage.url).
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// Admin server address for /healthz, /readyz, /metrics (admin.listen).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Log format: plain or json (log.format).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Any setting as `section.key=value`, e.g. `--set ingest.flush_rows=1000`.
    #[arg(long, value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Service: invoices and master data from Kafka into raw Parquet.
    Ingest {
        #[command(flatten)]
        common: Common,
        /// Run until every partition has reached its end, then exit.
        #[arg(long)]
        once: bool,
    },
    /// CSV or JSON-lines files (invoices, outlets, SKUs) onto the input topics.
    Load {
        #[command(flatten)]
        common: Common,
        /// What the files hold: invoices, outlets or skus.
        #[arg(long, default_value = "invoices")]
        kind: Kind,
        /// A named column mapping: online-retail.
        #[arg(long)]
        preset: Option<String>,
        /// Column mapping `field=EXPR`: EXPR is a column, `=literal`, `A*B` or `@seq`;
        /// `outlet.FIELD=…` and `sku.FIELD=…` map derived master data.
        #[arg(long, value_name = "FIELD=EXPR")]
        map: Vec<String>,
        /// Also send the outlets and SKUs seen in invoice files to the master topics.
        #[arg(long)]
        derive_master: bool,
        /// Write rejected rows (file, row, reason) to this CSV file.
        #[arg(long, value_name = "FILE")]
        rejects: Option<PathBuf>,
        /// Hide the progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Files: .csv, .jsonl (optionally .gz).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}
