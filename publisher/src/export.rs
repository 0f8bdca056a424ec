//! The export of a segmentation's latest run (`spectra export` and the
//! `export.csv` / `export.xlsx` endpoints): one row per assigned outlet with its
//! segment's current name and tags and its net value and lines in the window.

use std::borrow::Cow;

use rust_xlsxwriter::{Format, Workbook};
use serde::Serialize;

use crate::metadata::MetadataStore;
use crate::snapshot::Snapshot;
use crate::Error;

/// The export's columns, in order.
pub const COLUMNS: [&str; 15] = [
    "segmentation",
    "outlet_id",
    "outlet_name",
    "segment_id",
    "segment_name",
    "tags",
    "confidence",
    "value",
    "lines",
    "as_of",
    "run_id",
    "region",
    "channel",
    "change",
    "potential",
];

/// One exported outlet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportRow {
    /// The segmentation.
    pub segmentation: String,
    /// The outlet.
    pub outlet_id: String,
    /// Its name from master data (empty when unknown).
    pub outlet_name: String,
    /// Its segment.
    pub segment_id: String,
    /// The segment's current name.
    pub segment_name: String,
    /// The segment's tags, separated by spaces.
    pub tags: String,
    /// Confidence of the assignment, 0–1.
    pub confidence: f64,
    /// Net value in the window (each line counted once, its latest version winning).
    pub value: f64,
    /// Invoice lines in the window.
    pub lines: i64,
    /// The run's as-of date.
    pub as_of: String,
    /// The run.
    pub run_id: String,
    /// Region from master data.
    pub region: String,
    /// Channel from master data.
    pub channel: String,
    /// `new`, `moved` or `same` against the previous run.
    pub change: String,
    /// Estimated extra value if the outlet bought like its segment.
    pub potential: f64,
}

/// The rows of a run, by outlet id.
pub fn rows(snap: &Snapshot, metadata: &MetadataStore) -> Vec<ExportRow> {
    let mut labels = std::collections::HashMap::new();
    let mut out: Vec<ExportRow> = snap
        .run
        .assignments
        .iter()
        .map(|a| {
            let l = labels
                .entry(a.segment_id.clone())
                .or_insert_with(|| snap.label(metadata, &a.segment_id))
                .clone();
            let k = snap.kpi(&a.outlet_id);
            ExportRow {
                segmentation: snap.segmentation().to_owned(),
                outlet_id: a.outlet_id.clone(),
                outlet_name: k.and_then(|k| k.name.clone()).unwrap_or_default(),
                segment_id: a.segment_id.clone(),
                segment_name: l.name,
                tags: l.tags.join(" "),
                confidence: a.confidence,
                value: k.map_or(a.value, |k| k.net_value),
                lines: k.map_or(a.lines, |k| k.lines),
                as_of: snap.run.latest.as_of.to_string(),
                run_id: snap.run.latest.run_id.clone(),
                region: k.and_then(|k| k.region.clone()).unwrap_or_default(),
                channel: k.and_then(|k| k.channel.clone()).unwrap_or_default(),
                change: a.change.to_string(),
                potential: a.potential,
            }
        })
        .collect();
    out.sort_by(|a, b| a.outlet_id.cmp(&b.outlet_id));
    out
}

/// A text cell a spreadsheet would read as a formula (it starts with `=`, `+`, `-`,
/// `@`, a tab or a carriage return) gets a leading `'`, which spreadsheets show as
/// text (OWASP's CSV injection guidance); any other text is returned as is.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// A row with every text cell neutralised; numbers stay numbers.
fn neutralised(r: &ExportRow) -> ExportRow {
    let t = |s: &String| neutralise(s).into_owned();
    ExportRow {
        segmentation: t(&r.segmentation),
        outlet_id: t(&r.outlet_id),
        outlet_name: t(&r.outlet_name),
        segment_id: t(&r.segment_id),
        segment_name: t(&r.segment_name),
        tags: t(&r.tags),
        as_of: t(&r.as_of),
        run_id: t(&r.run_id),
        region: t(&r.region),
        channel: t(&r.channel),
        change: t(&r.change),
        ..r.clone()
    }
}

/// The rows as CSV with a header line, text cells [`neutralise`]d.
pub fn to_csv(rows: &[ExportRow]) -> Result<Vec<u8>, Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(neutralised(r))
            .map_err(|e| Error::Export(format!("csv: {e}")))?;
    }
    if rows.is_empty() {
        w.write_record(COLUMNS)
            .map_err(|e| Error::Export(format!("csv: {e}")))?;
    }
    w.into_inner()
        .map_err(|e| Error::Export(format!("csv: {e}")))
}

