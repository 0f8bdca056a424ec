//! A segmentation's latest run as the segmenter wrote it (assignments, gaps, movements,
//! profiles, recommendations, model) with its outlets' KPIs and master records, loaded
//! once per run and shared by the publish cycle and the HTTP API. Nothing is
//! recomputed here: names, descriptions and tags people set are put in place of the
//! segmenter's proposals whenever a message or a response is built.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};

use serde::Serialize;
use serde_json::{json, Value};
use spectra_core::config::SegmentationConfig;
use spectra_core::Storage;

use crate::diff::Current;
use crate::metadata::MetadataStore;
use spectra_core::tables::profile::SegmentProfile;
use spectra_core::tables::runs::Recommendations;

use crate::tables::{self, OutletKpi, Run};
use crate::Error;

/// A segment's name, description and tags as they stand now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Label {
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
}

/// A run and its outlets' KPIs.
pub struct Snapshot {
    /// The run.
    pub run: Run,
    /// The profiles (the run's `profiles.json`), in segment id order.
    pub profiles: Vec<SegmentProfile>,
    /// KPIs and master record of every outlet of the run's features, as Arrow holds
    /// them: one outlet's row is decoded when it is asked for.
    pub kpis: spectra_core::tables::features::KpiTable,
    /// The window of the segmentation, days.
    pub window_days: u32,
    /// Current SKU names from master data (`master/skus/`), by SKU id, read with the
    /// run; joined wherever a person reads an SKU id.
    pub sku_names: HashMap<String, String>,
}

impl Snapshot {
    /// Loads a run and its features' KPIs.
    pub async fn load(
        storage: &Storage,
        latest: tables::Latest,
        segmentation: &str,
        window_days: u32,
    ) -> Result<Self, Error> {
        // Both by outlet id and found by binary search: an index of a million ids
        // would cost as much again as the ids themselves.
        let mut run = Run::read(storage, segmentation, latest).await?;
        let kpis =
            spectra_core::tables::features::KpiTable::read(storage, segmentation, run.latest.as_of)
                .await?;
        let profiles = std::mem::take(&mut run.profiles);
        let sku_names = spectra_core::tables::master::sku_names(storage).await?;
        Ok(Self {
            run,
            profiles,
            kpis,
            window_days,
            sku_names,
        })
    }

    /// The digest of [`Self::sku_names`] (the names every recommendations message
    /// joins to its items).
    pub fn sku_names_digest(&self) -> u64 {
        spectra_core::tables::recommendations::sku_names_digest(&self.sku_names)
    }

    /// An outlet's assignment in the run.
    pub fn assignment(&self, outlet_id: &str) -> Option<&tables::AssignmentRow> {
        let a = &self.run.assignments;
        a.binary_search_by(|x| x.outlet_id.as_str().cmp(outlet_id))
            .ok()
            .map(|i| &a[i])
    }

    /// The segmentation's name.
    pub fn segmentation(&self) -> &str {
        &self.run.segmentation
    }

    /// An outlet's KPIs and master record (its row decoded). A row that does not
    /// decode was read with the snapshot, so it cannot happen short of a bug: it is
    /// logged and the outlet shown without KPIs.
    pub fn kpi(&self, outlet_id: &str) -> Option<OutletKpi> {
        self.kpis.get(outlet_id).unwrap_or_else(|e| {
            tracing::error!(outlet_id, error = %e, "an outlet's KPIs do not decode");
            None
        })
    }

