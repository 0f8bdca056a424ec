//! A real Prometheus server (Debian's `prometheus` package, which `scripts/test.sh`
//! installs) scraping services of a test through the shipped scrape configuration
//! (`deploy/observability/prometheus.yml`): only its service discovery (Docker's DNS
//! names) is replaced by the test's addresses, and the scrape interval shortened.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A Prometheus process, stopped when dropped.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped scrape configuration with each `spectra-*` job's `dns_sd_configs` block
/// replaced by a static target (`targets`: job name → address), Prometheus's own job
/// pointed at `own`, and every interval `interval`. Panics when a job of `targets` is
/// not in the file, or a job of the file has no target: the file and the test must
/// agree on the services.
pub fn scrape_config(
    shipped: &str,
    targets: &BTreeMap<&str, SocketAddr>,
    own: SocketAddr,
    interval: &str,
) -> String {
    let mut out = Vec::new();
    let mut job: Option<String> = None;
    let mut skipping = false;
    let mut replaced = Vec::new();
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- job_name:") {
            job = Some(name.trim().to_owned());
            skipping = false;
        }
        if skipping {
            // The block ends at the next key of the job (same indentation as its name).
            let indent = line.len() - trimmed.len();
            if trimmed.is_empty() || indent > 4 {
                continue;
            }
            skipping = false;
        }
        if trimmed == "dns_sd_configs:" {
            let name = job.clone().expect("dns_sd_configs outside a job");
            let addr = targets
                .get(name.as_str())
                .unwrap_or_else(|| panic!("the test has no target for job {name}"));
            out.push("    static_configs:".to_owned());
            out.push(format!("      - targets: [\"{addr}\"]"));
            replaced.push(name);
            skipping = true;
            continue;
        }
        if trimmed.starts_with("- targets: [\"localhost:9090\"]") {
            out.push(format!("      - targets: [\"{own}\"]"));
            continue;
        }
        if let Some((key, _)) = line.split_once(':') {
            if matches!(key.trim(), "scrape_interval" | "evaluation_interval") {
                out.push(format!("{key}: {interval}"));
                continue;
            }
        }
        out.push(line.to_owned());
    }
    replaced.sort();
    let mut expected: Vec<String> = targets.keys().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(
        replaced, expected,
        "the shipped jobs and the test's services differ"
    );
    out.join("\n") + "\n"
}

impl Prometheus {
    /// Starts Prometheus listening on `addr` (from [`Prometheus::reserve`]) with `config`
    /// (from [`scrape_config`]), its data under `dir`; waits until it is ready.
    pub async fn start(config: &str, addr: SocketAddr, dir: &Path) -> Self {
        let bin = which_prometheus();
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let p = Self {
            child,
            url: format!("http://{addr}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = reqwest::get(format!("{}/-/ready", p.url)).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready within 60 s:\n{}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A free local address for Prometheus to listen on.
    pub fn reserve() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    /// `GET /api/v1/query`: the result vector of an instant query (an error status or a
    /// non-vector result is a panic naming the query).
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(
            status.is_success() && body["status"] == "success",
            "query `{expr}`: {status} {body}"
        );
        match &body["data"]["result"] {
            Value::Array(a) => a.clone(),
            other => panic!("query `{expr}`: not a vector: {other}"),
        }
    }

    /// `GET /api/v1/label/{label}/values?match[]={series}`.
    pub async fn label_values(&self, label: &str, series: &str) -> Vec<String> {
        let body: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/label/{label}/values", self.url))
            .query(&[("match[]", series)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("label values of {label}: {body}"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }
}

/// Debian's `prometheus` (`/usr/bin/prometheus`), or the one on `PATH`.
fn which_prometheus() -> std::path::PathBuf {
    let debian = Path::new("/usr/bin/prometheus");
    if debian.exists() {
        return debian.to_owned();
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("prometheus"))
                .find(|c| c.exists())
        })
        .expect("prometheus is not installed: scripts/test.sh installs Debian's `prometheus` package (apt-get install prometheus)")
}
