//! A segmentation's runs, written by the segmenter and read by the publisher and by
//! users:
//!
//! ```text
//! segmentations/{name}/runs/{as_of}.{seq}/assignments.parquet     AssignmentRow
//!                                         outlet_gaps.parquet     GapRow
//!                                         movements.parquet       MovementRow
//!                                         recommendations.parquet RecommendationRow
//!                                         contexts.parquet        ContextRow
//!                                         sku_gaps.parquet        SkuGapRow
//!                                         profiles.json           [SegmentProfile]
//!                                         model.json              ModelFile
//! segmentations/{name}/latest.json        Latest — written last
//! ```
//!
//! The run id is `{name}/{as_of}/{seq}`; `seq` counts the runs of one as-of date from 1
//! and never reuses a folder, so readers only ever see complete runs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::columns::{float, float_opt, int, schema, text};
use super::context::ContextRow;
use super::layout::{self, run_files};
use super::model::ModelFile;
use super::profile::SegmentProfile;
pub use super::recommendations::{
    group_recommendations, recommendation_rows, RecItem, RecommendationRow, Recommendations,
    REC_LISTS,
};
use super::{batch, keyed, read_rows, Columns, Rows};
use crate::hold::{Hold, RunPointer};
use crate::{Error, Result, Storage};

use DataType::{Float64, Int64, Utf8};

/// `segmentations/{name}/latest.json`: the latest complete run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    /// Run id, `{name}/{as_of}/{seq}`.
    pub run_id: String,
    /// As-of date of the run's features.
    pub as_of: NaiveDate,
    /// The run's folder, relative to the storage root.
    pub path: String,
    /// Set when the circuit breaker held the run (see [`crate::hold`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
    /// When the run was made (the segment service's clock); the schedule's next fire
    /// after it is when the segmentation may run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The `content_hash` of the features the run read ([`super::features::Manifest`]):
    /// features with another hash are a change the schedule runs for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features_hash: Option<String>,
    /// The definition's [`crate::config::SegmentationConfig::run_fingerprint`] the run
    /// was made with: a definition with another is due at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition_hash: Option<String>,
}

impl Latest {
    /// The run as a pointer.
    pub fn pointer(&self) -> RunPointer {
        RunPointer {
            run_id: self.run_id.clone(),
            as_of: self.as_of,
            path: self.path.clone(),
        }
    }

    /// The path of one of the run's files ([`run_files`]).
    pub fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.path.trim_end_matches('/'))
    }
}

/// Reads `latest.json`; `None` before the first run.
pub async fn latest(storage: &Storage, segmentation: &str) -> Result<Option<Latest>> {
    storage.get_json(&layout::latest(segmentation)).await
}

/// Writes `latest.json` (the last write of a run).
pub async fn write_latest(storage: &Storage, segmentation: &str, latest: &Latest) -> Result<()> {
    storage
        .put_json(&layout::latest(segmentation), latest)
        .await
}