    /// An outlet's name, region, channel, value and lines, without decoding its row.
    pub fn kpi_brief(
        &self,
        outlet_id: &str,
    ) -> Option<spectra_core::tables::features::KpiBrief<'_>> {
        self.kpis.brief(outlet_id)
    }

    /// A segment's label: what people set, else what the segmenter proposed, else
    /// `Segment {id}`.
    pub fn label(&self, metadata: &MetadataStore, segment_id: &str) -> Label {
        let mut l = self
            .profiles
            .iter()
            .find(|p| p.segment_id == segment_id)
            .map(|p| Label {
                name: p.name.clone(),
                description: p.description.clone(),
                tags: p.tags.clone(),
            })
            .unwrap_or_default();
        if let Some(m) = metadata.get(self.segmentation(), segment_id) {
            if !m.name.is_empty() {
                l.name = m.name;
            }
            l.description = m.description;
            l.tags = m.tags;
        }
        if l.name.is_empty() {
            l.name = format!("Segment {segment_id}");
        }
        l
    }

    /// Each segment's label as it stands now, for [`Snapshot::currents`].
    pub fn labels(&self, metadata: &MetadataStore) -> HashMap<String, Label> {
        let mut out = HashMap::new();
        for a in &self.run.assignments {
            if !out.contains_key(&a.segment_id) {
                out.insert(a.segment_id.clone(), self.label(metadata, &a.segment_id));
            }
        }
        out
    }

    /// Every assignment with its segment's label (from `labels`, [`Snapshot::labels`]),
    /// by outlet id.
    pub fn currents<'a>(&'a self, labels: &'a HashMap<String, Label>) -> Vec<Current<'a>> {
        // The run's moves into the segment each outlet is in now.
        let moved: HashMap<(&str, &str), &tables::MovementRow> = self
            .run
            .movements
            .iter()
            .map(|m| ((m.outlet_id.as_str(), m.segment_id.as_str()), m))
            .collect();
        let mut out: Vec<Current> = self
            .run
            .assignments
            .iter()
            .map(|a| Current {
                outlet_id: &a.outlet_id,
                segment_id: &a.segment_id,
                label: &labels[&a.segment_id],
                confidence: a.confidence,
                evidence: moved
                    .get(&(a.outlet_id.as_str(), a.segment_id.as_str()))
                    .copied(),
            })
            .collect();
        if !out.is_sorted_by(|a, b| a.outlet_id < b.outlet_id) {
            out.sort_by(|a, b| a.outlet_id.cmp(b.outlet_id));
        }
        out
    }

    /// A segment profile message (contract §3.2): the run's profile with the label
    /// people set in place of the proposed one, and SKU names from master data beside
    /// SKU ids (`name` on spectrum and penetration features that are SKU ids, as at
    /// the `sku` level; `sku_name` on pattern SKUs).
    pub fn profile_message(&self, metadata: &MetadataStore, p: &SegmentProfile) -> Value {
        self.labelled_profile_message(self.label(metadata, &p.segment_id), p)
    }

    /// [`Snapshot::profile_message`] under a label already read (a cycle reads the
    /// metadata once, so that what it sends and what it records agree).
    pub fn labelled_profile_message(&self, l: Label, p: &SegmentProfile) -> Value {
        let mut p = p.clone();
        p.name = l.name;
        p.description = l.description;
        p.tags = l.tags;
        for pattern in &mut p.patterns {
            if let Some(lead) = pattern.skus.first() {
                if let Some(name) = self.sku_names.get(&lead.sku_id) {
                    let led = format!("led by {}", lead.sku_id);
                    pattern.name = pattern.name.replace(&led, &format!("led by {name}"));
                }
            }
        }
        let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
        // At the SKU level features are SKU ids: each gets the SKU's name beside it.
        for key in ["spectrum", "penetration"] {
            if let Some(features) = v.get_mut(key).and_then(Value::as_array_mut) {
                features
                    .iter_mut()
                    .for_each(|f| self.put_sku_name(f, "feature", "name"));
            }
        }
        if let Some(patterns) = v.get_mut("patterns").and_then(Value::as_array_mut) {
            for pattern in patterns {
                if let Some(skus) = pattern.get_mut("skus").and_then(Value::as_array_mut) {
                    skus.iter_mut().for_each(|k| self.name_sku(k));
                }
            }
        }
        v
    }

    /// Puts the SKU's master-data name beside its id (`sku_name`, absent when master
    /// data has none) in an object carrying `sku_id`.
    pub fn name_sku(&self, item: &mut Value) {
        self.put_sku_name(item, "sku_id", "sku_name");
    }

    /// Puts the name of the SKU whose id is at `id_key` at `name_key` of an object
    /// (nothing when the id is no SKU with a name).
    fn put_sku_name(&self, item: &mut Value, id_key: &str, name_key: &str) {
        let name = item
            .get(id_key)
            .and_then(Value::as_str)
            .and_then(|id| self.sku_names.get(id));
        if let (Some(name), Some(o)) = (name, item.as_object_mut()) {
            o.insert(name_key.to_owned(), json!(name));
        }
    }

    /// The run's `recommendations.parquet`.
    pub fn recommendations_file(&self) -> String {
        self.run
            .latest
            .file(spectra_core::tables::layout::run_files::RECOMMENDATIONS)
    }

    /// An outlet's recommendations message (contract §3.3), its lists read from the
    /// row groups of `recommendations.parquet` that can hold it; `None` when the
    /// outlet is not assigned or has no item in any list.
    pub async fn read_recommendation_message(
        &self,
        storage: &Storage,
        outlet_id: &str,
    ) -> Result<Option<Value>, Error> {
        let file = self.recommendations_file();
        Ok(
            spectra_core::tables::recommendations::read_outlet(storage, &file, outlet_id)
                .await?
                .and_then(|r| self.recommendation_message(outlet_id, &r)),
        )
    }

    /// The recommendations messages of the assigned outlets among `outlets` (lists as
    /// [`spectra_core::tables::recommendations::OutletLists`] gives them), as JSON.
    pub fn recommendation_messages(
        &self,
        outlets: Vec<(String, Recommendations)>,
    ) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
        let as_of = self.run.latest.as_of.to_string();
        outlets.into_iter().filter_map(move |(o, r)| {
            let m = self.recommendation(&o, &r, &as_of)?;
            let v = serde_json::to_vec(&m).expect("messages serialize");
            Some((o, v))
        })
    }

    /// An outlet recommendations message (contract §3.3) from its lists; `None` when
    /// the outlet is not assigned in the run.
    pub fn recommendation_message(&self, outlet_id: &str, r: &Recommendations) -> Option<Value> {
        let as_of = self.run.latest.as_of.to_string();
        let m = self.recommendation(outlet_id, r, &as_of)?;
        Some(serde_json::to_value(&m).expect("messages serialize"))
    }

    fn recommendation<'a>(
        &'a self,
        outlet_id: &'a str,
        r: &'a Recommendations,
        as_of: &'a str,
    ) -> Option<RecommendationMessage<'a>> {
        let seg = self.assignment(outlet_id)?;
        let list = |items: &'a [spectra_core::tables::recommendations::RecItem]| NamedItems {
            items,
            names: &self.sku_names,
        };
        Some(RecommendationMessage {
            as_of,
            new_for_outlet: list(&r.new_for_outlet),
            outlet_id,
            popular_in_segment: list(&r.popular_in_segment),
            run_id: &self.run.latest.run_id,
            seasonal_soon: list(&r.seasonal_soon),
            segment_id: &seg.segment_id,
            segmentation: self.segmentation(),
            should_have: list(&r.should_have),
        })
    }

    /// How many outlets moved from which segment to which since the previous run
    /// (`from` is `null` for outlets new to the segmentation).
    pub fn movement(&self) -> Vec<Value> {
        let mut m: BTreeMap<(Option<&str>, &str), usize> = BTreeMap::new();
        for a in &self.run.assignments {
            let from = match a.change {
                tables::Change::New => None,
                _ => a
                    .previous_segment_id
                    .as_deref()
                    .or(Some(a.segment_id.as_str())),
            };
            *m.entry((from, &a.segment_id)).or_default() += 1;
        }
        m.into_iter()
            .map(|((from, to), outlets)| json!({"from": from, "to": to, "outlets": outlets}))
            .collect()
    }
}

