//! The circuit breaker's documents, shared by the segmenter (which holds a run) and the
//! publisher (which skips a held run and records its release):
//!
//! ```text
//! segmentations/{name}/latest.json                 {"run_id", "as_of", "path", "held"?}
//! segmentations/{name}/releases/{as_of}.{seq}.json {"run_id", "released_by", "released_at", "note"}
//! ```
//!
//! A run that would move or drop more than the segmentation's `max_change_share` of the
//! outlets its baseline assigned is written as usual, but `latest.json` carries a
//! [`Hold`]: why, the numbers, and the baseline — the accepted run it was compared
//! with, which stays the one published and the one the next run starts from. A held run
//! becomes accepted when a [`Release`] document names it, or when the configuration
//! allows its change share (see [`accepted`]).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{Result, Storage};

/// A run's place in storage: what `latest.json` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPointer {
    /// Run id, `{name}/{as_of}/{seq}`.
    pub run_id: String,
    /// As-of date of the run's features.
    pub as_of: NaiveDate,
    /// The run's folder, relative to the storage root.
    #[serde(default)]
    pub path: String,
}

/// Why a run is held, in `latest.json` (`held`) and the run's `model.json` (`hold`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// The reason, a sentence for a person.
    pub reason: String,
    /// Outlets the baseline assigned.
    pub baseline_outlets: usize,
    /// Of those, outlets this run puts in another segment.
    pub moved: usize,
    /// Of those, outlets this run no longer assigns (they would be tombstoned).
    pub left: usize,
    /// `(moved + left) / baseline_outlets`.
    pub change_share: f64,
    /// The segmentation's `max_change_share` when the run was held.
    pub max_change_share: f64,
    /// The accepted run this one was compared with: it stays published, and the next
    /// run starts from it until this one is released.
    pub baseline: RunPointer,
}

/// A release of a held run (`segmentations/{name}/releases/{as_of}.{seq}.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// The released run.
    pub run_id: String,
    /// Who released it (as given in the request; `api` when not given).
    pub released_by: String,
    /// When (RFC 3339).
    pub released_at: String,
    /// Why, as given in the request.
    #[serde(default)]
    pub note: String,
}

/// The default `max_change_share`: a run may move or drop at most 20% of the outlets.
pub const DEFAULT_MAX_CHANGE_SHARE: f64 = 0.2;

/// The path of the release document of `run_id` (`{name}/{as_of}/{seq}`).
pub fn release_path(segmentation: &str, run_id: &str) -> String {
    let mut parts = run_id.rsplitn(3, '/');
    let seq = parts.next().unwrap_or_default();
    let as_of = parts.next().unwrap_or_default();
    format!("segmentations/{segmentation}/releases/{as_of}.{seq}.json")
}

/// Reads the release of `run_id`, if any.
pub async fn load_release(
    storage: &Storage,
    segmentation: &str,
    run_id: &str,
) -> Result<Option<Release>> {
    storage.get_json(&release_path(segmentation, run_id)).await
}

/// Writes the release of a held run.
pub async fn save_release(storage: &Storage, segmentation: &str, release: &Release) -> Result<()> {
    storage
        .put_json(&release_path(segmentation, &release.run_id), release)
        .await
}

/// Whether a run may be published: it was not held, it was released, or the
/// configuration now allows its change share.
pub fn accepted(hold: Option<&Hold>, release: Option<&Release>, max_change_share: f64) -> bool {
    match hold {
        None => true,
        Some(h) => release.is_some() || h.change_share <= max_change_share,
    }
}

/// The decision for a new run: held when a baseline exists and more than
/// `max_change_share` of its outlets moved or left. The first run is never held.
pub fn decide(
    baseline: Option<&RunPointer>,
    baseline_outlets: usize,
    moved: usize,
    left: usize,
    max_change_share: f64,
) -> Option<Hold> {
    let baseline = baseline?;
    if baseline_outlets == 0 {
        return None;
    }
    let share = (moved + left) as f64 / baseline_outlets as f64;
    (share > max_change_share).then(|| Hold {
        reason: format!(
            "{moved} of the {baseline_outlets} outlets assigned by {} would move and {left} would be \
             tombstoned ({:.1}% > max_change_share {:.1}%); release it with \
             POST /api/segmentations/{{name}}/runs/{{as_of}}.{{seq}}/release or raise max_change_share",
            baseline.run_id,
            100.0 * share,
            100.0 * max_change_share
        ),
        baseline_outlets,
        moved,
        left,
        change_share: share,
        max_change_share,
        baseline: baseline.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RunPointer {
        RunPointer {
            run_id: "mix/2026-11-01/1".into(),
            as_of: "2026-11-01".parse().unwrap(),
            path: "segmentations/mix/runs/2026-11-01.1".into(),
        }
    }

    #[test]
    fn holds_above_the_share_and_never_the_first_run() {
        assert_eq!(decide(None, 0, 0, 12, 0.2), None, "first run");
        assert_eq!(decide(Some(&base()), 100, 10, 10, 0.2), None, "exactly 20%");
        let h = decide(Some(&base()), 100, 10, 11, 0.2).unwrap();
        assert!((h.change_share - 0.21).abs() < 1e-12);
        assert!(h.reason.contains("mix/2026-11-01/1"), "{}", h.reason);
        assert!(!accepted(Some(&h), None, 0.2));
        assert!(accepted(Some(&h), None, 1.0), "the configuration allows it");
        let r = Release {
            run_id: "mix/2026-11-02/1".into(),
            released_by: "ops".into(),
            released_at: "2026-11-02T10:00:00Z".into(),
            note: String::new(),
        };
        assert!(accepted(Some(&h), Some(&r), 0.2));
        assert_eq!(
            release_path("mix", "mix/2026-11-02/3"),
            "segmentations/mix/releases/2026-11-02.3.json"
        );
    }
}
