//! The export of a segmentation's latest run (`spectra export` and the
//! `export.csv` / `export.xlsx` endpoints): one row per assigned outlet with its
//! segment's current name, tags and description and its net value and lines in the
//! window; the XLSX workbook adds a `segments` sheet (one row per segment: names,
//! descriptions, tags, sizes, the strongest features of its spectrum) and a `spectrum`
//! sheet (every feature's share of every segment, with the average and the index).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;

use rust_xlsxwriter::{Format, Workbook};
use serde::Serialize;

use spectra_core::tables::features::KpiBrief;
use spectra_core::tables::profile::FeatureShare;

use crate::metadata::MetadataStore;
use crate::snapshot::{Label, Snapshot};
use crate::Error;

/// The export's columns, in order.
pub const COLUMNS: [&str; 17] = [
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
    "segment_description",
    "tier",
];

/// The columns of the XLSX `segments` sheet.
pub const SEGMENT_COLUMNS: [&str; 9] = [
    "segment_id",
    "segment_name",
    "description",
    "tags",
    "outlets",
    "outlet_share",
    "value",
    "value_share",
    "spectrum",
];

/// The columns of the XLSX `spectrum` sheet.
pub const SPECTRUM_COLUMNS: [&str; 7] = [
    "segment_id",
    "segment_name",
    "feature",
    "share",
    "average",
    "index",
    "feature_name",
];

/// Features named in the `segments` sheet's `spectrum` cell (the whole spectrum is on
/// the `spectrum` sheet).
pub const SPECTRUM_CELL_FEATURES: usize = 5;

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
    /// The segment's description, set by people (empty when none).
    pub segment_description: String,
    /// `A`, `B` or `C` by potential within the segment.
    pub tier: String,
}

/// One exported segment (the XLSX `segments` and `spectrum` sheets).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentExport {
    /// The segment.
    pub segment_id: String,
    /// Its current name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its tags, separated by spaces.
    pub tags: String,
    /// Outlets assigned.
    pub outlets: usize,
    /// Share of the segmentation's outlets.
    pub outlet_share: f64,
    /// Net value in the window.
    pub value: f64,
    /// Share of the segmentation's value.
    pub value_share: f64,
    /// Share of spend per feature, largest first.
    pub spectrum: Vec<FeatureShare>,
    /// The master-data name of each feature of `spectrum` that is an SKU id (the `sku`
    /// level), empty otherwise.
    pub feature_names: Vec<String>,
}

impl SegmentExport {
    /// The strongest features as one cell: `coffee 41.2% (index 180); …`.
    pub fn spectrum_cell(&self) -> String {
        self.spectrum
            .iter()
            .take(SPECTRUM_CELL_FEATURES)
            .zip(&self.feature_names)
            .map(|(f, name)| {
                let feature = if name.is_empty() {
                    f.feature.clone()
                } else {
                    format!("{name} ({})", f.feature)
                };
                format!("{feature} {:.1}% (index {:.0})", 100.0 * f.share, f.index)
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The segments of a run with their current labels, in segment id order.
pub fn segments(snap: &Snapshot, metadata: &MetadataStore) -> Vec<SegmentExport> {
    snap.profiles
        .iter()
        .map(|p| {
            let l = snap.label(metadata, &p.segment_id);
            SegmentExport {
                segment_id: p.segment_id.clone(),
                name: l.name,
                description: l.description,
                tags: l.tags.join(" "),
                outlets: p.outlets,
                outlet_share: p.outlet_share,
                value: p.value,
                value_share: p.value_share,
                spectrum: p.spectrum.clone(),
                feature_names: p
                    .spectrum
                    .iter()
                    .map(|f| snap.sku_names.get(&f.feature).cloned().unwrap_or_default())
                    .collect(),
            }
        })
        .collect()
}

/// The outlets of a run's export, by outlet id. A row is made when it is written, so
/// an export holds one row at a time and the order of the run's outlets (4 bytes an
/// outlet), not a copy of the run.
pub struct ExportRows<'a> {
    snap: &'a Snapshot,
    labels: HashMap<String, Label>,
    order: Vec<u32>,
}

impl<'a> ExportRows<'a> {
    /// The rows of `snap`, with its segments' labels as they stand in `metadata`.
    pub fn new(snap: &'a Snapshot, metadata: &MetadataStore) -> Self {
        let assignments = &snap.run.assignments;
        let mut order: Vec<u32> = (0..assignments.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            assignments[a as usize]
                .outlet_id
                .cmp(&assignments[b as usize].outlet_id)
        });
        Self {
            snap,
            labels: snap.labels(metadata),
            order,
        }
    }

    /// The number of rows (the run's assigned outlets).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the run assigned no outlet.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The rows, by outlet id.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ExportRow> + '_ {
        let snap = self.snap;
        self.order.iter().map(move |&i| {
            let a = &snap.run.assignments[i as usize];
            let l = self.labels.get(&a.segment_id).cloned().unwrap_or_default();
            let k = snap.kpi_brief(&a.outlet_id);
            let text = |f: for<'k> fn(&KpiBrief<'k>) -> Option<&'k str>| {
                k.as_ref().and_then(f).unwrap_or_default().to_owned()
            };
            ExportRow {
                segmentation: snap.segmentation().to_owned(),
                outlet_id: a.outlet_id.clone(),
                outlet_name: text(|k| k.name),
                segment_id: a.segment_id.clone(),
                segment_name: l.name,
                tags: l.tags.join(" "),
                confidence: a.confidence,
                value: k.map_or(a.value, |k| k.net_value),
                lines: k.map_or(a.lines, |k| k.lines),
                as_of: snap.run.latest.as_of.to_string(),
                run_id: snap.run.latest.run_id.clone(),
                region: text(|k| k.region),
                channel: text(|k| k.channel),
                change: a.change.to_string(),
                potential: a.potential,
                segment_description: l.description,
                tier: a.tier.clone(),
            }
        })
    }
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
        segment_description: t(&r.segment_description),
        ..r.clone()
    }
}

