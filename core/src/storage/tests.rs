use super::*;

#[tokio::test]
async fn ranges_read_in_place_on_file_are_those_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = Storage::from_url(&format!("file://{}/root", dir.path().display())).unwrap();
    let memory = Storage::memory();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for s in [&file, &memory] {
        s.put("t/a.parquet", Bytes::from(data.clone()))
            .await
            .unwrap();
    }
    // Unordered, overlapping, adjacent, near (one read) and far apart (another),
    // and the object's last byte.
    let ranges = [
        150_000..150_100,
        10..20,
        15..30,
        30..40,
        5_000..9_000,
        9_000 + RANGE_GAP + 1..9_000 + RANGE_GAP + 9,
        199_999..200_000,
    ];
    let want: Vec<&[u8]> = ranges
        .iter()
        .map(|r| &data[r.start as usize..r.end as usize])
        .collect();
    for s in [&file, &memory] {
        let got = s.get_ranges("t/a.parquet", &ranges).await.unwrap();
        let got: Vec<&[u8]> = got.iter().map(|b| &b[..]).collect();
        assert_eq!(got, want, "{}", s.url());
    }
    // Past the end, and a missing object.
    let past = [0..1, 199_999..200_001];
    assert!(file.get_ranges("t/a.parquet", &past).await.is_err());
    assert!(file.get_ranges("t/none.parquet", &past[..1]).await.is_err());
}

#[tokio::test]
async fn conditional_puts_on_file_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = Storage::from_url(&format!("file://{}/root", dir.path().display())).unwrap();
    for s in [file, Storage::memory()] {
        s.verify_conditional_puts("t").await.unwrap();
        let v1 = match s
            .put_if("state/a.json", Bytes::from_static(b"1"), &Condition::Absent)
            .await
            .unwrap()
        {
            PutOutcome::Written(v) => v,
            PutOutcome::Conflict => panic!("absent"),
        };
        let (b, v) = s.get_versioned("state/a.json").await.unwrap().unwrap();
        assert_eq!((&b[..], &v), (&b"1"[..], &v1));
        let stale = v1.clone();
        assert!(matches!(
            s.put_if(
                "state/a.json",
                Bytes::from_static(b"2"),
                &Condition::Matches(v1)
            )
            .await
            .unwrap(),
            PutOutcome::Written(_)
        ));
        assert_eq!(
            s.put_if(
                "state/a.json",
                Bytes::from_static(b"3"),
                &Condition::Matches(stale)
            )
            .await
            .unwrap(),
            PutOutcome::Conflict
        );
        assert_eq!(&s.get("state/a.json").await.unwrap().unwrap()[..], b"2");
        assert!(s.list("state/probe/").await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn file_store_round_trip_and_urls() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/root", dir.path().display());
    let s = Storage::from_url(&url).unwrap();
    s.put(
        "raw/invoices/date=2026-11-20/a.parquet",
        Bytes::from_static(b"x"),
    )
    .await
    .unwrap();
    s.put_json("state/x.json", &serde_json::json!({"n": 1}))
        .await
        .unwrap();
    let listed = s.list("raw/").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].path, "raw/invoices/date=2026-11-20/a.parquet");
    let v: serde_json::Value = s.get_json("state/x.json").await.unwrap().unwrap();
    assert_eq!(v["n"], 1);
    assert!(s.get("nope").await.unwrap().is_none());
    assert!(dir
        .path()
        .join("root/raw/invoices/date=2026-11-20/a.parquet")
        .exists());
    let t = s.table_url("raw/invoices/");
    assert!(
        t.starts_with("file:///") && t.ends_with("/root/raw/invoices/"),
        "{t}"
    );
    s.delete("state/x.json").await.unwrap();
    s.delete("state/x.json").await.unwrap();
    assert!(s.list("missing/").await.unwrap().is_empty());
}

/// A root whose name holds characters object_store escapes in its paths (`~ % #
/// [ ]`) and a space: every object is written, listed, read and named where it is.
#[tokio::test]
async fn a_root_with_escaped_characters_lists_its_own_objects() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a~b%25c #d[e]");
    let url = url::Url::from_directory_path(&root).unwrap().to_string();
    let s = Storage::from_url(&url).unwrap();
    let rel = "raw/invoices/date=2026-11-20/a.parquet";
    s.put(rel, Bytes::from_static(b"x")).await.unwrap();
    assert!(root.join(rel).exists(), "written under {}", root.display());
    let listed: Vec<String> = s
        .list("raw/")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.path)
        .collect();
    assert_eq!(listed, [rel]);
    assert_eq!(
        s.list_folders("raw/invoices/").await.unwrap(),
        ["raw/invoices/date=2026-11-20/"]
    );
    assert!(s.exists(rel).await.unwrap());
    // A query engine decodes the URL's path back into the store path.
    for rel in [rel, "raw/invoices/"] {
        let url = Url::parse(&s.table_url(rel)).unwrap();
        assert_eq!(
            Path::from_url_path(url.path()).unwrap(),
            s.path(rel),
            "{url}"
        );
    }
    assert_eq!(
        s.get(&listed[0]).await.unwrap().unwrap(),
        Bytes::from_static(b"x")
    );
    s.delete(rel).await.unwrap();
    assert!(!root.join(rel).exists());
}

/// An `s3://` prefix is its URL's path decoded once: the keys' own text, and the
/// table URLs lead a query engine back to it.
#[test]
fn an_s3_prefix_is_its_decoded_path() {
    let s = Storage::from_url("s3://bucket/run~1%20%5Bx%5D%25%23/").unwrap();
    assert_eq!(
        s.path("raw/a.parquet").as_ref(),
        "run~1 [x]%#/raw/a.parquet"
    );
    assert_eq!(s.path("").as_ref(), "run~1 [x]%#");
    let url = s.table_url("raw/invoices/");
    assert!(
        url.starts_with("s3://bucket/") && url.ends_with("/raw/invoices/"),
        "{url}"
    );
    let url = Url::parse(&url).unwrap();
    assert_eq!(
        Path::from_url_path(url.path()).unwrap(),
        s.path("raw/invoices")
    );
    let m = Storage::memory();
    assert_eq!(m.table_url("raw/invoices/"), "memory:///raw/invoices/");
    assert!(Storage::from_url("s3://bucket/a//b").is_err());
}

#[test]
fn bad_urls_say_why() {
    let e = Storage::from_url("ftp://x").unwrap_err().to_string();
    assert!(e.contains("unsupported scheme `ftp`"), "{e}");
    assert!(Storage::from_url("not a url").is_err());
}
