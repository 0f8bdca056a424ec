//! The `spectra` binary itself: every command of the contract (§5) is there, a
//! malformed `--set` is a usage error, and the binary says which sources it was built
//! from.
//!
//! Being an integration test of the `spectra` package, this file also makes
//! `cargo test --release --workspace` build the binary from the sources under test before any
//! test runs, so the end-to-end tests in `tests/` never drive a missing or stale one.

use std::process::Command;

fn spectra(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_spectra"))
        .args(args)
        .output()
        .expect("run spectra");
    assert!(
        out.status.success(),
        "spectra {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn every_contract_command_is_offered() {
    let help = spectra(&["--help"]);
    for cmd in [
        "demo",
        "ingest",
        "aggregate",
        "segment",
        "publish",
        "generate",
        "load",
        "export",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "`{cmd}` missing from --help:\n{help}"
        );
    }
    assert!(!help.contains("build-info"), "the test hook is hidden");
    for cmd in ["ingest", "aggregate", "segment", "publish"] {
        let h = spectra(&[cmd, "--help"]);
        for flag in ["--config", "--brokers", "--storage", "--once"] {
            assert!(
                h.contains(flag),
                "`spectra {cmd} --help` lacks {flag}:\n{h}"
            );
        }
    }
}

#[test]
fn a_setting_without_a_value_is_a_usage_error() {
    for bad in ["ingest.flush_rows", "=5"] {
        let out = Command::new(env!("CARGO_BIN_EXE_spectra"))
            .args(["aggregate", "--once", "--set", bad])
            .output()
            .expect("run spectra");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains("is not SECTION.KEY=VALUE (e.g."),
            "{bad}: {err}"
        );
    }
}

#[test]
fn the_binary_names_the_sources_it_was_built_from() {
    let info: serde_json::Value =
        serde_json::from_str(&spectra(&["build-info"])).expect("JSON build info");
    assert_eq!(
        info["package_dir"].as_str(),
        Some(env!("CARGO_MANIFEST_DIR")),
        "{info}"
    );
    assert_eq!(info["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));
}
