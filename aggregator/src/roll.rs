//! Rolls deduplicated invoice lines into each day's daily rows (outlet × SKU) and
//! outlet-daily rows, by hand rather than as SQL.
//!
//! The roll-up has one shape that a general query engine cannot see: every group of
//! the three it needs (outlet × SKU × day, outlet × day, and the invoices and
//! distributors under them) lies inside one outlet's lines of one day, a few dozen
//! lines. So the lines are split by day, then by outlet (one hash of the outlet id per
//! line), and each outlet-day is sorted on its own and summed in one scan. DataFusion
//! ran this as four hash aggregations over every line, three joins and two sorts of
//! the output, each hashing and copying the string keys again; at a million outlets
//! that was 627 of a first pass's 896 seconds.
//!
//! The sums run in a fixed order — by SKU, distributor, invoice, then the order the
//! lines were read in — so the same lines give the same bits whichever path read them.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, AsArray, Date32Array, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{Date32Type, Float64Type, Int64Type};
use rayon::prelude::*;

use crate::index::{Version, VersionedRows};
use crate::superseded::Superseded;
use crate::{daily_schema, outlet_daily_schema, Error};

/// The columns a batch of lines must have, in this order (text as Utf8, as the
/// session reads the raw files and as [`VersionedRows`] expects).
pub const LINE_COLUMNS: [&str; 8] = [
    "outlet_id",
    "sku_id",
    "invoice_date",
    "distributor_id",
    "invoice_id",
    "quantity",
    "net_value",
    "line_no",
];

/// One line, borrowing its strings from the batch it was read in.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    outlet: &'a str,
    sku: &'a str,
    distributor: &'a str,
    invoice: &'a str,
    /// Its number on the invoice: with the distributor and the invoice, what tells a
    /// day's lines apart, so they are summed in one order whatever order they were
    /// read in (the session reads files in parallel).
    line_no: i64,
    quantity: f64,
    value: f64,
}

/// A day's rolled rows, in batches.
#[derive(Debug)]
pub struct Day {
    /// `features/daily/` rows, ordered by outlet and SKU.
    pub daily: Vec<RecordBatch>,
    /// `features/outlet_daily/` rows, ordered by outlet.
    pub outlet_daily: Vec<RecordBatch>,
}

/// The columns of a batch of lines that may hold several versions of a line: the
/// identity, day and version first (as [`VersionedRows`] reads them), then the line.
pub const VERSIONED_COLUMNS: [&str; 12] = [
    "distributor_id",
    "invoice_id",
    "line_no",
    "invoice_date",
    "kafka_timestamp_ms",
    "source_partition",
    "source_offset",
    "source_line",
    "outlet_id",
    "sku_id",
    "quantity",
    "net_value",
];

/// Fewest outlets a range of a day is rolled in (few in tests, so they see ranges).
const MIN_RANGE: usize = if cfg!(test) { 8 } else { 4096 };

/// A line read with its version.
#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    line: Line<'a>,
    version: Version,
}

/// A day's lines before deduplication.
#[derive(Debug, Default)]
struct DayLines<'a> {
    /// Lines of days that hold every identity once.
    clean: Vec<Line<'a>>,
    /// Lines of days that may hold several versions of an identity.
    versioned: Vec<Candidate<'a>>,
}