/// Writes `rows` as CSV with a header line to `out`, text cells [`neutralise`]d.
pub fn write_csv(rows: impl Iterator<Item = ExportRow>, out: impl Write) -> Result<(), Error> {
    let err = |e: csv::Error| Error::Export(format!("csv: {e}"));
    let mut w = csv::Writer::from_writer(out);
    let mut any = false;
    for r in rows {
        w.serialize(neutralised(&r)).map_err(err)?;
        any = true;
    }
    if !any {
        w.write_record(COLUMNS).map_err(err)?;
    }
    w.flush().map_err(|e| Error::Export(format!("csv: {e}")))
}

/// Data rows an XLSX sheet holds under its header (Excel's 1,048,576 rows, less one).
pub const XLSX_SHEET_ROWS: usize = 1_048_575;

/// Writes the export as an XLSX workbook to `out`: the outlets (on a sheet named after
/// the segmentation, continued on `name (2)`, `name (3)`… past [`XLSX_SHEET_ROWS`]),
/// then `segments` and `spectrum`; each with a bold, frozen header and a filter,
/// numbers as numbers, text as string cells (never formulas, whatever the text starts
/// with). The sheets are written row by row through temporary files
/// (`rust_xlsxwriter`'s constant memory mode), so a million outlets cost a file on
/// disk, not gigabytes of cells in memory.
/// `stopped` is asked every [`STOP_CHECK_ROWS`] rows: once it says so, the export
/// ends with an error (the client it was for is gone).
pub fn write_xlsx(
    rows: impl ExactSizeIterator<Item = ExportRow>,
    segments: &[SegmentExport],
    sheet: &str,
    out: impl Write + Send,
    stopped: &dyn Fn() -> bool,
) -> Result<(), Error> {
    write_xlsx_sheets(rows, segments, sheet, out, stopped, XLSX_SHEET_ROWS)
}

/// Runs an export's writer (`write`), a panic in it becoming its error: an export
/// ends with an error rather than a short file, whoever it is written for (a file, a
/// download).
pub fn write_or_fail(write: impl FnOnce() -> Result<(), Error>) -> Result<(), Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(write)).unwrap_or_else(|p| {
        Err(Error::Export(format!(
            "the export failed: {}",
            spectra_core::service::panic_text(p.as_ref())
        )))
    })
}

/// Rows written between two questions to `write_xlsx`'s `stopped`.
pub const STOP_CHECK_ROWS: usize = 4096;

