//! The incremental daily roll-up: once newly landed raw files are absorbed into the
//! identity index ([`crate::absorb`], finding the days their corrections take lines
//! away from), rebuild the daily tables of exactly the affected days from those days'
//! raw files.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, SchemaRef};
use datafusion::execution::context::SessionContext;
use rayon::prelude::*;
use spectra_core::schema::{raw_invoice_schema, to_parquet};
use spectra_core::Storage;

use crate::session::{query, register_batches, register_files};
use crate::superseded::{self, Superseded};
use crate::{daily_schema, date_of, outlet_daily_schema, Error};
use spectra_core::tables::{conform, layout};

fn conform_all(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    table: &str,
) -> Result<Vec<RecordBatch>, Error> {
    Ok(batches
        .iter()
        .map(|b| conform(b, schema, table))
        .collect::<Result<_, _>>()?)
}

/// Path of a day's daily table.
pub fn daily_path(date: i32) -> String {
    layout::daily(date_of(date))
}

/// Path of a day's outlet-daily table.
pub fn outlet_daily_path(date: i32) -> String {
    layout::outlet_daily(date_of(date))
}

/// Deduplicates the raw lines of the days in `files` (each day's raw files) and writes
/// each day's daily and outlet-daily tables; returns the rows (outlet × SKU) per day.
/// Days in `duplicated` (or with superseded lines) are deduplicated by version; the
/// others hold every identity once, so their lines are summed as they are.
pub async fn reroll(
    ctx: &SessionContext,
    storage: &Storage,
    files: &BTreeMap<i32, Vec<String>>,
    duplicated: &BTreeSet<i32>,
    superseded: &Superseded,
) -> Result<BTreeMap<i32, u64>, Error> {
    let moved = superseded.batch(|d| files.contains_key(&d))?;
    let moved_days: BTreeSet<i32> = moved
        .column(3)
        .as_primitive::<Date32Type>()
        .values()
        .iter()
        .copied()
        .collect();
    let (mut dedup, mut clean) = (Vec::new(), Vec::new());
    for (day, paths) in files {
        let to = if duplicated.contains(day) || moved_days.contains(day) {
            &mut dedup
        } else {
            &mut clean
        };
        to.extend(paths.iter().cloned());
    }
    register_files(ctx, storage, "raw_days", &dedup, raw_invoice_schema())?;
    register_files(ctx, storage, "raw_clean", &clean, raw_invoice_schema())?;
    let drop_moved = if moved.num_rows() == 0 {
        "WHERE rn = 1".to_owned()
    } else {
        register_batches(ctx, "superseded", superseded::schema(), vec![moved])?;
        // A line on a day survives unless the version that beats it is newer.
        "LEFT JOIN superseded s ON s.date = r.invoice_date AND s.distributor_id = r.distributor_id \
           AND s.invoice_id = r.invoice_id AND s.line_no = r.line_no \
         WHERE r.rn = 1 AND (s.ts IS NULL OR s.ts < r.ts OR (s.ts = r.ts AND (s.sp < r.sp \
           OR (s.sp = r.sp AND (s.so < r.so OR (s.so = r.so AND s.sl < r.sl))))))"
            .to_owned()
    };
    let (lbi_schema, lbi) = query(
        ctx,
        &format!(
            "WITH ranked AS (
               SELECT distributor_id, invoice_id, line_no, invoice_date, outlet_id, sku_id,
                      quantity, net_value, kafka_timestamp_ms AS ts, source_partition AS sp,
                      source_offset AS so, source_line AS sl,
                      row_number() OVER (PARTITION BY invoice_date, distributor_id, invoice_id, line_no
                        ORDER BY kafka_timestamp_ms DESC, source_partition DESC,
                                 source_offset DESC, source_line DESC) AS rn
               FROM raw_days),
             latest AS (
               SELECT r.distributor_id, r.invoice_id, r.invoice_date, r.outlet_id, r.sku_id,
                      r.quantity, r.net_value
               FROM ranked r {drop_moved}
               UNION ALL
               SELECT distributor_id, invoice_id, invoice_date, outlet_id, sku_id, quantity,
                      net_value
               FROM raw_clean)
             SELECT outlet_id, sku_id, invoice_date AS date, distributor_id, invoice_id,
                    sum(net_value) AS net_value, sum(quantity) AS quantity, count(*) AS lines,
                    sum(CASE WHEN net_value < 0 THEN net_value ELSE 0.0 END) AS returns_value
             FROM latest
             GROUP BY outlet_id, sku_id, invoice_date, distributor_id, invoice_id"
        ),
    )
    .await?;
    register_batches(ctx, "lbi", lbi_schema, lbi)?;
    let (_, daily) = query(
        ctx,
        "SELECT outlet_id, sku_id, date, sum(net_value) AS net_value, sum(quantity) AS quantity,
                CAST(sum(lines) AS BIGINT) AS lines, count(*) AS invoices,
                sum(returns_value) AS returns_value
         FROM lbi GROUP BY outlet_id, sku_id, date ORDER BY date, outlet_id, sku_id",
    )
    .await?;
    let (_, outlet_daily) = query(
        ctx,
        "SELECT i.outlet_id, i.date, sum(i.net_value) AS net_value, sum(i.quantity) AS quantity,
                CAST(sum(i.lines) AS BIGINT) AS lines, count(*) AS invoices,
                sum(i.returns_value) AS returns_value, max(s.distinct_skus) AS distinct_skus,
                max(m.distributor_id) AS distributor_id
         FROM (SELECT outlet_id, date, distributor_id, invoice_id, sum(net_value) AS net_value,
                      sum(quantity) AS quantity, sum(lines) AS lines,
                      sum(returns_value) AS returns_value
               FROM lbi GROUP BY outlet_id, date, distributor_id, invoice_id) i
         JOIN (SELECT outlet_id, date, count(DISTINCT sku_id) AS distinct_skus
               FROM lbi GROUP BY outlet_id, date) s
           ON i.outlet_id = s.outlet_id AND i.date = s.date
         JOIN (SELECT outlet_id, date, distributor_id
               FROM (SELECT outlet_id, date, distributor_id,
                            row_number() OVER (PARTITION BY outlet_id, date
                              ORDER BY v DESC, distributor_id) AS rn
                     FROM (SELECT outlet_id, date, distributor_id, sum(net_value) AS v
                           FROM lbi GROUP BY outlet_id, date, distributor_id) t) r
               WHERE rn = 1) m
           ON i.outlet_id = m.outlet_id AND i.date = m.date
         GROUP BY i.outlet_id, i.date ORDER BY i.date, i.outlet_id",
    )
    .await?;
    let _ = ctx.deregister_table("lbi")?;
    let (daily_schema, outlet_schema) = (daily_schema(), outlet_daily_schema());
    let daily = by_date(&conform_all(&daily, &daily_schema, layout::DAILY)?, 2);
    let outlet_daily = by_date(
        &conform_all(&outlet_daily, &outlet_schema, layout::OUTLET_DAILY)?,
        1,
    );
    // Encoding is CPU work: all days' files in parallel, then the writes.
    let days: Vec<i32> = files.keys().copied().collect();
    let encoded = days
        .par_iter()
        .map(|date| {
            let d = daily.get(date).map(Vec::as_slice).unwrap_or_default();
            let o = outlet_daily
                .get(date)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let rows: u64 = d.iter().map(|b| b.num_rows() as u64).sum();
            Ok((
                *date,
                rows,
                to_parquet(daily_schema.clone(), d)?,
                to_parquet(outlet_schema.clone(), o)?,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut rows = BTreeMap::new();
    for (date, n, d, o) in encoded {
        storage.put(&daily_path(date), d).await?;
        storage.put(&outlet_daily_path(date), o).await?;
        rows.insert(date, n);
    }
    Ok(rows)
}

/// Splits batches sorted by the Date32 column `col` into slices per date.
fn by_date(batches: &[RecordBatch], col: usize) -> BTreeMap<i32, Vec<RecordBatch>> {
    let mut out: BTreeMap<i32, Vec<RecordBatch>> = BTreeMap::new();
    for b in batches {
        let dates = b.column(col).as_primitive::<Date32Type>();
        let mut start = 0;
        while start < b.num_rows() {
            let d = dates.value(start);
            let mut end = start + 1;
            while end < b.num_rows() && dates.value(end) == d {
                end += 1;
            }
            out.entry(d).or_default().push(b.slice(start, end - start));
            start = end;
        }
    }
    out
}
