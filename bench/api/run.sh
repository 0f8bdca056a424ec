#!/usr/bin/env bash
# The HTTP API under load: `wrk` (Debian's package) with 50 concurrent connections
# against the outlet 360 view (`GET /api/outlets/{id}`, 2,000 assigned outlets sampled
# from the latest run, requested in a fixed order) and `GET /api/segmentations`, on
# the tables a national-scale run left (bench/scale/run.sh --dir DIR). Prints wrk's
# latency distribution (p50/p90/p99) and requests per second for each. Heavy: run it
# by hand, never in CI.
#
#   bench/scale/run.sh --outlets 100000 --skus 2000 --days 91 --dir /tmp/s100k
#   bench/api/run.sh --dir /tmp/s100k
#
# Options: --dir DIR (required), --duration SECONDS (default 20), --connections N
# (default 50), --port PORT (default 18080).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="" duration=20 connections=50 port=18080
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] && [ -f "$dir/spectra.toml" ] || { echo "--dir must be a bench/scale/run.sh directory" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spectra/target}"
bin="$CARGO_TARGET_DIR/release/spectra"
[ -x "$bin" ] || cargo build --release -p spectra

work=$(mktemp -d)
export SPECTRA_TANSU_RUN="$work/tansu"
mkdir -p "$SPECTRA_TANSU_RUN"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  scripts/tansu.sh stop || true
  rm -rf "$work"
}
trap cleanup EXIT
brokers=$(scripts/tansu.sh start)
# The run's configuration with this broker and a fixed listen port.
sed -e "s|^brokers = .*|brokers = \"$brokers\"|" \
  -e "s|^listen = .*|listen = \"127.0.0.1:$port\"|" "$dir/spectra.toml" >"$work/spectra.toml"
"$bin" publish --config "$work/spectra.toml" --admin-listen 127.0.0.1:0 >"$work/publish.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$port/api/segmentations" >/dev/null 2>&1 && break
  sleep 0.5
done
# Up to 2,000 assigned outlets: the largest of every segment (the longest histories).
seg=$(python3 - "$port" "$work/ids.txt" <<'PY'
import json, sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}/api/segmentations"
get = lambda url: json.load(urllib.request.urlopen(url))
name = get(base)[0]["name"]
segments = get(f"{base}/{name}/segments")
per = max(1, 2000 // max(1, len(segments)))
ids = [o["outlet_id"] for s in segments
       for o in get(f"{base}/{name}/segments/{s['segment_id']}/outlets?limit={per}")]
open(sys.argv[2], "w").write("\n".join(ids) + "\n")
print(name)
PY
)
echo "$(wc -l <"$work/ids.txt") outlets sampled; segmentation $seg; $connections connections, ${duration}s each"
cat >"$work/outlet.lua" <<LUA
local ids = {}
for line in io.lines("$work/ids.txt") do ids[#ids + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/api/outlets/" .. ids[(i * 7919) % #ids + 1])
end
LUA
# Warm the run's snapshot and the page cache once, then measure.
curl -fsS "http://127.0.0.1:$port/api/outlets/$(head -1 "$work/ids.txt")" >/dev/null
echo "== GET /api/outlets/{id}"
wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$work/outlet.lua" "http://127.0.0.1:$port" | sed -n '/Latency Distribution/,$p'
echo "== GET /api/segmentations"
wrk -t2 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:$port/api/segmentations" | sed -n '/Latency Distribution/,$p'
