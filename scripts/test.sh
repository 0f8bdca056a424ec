#!/usr/bin/env bash
# Every test, against a real Kafka-protocol broker (Tansu) that this script fetches,
# verifies and starts on a free port, and an S3-compatible server (moto, a pinned PyPI
# package, scripts/s3.sh) for the `s3://` tests; both are stopped when the tests end.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p spectra-ingest).
# Everything builds in the release profile, the one profile of the project (the demo and
# the benchmarks use it too), so no third-party crate is built twice (README, "Builds").
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spectra/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required to fetch the test broker" >&2; exit 1; }
# Debian packages the tests drive: headless Chromium (the console's browser test),
# kcat (reads the demo's embedded broker) and Prometheus (scrapes the services through
# the shipped scrape configuration). Installed when missing and running as root.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v kcat >/dev/null || missing+=(kcat)
command -v curl >/dev/null || missing+=(curl)
command -v prometheus >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing ${missing[*]}: run \`sudo apt-get install -y ${missing[*]}\` (or run this script as root)" >&2
    exit 1
  fi
fi

# Build first, so the broker is not idle (and its start not timed) during a cold build.
# This builds the `spectra` binary too (the `spectra` package's own integration test
# needs it), so the end-to-end tests always drive a binary of the sources under test.
cargo test --release --workspace --no-run "$@"
# Whatever "$@" selects, the binary the end-to-end tests start is built from these
# sources (the `spectra` package's integration test makes Cargo build it).
cargo test --release --workspace --no-run --test binary

SPECTRA_TANSU_RUN=$(mktemp -d)
SPECTRA_S3_RUN=$(mktemp -d)
export SPECTRA_TANSU_RUN SPECTRA_S3_RUN
trap 'scripts/tansu.sh stop; scripts/s3.sh stop; rm -rf "$SPECTRA_TANSU_RUN" "$SPECTRA_S3_RUN"' EXIT
SPECTRA_TEST_BROKERS=$(scripts/tansu.sh start)
export SPECTRA_TEST_BROKERS
echo "test broker (tansu) at $SPECTRA_TEST_BROKERS"
SPECTRA_TEST_S3=$(scripts/s3.sh start)
export SPECTRA_TEST_S3
echo "test S3 server (moto) at $SPECTRA_TEST_S3"
# Every test binary runs even when one fails; the summary counts them all.
cargo test --release --workspace --no-fail-fast "$@"
