//! Where every shared artifact lives under the storage URL: the one place a path is
//! built. Hive-style partitions (`date=…`, `segmentation=…`, `as_of=…`) so DuckDB,
//! Spark or DataFusion read the folders directly.

use chrono::NaiveDate;

/// Raw invoice lines, partitioned by invoice date (ingest).
pub const RAW_INVOICES: &str = "raw/invoices/";
/// Outlet master changelog (ingest).
pub const MASTER_OUTLETS: &str = "master/outlets/";
/// SKU master changelog (ingest).
pub const MASTER_SKUS: &str = "master/skus/";
/// Per outlet × SKU × day roll-up (aggregator).
pub const DAILY: &str = "features/daily/";
/// Per outlet × day roll-up (aggregator).
pub const OUTLET_DAILY: &str = "features/outlet_daily/";
/// The daily tables' re-roll marker: whether a pass is part-way through moving lines
/// between days (aggregator; see [`super::rolling`]).
pub const DAILY_ROLLING: &str = "features/daily_rolling.json";
/// Every segmentation's runs (segmenter).
pub const SEGMENTATIONS: &str = "segmentations/";
/// Every segmentation's definition, versioned (config seeding and the API; see
/// [`super::definitions`]).
pub const DEFINITIONS: &str = "definitions/";

/// A raw invoice object of one invoice date, named by its writer's `stem`.
pub fn raw_invoices_object(date: NaiveDate, stem: &str) -> String {
    format!("{RAW_INVOICES}date={date}/{stem}")
}

/// An outlet master object.
pub fn master_outlets_object(stem: &str) -> String {
    format!("{MASTER_OUTLETS}{stem}")
}

/// A SKU master object.
pub fn master_skus_object(stem: &str) -> String {
    format!("{MASTER_SKUS}{stem}")
}

/// A day's daily table.
pub fn daily(date: NaiveDate) -> String {
    format!("{DAILY}date={date}/daily.parquet")
}

/// A day's outlet-daily table.
pub fn outlet_daily(date: NaiveDate) -> String {
    format!("{OUTLET_DAILY}date={date}/outlet_daily.parquet")
}

/// The date of a `…/date=YYYY-MM-DD/…` path.
pub fn partition_date(path: &str) -> Option<NaiveDate> {
    path.split("date=").nth(1)?.get(..10)?.parse().ok()
}

/// The folder of a segmentation's features (all as-of dates).
pub fn features_root(segmentation: &str) -> String {
    format!("features/segmentation={segmentation}/")
}

/// The features folder of a segmentation and as-of date.
pub fn features(segmentation: &str, as_of: NaiveDate) -> String {
    format!("features/segmentation={segmentation}/as_of={as_of}")
}

/// A file of a features folder (`spectrum.parquet`, `kpis.parquet`,
/// `sku_spend.parquet`, `_manifest.json`).
pub fn features_file(segmentation: &str, as_of: NaiveDate, file: &str) -> String {
    format!("{}/{file}", features(segmentation, as_of))
}

/// The as-of date of a features folder path (`…/as_of=YYYY-MM-DD/…`).
pub fn features_as_of(path: &str) -> Option<NaiveDate> {
    path.split("as_of=").nth(1)?.get(..10)?.parse().ok()
}

/// `current.json` of a segmentation's features.
pub fn features_current(segmentation: &str) -> String {
    format!("features/segmentation={segmentation}/current.json")
}

/// The folder of a segmentation's runs.
pub fn runs_root(segmentation: &str) -> String {
    format!("{SEGMENTATIONS}{segmentation}/runs/")
}

/// The folder of one run.
pub fn run(segmentation: &str, as_of: NaiveDate, seq: u32) -> String {
    format!("{SEGMENTATIONS}{segmentation}/runs/{as_of}.{seq}")
}

/// The id of a run: `{name}/{as_of}/{seq}`.
pub fn run_id(segmentation: &str, as_of: NaiveDate, seq: u32) -> String {
    format!("{segmentation}/{as_of}/{seq}")
}

/// The folder of the run with id `{name}/{as_of}/{seq}`.
pub fn run_of_id(run_id: &str) -> Option<String> {
    let mut p = run_id.splitn(3, '/');
    let (name, as_of, seq) = (p.next()?, p.next()?, p.next()?);
    Some(run(name, as_of.parse().ok()?, seq.parse().ok()?))
}

/// `latest.json` of a segmentation.
pub fn latest(segmentation: &str) -> String {
    format!("{SEGMENTATIONS}{segmentation}/latest.json")
}

/// The segmentation named by a path under [`SEGMENTATIONS`] ending in `latest.json`.
pub fn segmentation_of_latest(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(SEGMENTATIONS)?;
    let (name, file) = rest.split_once('/')?;
    (file == "latest.json").then_some(name)
}

/// Version `version` of a segmentation's definition.
pub fn definition(segmentation: &str, version: u32) -> String {
    format!("{}{version:06}.json", definition_folder(segmentation))
}

/// The folder of every stored version of a segmentation's definition.
pub fn definition_folder(segmentation: &str) -> String {
    format!("{DEFINITIONS}{segmentation}/")
}

/// The segmentation and version of a [`definition`] path.
pub fn definition_of(path: &str) -> Option<(&str, u32)> {
    let rest = path.strip_prefix(DEFINITIONS)?;
    let (name, file) = rest.split_once('/')?;
    Some((name, file.strip_suffix(".json")?.parse().ok()?))
}

/// Files of a run folder.
pub mod run_files {
    /// One row per assigned outlet.
    pub const ASSIGNMENTS: &str = "assignments.parquet";
    /// Per outlet × feature gaps to the segment.
    pub const GAPS: &str = "outlet_gaps.parquet";
    /// The outlets that moved, with the evidence.
    pub const MOVEMENTS: &str = "movements.parquet";
    /// Four SKU lists per assigned outlet.
    pub const RECOMMENDATIONS: &str = "recommendations.parquet";
    /// Each assigned outlet's SKUs with the most to win against its segment.
    pub const SKU_GAPS: &str = "sku_gaps.parquet";
    /// Every segment's mix over product levels and outlet fields, unfiltered and
    /// per region, channel and distributor.
    pub const CONTEXTS: &str = "contexts.parquet";
    /// The segment profiles (contract §3.2).
    pub const PROFILES: &str = "profiles.json";
    /// The model the next run starts from, and the run's report.
    pub const MODEL: &str = "model.json";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_their_parts() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        assert_eq!(daily(d), "features/daily/date=2026-11-21/daily.parquet");
        assert_eq!(partition_date(&daily(d)), Some(d));
        assert_eq!(
            features_as_of(&features_file("mix", d, "kpis.parquet")),
            Some(d)
        );
        assert_eq!(run("mix", d, 2), "segmentations/mix/runs/2026-11-21.2");
        assert_eq!(
            run_of_id(&run_id("mix", d, 2)).as_deref(),
            Some("segmentations/mix/runs/2026-11-21.2")
        );
        assert_eq!(run_of_id("mix/2026-11-21"), None);
        assert_eq!(segmentation_of_latest(&latest("mix")), Some("mix"));
        assert_eq!(
            definition_of(&definition("mix.draft-2", 12)),
            Some(("mix.draft-2", 12))
        );
        assert_eq!(
            segmentation_of_latest("segmentations/mix/runs/x/model.json"),
            None
        );
    }
}