/// Snapshots of every segmentation, reloaded when `latest.json` names a newer run. A
/// run the circuit breaker holds is skipped: the snapshot stays the run before it
/// ([`crate::hold::resolve`]).
#[derive(Clone)]
pub struct Snapshots {
    storage: Storage,
    windows: Arc<RwLock<HashMap<String, u32>>>,
    max_change_shares: Arc<RwLock<HashMap<String, f64>>>,
    cache: Arc<Mutex<HashMap<String, Arc<Snapshot>>>>,
    loading: Arc<tokio::sync::Mutex<()>>,
    histories: crate::history::Histories,
    /// What [`Snapshots::served`] found, and when. Weak: a snapshot the cache has let
    /// go (a newer run loaded) is not kept alive by it.
    served: Arc<Mutex<Option<Found>>>,
}

/// When [`Snapshots::served`] looked, and what it found.
type Found = (std::time::Instant, Vec<(Weak<Snapshot>, Definition)>);

/// A served segmentation's stored definition: the running one, or a retired
/// segmentation's last ([`Snapshots::served`]).
pub type Definition = Option<Arc<SegmentationConfig>>;

/// How long [`Snapshots::served`] answers from memory.
pub const SERVED_FOR: std::time::Duration = std::time::Duration::from_secs(1);

impl Snapshots {
    /// A cache over `storage`; `windows` gives each known segmentation's window.
    pub fn new(storage: Storage, windows: HashMap<String, u32>) -> Self {
        Self {
            storage,
            windows: Arc::new(RwLock::new(windows)),
            max_change_shares: Arc::default(),
            cache: Arc::default(),
            loading: Arc::default(),
            histories: Default::default(),
            served: Arc::default(),
        }
    }

