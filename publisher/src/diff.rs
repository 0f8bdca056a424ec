//! The changes to publish: the latest run's assignments (with the names and tags in
//! force) against what was last published. Pure: no Kafka, no storage, so a crash
//! between producing and recording simply computes the same changes again.

use serde::{Deserialize, Serialize};

use crate::snapshot::Label;
use crate::state::PublishedView;

/// What was last published for an outlet (a row of `published.parquet`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The outlet.
    pub outlet_id: String,
    /// Its published segment.
    pub segment_id: String,
    /// The segment's published name.
    pub segment_name: String,
    /// The segment's published tags.
    pub tags: Vec<String>,
    /// The run whose cycle published it.
    pub run_id: String,
}

/// An assignment as it stands now: the run's row with the segment's label, borrowed
/// from the run and the labels (a million of them are held at once).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Current<'a> {
    /// The outlet.
    pub outlet_id: &'a str,
    /// Its segment in the latest run.
    pub segment_id: &'a str,
    /// The segment's name and tags now.
    pub label: &'a Label,
    /// Confidence of the assignment, 0–1.
    pub confidence: f64,
    /// Why the run moved it, when the run moved it into this segment.
    pub evidence: Option<&'a spectra_core::tables::runs::MovementRow>,
}

/// Why an outlet moved: the change detector's evidence from the run's
/// `movements.parquet`, on `moved` messages only (an optional field of contract §3.1;
/// `GET /api/segmentations/{name}/movements` has the full spectra).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveEvidence {
    /// `changed` (the change detector), `segment_retired` or `nearer_segment`.
    pub reason: String,
    /// Change score of the recent window against the earlier one (a standard normal
    /// quantile), when the outlet was tested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Log Bayes factor of the recent purchases as a member of the new segment buys
    /// against as the outlet bought before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<f64>,
    /// Invoices in the recent window: the evidence behind the score.
    pub recent_invoices: f64,
    /// The features that drove the change, strongest first (at most three).
    pub drivers: Vec<spectra_core::tables::runs::Driver>,
}

impl MoveEvidence {
    /// The evidence of a movement row (its three strongest drivers).
    pub fn of(m: &spectra_core::tables::runs::MovementRow) -> Self {
        Self {
            reason: m.reason.clone(),
            score: m.score,
            fit: m.fit,
            recent_invoices: m.recent_invoices,
            drivers: m.drivers.iter().take(3).cloned().collect(),
        }
    }
}

/// A segment assignment message (contract §3.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentMessage {
    /// The segmentation.
    pub segmentation: String,
    /// The outlet.
    pub outlet_id: String,
    /// Its segment.
    pub segment_id: String,
    /// The segment's name.
    pub segment_name: String,
    /// The segment's tags.
    pub tags: Vec<String>,
    /// The segment it was published in before, if any.
    pub previous_segment_id: Option<String>,
    /// `new`, `moved` or `renamed`.
    pub change: String,
    /// Confidence of the assignment, 0–1.
    pub confidence: f64,
    /// The run that produced it.
    pub run_id: String,
    /// The run's as-of date.
    pub as_of: String,
    /// Why it moved (`moved` messages of a run that moved it; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<MoveEvidence>,
}

/// One change on the assignments topic: a value, or a tombstone. Borrowed from the
/// current assignments and the published view; the message is made when it is sent
/// (a first cycle changes a million outlets).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AssignmentChange<'a> {
    /// The outlet (the key is `{segmentation}:{outlet_id}`).
    pub outlet_id: &'a str,
    /// The new value; `None` when the outlet left the segmentation.
    pub to: Option<Assigned<'a>>,
}

/// The value of an [`AssignmentChange`]: the assignment, the kind of change and the
/// segment published before.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assigned<'a> {
    /// The assignment now.
    pub current: &'a Current<'a>,
    /// `new`, `moved` or `renamed`.
    pub change: &'static str,
    /// The segment published before, if any.
    pub previous: Option<&'a str>,
}

impl AssignmentChange<'_> {
    /// The message to send (`None`: a tombstone).
    pub fn message(&self, run: &RunRef<'_>) -> Option<AssignmentMessage> {
        self.to
            .map(|t| message(run, t.current, t.change, t.previous.map(str::to_owned)))
    }

    /// The metrics label: `new`, `moved`, `renamed` or `tombstone`.
    pub fn label(&self) -> &'static str {
        self.to.map_or("tombstone", |t| t.change)
    }
}

