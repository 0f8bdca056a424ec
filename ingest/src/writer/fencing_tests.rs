//! The lease protocol on its own, with two writers of one partition in the
//! interleavings that matter (an owner evicted while it writes, a second pod), and
//! what a committed batch's object holds.

use super::*;
use crate::batch::{PartitionBatch, TopicKind};
use spectra_core::schema::to_parquet;

fn metrics() -> IngestMetrics {
    let m = spectra_core::telemetry::Metrics::new();
    IngestMetrics::register(&m)
}

fn writer(storage: &Storage) -> BatchWriter {
    BatchWriter {
        storage: storage.clone(),
        // Never used: the batches here have no dead letters.
        dlq: rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .create()
            .unwrap(),
        dlq_topic: "dlq".into(),
        dlq_max_message_bytes: 1 << 20,
        attempts: 1,
        metrics: metrics(),
        shutdown: CancellationToken::new(),
    }
}

/// A batch of `n` lines from `first`, read under `epoch`.
fn job(first: i64, n: i64, epoch: u64) -> FlushJob {
    let mut b = PartitionBatch::new(TopicKind::Invoices, "inv", 0, first, epoch, 1);
    let limits = spectra_core::message::Limits::unbounded();
    for o in first..first + n {
        let v = format!(
            r#"{{"distributor_id":"D","invoice_id":"I{o}","line_no":1,"invoice_date":"2026-03-01","outlet_id":"O","sku_id":"S","quantity":1,"net_value":2}}"#
        );
        b.push(None, Some(v.as_bytes()), o, 1000 + o, &limits);
    }
    let job = b.close();
    assert!(job.dead.is_empty());
    job
}

async fn take(storage: &Storage) -> Lease {
    match acquire(
        storage,
        "inv",
        0,
        1,
        "test",
        &KafkaFacts::default(),
        &metrics(),
    )
    .await
    .unwrap()
    {
        Acquired::Owned(l) => *l,
        Acquired::Refused(e) => panic!("{e:?}"),
    }
}

async fn raw(storage: &Storage) -> Vec<String> {
    storage
        .list("raw/")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.path)
        .collect()
}

