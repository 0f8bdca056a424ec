//! `recommendations.parquet` of a run: each assigned outlet's four SKU lists (contract
//! §3.3), as rows (`RecommendationRow`, one item of one list) and grouped per outlet
//! (`Recommendations`). Written by the segmenter with the run (see [`super::runs`],
//! which re-exports these), read by the publisher.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use serde::{Deserialize, Serialize};

use super::columns::{float, int, int_opt, schema, text};
use super::{batch, keyed, Batches, Columns, Rows};
use crate::{Result, Storage};

use DataType::{Float64, Int64, Utf8};

/// One recommended SKU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecItem {
    /// The SKU.
    pub sku_id: String,
    /// Higher is stronger (see the list).
    pub score: f64,
    /// Units for the next four weeks: the segment's typical order, scaled to the
    /// outlet's size and potential.
    pub suggested_quantity: f64,
    /// Why it is on the list, in one sentence (empty in runs written before reasons).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// An outlet's four lists (contract §3.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recommendations {
    /// Popular in the segment, never bought here.
    pub new_for_outlet: Vec<RecItem>,
    /// Bought by most of the segment, missing here lately.
    pub should_have: Vec<RecItem>,
    /// Rising now in the segment.
    pub popular_in_segment: Vec<RecItem>,
    /// Sold in the coming weeks in earlier years.
    pub seasonal_soon: Vec<RecItem>,
}

/// A 64-bit digest of SKU names by id (the names the publisher joins to the items it
/// sends), independent of the order the pairs come in.
pub fn sku_names_digest<'a>(names: impl IntoIterator<Item = (&'a String, &'a String)>) -> u64 {
    use std::hash::Hasher;
    names
        .into_iter()
        .map(|(id, name)| {
            let mut h = twox_hash::XxHash64::with_seed(1);
            h.write_u64(id.len() as u64);
            h.write(id.as_bytes());
            h.write(name.as_bytes());
            h.finish()
        })
        .fold(0, u64::wrapping_add)
}

/// The names of the four lists, in message order.
pub const REC_LISTS: [&str; 4] = [
    "new_for_outlet",
    "should_have",
    "popular_in_segment",
    "seasonal_soon",
];

impl Recommendations {
    /// The list of that name.
    pub fn list_mut(&mut self, name: &str) -> Option<&mut Vec<RecItem>> {
        Some(match name {
            "new_for_outlet" => &mut self.new_for_outlet,
            "should_have" => &mut self.should_have,
            "popular_in_segment" => &mut self.popular_in_segment,
            "seasonal_soon" => &mut self.seasonal_soon,
            _ => return None,
        })
    }

    /// A 64-bit digest of the four lists (XXH64 of every item's fields, list by list),
    /// stored with each row: the publisher compares it with the digest of the run it
    /// published last and sends only the outlets whose lists changed. Equal lists give
    /// equal digests in every process and version of this function; a change of the
    /// function only makes lists look changed once.
    pub fn digest(&self) -> u64 {
        use std::hash::Hasher;
        let mut h = twox_hash::XxHash64::with_seed(0);
        for (_, items) in self.lists() {
            h.write_u64(items.len() as u64);
            for i in items {
                for text in [&i.sku_id, &i.reason] {
                    h.write_u64(text.len() as u64);
                    h.write(text.as_bytes());
                }
                h.write_u64(i.score.to_bits());
                h.write_u64(i.suggested_quantity.to_bits());
            }
        }
        h.finish()
    }