/// The run a diff is computed for.
#[derive(Debug, Clone)]
pub struct RunRef<'a> {
    /// The segmentation.
    pub segmentation: &'a str,
    /// The run id.
    pub run_id: &'a str,
    /// The as-of date.
    pub as_of: &'a str,
}

/// The changes that turn what was published into the current assignments, sorted by
/// outlet: `new` for outlets never published, `moved` for a different segment,
/// `renamed` for the same segment under another name or other tags, and a tombstone
/// for every published outlet no longer assigned. Unchanged outlets produce nothing.
/// `current` is sorted by outlet id, as [`crate::snapshot::Snapshot::currents`] gives it.
pub fn diff<'a>(
    published: &'a PublishedView,
    current: &'a [Current<'a>],
) -> Vec<AssignmentChange<'a>> {
    let mut out: Vec<AssignmentChange<'a>> = Vec::new();
    for c in current {
        let (change, previous) = match published.get(c.outlet_id) {
            None => ("new", None),
            Some(p) if p.segment_id != c.segment_id => ("moved", Some(p.segment_id.as_str())),
            Some(p) if p.segment_name != c.label.name || p.tags != c.label.tags => {
                ("renamed", Some(p.segment_id.as_str()))
            }
            Some(_) => continue,
        };
        out.push(AssignmentChange {
            outlet_id: c.outlet_id,
            to: Some(Assigned {
                current: c,
                change,
                previous,
            }),
        });
    }
    for id in published.outlets() {
        if find(current, id).is_none() {
            out.push(AssignmentChange {
                outlet_id: id,
                to: None,
            });
        }
    }
    out.sort_by(|a, b| a.outlet_id.cmp(b.outlet_id));
    out
}

/// An outlet's assignment among `current` (sorted by outlet id).
pub fn find<'a, 'b>(current: &'b [Current<'a>], outlet_id: &str) -> Option<&'b Current<'a>> {
    current
        .binary_search_by(|c| c.outlet_id.cmp(outlet_id))
        .ok()
        .map(|i| &current[i])
}

