//! What the publisher reads, all through the table layer
//! ([`spectra_core::tables`]): a segmentation's latest run (assignments, gaps,
//! movements, recommendations, profiles and model, as the segmenter wrote them), the
//! run's window features (KPIs and master data per outlet) and the daily roll-ups (an
//! outlet's history).

use chrono::NaiveDate;
use serde_json::Value;
use spectra_core::tables::features::{self, OutletDailyRow};
use spectra_core::Storage;

pub use spectra_core::tables::features::KpiRow as OutletKpi;
pub use spectra_core::tables::runs::{
    latest, run_folders, stored_segmentations, AssignmentRow, Change, GapRow, Latest, MovementRow,
    Run,
};

use crate::Error;

/// The segmentations the publisher publishes and serves, sorted by name, each with its
/// definition when it is defined: the stored definitions that run (the config file
/// seeds them, see [`spectra_core::tables::definitions::active`]) and every
/// segmentation with runs in storage (a retired one keeps its last run served). Drafts
/// are never published.
pub async fn published(
    cfg: &spectra_core::Config,
    storage: &Storage,
) -> Result<Vec<(String, Option<spectra_core::config::SegmentationConfig>)>, Error> {
    use spectra_core::tables::definitions;
    let mut out: std::collections::BTreeMap<String, Option<_>> = definitions::active(storage, cfg)
        .await?
        .into_iter()
        .filter(|a| !a.version.is_draft())
        .map(|a| (a.definition.name.clone(), Some(a.definition)))
        .collect();
    for n in stored_segmentations(storage).await? {
        if !definitions::is_draft_name(&n) {
            out.entry(n).or_insert(None);
        }
    }
    Ok(out.into_iter().collect())
}

/// One outlet's `(date, net value, lines)` per day from `features/outlet_daily/` in
/// `[from, to]`.
pub async fn outlet_history(
    storage: &Storage,
    outlet_id: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, f64, i64)>, Error> {
    let rows: Vec<OutletDailyRow> =
        features::read_outlet_daily(storage, from, to, |r| r.outlet_id == outlet_id).await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.date, r.net_value, r.lines))
        .collect())
}

/// The latest `limit` runs of a segmentation with their model's quality and segment
/// count, newest first (the pipeline page).
pub async fn run_history(
    storage: &Storage,
    segmentation: &str,
    limit: usize,
) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for (run_id, folder) in run_folders(storage, segmentation)
        .await?
        .into_iter()
        .take(limit)
    {
        let model = spectra_core::tables::runs::read_model(storage, &folder).await?;
        out.push(serde_json::json!({
            "run_id": run_id,
            "quality": model.as_ref().map(|m| &m.quality),
            "segments": model.as_ref().map(|m| m.segments.len()),
        }));
    }
    Ok(out)
}