    /// The lists with their names.
    pub fn lists(&self) -> [(&'static str, &Vec<RecItem>); 4] {
        [
            (REC_LISTS[0], &self.new_for_outlet),
            (REC_LISTS[1], &self.should_have),
            (REC_LISTS[2], &self.popular_in_segment),
            (REC_LISTS[3], &self.seasonal_soon),
        ]
    }
}

/// One row of `recommendations.parquet`: one item of one list of one outlet.
#[derive(Debug, Clone, PartialEq)]
pub struct RecommendationRow {
    /// The outlet.
    pub outlet_id: String,
    /// One of [`REC_LISTS`].
    pub list: String,
    /// 1 = strongest.
    pub rank: i64,
    /// The item.
    pub item: RecItem,
    /// [`Recommendations::digest`] of the outlet's four lists, the same on each of its
    /// rows; `None` in files written before digests.
    pub lists_digest: Option<u64>,
}

impl Rows for RecommendationRow {
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema(&[
                ("outlet_id", Utf8, false),
                ("list", Utf8, false),
                ("rank", Int64, false),
                ("sku_id", Utf8, false),
                ("score", Float64, false),
                ("suggested_quantity", Float64, false),
                ("reason", Utf8, true),
                ("lists_digest", Int64, true),
            ])
        });
        S.clone()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        batch(
            Self::schema(),
            vec![
                text(rows.iter().map(|r| Some(r.outlet_id.as_str()))),
                text(rows.iter().map(|r| Some(r.list.as_str()))),
                int(rows.iter().map(|r| r.rank)),
                text(rows.iter().map(|r| Some(r.item.sku_id.as_str()))),
                float(rows.iter().map(|r| r.item.score)),
                float(rows.iter().map(|r| r.item.suggested_quantity)),
                text(
                    rows.iter()
                        .map(|r| Some(r.item.reason.as_str()).filter(|s| !s.is_empty())),
                ),
                int_opt(rows.iter().map(|r| r.lists_digest.map(|d| d as i64))),
            ],
        )
    }

    fn from_batch(c: &Columns<'_>) -> Result<Vec<Self>> {
        let (o, l, s) = (c.ids("outlet_id")?, c.ids("list")?, c.ids("sku_id")?);
        let (r, sc, q) = (
            c.int("rank")?,
            c.float("score")?,
            c.float("suggested_quantity")?,
        );
        // Runs written before reasons have no `reason` column.
        let reason = c.text_if_present("reason")?;
        let digest = digests(c)?;
        Ok((0..c.len())
            .map(|k| RecommendationRow {
                outlet_id: o[k].clone(),
                list: l[k].clone(),
                rank: r[k],
                item: RecItem {
                    sku_id: s[k].clone(),
                    score: sc[k],
                    suggested_quantity: q[k],
                    reason: reason[k].clone().unwrap_or_default(),
                },
                lists_digest: digest[k],
            })
            .collect())
    }
}

/// The `lists_digest` column of a batch (all `None` in files written before it).
fn digests(c: &Columns<'_>) -> Result<Vec<Option<u64>>> {
    if !c.has("lists_digest") {
        return Ok(vec![None; c.len()]);
    }
    let a = c.primitive::<arrow::datatypes::Int64Type>("lists_digest")?;
    Ok(a.iter().map(|v| v.map(|d| d as u64)).collect())
}

/// Every outlet's recommendations as rows, outlet by outlet, lists in
/// [`REC_LISTS`] order, items ranked.
pub fn recommendation_rows<'a>(
    recs: impl IntoIterator<Item = (&'a String, &'a Recommendations)>,
) -> Vec<RecommendationRow> {
    let mut out = Vec::new();
    for (outlet, r) in recs {
        let digest = Some(r.digest());
        for (list, items) in r.lists() {
            for (i, item) in items.iter().enumerate() {
                out.push(RecommendationRow {
                    outlet_id: outlet.clone(),
                    list: list.to_owned(),
                    rank: i as i64 + 1,
                    item: item.clone(),
                    lists_digest: digest,
                });
            }
        }
    }
    out
}

/// A run's `recommendations.parquet` holding `outlets`' lists, which must come in
/// outlet id order: encoded a row group at a time as the iterator yields them
/// ([`keyed::encode_batches`]), so only the encoded file is held, never every outlet's
/// lists.
pub fn encode(
    outlets: &mut dyn Iterator<Item = (String, Recommendations)>,
) -> Result<bytes::Bytes> {
    // Batches of whole outlets of about a row group's rows, built from the lists in
    // place (rows would copy each item's strings and the outlet id onto every row).
    let batches = std::iter::from_fn(|| {
        let mut chunk = Vec::new();
        let mut rows = 0;
        for (o, r) in &mut *outlets {
            rows += r.lists().iter().map(|(_, l)| l.len()).sum::<usize>();
            chunk.push((o, r));
            if rows >= keyed::ROW_GROUP_ROWS {
                break;
            }
        }
        (!chunk.is_empty()).then(|| lists_batch(&chunk))
    });
    keyed::encode_batches::<RecommendationRow>(
        super::layout::run_files::RECOMMENDATIONS,
        "outlet_id",
        batches,
    )
}

