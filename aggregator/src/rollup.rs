//! The incremental daily roll-up: once newly landed raw files are absorbed into the
//! identity index ([`crate::absorb`], finding the days their corrections take lines
//! away from), rebuild the daily tables of exactly the affected days from those days'
//! raw files.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::execution::context::SessionContext;
use rayon::prelude::*;
use spectra_core::schema::{raw_invoice_schema, to_parquet};
use spectra_core::Storage;

use crate::roll::{self, LINE_COLUMNS, VERSIONED_COLUMNS};
use crate::session::{query, register_files};
use crate::superseded::Superseded;
use crate::{daily_schema, date_of, outlet_daily_schema, Error};
use spectra_core::tables::layout;

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
    let started = std::time::Instant::now();
    let moved_days = superseded.dates();
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
    // The lines, then deduplication and the roll-up by hand (`crate::roll`).
    let (_, clean_lines) = query(
        ctx,
        &format!("SELECT {} FROM raw_clean", LINE_COLUMNS.join(", ")),
    )
    .await?;
    let (_, versioned) = query(
        ctx,
        &format!("SELECT {} FROM raw_days", VERSIONED_COLUMNS.join(", ")),
    )
    .await?;
    let read_ms = started.elapsed().as_millis() as u64;
    let days: Vec<i32> = files.keys().copied().collect();
    let rolled = roll::roll(&clean_lines, &versioned, superseded, &days)?;
    drop((clean_lines, versioned));
    let (daily_schema, outlet_schema) = (daily_schema(), outlet_daily_schema());
    // Encoding is CPU work: all days' files in parallel, then the writes.
    let encoded = days
        .par_iter()
        .map(|date| {
            let (d, o) = match rolled.get(date) {
                Some(day) => (&day.daily[..], &day.outlet_daily[..]),
                None => (&[][..], &[][..]),
            };
            let rows: u64 = d.iter().map(|b| b.num_rows() as u64).sum();
            Ok((
                *date,
                rows,
                to_parquet(daily_schema.clone(), d)?,
                to_parquet(outlet_schema.clone(), o)?,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let rolled_ms = started.elapsed().as_millis() as u64 - read_ms;
    let mut rows = BTreeMap::new();
    let mut puts = Vec::with_capacity(encoded.len() * 2);
    for (date, n, d, o) in encoded {
        puts.push((daily_path(date), d));
        puts.push((outlet_daily_path(date), o));
        rows.insert(date, n);
    }
    crate::put_all(storage, puts).await?;
    tracing::debug!(
        days = days.len(),
        read_ms,
        rolled_ms,
        stored_ms = started.elapsed().as_millis() as u64 - read_ms - rolled_ms,
        "re-rolled: lines read, rolled up and encoded, tables stored"
    );
    Ok(rows)
}