    /// The published segmentations' served snapshots ([`tables::published`], then
    /// [`Snapshots::get`] for each), as found at most [`SERVED_FOR`] ago; a write
    /// through the API forgets it ([`Snapshots::forget_served`]). For the per-outlet
    /// views, which ask for every segmentation on every request: finding them costs
    /// two listings and a read per segmentation (at a million outlets a sixth of a 360
    /// view's time), and a run the segmenter just wrote is then served a second later.
    pub async fn served(
        &self,
        cfg: &spectra_core::Config,
    ) -> Result<Vec<(Arc<Snapshot>, Definition)>, Error> {
        if let Some((at, found)) = &*self.served.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < SERVED_FOR {
                let alive: Vec<_> = found
                    .iter()
                    .map_while(|(snap, d)| Some((snap.upgrade()?, d.clone())))
                    .collect();
                if alive.len() == found.len() {
                    return Ok(alive);
                }
            }
        }
        let at = std::time::Instant::now();
        let mut out = Vec::new();
        for (n, definition) in tables::published(cfg, &self.storage).await? {
            if let Some(snap) = self.get(&n).await? {
                let definition = match definition {
                    Some(d) => Some(d),
                    None => spectra_core::tables::definitions::current(&self.storage, &n)
                        .await?
                        .and_then(|d| d.definition),
                };
                out.push((snap, definition.map(Arc::new)));
            }
        }
        let found = out
            .iter()
            .map(|(snap, d)| (Arc::downgrade(snap), d.clone()))
            .collect();
        *self.served.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, found));
        Ok(out)
    }

    /// Forgets what [`Snapshots::served`] found (a definition, pin or release changed).
    pub fn forget_served(&self) {
        *self.served.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Each known segmentation's `max_change_share` (others get the default).
    pub fn with_max_change_shares(self, shares: HashMap<String, f64>) -> Self {
        *self
            .max_change_shares
            .write()
            .unwrap_or_else(|p| p.into_inner()) = shares;
        self
    }

    /// Takes the windows and `max_change_share`s of `definitions` (read again every
    /// cycle: a segmentation edited or created through the API).
    pub fn set_definitions<'a>(&self, definitions: impl Iterator<Item = &'a SegmentationConfig>) {
        let (mut w, mut m) = (HashMap::new(), HashMap::new());
        for d in definitions {
            w.insert(d.name.clone(), d.window_days);
            m.insert(d.name.clone(), d.max_change_share);
        }
        *self.windows.write().unwrap_or_else(|p| p.into_inner()) = w;
        *self
            .max_change_shares
            .write()
            .unwrap_or_else(|p| p.into_inner()) = m;
    }

    /// The storage read from.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Whether `snap` is the run this cache serves for its segmentation (not one a
    /// newer run has replaced).
    pub fn is_cached(&self, snap: &Arc<Snapshot>) -> bool {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(snap.segmentation())
            .is_some_and(|c| Arc::ptr_eq(c, snap))
    }

    /// The outlets' weekly histories (the 360 view's).
    pub fn histories(&self) -> &crate::history::Histories {
        &self.histories
    }

    /// The segmentation's `max_change_share` (the default for one not known).
    pub fn max_change_share(&self, segmentation: &str) -> f64 {
        self.max_change_shares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(segmentation)
            .copied()
            .unwrap_or(spectra_core::hold::DEFAULT_MAX_CHANGE_SHARE)
    }

    /// The latest run of a segmentation that is held and not released, if any.
    pub async fn held(&self, segmentation: &str) -> Result<Option<crate::hold::HeldRun>, Error> {
        let share = self.max_change_share(segmentation);
        Ok(crate::hold::resolve(&self.storage, segmentation, share)
            .await?
            .and_then(|(_, h)| h))
    }

    /// The cached snapshot of `segmentation` if it is of run `run_id`.
    fn cached(&self, segmentation: &str, run_id: &str) -> Option<Arc<Snapshot>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(segmentation)
            .filter(|s| s.run.latest.run_id == run_id)
            .cloned()
    }

    /// The run published and served for a segmentation (its latest run unless that one
    /// is held); `None` before its first run.
    pub async fn get(&self, segmentation: &str) -> Result<Option<Arc<Snapshot>>, Error> {
        let share = self.max_change_share(segmentation);
        let Some((latest, _)) = crate::hold::resolve(&self.storage, segmentation, share).await?
        else {
            return Ok(None);
        };
        if let Some(s) = self.cached(segmentation, &latest.run_id) {
            return Ok(Some(s));
        }
        // One load at a time: concurrent requests for a new run wait for the first.
        let _guard = self.loading.lock().await;
        // Looked up again: a run another request loaded while this one waited may be
        // newer than the one this request found before.
        let Some((latest, _)) = crate::hold::resolve(&self.storage, segmentation, share).await?
        else {
            return Ok(None);
        };
        if let Some(s) = self.cached(segmentation, &latest.run_id) {
            return Ok(Some(s));
        }
        // A new run: the last run's snapshot and the outlets' weekly history (keyed by
        // the runs served) are let go before it loads, so that neither is held beside
        // the new run and the publish cycle that follows it (at a million outlets each
        // is hundreds of MB, and the publisher has 1 GiB). Requests still answering
        // from them keep them until they are done.
        let last = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(segmentation);
        if last.is_some() {
            self.histories.forget().await;
        }
        drop(last);
        let window = self
            .windows
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(segmentation)
            .copied()
            .unwrap_or(91);
        let started = std::time::Instant::now();
        let snap = Arc::new(Snapshot::load(&self.storage, latest, segmentation, window).await?);
        tracing::info!(segmentation, run_id = %snap.run.latest.run_id, outlets = snap.run.assignments.len(),
            segments = snap.profiles.len(), ms = started.elapsed().as_millis() as u64, "loaded run");
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(segmentation.to_owned(), snap.clone());
        Ok(Some(snap))
    }
}

