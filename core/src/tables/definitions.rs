//! Segmentations as data: every segmentation's definition, versioned, in storage.
//!
//! ```text
//! definitions/{name}/{version:06}.json    DefinitionVersion — one per change, never rewritten
//! ```
//!
//! A change writes the next version with a conditional create, so two writers (two API
//! replicas, a service seeding from its config file beside an edit) never overwrite
//! each other: the loser sees [`Appended::Conflict`] and re-reads. The highest version
//! is the current definition; the lower ones are the history (who, when, what).
//!
//! Where definitions come from ([`Source`]):
//! - the config file *seeds* them: a `[[segmentation]]` with no stored definition is
//!   written as version 1, and while the latest version came from the config file, a
//!   changed `[[segmentation]]` is written as the next version;
//! - the API creates, edits and retires them; once the latest version came from the
//!   API, the config file's table for that name is ignored (a warning says so).
//!
//! A **draft** is a segmentation named `{parent}.draft-{n}` (`.` is never in a
//! configured name) with [`DefinitionVersion::draft_of`] set: the aggregator rolls up
//! its features and the segmenter runs it like any other, the publisher never publishes
//! it. Promoting it closes the draft first (the write a discard competes for, so one of
//! them wins), then writes its parameters as the parent's next version with
//! [`DefinitionVersion::promoted_from`] (the segmenter then starts the parent's next
//! run from the draft's model); promoting again finishes a promotion interrupted
//! between the two ([`close_for_promotion`], [`finish_promotion`]). Discarding closes
//! it.
//!
//! [`active`] is what the services run: the configured segmentations (as stored), the
//! ones created through the API and not retired, and the open drafts of those.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::layout;
use crate::config::{Config, SegmentationConfig};
use crate::storage::{Condition, PutOutcome};
use crate::{Error, Result, Storage};

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A `[[segmentation]]` of the config file.
    Config,
    /// The HTTP API (or another program writing through this module).
    Api,
}

/// What a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Written from the config file, first time.
    Seeded,
    /// The config file's table changed.
    ConfigChanged,
    /// Created through the API.
    Created,
    /// Parameters edited.
    Edited,
    /// Retired: no more runs, nothing more published.
    Retired,
    /// A draft opened.
    Drafted,
    /// A draft's parameters became live (on the parent), or the draft was promoted (on
    /// the draft, closing it).
    Promoted,
    /// A draft discarded.
    Discarded,
    /// An outlet pinned to a segment.
    Pinned,
    /// An outlet's pin removed.
    Unpinned,
    /// Two segments merged by hand ([`Operation::Merge`]).
    Merged,
    /// A segment split by hand ([`Operation::Split`]).
    Split,
}

/// A change of the segments themselves, by hand, applied by the first run of the
/// version that carries it (the version also fixes `k` to the resulting number of
/// segments). Ids are handled as in the segmenter's own splits and merges: the kept
/// segment keeps its id, a retired id is never reused, a split's new half gets a new
/// id and the half nearer the old centroid keeps the old one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Operation {
    /// `retired`'s outlets join `kept`; `kept`'s centroid becomes the outlet-weighted
    /// mean of the two.
    Merge {
        /// The segment that stays.
        kept: String,
        /// The segment that goes.
        retired: String,
    },
    /// The segment's outlets are divided in two by 2-means on their features.
    Split {
        /// The segment split.
        segment_id: String,
    },
}

/// The draft a promotion took its parameters from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    /// The draft's name.
    pub draft: String,
    /// The draft's run that was compared and promoted.
    pub run_id: String,
}

/// One version of one segmentation's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefinitionVersion {
    /// The segmentation (a draft: `{parent}.draft-{n}`).
    pub name: String,
    /// 1, 2, … — never reused.
    pub version: u32,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// Who wrote it: `config`, or the API caller's name.
    pub by: String,
    /// Where it came from.
    pub source: Source,
    /// What it did.
    pub action: Action,
    /// Why, in the writer's words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Set on a draft: the segmentation it is a draft of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_of: Option<String>,
    /// Set on the versions a promotion wrote: the parent's (its next runs start from
    /// the draft's segments) and the draft's closing one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<Promotion>,
    /// Set on a version that merges or splits segments by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// The definition; `None` once retired (a draft: promoted or discarded).
    pub definition: Option<SegmentationConfig>,
}

