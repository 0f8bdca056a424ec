//! Window features of one segmentation: from the daily tables of the days inside the
//! window ending at the as-of date, joined to current master data and restricted by the
//! segmentation's `filter`, the folder `features/segmentation={name}/as_of={date}/`
//! (README "Tables"), its `_manifest.json` written last.

use std::collections::BTreeSet;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use datafusion::execution::context::SessionContext;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use spectra_core::config::SegmentationConfig;
use spectra_core::schema::Encoder;
use spectra_core::Storage;

use crate::rollup::{daily_path, outlet_daily_path};
use crate::session::{query, register_batches, register_files};
use crate::{date_of, Error};
use spectra_core::tables::features::{KpiRow, SkuSpendRow, SpectrumRow};
use spectra_core::tables::{conform, layout, Rows};

/// Average days per month, for `invoices_per_month`.
pub const DAYS_PER_MONTH: f64 = 365.25 / 12.0;

pub use spectra_core::tables::features::{CurrentFeatures, Manifest};

/// The path of a segmentation's [`CurrentFeatures`].
pub fn current_path(segmentation: &str) -> String {
    layout::features_current(segmentation)
}

/// The columns a segmentation's `filter` names (its bare identifiers), so attributes no
/// outlet has yet can be given as null columns; a filter that does not parse is an
/// [`Error::Filter`].
pub fn filter_columns(seg: &SegmentationConfig) -> Result<BTreeSet<String>, Error> {
    use datafusion::sql::sqlparser::ast::{visit_expressions, Expr};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let Some(f) = seg
        .filter
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
    else {
        return Ok(BTreeSet::new());
    };
    let bad = |reason: String| Error::Filter {
        segmentation: seg.name.clone(),
        filter: f.to_owned(),
        reason,
    };
    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(f)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| bad(e.to_string()))?;
    let mut names = BTreeSet::new();
    let _ = visit_expressions(&expr, |e| {
        match e {
            Expr::Identifier(i) => {
                names.insert(i.value.clone());
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    names.insert(last.value.clone());
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    Ok(names)
}

/// The folder of a segmentation's features for one as-of date.
pub fn folder(segmentation: &str, as_of: i32) -> String {
    layout::features(segmentation, date_of(as_of))
}

/// Registers `sku_master(sku_id, feature)` and `outlet_master(…)` for the queries.
pub fn register_master(
    ctx: &SessionContext,
    sku_features: RecordBatch,
    outlets: RecordBatch,
) -> Result<(), Error> {
    register_batches(ctx, "sku_master", sku_features.schema(), vec![sku_features])?;
    register_batches(ctx, "outlet_master", outlets.schema(), vec![outlets])
}

async fn count(ctx: &SessionContext, sql: &str) -> Result<u64, Error> {
    let (_, b) = query(ctx, sql).await?;
    Ok(b.iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.column(0).as_primitive::<Int64Type>().value(0).max(0) as u64)
        .unwrap_or(0))
}

/// Writes a query's result as table `T` of the table layer, a batch at a time as the
/// query yields them (its columns found by name and cast to `T`'s schema; a missing
/// one is an error naming file and column); `each` sees every batch. Returns the rows.
async fn write_query<T: Rows>(
    ctx: &SessionContext,
    storage: &Storage,
    path: &str,
    sql: &str,
    hash: &mut Sha256,
    mut each: impl FnMut(&RecordBatch),
) -> Result<u64, Error> {
    let schema = T::schema();
    let mut stream = ctx.sql(sql).await?.execute_stream().await?;
    let mut encoder = Encoder::new(schema.clone())?;
    let mut rows = 0u64;
    while let Some(b) = stream.try_next().await? {
        each(&b);
        let b = conform(&b, &schema, path)?;
        rows += b.num_rows() as u64;
        encoder.write(&b)?;
    }
    let data = encoder.finish()?;
    hash.update(&data);
    storage.put(path, data).await?;
    Ok(rows)
}

/// Computes and writes the features of `seg` at `as_of` from the daily tables of
/// `days` (every day the daily table holds); `sku_master` and `outlet_master` must be
/// registered for the segmentation's level. Returns the manifest and the rows written.
pub async fn build(
    ctx: &SessionContext,
    storage: &Storage,
    days: &BTreeSet<i32>,
    as_of: i32,
    seg: &SegmentationConfig,
) -> Result<(Manifest, u64), Error> {
    let start = as_of - seg.window_days as i32 + 1;
    let window: Vec<i32> = days.range(start..=as_of).copied().collect();
    let daily: Vec<String> = window.iter().map(|d| daily_path(*d)).collect();
    let outlet_daily: Vec<String> = window.iter().map(|d| outlet_daily_path(*d)).collect();
    register_files(ctx, storage, "daily_w", &daily, crate::daily_schema())?;
    register_files(
        ctx,
        storage,
        "outlet_daily_w",
        &outlet_daily,
        crate::outlet_daily_schema(),
    )?;

    // The filter is checked on its own first, so its error names it.
    let selected = match seg
        .filter
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        Some(f) => {
            let sql = format!("SELECT outlet_id FROM outlet_master WHERE {f}");
            let (schema, b) = query(ctx, &sql).await.map_err(|e| Error::Filter {
                segmentation: seg.name.clone(),
                filter: f.to_owned(),
                reason: e.to_string(),
            })?;
            register_batches(ctx, "selected", schema, b)?;
            "JOIN selected sel ON sel.outlet_id = x.outlet_id"
        }
        None => "",
    };
    let age = format!("CAST({as_of} - CAST(d.date AS INT) AS DOUBLE)");
    let weight = match seg.half_life_days {
        Some(h) => format!("power(0.5, {age} / {h:?})"),
        None => "1.0".to_owned(),
    };
    // The change detector's recent window: the last `recent_days` of the window
    // (none when the detector is off).
    let recent_start = if seg.recent_days > 0 && seg.recent_days < seg.window_days {
        as_of - seg.recent_days as i32 + 1
    } else {
        as_of + 1
    };
    let recent = format!("CAST(d.date AS INT) >= {recent_start}");
    let d = format!("(SELECT x.* FROM daily_w x {selected}) d");
    let o = format!("(SELECT x.* FROM outlet_daily_w x {selected}) o");
    let dir = folder(&seg.name, as_of);
    // Readers trust a folder only with its manifest: take it away while rewriting.
    storage.delete(&format!("{dir}/_manifest.json")).await?;

    let mut features: BTreeSet<String> = BTreeSet::new();
    let mut hash = Sha256::new();
    let mut rows = write_query::<SpectrumRow>(
        ctx,
        storage,
        &format!("{dir}/spectrum.parquet"),
        &format!(
            "SELECT d.outlet_id, COALESCE(s.feature, 'unknown') AS feature,
                    sum(d.net_value * {weight}) AS value, sum(d.net_value) AS raw_value,
                    CAST(sum(d.lines) AS BIGINT) AS lines,
                    sum(CASE WHEN {recent} THEN d.net_value ELSE 0.0 END) AS recent_value,
                    CAST(sum(CASE WHEN {recent} THEN d.lines ELSE 0 END) AS BIGINT) AS recent_lines
             FROM {d} LEFT JOIN sku_master s ON s.sku_id = d.sku_id
             GROUP BY d.outlet_id, COALESCE(s.feature, 'unknown') ORDER BY outlet_id, feature"
        ),
        &mut hash,
        |b| {
            let f = b.column(1).as_string::<i32>();
            for v in f.iter().flatten() {
                if !features.contains(v) {
                    features.insert(v.to_owned());
                }
            }
        },
    )
    .await?;
    let features = features.len() as u64;

    rows += write_query::<SkuSpendRow>(
        ctx,
        storage,
        &format!("{dir}/sku_spend.parquet"),
        &format!(
            "SELECT d.outlet_id, d.sku_id, COALESCE(s.feature, 'unknown') AS feature,
                    sum(d.net_value) AS net_value, sum(d.quantity) AS quantity,
                    CAST(sum(d.lines) AS BIGINT) AS lines
             FROM {d} LEFT JOIN sku_master s ON s.sku_id = d.sku_id
             GROUP BY d.outlet_id, d.sku_id, COALESCE(s.feature, 'unknown')
             ORDER BY outlet_id, sku_id"
        ),
        &mut hash,
        |_| {},
    )
    .await?;

    let months = f64::from(seg.window_days) / DAYS_PER_MONTH;
    let outlets = write_query::<KpiRow>(
        ctx,
        storage,
        &format!("{dir}/kpis.parquet"),
        &format!(
            "WITH k AS (
               SELECT o.outlet_id, sum(o.net_value) AS net_value,
                      CAST(sum(o.lines) AS BIGINT) AS lines,
                      CAST(sum(o.invoices) AS BIGINT) AS invoices,
                      CAST(sum(CASE WHEN CAST(o.date AS INT) >= {recent_start} THEN o.invoices ELSE 0 END)
                           AS BIGINT) AS recent_invoices,
                      sum(o.returns_value) AS returns_value,
                      CAST({as_of} - max(CAST(o.date AS INT)) AS BIGINT) AS days_since_last_invoice,
                      count(DISTINCT ({as_of} - CAST(o.date AS INT)) / 7) AS active_weeks
               FROM {o} GROUP BY o.outlet_id),
             sk AS (SELECT d.outlet_id, count(DISTINCT d.sku_id) AS distinct_skus
                    FROM {d} GROUP BY d.outlet_id),
             dist AS (
               SELECT outlet_id, distributor_id FROM (
                 SELECT outlet_id, distributor_id,
                        row_number() OVER (PARTITION BY outlet_id ORDER BY v DESC, distributor_id) AS rn
                 FROM (SELECT o.outlet_id, o.distributor_id, sum(o.net_value) AS v
                       FROM {o} WHERE o.distributor_id IS NOT NULL
                       GROUP BY o.outlet_id, o.distributor_id) t) r
               WHERE rn = 1)
             SELECT k.outlet_id, k.net_value, k.lines, k.invoices,
                    CAST(k.invoices AS DOUBLE) / {months:?} AS invoices_per_month,
                    CASE WHEN k.invoices > 0 THEN k.net_value / CAST(k.invoices AS DOUBLE)
                         ELSE 0.0 END AS avg_invoice_value,
                    COALESCE(sk.distinct_skus, 0) AS distinct_skus,
                    k.days_since_last_invoice, k.active_weeks,
                    CASE WHEN k.net_value - k.returns_value > 0
                         THEN -k.returns_value / (k.net_value - k.returns_value)
                         ELSE 0.0 END AS return_share,
                    k.recent_invoices, m.name, m.region, m.channel, m.attributes,
                    dist.distributor_id AS distributor
             FROM k LEFT JOIN sk ON sk.outlet_id = k.outlet_id
                    LEFT JOIN dist ON dist.outlet_id = k.outlet_id
                    LEFT JOIN outlet_master m ON m.outlet_id = k.outlet_id
             ORDER BY k.outlet_id"
        ),
        &mut hash,
        |_| {},
    )
    .await?;
    rows += outlets;

    let unknown_skus = count(
        ctx,
        &format!(
            "SELECT count(DISTINCT d.sku_id) FROM {d} LEFT JOIN sku_master s
             ON s.sku_id = d.sku_id WHERE s.sku_id IS NULL"
        ),
    )
    .await?;
    let unknown_outlets = count(
        ctx,
        &format!(
            "SELECT count(DISTINCT o.outlet_id) FROM {o} LEFT JOIN outlet_master m
             ON m.outlet_id = o.outlet_id WHERE m.outlet_id IS NULL"
        ),
    )
    .await?;
    let manifest = Manifest {
        segmentation: seg.name.clone(),
        as_of: date_of(as_of),
        window_start: date_of(start),
        level: seg.level.clone(),
        outlets,
        features,
        unknown_skus,
        unknown_outlets,
        created_at: chrono::Utc::now().to_rfc3339(),
        content_hash: Some(hash.finalize().iter().map(|b| format!("{b:02x}")).collect()),
        definition: Some(seg.features_fingerprint()),
    };
    storage
        .put_json(&format!("{dir}/_manifest.json"), &manifest)
        .await?;
    let current = CurrentFeatures {
        as_of: manifest.as_of,
        path: dir.clone(),
        created_at: manifest.created_at.clone(),
    };
    storage.put_json(&current_path(&seg.name), &current).await?;
    Ok((manifest, rows))
}
