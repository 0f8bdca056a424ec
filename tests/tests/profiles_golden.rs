//! Issue 11, one profile engine, end to end through the `spectra` binary against a
//! real broker: a generated feed (planted segments) plus outlet master data with an
//! attribute of 40 distinct values is ingested, aggregated, segmented and published
//! by the real services. The profile on `segment-profiles` is the run's
//! `profiles.json`, field by field; the attribute with more values than are listed
//! keeps its most frequent ones and sums the rest into `(other)`; region and channel
//! are never dropped; sizes and values agree with the run's assignments.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};
use spectra_core::tables::profile::{MAX_ATTRIBUTE_VALUES, OTHER_VALUES};
use spectra_core::tables::read_rows;
use spectra_core::tables::runs::{AssignmentRow, Latest};
use spectra_core::Storage;
use spectra_tests::{compacted, producer, read_topic, send, Setup};

fn run(setup: &Setup, sub: &str, config: &Path, prefix: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let topics = ["assignments", "profiles", "recommendations", "metadata"]
        .iter()
        .flat_map(|t| ["--set".to_owned(), format!("kafka.topics.{t}={prefix}.{t}")]);
    setup
        .command(sub, &args)
        .args(topics)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_published_profile_is_the_runs_profile_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let prefix = setup.group.trim_end_matches(".ingest").to_owned();
    let config = dir.path().join("spectra.toml");
    std::fs::write(
        &config,
        "[[segmentation]]\nname = \"mix\"\nlevel = \"category\"\nwindow_days = 60\nk = 3\nmin_value = 0.0\n",
    )
    .unwrap();
    setup.create_topics(3);
    ok(
        run(
            &setup,
            "generate",
            &config,
            &prefix,
            &[
                "--outlets",
                "150",
                "--segments",
                "3",
                "--days",
                "45",
                "--start",
                "2026-09-01",
                "--bad-share",
                "0",
                "--seed",
                "11",
            ],
        ),
        "generate",
    );
    // Master data again for every outlet, now with a postcode (40 distinct values)
    // and, for a fifth of them, no region.
    let outlets: BTreeMap<String, Value> = read_topic(&setup.outlets)
        .into_iter()
        .filter_map(|c| {
            let k = String::from_utf8(c.key?).ok()?;
            Some((k, serde_json::from_slice(&c.value?).ok()?))
        })
        .collect();
    assert!(outlets.len() >= 150, "{} outlets generated", outlets.len());
    let p = producer();
    for (i, (id, v)) in outlets.iter().enumerate() {
        let mut v = v.clone();
        v["attributes"]["postcode"] = json!(format!("PC-{:02}", i % 40));
        if i % 5 == 0 {
            v.as_object_mut().unwrap().remove("region");
        }
        send(
            &p,
            &setup.outlets,
            Some(id.as_bytes()),
            Some(&serde_json::to_vec(&v).unwrap()),
        );
    }
    spectra_tests::flush(&p);
    setup.ingest_once(&[]);
    ok(
        run(&setup, "aggregate", &config, &prefix, &["--once"]),
        "aggregate",
    );
    ok(
        run(&setup, "segment", &config, &prefix, &["--once"]),
        "segment",
    );
    ok(
        run(&setup, "publish", &config, &prefix, &["--once"]),
        "publish",
    );

    let storage = Storage::from_url(&setup.storage).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (latest, stored, assignments) = rt.block_on(async {
        let latest: Latest = storage
            .get_json("segmentations/mix/latest.json")
            .await
            .unwrap()
            .unwrap();
        let stored: Vec<Value> = storage
            .get_json(&latest.file("profiles.json"))
            .await
            .unwrap()
            .unwrap();
        let assignments: Vec<AssignmentRow> =
            read_rows(&storage, &latest.file("assignments.parquet"))
                .await
                .unwrap()
                .unwrap();
        (latest, stored, assignments)
    });
    assert_eq!(stored.len(), 3, "three segments");

    // The topic carries the run's profiles, unchanged (nobody named a segment) but for
    // the SKU names master data gives (the publisher's join).
    let skus = spectra_tests::services::fed_sku_names(&setup.skus);
    assert!(!skus.is_empty(), "the feed names its SKUs");
    let topic = compacted(&format!("{prefix}.profiles"));
    assert_eq!(
        topic.len(),
        stored.len(),
        "one profile per segment on the topic"
    );
    for p in &stored {
        let id = p["segment_id"].as_str().unwrap();
        let published = topic
            .values()
            .find(|v| v["segment_id"] == id)
            .unwrap_or_else(|| panic!("segment {id} is not on the topic"));
        let named = spectra_tests::services::named_profile(p.clone(), &skus);
        assert!(
            named["patterns"][0]["skus"][0]["sku_name"].is_string(),
            "{id}: the leading SKU has a name"
        );
        let (a, b) = (named.as_object().unwrap(), published.as_object().unwrap());
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "same fields"
        );
        for (k, v) in a {
            assert_eq!(
                &b[k], v,
                "segment {id}: field `{k}` differs between profiles.json and the topic"
            );
        }
        assert_eq!(p["run_id"], json!(latest.run_id));

        // Size, value and KPIs agree with the run's assignments.
        let members: Vec<&AssignmentRow> =
            assignments.iter().filter(|a| a.segment_id == id).collect();
        assert_eq!(p["outlets"], json!(members.len()));
        let value: f64 = members.iter().map(|a| a.value).sum();
        assert!((p["value"].as_f64().unwrap() - value).abs() < 1e-6 * value.abs().max(1.0));
        assert_eq!(
            p["kpis"]["value"], p["value"],
            "kpis.value is the segment's total"
        );
        let lines: i64 = members.iter().map(|a| a.lines).sum();
        assert_eq!(p["kpis"]["lines"], json!(lines));

        // The attribute mix: region and channel always; postcode's 40 values as the 20
        // most frequent plus `(other)`, counting every outlet of the segment.
        let mix = |name: &str| -> Vec<Value> {
            p["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["attribute"] == name)
                .unwrap_or_else(|| panic!("segment {id}: no `{name}` in the attribute mix"))
                ["values"]
                .as_array()
                .unwrap()
                .clone()
        };
        for name in ["region", "channel", "size", "postcode"] {
            let values = mix(name);
            let counted: u64 = values.iter().map(|v| v["outlets"].as_u64().unwrap()).sum();
            assert_eq!(
                counted as usize,
                members.len(),
                "segment {id}: `{name}` counts every outlet"
            );
        }
        let postcode = mix("postcode");
        assert_eq!(
            postcode.len(),
            MAX_ATTRIBUTE_VALUES + 1,
            "segment {id}: {postcode:?}"
        );
        assert!(postcode.iter().any(|v| v["value"] == OTHER_VALUES));
        assert!(
            mix("region").iter().any(|v| v["value"] == "(none)"),
            "outlets without a region count as (none)"
        );
    }
    // Value shares over the segments sum to 1.
    let shares: f64 = stored
        .iter()
        .map(|p| p["value_share"].as_f64().unwrap())
        .sum();
    assert!((shares - 1.0).abs() < 1e-9, "value shares sum to {shares}");
}