/// The rows of `outlets`' lists as one batch of [`RecommendationRow`]'s schema, as
/// [`recommendation_rows`] then [`Rows::to_batch`] would make it.
fn lists_batch(outlets: &[(String, Recommendations)]) -> Result<RecordBatch> {
    use arrow::array::{Float64Builder, Int64Builder, StringBuilder};
    let rows: usize = outlets
        .iter()
        .map(|(_, r)| r.lists().iter().map(|(_, l)| l.len()).sum::<usize>())
        .sum();
    let text = || StringBuilder::with_capacity(rows, rows * 16);
    let (mut outlet, mut list, mut sku, mut reason) = (text(), text(), text(), text());
    let (mut rank, mut digest) = (
        Int64Builder::with_capacity(rows),
        Int64Builder::with_capacity(rows),
    );
    let (mut score, mut quantity) = (
        Float64Builder::with_capacity(rows),
        Float64Builder::with_capacity(rows),
    );
    for (o, r) in outlets {
        let d = r.digest() as i64;
        for (name, items) in r.lists() {
            for (i, item) in items.iter().enumerate() {
                outlet.append_value(o);
                list.append_value(name);
                rank.append_value(i as i64 + 1);
                sku.append_value(&item.sku_id);
                score.append_value(item.score);
                quantity.append_value(item.suggested_quantity);
                match item.reason.as_str() {
                    "" => reason.append_null(),
                    why => reason.append_value(why),
                }
                digest.append_value(d);
            }
        }
    }
    batch(
        RecommendationRow::schema(),
        vec![
            Arc::new(outlet.finish()),
            Arc::new(list.finish()),
            Arc::new(rank.finish()),
            Arc::new(sku.finish()),
            Arc::new(score.finish()),
            Arc::new(quantity.finish()),
            Arc::new(reason.finish()),
            Arc::new(digest.finish()),
        ],
    )
}

/// Rows back into each outlet's lists (items in rank order).
pub fn group_recommendations(
    mut rows: Vec<RecommendationRow>,
) -> BTreeMap<String, Recommendations> {
    rows.sort_by(|a, b| (&a.outlet_id, &a.list, a.rank).cmp(&(&b.outlet_id, &b.list, b.rank)));
    let mut out: BTreeMap<String, Recommendations> = BTreeMap::new();
    for r in rows {
        if let Some(list) = out.entry(r.outlet_id).or_default().list_mut(&r.list) {
            list.push(r.item);
        }
    }
    out
}

/// One outlet's lists from a run's `recommendations.parquet` (`file`), read from the
/// row groups that can hold it ([`keyed::read_key`]); `None` when the outlet has no
/// item in any list. A missing file is an [`crate::Error::Table`] naming it.
pub async fn read_outlet(
    storage: &Storage,
    file: &str,
    outlet_id: &str,
) -> Result<Option<Recommendations>> {
    let rows: Vec<RecommendationRow> = keyed::read_key(storage, file, "outlet_id", outlet_id)
        .await?
        .ok_or_else(|| super::runs::missing(file.to_owned()))?;
    Ok(group_recommendations(rows).into_values().next())
}

/// The columns [`RecommendationsFile::digests`] and [`read_digests`] decode.
const DIGEST_COLUMNS: [&str; 2] = ["outlet_id", "lists_digest"];

/// Appends a batch's outlets with their digests to `out` (an outlet once, however
/// many rows it has).
fn push_digests(out: &mut Vec<(String, Option<u64>)>, c: &Columns<'_>) -> Result<()> {
    let digest = digests(c)?;
    for (id, d) in c.id_strings("outlet_id")?.iter().flatten().zip(digest) {
        if out.last().is_none_or(|(l, _)| l != id) {
            out.push((id.to_owned(), d));
        }
    }
    Ok(())
}

