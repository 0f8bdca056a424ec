//! The three feature files as they are made: Arrow builders flushed every
//! [`OUT_ROWS`] rows to a thread that encodes them.

use std::sync::mpsc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use bytes::Bytes;
use spectra_core::schema::Encoder;
use spectra_core::tables::features::{KpiRow, SkuSpendRow, SpectrumRow};
use spectra_core::tables::Rows;

use crate::Error;

/// Rows per batch handed to the encoder.
pub(super) const OUT_ROWS: usize = 64 * 1024;

/// Encodes the batches of the three files (0 spectrum, 1 SKU spend, 2 KPIs) as they
/// come.
pub(super) fn encode(rx: mpsc::Receiver<(usize, RecordBatch)>) -> Result<[Bytes; 3], Error> {
    let mut enc = [
        Encoder::new(SpectrumRow::schema())?,
        Encoder::new(SkuSpendRow::schema())?,
        Encoder::new(KpiRow::schema())?,
    ];
    for (file, batch) in rx {
        enc[file].write(&batch)?;
    }
    let [a, b, c] = enc;
    Ok([a.finish()?, b.finish()?, c.finish()?])
}

/// Builders of the three files, flushed to the encoder every [`OUT_ROWS`] rows.
pub(super) struct Out<'a> {
    pub(super) tx: &'a mpsc::SyncSender<(usize, RecordBatch)>,
    pub(super) spectrum: (
        StringBuilder,
        StringBuilder,
        [Float64Builder; 3],
        [Int64Builder; 2],
    ),
    pub(super) spend: (
        StringBuilder,
        StringBuilder,
        StringBuilder,
        [Float64Builder; 2],
        Int64Builder,
    ),
    pub(super) kpis: KpiBuilders,
}

#[derive(Default)]
pub(super) struct KpiBuilders {
    pub(super) outlet: StringBuilder,
    pub(super) floats: [Float64Builder; 4],
    pub(super) ints: [Int64Builder; 6],
    pub(super) texts: [StringBuilder; 5],
}

fn finish_f(b: &mut Float64Builder) -> ArrayRef {
    std::sync::Arc::new(b.finish())
}
fn finish_i(b: &mut Int64Builder) -> ArrayRef {
    std::sync::Arc::new(b.finish())
}
fn finish_s(b: &mut StringBuilder) -> ArrayRef {
    std::sync::Arc::new(b.finish())
}

impl Out<'_> {
    fn send(&self, file: usize, batch: RecordBatch) -> Result<(), Error> {
        // A closed channel means the encoder failed: the merge stops, and
        // [`compute`] reports the encoder's error rather than this one.
        self.tx
            .send((file, batch))
            .map_err(|_| Error::Corrupt("the feature files' encoder stopped".to_owned()))
    }

    pub(super) fn flush_spectrum(&mut self) -> Result<(), Error> {
        let (o, f, fl, i) = &mut self.spectrum;
        if o.is_empty() {
            return Ok(());
        }
        let cols = vec![
            finish_s(o),
            finish_s(f),
            finish_f(&mut fl[0]),
            finish_f(&mut fl[1]),
            finish_i(&mut i[0]),
            finish_f(&mut fl[2]),
            finish_i(&mut i[1]),
        ];
        let b = RecordBatch::try_new(SpectrumRow::schema(), cols)?;
        self.send(0, b)
    }

    pub(super) fn flush_spend(&mut self) -> Result<(), Error> {
        let (o, s, f, fl, l) = &mut self.spend;
        if o.is_empty() {
            return Ok(());
        }
        let cols = vec![
            finish_s(o),
            finish_s(s),
            finish_s(f),
            finish_f(&mut fl[0]),
            finish_f(&mut fl[1]),
            finish_i(l),
        ];
        let b = RecordBatch::try_new(SkuSpendRow::schema(), cols)?;
        self.send(1, b)
    }

    pub(super) fn flush_kpis(&mut self) -> Result<(), Error> {
        let k = &mut self.kpis;
        if k.outlet.is_empty() {
            return Ok(());
        }
        // KpiRow's column order: outlet_id, net_value, lines, invoices,
        // invoices_per_month, avg_invoice_value, distinct_skus, days_since_last_invoice,
        // active_weeks, return_share, recent_invoices, name, region, channel,
        // attributes, distributor.
        let [net, per_month, avg, share] = &mut k.floats;
        let [lines, invoices, skus, since, weeks, recent] = &mut k.ints;
        let [name, region, channel, attributes, distributor] = &mut k.texts;
        let cols = vec![
            finish_s(&mut k.outlet),
            finish_f(net),
            finish_i(lines),
            finish_i(invoices),
            finish_f(per_month),
            finish_f(avg),
            finish_i(skus),
            finish_i(since),
            finish_i(weeks),
            finish_f(share),
            finish_i(recent),
            finish_s(name),
            finish_s(region),
            finish_s(channel),
            finish_s(attributes),
            finish_s(distributor),
        ];
        let b = RecordBatch::try_new(KpiRow::schema(), cols)?;
        self.send(2, b)
    }
}