/// The rows as an XLSX workbook: a bold, frozen header with a filter, numbers as
/// numbers, text as string cells (never formulas, whatever the text starts with).
pub fn to_xlsx(rows: &[ExportRow], sheet: &str) -> Result<Vec<u8>, Error> {
    let err = |e: rust_xlsxwriter::XlsxError| Error::Export(format!("xlsx: {e}"));
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    // Sheet names: at most 31 characters, none of []:*?/\ .
    let name: String = sheet
        .chars()
        .filter(|c| !"[]:*?/\\".contains(*c))
        .take(31)
        .collect();
    if !name.is_empty() {
        ws.set_name(&name).map_err(err)?;
    }
    let bold = Format::new().set_bold();
    let money = Format::new().set_num_format("#,##0.00");
    let pct = Format::new().set_num_format("0.000");
    for (c, h) in COLUMNS.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *h, &bold)
            .map_err(err)?;
    }
    for (i, r) in rows.iter().enumerate() {
        let row = i as u32 + 1;
        let texts = [
            (0, &r.segmentation),
            (1, &r.outlet_id),
            (2, &r.outlet_name),
            (3, &r.segment_id),
            (4, &r.segment_name),
            (5, &r.tags),
            (9, &r.as_of),
            (10, &r.run_id),
            (11, &r.region),
            (12, &r.channel),
            (13, &r.change),
        ];
        for (c, t) in texts {
            ws.write_string(row, c, t.as_str()).map_err(err)?;
        }
        ws.write_number_with_format(row, 6, r.confidence, &pct)
            .map_err(err)?;
        ws.write_number_with_format(row, 7, r.value, &money)
            .map_err(err)?;
        ws.write_number(row, 8, r.lines as f64).map_err(err)?;
        ws.write_number_with_format(row, 14, r.potential, &money)
            .map_err(err)?;
    }
    ws.set_freeze_panes(1, 0).map_err(err)?;
    ws.autofilter(0, 0, rows.len() as u32, COLUMNS.len() as u16 - 1)
        .map_err(err)?;
    for (c, w) in [(1, 14.0), (2, 28.0), (4, 28.0), (5, 20.0), (10, 26.0)] {
        ws.set_column_width(c, w).map_err(err)?;
    }
    wb.save_to_buffer().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, tags: &str, outlet_name: &str, value: f64) -> ExportRow {
        ExportRow {
            segmentation: "mix".into(),
            outlet_id: "O1".into(),
            outlet_name: outlet_name.into(),
            segment_id: "S1".into(),
            segment_name: name.into(),
            tags: tags.into(),
            confidence: 0.5,
            value,
            lines: -3,
            as_of: "2026-11-21".into(),
            run_id: "mix/2026-11-21/1".into(),
            region: "north".into(),
            channel: "@kiosk".into(),
            change: "same".into(),
            potential: -0.25,
        }
    }

    #[test]
    fn formula_starts_get_a_quote_and_nothing_else_does() {
        for hostile in [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
        ] {
            assert_eq!(neutralise(hostile), format!("'{hostile}"), "{hostile:?}");
        }
        for plain in ["coffee lovers", "#premium", "", "1=1", " =1", "'quoted"] {
            assert!(
                matches!(neutralise(plain), Cow::Borrowed(p) if p == plain),
                "{plain:?}"
            );
        }
    }

    #[test]
    fn csv_neutralises_text_cells_and_keeps_negative_numbers() {
        let rows = [row(
            "=HYPERLINK(\"http://x\",\"y\")",
            "-cheap @all",
            "+48 shop",
            -120.5,
        )];
        let data = to_csv(&rows).unwrap();
        let mut r = csv::Reader::from_reader(&data[..]);
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(&rec[4], "'=HYPERLINK(\"http://x\",\"y\")");
        assert_eq!(&rec[5], "'-cheap @all");
        assert_eq!(&rec[2], "'+48 shop");
        assert_eq!(&rec[12], "'@kiosk");
        assert_eq!(&rec[1], "O1", "plain text untouched");
        // Numbers are written as numbers, minus signs and all.
        assert_eq!(&rec[7], "-120.5");
        assert_eq!(&rec[8], "-3");
        assert_eq!(&rec[14], "-0.25");
        // The input rows are not changed (the XLSX writes the text as it is).
        assert_eq!(rows[0].segment_name, "=HYPERLINK(\"http://x\",\"y\")");
    }
}
