//! The consumer context: librdkafka's rebalance callbacks, which hand assigned
//! partitions to the writer for their leases and discard what revoked ones held.

use super::*;

/// The consumer context: rebalances hand partitions to the writer for their leases.
pub struct IngestContext {
    shared: Arc<Shared>,
}

impl ClientContext for IngestContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // End of partition is an event `--once` relies on, not an error.
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || matches!(&error, KafkaError::Global(c) if *c == rdkafka::types::RDKafkaErrorCode::PartitionEOF);
        if !eof {
            tracing::error!(error = %error, reason, "kafka client error");
        }
    }

    /// librdkafka's statistics carry each partition's high watermark, from fetch
    /// responses (some brokers, Tansu, answer ListOffsets with a wrong one). It gives the
    /// consumer lag, the end `--once` waits for, and one offset-domain check: a high
    /// watermark below the checkpoint means the partition's offsets went back.
    fn stats(&self, stats: rdkafka::Statistics) {
        for (topic, t) in &stats.topics {
            let Some(ti) = self.shared.topic_index(topic) else {
                continue;
            };
            for (p, part) in &t.partitions {
                if *p < 0 || part.hi_offset < 0 {
                    continue;
                }
                let key = (ti, *p);
                let (lag, below) = {
                    let mut owned = self.shared.owned.lock().expect("owned lock");
                    let Some(o) = owned.get_mut(&key) else {
                        continue;
                    };
                    let reading = matches!(o.phase, Phase::Ready | Phase::Verifying { .. });
                    if !reading {
                        continue;
                    }
                    o.end.get_or_insert(part.hi_offset);
                    if let Phase::Verifying { offset, .. } = o.phase {
                        if part.lo_offset == offset + 1 {
                            // The last stored message expired (nothing after it was
                            // lost): nothing to verify it against; read on.
                            o.phase = Phase::Ready;
                        }
                    }
                    let below = o.checkpoint.filter(|&n| part.hi_offset < n);
                    // Lag is measured from what this consumer has read (the Kafka commit
                    // trails the storage checkpoint, so librdkafka's own lag would overstate it).
                    let lag =
                        (part.hi_offset - o.next_offset.unwrap_or(part.lo_offset.max(0))).max(0);
                    (lag, below)
                };
                self.shared
                    .high_watermarks
                    .lock()
                    .expect("hw lock")
                    .insert(key, part.hi_offset);
                self.shared
                    .metrics
                    .consumer_lag
                    .get_or_create(&PartitionLabels {
                        topic: topic.clone(),
                        partition: p.to_string(),
                    })
                    .set(lag);
                if let Some(n) = below {
                    self.shared.refuse(key, DomainError {
                        reason: "offset_reset",
                        detail: format!(
                            "the broker's high watermark is {} but the checkpoint says offsets below {n} were stored: the topic was recreated or its log truncated",
                            part.hi_offset
                        ),
                    });
                }
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let s = &self.shared;
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let parts: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                // Assigned paused at the beginning; the poll loop seeks to the
                // checkpoint once the writer holds the lease.
                let mut assigned = TopicPartitionList::new();
                let mut keys = HashSet::new();
                for (topic, p) in &parts {
                    let _ = assigned.add_partition_offset(topic, *p, Offset::Beginning);
                    let Some(ti) = s.topic_index(topic) else {
                        continue;
                    };
                    let generation = s.generation.fetch_add(1, Ordering::SeqCst) + 1;
                    keys.insert((ti, *p));
                    s.owned.lock().expect("owned lock").insert(
                        (ti, *p),
                        Owned {
                            generation,
                            phase: Phase::Acquiring,
                            epoch: 0,
                            next_offset: None,
                            checkpoint: None,
                            end: None,
                        },
                    );
                    let _ = s.to_writer.send(WriterMsg::Acquire {
                        topic: topic.clone(),
                        partition: *p,
                        generation,
                    });
                }
                s.batches
                    .lock()
                    .expect("batches lock")
                    .retain(|k, _| !keys.contains(k));
                if let Err(e) = consumer.assign(&assigned) {
                    tracing::error!(error = %e, "assign failed");
                }
                if let Err(e) = consumer.pause(&assigned) {
                    tracing::warn!(error = %e, "pause after assign failed");
                }
                s.paused.lock().expect("paused lock").extend(keys);
                tracing::info!(
                    partitions = parts.len(),
                    "partitions assigned; taking their leases"
                );
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                let revoked: HashSet<(usize, i32)> = tpl
                    .elements()
                    .iter()
                    .filter_map(|e| s.topic_index(e.topic()).map(|i| (i, e.partition())))
                    .collect();
                // Nothing waits on storage here: open batches are discarded (the next
                // owner replays them from the checkpoint), queued ones are dropped by the
                // writer (their assignment is over), and one being written lands before
                // the next owner's lease or is fenced by it.
                let discarded = {
                    let mut b = s.batches.lock().expect("batches lock");
                    let before = b.len();
                    b.retain(|k, _| !revoked.contains(k));
                    before - b.len()
                };
                if !lost {
                    commit(consumer, s, CommitMode::Sync);
                }
                s.owned
                    .lock()
                    .expect("owned lock")
                    .retain(|k, _| !revoked.contains(k));
                s.paused
                    .lock()
                    .expect("paused lock")
                    .retain(|k| !revoked.contains(k));
                s.stopped
                    .lock()
                    .expect("stopped lock")
                    .retain(|k, _| !revoked.contains(k));
                tracing::info!(
                    partitions = revoked.len(),
                    discarded_batches = discarded,
                    lost,
                    "partitions revoked"
                );
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => tracing::error!(error = ?other, "rebalance error"),
        }
    }
}

/// The context for a consumer sharing `shared`.
pub fn context(shared: Arc<Shared>) -> IngestContext {
    IngestContext { shared }
}