/// Rolls the lines of `days` into one [`Day`] each (a date without lines gets empty
/// tables). `clean` batches (columns as [`LINE_COLUMNS`]) hold each line once and
/// count whole; `versioned` batches ([`VERSIONED_COLUMNS`]) count each identity
/// (distributor, invoice, line number) once per day, its latest version, and not at
/// all where `superseded` lists a version of it on another day at least as new.
pub fn roll(
    clean: &[RecordBatch],
    versioned: &[RecordBatch],
    superseded: &Superseded,
    days: &[i32],
) -> Result<BTreeMap<i32, Day>, Error> {
    let mut by_day: BTreeMap<i32, DayLines<'_>> =
        days.iter().map(|d| (*d, DayLines::default())).collect();
    for b in clean {
        let [o, s, d, i] = [0, 1, 3, 4].map(|c| b.column(c).as_string::<i32>());
        let dates = b.column(2).as_primitive::<Date32Type>();
        let (q, v) = (
            b.column(5).as_primitive::<Float64Type>(),
            b.column(6).as_primitive::<Float64Type>(),
        );
        let n = b.column(7).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            by_day.entry(dates.value(r)).or_default().clean.push(Line {
                outlet: o.value(r),
                sku: s.value(r),
                distributor: d.value(r),
                invoice: i.value(r),
                line_no: n.value(r),
                quantity: q.value(r),
                value: v.value(r),
            });
        }
    }
    for b in versioned {
        let v = VersionedRows::of(b);
        let (o, s) = (
            b.column(8).as_string::<i32>(),
            b.column(9).as_string::<i32>(),
        );
        let (q, val) = (
            b.column(10).as_primitive::<Float64Type>(),
            b.column(11).as_primitive::<Float64Type>(),
        );
        for r in 0..b.num_rows() {
            by_day
                .entry(v.date(r))
                .or_default()
                .versioned
                .push(Candidate {
                    line: Line {
                        outlet: o.value(r),
                        sku: s.value(r),
                        distributor: v.distributor.value(r),
                        invoice: v.invoice.value(r),
                        line_no: v.line_no(r),
                        quantity: q.value(r),
                        value: val.value(r),
                    },
                    version: v.version(r),
                });
        }
    }
    let by_day: Vec<(i32, DayLines<'_>)> = by_day.into_iter().collect();
    by_day
        .into_par_iter()
        .map(|(date, mut day)| {
            latest(date, &day.versioned, superseded, &mut day.clean);
            Ok((date, roll_day(date, &day.clean)?))
        })
        .collect()
}

/// Appends to `out` the latest version of each identity among `candidates` (one
/// day's), unless `superseded` beats it; in the order the winners were read.
fn latest<'a>(
    date: i32,
    candidates: &[Candidate<'a>],
    superseded: &Superseded,
    out: &mut Vec<Line<'a>>,
) {
    let mut best: HashMap<(&str, &str, i64), usize, foldhash::fast::FixedState> =
        HashMap::with_capacity_and_hasher(candidates.len(), Default::default());
    for (k, c) in candidates.iter().enumerate() {
        let key = (c.line.distributor, c.line.invoice, c.line.line_no);
        best.entry(key)
            .and_modify(|w| {
                if c.version > candidates[*w].version {
                    *w = k;
                }
            })
            .or_insert(k);
    }
    let mut winners: Vec<usize> = best.into_values().collect();
    winners.sort_unstable();
    out.extend(winners.into_iter().map(|w| &candidates[w]).filter_map(|c| {
        let beaten = superseded.beaten(c.line.distributor, c.line.invoice, c.line.line_no, date);
        beaten.is_none_or(|by| by < c.version).then_some(c.line)
    }));
}

/// Sums of a run of lines.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    value: f64,
    quantity: f64,
    lines: i64,
    returns: f64,
}

impl Sums {
    fn add(&mut self, l: &Line<'_>) {
        self.value += l.value;
        self.quantity += l.quantity;
        self.lines += 1;
        if l.value < 0.0 {
            self.returns += l.value;
        }
    }

    fn merge(&mut self, o: &Sums) {
        self.value += o.value;
        self.quantity += o.quantity;
        self.lines += o.lines;
        self.returns += o.returns;
    }
}

/// Distinct invoices among lines sorted so equal (distributor, invoice) are adjacent.
fn distinct_invoices<'a>(lines: impl Iterator<Item = &'a Line<'a>>) -> i64 {
    let mut n = 0;
    let mut last: Option<(&str, &str)> = None;
    for l in lines {
        let key = (l.distributor, l.invoice);
        if last != Some(key) {
            n += 1;
            last = Some(key);
        }
    }
    n
}

