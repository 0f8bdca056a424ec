//! `profiles.json` of a run: one [`SegmentProfile`] per segment (contract §3.2),
//! computed once, by the segmenter. The `segment-profiles` message is this document
//! with the name, description and tags people set through the API in place of the
//! segmenter's proposals; nothing else changes on the way.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// One segment's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentProfile {
    /// Segmentation name.
    pub segmentation: String,
    /// The run that computed it.
    pub run_id: String,
    /// The run's as-of date.
    pub as_of: NaiveDate,
    /// Stable segment id.
    pub segment_id: String,
    /// The name: proposed by the segmenter from the over-indexed features (kept across
    /// runs while the segment keeps its character), or set by people.
    pub name: String,
    /// The features the proposed name was made from.
    pub name_features: Vec<String>,
    /// Set by people (empty in `profiles.json`).
    pub description: String,
    /// Set by people (empty in `profiles.json`).
    pub tags: Vec<String>,
    /// Outlets assigned.
    pub outlets: usize,
    /// Share of the segmentation's assigned outlets.
    pub outlet_share: f64,
    /// Net value of the segment's outlets in the window.
    pub value: f64,
    /// Share of the segmentation's value (negative outlet values count as 0).
    pub value_share: f64,
    /// Share of spend per feature of the level, with the share over all assigned
    /// outlets and the index (100 = average); largest share first.
    pub spectrum: Vec<FeatureShare>,
    /// Share of the segment's outlets buying each feature, against all assigned
    /// outlets; largest first.
    pub penetration: Vec<FeatureShare>,
    /// Two or three purchasing patterns (one for very small segments).
    pub patterns: Vec<Pattern>,
    /// KPIs over the window.
    pub kpis: SegmentKpis,
    /// Region, channel and every outlet attribute: the segment's mix with its index.
    pub attributes: Vec<AttributeMix>,
}

/// The feature that sums a level's values beyond a segmentation's `max_features`
/// (the values with less spend in the window); it names no segment and no gap.
pub const OTHER: &str = "(other)";

/// A feature's share in a segment against the average over all assigned outlets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureShare {
    /// The feature (category, brand… of the segmentation's level).
    pub feature: String,
    /// The segment's share, 0–1.
    pub share: f64,
    /// The share over all assigned outlets, 0–1.
    pub average: f64,
    /// `100 × share / average`, one decimal (0 when the average is 0).
    pub index: f64,
}

/// A segment's KPIs over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentKpis {
    /// Net value of the segment's outlets (total).
    pub value: f64,
    /// Invoice lines (total).
    pub lines: i64,
    /// Invoices (total).
    pub invoices: i64,
    /// Invoices per month, mean per outlet.
    pub invoices_per_month: f64,
    /// Net value per invoice (`value / invoices`).
    pub avg_invoice_value: f64,
    /// Distinct SKUs, mean per outlet.
    pub distinct_skus: f64,
    /// Net value, mean per outlet.
    pub avg_outlet_value: f64,
}

/// The mix of one attribute (region, channel, or a master-data attribute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeMix {
    /// `region`, `channel` or the attribute's name.
    pub attribute: String,
    /// Its most frequent values over all assigned outlets (at most
    /// [`MAX_ATTRIBUTE_VALUES`], the same list for every segment), most frequent in the
    /// segment first; the rest are summed into one [`OTHER_VALUES`] entry.
    pub values: Vec<AttributeValue>,
}

/// Values listed per attribute; the rest are summed into [`OTHER_VALUES`].
pub const MAX_ATTRIBUTE_VALUES: usize = 20;
/// The value that sums an attribute's less frequent values.
pub const OTHER_VALUES: &str = "(other)";
/// The value of outlets without one (region and channel only).
pub const NO_VALUE: &str = "(none)";

/// One value of an attribute among a segment's outlets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeValue {
    /// The value.
    pub value: String,
    /// The segment's outlets with this value.
    pub outlets: usize,
    /// Their share of the segment's outlets.
    pub share: f64,
    /// The share among all assigned outlets.
    pub average: f64,
    /// `100 × share / average`, one decimal.
    pub index: f64,
}

/// One purchasing pattern: a group of the segment's outlets buying its SKUs in a
/// similar mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// 1, 2, 3 — by number of outlets, largest first.
    pub pattern: usize,
    /// "Pattern 1 · led by {sku}", for display.
    pub name: String,
    /// Outlets following the pattern.
    pub outlets: usize,
    /// Share of the segment's outlets (with spend on its top SKUs).
    pub outlets_share: f64,
    /// The pattern's leading SKUs, largest share first.
    pub skus: Vec<PatternSku>,
}

/// One SKU of a pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternSku {
    /// SKU id.
    pub sku_id: String,
    /// Percentage of the pattern's spend (on the segment's top SKUs) on this SKU.
    pub share_pct: f64,
}

/// `100 × share / average` rounded to one decimal; 0 when the average is 0.
pub fn index(share: f64, average: f64) -> f64 {
    if average > 0.0 {
        (1000.0 * share / average).round() / 10.0
    } else {
        0.0
    }
}
