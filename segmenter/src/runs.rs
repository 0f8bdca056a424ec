//! A segmentation's runs in storage:
//!
//! ```text
//! segmentations/{name}/runs/{as_of}.{seq}/assignments.parquet
//!                                         outlet_gaps.parquet
//!                                         movements.parquet
//!                                         profiles.json
//!                                         model.json
//! segmentations/{name}/latest.json        {"run_id", "as_of", "path", "held"?} — written last
//! segmentations/{name}/releases/{as_of}.{seq}.json   a held run's release (the publisher)
//! ```
//!
//! A run the circuit breaker held names in `latest.json` the baseline it was compared
//! with; until the run is released (or the configuration allows its change), that
//! baseline stays the accepted run: the one published and the one the next run starts
//! from ([`accepted`]).
//!
//! The run id is `{name}/{as_of}/{seq}`; `seq` counts the runs of one as-of date from
//! 1 and never reuses a folder, so a run that crashed before `latest.json` leaves an
//! orphan folder the next run skips over, and readers only ever see complete runs.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use spectra_core::crosswalk::{Crosswalk, Member};
use spectra_core::hold::RunPointer;
use spectra_core::storage::{Condition, PutOutcome};
use spectra_core::tables::layout::{self, run_files};
use spectra_core::tables::read_rows;
use spectra_core::tables::runs::{self as tables, Run};
use spectra_core::Storage;

pub use spectra_core::tables::runs::{AssignmentRow, Latest};

use crate::model::ModelFile;
use crate::pipeline::{PreviousRun, RunOutput};
use crate::Error;

/// The accepted run of a segmentation: its latest run unless that one is held and
/// neither released nor allowed by `max_change_share`, in which case the held run's
/// baseline. Also returns the latest run when it is held and not accepted.
pub async fn accepted(
    storage: &Storage,
    segmentation: &str,
    max_change_share: f64,
) -> Result<Option<(RunPointer, Option<Latest>)>, Error> {
    let Some(latest) = latest(storage, segmentation).await? else {
        return Ok(None);
    };
    let Some(hold) = &latest.held else {
        return Ok(Some((latest.pointer(), None)));
    };
    let release = spectra_core::hold::load_release(storage, segmentation, &latest.run_id).await?;
    if spectra_core::hold::accepted(Some(hold), release.as_ref(), max_change_share) {
        Ok(Some((latest.pointer(), None)))
    } else {
        Ok(Some((hold.baseline.clone(), Some(latest))))
    }
}

/// The folder of run `seq` of `as_of`.
pub fn run_folder(segmentation: &str, as_of: NaiveDate, seq: u32) -> String {
    layout::run(segmentation, as_of, seq)
}

/// The latest complete run, if any.
pub async fn latest(storage: &Storage, segmentation: &str) -> Result<Option<Latest>, Error> {
    Ok(tables::latest(storage, segmentation).await?)
}

/// The next free `seq` for `as_of` (1 for the first run of the date), claimed by a
/// conditional create of `segmentations/{name}/claims/{as_of}.{seq}.json`.
pub async fn next_seq(
    storage: &Storage,
    segmentation: &str,
    as_of: NaiveDate,
) -> Result<u32, Error> {
    let root = layout::runs_root(segmentation);
    let prefix = format!("{as_of}.");
    let used = storage
        .list(&root)
        .await?
        .iter()
        .filter_map(|l| {
            let dir = l.path.strip_prefix(&root)?.split('/').next()?;
            dir.strip_prefix(&prefix)?.parse::<u32>().ok()
        })
        .max();
    let mut seq = used.map_or(1, |s| s + 1);
    // Claim the folder with a conditional create, so two segmenter processes running
    // the same segmentation and as-of never write the same run folder: the loser of
    // a race takes the next sequence number.
    let claims = format!("{}claims/", root.trim_end_matches("runs/"));
    loop {
        let claim = format!("{claims}{as_of}.{seq}.json");
        let body = serde_json::json!({
            "pid": std::process::id(),
            "claimed_at": chrono::Utc::now().to_rfc3339(),
        });
        let data = bytes::Bytes::from(body.to_string());
        match storage.put_if(&claim, data, &Condition::Absent).await? {
            PutOutcome::Written(_) => return Ok(seq),
            PutOutcome::Conflict => seq += 1,
        }
    }
}

/// Reads the accepted run (see [`accepted`]) the next run starts from and is compared
/// with: its model, assignments and segment names.
pub async fn read_previous(
    storage: &Storage,
    segmentation: &str,
    max_change_share: f64,
) -> Result<Option<PreviousRun>, Error> {
    let Some((latest, _)) = accepted(storage, segmentation, max_change_share).await? else {
        return Ok(None);
    };
    let missing = |file: &str| Error::PreviousRun {
        path: format!("{}/{file}", latest.path),
        reason: "missing, though latest.json names the run".into(),
    };
    let file = |name: &str| format!("{}/{name}", latest.path);
    let model: ModelFile = storage
        .get_json(&file(run_files::MODEL))
        .await?
        .ok_or_else(|| missing(run_files::MODEL))?;
    let assignments: Vec<AssignmentRow> = read_rows(storage, &file(run_files::ASSIGNMENTS))
        .await?
        .ok_or_else(|| missing(run_files::ASSIGNMENTS))?;
    let profiles: Vec<spectra_core::tables::profile::SegmentProfile> = storage
        .get_json(&file(run_files::PROFILES))
        .await?
        .ok_or_else(|| missing(run_files::PROFILES))?;
    // One pass over the rows: each baseline moves into its map, not copied.
    let mut baselines = HashMap::new();
    let assignments = assignments
        .into_iter()
        .map(|a| {
            if let Some(b) = a.baseline {
                baselines.insert(a.outlet_id.clone(), b);
            }
            (a.outlet_id, a.segment_id)
        })
        .collect();
    Ok(Some(PreviousRun {
        run_id: latest.run_id.clone(),
        pointer: latest,
        model,
        assignments,
        baselines,
        names: profiles
            .into_iter()
            .map(|p| (p.segment_id, (p.name, p.name_features)))
            .collect(),
        repartition: false,
        operation: None,
    }))
}