fn roll_day(date: i32, lines: &[Line<'_>]) -> Result<Day, Error> {
    // Lines by outlet: one hash per line, then a counting sort of line indices.
    let mut outlets: HashMap<&str, u32, foldhash::fast::FixedState> =
        HashMap::with_capacity_and_hasher(lines.len() / 8 + 1, Default::default());
    let group: Vec<u32> = lines
        .iter()
        .map(|l| {
            let next = outlets.len() as u32;
            *outlets.entry(l.outlet).or_insert(next)
        })
        .collect();
    let mut start = vec![0u32; outlets.len() + 1];
    for g in &group {
        start[*g as usize + 1] += 1;
    }
    for g in 0..outlets.len() {
        start[g + 1] += start[g];
    }
    let mut fill = start.clone();
    let mut order = vec![0u32; lines.len()];
    for (i, g) in group.iter().enumerate() {
        order[fill[*g as usize] as usize] = i as u32;
        fill[*g as usize] += 1;
    }
    drop(group);
    let mut sorted: Vec<(&str, u32)> = outlets.into_iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    // A day can be all of a chunk (a million outlets' day is): its outlets are rolled
    // in ranges on every core, each range's rows a batch of their own, in order.
    let size = sorted
        .len()
        .div_ceil(rayon::current_num_threads() * 4)
        .max(MIN_RANGE);
    let pieces = sorted
        .par_chunks(size)
        .map(|outlets| {
            let own = |g: u32| {
                let g = g as usize;
                order[start[g] as usize..start[g + 1] as usize]
                    .iter()
                    .map(|&i| &lines[i as usize])
            };
            piece(date, outlets, own)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let (daily, outlet_daily) = pieces.into_iter().unzip();
    Ok(Day {
        daily,
        outlet_daily,
    })
}

/// Rolls the lines of `outlets` (sorted by id, each with its group; `lines_of` gives a
/// group's lines) into daily and outlet-daily rows.
fn piece<'a, I>(
    date: i32,
    outlets: &[(&str, u32)],
    lines_of: impl Fn(u32) -> I,
) -> Result<(RecordBatch, RecordBatch), Error>
where
    I: Iterator<Item = &'a Line<'a>>,
{
    let n_lines: usize = outlets
        .iter()
        .map(|(_, g)| lines_of(*g).size_hint().0)
        .sum();
    let mut daily = DailyColumns::with_capacity(n_lines);
    let mut outlet_rows = OutletColumns::with_capacity(outlets.len());
    let mut own: Vec<Line<'_>> = Vec::new();
    let mut invoices: Vec<(&str, &str)> = Vec::new();
    let mut distributors: Vec<(&str, f64)> = Vec::new();
    for &(outlet, g) in outlets {
        own.clear();
        own.extend(lines_of(g).copied());
        // A day holds each (distributor, invoice, line number) once: in this order the
        // sums are the same to the bit whatever order the lines were read in.
        own.sort_unstable_by(|a, b| {
            (a.sku, a.distributor, a.invoice, a.line_no).cmp(&(
                b.sku,
                b.distributor,
                b.invoice,
                b.line_no,
            ))
        });
        let mut total = Sums::default();
        let mut skus = 0;
        for run in own.chunk_by(|a, b| a.sku == b.sku) {
            let mut s = Sums::default();
            run.iter().for_each(|l| s.add(l));
            daily.push(outlet, run[0].sku, &s, distinct_invoices(run.iter()));
            total.merge(&s);
            skus += 1;
        }
        invoices.clear();
        invoices.extend(own.iter().map(|l| (l.distributor, l.invoice)));
        invoices.sort_unstable();
        invoices.dedup();
        distributors.clear();
        distributors.extend(own.iter().map(|l| (l.distributor, l.value)));
        distributors.sort_by(|a, b| a.0.cmp(b.0));
        // The distributor with the most value on the day; the smallest id on a tie.
        let mut best: Option<(&str, f64)> = None;
        for run in distributors.chunk_by(|a, b| a.0 == b.0) {
            let v: f64 = run.iter().map(|d| d.1).sum();
            if best.is_none_or(|(_, bv)| v > bv) {
                best = Some((run[0].0, v));
            }
        }
        outlet_rows.push(
            outlet,
            &total,
            invoices.len() as i64,
            skus,
            best.map(|b| b.0),
        );
    }
    Ok((daily.finish(date)?, outlet_rows.finish(date)?))
}

/// Builders of a range's daily rows.
struct DailyColumns {
    outlet: StringBuilder,
    sku: StringBuilder,
    value: Float64Builder,
    quantity: Float64Builder,
    lines: Int64Builder,
    invoices: Int64Builder,
    returns: Float64Builder,
}

impl DailyColumns {
    fn with_capacity(rows: usize) -> Self {
        Self {
            outlet: StringBuilder::with_capacity(rows, rows * 8),
            sku: StringBuilder::with_capacity(rows, rows * 8),
            value: Float64Builder::with_capacity(rows),
            quantity: Float64Builder::with_capacity(rows),
            lines: Int64Builder::with_capacity(rows),
            invoices: Int64Builder::with_capacity(rows),
            returns: Float64Builder::with_capacity(rows),
        }
    }

    fn push(&mut self, outlet: &str, sku: &str, s: &Sums, invoices: i64) {
        self.outlet.append_value(outlet);
        self.sku.append_value(sku);
        self.value.append_value(s.value);
        self.quantity.append_value(s.quantity);
        self.lines.append_value(s.lines);
        self.invoices.append_value(invoices);
        self.returns.append_value(s.returns);
    }

    fn finish(mut self, date: i32) -> Result<RecordBatch, Error> {
        let rows = self.value.len();
        Ok(RecordBatch::try_new(
            daily_schema(),
            vec![
                Arc::new(self.outlet.finish()),
                Arc::new(self.sku.finish()),
                Arc::new(Date32Array::from(vec![date; rows])),
                Arc::new(self.value.finish()),
                Arc::new(self.quantity.finish()),
                Arc::new(self.lines.finish()),
                Arc::new(self.invoices.finish()),
                Arc::new(self.returns.finish()),
            ],
        )?)
    }
}

/// Builders of a range's outlet-daily rows.
struct OutletColumns {
    outlet: StringBuilder,
    value: Float64Builder,
    quantity: Float64Builder,
    lines: Int64Builder,
    invoices: Int64Builder,
    returns: Float64Builder,
    skus: Int64Builder,
    distributor: StringBuilder,
}

impl OutletColumns {
    fn with_capacity(rows: usize) -> Self {
        Self {
            outlet: StringBuilder::with_capacity(rows, rows * 8),
            value: Float64Builder::with_capacity(rows),
            quantity: Float64Builder::with_capacity(rows),
            lines: Int64Builder::with_capacity(rows),
            invoices: Int64Builder::with_capacity(rows),
            returns: Float64Builder::with_capacity(rows),
            skus: Int64Builder::with_capacity(rows),
            distributor: StringBuilder::with_capacity(rows, rows * 8),
        }
    }

    fn push(
        &mut self,
        outlet: &str,
        s: &Sums,
        invoices: i64,
        skus: i64,
        distributor: Option<&str>,
    ) {
        self.outlet.append_value(outlet);
        self.value.append_value(s.value);
        self.quantity.append_value(s.quantity);
        self.lines.append_value(s.lines);
        self.invoices.append_value(invoices);
        self.returns.append_value(s.returns);
        self.skus.append_value(skus);
        self.distributor.append_option(distributor);
    }

    fn finish(mut self, date: i32) -> Result<RecordBatch, Error> {
        let rows = self.value.len();
        Ok(RecordBatch::try_new(
            outlet_daily_schema(),
            vec![
                Arc::new(self.outlet.finish()),
                Arc::new(Date32Array::from(vec![date; rows])),
                Arc::new(self.value.finish()),
                Arc::new(self.quantity.finish()),
                Arc::new(self.lines.finish()),
                Arc::new(self.invoices.finish()),
                Arc::new(self.returns.finish()),
                Arc::new(self.skus.finish()),
                Arc::new(self.distributor.finish()),
            ],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Float64Array, StringArray};
    use arrow::compute::concat_batches;
    use arrow::datatypes::{DataType, Field, Schema};
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use spectra_core::tables::features::{DailyRow, OutletDailyRow};
    use spectra_core::tables::{Columns, Rows};

    /// (outlet, sku, date, distributor, invoice, quantity, value, line number)
    type Raw = (String, String, i32, String, String, f64, f64, i64);

    fn batch(lines: &[Raw]) -> RecordBatch {
        let text = |f: fn(&Raw) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(lines.iter().map(f)))
        };
        let schema = Schema::new(
            LINE_COLUMNS
                .iter()
                .zip([
                    DataType::Utf8,
                    DataType::Utf8,
                    DataType::Date32,
                    DataType::Utf8,
                    DataType::Utf8,
                    DataType::Float64,
                    DataType::Float64,
                    DataType::Int64,
                ])
                .map(|(n, t)| Field::new(*n, t, false))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                text(|l| &l.0),
                text(|l| &l.1),
                Arc::new(Date32Array::from_iter_values(lines.iter().map(|l| l.2))),
                text(|l| &l.3),
                text(|l| &l.4),
                Arc::new(Float64Array::from_iter_values(lines.iter().map(|l| l.5))),
                Arc::new(Float64Array::from_iter_values(lines.iter().map(|l| l.6))),
                Arc::new(arrow::array::Int64Array::from_iter_values(
                    lines.iter().map(|l| l.7),
                )),
            ],
        )
        .unwrap()
    }

    /// Random lines, several batches, dates out of order, SKUs repeated within and
    /// across invoices, returns, two distributors per outlet sometimes tied.
    fn lines(seed: u64) -> Vec<Raw> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..3000)
            .map(|n| {
                let value = if rng.gen_bool(0.1) {
                    -(rng.gen_range(1..5) as f64)
                } else {
                    rng.gen_range(1..20) as f64
                };
                (
                    format!("O{}", rng.gen_range(0..40)),
                    format!("S{}", rng.gen_range(0..12)),
                    20_000 + rng.gen_range(0..4),
                    format!("D{}", rng.gen_range(0..2)),
                    format!("I{}", rng.gen_range(0..30)),
                    rng.gen_range(1..4) as f64,
                    value,
                    n,
                )
            })
            .collect()
    }

    /// The session reads raw files in parallel, so a day's lines come in no fixed
    /// order. Values with cents, summed in another order, differ in their last bits
    /// (0.1 + 0.2 + 0.3 is not 0.3 + 0.2 + 0.1): read in any order, the rolled tables
    /// are the same to the bit.
    #[test]
    fn the_order_lines_are_read_in_changes_no_bit() {
        let mut all = lines(3);
        let mut rng = StdRng::seed_from_u64(5);
        // Few SKUs and invoices: many lines of one SKU on one invoice, whose sums
        // only the line numbers put in order.
        for l in &mut all {
            l.1 = format!("S{}", rng.gen_range(0..3));
            l.4 = format!("I{}", rng.gen_range(0..2));
            l.6 = rng.gen_range(-500..5000) as f64 / 100.0;
            l.5 = rng.gen_range(1..400) as f64 / 10.0;
        }
        let days = [20_000, 20_001, 20_002, 20_003];
        let rolled = |lines: &[Raw]| {
            let batches: Vec<RecordBatch> = lines.chunks(500).map(batch).collect();
            roll(&batches, &[], &Superseded::default(), &days).unwrap()
        };
        let first = rolled(&all);
        for _ in 0..4 {
            all.shuffle(&mut rng);
            let again = rolled(&all);
            for d in days {
                assert_eq!(again[&d].daily, first[&d].daily, "daily rows of {d}");
                assert_eq!(again[&d].outlet_daily, first[&d].outlet_daily);
            }
        }
    }

    #[test]
    fn rolls_as_the_definition_says() {
        for seed in 0..5 {
            let all = lines(seed);
            let batches: Vec<RecordBatch> = all.chunks(700).map(batch).collect();
            let days = [19_999, 20_000, 20_001, 20_002, 20_003];
            let rolled = roll(&batches, &[], &Superseded::default(), &days).unwrap();
            assert_eq!(rolled.len(), days.len(), "every day, with lines or not");
            assert!(rolled[&19_999].daily.iter().all(|b| b.num_rows() == 0));

            // The definition, brute force: daily by (outlet, sku, date); outlet-daily
            // by (outlet, date), its distributor the one with the most value (the
            // smallest id on a tie).
            type Key = (String, String, i32);
            /// value, quantity, lines, (distributor, invoice) of each line, returns
            type Sum = (f64, f64, i64, Vec<(String, String)>, f64);
            let mut daily: BTreeMap<Key, Sum> = BTreeMap::new();
            let mut outlet: BTreeMap<(String, i32), Vec<&Raw>> = BTreeMap::new();
            for l in &all {
                let e = daily.entry((l.0.clone(), l.1.clone(), l.2)).or_default();
                e.0 += l.6;
                e.1 += l.5;
                e.2 += 1;
                e.3.push((l.3.clone(), l.4.clone()));
                e.4 += l.6.min(0.0);
                outlet.entry((l.0.clone(), l.2)).or_default().push(l);
            }
            let mut got_daily = Vec::new();
            let mut got_outlet = Vec::new();
            for day in rolled.values() {
                let daily_batch = concat_batches(&daily_schema(), &day.daily).unwrap();
                let outlet_batch =
                    concat_batches(&outlet_daily_schema(), &day.outlet_daily).unwrap();
                let d = DailyRow::from_batch(&Columns::new(&daily_batch, "daily")).unwrap();
                let pairs: Vec<_> = d.iter().map(|r| (&r.outlet_id, &r.sku_id)).collect();
                assert!(pairs.is_sorted(), "daily rows by outlet and SKU");
                got_daily.extend(d);
                let o = OutletDailyRow::from_batch(&Columns::new(&outlet_batch, "od")).unwrap();
                assert!(o.iter().map(|r| &r.outlet_id).is_sorted());
                got_outlet.extend(o);
            }
            assert_eq!(got_daily.len(), daily.len());
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
            for r in &got_daily {
                let date = (r.date - epoch).num_days() as i32;
                let w = &daily[&(r.outlet_id.clone(), r.sku_id.clone(), date)];
                let mut inv = w.3.clone();
                inv.sort();
                inv.dedup();
                assert!((r.net_value - w.0).abs() < 1e-9 && (r.quantity - w.1).abs() < 1e-9);
                assert_eq!((r.lines, r.invoices), (w.2, inv.len() as i64));
                assert!((r.returns_value - w.4).abs() < 1e-9);
            }
            assert_eq!(got_outlet.len(), outlet.len());
            for r in &got_outlet {
                let date = (r.date - epoch).num_days() as i32;
                let ls = &outlet[&(r.outlet_id.clone(), date)];
                let mut inv: Vec<_> = ls.iter().map(|l| (&l.3, &l.4)).collect();
                inv.sort();
                inv.dedup();
                let mut skus: Vec<_> = ls.iter().map(|l| &l.1).collect();
                skus.sort();
                skus.dedup();
                let mut by: BTreeMap<&String, f64> = BTreeMap::new();
                for l in ls {
                    *by.entry(&l.3).or_default() += l.6;
                }
                let top = by.values().copied().fold(f64::NEG_INFINITY, f64::max);
                let best = by
                    .iter()
                    .find(|(_, v)| **v == top)
                    .map(|(d, _)| (*d).clone());
                let value: f64 = ls.iter().map(|l| l.6).sum();
                assert!((r.net_value - value).abs() < 1e-9);
                assert_eq!(r.lines, ls.len() as i64);
                assert_eq!(r.invoices, inv.len() as i64);
                assert_eq!(r.distinct_skus, skus.len() as i64);
                assert_eq!(r.distributor_id, best, "{} on {date}", r.outlet_id);
            }
        }
    }

    /// Versioned lines: each identity delivered up to three times with other values,
    /// the latest version counting; some identities beaten by a version on another
    /// day. Rolls as the surviving lines rolled as clean ones.
    #[test]
    fn versioned_lines_count_their_latest_version_once() {
        use crate::superseded::Identity;
        use arrow::array::{Int32Array, Int64Array};
        let mut rng = StdRng::seed_from_u64(7);
        let base = lines(11);
        // (line, line_no, version (ts, partition, offset, line))
        let mut candidates: Vec<(Raw, i64, Version)> = Vec::new();
        let mut survivors: Vec<Raw> = Vec::new();
        let mut superseded = Superseded::default();
        for (n, l) in base.iter().enumerate() {
            let copies = rng.gen_range(1..=3);
            let mut newest: Option<(Version, Raw)> = None;
            for c in 0..copies {
                let mut copy = l.clone();
                copy.6 += c as f64;
                let version = Version {
                    timestamp_ms: rng.gen_range(0..3),
                    partition: rng.gen_range(0..2),
                    offset: (n * 3 + c) as i64,
                    line: 0,
                };
                if newest.as_ref().is_none_or(|(v, _)| version > *v) {
                    newest = Some((version, copy.clone()));
                }
                candidates.push((copy, n as i64, version));
            }
            let (version, line) = newest.unwrap();
            let id = Identity {
                distributor_id: l.3.clone(),
                invoice_id: l.4.clone(),
                line_no: n as i64,
            };
            match n % 10 {
                // Beaten by a newer version on another day: dropped.
                0 => {
                    let by = Version {
                        timestamp_ms: 10,
                        ..version
                    };
                    superseded.record(id, l.2, by);
                }
                // Listed with an older version (the line moved back): kept.
                1 => {
                    let by = Version {
                        timestamp_ms: -1,
                        ..version
                    };
                    superseded.record(id, l.2, by);
                    survivors.push(line);
                }
                _ => survivors.push(line),
            }
        }
        candidates.reverse();
        let schema = Arc::new(Schema::new(
            VERSIONED_COLUMNS
                .iter()
                .zip([
                    DataType::Utf8,
                    DataType::Utf8,
                    DataType::Int64,
                    DataType::Date32,
                    DataType::Int64,
                    DataType::Int32,
                    DataType::Int64,
                    DataType::Int32,
                    DataType::Utf8,
                    DataType::Utf8,
                    DataType::Float64,
                    DataType::Float64,
                ])
                .map(|(n, t)| Field::new(*n, t, false))
                .collect::<Vec<_>>(),
        ));
        let versioned: Vec<RecordBatch> = candidates
            .chunks(500)
            .map(|c| {
                let text = |f: fn(&Raw) -> &str| -> ArrayRef {
                    Arc::new(StringArray::from_iter_values(c.iter().map(|x| f(&x.0))))
                };
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        text(|l| &l.3),
                        text(|l| &l.4),
                        Arc::new(Int64Array::from_iter_values(c.iter().map(|x| x.1))),
                        Arc::new(Date32Array::from_iter_values(c.iter().map(|x| x.0 .2))),
                        Arc::new(Int64Array::from_iter_values(
                            c.iter().map(|x| x.2.timestamp_ms),
                        )),
                        Arc::new(Int32Array::from_iter_values(
                            c.iter().map(|x| x.2.partition),
                        )),
                        Arc::new(Int64Array::from_iter_values(c.iter().map(|x| x.2.offset))),
                        Arc::new(Int32Array::from_iter_values(c.iter().map(|x| x.2.line))),
                        text(|l| &l.0),
                        text(|l| &l.1),
                        Arc::new(Float64Array::from_iter_values(c.iter().map(|x| x.0 .5))),
                        Arc::new(Float64Array::from_iter_values(c.iter().map(|x| x.0 .6))),
                    ],
                )
                .unwrap()
            })
            .collect();
        assert!(candidates.len() > base.len() + 1000, "duplicates planted");
        let days = [20_000, 20_001, 20_002, 20_003];
        let got = roll(&[], &versioned, &superseded, &days).unwrap();
        let want = roll(&[batch(&survivors)], &[], &Superseded::default(), &days).unwrap();
        for d in days {
            assert_eq!(got[&d].daily, want[&d].daily, "daily rows of {d}");
            assert_eq!(
                got[&d].outlet_daily, want[&d].outlet_daily,
                "outlet rows of {d}"
            );
        }
        assert!(survivors.len() < base.len(), "superseded lines dropped");
    }
}
