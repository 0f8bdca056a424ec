#!/usr/bin/env bash
# National-scale cycle: a synthetic feed (`spectra generate`) onto a real Kafka-protocol
# broker (Tansu, scripts/tansu.sh), then every service once in release, as a new user
# would run them: the first full daily cycle over DAYS days, then one more day and the
# incremental cycle. Prints, per stage, wall seconds and peak RSS (GNU time), and the
# objects under raw/, then the export of the latest run as CSV and XLSX. Heavy at the default size: run it by hand, never in CI.
#
#   bench/scale/run.sh                                 # 1M outlets, 20k SKUs, 91 days
#   bench/scale/run.sh --outlets 100000 --skus 2000    # smaller, e.g. 100k outlets
#   bench/scale/run.sh --outlets 20000 --skus 2000 --days 28 --level sku
#
# Options: --outlets N, --skus N, --days N, --seed N, --level category|brand|sku (the
# segmentation's feature level, default category), --dir DIR (keep the tables and
# logs there; default a fresh temporary directory, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
outlets=1000000 skus=20000 days=91 seed=42 level=category dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --outlets) outlets=$2; shift 2 ;;
    --skus) skus=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --level) level=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x /usr/bin/time ] || { echo "GNU time is required (apt-get install time)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spectra/target}"
cargo build --release -p spectra
bin="$CARGO_TARGET_DIR/release/spectra"

keep=1
if [ -z "$dir" ]; then dir=$(mktemp -d); keep=0; fi
mkdir -p "$dir"
export SPECTRA_TANSU_RUN="$dir/tansu"
mkdir -p "$SPECTRA_TANSU_RUN"
cleanup() {
  scripts/tansu.sh stop || true
  if [ "$keep" = 0 ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT
brokers=$(scripts/tansu.sh start)
id="scale-$(date +%s)"
cat >"$dir/spectra.toml" <<EOF
[kafka]
brokers = "$brokers"
create_topics = true
partitions = 6
replication = 1
fetch_wait_max_ms = 10

# Tansu keeps its topics in memory: compressed, a generated invoice message takes
# about 80 bytes there instead of 260 (1M outlets × 91 days: 6 GB instead of 20).
[kafka.properties]
"compression.type" = "lz4"

[kafka.topics]
invoices = "$id.invoices"
outlets = "$id.outlets"
skus = "$id.skus"
dlq = "$id.invoices.dlq"
assignments = "$id.assignments"
profiles = "$id.profiles"
recommendations = "$id.recommendations"
metadata = "$id.metadata"

[storage]
url = "file://$dir/store"

[ingest]
group_id = "$id.ingest"
flush_rows = 200000
flush_age_ms = 5000

[publish]
listen = "127.0.0.1:0"

[[segmentation]]
name = "national"
level = "$level"
window_days = $days
half_life_days = 28
k = 8
min_value = 100.0
EOF
common=(--config "$dir/spectra.toml" --admin-listen 127.0.0.1:0)
feed=(--seed "$seed" --outlets "$outlets" --skus "$skus" --days "$((days + 1))" --segments 8)
# The feed, for scripts that add days to the store (history_memory.sh).
printf '%s\n' --seed "$seed" --outlets "$outlets" --skus "$skus" --segments 8 >"$dir/feed.args"

results="$dir/results.tsv"
printf 'cycle\tstage\tseconds\tpeak_rss_mib\n' >"$results"
# stage CYCLE NAME COMMAND...: runs it under GNU time, records wall seconds and peak RSS.
stage() {
  local cycle=$1 name=$2
  shift 2
  local t="$dir/time-$cycle-$name.txt"
  if ! /usr/bin/time -v -o "$t" "$@" >"$dir/$cycle-$name.out" 2>"$dir/$cycle-$name.log"; then
    echo "$cycle $name failed; its log:" >&2
    tail -20 "$dir/$cycle-$name.log" >&2
    exit 1
  fi
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$t")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$t")
  printf '%s\t%s\t%s\t%s\n' "$cycle" "$name" "$wall" "$rss" >>"$results"
  printf '%-12s %-10s %9.1f s %8s MiB\n' "$cycle" "$name" "$wall" "$rss"
}

echo "feed: $outlets outlets, $skus SKUs, $days days (+1 for the incremental cycle), seed $seed, level $level; tables in $dir"
# The first DAYS days, then the services once each: the first full cycle.
stage first generate "$bin" generate "${common[@]}" "${feed[@]}" --to-day "$days"
for s in ingest aggregate segment publish; do
  stage first "$s" "$bin" "$s" "${common[@]}" --once
done
raw_first=$(find "$dir/store/raw" -type f -name '*.parquet' | wc -l)
# One more day of the same feed, then the incremental cycle.
stage incremental generate "$bin" generate "${common[@]}" "${feed[@]}" --from-day "$days"
for s in ingest aggregate segment publish; do
  stage incremental "$s" "$bin" "$s" "${common[@]}" --once
done
raw_after=$(find "$dir/store/raw" -type f -name '*.parquet' | wc -l)
# The marketing export of the latest run, as `spectra export` writes it (the same code
# as the console's export.csv and export.xlsx).
for f in csv xlsx; do
  stage incremental "export-$f" "$bin" export "${common[@]}" --segmentation national --format "$f" --out "$dir/national.$f"
done
echo "objects under raw/: $raw_first after the first cycle, $raw_after after the incremental one"
awk -F'\t' 'NR > 1 && $1 == "incremental" && $2 != "generate" && $2 != "ingest" {s += $3}
  END {printf "incremental cycle, ingest caught up to changed assignments on the topic: %.1f s\n", s}' "$results"
awk -F'\t' 'NR > 1 && $1 == "first" && $2 != "generate" {s += $3}
  END {printf "first full cycle (ingest to the topic): %.1f s\n", s}' "$results"
cat "$dir/first-publish.out" "$dir/incremental-publish.out" 2>/dev/null | tail -2
echo "per stage: $results"
