//! Driving the services as a user does: `spectra` subcommands with a config file and
//! this test's topics, the publish service with its HTTP API, and the results read
//! back from the run folders and the compacted output topics.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use reqwest::StatusCode;
use serde_json::Value;
use spectra_core::service::Context;
use tokio_util::sync::CancellationToken;

use crate::fixture::{fixture, Stage, Store};
use crate::{read_parquet_dir, Setup};

/// Output topics of one test, as `--set` flags.
pub fn output_flags(prefix: &str) -> Vec<String> {
    ["assignments", "profiles", "recommendations", "metadata"]
        .iter()
        .flat_map(|t| ["--set".to_owned(), format!("kafka.topics.{t}={prefix}.{t}")])
        .collect()
}

/// Runs `spectra {sub} --config {config}` with this test's topics (inputs and outputs).
pub fn run(setup: &Setup, sub: &str, config: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let prefix = setup.group.trim_end_matches(".ingest").to_owned();
    setup
        .command(sub, &args)
        .args(output_flags(&prefix))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// The last stdout line of a command that must have succeeded, as JSON (`null` if none).
pub fn ok(out: Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap_or(Value::Null)
}

/// Writes `spectra.toml` with `body` into `dir`.
pub fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("spectra.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// Outlet → segment of a run folder.
pub fn run_assignments(root: &Path, run_id: &str) -> BTreeMap<String, String> {
    let mut p = run_id.splitn(3, '/');
    let (name, as_of, seq) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
    let dir = root.join(format!("segmentations/{name}/runs/{as_of}.{seq}"));
    let mut out = BTreeMap::new();
    for b in read_parquet_dir(&dir) {
        let Some(seg) = b.column_by_name("segment_id") else {
            continue;
        };
        if b.column_by_name("change").is_none() {
            continue;
        }
        let o = b.column_by_name("outlet_id").unwrap().as_string::<i32>();
        let s = seg.as_string::<i32>();
        for i in 0..b.num_rows() {
            out.insert(o.value(i).to_owned(), s.value(i).to_owned());
        }
    }
    out
}

/// The compacted view of `segment-assignments` for `name`: outlet → segment.
pub fn compacted_assignments(topic: &str, name: &str) -> BTreeMap<String, String> {
    let prefix = format!("{name}:");
    crate::compacted(topic)
        .into_iter()
        .filter_map(|(k, v)| {
            let outlet = k.strip_prefix(&prefix)?.to_owned();
            Some((outlet, v["segment_id"].as_str().unwrap().to_owned()))
        })
        .collect()
}

/// Chromium's command (`scripts/test.sh` installs Debian's `chromium`).
pub fn chromium() -> String {
    for c in ["chromium", "chromium-browser"] {
        if std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.into();
        }
    }
    panic!("chromium is not installed: run scripts/test.sh (it installs it as root) or `apt-get install -y chromium`");
}

/// `target/artifacts`, where tests leave screenshots.
pub fn artifacts() -> std::path::PathBuf {
    // target/<profile>/deps/<test> → target/artifacts
    let exe = std::env::current_exe().unwrap();
    let dir = exe.ancestors().nth(3).unwrap().join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium on `url` (1400 × 1000, 8 s of virtual time for the page's
/// requests) with `args` (`--dump-dom`, `--screenshot=…`); its stdout.
pub fn browser(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(chromium())
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

/// The page `url` as headless Chromium renders it: its DOM.
pub fn rendered(url: &str) -> String {
    browser(&["--dump-dom"], url)
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The publish service as a child process, killed when dropped.
pub struct Publisher(pub Child);

impl Publisher {
    /// Starts `spectra publish` (the service, its API on `127.0.0.1:{port}`) with
    /// `config` and this test's output topics.
    pub fn spawn(setup: &Setup, config: &Path, port: u16) -> Self {
        let prefix = setup.group.trim_end_matches(".ingest").to_owned();
        Self(
            setup
                .command(
                    "publish",
                    &[
                        "--config",
                        config.to_str().unwrap(),
                        "--set",
                        &format!("publish.listen=127.0.0.1:{port}"),
                    ],
                )
                .args(output_flags(&prefix))
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP request (optional bearer token and JSON body): status (0 when the
/// connection failed) and body.
pub fn http(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r = reqwest::Client::new().request(method, url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        match r.send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    })
}

/// Polls `f` every 300 ms until it holds; panics naming `what` after 90 s.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The SKU names fed on a SKUs topic: the `name` of each key's last message.
pub fn fed_sku_names(topic: &str) -> BTreeMap<String, String> {
    crate::compacted(topic)
        .into_iter()
        .filter_map(|(k, v)| Some((k, v["name"].as_str()?.to_owned())))
        .filter(|(_, n)| !n.trim().is_empty())
        .collect()
}

/// Puts `sku_name` beside every `sku_id` of the objects in `items` that master data
/// names (the publisher's join, as the README documents it).
fn name_items(items: Option<&mut Vec<Value>>, names: &BTreeMap<String, String>) {
    for item in items.into_iter().flatten() {
        let name = item["sku_id"]
            .as_str()
            .and_then(|id| names.get(id))
            .cloned();
        if let (Some(n), Some(o)) = (name, item.as_object_mut()) {
            o.insert("sku_name".to_owned(), Value::from(n));
        }
    }
}

/// A run's profile (as in `profiles.json`) as the publisher serves it: pattern SKUs
/// with their names, and each pattern named after its leading SKU's name.
pub fn named_profile(mut profile: Value, names: &BTreeMap<String, String>) -> Value {
    for pattern in profile["patterns"].as_array_mut().into_iter().flatten() {
        let lead = pattern["skus"][0]["sku_id"].as_str().map(str::to_owned);
        if let Some(name) = lead.as_ref().and_then(|id| names.get(id)) {
            let renamed = pattern["name"].as_str().unwrap_or_default().replace(
                &format!("led by {}", lead.unwrap()),
                &format!("led by {name}"),
            );
            pattern["name"] = Value::from(renamed);
        }
        name_items(pattern["skus"].as_array_mut(), names);
    }
    profile
}

/// An outlet's recommendation lists (an object of lists) with each item's SKU name.
pub fn named_recommendations(mut lists: Value, names: &BTreeMap<String, String>) -> Value {
    if let Some(o) = lists.as_object_mut() {
        for list in o.values_mut() {
            name_items(list.as_array_mut(), names);
        }
    }
    lists
}

/// Pixels of a PNG (a screenshot) within 3 of each colour.
pub fn count_colours<const N: usize>(path: &Path, colours: [(u8, u8, u8); N]) -> [usize; N] {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    assert!(step >= 3, "an RGB screenshot: {:?}", info.color_type);
    let near = |p: &[u8], c: (u8, u8, u8)| {
        p[0].abs_diff(c.0) <= 3 && p[1].abs_diff(c.1) <= 3 && p[2].abs_diff(c.2) <= 3
    };
    let mut counts = [0; N];
    for p in buf[..info.buffer_size()].chunks_exact(step) {
        for (n, c) in counts.iter_mut().zip(colours) {
            *n += usize::from(near(p, c));
        }
    }
    counts
}

/// A sheet (1 = the first) of an XLSX file as rows of strings, blank cells as ""
/// (python3's zipfile, no extra crates).
pub fn xlsx_rows(path: &std::path::Path, sheet: usize) -> Vec<Vec<String>> {
    let script = r#"
import json, sys, zipfile, xml.etree.ElementTree as ET
ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
z = zipfile.ZipFile(sys.argv[1])
shared = [ "".join(t.text or "" for t in si.iter("{%s}t" % ns["m"])) for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", ns)] if "xl/sharedStrings.xml" in z.namelist() else []
rows = []
for r in ET.fromstring(z.read("xl/worksheets/sheet%s.xml" % sys.argv[2])).iter("{%s}row" % ns["m"]):
    row = []
    for c in r.findall("m:c", ns):
        col = 0
        for ch in c.get("r"):
            if ch.isalpha(): col = col * 26 + ord(ch) - 64
        while len(row) < col - 1: row.append("")
        v = c.find("m:v", ns)
        t = c.get("t")
        if t == "s": row.append(shared[int(v.text)])
        elif t == "inlineStr": row.append("".join(x.text or "" for x in c.iter("{%s}t" % ns["m"])))
        else: row.append(v.text if v is not None else "")
    rows.append(row)
print(json.dumps(rows))
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .arg(sheet.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The publish service started in this process over a copy of the fixture after run
/// 2, with `publish.api_token` set to `api_token` (empty: editing is refused) and
/// topics named from `prefix`: the store (kept alive), its config, the base URL and
/// the service's token.
pub async fn publisher_on_run2(
    prefix: &str,
    api_token: &str,
) -> (Store, spectra_core::Config, String, CancellationToken) {
    let store = fixture().store(Stage::Run2);
    let mut cfg = store.config(&crate::fresh(prefix));
    cfg.publish.api_token = api_token.into();
    let token = CancellationToken::new();
    let svc = spectra_publisher::start(
        cfg.clone(),
        Context::new(token.clone()),
        spectra_publisher::PublishOptions::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", svc.addr().unwrap());
    tokio::spawn(svc.wait());
    // Until its first cycle has published run 2: while a cycle works the 360 view
    // answers without its weekly history (README, "the outlet 360 view").
    let c = reqwest::Client::new();
    let published = || async {
        let (_, list) = get_json(&c, &format!("{base}/api/segmentations")).await;
        list.as_array().is_some_and(|l| {
            !l.is_empty()
                && l.iter()
                    .all(|s| s["latest"]["run_id"] == s["published"]["run_id"])
        })
    };
    let started = std::time::Instant::now();
    while !published().await {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the publish service did not publish run 2 within 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    (store, cfg, base, token)
}

/// `GET url`: the status and the JSON body (null when the body is not JSON).
pub async fn get_json(c: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let r = c.get(url).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}
