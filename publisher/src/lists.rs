//! Which recommendations a new run sends: the outlets whose lists differ from those
//! of the run published last (by the digests stored with each run's lists), whose
//! assignment changed, or whose lists emptied ([`ChangedLists`]); and how a message on
//! the topic compares with the run's when it may name an earlier run ([`same_lists`]).

use crate::Error;
use spectra_core::tables::recommendations::read_digests;

/// Which outlets' recommendations a new run sends (each sorted by outlet id).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ChangedLists {
    /// Assigned outlets with lists that differ from those published, or published
    /// with another segment, or every assigned outlet with lists when what was
    /// published is not known.
    pub changed: Vec<String>,
    /// Assigned outlets that had lists in the run published last and have none now:
    /// sent with empty lists.
    pub emptied: Vec<String>,
    /// Assigned outlets whose lists are those published: not sent.
    pub unchanged: u64,
}

impl ChangedLists {
    /// From the digests of the new run's lists (`current`, in file order) and of the
    /// run published last (`baseline`; `None` when not at hand), for the outlets
    /// `assigned` in the new run; `reassigned` outlets (a changed assignment) are sent
    /// whatever their lists.
    pub(crate) fn new(
        mut current: Vec<(String, Option<u64>)>,
        baseline: Option<Vec<(String, Option<u64>)>>,
        assigned: impl Fn(&str) -> bool,
        reassigned: impl Fn(&str) -> bool,
    ) -> Self {
        let mut out = Self::default();
        // Every digest known and both files in outlet order, or everything is sent.
        let known = |d: &[(String, Option<u64>)]| {
            d.iter().all(|(_, h)| h.is_some()) && d.is_sorted_by(|a, b| a.0 < b.0)
        };
        let baseline = baseline.filter(|b| known(b) && known(&current));
        let Some(baseline) = baseline else {
            current.sort_unstable();
            out.changed = current
                .into_iter()
                .map(|(o, _)| o)
                .filter(|o| assigned(o))
                .collect();
            return out;
        };
        let mut before = baseline.into_iter().peekable();
        for (o, digest) in current {
            while let Some((gone, _)) = before.next_if(|(b, _)| *b < o) {
                if assigned(&gone) {
                    out.emptied.push(gone);
                }
            }
            let was = before.next_if(|(b, _)| *b == o).and_then(|(_, d)| d);
            if !assigned(&o) {
                continue;
            }
            if was == digest && !reassigned(&o) {
                out.unchanged += 1;
            } else {
                out.changed.push(o);
            }
        }
        out.emptied
            .extend(before.map(|(o, _)| o).filter(|o| assigned(o)));
        out
    }
}

/// The digests of the lists of the run `run_id` (the run published last), in file
/// order; `None` when there is none, its file is gone, or it has no digests.
pub(crate) async fn published_digests(
    storage: &spectra_core::Storage,
    run_id: &str,
) -> Result<Option<Vec<(String, Option<u64>)>>, Error> {
    let Some(folder) = spectra_core::tables::layout::run_of_id(run_id) else {
        return Ok(None);
    };
    let file = format!(
        "{folder}/{}",
        spectra_core::tables::layout::run_files::RECOMMENDATIONS
    );
    Ok(read_digests(storage, &file).await?)
}

/// Whether the outlet's recommendations message on the topic (`on_topic`) says what
/// `current` says, whatever run sent it: lists that did not change are not sent
/// again, so the message of an outlet may name an earlier run.
pub(crate) fn same_lists(on_topic: Option<&Vec<u8>>, current: &[u8]) -> bool {
    let Some(on_topic) = on_topic else {
        return false;
    };
    if on_topic.as_slice() == current {
        return true;
    }
    let lists = |v: &[u8]| {
        let mut m = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(v).ok()?;
        m.remove("run_id");
        m.remove("as_of");
        Some(m)
    };
    matches!((lists(on_topic), lists(current)), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(pairs: &[(&str, u64)]) -> Vec<(String, Option<u64>)> {
        pairs
            .iter()
            .map(|&(o, d)| (o.to_owned(), Some(d)))
            .collect()
    }

    fn ids(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    /// Against the run published last: changed digests, reassigned outlets and
    /// outlets new to the lists are sent; equal ones are not; lists that emptied go
    /// out empty; outlets not assigned (now) are never sent.
    #[test]
    fn only_lists_that_changed_are_sent() {
        let before = digests(&[("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5), ("g", 7)]);
        let now = digests(&[("b", 2), ("c", 30), ("d", 4), ("f", 6), ("g", 7), ("h", 8)]);
        let assigned = |o: &str| o != "h" && o != "e";
        let reassigned = |o: &str| o == "d";
        let lists = ChangedLists::new(now.clone(), Some(before.clone()), assigned, reassigned);
        assert_eq!(ids(&lists.changed), ["c", "d", "f"]);
        assert_eq!(ids(&lists.emptied), ["a"]);
        assert_eq!(lists.unchanged, 2);

        // The same lists again: nothing.
        let same = ChangedLists::new(now.clone(), Some(now.clone()), |_| true, |_| false);
        assert!(same.changed.is_empty() && same.emptied.is_empty());
        assert_eq!(same.unchanged, now.len() as u64);
    }

    /// Without a known baseline — none, a file without digests, or one out of outlet
    /// order — every assigned outlet with lists is sent.
    #[test]
    fn without_the_published_digests_every_list_is_sent() {
        let now = digests(&[("b", 2), ("a", 1), ("c", 3)]);
        let sorted = digests(&[("a", 1), ("b", 2), ("c", 3)]);
        let mut unknown = sorted.clone();
        unknown[1].1 = None;
        let every = |lists: ChangedLists| {
            assert_eq!(ids(&lists.changed), ["a", "c"]);
            assert!(lists.emptied.is_empty());
            assert_eq!(lists.unchanged, 0);
        };
        let assigned = |o: &str| o != "b";
        every(ChangedLists::new(now.clone(), None, assigned, |_| false));
        every(ChangedLists::new(
            sorted.clone(),
            Some(unknown.clone()),
            assigned,
            |_| false,
        ));
        every(ChangedLists::new(
            unknown,
            Some(sorted.clone()),
            assigned,
            |_| false,
        ));
        every(ChangedLists::new(now, Some(sorted), assigned, |_| false));
    }

    /// A message of an earlier run with the same lists and segment is the same; any
    /// other difference is not.
    #[test]
    fn a_message_of_an_earlier_run_with_the_same_lists_is_the_same() {
        let msg = |run: &str, segment: &str, score: f64| {
            serde_json::to_vec(&serde_json::json!({
                "as_of": run, "run_id": format!("mix/{run}/1"), "outlet_id": "o1",
                "segment_id": segment, "segmentation": "mix",
                "new_for_outlet": [{"sku_id": "k1", "score": score, "suggested_quantity": 2.0}],
                "should_have": [], "popular_in_segment": [], "seasonal_soon": []
            }))
            .unwrap()
        };
        let now = msg("2026-06-02", "S1", 0.5);
        assert!(same_lists(Some(&now.clone()), &now));
        assert!(same_lists(Some(&msg("2026-06-01", "S1", 0.5)), &now));
        assert!(!same_lists(Some(&msg("2026-06-01", "S2", 0.5)), &now));
        assert!(!same_lists(Some(&msg("2026-06-01", "S1", 0.51)), &now));
        assert!(!same_lists(Some(&b"not json".to_vec()), &now));
        assert!(!same_lists(None, &now));
    }
}
