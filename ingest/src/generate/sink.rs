//! Where a generated feed goes: onto the input topics (master data first, then the
//! invoices day by day), or into JSON-lines files beside the planted truth.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::Serialize;
use spectra_core::kafka::{client_config, ensure_topics, Retention};
use spectra_core::Config;

use super::{Feed, Generated};
use crate::Error;

/// What a generation produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GenerateSummary {
    /// Outlet master messages.
    pub outlets: usize,
    /// SKU master messages.
    pub skus: usize,
    /// Invoice messages (redeliveries and broken ones included).
    pub invoice_messages: usize,
    /// Days generated.
    pub days: u32,
}

fn send_all(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, msgs: &[Generated]) {
    for (k, v) in msgs {
        let mut rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic);
        if let Some(k) = k {
            rec = rec.key(k.as_str());
        }
        if let Some(v) = v {
            rec = rec.payload(v.as_slice());
        }
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    std::thread::sleep(Duration::from_millis(2));
                    rec = r;
                }
            }
        }
    }
}

/// Produces the master data, then days `from..to` of invoices, calling `after_day`
/// after each day has been delivered (the demo paces and re-segments there).
pub async fn to_kafka(
    cfg: &Config,
    feed: &mut Feed,
    from: u32,
    to: u32,
    mut after_day: impl FnMut(u32),
) -> Result<GenerateSummary, Error> {
    let t = &cfg.kafka.topics;
    ensure_topics(
        cfg,
        &[
            (t.invoices.as_str(), Retention::Delete),
            (t.outlets.as_str(), Retention::Compact),
            (t.skus.as_str(), Retention::Compact),
        ],
    )
    .await?;
    let p: ThreadedProducer<DefaultProducerContext> = client_config(cfg)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut s = GenerateSummary::default();
    if from == 0 {
        let (o, k) = (feed.outlet_messages(), feed.sku_messages());
        send_all(&p, &t.outlets, &o);
        send_all(&p, &t.skus, &k);
        s.outlets = o.len();
        s.skus = k.len();
    }
    for day in from..to {
        let msgs = feed.day_messages(day);
        send_all(&p, &t.invoices, &msgs);
        p.flush(Duration::from_secs(60))?;
        s.invoice_messages += msgs.len();
        s.days += 1;
        after_day(day);
    }
    Ok(s)
}

/// Writes `outlets.jsonl`, `skus.jsonl`, `invoices.jsonl` (one message per line; null
/// values are left out, broken ones kept) and `truth.csv` into `dir`.
pub fn to_files(feed: &mut Feed, dir: &Path) -> Result<GenerateSummary, Error> {
    let io = |e: std::io::Error| Error::Io {
        path: dir.display().to_string(),
        source: e,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let write = |name: &str, msgs: &[Generated]| -> Result<usize, Error> {
        let path = dir.join(name);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
        let mut n = 0;
        for (_, v) in msgs {
            if let Some(v) = v {
                // One message per line: a broken message with a newline would split.
                let line: Vec<u8> = v
                    .iter()
                    .map(|b| if *b == b'\n' { b' ' } else { *b })
                    .collect();
                f.write_all(&line).map_err(io)?;
                f.write_all(b"\n").map_err(io)?;
                n += 1;
            }
        }
        f.flush().map_err(io)?;
        Ok(n)
    };
    let mut s = GenerateSummary {
        outlets: write("outlets.jsonl", &feed.outlet_messages())?,
        skus: write("skus.jsonl", &feed.sku_messages())?,
        ..Default::default()
    };
    let mut all = Vec::new();
    for day in 0..feed.opts.days {
        all.extend(feed.day_messages(day));
        s.days += 1;
    }
    s.invoice_messages = write("invoices.jsonl", &all)?;
    std::fs::write(dir.join("truth.csv"), feed.truth_csv()).map_err(io)?;
    Ok(s)
}