#[tokio::test]
async fn an_evicted_owner_cannot_commit_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = Storage::from_url(&format!("file://{}", dir.path().display())).unwrap();
    for s in [Storage::memory(), file] {
        let w = writer(&s);
        let mut a = take(&s).await;
        assert_eq!(a.state.epoch, 1);
        let first = job(0, 10, a.state.epoch);
        assert_eq!(
            w.write(&first, &mut a).await.unwrap(),
            Written::Committed(10)
        );
        // B takes the partition while A is still running (A was evicted).
        let mut b = take(&s).await;
        assert_eq!((b.state.epoch, b.state.next_offset), (2, Some(10)));
        // A's next batch: its intent write fails, nothing lands.
        let stale = job(10, 5, a.state.epoch);
        assert_eq!(w.write(&stale, &mut a).await.unwrap(), Written::Fenced);
        assert_eq!(raw(&s).await.len(), 1);
        // B reads the same offsets under its epoch: other names, committed.
        let again = job(10, 5, b.state.epoch);
        assert_eq!(
            w.write(&again, &mut b).await.unwrap(),
            Written::Committed(15)
        );
        let names = raw(&s).await;
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names.iter().any(|n| n.ends_with("-e2.parquet")),
            "{names:?}"
        );
        let st: PartitionState = s
            .get_json(&checkpoint_path("inv", 0))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (st.next_offset, st.epoch, st.lines_written),
            (Some(15), 2, 15)
        );
        s.delete(&checkpoint_path("inv", 0)).await.unwrap();
        for n in names {
            s.delete(&n).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_takeover_between_intent_and_checkpoint_removes_the_old_batch() {
    let s = Storage::memory();
    let w = writer(&s);
    let mut a = take(&s).await;
    // A wrote its intent and its objects, then stalled before its checkpoint.
    let j = job(0, 8, a.state.epoch);
    let objects: Vec<String> = j.objects.iter().map(|(p, _)| p.clone()).collect();
    let mut intent_state = a.state.clone();
    intent_state.pending = Some(Intent {
        epoch: a.state.epoch,
        first: 0,
        last: 7,
        objects: objects.clone(),
    });
    let rel = checkpoint_path("inv", 0);
    assert!(matches!(
        cas(&s, &rel, &mut a, intent_state).await.unwrap(),
        Cas::Done
    ));
    for (p, batches) in &j.objects {
        s.put(p, to_parquet(batches[0].schema(), batches).unwrap())
            .await
            .unwrap();
    }
    // B takes over: A's objects are removed, and remembered as orphans.
    let b = take(&s).await;
    assert!(raw(&s).await.is_empty());
    assert_eq!(b.state.orphans.len(), objects.len());
    assert_eq!(b.state.next_offset, None);
    // A put of A still in flight lands after B's delete…
    let (p, batches) = &j.objects[0];
    s.put(p, to_parquet(batches[0].schema(), batches).unwrap())
        .await
        .unwrap();
    // …and A's checkpoint is refused: A removes its own objects.
    let mut done = a.state.clone();
    done.pending = None;
    done.next_offset = Some(8);
    assert!(matches!(
        cas(&s, &rel, &mut a, done).await.unwrap(),
        Cas::Fenced
    ));
    assert_eq!(w.fenced(&j, &objects).await, Written::Fenced);
    assert!(raw(&s).await.is_empty());
    // Had A died before cleaning up, the next acquisition deletes the orphan again.
    s.put(p, to_parquet(batches[0].schema(), batches).unwrap())
        .await
        .unwrap();
    let c = take(&s).await;
    assert!(raw(&s).await.is_empty());
    assert_eq!(c.state.epoch, 3);
}

/// Stores `j`'s intent (offsets 0–7) in the state `a` holds.
async fn store_intent(s: &Storage, a: &mut Lease, j: &FlushJob) {
    let mut intent = a.state.clone();
    intent.pending = Some(Intent {
        epoch: a.state.epoch,
        first: 0,
        last: 7,
        objects: j.objects.iter().map(|(p, _)| p.clone()).collect(),
    });
    assert!(matches!(
        cas(s, &checkpoint_path("inv", 0), a, intent).await.unwrap(),
        Cas::Done
    ));
}

/// A's checkpoint lands but its answer is lost (a storage stall); B takes the
/// partition and resumes after A's batch; A retries the write and is refused. A's
/// objects are then the only copy of its lines: they stay. Had B found the batch
/// unfinished (A's checkpoint not landed), B replays it and A's objects go.
#[tokio::test]
async fn a_checkpoint_whose_answer_was_lost_keeps_its_batch() {
    let s = Storage::memory();
    let w = writer(&s);
    let mut a = take(&s).await;
    let j = job(0, 8, a.state.epoch);
    let rel = checkpoint_path("inv", 0);
    // The intent, the objects and the checkpoint land; A's lease never learns of the
    // last (its answer lost): it still holds the intent's version.
    store_intent(&s, &mut a, &j).await;
    let mut landed = a.clone();
    let mut done = a.state.clone();
    done.pending = None;
    done.next_offset = Some(8);
    done.lines_written = 8;
    done.messages_written = 8;
    for (p, batches) in &j.objects {
        s.put(p, to_parquet(batches[0].schema(), batches).unwrap())
            .await
            .unwrap();
    }
    assert!(matches!(
        cas(&s, &rel, &mut landed, done).await.unwrap(),
        Cas::Done
    ));
    let b = take(&s).await;
    assert_eq!((b.state.next_offset, b.state.replayed.len()), (Some(8), 0));
    assert_eq!(w.write(&j, &mut a).await.unwrap(), Written::Fenced);
    assert_eq!(raw(&s).await.len(), 1, "the committed batch's object stays");

    // The other way: A's next batch has its intent stored, then B' takes over before
    // A's checkpoint: the batch is replayed, and A's objects are removed.
    let s = Storage::memory();
    let mut a = take(&s).await;
    let j = job(0, 8, a.state.epoch);
    store_intent(&s, &mut a, &j).await;
    let mut b = take(&s).await;
    assert_eq!(
        b.state.replayed,
        vec![Replayed {
            epoch: 1,
            first: 0,
            last: 7
        }]
    );
    // B replays and commits the same offsets before A's retry.
    let again = job(0, 8, b.state.epoch);
    let w = writer(&s);
    assert_eq!(
        w.write(&again, &mut b).await.unwrap(),
        Written::Committed(8)
    );
    assert_eq!(w.write(&j, &mut a).await.unwrap(), Written::Fenced);
    let names = raw(&s).await;
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with("-e2.parquet"), "{names:?}");
}

