//! What the publisher reads, all through the table layer
//! ([`spectra_core::tables`]): a segmentation's latest run (assignments, gaps,
//! movements, recommendations, profiles and model, as the segmenter wrote them), the
//! run's window features (KPIs and master data per outlet) and the daily roll-ups (an
//! outlet's history).

use serde_json::Value;

use spectra_core::Storage;

pub use spectra_core::tables::features::KpiRow as OutletKpi;
pub use spectra_core::tables::runs::{
    latest, run_folders, stored_segmentations, AssignmentRow, Change, GapRow, Latest, MovementRow,
    Run,
};

use crate::Error;

/// The segmentations the publisher publishes and serves, sorted by name, each with its
/// definition when it is defined: the stored definitions that run (the config file
/// seeds them: every publish cycle does, see [`spectra_core::tables::definitions::seed`];
/// a read does not) and every
/// segmentation with runs in storage (a retired one keeps its last run served). Drafts
/// are never published.
pub async fn published(
    cfg: &spectra_core::Config,
    storage: &Storage,
) -> Result<Vec<(String, Option<spectra_core::config::SegmentationConfig>)>, Error> {
    use spectra_core::tables::definitions;
    let mut out: std::collections::BTreeMap<String, Option<_>> = definitions::running(storage, cfg)
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
