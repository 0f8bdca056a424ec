//! The writer thread: takes each assigned partition's lease, makes closed batches
//! durable under it, and publishes the group's status document.

use super::*;

/// Where the writer learns the broker's side of the offset domain.
pub type FactsFn = Box<dyn Fn(&str, i32) -> KafkaFacts + Send>;

/// Starts the writer thread: leases, batches, and the status document.
pub fn spawn_writer(
    writer: BatchWriter,
    rx: Receiver<WriterMsg>,
    shared: Arc<Shared>,
    facts: FactsFn,
    group: String,
) -> std::thread::JoinHandle<()> {
    let owner = format!(
        "{}:{}",
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned()))
            .unwrap_or_else(|| "localhost".into()),
        std::process::id()
    );
    std::thread::Builder::new()
        .name("ingest-writer".into())
        .spawn(move || {
            let mut leases: HashMap<(usize, i32), Lease> = HashMap::new();
            let mut status_written = Instant::now();
            let mut status_dirty = false;
            loop {
                let msg = match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        if status_dirty {
                            write_status(&writer, &shared, &leases, &group);
                            status_written = Instant::now();
                            status_dirty = false;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                match msg {
                    WriterMsg::Barrier(reply) => {
                        let _ = reply.send(());
                    }
                    WriterMsg::Stop => break,
                    WriterMsg::Acquire {
                        topic,
                        partition,
                        generation,
                    } => {
                        let Some(ti) = shared.topic_index(&topic) else {
                            continue;
                        };
                        let key = (ti, partition);
                        leases.remove(&key);
                        let facts = facts(&topic, partition);
                        let acquired = loop {
                            if !shared.current(key, generation) || shared.shutdown.is_cancelled() {
                                break None;
                            }
                            match shared.handle.block_on(acquire(
                                &writer.storage,
                                &topic,
                                partition,
                                generation,
                                &owner,
                                &facts,
                                &writer.metrics,
                            )) {
                                Ok(a) => break Some(a),
                                Err(e) => {
                                    // The partition stays paused meanwhile; polling goes on.
                                    writer.metrics.write_retries.inc();
                                    tracing::warn!(topic, partition, error = %e, "cannot take the lease; retrying");
                                    std::thread::sleep(Duration::from_secs(1));
                                }
                            }
                        };
                        let event = match acquired {
                            None => continue,
                            Some(Acquired::Owned(lease)) => {
                                let e = Event::Acquired {
                                    key,
                                    generation,
                                    epoch: lease.state.epoch,
                                    next: lease.state.next_offset,
                                    last_timestamp_ms: lease.state.last_timestamp_ms,
                                };
                                leases.insert(key, *lease);
                                e
                            }
                            Some(Acquired::Refused(error)) => Event::Refused {
                                key,
                                generation,
                                error,
                            },
                        };
                        shared.events.lock().expect("events lock").push(event);
                        status_dirty = true;
                    }
                    WriterMsg::Job(job) => {
                        let done = || shared.queued.fetch_sub(1, Ordering::SeqCst);
                        let Some(ti) = shared.topic_index(&job.topic) else {
                            done();
                            continue;
                        };
                        let key = (ti, job.partition);
                        let live = shared.fatal.lock().expect("fatal lock").is_none()
                            && shared.current(key, job.generation);
                        let lease = leases
                            .get_mut(&key)
                            .filter(|l| live && l.generation == job.generation);
                        let Some(lease) = lease else {
                            // The assignment is over: the next owner replays the batch.
                            tracing::debug!(topic = %job.topic, partition = job.partition,
                                first = job.first, last = job.last, "dropping a batch of a revoked assignment");
                            done();
                            continue;
                        };
                        match shared.handle.block_on(writer.write(&job, lease)) {
                            Ok(Written::Committed(next)) => {
                                shared.committable.lock().expect("commit lock").push((
                                    job.topic.clone(),
                                    job.partition,
                                    next,
                                ));
                                status_dirty = true;
                            }
                            Ok(Written::Fenced) => {
                                leases.remove(&key);
                                shared.events.lock().expect("events lock").push(Event::Fenced {
                                    key,
                                    generation: job.generation,
                                });
                            }
                            Err(e) => {
                                tracing::error!(topic = %job.topic, partition = job.partition, error = %e,
                                    "batch could not be made durable; stopping (it will be replayed)");
                                *shared.fatal.lock().expect("fatal lock") = Some(e);
                                shared.shutdown.cancel();
                            }
                        }
                        done();
                        if status_dirty && status_written.elapsed() >= Duration::from_secs(1) {
                            write_status(&writer, &shared, &leases, &group);
                            status_written = Instant::now();
                            status_dirty = false;
                        }
                    }
                }
            }
            // At the end every lease this process still holds is reported, current or
            // not (the assignment is gone at shutdown); the document keeps the furthest
            // progress per partition, so a stale entry never hides a newer owner's.
            write_status_of(&writer, &shared, &leases, &group, false);
        })
        .expect("spawn writer thread")
}

/// Publishes this process's partitions in the group's status document (best effort:
/// a failure is logged, the next round writes it again).
fn write_status(
    writer: &BatchWriter,
    shared: &Shared,
    leases: &HashMap<(usize, i32), Lease>,
    group: &str,
) {
    write_status_of(writer, shared, leases, group, true)
}

/// [`write_status`] of the partitions still assigned (`only_current`), or of every
/// lease held.
fn write_status_of(
    writer: &BatchWriter,
    shared: &Shared,
    leases: &HashMap<(usize, i32), Lease>,
    group: &str,
    only_current: bool,
) {
    let now = chrono::Utc::now();
    let hw = shared.high_watermarks.lock().expect("hw lock").clone();
    let stopped = shared.stopped.lock().expect("stopped lock").clone();
    let mut entries: Vec<PartitionStatus> = leases
        .iter()
        .filter(|(k, l)| !only_current || shared.current(**k, l.generation))
        .map(|(k, l)| {
            let high = hw.get(k).copied();
            let next = l.state.next_offset;
            PartitionStatus {
                topic: shared.topics[k.0].0.clone(),
                partition: k.1,
                next_offset_stored: next,
                high_watermark: high,
                lag: high.map_or(0, |h| (h - next.unwrap_or(0)).max(0)),
                lines_written: l.state.lines_written,
                messages_written: l.state.messages_written,
                dead_letters: l.state.dead_letters,
                state: stopped.get(k).cloned().unwrap_or_else(|| "ok".into()),
                updated_at: Some(now),
            }
        })
        .collect();
    for (k, why) in &stopped {
        if !entries
            .iter()
            .any(|e| e.topic == shared.topics[k.0].0 && e.partition == k.1)
        {
            entries.push(PartitionStatus {
                topic: shared.topics[k.0].0.clone(),
                partition: k.1,
                high_watermark: hw.get(k).copied(),
                state: why.clone(),
                updated_at: Some(now),
                ..PartitionStatus::default()
            });
        }
    }
    if entries.is_empty() {
        return;
    }
    if let Err(e) = shared.handle.block_on(spectra_core::status::write(
        &writer.storage,
        group,
        &entries,
    )) {
        tracing::warn!(error = %e, "could not write the ingest status document");
    }
}
