//! A segmentation's latest run with everything derived from it (profiles,
//! recommendations, segment movement), loaded once per run and shared by the publish
//! cycle and the HTTP API. Names and tags are applied on top, from the metadata store,
//! whenever a message or a response is built.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{json, Value};
use spectra_core::Storage;

use crate::diff::Current;
use crate::metadata::MetadataStore;
use crate::profile::SegmentProfile;
use crate::recommend::Recommendations;
use crate::tables::{self, Features, OutletKpi, Run};
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

/// A run and what the publisher derives from it.
pub struct Snapshot {
    /// The run.
    pub run: Run,
    /// Its features.
    pub features: Features,
    /// Computed profiles, by segment id.
    pub profiles: Vec<SegmentProfile>,
    /// Recommendations per outlet.
    pub recommendations: HashMap<String, Recommendations>,
    /// The window of the segmentation, days.
    pub window_days: u32,
    kpi_index: HashMap<String, usize>,
}

impl Snapshot {
    /// Loads a run and derives its profiles and recommendations.
    pub async fn load(
        storage: &Storage,
        latest: tables::Latest,
        segmentation: &str,
        window_days: u32,
    ) -> Result<Self, Error> {
        let run = tables::read_run(storage, segmentation, latest).await?;
        let features = tables::read_features(storage, segmentation, run.latest.as_of).await?;
        let (recent, seasonal) = crate::recommend::daily_ranges(run.latest.as_of);
        let mut ranges = recent.clone();
        ranges.extend(seasonal.iter().copied());
        let daily = tables::read_daily(storage, &ranges).await?;
        let in_ranges = |r: &[(chrono::NaiveDate, chrono::NaiveDate)], d: chrono::NaiveDate| {
            r.iter().any(|(a, b)| *a <= d && d <= *b)
        };
        let (recent_rows, seasonal_rows): (Vec<_>, Vec<_>) =
            daily.into_iter().partition(|d| in_ranges(&recent, d.date));
        let seasonal_rows: Vec<_> = seasonal_rows
            .into_iter()
            .filter(|d| in_ranges(&seasonal, d.date))
            .collect();
        let profiles = crate::profile::compute(&run, &features);
        let recommendations =
            crate::recommend::compute(&run, &features, &recent_rows, &seasonal_rows, window_days);
        let kpi_index = features
            .kpis
            .iter()
            .enumerate()
            .map(|(i, k)| (k.outlet_id.clone(), i))
            .collect();
        Ok(Self {
            run,
            features,
            profiles,
            recommendations,
            window_days,
            kpi_index,
        })
    }

    /// The segmentation's name.
    pub fn segmentation(&self) -> &str {
        &self.run.segmentation
    }

    /// An outlet's KPIs and master record.
    pub fn kpi(&self, outlet_id: &str) -> Option<&OutletKpi> {
        self.kpi_index
            .get(outlet_id)
            .map(|i| &self.features.kpis[*i])
    }

