//! Superseded lines, `state/aggregate/superseded.parquet`: an identity whose versions
//! lie on several invoice dates (a correction moved it) counts only on the date of its
//! latest version. For every other date it is listed here with the version that beats
//! it, and a re-roll of that date drops the identity unless the date's own version is
//! newer (the line moved back). Entries only ever grow or rise, so the list is safe to
//! rebuild from any prefix of the raw files. Corrections are rare, so the list is small
//! and read whole.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use spectra_core::schema::{from_parquet, to_parquet};
use spectra_core::Storage;

use crate::hash::IdentityHash;
use crate::index::{Version, VersionedRows};
use crate::Error;

/// Where the list lives.
pub const SUPERSEDED_PATH: &str = "state/aggregate/superseded.parquet";

/// A line's identity as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// `distributor_id`.
    pub distributor_id: String,
    /// `invoice_id`.
    pub invoice_id: String,
    /// `line_no`.
    pub line_no: i64,
}

/// An entry: (identity hash, date) → (identity, the version beating it).
type Row<'a> = (&'a (IdentityHash, i32), &'a (Identity, Version));

/// The superseded lines, by identity and date.
#[derive(Debug, Clone, Default)]
pub struct Superseded {
    entries: HashMap<(IdentityHash, i32), (Identity, Version)>,
    changed: bool,
}

/// Schema of `superseded.parquet`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("distributor_id", DataType::Utf8, false),
        Field::new("invoice_id", DataType::Utf8, false),
        Field::new("line_no", DataType::Int64, false),
        Field::new("date", DataType::Date32, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("sp", DataType::Int32, false),
        Field::new("so", DataType::Int64, false),
        Field::new("sl", DataType::Int32, false),
    ]))
}

impl Superseded {
    /// Reads the list (empty when there is none).
    pub async fn load(storage: &Storage) -> Result<Self, Error> {
        let mut s = Self::default();
        let Some(data) = storage.get(SUPERSEDED_PATH).await? else {
            return Ok(s);
        };
        for b in from_parquet(data)? {
            let v = VersionedRows::of(&b);
            for r in 0..b.num_rows() {
                let id = Identity {
                    distributor_id: v.distributor.value(r).to_owned(),
                    invoice_id: v.invoice.value(r).to_owned(),
                    line_no: v.line_no(r),
                };
                s.record(id, v.date(r), v.version(r));
            }
        }
        s.changed = false;
        Ok(s)
    }

    /// Notes that `id`'s version on `date` is beaten by `by`; true when this is news
    /// (the date must be re-rolled).
    pub fn record(&mut self, id: Identity, date: i32, by: Version) -> bool {
        let h = IdentityHash::of(&id.distributor_id, &id.invoice_id, id.line_no);
        match self.entries.get_mut(&(h, date)) {
            Some((_, v)) if *v >= by => false,
            Some((_, v)) => {
                *v = by;
                self.changed = true;
                true
            }
            None => {
                self.entries.insert((h, date), (id, by));
                self.changed = true;
                true
            }
        }
    }

    /// The version that beats the identity's line on `date`, if one is listed.
    pub fn beaten(
        &self,
        distributor_id: &str,
        invoice_id: &str,
        line_no: i64,
        date: i32,
    ) -> Option<Version> {
        if self.entries.is_empty() {
            return None;
        }
        let h = IdentityHash::of(distributor_id, invoice_id, line_no);
        self.entries
            .get(&(h, date))
            .filter(|(id, _)| {
                id.line_no == line_no
                    && id.distributor_id == distributor_id
                    && id.invoice_id == invoice_id
            })
            .map(|(_, v)| *v)
    }

    /// The dates some identity's line was taken away from.
    pub fn dates(&self) -> BTreeSet<i32> {
        self.entries.keys().map(|(_, date)| *date).collect()
    }

    /// Number of (identity, date) entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no line was ever superseded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, as one batch of [`schema`] (by date, then identity hash).
    pub fn batch(&self) -> Result<RecordBatch, Error> {
        let mut d = StringBuilder::new();
        let mut i = StringBuilder::new();
        let mut l = Int64Builder::new();
        let mut date = Date32Builder::new();
        let mut ts = Int64Builder::new();
        let mut sp = Int32Builder::new();
        let mut so = Int64Builder::new();
        let mut sl = Int32Builder::new();
        let mut rows: Vec<Row<'_>> = self.entries.iter().collect();
        rows.sort_by_key(|((h, dt), _)| (*dt, *h));
        for ((_, dt), (id, v)) in rows {
            d.append_value(&id.distributor_id);
            i.append_value(&id.invoice_id);
            l.append_value(id.line_no);
            date.append_value(*dt);
            ts.append_value(v.timestamp_ms);
            sp.append_value(v.partition);
            so.append_value(v.offset);
            sl.append_value(v.line);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(d.finish()),
            Arc::new(i.finish()),
            Arc::new(l.finish()),
            Arc::new(date.finish()),
            Arc::new(ts.finish()),
            Arc::new(sp.finish()),
            Arc::new(so.finish()),
            Arc::new(sl.finish()),
        ];
        Ok(RecordBatch::try_new(schema(), cols)?)
    }

    /// Writes the list when it changed since it was loaded.
    pub async fn save(&mut self, storage: &Storage) -> Result<(), Error> {
        if self.changed {
            let b = self.batch()?;
            storage
                .put(SUPERSEDED_PATH, to_parquet(schema(), &[b])?)
                .await?;
            self.changed = false;
        }
        Ok(())
    }
}
