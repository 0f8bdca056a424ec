//! The web console in headless Chromium: it loads, shows every segment with its
//! spectrum chart, and a tag set through the API appears after a reload. A screenshot
//! is saved to `{target}/artifacts/console.png` (and the segment page beside it).

mod publish_fixtures;

use std::path::PathBuf;
use std::process::Command;

use publish_fixtures as fx;
use serde_json::json;
use spectra_core::service::Context;
use spectra_publisher::PublishOptions;
use tokio_util::sync::CancellationToken;

fn chromium() -> String {
    for c in ["chromium", "chromium-browser"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.into();
        }
    }
    panic!("chromium is not installed: run scripts/test.sh (it installs it as root) or `apt-get install -y chromium`");
}

fn artifacts() -> PathBuf {
    // target/debug/deps/<test> → target/artifacts
    let exe = std::env::current_exe().unwrap();
    let dir = exe.ancestors().nth(3).unwrap().join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn browser(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--window-size=1400,1000", "--virtual-time-budget=8000"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_shows_segments_with_charts_and_an_edited_tag_after_reload() {
    let as_of: chrono::NaiveDate = "2026-11-21".parse().unwrap();
    let (_dir, url, root) = fx::storage();
    let cfg = fx::config(&url, &spectra_tests::fresh("ui"));
    let outlets = fx::outlets(60);
    let lines = fx::lines(5, &outlets, as_of, 91, 25);
    fx::write_daily(&root, &lines);
    fx::write_features(&root, "mix", as_of, 91, &outlets, &lines);
    fx::write_run(
        &root,
        "mix",
        as_of,
        1,
        &fx::first_assignments(&outlets),
        &fx::window_totals(&lines, as_of, 91),
    );
    let token = CancellationToken::new();
    let svc = spectra_publisher::start(
        cfg.clone(),
        Context::new(token.clone()),
        PublishOptions::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", svc.addr().unwrap());

    let dom = tokio::task::spawn_blocking({
        let base = base.clone();
        move || browser(&["--dump-dom"], &format!("{base}/#/segments"))
    })
    .await
    .unwrap();
    assert_eq!(
        dom.matches("class=\"card segment-card\"").count(),
        3,
        "{dom}"
    );
    assert_eq!(
        dom.matches("<svg class=\"dna\"").count(),
        3,
        "three spectrum strips"
    );
    assert!(
        dom.contains("coffee lovers") && dom.contains("60 outlets"),
        "{dom}"
    );
    assert!(!dom.contains("#shelf-champion"));

    let r = reqwest::Client::new()
        .put(format!("{base}/api/segmentations/mix/segments/S2"))
        .bearer_auth("s3cret")
        .json(&json!({"tags": ["#shelf-champion"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let dir = artifacts();
    let shot = dir.join("console.png");
    let _ = std::fs::remove_file(&shot);
    let (dom, detail) = tokio::task::spawn_blocking({
        let (base, shot, dir) = (base.clone(), shot.clone(), dir.clone());
        move || {
            let dom = browser(&["--dump-dom"], &format!("{base}/#/segments"));
            browser(
                &[&format!("--screenshot={}", shot.display())],
                &format!("{base}/#/segments"),
            );
            browser(
                &[&format!(
                    "--screenshot={}",
                    dir.join("console-segment.png").display()
                )],
                &format!("{base}/#/segment/S1"),
            );
            let detail = browser(&["--dump-dom"], &format!("{base}/#/segment/S1"));
            (dom, detail)
        }
    })
    .await
    .unwrap();
    let s2 = dom.split("data-segment=\"S2\"").nth(1).expect("S2 card");
    let s2 = s2.split("</article>").next().unwrap();
    assert!(
        s2.contains("<span class=\"tag\">#shelf-champion</span>"),
        "the tag shows on S2's card after reload: {s2}"
    );
    assert!(
        detail.contains("Category fit")
            && detail.contains("Who they are")
            && detail.contains("Largest outlets"),
        "{detail}"
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        png.len() > 20_000,
        "a real page, not a blank one ({} bytes)",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
    token.cancel();
}
