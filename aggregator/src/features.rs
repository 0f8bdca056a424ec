//! Window features of one segmentation: from the daily tables of the days inside the
//! window ending at the as-of date, joined to current master data and restricted by the
//! segmentation's `filter`, the folder `features/segmentation={name}/as_of={date}/`
//! (README "Tables"), its `_manifest.json` written last.

use std::collections::BTreeSet;

use arrow::array::RecordBatch;
use datafusion::execution::context::SessionContext;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use spectra_core::config::SegmentationConfig;
use spectra_core::tables::{layout, Columns};
use spectra_core::Storage;

use crate::rollup::{daily_path, outlet_daily_path};
use crate::session::{query, register_batches};
use crate::{date_of, window, Error};

/// Average days per month, for `invoices_per_month`.
pub const DAYS_PER_MONTH: f64 = 365.25 / 12.0;

pub use spectra_core::tables::features::{CurrentFeatures, Manifest};

/// The path of a segmentation's [`CurrentFeatures`].
pub fn current_path(segmentation: &str) -> String {
    layout::features_current(segmentation)
}

/// The columns a segmentation's `filter` names, so attributes no outlet has yet can be
/// given as null columns; a filter that is not one predicate over one outlet's fields
/// ([`spectra_core::config::filter_columns`]: definitions written since are checked
/// for it, older ones may not be) is an [`Error::Filter`].
pub fn filter_columns(seg: &SegmentationConfig) -> Result<BTreeSet<String>, Error> {
    match seg
        .filter
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        None => Ok(BTreeSet::new()),
        Some(f) => spectra_core::config::filter_columns(f).map_err(|reason| Error::Filter {
            segmentation: seg.name.clone(),
            filter: f.to_owned(),
            reason,
        }),
    }
}

/// The folder of a segmentation's features for one as-of date.
pub fn folder(segmentation: &str, as_of: i32) -> String {
    layout::features(segmentation, date_of(as_of))
}

/// Computes and writes the features of `seg` at `as_of` from the daily tables of
/// `days` (every day the daily table holds), with master data as
/// [`crate::master::sku_features`] (`skus`) and [`crate::master::outlet_table`]
/// (`outlets`) make it for the segmentation: the window's daily tables merged outlet by
/// outlet ([`crate::window`]). Returns the manifest and the rows written.
pub async fn build(
    ctx: &SessionContext,
    storage: &Storage,
    days: &BTreeSet<i32>,
    as_of: i32,
    seg: &SegmentationConfig,
    skus: RecordBatch,
    outlets: RecordBatch,
) -> Result<(Manifest, u64), Error> {
    let start = as_of - seg.window_days as i32 + 1;
    let selected = match seg
        .filter
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        Some(f) => Some(select(ctx, seg, f, &outlets).await?),
        None => None,
    };
    // The change detector's recent window: the last `recent_days` of the window
    // (none when the detector is off).
    let recent_start = if seg.recent_days > 0 && seg.recent_days < seg.window_days {
        as_of - seg.recent_days as i32 + 1
    } else {
        as_of + 1
    };
    let params = window::Params {
        as_of,
        half_life: seg.half_life_days,
        recent_start,
        months: f64::from(seg.window_days) / DAYS_PER_MONTH,
    };
    let window: Vec<i32> = days.range(start..=as_of).copied().collect();
    let fetch = |path: String| async move {
        match storage.get(&path).await? {
            Some(bytes) => Ok((path, bytes)),
            None => Err(Error::Core(spectra_core::Error::Table {
                file: path,
                reason: "the daily table of a day in the aggregator's state is missing; \
                         `spectra aggregate --once --full` rebuilds it"
                    .to_owned(),
            })),
        }
    };
    let tables: Vec<window::Day> = futures::stream::iter(window)
        .map(|date| async move {
            let (daily, outlet_daily) =
                futures::try_join!(fetch(daily_path(date)), fetch(outlet_daily_path(date)))?;
            Ok::<_, Error>(window::Day {
                date,
                daily,
                outlet_daily,
            })
        })
        .buffered(8)
        .try_collect()
        .await?;
    let master = window::Master {
        skus,
        outlets,
        selected,
    };
    let made = tokio::task::spawn_blocking(move || window::compute(tables, &master, &params))
        .await
        .unwrap_or_else(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => Err(Error::Corrupt(format!("window features cancelled: {e}"))),
        })?;

    let dir = folder(&seg.name, as_of);
    // Readers trust a folder only with its manifest: take it away while rewriting.
    storage.delete(&format!("{dir}/_manifest.json")).await?;
    let mut hash = Sha256::new();
    for (file, data) in [
        ("spectrum", made.spectrum),
        ("sku_spend", made.sku_spend),
        ("kpis", made.kpis),
    ] {
        hash.update(&data);
        storage.put(&format!("{dir}/{file}.parquet"), data).await?;
    }
    let window::Counts {
        rows,
        outlets,
        features,
        unknown_skus,
        unknown_outlets,
    } = made.counts;
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

/// Which rows of `outlets` (sorted by id) the segmentation's filter `f` selects: the
/// filter runs as SQL over the outlet table, so its error names it.
async fn select(
    ctx: &SessionContext,
    seg: &SegmentationConfig,
    f: &str,
    outlets: &RecordBatch,
) -> Result<Vec<bool>, Error> {
    register_batches(
        ctx,
        "outlet_master",
        outlets.schema(),
        vec![outlets.clone()],
    )?;
    let sql = format!("SELECT outlet_id FROM outlet_master WHERE {f}");
    let (_, batches) = query(ctx, &sql).await.map_err(|e| Error::Filter {
        segmentation: seg.name.clone(),
        filter: f.to_owned(),
        reason: e.to_string(),
    })?;
    let mut chosen = BTreeSet::new();
    for b in &batches {
        chosen.extend(
            Columns::new(b, "filter")
                .id_strings("outlet_id")?
                .iter()
                .flatten()
                .map(str::to_owned),
        );
    }
    let ids = Columns::new(outlets, "outlet master").id_strings("outlet_id")?;
    Ok(ids
        .iter()
        .map(|id| id.is_some_and(|id| chosen.contains(id)))
        .collect())
}
