//! Segment names, descriptions and tags set by people (contract §3.4). The compacted
//! topic `segment-metadata` is their store: the publisher reads it from the beginning at
//! start, keeps tailing it (another instance or tool may write it too), and the HTTP API
//! writes it. [`MetadataUpdate::validate`] checks what a person sent.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// The metadata of one segment, as carried by the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMetadata {
    /// The segmentation.
    pub segmentation: String,
    /// The segment.
    pub segment_id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Tags such as `#premium`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Who set it.
    #[serde(default)]
    pub updated_by: String,
    /// When (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
}

impl SegmentMetadata {
    /// The topic key, `{segmentation}:{segment_id}`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.segmentation, self.segment_id)
    }
}

/// The body of `PUT /api/segmentations/{name}/segments/{id}`: every field optional;
/// a field left out keeps its current value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataUpdate {
    /// New display name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New tags (the whole list).
    pub tags: Option<Vec<String>>,
    /// Who is editing (defaults to `api`).
    pub updated_by: Option<String>,
}

/// Longest segment name, in characters.
pub const MAX_NAME: usize = 80;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 2000;
/// Most tags per segment.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
pub const MAX_TAG: usize = 40;

impl MetadataUpdate {
    /// Checks the update and applies it over `current`; the error is a sentence naming
    /// the field.
    pub fn validate(&self, mut current: SegmentMetadata) -> Result<SegmentMetadata, String> {
        if self.name.is_none() && self.description.is_none() && self.tags.is_none() {
            return Err(
                "nothing to change: send at least one of `name`, `description`, `tags`".into(),
            );
        }
        if let Some(n) = &self.name {
            let n = n.trim();
            if n.is_empty() {
                return Err(
                    "`name` is empty; give the segment a name people will recognise".into(),
                );
            }
            if n.chars().count() > MAX_NAME {
                return Err(format!("`name` is longer than {MAX_NAME} characters"));
            }
            if n.chars().any(char::is_control) {
                return Err("`name` contains control characters".into());
            }
            current.name = n.to_owned();
        }
        if let Some(d) = &self.description {
            if d.chars().count() > MAX_DESCRIPTION {
                return Err(format!(
                    "`description` is longer than {MAX_DESCRIPTION} characters"
                ));
            }
            current.description = d.trim().to_owned();
        }
        if let Some(tags) = &self.tags {
            if tags.len() > MAX_TAGS {
                return Err(format!(
                    "`tags` has {} entries; at most {MAX_TAGS} are allowed",
                    tags.len()
                ));
            }
            let mut clean: Vec<String> = Vec::with_capacity(tags.len());
            for (i, t) in tags.iter().enumerate() {
                let t = t.trim();
                if t.is_empty() {
                    return Err(format!("`tags[{i}]` is empty"));
                }
                if t.chars().count() > MAX_TAG {
                    return Err(format!("`tags[{i}]` is longer than {MAX_TAG} characters"));
                }
                if t.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ',')
                {
                    return Err(format!(
                        "`tags[{i}]` (`{t}`) contains a space or comma; use one word per tag, e.g. `#premium`"
                    ));
                }
                if !clean.iter().any(|c| c == t) {
                    clean.push(t.to_owned());
                }
            }
            current.tags = clean;
        }
        if let Some(by) = &self.updated_by {
            if by.chars().count() > 200 {
                return Err("`updated_by` is longer than 200 characters".into());
            }
        }
        current.updated_by = self
            .updated_by
            .clone()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| "api".into());
        current.updated_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Ok(current)
    }
}

/// The current metadata of every segment, shared by the publisher loop and the API,
/// each with the offset of the message it came from on the metadata topic (a key
/// always lands in the same partition, so its offsets order its values).
#[derive(Clone, Default)]
pub struct MetadataStore {
    inner: Arc<RwLock<Labels>>,
}

/// Every segment's metadata by (segmentation, segment id), with its message's offset.
type Labels = HashMap<(String, String), (SegmentMetadata, i64)>;

impl MetadataStore {
    /// The metadata of a segment, if people set any.
    pub fn get(&self, segmentation: &str, segment_id: &str) -> Option<SegmentMetadata> {
        self.read()
            .get(&(segmentation.to_owned(), segment_id.to_owned()))
            .map(|(m, _)| m.clone())
    }

    /// Applies the message at `offset` of the topic (`None` = tombstone), unless the
    /// store holds a later message of the key already: the API applies its own write
    /// at once, and the feed reads it back later, perhaps after a newer one. True when
    /// it changed anything.
    pub fn apply(&self, key: &str, value: Option<SegmentMetadata>, offset: i64) -> bool {
        let Some((seg, id)) = key.split_once(':') else {
            return false;
        };
        let k = (seg.to_owned(), id.to_owned());
        let mut m = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if m.get(&k).is_some_and(|(_, at)| *at >= offset) {
            return false;
        }
        match value {
            None => m.remove(&k).is_some(),
            Some(v) => {
                let same = m.get(&k).is_some_and(|(old, _)| {
                    old.name == v.name && old.description == v.description && old.tags == v.tags
                });
                m.insert(k, (v, offset));
                !same
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Labels> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> SegmentMetadata {
        SegmentMetadata {
            segmentation: "mix".into(),
            segment_id: "S1".into(),
            name: "Old".into(),
            description: String::new(),
            tags: vec!["#a".into()],
            updated_by: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn updates_apply_over_current_and_bad_input_names_the_field() {
        let u = MetadataUpdate {
            tags: Some(vec![
                "#premium".into(),
                " #premium ".into(),
                "#coffee".into(),
            ]),
            ..Default::default()
        };
        let m = u.validate(base()).unwrap();
        assert_eq!(m.name, "Old");
        assert_eq!(m.tags, vec!["#premium", "#coffee"]);
        assert_eq!(m.updated_by, "api");
        let bad = MetadataUpdate {
            tags: Some(vec!["two words".into()]),
            ..Default::default()
        };
        assert!(bad.validate(base()).unwrap_err().contains("tags[0]"));
        let bad = MetadataUpdate {
            name: Some("  ".into()),
            ..Default::default()
        };
        assert!(bad
            .validate(base())
            .unwrap_err()
            .contains("`name` is empty"));
        assert!(MetadataUpdate::default().validate(base()).is_err());
    }

    #[test]
    fn store_reports_real_changes_only() {
        let s = MetadataStore::default();
        assert!(s.apply("mix:S1", Some(base()), 1));
        let mut again = base();
        again.updated_at = "later".into();
        assert!(!s.apply("mix:S1", Some(again), 2));
        // An older message read back after a newer one changes nothing.
        let mut newer = base();
        newer.name = "Newer".into();
        assert!(s.apply("mix:S1", Some(newer), 5));
        assert!(!s.apply("mix:S1", Some(base()), 3));
        assert_eq!(s.get("mix", "S1").unwrap().name, "Newer");
        assert!(!s.apply("mix:S1", None, 4));
        assert!(s.apply("mix:S1", None, 6));
        assert!(s.get("mix", "S1").is_none());
        assert!(!s.apply("no-colon", None, 7));
    }
}