impl DefinitionVersion {
    /// The next version of this one, by `by` from `source`, doing `action` with
    /// `definition`.
    pub fn next(
        &self,
        by: &str,
        source: Source,
        action: Action,
        note: &str,
        definition: Option<SegmentationConfig>,
    ) -> Self {
        Self {
            name: self.name.clone(),
            version: self.version + 1,
            at: Utc::now(),
            by: by.to_owned(),
            source,
            action,
            note: note.to_owned(),
            draft_of: self.draft_of.clone(),
            promoted_from: None,
            operation: None,
            definition,
        }
    }

    /// Whether it is a draft.
    pub fn is_draft(&self) -> bool {
        self.draft_of.is_some()
    }
}

/// The outcome of [`append`].
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// Written.
    Written(Box<DefinitionVersion>),
    /// Another writer wrote this version first; re-read and decide again.
    Conflict,
}

/// Whether `name` is a draft's (`{parent}.draft-{n}`).
pub fn is_draft_name(name: &str) -> bool {
    name.contains(".draft-")
}

/// The full name of draft `draft` of `parent`: `draft` itself when it is already
/// `{parent}.draft-{n}`, else `{parent}.{draft}` (`draft-2` → `mix.draft-2`).
pub fn draft_full_name(parent: &str, draft: &str) -> String {
    if draft.contains('.') {
        draft.to_owned()
    } else {
        format!("{parent}.{draft}")
    }
}

/// The parent of a draft name.
pub fn draft_parent(name: &str) -> Option<&str> {
    name.split_once(".draft-").map(|(p, _)| p)
}

/// Every stored version of `name`, oldest first.
pub async fn history(storage: &Storage, name: &str) -> Result<Vec<DefinitionVersion>> {
    let mut out = Vec::new();
    for v in versions_of(storage, name).await? {
        if let Some(d) = storage
            .get_json::<DefinitionVersion>(&layout::definition(name, v))
            .await?
        {
            out.push(d);
        }
    }
    Ok(out)
}

/// The current (highest) version of `name`.
pub async fn current(storage: &Storage, name: &str) -> Result<Option<DefinitionVersion>> {
    let Some(&v) = versions_of(storage, name).await?.last() else {
        return Ok(None);
    };
    storage.get_json(&layout::definition(name, v)).await
}

/// The current version of every stored segmentation (drafts included), by name.
pub async fn all_current(storage: &Storage) -> Result<BTreeMap<String, DefinitionVersion>> {
    let mut out = BTreeMap::new();
    for (name, vs) in versions_under(storage, layout::DEFINITIONS).await? {
        if let Some(v) = vs.last() {
            // Versions are created once and never rewritten.
            let path = layout::definition(&name, *v);
            if let Some(data) = storage.get_write_once(&path).await? {
                let d: DefinitionVersion =
                    serde_json::from_slice(&data).map_err(|source| Error::Json { path, source })?;
                out.insert(name, d);
            }
        }
    }
    Ok(out)
}

/// Stored versions of `name`, sorted: one listing of its own folder, whatever the
/// other segmentations and drafts hold (the API reads a segmentation's current
/// version on every request that changes it).
async fn versions_of(storage: &Storage, name: &str) -> Result<Vec<u32>> {
    let folder = layout::definition_folder(name);
    Ok(versions_under(storage, &folder)
        .await?
        .remove(name)
        .unwrap_or_default())
}

