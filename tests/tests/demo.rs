//! `spectra demo`: the story once (`--once`) recovers the planted segments; the
//! interactive demo serves the console, and kcat reads the assignments topic (named by
//! the `--config` file it was given, as every subcommand takes one) from the embedded
//! broker at the address it prints.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spectra_tests::spectra_bin;

#[test]
fn demo_once_recovers_the_planted_segments() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(spectra_bin())
        .args([
            "demo",
            "--once",
            "--outlets",
            "400",
            "--days",
            "120",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo --once failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["planted_segments_recovered"], true, "{summary}");
    assert!(
        summary["ari_vs_planted"].as_f64().unwrap() >= 0.6,
        "{summary}"
    );
    assert_eq!(summary["outlets"], 400, "{summary}");
    // 5% of outlets drift at day 90: the last run moves some, not most.
    let moved = summary["outlets_moved_after_drift"].as_u64().unwrap();
    assert!((5..=60).contains(&moved), "{summary}");
}

#[test]
fn demo_serves_the_console_and_kcat_reads_assignments() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("demo.toml");
    std::fs::write(
        &config,
        "[kafka.topics]\nassignments = \"demo-assignments\"\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(spectra_bin())
        .args([
            "demo",
            "--days",
            "40",
            "--outlets",
            "200",
            "--day-ms",
            "50",
            "--listen",
            &listen,
            "--config",
        ])
        .arg(&config)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("demo.log")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut broker = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(i) = line.find("kcat -b ") {
            broker = line[i + 8..].split_whitespace().next().map(str::to_owned);
        }
        if line.contains("console: http://") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let broker = broker.expect("the demo prints its broker address");
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut assignments, mut kcat_err) = (String::new(), String::new());
    while Instant::now() < deadline {
        let out = Command::new("kcat")
            .args([
                "-b",
                &broker,
                "-C",
                "-t",
                "demo-assignments",
                "-e",
                "-q",
                "-f",
                "%k\t%s\t%p\n",
            ])
            .output()
            .expect("kcat is installed by scripts/test.sh");
        assignments = String::from_utf8_lossy(&out.stdout).into_owned();
        kcat_err = String::from_utf8_lossy(&out.stderr).into_owned();
        if assignments.lines().count() >= 200 {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let page = Command::new("curl")
        .args(["-s", &format!("http://{listen}/")])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    if assignments.lines().count() < 200 {
        // What the demo and kcat said, to tell a slow demo from a partition never read.
        let mut per_partition = std::collections::BTreeMap::<&str, usize>::new();
        for l in assignments.lines() {
            *per_partition
                .entry(l.rsplit('\t').next().unwrap())
                .or_default() += 1;
        }
        let log = std::fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "kcat read {} assignments, per partition {per_partition:?}; kcat stderr: {kcat_err}\n\
             the demo's log, last lines first:\n{}",
            assignments.lines().count(),
            tail.join("\n")
        );
    }
    let first = assignments.lines().next().unwrap();
    let (key, rest) = first.split_once('\t').unwrap();
    let (value, _partition) = rest.rsplit_once('\t').unwrap();
    assert!(key.starts_with("category-mix:"), "{key}");
    let v: serde_json::Value = serde_json::from_str(value).unwrap();
    assert_eq!(v["segmentation"], "category-mix");
    assert!(v["segment_id"].as_str().unwrap().starts_with('S'));
    assert!(v["run_id"].as_str().unwrap().starts_with("category-mix/"));
    let html = String::from_utf8_lossy(&page.stdout);
    assert!(
        html.contains("<html") && html.contains("Spectra"),
        "console page: {}",
        &html[..html.len().min(300)]
    );
}
