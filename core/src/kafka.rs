//! Kafka client settings shared by every service, and topic checks: Spectra creates a
//! missing topic when allowed to (compacted where the contract says so) and otherwise
//! names the missing topic in its error.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use crate::config::Config;

/// Errors talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A topic Spectra needs does not exist and may not be created.
    #[error("topic `{topic}` does not exist on `{brokers}`; create it, or set kafka.create_topics = true (SPECTRA__KAFKA__CREATE_TOPICS=true)")]
    MissingTopic {
        /// The topic.
        topic: String,
        /// The brokers asked.
        brokers: String,
    },
    /// An output topic is not compacted: its consumers would lose current values.
    #[error("topic `{topic}` has cleanup.policy={policy}; Spectra's output topics must be compacted (`kafka-configs --alter --entity-type topics --entity-name {topic} --add-config cleanup.policy=compact`), or set publish.require_compacted_topics = false for a broker that cannot compact")]
    NotCompacted {
        /// The topic.
        topic: String,
        /// Its policy as the broker describes it.
        policy: String,
    },
    /// The broker cannot describe a topic's configuration, so compaction cannot be
    /// checked.
    #[error("cannot read the cleanup.policy of topic `{topic}` on `{brokers}` ({reason}); check it is compacted and set publish.require_compacted_topics = false to skip the check")]
    CannotDescribe {
        /// The topic.
        topic: String,
        /// The brokers asked.
        brokers: String,
        /// The broker's answer.
        reason: String,
    },
    /// The broker could not be reached or refused a request (an external system: retry).
    #[error("kafka at `{brokers}`: {source}")]
    Client {
        /// The brokers asked.
        brokers: String,
        /// The client's error.
        source: rdkafka::error::KafkaError,
    },
}

/// How a topic is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// `cleanup.policy=delete` (time-based).
    Delete,
    /// `cleanup.policy=compact` (last value per key).
    Compact,
}

/// A client configuration with the brokers and the configured extra properties.
pub fn client_config(cfg: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in cfg.client_properties() {
        c.set(k, v);
    }
    c
}

/// Makes sure every topic exists, creating missing ones when `kafka.create_topics` is on.
pub async fn ensure_topics(cfg: &Config, topics: &[(&str, Retention)]) -> Result<(), KafkaError> {
    let brokers = cfg.kafka.brokers.clone();
    let err = |source| KafkaError::Client {
        brokers: brokers.clone(),
        source,
    };
    let existing = existing_topics(cfg).await.map_err(err)?;
    let missing: Vec<_> = topics
        .iter()
        .filter(|(t, _)| !existing.iter().any(|e| e == t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !cfg.kafka.create_topics {
        return Err(KafkaError::MissingTopic {
            topic: missing[0].0.to_owned(),
            brokers,
        });
    }
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create().map_err(err)?;
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(t, r)| {
            let nt = NewTopic::new(
                t,
                cfg.kafka.partitions,
                TopicReplication::Fixed(cfg.kafka.replication),
            );
            match r {
                Retention::Compact => nt.set("cleanup.policy", "compact"),
                Retention::Delete => nt.set("cleanup.policy", "delete"),
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(&new, &opts).await.map_err(err)?;
    for r in results {
        match r {
            Ok(t) => tracing::info!(topic = %t, "created missing topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(KafkaError::Client {
                    brokers,
                    source: rdkafka::error::KafkaError::AdminOp(code),
                })
                .inspect_err(|_| tracing::error!(topic = %t, "could not create topic"))
            }
        }
    }
    // Give the brokers a moment to propagate the new topics' metadata.
    for _ in 0..50 {
        let now = existing_topics(cfg).await.map_err(err)?;
        if missing.iter().all(|(t, _)| now.iter().any(|e| e == t)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Checks every topic has `cleanup.policy=compact` (`compact,delete` included), with
/// the admin API's DescribeConfigs.
pub async fn check_compacted(cfg: &Config, topics: &[&str]) -> Result<(), KafkaError> {
    let brokers = cfg.kafka.brokers.clone();
    let admin: AdminClient<DefaultClientContext> =
        client_config(cfg)
            .create()
            .map_err(|source| KafkaError::Client {
                brokers: brokers.clone(),
                source,
            })?;
    let specs: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let cannot = |topic: &str, reason: String| KafkaError::CannotDescribe {
        topic: topic.to_owned(),
        brokers: brokers.clone(),
        reason,
    };
    let results = admin
        .describe_configs(&specs, &opts)
        .await
        .map_err(|e| cannot(topics.first().copied().unwrap_or_default(), e.to_string()))?;
    for (topic, r) in topics.iter().zip(results) {
        let resource = r.map_err(|code| cannot(topic, code.to_string()))?;
        let policy = resource
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .ok_or_else(|| cannot(topic, "no cleanup.policy in the answer".into()))?;
        if !policy.split(',').any(|p| p.trim() == "compact") {
            return Err(KafkaError::NotCompacted {
                topic: (*topic).to_owned(),
                policy,
            });
        }
    }
    Ok(())
}

/// Names of the topics the cluster has.
pub async fn existing_topics(cfg: &Config) -> Result<Vec<String>, rdkafka::error::KafkaError> {
    let c = client_config(cfg);
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = c.create()?;
        let md = consumer.fetch_metadata(None, Duration::from_secs(10))?;
        Ok(md.topics().iter().map(|t| t.name().to_owned()).collect())
    })
    .await
    .expect("metadata task does not panic")
}
