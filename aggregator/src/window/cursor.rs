//! The window's files read side by side: one cursor per daily or outlet-daily table,
//! each yielding its rows in outlet order, and the next outlet any of them holds.

use arrow::array::{Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{Float64Type, Int64Type};
use bytes::Bytes;
use spectra_core::tables::{Batches, Columns};

use crate::Error;

/// The columns a cursor reads from one batch.
pub(super) trait Table: Sized {
    const COLUMNS: &'static [&'static str];
    fn read(c: &Columns<'_>) -> Result<Self, Error>;
    fn outlets(&self) -> &StringArray;
}

pub(super) struct DailyCols {
    pub(super) outlet: StringArray,
    pub(super) sku: StringArray,
    pub(super) net: Float64Array,
    pub(super) quantity: Float64Array,
    pub(super) lines: Int64Array,
}

impl Table for DailyCols {
    const COLUMNS: &'static [&'static str] =
        &["outlet_id", "sku_id", "net_value", "quantity", "lines"];
    fn read(c: &Columns<'_>) -> Result<Self, Error> {
        Ok(Self {
            outlet: c.id_strings("outlet_id")?,
            sku: c.id_strings("sku_id")?,
            net: c.primitive::<Float64Type>("net_value")?,
            quantity: c.primitive::<Float64Type>("quantity")?,
            lines: c.primitive::<Int64Type>("lines")?,
        })
    }
    fn outlets(&self) -> &StringArray {
        &self.outlet
    }
}

pub(super) struct OutletDailyCols {
    pub(super) outlet: StringArray,
    pub(super) net: Float64Array,
    pub(super) lines: Int64Array,
    pub(super) invoices: Int64Array,
    pub(super) returns: Float64Array,
    pub(super) distributor: Option<StringArray>,
}

impl Table for OutletDailyCols {
    const COLUMNS: &'static [&'static str] = &[
        "outlet_id",
        "net_value",
        "lines",
        "invoices",
        "returns_value",
        "distributor_id",
    ];
    fn read(c: &Columns<'_>) -> Result<Self, Error> {
        Ok(Self {
            outlet: c.id_strings("outlet_id")?,
            net: c.primitive::<Float64Type>("net_value")?,
            lines: c.primitive::<Int64Type>("lines")?,
            invoices: c.primitive::<Int64Type>("invoices")?,
            returns: c.primitive::<Float64Type>("returns_value")?,
            // Tables written before the column existed have no main distributor.
            distributor: if c.has("distributor_id") {
                Some(c.strings("distributor_id")?)
            } else {
                None
            },
        })
    }
    fn outlets(&self) -> &StringArray {
        &self.outlet
    }
}

/// One file read a row at a time, in its order.
pub(super) struct Cursor<T> {
    date: i32,
    /// What a line of the day weighs in `value`.
    weight: f64,
    batches: Batches,
    cols: T,
    row: usize,
}

impl<T: Table> Cursor<T> {
    /// `None` when the file has no rows.
    pub(super) fn open(
        date: i32,
        weight: f64,
        (path, bytes): (String, Bytes),
    ) -> Result<Option<Self>, Error> {
        let columns: Vec<&str> = T::COLUMNS.to_vec();
        let mut batches = Batches::read(bytes, &path, Some(&columns))?;
        match Self::next_cols(&mut batches)? {
            Some(cols) => Ok(Some(Self {
                date,
                weight,
                batches,
                cols,
                row: 0,
            })),
            None => Ok(None),
        }
    }

    fn next_cols(batches: &mut Batches) -> Result<Option<T>, Error> {
        while let Some(b) = batches.next_batch()? {
            if b.num_rows() > 0 {
                return T::read(&Columns::new(&b, batches.path())).map(Some);
            }
        }
        Ok(None)
    }

    pub(super) fn head(&self) -> &str {
        self.cols.outlets().value(self.row)
    }

    /// Moves to the next row; `false` at the end of the file.
    fn advance(&mut self) -> Result<bool, Error> {
        self.row += 1;
        if self.row < self.cols.outlets().len() {
            return Ok(true);
        }
        match Self::next_cols(&mut self.batches)? {
            Some(cols) => {
                self.cols = cols;
                self.row = 0;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Calls `f` on each row of `outlet` from the current one on (the cursor's head
    /// must be `outlet`); `false` when the file ended. A file whose outlets are not in
    /// order is an error naming it: merged, it would count an outlet twice.
    fn take(&mut self, outlet: &str, mut f: impl FnMut(&T, usize)) -> Result<bool, Error> {
        loop {
            f(&self.cols, self.row);
            if !self.advance()? {
                return Ok(false);
            }
            match self.head().cmp(outlet) {
                std::cmp::Ordering::Equal => {}
                std::cmp::Ordering::Greater => return Ok(true),
                std::cmp::Ordering::Less => {
                    return Err(Error::Core(spectra_core::Error::Table {
                        file: self.batches.path().to_owned(),
                        reason: format!(
                            "outlet `{}` follows `{outlet}`: the table is not sorted by \
                             outlet; `spectra aggregate --once --full` rewrites it",
                            self.head()
                        ),
                    }))
                }
            }
        }
    }
}

/// One table's cursors, in date order.
///
/// The next outlet is found by looking at every day's head: at a million outlets
/// × 91 days an outlet bought on about 20 days, and a binary heap of the heads
/// (two pops and pushes of about seven comparisons per day bought on) compared more
/// strings than the scan and measured no faster.
pub(super) struct Days<T> {
    pub(super) cursors: Vec<Option<Cursor<T>>>,
}

impl<T: Table> Days<T> {
    /// The smallest outlet any day has left.
    pub(super) fn next(&self) -> Option<&str> {
        self.cursors.iter().flatten().map(Cursor::head).min()
    }

    /// Feeds every row of `outlet` to `f`, the days in date order.
    pub(super) fn take(
        &mut self,
        outlet: &str,
        mut f: impl FnMut(i32, f64, &T, usize),
    ) -> Result<(), Error> {
        for slot in self.cursors.iter_mut() {
            let Some(c) = slot else { continue };
            if c.head() != outlet {
                continue;
            }
            let (date, weight) = (c.date, c.weight);
            if !c.take(outlet, |cols, row| f(date, weight, cols, row))? {
                *slot = None;
            }
        }
        Ok(())
    }
}