/// The run a promotion starts from: the live run `live` (its assignments and segment
/// names, what the promotion is compared with and published against) with the
/// promoted draft's run `draft_run_id` as its model. The draft's segments take the ids
/// of the live segments they correspond to ([`spectra_core::crosswalk`], by shared
/// outlets), the others new ids, so names and tags carry over.
pub async fn promoted_previous(
    storage: &Storage,
    live: Option<PreviousRun>,
    draft_run_id: &str,
) -> Result<PreviousRun, Error> {
    let folder = layout::run_of_id(draft_run_id).ok_or_else(|| Error::PreviousRun {
        path: draft_run_id.to_owned(),
        reason: "not a run id ({name}/{as_of}/{seq})".into(),
    })?;
    let missing = |file: &str| Error::PreviousRun {
        path: format!("{folder}/{file}"),
        reason: "the promoted draft's run is missing".into(),
    };
    let mut model: ModelFile = storage
        .get_json(&format!("{folder}/{}", run_files::MODEL))
        .await?
        .ok_or_else(|| missing(run_files::MODEL))?;
    let draft: Vec<AssignmentRow> =
        read_rows(storage, &format!("{folder}/{}", run_files::ASSIGNMENTS))
            .await?
            .ok_or_else(|| missing(run_files::ASSIGNMENTS))?;
    let Some(live) = live else {
        // Nothing live yet: the draft's run as it is.
        return Ok(PreviousRun {
            run_id: draft_run_id.to_owned(),
            pointer: RunPointer {
                run_id: draft_run_id.to_owned(),
                as_of: model.as_of,
                path: folder.clone(),
            },
            assignments: HashMap::new(),
            baselines: HashMap::new(),
            names: HashMap::new(),
            model,
            repartition: true,
            operation: None,
        });
    };
    let member = |segment: &String| Member {
        segment: segment.clone(),
        value: 0.0,
    };
    let a: BTreeMap<String, Member> = live
        .assignments
        .iter()
        .map(|(o, s)| (o.clone(), member(s)))
        .collect();
    let b: BTreeMap<String, Member> = draft
        .iter()
        .map(|r| (r.outlet_id.clone(), member(&r.segment_id)))
        .collect();
    let cw = Crosswalk::new(&a, &b);
    let mut next_id = live.model.next_id.max(1);
    for s in &mut model.segments {
        s.segment_id = match cw.a_of(&s.segment_id) {
            Some(id) => id.to_owned(),
            None => {
                let id = format!("S{next_id}");
                next_id += 1;
                id
            }
        };
    }
    model.next_id = next_id;
    Ok(PreviousRun {
        model,
        repartition: true,
        ..live
    })
}

/// Writes a run's folder, then `latest.json` naming it, when it was made, the
/// features it read and the definition it ran (its run fingerprint); gives back
/// `latest.json` and the run's model.
pub async fn write_run(
    storage: &Storage,
    segmentation: &str,
    folder: &str,
    out: RunOutput,
    ran_at: chrono::DateTime<chrono::Utc>,
    features_hash: Option<String>,
    definition_hash: String,
) -> Result<(Latest, ModelFile), Error> {
    let latest = Latest {
        run_id: out.run_id.clone(),
        as_of: out.model.as_of,
        path: folder.to_owned(),
        held: out.model.hold.clone(),
        ran_at: Some(ran_at),
        features_hash,
        definition_hash: Some(definition_hash),
    };
    // The output moves into the run: a copy of every list would double the stage's
    // peak memory at its largest point.
    let run = Run {
        segmentation: segmentation.to_owned(),
        latest: latest.clone(),
        assignments: out.assignments,
        gaps: Some(out.gaps),
        movements: out.movements,
        recommendations: out.recommendations,
        profiles: out.profiles,
        model: out.model,
        contexts: out.contexts,
        sku_gaps: Some(out.sku_gaps),
    };
    run.write(storage).await?;
    Ok((latest, run.model))
}

#[cfg(test)]
mod claim_tests {
    use super::*;

    #[tokio::test]
    async fn two_runs_of_one_date_never_share_a_folder() {
        let s = Storage::memory();
        let d = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let (a, b) = tokio::join!(next_seq(&s, "x", d), next_seq(&s, "x", d));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a, b);
        assert_eq!(a.min(b), 1);
        assert!(s
            .list("segmentations/x/claims/")
            .await
            .unwrap()
            .iter()
            .any(|l| l.path.ends_with("2026-03-01.2.json")));
    }
}
