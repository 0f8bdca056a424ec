//! The DataFusion session the aggregator queries with: Spectra's object store
//! registered under its base URL, identifiers case-sensitive (attribute keys in a
//! segmentation's `filter` are matched exactly), and tables registered from explicit
//! file lists.
//!
//! Tables are built from the files the run already listed (rather than a directory
//! with a Hive partition column) because the aggregator always knows exactly which
//! days it needs: re-rolled days read only their own raw files, window features only
//! the daily files inside the window, and nothing is listed twice.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;
use spectra_core::Storage;

use crate::Error;

/// A session reading `storage`, its sorts and groupings holding at most `memory_mb`
/// MiB before they spill to temporary files (a first roll-up of a national history
/// otherwise holds every day's lines sorted at once).
pub fn context(storage: &Storage, memory_mb: u64) -> Result<SessionContext, Error> {
    let config = SessionConfig::new()
        .set_bool("datafusion.sql_parser.enable_ident_normalization", false)
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        );
    let pool = FairSpillPool::new(usize::try_from(memory_mb << 20).unwrap_or(usize::MAX));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.runtime_env()
        .register_object_store(storage.base_url(), storage.object_store());
    Ok(ctx)
}

/// Registers (or replaces) table `name` over the Parquet objects `paths` (relative to
/// the storage root), all of `schema`; no paths gives an empty table.
pub fn register_files(
    ctx: &SessionContext,
    storage: &Storage,
    name: &str,
    paths: &[String],
    schema: SchemaRef,
) -> Result<(), Error> {
    let _ = ctx.deregister_table(name)?;
    if paths.is_empty() {
        return register_batches(ctx, name, schema, Vec::new());
    }
    let urls = paths
        .iter()
        .map(|p| ListingTableUrl::parse(storage.table_url(p)))
        .collect::<Result<Vec<_>, _>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// Registers (or replaces) table `name` holding `batches` in memory.
pub fn register_batches(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(), Error> {
    let _ = ctx.deregister_table(name)?;
    let table = MemTable::try_new(schema, vec![batches])?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}

/// Runs a query and collects its result.
pub async fn query(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), Error> {
    let df = ctx.sql(sql).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    Ok((schema, df.collect().await?))
}
