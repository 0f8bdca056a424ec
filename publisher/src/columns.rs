//! Reading columns out of Arrow batches by name, whatever string or number type the
//! writer chose (`Utf8`, `LargeUtf8`, `Utf8View`; any integer or float width), so the
//! publisher reads tables written by other services without depending on their
//! physical types.

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::DataType;

use crate::Error;

/// A batch together with the object it came from, for errors that name the file.
pub struct Columns<'a> {
    batch: &'a RecordBatch,
    file: &'a str,
}

impl<'a> Columns<'a> {
    /// Wraps a batch read from `file`.
    pub fn new(batch: &'a RecordBatch, file: &'a str) -> Self {
        Self { batch, file }
    }

    fn column(&self, name: &str) -> Option<&ArrayRef> {
        self.batch.column_by_name(name)
    }

    fn cast(&self, name: &str, col: &ArrayRef, to: &DataType) -> Result<ArrayRef, Error> {
        cast(col, to).map_err(|e| Error::Table {
            file: self.file.to_owned(),
            reason: format!("column `{name}` cannot be read as {to}: {e}"),
        })
    }

    /// A required text column.
    pub fn text(&self, name: &str) -> Result<Vec<Option<String>>, Error> {
        self.text_opt(name)?.ok_or_else(|| self.missing(name))
    }

    /// A text column that may be absent.
    pub fn text_opt(&self, name: &str) -> Result<Option<Vec<Option<String>>>, Error> {
        let Some(col) = self.column(name) else {
            return Ok(None);
        };
        let a = self.cast(name, col, &DataType::Utf8)?;
        let a = a
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        Ok(Some(
            (0..a.len())
                .map(|i| (!a.is_null(i)).then(|| a.value(i).to_owned()))
                .collect(),
        ))
    }

    /// A required text column whose nulls are an error.
    pub fn ids(&self, name: &str) -> Result<Vec<String>, Error> {
        self.text(name)?
            .into_iter()
            .enumerate()
            .map(|(row, v)| {
                v.ok_or_else(|| Error::Table {
                    file: self.file.to_owned(),
                    reason: format!("column `{name}` is null in row {row}"),
                })
            })
            .collect()
    }

    /// A float column (nulls read as 0); absent columns read as all zeros when
    /// `required` is false.
    pub fn float(&self, name: &str, required: bool) -> Result<Vec<f64>, Error> {
        let Some(col) = self.column(name) else {
            return if required {
                Err(self.missing(name))
            } else {
                Ok(vec![0.0; self.batch.num_rows()])
            };
        };
        let a = self.cast(name, col, &DataType::Float64)?;
        let a = a.as_any().downcast_ref::<Float64Array>().expect("cast");
        Ok((0..a.len())
            .map(|i| if a.is_null(i) { 0.0 } else { a.value(i) })
            .collect())
    }

    /// An integer column (nulls read as 0); see [`Columns::float`] for `required`.
    pub fn int(&self, name: &str, required: bool) -> Result<Vec<i64>, Error> {
        let Some(col) = self.column(name) else {
            return if required {
                Err(self.missing(name))
            } else {
                Ok(vec![0; self.batch.num_rows()])
            };
        };
        let a = self.cast(name, col, &DataType::Int64)?;
        let a = a.as_any().downcast_ref::<Int64Array>().expect("cast");
        Ok((0..a.len())
            .map(|i| if a.is_null(i) { 0 } else { a.value(i) })
            .collect())
    }

    /// A list-of-text column, or a text column holding a JSON array.
    pub fn text_list(&self, name: &str) -> Result<Vec<Vec<String>>, Error> {
        let Some(col) = self.column(name) else {
            return Err(self.missing(name));
        };
        if let Some(list) = col.as_any().downcast_ref::<ListArray>() {
            let mut out = Vec::with_capacity(list.len());
            for i in 0..list.len() {
                if list.is_null(i) {
                    out.push(Vec::new());
                    continue;
                }
                let v = self.cast(name, &list.value(i), &DataType::Utf8)?;
                let v = v.as_any().downcast_ref::<StringArray>().expect("cast");
                out.push(v.iter().flatten().map(str::to_owned).collect());
            }
            return Ok(out);
        }
        self.text(name)?
            .into_iter()
            .map(|t| match t {
                None => Ok(Vec::new()),
                Some(t) => serde_json::from_str(&t).map_err(|e| Error::Table {
                    file: self.file.to_owned(),
                    reason: format!("column `{name}` is not a JSON array of strings: {e}"),
                }),
            })
            .collect()
    }

    fn missing(&self, name: &str) -> Error {
        Error::Table {
            file: self.file.to_owned(),
            reason: format!("column `{name}` is missing"),
        }
    }
}