/// The assignment message of `c` in `run`.
pub fn message(
    run: &RunRef<'_>,
    c: &Current<'_>,
    change: &str,
    previous: Option<String>,
) -> AssignmentMessage {
    AssignmentMessage {
        segmentation: run.segmentation.to_owned(),
        outlet_id: c.outlet_id.to_owned(),
        segment_id: c.segment_id.to_owned(),
        segment_name: c.label.name.clone(),
        tags: c.label.tags.clone(),
        previous_segment_id: previous,
        change: change.to_owned(),
        confidence: c.confidence,
        run_id: run.run_id.to_owned(),
        as_of: run.as_of.to_owned(),
        evidence: (change == "moved")
            .then(|| c.evidence.map(MoveEvidence::of))
            .flatten(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    /// An assignment; what it borrows lives as long as the test process.
    fn cur(o: &str, s: &str, name: &str, tags: &[&str]) -> Current<'static> {
        let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
        Current {
            outlet_id: leak(o),
            segment_id: leak(s),
            label: Box::leak(Box::new(Label {
                name: name.into(),
                description: String::new(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
            })),
            confidence: 0.5,
            evidence: None,
        }
    }

    /// The diff against a compacted topic's view (as the publisher's state holds it);
    /// `current` sorted by outlet first, as the snapshot gives it.
    fn diff(
        run: &RunRef<'_>,
        p: &HashMap<String, Published>,
        current: &[Current<'_>],
    ) -> Vec<Changed> {
        let rows: Vec<Published> = p.values().cloned().collect();
        let mut current = current.to_vec();
        current.sort_by(|a, b| a.outlet_id.cmp(b.outlet_id));
        let view = PublishedView::from_rows(&rows);
        super::diff(&view, &current)
            .iter()
            .map(|c| Changed {
                outlet_id: c.outlet_id.to_owned(),
                message: c.message(run),
            })
            .collect()
    }

    /// A change with its message made.
    #[derive(Debug, PartialEq)]
    struct Changed {
        outlet_id: String,
        message: Option<AssignmentMessage>,
    }

    fn run() -> RunRef<'static> {
        RunRef {
            segmentation: "mix",
            run_id: "mix/2026-11-21/1",
            as_of: "2026-11-21",
        }
    }

    /// Applies changes to a published map the way a compacted topic's reader would.
    fn apply(p: &mut HashMap<String, Published>, changes: &[Changed]) {
        for c in changes {
            match &c.message {
                None => {
                    p.remove(&c.outlet_id);
                }
                Some(m) => {
                    p.insert(
                        c.outlet_id.clone(),
                        Published {
                            outlet_id: m.outlet_id.clone(),
                            segment_id: m.segment_id.clone(),
                            segment_name: m.segment_name.clone(),
                            tags: m.tags.clone(),
                            run_id: m.run_id.clone(),
                        },
                    );
                }
            }
        }
    }

    #[test]
    fn first_run_publishes_everything_then_only_changes() {
        let first = vec![cur("A", "S1", "One", &[]), cur("B", "S2", "Two", &[])];
        let mut p = HashMap::new();
        let c = diff(&run(), &p, &first);
        assert_eq!(c.len(), 2);
        assert!(c
            .iter()
            .all(|c| c.message.as_ref().unwrap().change == "new"));
        apply(&mut p, &c);
        assert!(diff(&run(), &p, &first).is_empty());

        let second = vec![cur("A", "S2", "Two", &[]), cur("C", "S1", "One", &["#x"])];
        let c = diff(&run(), &p, &second);
        let kinds: Vec<_> = c
            .iter()
            .map(|c| {
                (
                    c.outlet_id.as_str(),
                    c.message.as_ref().map(|m| m.change.as_str()),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![("A", Some("moved")), ("B", None), ("C", Some("new"))]
        );
        assert_eq!(
            c[0].message
                .as_ref()
                .unwrap()
                .previous_segment_id
                .as_deref(),
            Some("S1")
        );
        apply(&mut p, &c);
        let view: BTreeMap<_, _> = p
            .values()
            .map(|v| (v.outlet_id.clone(), v.segment_id.clone()))
            .collect();
        let want: BTreeMap<_, _> = second
            .iter()
            .map(|v| (v.outlet_id.to_owned(), v.segment_id.to_owned()))
            .collect();
        assert_eq!(view, want);
    }

    #[test]
    fn names_and_tags_make_renamed() {
        let mut p = HashMap::new();
        let first = vec![cur("A", "S1", "One", &[])];
        let c = diff(&run(), &p, &first);
        apply(&mut p, &c);
        let c = diff(&run(), &p, &[cur("A", "S1", "One", &["#premium"])]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].message.as_ref().unwrap().change, "renamed");
        let c = diff(&run(), &p, &[cur("A", "S1", "Uno", &[])]);
        assert_eq!(c[0].message.as_ref().unwrap().change, "renamed");
    }

    #[test]
    fn only_moved_messages_carry_the_evidence() {
        let row = spectra_core::tables::runs::MovementRow {
            outlet_id: "A".into(),
            previous_segment_id: "S1".into(),
            segment_id: "S2".into(),
            reason: "changed".into(),
            score: Some(5.2),
            fit: Some(9.0),
            earlier_lines: 10.0,
            recent_lines: 8.0,
            recent_invoices: 7.0,
            drivers: Vec::new(),
            earlier_spectrum: BTreeMap::new(),
            recent_spectrum: BTreeMap::new(),
        };
        let evidence = MoveEvidence::of(&row);
        let mut p = HashMap::new();
        let mut a = cur("A", "S1", "One", &[]);
        a.evidence = Some(&row);
        let c = diff(&run(), &p, std::slice::from_ref(&a));
        let m = c[0].message.as_ref().unwrap();
        assert_eq!((m.change.as_str(), &m.evidence), ("new", &None));
        assert!(!serde_json::to_string(m).unwrap().contains("evidence"));
        apply(&mut p, &c);
        a.segment_id = "S2";
        let c = diff(&run(), &p, std::slice::from_ref(&a));
        let m = c[0].message.as_ref().unwrap();
        assert_eq!(m.change, "moved");
        assert_eq!(m.evidence.as_ref(), Some(&evidence));
        let back: AssignmentMessage =
            serde_json::from_str(&serde_json::to_string(m).unwrap()).unwrap();
        assert_eq!(&back, m);
        apply(&mut p, &c);
        a.label = cur("A", "S2", "One", &["#new"]).label;
        let c = diff(&run(), &p, std::slice::from_ref(&a));
        let m = c[0].message.as_ref().unwrap();
        assert_eq!((m.change.as_str(), &m.evidence), ("renamed", &None));
    }

    #[test]
    fn the_same_inputs_give_the_same_changes() {
        let p = HashMap::new();
        let cur = vec![cur("B", "S1", "x", &[]), cur("A", "S2", "y", &[])];
        assert_eq!(diff(&run(), &p, &cur), diff(&run(), &p, &cur));
        assert_eq!(diff(&run(), &p, &cur)[0].outlet_id, "A");
    }
}