/// The segmentations that have a `latest.json` in storage, sorted.
pub async fn stored_segmentations(storage: &Storage) -> Result<Vec<String>> {
    // The folders, then each one's `latest.json`: a listing of every run's files would
    // grow with the history.
    let mut names = Vec::new();
    for folder in storage.list_folders(layout::SEGMENTATIONS).await? {
        let latest = format!("{folder}latest.json");
        if let Some(name) = layout::segmentation_of_latest(&latest) {
            if storage.exists(&latest).await? {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

/// Every complete run folder of a segmentation (one with `model.json`), as
/// `(run_id, folder)`, newest first (by as-of date, then sequence).
pub async fn run_folders(storage: &Storage, segmentation: &str) -> Result<Vec<(String, String)>> {
    let suffix = format!("/{}", run_files::MODEL);
    let mut runs: Vec<((NaiveDate, u32), String)> = storage
        .list(&layout::runs_root(segmentation))
        .await?
        .into_iter()
        .filter_map(|l| {
            let dir = l.path.strip_suffix(&suffix)?.to_owned();
            let leaf = dir.rsplit('/').next()?;
            let (date, seq) = leaf.split_once('.')?;
            Some(((date.parse().ok()?, seq.parse().ok()?), dir))
        })
        .collect();
    runs.sort();
    runs.reverse();
    Ok(runs
        .into_iter()
        .map(|((d, s), dir)| (layout::run_id(segmentation, d, s), dir))
        .collect())
}

/// How an outlet's assignment compares with the previous run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Not assigned in the previous run.
    New,
    /// Assigned to another segment in the previous run.
    Moved,
    /// Same segment as in the previous run.
    Same,
}

impl Change {
    /// `new`, `moved` or `same`.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Moved => "moved",
            Change::Same => "same",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "new" => Change::New,
            "moved" => Change::Moved,
            "same" => Change::Same,
            _ => return None,
        })
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `assignments.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentRow {
    /// The outlet.
    pub outlet_id: String,
    /// Its segment.
    pub segment_id: String,
    /// Its segment in the previous run, if any.
    pub previous_segment_id: Option<String>,
    /// Against the previous run.
    pub change: Change,
    /// Distance to the segment's centroid in feature space.
    pub distance: f64,
    /// In [0, 1]: how much nearer the own centroid is than the next one.
    pub confidence: f64,
    /// Net value in the window.
    pub value: f64,
    /// Invoice lines in the window.
    pub lines: i64,
    /// Value the outlet would add by buying like its segment, at least at the volume of
    /// the segment's median outlet.
    pub potential: f64,
    /// `A`, `B` or `C` by potential within the segment (ABC analysis: the outlets
    /// holding the first half of the segment's potential are `A`, the next 30% `B`);
    /// empty in runs written before tiers.
    pub tier: String,
    /// What the change detector moved the outlet with, while the rest of the window
    /// still holds the behaviour it moved away from (`None` otherwise, and in runs
    /// written before baselines).
    pub baseline: Option<Baseline>,
}

/// An outlet's behaviour when the change detector moved it into its segment: its spend
/// shares in the recent window of that run and the invoice lines behind them. A run
/// carries it forward while the outlet stays and the window still reaches back before
/// the move; the detector tests a further move against it (see the README, "Who
/// moves").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The as-of date of the run that moved it.
    pub since: NaiveDate,
    /// Invoice lines behind `spectrum`.
    pub lines: f64,
    /// Spend share per feature (features without spend left out).
    pub spectrum: BTreeMap<String, f64>,
}

impl Rows for AssignmentRow {
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema(&[
                ("outlet_id", Utf8, false),
                ("segment_id", Utf8, false),
                ("previous_segment_id", Utf8, true),
                ("change", Utf8, false),
                ("distance", Float64, false),
                ("confidence", Float64, false),
                ("value", Float64, false),
                ("lines", Int64, false),
                ("potential", Float64, false),
                ("tier", Utf8, true),
                ("baseline", Utf8, true),
            ])
        });
        S.clone()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        let baselines = rows
            .iter()
            .map(|r| r.baseline.as_ref().map(serde_json::to_string).transpose())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Table {
                file: run_files::ASSIGNMENTS.to_owned(),
                reason: format!("column `baseline`: {e}"),
            })?;
        batch(
            Self::schema(),
            vec![
                text(rows.iter().map(|r| Some(r.outlet_id.as_str()))),
                text(rows.iter().map(|r| Some(r.segment_id.as_str()))),
                text(rows.iter().map(|r| r.previous_segment_id.as_deref())),
                text(rows.iter().map(|r| Some(r.change.as_str()))),
                float(rows.iter().map(|r| r.distance)),
                float(rows.iter().map(|r| r.confidence)),
                float(rows.iter().map(|r| r.value)),
                int(rows.iter().map(|r| r.lines)),
                float(rows.iter().map(|r| r.potential)),
                text(
                    rows.iter()
                        .map(|r| Some(r.tier.as_str()).filter(|t| !t.is_empty())),
                ),
                text(baselines.iter().map(|b| b.as_deref())),
            ],
        )
    }

    fn from_batch(c: &Columns<'_>) -> Result<Vec<Self>> {
        let (o, s, p) = (
            c.ids("outlet_id")?,
            c.ids("segment_id")?,
            c.text("previous_segment_id")?,
        );
        let change = c.ids("change")?;
        let (d, conf, v, pot) = (
            c.float("distance")?,
            c.float("confidence")?,
            c.float("value")?,
            c.float("potential")?,
        );
        let l = c.int("lines")?;
        // Runs written before tiers have no `tier` column.
        let tier = c.text_if_present("tier")?;
        // Nor runs written before baselines a `baseline` column.
        let baseline = c.text_if_present("baseline")?;
        (0..c.len())
            .map(|k| {
                Ok(AssignmentRow {
                    outlet_id: o[k].clone(),
                    segment_id: s[k].clone(),
                    previous_segment_id: p[k].clone(),
                    change: Change::parse(&change[k]).ok_or_else(|| Error::Table {
                        file: c.file().to_owned(),
                        reason: format!(
                            "column `change` is `{}` in row {k}, not new, moved or same",
                            change[k]
                        ),
                    })?,
                    distance: d[k],
                    confidence: conf[k],
                    value: v[k],
                    lines: l[k],
                    potential: pot[k],
                    tier: tier[k].clone().unwrap_or_default(),
                    baseline: baseline[k]
                        .as_deref()
                        .map(serde_json::from_str)
                        .transpose()
                        .map_err(|e| Error::Table {
                            file: c.file().to_owned(),
                            reason: format!("column `baseline` in row {k}: {e}"),
                        })?,
                })
            })
            .collect()
    }
}

/// One row of `outlet_gaps.parquet`: how an outlet's share of one feature differs from
/// its segment's.
#[derive(Debug, Clone, PartialEq)]
pub struct GapRow {
    /// The outlet.
    pub outlet_id: String,
    /// Its segment.
    pub segment_id: String,
    /// A feature of the segmentation's level.
    pub feature: String,
    /// The outlet's share of spend on the feature.
    pub outlet_share: f64,
    /// The segment's share.
    pub segment_share: f64,
    /// `segment_share − outlet_share`.
    pub gap: f64,
}

impl Rows for GapRow {
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema(&[
                ("outlet_id", Utf8, false),
                ("segment_id", Utf8, false),
                ("feature", Utf8, false),
                ("outlet_share", Float64, false),
                ("segment_share", Float64, false),
                ("gap", Float64, false),
            ])
        });
        S.clone()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        batch(
            Self::schema(),
            vec![
                text(rows.iter().map(|r| Some(r.outlet_id.as_str()))),
                text(rows.iter().map(|r| Some(r.segment_id.as_str()))),
                text(rows.iter().map(|r| Some(r.feature.as_str()))),
                float(rows.iter().map(|r| r.outlet_share)),
                float(rows.iter().map(|r| r.segment_share)),
                float(rows.iter().map(|r| r.gap)),
            ],
        )
    }

    fn from_batch(c: &Columns<'_>) -> Result<Vec<Self>> {
        let (o, s, f) = (c.ids("outlet_id")?, c.ids("segment_id")?, c.ids("feature")?);
        let (os, ss, g) = (
            c.float("outlet_share")?,
            c.float("segment_share")?,
            c.float("gap")?,
        );
        Ok((0..c.len())
            .map(|k| GapRow {
                outlet_id: o[k].clone(),
                segment_id: s[k].clone(),
                feature: f[k].clone(),
                outlet_share: os[k],
                segment_share: ss[k],
                gap: g[k],
            })
            .collect())
    }

    fn distinct_columns() -> &'static [&'static str] {
        &["outlet_share", "gap"]
    }
}

/// Which reading of an outlet's purchases the change detector found a change in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reading {
    /// Its spend per feature.
    #[default]
    Spend,
    /// Its invoice lines per feature.
    Lines,
}

/// One feature behind a move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    /// Feature (value of the segmentation's level).
    pub feature: String,
    /// The reading the shares and the contribution are of: `spend`, or `lines` when
    /// the change showed in what the outlet buys counted in invoice lines (rows
    /// written before there were two readings have none: spend).
    #[serde(default)]
    pub reading: Reading,
    /// Share of the outlet's spend (or lines) before the recent window.
    pub earlier_share: f64,
    /// Share in the recent window.
    pub recent_share: f64,
    /// Its part of the change statistic.
    pub contribution: f64,
}

/// One row of `movements.parquet`: an outlet that moved, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct MovementRow {
    /// The outlet.
    pub outlet_id: String,
    /// Segment before.
    pub previous_segment_id: String,
    /// Segment now.
    pub segment_id: String,
    /// `changed` (the change detector), `segment_retired` or `nearer_segment`.
    pub reason: String,
    /// Change score (standard normal quantile; `None` when not tested).
    pub score: Option<f64>,
    /// Log Bayes factor of the recent purchases as a member of the new segment buys
    /// against as the outlet bought before.
    pub fit: Option<f64>,
    /// Invoice lines before the recent window.
    pub earlier_lines: f64,
    /// Invoice lines in the recent window.
    pub recent_lines: f64,
    /// Invoices in the recent window.
    pub recent_invoices: f64,
    /// The features that drove the change, strongest first (a JSON array in the file).
    pub drivers: Vec<Driver>,
    /// Earlier spend shares by feature (a JSON object in the file).
    pub earlier_spectrum: BTreeMap<String, f64>,
    /// Recent spend shares by feature.
    pub recent_spectrum: BTreeMap<String, f64>,
}

impl Rows for MovementRow {
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema(&[
                ("outlet_id", Utf8, false),
                ("previous_segment_id", Utf8, false),
                ("segment_id", Utf8, false),
                ("reason", Utf8, false),
                ("score", Float64, true),
                ("fit", Float64, true),
                ("earlier_lines", Float64, false),
                ("recent_lines", Float64, false),
                ("recent_invoices", Float64, false),
                ("drivers", Utf8, false),
                ("earlier_spectrum", Utf8, false),
                ("recent_spectrum", Utf8, false),
            ])
        });
        S.clone()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        let json =
            |f: &dyn Fn(&MovementRow) -> String| -> Vec<String> { rows.iter().map(f).collect() };
        let drivers = json(&|r| serde_json::to_string(&r.drivers).unwrap_or_default());
        let earlier = json(&|r| serde_json::to_string(&r.earlier_spectrum).unwrap_or_default());
        let recent = json(&|r| serde_json::to_string(&r.recent_spectrum).unwrap_or_default());
        batch(
            Self::schema(),
            vec![
                text(rows.iter().map(|r| Some(r.outlet_id.as_str()))),
                text(rows.iter().map(|r| Some(r.previous_segment_id.as_str()))),
                text(rows.iter().map(|r| Some(r.segment_id.as_str()))),
                text(rows.iter().map(|r| Some(r.reason.as_str()))),
                float_opt(rows.iter().map(|r| r.score)),
                float_opt(rows.iter().map(|r| r.fit)),
                float(rows.iter().map(|r| r.earlier_lines)),
                float(rows.iter().map(|r| r.recent_lines)),
                float(rows.iter().map(|r| r.recent_invoices)),
                text(drivers.iter().map(|s| Some(s.as_str()))),
                text(earlier.iter().map(|s| Some(s.as_str()))),
                text(recent.iter().map(|s| Some(s.as_str()))),
            ],
        )
    }

    fn from_batch(c: &Columns<'_>) -> Result<Vec<Self>> {
        let (o, p, s, r) = (
            c.ids("outlet_id")?,
            c.ids("previous_segment_id")?,
            c.ids("segment_id")?,
            c.ids("reason")?,
        );
        let (score, fit) = (c.float_opt("score")?, c.float_opt("fit")?);
        let (el, rl, ri) = (
            c.float("earlier_lines")?,
            c.float("recent_lines")?,
            c.float("recent_invoices")?,
        );
        let (d, es, rs) = (
            c.ids("drivers")?,
            c.ids("earlier_spectrum")?,
            c.ids("recent_spectrum")?,
        );
        fn parse<T: serde::de::DeserializeOwned>(
            c: &Columns<'_>,
            col: &str,
            row: usize,
            text: &str,
        ) -> Result<T> {
            serde_json::from_str(text).map_err(|e| Error::Table {
                file: c.file().to_owned(),
                reason: format!("column `{col}` in row {row} is not the JSON expected: {e}"),
            })
        }
        (0..c.len())
            .map(|k| {
                Ok(MovementRow {
                    outlet_id: o[k].clone(),
                    previous_segment_id: p[k].clone(),
                    segment_id: s[k].clone(),
                    reason: r[k].clone(),
                    score: score[k],
                    fit: fit[k],
                    earlier_lines: el[k],
                    recent_lines: rl[k],
                    recent_invoices: ri[k],
                    drivers: parse(c, "drivers", k, &d[k])?,
                    earlier_spectrum: parse(c, "earlier_spectrum", k, &es[k])?,
                    recent_spectrum: parse(c, "recent_spectrum", k, &rs[k])?,
                })
            })
            .collect()
    }
}

/// A run as its readers see it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The segmentation's name.
    pub segmentation: String,
    /// Which run this is.
    pub latest: Latest,
    /// Every assigned outlet, by outlet id.
    pub assignments: Vec<AssignmentRow>,
    /// Per outlet × feature gaps to the segment, sorted by outlet, as the encoded
    /// `outlet_gaps.parquet` ([`keyed::encode_chunks`] of [`GapRow`]s: never all held
    /// as rows). Written with the run; [`Run::read`] leaves it `None` (readers take one
    /// outlet at a time, [`read_outlet_gaps`]).
    pub gaps: Option<bytes::Bytes>,
    /// The outlets that moved, with the evidence.
    pub movements: Vec<MovementRow>,
    /// Each assigned outlet's recommendations, as the encoded `recommendations.parquet`
    /// ([`super::recommendations::encode`]: the lists are never all held at once).
    /// Written with the run; [`Run::read`] leaves it `None` (readers take one outlet at
    /// a time, [`super::recommendations::read_outlet`], or every outlet a batch at a
    /// time, [`super::recommendations::OutletLists`]).
    pub recommendations: Option<bytes::Bytes>,
    /// The segment profiles, in segment id order.
    pub profiles: Vec<SegmentProfile>,
    /// The model and the run's report.
    pub model: ModelFile,
    /// The segments' contexts. Written with the run; [`Run::read`] leaves it empty
    /// (readers take one segment and filter at a time, [`super::context::read`]).
    pub contexts: Vec<ContextRow>,
    /// Each outlet's SKUs with the most to win, as the encoded `sku_gaps.parquet`
    /// ([`super::sku_gaps::encode`]). Written with the run; [`Run::read`] leaves it
    /// `None` (readers take one outlet at a time, [`super::sku_gaps::read_outlet`]).
    pub sku_gaps: Option<bytes::Bytes>,
}

/// A run file `latest.json` names and storage does not have.
pub(super) fn missing(file: String) -> Error {
    Error::Table {
        file,
        reason: "missing, though latest.json names the run".into(),
    }
}

impl Run {
    /// Reads every file of the run `latest` names; each must exist.
    pub async fn read(storage: &Storage, segmentation: &str, latest: Latest) -> Result<Self> {
        async fn rows<T: Rows>(storage: &Storage, latest: &Latest, name: &str) -> Result<Vec<T>> {
            let f = latest.file(name);
            read_rows(storage, &f).await?.ok_or_else(|| missing(f))
        }
        async fn doc<T: serde::de::DeserializeOwned>(
            storage: &Storage,
            latest: &Latest,
            name: &str,
        ) -> Result<T> {
            let f = latest.file(name);
            storage.get_json(&f).await?.ok_or_else(|| missing(f))
        }
        let mut assignments: Vec<AssignmentRow> =
            rows(storage, &latest, run_files::ASSIGNMENTS).await?;
        assignments.sort_by(|a, b| a.outlet_id.cmp(&b.outlet_id));
        let movements = rows(storage, &latest, run_files::MOVEMENTS).await?;
        let mut profiles: Vec<SegmentProfile> = doc(storage, &latest, run_files::PROFILES).await?;
        profiles.sort_by(|a, b| a.segment_id.cmp(&b.segment_id));
        let model = doc(storage, &latest, run_files::MODEL).await?;
        Ok(Run {
            segmentation: segmentation.to_owned(),
            latest,
            assignments,
            gaps: None,
            movements,
            recommendations: None,
            profiles,
            model,
            contexts: Vec::new(),
            sku_gaps: None,
        })
    }

    /// Writes the run's files into `latest.path`, then `latest.json` naming it.
    pub async fn write(&self, storage: &Storage) -> Result<()> {
        let l = &self.latest;
        super::write_rows(storage, &l.file(run_files::ASSIGNMENTS), &self.assignments).await?;
        super::write_rows(storage, &l.file(run_files::MOVEMENTS), &self.movements).await?;
        super::write_rows(storage, &l.file(run_files::CONTEXTS), &self.contexts).await?;
        let encoded = [
            (run_files::GAPS, &self.gaps),
            (run_files::RECOMMENDATIONS, &self.recommendations),
            (run_files::SKU_GAPS, &self.sku_gaps),
        ];
        for (file, data) in encoded {
            if let Some(data) = data {
                storage.put(&l.file(file), data.clone()).await?;
            }
        }
        storage
            .put_json(&l.file(run_files::PROFILES), &self.profiles)
            .await?;
        storage
            .put_json(&l.file(run_files::MODEL), &self.model)
            .await?;
        write_latest(storage, &self.segmentation, l).await
    }
}

/// A run's `outlet_gaps.parquet` holding `rows`, which must come by outlet: encoded a
/// row group at a time as the iterator yields them ([`keyed::encode_rows`]).
pub fn encode_outlet_gaps(rows: impl Iterator<Item = GapRow>) -> Result<bytes::Bytes> {
    keyed::encode_rows(run_files::GAPS, "outlet_id", rows)
}

/// One outlet's rows of a run's `outlet_gaps.parquet` (the row groups that can hold
/// it, [`keyed::read_key`]); a missing file is an [`Error::Table`] naming it.
pub async fn read_outlet_gaps(
    storage: &Storage,
    latest: &Latest,
    outlet_id: &str,
) -> Result<Vec<GapRow>> {
    let f = latest.file(run_files::GAPS);
    keyed::read_key(storage, &f, "outlet_id", outlet_id)
        .await?
        .ok_or_else(|| missing(f))
}

/// A run's model without the rest of the run (the pipeline page's history).
pub async fn read_model(storage: &Storage, folder: &str) -> Result<Option<ModelFile>> {
    storage
        .get_json(&format!("{folder}/{}", run_files::MODEL))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_change_names_the_file_row_and_value() {
        let row = AssignmentRow {
            outlet_id: "o".into(),
            segment_id: "S1".into(),
            previous_segment_id: None,
            change: Change::New,
            distance: 0.0,
            confidence: 1.0,
            value: 1.0,
            lines: 1,
            potential: 0.0,
            tier: "B".into(),
            baseline: Some(Baseline {
                since: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
                lines: 42.0,
                spectrum: [("tea".to_owned(), 0.75), ("coffee".to_owned(), 0.25)].into(),
            }),
        };
        let b = AssignmentRow::to_batch(std::slice::from_ref(&row)).unwrap();
        assert_eq!(
            AssignmentRow::from_batch(&Columns::new(&b, "a.parquet")).unwrap(),
            vec![row]
        );
        let mut cols = b.columns().to_vec();
        cols[3] = text([Some("update")].into_iter());
        let bad = RecordBatch::try_new(b.schema(), cols).unwrap();
        let e = AssignmentRow::from_batch(&Columns::new(&bad, "a.parquet")).unwrap_err();
        assert!(e.to_string().contains("`update`"), "{e}");
    }
}
