//! The circuit breaker on the publisher's side: which run of a segmentation is
//! published and served (the latest, unless the segmenter held it and it is neither
//! released nor allowed by the configuration — then the baseline it names, which is
//! what was published before), and the release of a held run, recorded as
//! `segmentations/{name}/releases/{as_of}.{seq}.json` so it survives restarts
//! (documents: `spectra_core::hold`).

use serde::Serialize;
use spectra_core::hold::{self, Hold, Release};
use spectra_core::Storage;

use crate::tables::{self, Latest};
use crate::Error;

/// A latest run that is held and not released.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldRun {
    /// Its run id.
    pub run_id: String,
    /// Its as-of date.
    pub as_of: String,
    /// `{as_of}.{seq}`: the `{run}` of the release route.
    pub run: String,
    /// Why, and the numbers.
    #[serde(flatten)]
    pub hold: Hold,
}

/// The run to publish and serve, and the held run beside it, if any.
pub async fn resolve(
    storage: &Storage,
    segmentation: &str,
    max_change_share: f64,
) -> Result<Option<(Latest, Option<HeldRun>)>, Error> {
    let Some(latest) = tables::latest(storage, segmentation).await? else {
        return Ok(None);
    };
    let Some(h) = latest.held.clone() else {
        return Ok(Some((latest, None)));
    };
    let release = hold::load_release(storage, segmentation, &latest.run_id).await?;
    if hold::accepted(Some(&h), release.as_ref(), max_change_share) {
        return Ok(Some((latest, None)));
    }
    let held = HeldRun {
        run_id: latest.run_id.clone(),
        as_of: latest.as_of.to_string(),
        run: run_name(&latest.run_id),
        hold: h.clone(),
    };
    let baseline = Latest {
        run_id: h.baseline.run_id,
        as_of: h.baseline.as_of,
        path: h.baseline.path,
        held: None,
        ran_at: None,
        features_hash: None,
        definition_hash: None,
    };
    Ok(Some((baseline, Some(held))))
}

/// `{as_of}.{seq}` of a run id `{name}/{as_of}/{seq}`.
pub fn run_name(run_id: &str) -> String {
    let mut parts = run_id.rsplitn(3, '/');
    let seq = parts.next().unwrap_or_default();
    let as_of = parts.next().unwrap_or_default();
    format!("{as_of}.{seq}")
}

/// Records the release of the held run `run` (`{as_of}.{seq}`) of `segmentation`;
/// `Ok(None)` when it is not the held latest run (the message says what is);
/// `share` is the segmentation's `max_change_share`.
pub async fn release(
    share: f64,
    storage: &Storage,
    segmentation: &str,
    run: &str,
    released_by: &str,
    note: &str,
) -> Result<Result<Release, String>, Error> {
    let held = match resolve(storage, segmentation, share).await? {
        None => return Ok(Err(format!("segmentation `{segmentation}` has no run"))),
        Some((_, None)) => {
            return Ok(Err(format!(
            "segmentation `{segmentation}` has no held run: its latest run is published as usual"
        )))
        }
        Some((_, Some(h))) => h,
    };
    if held.run != run {
        return Ok(Err(format!(
            "run `{run}` is not the held run of `{segmentation}`; the held run is `{}` ({})",
            held.run, held.run_id
        )));
    }
    let r = Release {
        run_id: held.run_id,
        released_by: released_by.to_owned(),
        released_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        note: note.to_owned(),
    };
    hold::save_release(storage, segmentation, &r).await?;
    Ok(Ok(r))
}
