//! Reading columns of the feature tables by name, tolerant of the physical type:
//! numbers of any width cast to `f64`, text of any string layout to `String`.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};

use crate::Error;

fn column<'a>(
    b: &'a RecordBatch,
    name: &str,
    path: &str,
) -> Result<&'a arrow::array::ArrayRef, Error> {
    b.column_by_name(name).ok_or_else(|| Error::Features {
        path: path.to_owned(),
        reason: format!("has no column `{name}` (see the README's feature tables)"),
    })
}

fn cast_to(
    c: &arrow::array::ArrayRef,
    to: &DataType,
    name: &str,
    path: &str,
) -> Result<arrow::array::ArrayRef, Error> {
    cast(c, to).map_err(|e| Error::Features {
        path: path.to_owned(),
        reason: format!(
            "column `{name}` of type {} cannot be read as {to}: {e}",
            c.data_type()
        ),
    })
}

/// A numeric column as `f64` values; nulls read as NaN (callers treat them as absent).
pub(super) fn f64_column(b: &RecordBatch, name: &str, path: &str) -> Result<Vec<f64>, Error> {
    let c = cast_to(column(b, name, path)?, &DataType::Float64, name, path)?;
    let a = c.as_primitive::<Float64Type>();
    Ok((0..a.len())
        .map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) })
        .collect())
}

/// A text column that must have no nulls (identifiers).
pub(super) fn str_column(b: &RecordBatch, name: &str, path: &str) -> Result<Vec<String>, Error> {
    optional_str_column(b, name, path)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| Error::Features {
                path: path.to_owned(),
                reason: format!("column `{name}` is null at row {i}"),
            })
        })
        .collect()
}

/// A text column whose values may be null; a missing column reads as all null.
pub(super) fn optional_str_column(
    b: &RecordBatch,
    name: &str,
    path: &str,
) -> Result<Vec<Option<String>>, Error> {
    let Some(c) = b.column_by_name(name) else {
        return Ok(vec![None; b.num_rows()]);
    };
    let c = cast_to(c, &DataType::Utf8, name, path)?;
    let a = c.as_string::<i32>();
    Ok((0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_owned()))
        .collect())
}
