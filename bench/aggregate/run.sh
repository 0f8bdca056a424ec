#!/usr/bin/env bash
# The aggregator's roll-up benchmark, side by side with DuckDB on the same Parquet.
#   bench/aggregate/run.sh [DIR]        (LINES=10000000 DAYS=730 by default)
# Generates a seeded raw table under DIR (default /tmp/spectra-agg-bench; never the
# repository), runs Spectra's full roll-up, DuckDB's (checking both give the same daily
# tables), then adds one day with corrections of older days and runs the incremental
# pass. Prints one JSON line per step; copy the numbers into RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-/tmp/spectra-agg-bench}
LINES=${LINES:-10000000}
DAYS=${DAYS:-730}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/spectra/target}
python3 -m pip install --quiet duckdb
cargo build --release -p spectra-bench --bin aggregate_bench
BIN=$CARGO_TARGET_DIR/release/aggregate_bench
rm -rf "$DIR"
"$BIN" generate --dir "$DIR" --lines "$LINES" --days "$DAYS"
du -sh "$DIR/raw" >&2
sync
"$BIN" full --dir "$DIR"
python3 bench/aggregate/compare_tables.py "$DIR"
python3 bench/aggregate/duckdb_rollup.py "$DIR" --threads "$(nproc)"
"$BIN" add-day --dir "$DIR"
"$BIN" incremental --dir "$DIR"
python3 bench/aggregate/duckdb_rollup.py "$DIR" --threads "$(nproc)"