#[tokio::test]
async fn the_offset_domain_is_checked_on_acquisition() {
    let s = Storage::memory();
    let w = writer(&s);
    let facts = |cluster: &str, low: i64| KafkaFacts {
        cluster_id: Some(cluster.into()),
        low_watermark: Some(low),
    };
    let Acquired::Owned(mut a) = acquire(&s, "inv", 0, 1, "t", &facts("c1", 0), &metrics())
        .await
        .unwrap()
    else {
        panic!()
    };
    w.write(&job(0, 10, a.state.epoch), &mut a).await.unwrap();
    let refused = |r: Acquired| match r {
        Acquired::Refused(e) => e.reason,
        Acquired::Owned(_) => "owned",
    };
    let r = acquire(&s, "inv", 0, 2, "t", &facts("c2", 0), &metrics())
        .await
        .unwrap();
    assert_eq!(refused(r), "cluster_changed");
    let r = acquire(&s, "inv", 0, 2, "t", &facts("c1", 12), &metrics())
        .await
        .unwrap();
    assert_eq!(refused(r), "retention_gap");
    // A refusal leaves the state as it was; a deliberate reset starts over.
    let st: PartitionState = s
        .get_json(&checkpoint_path("inv", 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((st.epoch, st.next_offset), (1, Some(10)));
    let lines = reset_checkpoint(&s, "inv", None).await.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let r = acquire(&s, "inv", 0, 3, "t", &facts("c2", 12), &metrics())
        .await
        .unwrap();
    let Acquired::Owned(l) = r else { panic!() };
    assert_eq!((l.state.epoch, l.state.next_offset), (3, None));
    assert_eq!(l.state.lines_written, 10);
}

/// A batch read over several of the parse pool's chunks is one object per day, its
/// rows in offset order: what is written is what was read, whole.
#[tokio::test]
async fn an_object_of_several_chunks_holds_every_row_in_offset_order() {
    use arrow::array::{Array, Int64Array, StringArray};
    let s = Storage::memory();
    let w = writer(&s);
    let mut a = take(&s).await;
    let n = 9_000;
    let j = job(100, n, a.state.epoch);
    assert!(
        j.objects[0].1.len() > 1,
        "several chunks: {}",
        j.objects[0].1.len()
    );
    assert_eq!(
        w.write(&j, &mut a).await.unwrap(),
        Written::Committed(100 + n)
    );
    let paths = raw(&s).await;
    assert_eq!(paths.len(), 1);
    let data = s.get(&paths[0]).await.unwrap().unwrap();
    let mut offsets = Vec::new();
    for batch in spectra_core::schema::from_parquet(data).unwrap() {
        let o = batch.column_by_name("source_offset").unwrap();
        let o = o.as_any().downcast_ref::<Int64Array>().unwrap();
        let ids = batch.column_by_name("invoice_id").unwrap();
        let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
        for r in 0..batch.num_rows() {
            assert_eq!(ids.value(r), format!("I{}", o.value(r)));
            offsets.push(o.value(r));
        }
    }
    assert_eq!(offsets, (100..100 + n).collect::<Vec<_>>());
}
