//! The identity index: deltas, merges, crashes and lookups.

use super::*;

fn entry(i: u64, date: i32, ts: i64) -> Entry {
    Entry {
        hash: IdentityHash::of("D", &format!("I{i}"), 0),
        date,
        version: Version {
            timestamp_ms: ts,
            partition: 0,
            offset: ts,
            line: 0,
        },
    }
}

#[tokio::test]
async fn deltas_compact_and_lookups_see_every_day_and_latest_version() {
    let storage = Storage::memory();
    let mut idx = IdentityIndex::empty(storage.clone());
    idx.append((0..100).map(|i| entry(i, 1, 1)).collect())
        .await
        .unwrap();
    idx.finish().await.unwrap();
    assert!(
        idx.state().deltas.is_empty(),
        "a fresh index is written as base"
    );
    // Identity 7 is corrected on day 2, then again on day 1; identity 8 redelivered.
    for run in 0..(MAX_DELTAS as i64 + 3) {
        let mut idx2 = IdentityIndex::open(storage.clone(), idx.state().clone())
            .await
            .unwrap();
        let mut new = vec![entry(1000 + run as u64, 3, 10 + run)];
        if run == 2 {
            new.push(entry(7, 2, 50));
        }
        if run == 5 {
            new.push(entry(7, 1, 60));
            new.push(entry(8, 1, 70));
        }
        idx2.append(new).await.unwrap();
        idx2.finish().await.unwrap();
        idx = idx2;
    }
    assert!(
        idx.state().deltas.len() < MAX_DELTAS,
        "compacted: {:?}",
        idx.state().deltas
    );
    // 17 entries merged against 100 in the base: more than 1/8, so into the base.
    assert_eq!(idx.state().merged_entries, 0, "merged into the base");
    assert!(storage
        .list(&format!("{INDEX_DIR}/merged/"))
        .await
        .unwrap()
        .is_empty());
    let hashes: BTreeSet<IdentityHash> = [
        entry(7, 0, 0).hash,
        entry(8, 0, 0).hash,
        entry(1003, 0, 0).hash,
        entry(5000, 0, 0).hash,
    ]
    .into_iter()
    .collect();
    let idx = IdentityIndex::open(storage, idx.state().clone())
        .await
        .unwrap();
    let found = idx.lookup(&hashes).await.unwrap();
    let days = |i: u64| -> Vec<(i32, i64)> {
        found[&entry(i, 0, 0).hash]
            .iter()
            .map(|(d, v)| (*d, v.timestamp_ms))
            .collect()
    };
    assert_eq!(days(7), [(1, 60), (2, 50)]);
    assert_eq!(days(8), [(1, 70)]);
    assert_eq!(days(1003), [(3, 13)]);
    assert!(!found.contains_key(&entry(5000, 0, 0).hash));
    for i in [0, 99, 1000, 1018] {
        assert!(idx.may_contain(&entry(i, 0, 0).hash), "{i}");
    }
}

#[tokio::test]
async fn a_compaction_whose_state_never_landed_loses_no_identity() {
    let storage = Storage::memory();
    let mut idx = IdentityIndex::empty(storage.clone());
    // A base large enough that the merged deltas stay in the merged level.
    idx.append((0..1000).map(|i| entry(i, 1, 1)).collect())
        .await
        .unwrap();
    idx.finish().await.unwrap();
    // Delta passes up to the last one before a merge; each commits its state.
    for run in 0..MAX_DELTAS as u64 {
        let mut next = IdentityIndex::open(storage.clone(), idx.state().clone())
            .await
            .unwrap();
        next.append(vec![entry(1000 + run, 2, 10)]).await.unwrap();
        next.finish().await.unwrap();
        idx = next;
    }
    assert_eq!(idx.state().deltas.len(), MAX_DELTAS);
    let committed = idx.state().clone();
    // This pass merges the deltas (and deletes them), then dies before its state
    // is committed: the next pass opens the committed state, listing them.
    let mut merging = IdentityIndex::open(storage.clone(), committed.clone())
        .await
        .unwrap();
    merging.append(vec![entry(5000, 3, 20)]).await.unwrap();
    assert!(merging.state().deltas.is_empty(), "merged");
    assert_eq!(merging.state().merged_entries, MAX_DELTAS as u64 + 1);
    for d in &committed.deltas {
        assert!(storage
            .get(&format!("{INDEX_DIR}/{d}"))
            .await
            .unwrap()
            .is_none());
    }
    let after = IdentityIndex::open(storage, committed).await.unwrap();
    let hashes: BTreeSet<IdentityHash> = (0..MAX_DELTAS as u64)
        .map(|run| entry(1000 + run, 0, 0).hash)
        .collect();
    for h in &hashes {
        assert!(after.may_contain(h), "the filter lost a merged identity");
    }
    let found = after.lookup(&hashes).await.unwrap();
    assert_eq!(
        found.len(),
        MAX_DELTAS,
        "each merged identity is in the base"
    );
    assert!(found.values().all(|d| d.keys().eq([&2])));
}

#[test]
fn a_lookup_decodes_only_row_groups_that_can_hold_its_identities() {
    let mut all: Vec<Entry> = (0..5 * ROW_GROUP_ROWS as u64)
        .map(|i| entry(i, (i % 7) as i32, i as i64))
        .collect();
    all.sort_unstable_by_key(|e| (e.hash, e.date));
    let data = encode(&all).unwrap();
    let wanted: Vec<IdentityHash> = [3, 17_000].iter().map(|&i| entry(i, 0, 0).hash).collect();
    let mut sorted = wanted.clone();
    sorted.sort_unstable();
    let mut out = Vec::new();
    decode_holding("test", data.clone(), &sorted, &mut out).unwrap();
    assert!(
        out.len() <= 2 * ROW_GROUP_ROWS,
        "{} rows decoded",
        out.len()
    );
    for h in &wanted {
        let expected: Vec<&Entry> = all.iter().filter(|e| e.hash == *h).collect();
        let got: Vec<&Entry> = out.iter().filter(|e| e.hash == *h).collect();
        assert_eq!(got, expected);
    }
    let mut whole = Vec::new();
    decode("test", data, &mut whole).unwrap();
    assert_eq!(whole, all);
}