/// An outlet recommendations message (contract §3.3), serialized straight from the
/// run's lists: a million of them go out on a new run, and building each as a
/// `serde_json::Value` first (a map per item) took most of the cycle. Fields in
/// alphabetical order, so the bytes are those of the same message as a `Value`
/// (whose objects sort their keys): what is on the topics compares equal.
#[derive(Serialize)]
struct RecommendationMessage<'a> {
    as_of: &'a str,
    new_for_outlet: NamedItems<'a>,
    outlet_id: &'a str,
    popular_in_segment: NamedItems<'a>,
    run_id: &'a str,
    seasonal_soon: NamedItems<'a>,
    segment_id: &'a str,
    segmentation: &'a str,
    should_have: NamedItems<'a>,
}

/// A list's items, each with its SKU's master-data name beside the id.
struct NamedItems<'a> {
    items: &'a [spectra_core::tables::recommendations::RecItem],
    names: &'a HashMap<String, String>,
}

/// One item as sent: the run's item with `sku_name` (absent when master data has
/// none); fields in alphabetical order as above.
#[derive(Serialize)]
struct NamedItem<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    score: f64,
    sku_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sku_name: Option<&'a str>,
    suggested_quantity: f64,
}

impl Serialize for NamedItems<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.items.iter().map(|i| NamedItem {
            reason: &i.reason,
            score: i.score,
            sku_id: &i.sku_id,
            sku_name: self.names.get(&i.sku_id).map(String::as_str),
            suggested_quantity: i.suggested_quantity,
        }))
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;
    use spectra_core::tables::recommendations::RecItem;

    /// The typed message's bytes are the bytes of the same message as a `Value` (keys
    /// sorted), the form the cycle sent before: a topic written by either compares equal.
    #[test]
    fn a_typed_message_serializes_as_its_value_does() {
        let item = |sku: &str, reason: &str| RecItem {
            sku_id: sku.into(),
            score: 0.47,
            suggested_quantity: 2.0,
            reason: reason.into(),
        };
        let names: HashMap<String, String> =
            [("590".to_owned(), "Cola \"zero\" 0,5 l".to_owned())].into();
        let (a, b, c) = (
            [
                item("590", "47% of the segment's outlets buy it"),
                item("591", ""),
            ],
            [item("592", "seasonal")],
            [],
        );
        let m = RecommendationMessage {
            as_of: "2026-09-02",
            new_for_outlet: NamedItems {
                items: &a,
                names: &names,
            },
            outlet_id: "PL-1",
            popular_in_segment: NamedItems {
                items: &b,
                names: &names,
            },
            run_id: "national/2026-09-02/1",
            seasonal_soon: NamedItems {
                items: &c,
                names: &names,
            },
            segment_id: "S3",
            segmentation: "national",
            should_have: NamedItems {
                items: &b,
                names: &names,
            },
        };
        let typed = serde_json::to_vec(&m).unwrap();
        let value = serde_json::to_vec(&serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(typed).unwrap(),
            String::from_utf8(value).unwrap()
        );
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["new_for_outlet"][0]["sku_name"], "Cola \"zero\" 0,5 l");
        assert!(v["new_for_outlet"][1].get("sku_name").is_none());
        assert!(v["new_for_outlet"][1].get("reason").is_none());
        assert_eq!(v["seasonal_soon"], serde_json::json!([]));
    }
}