/// The outlets of a run's `recommendations.parquet` (`file`) with the digests of
/// their lists, as [`RecommendationsFile::digests`] gives them, from ranged reads of
/// those two columns alone (a tenth of the file); `None` when the file does not exist.
pub async fn read_digests(
    storage: &Storage,
    file: &str,
) -> Result<Option<Vec<(String, Option<u64>)>>> {
    use futures::TryStreamExt;
    let Some(mut batches) = keyed::column_batches(storage, file, &DIGEST_COLUMNS).await? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    while let Some(b) = batches.try_next().await? {
        push_digests(&mut out, &Columns::new(&b, file))?;
    }
    Ok(Some(out))
}

/// Every outlet's lists from a run's `recommendations.parquet`, a batch at a time and
/// in outlet order ([`OutletLists::next_outlets`]): a reader of every outlet (the
/// publish cycle) never holds more than one batch's outlets.
pub struct OutletLists {
    batches: Batches,
    /// The last outlet of the batch before, whose rows may go on in the next.
    open: Option<(String, Recommendations)>,
}

/// A run's `recommendations.parquet` fetched once and read as often as needed: the
/// outlets it lists with their digests ([`RecommendationsFile::digests`]), then every
/// outlet's lists ([`RecommendationsFile::lists`]).
pub struct RecommendationsFile {
    bytes: bytes::Bytes,
    path: String,
}

impl RecommendationsFile {
    /// Fetches the file; a missing one is an [`crate::Error::Table`] naming it.
    pub async fn fetch(storage: &Storage, file: &str) -> Result<Self> {
        Ok(Self {
            bytes: storage
                .get(file)
                .await?
                .ok_or_else(|| super::runs::missing(file.to_owned()))?,
            path: file.to_owned(),
        })
    }

    /// The outlets with an item in some list, in file order, each with the digest of
    /// its lists ([`Recommendations::digest`]; `None` in files written before digests).
    /// Only the `outlet_id` and `lists_digest` columns are decoded.
    pub fn digests(&self) -> Result<Vec<(String, Option<u64>)>> {
        let mut batches = Batches::read(self.bytes.clone(), &self.path, Some(&DIGEST_COLUMNS))?;
        let mut out = Vec::new();
        while let Some(b) = batches.next_batch()? {
            push_digests(&mut out, &Columns::new(&b, &self.path))?;
        }
        Ok(out)
    }

    /// Every outlet's lists, a batch at a time.
    pub fn lists(&self) -> Result<OutletLists> {
        Ok(OutletLists {
            batches: Batches::read(self.bytes.clone(), &self.path, None)?,
            open: None,
        })
    }
}

impl OutletLists {
    /// Opens a run's `recommendations.parquet`; a missing file is an
    /// [`crate::Error::Table`] naming it.
    pub async fn open(storage: &Storage, file: &str) -> Result<Self> {
        RecommendationsFile::fetch(storage, file).await?.lists()
    }

