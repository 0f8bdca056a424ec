//! `movements.parquet` of a run: one row per outlet that moved, with the evidence —
//! the change score, the fit of the new segment, the lines and invoices behind it, the
//! features that drove it, and the earlier and recent spend shares (README "Tables").

use std::sync::Arc;

use arrow::array::{Array, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::json;

use crate::pipeline::MovementRow;
use crate::Error;

/// Schema of `movements.parquet`.
pub fn movements_schema() -> SchemaRef {
    let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
    Arc::new(Schema::new(vec![
        f("outlet_id", DataType::Utf8, false),
        f("previous_segment_id", DataType::Utf8, false),
        f("segment_id", DataType::Utf8, false),
        f("reason", DataType::Utf8, false),
        f("score", DataType::Float64, true),
        f("fit", DataType::Float64, true),
        f("earlier_lines", DataType::Float64, false),
        f("recent_lines", DataType::Float64, false),
        f("recent_invoices", DataType::Float64, false),
        f("drivers", DataType::Utf8, false),
        f("earlier_spectrum", DataType::Utf8, false),
        f("recent_spectrum", DataType::Utf8, false),
    ]))
}

/// The JSON text of a move's drivers: `[{feature, earlier_share, recent_share,
/// contribution}]`, strongest first.
pub fn drivers_json(row: &MovementRow) -> String {
    serde_json::Value::from(
        row.drivers
            .iter()
            .map(|d| {
                json!({"feature": d.feature, "earlier_share": d.earlier_share,
                    "recent_share": d.recent_share, "contribution": d.contribution})
            })
            .collect::<Vec<_>>(),
    )
    .to_string()
}

fn spectrum_json(s: &[(String, f64)]) -> String {
    serde_json::Value::Object(s.iter().map(|(f, v)| (f.clone(), json!(v))).collect()).to_string()
}

/// The rows as one batch of [`movements_schema`].
pub fn movements_batch(rows: &[MovementRow]) -> Result<RecordBatch, Error> {
    let text = |f: &dyn Fn(&MovementRow) -> String| -> Arc<dyn Array> {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
    };
    let num = |f: fn(&MovementRow) -> Option<f64>| -> Arc<dyn Array> {
        Arc::new(rows.iter().map(f).collect::<Float64Array>())
    };
    Ok(RecordBatch::try_new(
        movements_schema(),
        vec![
            text(&|r| r.outlet_id.clone()),
            text(&|r| r.previous_segment_id.clone()),
            text(&|r| r.segment_id.clone()),
            text(&|r| r.reason.to_owned()),
            num(|r| r.score),
            num(|r| r.fit),
            num(|r| Some(r.earlier_lines)),
            num(|r| Some(r.recent_lines)),
            num(|r| Some(r.recent_invoices)),
            text(&drivers_json),
            text(&|r| spectrum_json(&r.earlier_spectrum)),
            text(&|r| spectrum_json(&r.recent_spectrum)),
        ],
    )?)
}