/// Stored versions per name under `prefix` (of [`layout::DEFINITIONS`]), sorted.
async fn versions_under(storage: &Storage, prefix: &str) -> Result<BTreeMap<String, Vec<u32>>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for l in storage.list(prefix).await? {
        if let Some((name, v)) = layout::definition_of(&l.path) {
            out.entry(name.to_owned()).or_default().push(v);
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    Ok(out)
}

/// Writes `next` (its `version` is the one after the current) unless another writer
/// wrote that version first. Its definition is checked first: a definition with
/// problems is refused as [`Error::Config`].
pub async fn append(storage: &Storage, next: DefinitionVersion) -> Result<Appended> {
    if let Some(d) = &next.definition {
        let mut problems = d.check();
        if d.name != next.name {
            problems.push(format!(
                "the definition is named `{}`, not `{}`",
                d.name, next.name
            ));
        }
        if !problems.is_empty() {
            return Err(Error::Config(problems));
        }
    }
    let data = serde_json::to_vec_pretty(&next).map_err(|e| Error::Json {
        path: layout::definition(&next.name, next.version),
        source: e,
    })?;
    let path = layout::definition(&next.name, next.version);
    match storage
        .put_if(&path, bytes::Bytes::from(data), &Condition::Absent)
        .await?
    {
        PutOutcome::Written(_) => Ok(Appended::Written(Box::new(next))),
        PutOutcome::Conflict => Ok(Appended::Conflict),
    }
}

/// A version 1.
pub fn first(
    name: &str,
    by: &str,
    source: Source,
    action: Action,
    definition: SegmentationConfig,
) -> DefinitionVersion {
    DefinitionVersion {
        name: name.to_owned(),
        version: 1,
        at: Utc::now(),
        by: by.to_owned(),
        source,
        action,
        note: String::new(),
        draft_of: None,
        promoted_from: None,
        operation: None,
        definition: Some(definition),
    }
}

/// Writes the config file's segmentations into storage (see the module docs); safe
/// to run from every service at once.
pub async fn seed(storage: &Storage, cfg: &Config) -> Result<()> {
    for s in &cfg.segmentation {
        for _attempt in 0..8 {
            let cur = current(storage, &s.name).await?;
            let next = match &cur {
                None => first(&s.name, "config", Source::Config, Action::Seeded, s.clone()),
                Some(c) if c.source == Source::Config => {
                    if same(c.definition.as_ref(), s) {
                        break;
                    }
                    c.next(
                        "config",
                        Source::Config,
                        Action::ConfigChanged,
                        "",
                        Some(s.clone()),
                    )
                }
                Some(c) => {
                    if !same(c.definition.as_ref(), s) {
                        tracing::debug!(segmentation = %s.name, version = c.version, by = %c.by,
                            "the config file's [[segmentation]] differs from the definition last changed through the API; the API's version stands");
                    }
                    break;
                }
            };
            match append(storage, next).await? {
                Appended::Written(_) => break,
                Appended::Conflict => continue,
            }
        }
    }
    Ok(())
}

fn same(stored: Option<&SegmentationConfig>, config: &SegmentationConfig) -> bool {
    stored.is_some_and(|d| serde_json::to_value(d).ok() == serde_json::to_value(config).ok())
}

/// A segmentation the services run.
#[derive(Debug, Clone, PartialEq)]
pub struct Active {
    /// Its definition.
    pub definition: SegmentationConfig,
    /// The stored version it is.
    pub version: DefinitionVersion,
}

impl Active {
    /// The segmentation's name.
    pub fn name(&self) -> &str {
        &self.definition.name
    }
}

/// Seeds from `cfg` ([`seed`]), then returns what runs: the configured segmentations
/// (as stored), the API's not retired, and their open drafts, sorted by name.
pub async fn active(storage: &Storage, cfg: &Config) -> Result<Vec<Active>> {
    seed(storage, cfg).await?;
    running(storage, cfg).await
}

/// The definitions that run, as [`active`] gives them, without seeding the config
/// file's first: for readers that seed elsewhere (the publisher's API answers from
/// what its publish cycles seeded).
pub async fn running(storage: &Storage, cfg: &Config) -> Result<Vec<Active>> {
    let configured: BTreeSet<&str> = cfg.segmentation.iter().map(|s| s.name.as_str()).collect();
    let all = all_current(storage).await?;
    let live = |d: &DefinitionVersion| {
        d.definition.is_some() && (d.source == Source::Api || configured.contains(d.name.as_str()))
    };
    let mut out = Vec::new();
    for d in all.values() {
        let runs = match &d.draft_of {
            None => live(d),
            Some(parent) => d.definition.is_some() && all.get(parent).is_some_and(live),
        };
        if runs {
            if let Some(def) = &d.definition {
                out.push(Active {
                    definition: def.clone(),
                    version: d.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// The first of a promotion's two writes, and the one that decides it: the draft's
/// next version, closed (no definition) with action [`Action::Promoted`] and the run
/// promoted. A discard (or an edit) of the draft writes the same version number, so of
/// the two exactly one lands; the parent is changed only after this one did.
pub async fn close_for_promotion(
    storage: &Storage,
    draft: &DefinitionVersion,
    run_id: &str,
    by: &str,
    note: &str,
) -> Result<Appended> {
    let mut closing = draft.next(by, Source::Api, Action::Promoted, note, None);
    closing.promoted_from = Some(Promotion {
        draft: draft.name.clone(),
        run_id: run_id.to_owned(),
    });
    append(storage, closing).await
}

/// The second write of a promotion: the parent's next version with the draft's last
/// definition (under the parent's name) and [`DefinitionVersion::promoted_from`],
/// written over another change of the parent that lands meanwhile. `closed` is the
/// draft's version [`close_for_promotion`] wrote. Finishing again is harmless: when
/// a version of the parent already came from this promotion it is returned, so a
/// promotion a crash interrupted between its two writes is finished by promoting the
/// draft again.
pub async fn finish_promotion(
    storage: &Storage,
    parent: &str,
    closed: &DefinitionVersion,
    by: &str,
    note: &str,
) -> Result<DefinitionVersion> {
    let run_id = match (&closed.action, &closed.promoted_from, &closed.definition) {
        (Action::Promoted, Some(p), None) => p.run_id.clone(),
        _ => {
            return Err(Error::Config(vec![format!(
                "version {} of `{}` does not close it for a promotion",
                closed.version, closed.name
            )]))
        }
    };
    if let Some(done) = promoted_from(storage, parent, &closed.name).await? {
        return Ok(done);
    }
    let mut def = history(storage, &closed.name)
        .await?
        .into_iter()
        .rev()
        .find_map(|v| v.definition.filter(|_| v.version < closed.version))
        .ok_or_else(|| {
            Error::Config(vec![format!(
                "draft `{}` has no definition to promote",
                closed.name
            )])
        })?;
    def.name = parent.to_owned();
    for _ in 0..16 {
        let cur = current(storage, parent).await?.ok_or_else(|| {
            Error::Config(vec![format!(
                "segmentation `{parent}` has no stored definition"
            )])
        })?;
        if cur.definition.is_none() {
            return Err(Error::Config(vec![format!(
                "segmentation `{parent}` is retired (version {})",
                cur.version
            )]));
        }
        // Another call finishing the same promotion landed first.
        if cur
            .promoted_from
            .as_ref()
            .is_some_and(|p| p.draft == closed.name)
        {
            return Ok(cur);
        }
        let mut v = cur.next(by, Source::Api, Action::Promoted, note, Some(def.clone()));
        v.promoted_from = Some(Promotion {
            draft: closed.name.clone(),
            run_id: run_id.clone(),
        });
        if let Appended::Written(v) = append(storage, v).await? {
            return Ok(*v);
        }
    }
    Err(Error::Config(vec![format!(
        "segmentation `{parent}` kept changing; promote draft `{}` again to finish",
        closed.name
    )]))
}

/// The version of `parent` that promoted `draft`, if one did.
pub async fn promoted_from(
    storage: &Storage,
    parent: &str,
    draft: &str,
) -> Result<Option<DefinitionVersion>> {
    Ok(history(storage, parent)
        .await?
        .into_iter()
        .find(|v| v.promoted_from.as_ref().is_some_and(|p| p.draft == draft)))
}

/// The drafts of `parent` ever opened (open and closed), by name.
pub async fn drafts(storage: &Storage, parent: &str) -> Result<Vec<DefinitionVersion>> {
    Ok(all_current(storage)
        .await?
        .into_values()
        .filter(|d| d.draft_of.as_deref() == Some(parent))
        .collect())
}

/// Opens a draft of `parent` with `definition` (its name is replaced by the draft's):
/// the next free `{parent}.draft-{n}`.
pub async fn open_draft(
    storage: &Storage,
    parent: &str,
    by: &str,
    note: &str,
    definition: SegmentationConfig,
) -> Result<DefinitionVersion> {
    // The definition is checked under the parent's name (a draft's has a dot).
    let problems = definition.check();
    if !problems.is_empty() {
        return Err(Error::Config(problems));
    }
    let taken = drafts(storage, parent).await?.len() as u32;
    for n in taken + 1..taken + 64 {
        let name = format!("{parent}.draft-{n}");
        let mut d = definition.clone();
        d.name = name.clone();
        let mut v = first(&name, by, Source::Api, Action::Drafted, d);
        v.note = note.to_owned();
        v.draft_of = Some(parent.to_owned());
        let data = serde_json::to_vec_pretty(&v).map_err(|e| Error::Json {
            path: layout::definition(&name, 1),
            source: e,
        })?;
        match storage
            .put_if(
                &layout::definition(&name, 1),
                bytes::Bytes::from(data),
                &Condition::Absent,
            )
            .await?
        {
            PutOutcome::Written(_) => return Ok(v),
            PutOutcome::Conflict => continue,
        }
    }
    Err(Error::Config(vec![format!(
        "could not claim a draft name for `{parent}`; try again"
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(k: usize) -> Config {
        let mut c = Config::default();
        let mut s = SegmentationConfig::named("mix");
        s.k = crate::config::KSpec::Fixed(k);
        c.segmentation = vec![s];
        c
    }

    /// A segmentation's versions are its own folder's, whatever other names begin
    /// with its name (`mixer`, its drafts `mix.draft-1`).
    #[tokio::test]
    async fn a_segmentation_reads_only_its_own_versions() {
        let s = Storage::memory();
        let mut c = cfg(4);
        c.segmentation.push(SegmentationConfig::named("mixer"));
        active(&s, &c).await.unwrap();
        let mut def = SegmentationConfig::named("mix");
        def.k = crate::config::KSpec::Fixed(6);
        let draft = open_draft(&s, "mix", "ana", "finer", def).await.unwrap();
        assert_eq!(draft.name, "mix.draft-1");
        // `mixer` gets two more versions than `mix`.
        for k in [5, 6] {
            let cur = current(&s, "mixer").await.unwrap().unwrap();
            let mut d = cur.definition.clone().unwrap();
            d.k = crate::config::KSpec::Fixed(k);
            let next = cur.next("ana", Source::Api, Action::Edited, "", Some(d));
            assert!(matches!(
                append(&s, next).await.unwrap(),
                Appended::Written(_)
            ));
        }
        let mix = current(&s, "mix").await.unwrap().unwrap();
        assert_eq!((mix.name.as_str(), mix.version), ("mix", 1));
        assert_eq!(history(&s, "mix").await.unwrap().len(), 1);
        assert_eq!(history(&s, "mixer").await.unwrap().len(), 3);
        assert_eq!(
            current(&s, "mix.draft-1").await.unwrap().unwrap().version,
            1
        );
        assert_eq!(current(&s, "mi").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_promotion_and_a_discard_of_one_draft_cannot_both_land() {
        let s = Storage::memory();
        active(&s, &cfg(4)).await.unwrap();
        let mut def = SegmentationConfig::named("mix");
        def.k = crate::config::KSpec::Fixed(6);
        let draft = open_draft(&s, "mix", "ana", "finer", def).await.unwrap();
        // Both read the open draft; the promotion closes it first.
        let closed = close_for_promotion(&s, &draft, "mix.draft-1/2026-11-01/1", "ana", "")
            .await
            .unwrap();
        let Appended::Written(closed) = closed else {
            panic!("the promotion closes the draft")
        };
        let discard = draft.next("bo", Source::Api, Action::Discarded, "", None);
        assert_eq!(append(&s, discard).await.unwrap(), Appended::Conflict);
        let promoted = finish_promotion(&s, "mix", &closed, "ana", "")
            .await
            .unwrap();
        assert_eq!(promoted.version, 2);
        assert_eq!(
            promoted
                .definition
                .as_ref()
                .map(|d| (d.name.as_str(), &d.k)),
            Some(("mix", &crate::config::KSpec::Fixed(6)))
        );
        let current_draft = current(&s, "mix.draft-1").await.unwrap().unwrap();
        assert_eq!(current_draft.action, Action::Promoted);

        // The other order: a discard first, and the promotion changes nothing.
        let mut def = SegmentationConfig::named("mix");
        def.k = crate::config::KSpec::Fixed(3);
        let draft = open_draft(&s, "mix", "ana", "coarser", def).await.unwrap();
        let discard = draft.next("bo", Source::Api, Action::Discarded, "", None);
        assert!(matches!(
            append(&s, discard).await.unwrap(),
            Appended::Written(_)
        ));
        let late = close_for_promotion(&s, &draft, "mix.draft-2/2026-11-01/1", "ana", "");
        assert_eq!(late.await.unwrap(), Appended::Conflict);
        assert_eq!(history(&s, "mix").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_promotion_a_crash_interrupted_is_finished_once() {
        let s = Storage::memory();
        active(&s, &cfg(4)).await.unwrap();
        let mut def = SegmentationConfig::named("mix");
        def.k = crate::config::KSpec::Fixed(6);
        let draft = open_draft(&s, "mix", "ana", "finer", def).await.unwrap();
        let Appended::Written(closed) =
            close_for_promotion(&s, &draft, "mix.draft-1/2026-11-01/1", "ana", "")
                .await
                .unwrap()
        else {
            panic!("the promotion closes the draft")
        };
        // The process dies here; meanwhile the parent is edited.
        assert_eq!(promoted_from(&s, "mix", "mix.draft-1").await.unwrap(), None);
        active(&s, &cfg(5)).await.unwrap();
        // Promoting again finishes it on top of the edit, and only once.
        let promoted = finish_promotion(&s, "mix", &closed, "ana", "")
            .await
            .unwrap();
        assert_eq!(promoted.version, 3);
        let p = promoted.promoted_from.as_ref().unwrap();
        assert_eq!(
            (p.draft.as_str(), p.run_id.as_str()),
            ("mix.draft-1", "mix.draft-1/2026-11-01/1")
        );
        assert_eq!(
            promoted.definition.as_ref().unwrap().k,
            crate::config::KSpec::Fixed(6)
        );
        let again = finish_promotion(&s, "mix", &closed, "ana", "")
            .await
            .unwrap();
        assert_eq!(again, promoted);
        assert_eq!(history(&s, "mix").await.unwrap().len(), 3);
        // Only a draft's closing version finishes a promotion.
        assert!(finish_promotion(&s, "mix", &draft, "ana", "")
            .await
            .is_err());
    }

    #[tokio::test]
    async fn the_config_seeds_and_the_api_then_owns_a_segmentation() {
        let s = Storage::memory();
        let a = active(&s, &cfg(4)).await.unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].version.version, 1);
        assert_eq!(a[0].version.action, Action::Seeded);
        // The same config again writes nothing; a changed one writes version 2.
        active(&s, &cfg(4)).await.unwrap();
        assert_eq!(history(&s, "mix").await.unwrap().len(), 1);
        let a = active(&s, &cfg(5)).await.unwrap();
        assert_eq!(a[0].version.version, 2);
        assert_eq!(a[0].version.action, Action::ConfigChanged);
        // An API edit takes over: the config file no longer changes it.
        let cur = current(&s, "mix").await.unwrap().unwrap();
        let mut d = cur.definition.clone().unwrap();
        d.k = crate::config::KSpec::Fixed(7);
        let next = cur.next("ana", Source::Api, Action::Edited, "seven", Some(d));
        assert!(matches!(
            append(&s, next.clone()).await.unwrap(),
            Appended::Written(_)
        ));
        // The same version twice is a conflict, never an overwrite.
        assert_eq!(append(&s, next).await.unwrap(), Appended::Conflict);
        let a = active(&s, &cfg(5)).await.unwrap();
        assert_eq!(a[0].definition.k, crate::config::KSpec::Fixed(7));
        assert_eq!(history(&s, "mix").await.unwrap().len(), 3);
        // A draft runs beside its parent; retiring the parent stops both.
        let draft = open_draft(&s, "mix", "ana", "", a[0].definition.clone())
            .await
            .unwrap();
        assert_eq!(draft.name, "mix.draft-1");
        let names: Vec<String> = active(&s, &cfg(5))
            .await
            .unwrap()
            .iter()
            .map(|a| a.name().to_owned())
            .collect();
        assert_eq!(names, ["mix", "mix.draft-1"]);
        let cur = current(&s, "mix").await.unwrap().unwrap();
        let retired = cur.next("ana", Source::Api, Action::Retired, "", None);
        append(&s, retired).await.unwrap();
        assert!(active(&s, &cfg(5)).await.unwrap().is_empty());
        // A bad definition is refused with its problems.
        let mut bad = SegmentationConfig::named("mix");
        bad.window_days = 0;
        let v = first("other", "ana", Source::Api, Action::Created, bad);
        assert!(matches!(append(&s, v).await, Err(Error::Config(_))));
    }
}