    /// A segment's label: what people set, else what the segmenter proposed, else
    /// `Segment {id}`.
    pub fn label(&self, metadata: &MetadataStore, segment_id: &str) -> Label {
        let proposed = self
            .run
            .profiles
            .iter()
            .find(|p| p.get("segment_id").and_then(Value::as_str) == Some(segment_id));
        let text = |k: &str| {
            proposed
                .and_then(|p| p.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let mut l = Label {
            name: text("name"),
            description: text("description"),
            tags: proposed
                .and_then(|p| p.get("tags"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        };
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

    /// Every assignment with its segment's current label, by outlet id.
    pub fn currents(&self, metadata: &MetadataStore) -> Vec<Current> {
        let mut labels: HashMap<&str, Label> = HashMap::new();
        let mut out: Vec<Current> = self
            .run
            .assignments
            .iter()
            .map(|a| {
                let l = labels
                    .entry(&a.segment_id)
                    .or_insert_with(|| self.label(metadata, &a.segment_id));
                Current {
                    outlet_id: a.outlet_id.clone(),
                    segment_id: a.segment_id.clone(),
                    segment_name: l.name.clone(),
                    tags: l.tags.clone(),
                    confidence: a.confidence,
                }
            })
            .collect();
        out.sort_by(|a, b| a.outlet_id.cmp(&b.outlet_id));
        out
    }

    /// A segment profile message (contract §3.2).
    pub fn profile_message(&self, metadata: &MetadataStore, p: &SegmentProfile) -> Value {
        let l = self.label(metadata, &p.segment_id);
        let mut v = json!({
            "segmentation": self.segmentation(),
            "segment_id": p.segment_id,
            "name": l.name,
            "description": l.description,
            "tags": l.tags,
            "run_id": self.run.latest.run_id,
            "as_of": self.run.latest.as_of.to_string(),
        });
        if let (Value::Object(m), Ok(Value::Object(body))) = (&mut v, serde_json::to_value(p)) {
            for (k, val) in body {
                m.entry(k).or_insert(val);
            }
        }
        v
    }

    /// An outlet recommendations message (contract §3.3).
    pub fn recommendation_message(&self, outlet_id: &str) -> Option<Value> {
        let r = self.recommendations.get(outlet_id)?;
        let seg = self
            .run
            .assignments
            .iter()
            .find(|a| a.outlet_id == outlet_id)?;
        let mut v = json!({
            "segmentation": self.segmentation(),
            "outlet_id": outlet_id,
            "segment_id": seg.segment_id,
            "run_id": self.run.latest.run_id,
            "as_of": self.run.latest.as_of.to_string(),
        });
        if let (Value::Object(m), Ok(Value::Object(body))) = (&mut v, serde_json::to_value(r)) {
            m.extend(body);
        }
        Some(v)
    }

    /// How many outlets moved from which segment to which since the previous run
    /// (`from` is `null` for outlets new to the segmentation).
    pub fn movement(&self) -> Vec<Value> {
        let mut m: BTreeMap<(Option<&str>, &str), usize> = BTreeMap::new();
        for a in &self.run.assignments {
            let from = match a.change.as_str() {
                "new" => None,
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
    windows: HashMap<String, u32>,
    max_change_shares: HashMap<String, f64>,
    cache: Arc<Mutex<HashMap<String, Arc<Snapshot>>>>,
    loading: Arc<tokio::sync::Mutex<()>>,
}

impl Snapshots {
    /// A cache over `storage`; `windows` gives each configured segmentation's window.
    pub fn new(storage: Storage, windows: HashMap<String, u32>) -> Self {
        Self {
            storage,
            windows,
            max_change_shares: HashMap::new(),
            cache: Arc::default(),
            loading: Arc::default(),
        }
    }

    /// Each configured segmentation's `max_change_share` (others get the default).
    pub fn with_max_change_shares(mut self, shares: HashMap<String, f64>) -> Self {
        self.max_change_shares = shares;
        self
    }

    /// The storage read from.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    fn max_change_share(&self, segmentation: &str) -> f64 {
        self.max_change_shares
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

    /// The run published and served for a segmentation (its latest run unless that one
    /// is held); `None` before its first run.
    pub async fn get(&self, segmentation: &str) -> Result<Option<Arc<Snapshot>>, Error> {
        let share = self.max_change_share(segmentation);
        let Some((latest, _)) = crate::hold::resolve(&self.storage, segmentation, share).await?
        else {
            return Ok(None);
        };
        let cached = |c: &Self| {
            c.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(segmentation)
                .filter(|s| s.run.latest.run_id == latest.run_id)
                .cloned()
        };
        if let Some(s) = cached(self) {
            return Ok(Some(s));
        }
        // One load at a time: concurrent requests for a new run wait for the first.
        let _guard = self.loading.lock().await;
        if let Some(s) = cached(self) {
            return Ok(Some(s));
        }
        let window = self.windows.get(segmentation).copied().unwrap_or(91);
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