fn write_xlsx_sheets(
    rows: impl ExactSizeIterator<Item = ExportRow>,
    segments: &[SegmentExport],
    sheet: &str,
    out: impl Write + Send,
    stopped: &dyn Fn() -> bool,
    per_sheet: usize,
) -> Result<(), Error> {
    let err = |e: rust_xlsxwriter::XlsxError| Error::Export(format!("xlsx: {e}"));
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let money = Format::new().set_num_format("#,##0.00");
    let pct = Format::new().set_num_format("0.000");
    // Column widths go first, then the header, then the rows in order (constant
    // memory mode writes each row out as the next one starts).
    let start = |ws: &mut rust_xlsxwriter::Worksheet,
                 columns: &[&str],
                 widths: &[(u16, f64)],
                 rows: usize| {
        for &(c, w) in widths {
            ws.set_column_width(c, w)?;
        }
        for (c, h) in columns.iter().enumerate() {
            ws.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        ws.set_freeze_panes(1, 0)?;
        ws.autofilter(0, 0, rows as u32, columns.len() as u16 - 1)?;
        Ok::<_, rust_xlsxwriter::XlsxError>(())
    };

    // Sheet names: at most 31 characters, none of []:*?/\ ; not the other two.
    let name: String = sheet.chars().filter(|c| !"[]:*?/\\".contains(*c)).collect();
    // Excel compares sheet names without case.
    let taken = |n: &str| {
        ["segments", "spectrum"]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(n))
    };
    let name = match name.as_str() {
        "" => "outlets".to_owned(),
        n if taken(n) => format!("{n} outlets"),
        _ => name,
    };
    let total = rows.len();
    let mut rows = rows.enumerate();
    for part in 0..total.div_ceil(per_sheet).max(1) {
        let ws = wb.add_worksheet_with_constant_memory().map_err(err)?;
        let suffix = match part {
            0 => String::new(),
            _ => format!(" ({})", part + 1),
        };
        let base: String = name.chars().take(31 - suffix.len()).collect();
        ws.set_name(format!("{base}{suffix}")).map_err(err)?;
        let here = per_sheet.min(total - part * per_sheet);
        let widths = [
            (1, 14.0),
            (2, 28.0),
            (4, 28.0),
            (5, 20.0),
            (10, 26.0),
            (15, 40.0),
        ];
        start(ws, &COLUMNS, &widths, here).map_err(err)?;
        for (i, r) in rows.by_ref().take(here) {
            if i % STOP_CHECK_ROWS == 0 && stopped() {
                return Err(Error::Export(
                    "stopped: the export is no longer wanted".into(),
                ));
            }
            let row = (i - part * per_sheet) as u32 + 1;
            // The cells of a row may go in any order: the row is written out whole.
            for (c, t) in [
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
                (15, &r.segment_description),
                (16, &r.tier),
            ] {
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
    }

    let ws = wb.add_worksheet_with_constant_memory().map_err(err)?;
    ws.set_name("segments").map_err(err)?;
    let widths = [(1, 28.0), (2, 48.0), (3, 20.0), (8, 70.0)];
    start(ws, &SEGMENT_COLUMNS, &widths, segments.len()).map_err(err)?;
    for (i, s) in segments.iter().enumerate() {
        let row = i as u32 + 1;
        for (c, t) in [
            (0, s.segment_id.as_str()),
            (1, &s.name),
            (2, &s.description),
            (3, &s.tags),
        ] {
            ws.write_string(row, c, t).map_err(err)?;
        }
        ws.write_number(row, 4, s.outlets as f64).map_err(err)?;
        ws.write_number_with_format(row, 5, s.outlet_share, &pct)
            .map_err(err)?;
        ws.write_number_with_format(row, 6, s.value, &money)
            .map_err(err)?;
        ws.write_number_with_format(row, 7, s.value_share, &pct)
            .map_err(err)?;
        ws.write_string(row, 8, s.spectrum_cell()).map_err(err)?;
    }

    let ws = wb.add_worksheet_with_constant_memory().map_err(err)?;
    ws.set_name("spectrum").map_err(err)?;
    let n: usize = segments.iter().map(|s| s.spectrum.len()).sum();
    start(ws, &SPECTRUM_COLUMNS, &[(1, 28.0), (2, 28.0), (6, 36.0)], n).map_err(err)?;
    let mut row = 0u32;
    for s in segments {
        for (f, name) in s.spectrum.iter().zip(&s.feature_names) {
            row += 1;
            for (c, t) in [(0, s.segment_id.as_str()), (1, &s.name), (2, &f.feature)] {
                ws.write_string(row, c, t).map_err(err)?;
            }
            ws.write_number_with_format(row, 3, f.share, &pct)
                .map_err(err)?;
            ws.write_number_with_format(row, 4, f.average, &pct)
                .map_err(err)?;
            ws.write_number(row, 5, f.index).map_err(err)?;
            ws.write_string(row, 6, name.as_str()).map_err(err)?;
        }
    }
    wb.save_to_writer(out).map_err(err)
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
            segment_description: "=1+1 buys coffee".into(),
            tier: "A".into(),
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
        let mut data = Vec::new();
        write_csv(rows.iter().cloned(), &mut data).unwrap();
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
        assert_eq!(&rec[15], "'=1+1 buys coffee");
        assert_eq!(&rec[16], "A");
        // The input rows are not changed (the XLSX writes the text as it is).
        assert_eq!(rows[0].segment_name, "=HYPERLINK(\"http://x\",\"y\")");
    }

    /// Past a sheet's rows the outlets go on on `name (2)`, `name (3)`…, each with its
    /// header, every outlet once and in order; `segments` and `spectrum` follow.
    #[test]
    fn xlsx_continues_the_outlets_on_further_sheets() {
        use calamine::{Data, Reader};
        let rows: Vec<ExportRow> = (0..7)
            .map(|i| ExportRow {
                outlet_id: format!("O{i}"),
                ..row("=cheap", "#t", "", i as f64)
            })
            .collect();
        let segment = SegmentExport {
            segment_id: "S1".into(),
            name: "=cheap".into(),
            description: String::new(),
            tags: "#t".into(),
            outlets: 7,
            outlet_share: 1.0,
            value: 21.0,
            value_share: 1.0,
            spectrum: Vec::new(),
            feature_names: Vec::new(),
        };
        let sheet = "a segmentation named at some length[1]";
        let mut data = Vec::new();
        write_xlsx_sheets(
            rows.iter().cloned(),
            std::slice::from_ref(&segment),
            sheet,
            &mut data,
            &|| false,
            3,
        )
        .unwrap();
        let mut wb: calamine::Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(data)).unwrap();
        assert_eq!(
            wb.sheet_names(),
            [
                "a segmentation named at some le",
                "a segmentation named at som (2)",
                "a segmentation named at som (3)",
                "segments",
                "spectrum"
            ]
        );
        let mut outlets = Vec::new();
        for name in &wb.sheet_names()[..3] {
            let range = wb.worksheet_range(name).unwrap();
            let mut sheet_rows = range.rows();
            let header: Vec<String> = sheet_rows
                .next()
                .unwrap()
                .iter()
                .map(|c| c.to_string())
                .collect();
            assert_eq!(header, COLUMNS);
            for r in sheet_rows {
                assert_eq!(r[4], Data::String("=cheap".into()), "text, not a formula");
                assert_eq!(r[7], Data::Float(outlets.len() as f64));
                outlets.push(r[1].to_string());
            }
        }
        assert_eq!(outlets, ["O0", "O1", "O2", "O3", "O4", "O5", "O6"]);
        let segments = wb.worksheet_range("segments").unwrap();
        assert_eq!(
            segments.rows().nth(1).unwrap()[0],
            Data::String("S1".into())
        );

        // A segmentation named like another sheet, in any case, keeps its outlets apart.
        let mut data = Vec::new();
        write_xlsx(
            rows.iter().cloned(),
            std::slice::from_ref(&segment),
            "Segments",
            &mut data,
            &|| false,
        )
        .unwrap();
        let wb: calamine::Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(data)).unwrap();
        assert_eq!(
            wb.sheet_names(),
            ["Segments outlets", "segments", "spectrum"]
        );
        // An export no longer wanted stops with an error, not a short file.
        let e = write_xlsx(rows.into_iter(), &[segment], "mix", Vec::new(), &|| true).unwrap_err();
        assert!(e.to_string().contains("no longer wanted"), "{e}");
    }
}