    /// The next outlets whose rows are complete, each with its lists; `None` at the
    /// end. Rows out of outlet order (a file not written by [`super::runs::Run::write`])
    /// are an [`crate::Error::Table`].
    pub fn next_outlets(&mut self) -> Result<Option<Vec<(String, Recommendations)>>> {
        let mut out = Vec::new();
        while out.is_empty() {
            let Some(b) = self.batches.next_batch()? else {
                return Ok(self.open.take().map(|o| vec![o]));
            };
            let path = self.batches.path();
            let rows = RecommendationRow::from_batch(&Columns::new(&b, path))?;
            let disorder = |reason: String| crate::Error::Table {
                file: path.to_owned(),
                reason,
            };
            for r in rows {
                match &self.open {
                    Some((id, _)) if *id > r.outlet_id => {
                        return Err(disorder(format!(
                            "rows are not sorted by `outlet_id`: `{}` after `{id}`",
                            r.outlet_id
                        )));
                    }
                    Some((id, _)) if *id == r.outlet_id => {}
                    _ => {
                        let next = (r.outlet_id.clone(), Recommendations::default());
                        out.extend(self.open.replace(next));
                    }
                }
                let Some((id, lists)) = &mut self.open else {
                    unreachable!("an outlet is open")
                };
                if let Some(l) = lists.list_mut(&r.list) {
                    if r.rank != l.len() as i64 + 1 {
                        return Err(disorder(format!(
                            "list `{}` of outlet `{id}` is not in rank order at rank {}",
                            r.list, r.rank
                        )));
                    }
                    l.push(r.item);
                }
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recommendations_round_trip_through_rows() {
        let item = |s: &str, score: f64| RecItem {
            sku_id: s.into(),
            score,
            suggested_quantity: 2.0,
            reason: if score > 1.0 {
                String::new()
            } else {
                format!("{s} because")
            },
        };
        let mut recs = BTreeMap::new();
        recs.insert(
            "o1".to_owned(),
            Recommendations {
                new_for_outlet: vec![item("a", 0.9), item("b", 0.5)],
                seasonal_soon: vec![item("c", 1.5)],
                ..Default::default()
            },
        );
        let rows = recommendation_rows(&recs);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].rank, 2);
        assert_eq!(group_recommendations(rows), recs);
    }

    /// Equal lists have equal digests; a change of any field, of an item's list or
    /// of its rank changes the digest.
    #[test]
    fn a_digest_follows_every_field_of_the_lists() {
        let item = |sku: &str| RecItem {
            sku_id: sku.into(),
            score: 0.5,
            suggested_quantity: 3.0,
            reason: "Bought by 60% of the segment.".into(),
        };
        let base = Recommendations {
            new_for_outlet: vec![item("a"), item("b")],
            should_have: vec![item("c")],
            ..Default::default()
        };
        assert_eq!(base.digest(), base.clone().digest());
        let changed: Vec<Recommendations> = vec![
            {
                let mut r = base.clone();
                r.new_for_outlet[1].sku_id = "bb".into();
                r
            },
            {
                let mut r = base.clone();
                r.new_for_outlet[0].score = 0.51;
                r
            },
            {
                let mut r = base.clone();
                r.should_have[0].suggested_quantity = 4.0;
                r
            },
            {
                let mut r = base.clone();
                r.should_have[0].reason = "Bought by 61% of the segment.".into();
                r
            },
            {
                let mut r = base.clone();
                r.new_for_outlet.swap(0, 1);
                r
            },
            {
                let mut r = base.clone();
                let moved = r.should_have.pop().unwrap();
                r.popular_in_segment.push(moved);
                r
            },
            {
                let mut r = base.clone();
                // The same bytes split differently between the id and the reason.
                r.new_for_outlet[0].sku_id = "aB".into();
                r.new_for_outlet[0].reason = "ought by 60% of the segment.".into();
                r
            },
            Recommendations::default(),
        ];
        let mut seen = std::collections::HashSet::from([base.digest()]);
        for r in &changed {
            assert!(seen.insert(r.digest()), "{r:?}");
        }
    }

    /// 3,000 outlets with 1 to 7 items: rows span several batches and row groups,
    /// and some outlet's rows cross a batch boundary.
    fn many() -> BTreeMap<String, Recommendations> {
        (0..3000)
            .map(|o| {
                let item = |k: usize| RecItem {
                    sku_id: format!("K{k}"),
                    score: k as f64,
                    suggested_quantity: 1.0,
                    reason: String::new(),
                };
                let r = Recommendations {
                    new_for_outlet: (0..o % 4).map(item).collect(),
                    should_have: (0..1 + o % 3).map(item).collect(),
                    ..Default::default()
                };
                (format!("O{o:05}"), r)
            })
            .collect()
    }

    #[tokio::test]
    async fn every_outlet_streams_back_whole_and_one_outlet_reads_alone() {
        let storage = Storage::memory();
        let recs = many();
        let outlets: Vec<_> = recs.iter().collect();
        let chunks = outlets
            .chunks(100)
            .map(|c| recommendation_rows(c.iter().copied()));
        keyed::write_chunks(&storage, "r.parquet", "outlet_id", chunks)
            .await
            .unwrap();
        let mut lists = OutletLists::open(&storage, "r.parquet").await.unwrap();
        let (mut got, mut reads) = (BTreeMap::new(), 0);
        while let Some(outlets) = lists.next_outlets().unwrap() {
            reads += 1;
            for (o, r) in outlets {
                assert!(got.insert(o, r).is_none(), "each outlet once");
            }
        }
        assert!(reads > 1, "{reads} reads");
        assert_eq!(got, recs);
        let file = RecommendationsFile::fetch(&storage, "r.parquet")
            .await
            .unwrap();
        let listed: Vec<&String> = recs
            .iter()
            .filter(|(_, r)| r.lists().iter().any(|(_, l)| !l.is_empty()))
            .map(|(o, _)| o)
            .collect();
        let digests = file.digests().unwrap();
        assert_eq!(digests.iter().map(|(o, _)| o).collect::<Vec<_>>(), listed);
        for (o, d) in &digests {
            assert_eq!(*d, Some(recs[o].digest()), "{o}");
        }
        let read = read_digests(&storage, "r.parquet").await.unwrap();
        assert_eq!(read.as_ref(), Some(&digests));
        assert_eq!(read_digests(&storage, "none.parquet").await.unwrap(), None);
        let one = read_outlet(&storage, "r.parquet", "O01234").await.unwrap();
        assert_eq!(one.as_ref(), recs.get("O01234"));
        assert_eq!(
            read_outlet(&storage, "r.parquet", "nobody").await.unwrap(),
            None
        );
        assert!(read_outlet(&storage, "none.parquet", "O1").await.is_err());
    }

    /// The batches `encode` builds in place are those of the rows, and the file it
    /// makes reads back whole.
    #[tokio::test]
    async fn lists_encoded_in_place_are_their_rows() {
        let mut recs = many();
        for (n, r) in recs.values_mut().enumerate() {
            for item in r.should_have.iter_mut().filter(|_| n % 2 == 0) {
                item.reason = format!("reason {n}");
            }
        }
        let outlets: Vec<(String, Recommendations)> = recs.clone().into_iter().collect();
        assert_eq!(
            lists_batch(&outlets).unwrap(),
            RecommendationRow::to_batch(&recommendation_rows(&recs)).unwrap()
        );
        let storage = Storage::memory();
        let bytes = encode(&mut outlets.into_iter()).unwrap();
        storage.put("e.parquet", bytes).await.unwrap();
        let mut lists = OutletLists::open(&storage, "e.parquet").await.unwrap();
        let mut got = BTreeMap::new();
        while let Some(outlets) = lists.next_outlets().unwrap() {
            got.extend(outlets);
        }
        let listed: BTreeMap<String, Recommendations> = recs
            .into_iter()
            .filter(|(_, r)| r.lists().iter().any(|(_, l)| !l.is_empty()))
            .collect();
        assert_eq!(got, listed);
    }

    #[tokio::test]
    async fn rows_out_of_outlet_order_are_refused() {
        let storage = Storage::memory();
        let recs = many();
        let mut outlets: Vec<_> = recs.iter().collect();
        outlets.swap(10, 2000);
        let chunks = outlets
            .chunks(100)
            .map(|c| recommendation_rows(c.iter().copied()));
        let e = keyed::write_chunks(&storage, "r.parquet", "outlet_id", chunks)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not sorted by `outlet_id`"), "{e}");
        assert_eq!(storage.get("r.parquet").await.unwrap(), None);
        // A file written otherwise is refused by the streaming reader too.
        let rows = recommendation_rows(outlets.iter().copied());
        crate::tables::write_rows(&storage, "u.parquet", &rows)
            .await
            .unwrap();
        let mut lists = OutletLists::open(&storage, "u.parquet").await.unwrap();
        let e = loop {
            match lists.next_outlets() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("read to the end"),
                Err(e) => break e,
            }
        };
        assert!(e.to_string().contains("not sorted by `outlet_id`"), "{e}");
    }
}
