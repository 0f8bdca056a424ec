#!/usr/bin/env bash
# The publisher's memory across a new run after an outlet 360 view, on a store made by
# `bench/scale/run.sh --dir DIR` (RESULTS.md, "The publisher over its 1 GiB…"):
# serves the API, asks for one 360 view, feeds one more day through ingest, aggregate
# and segment so that the service publishes a new run, asks for a 360 view again, and
# prints the service's VmRSS / VmHWM (KiB) after each step. The store is copied first
# and copied back at the end, so the run can be repeated with another build. With
# DURING_CYCLE=1, 360 views are also asked for while the service publishes the new run.
#
#   [DURING_CYCLE=1] bench/scale/history_memory.sh DIR [SPECTRA_BINARY]
#
# DIR holds run.sh's spectra.toml and feed.args. Its spectra.toml names the feed's topics; the script uses fresh ones (`.x`) on a
# fresh Tansu, since Tansu keeps topics in memory and ingest refuses a recreated one.
set -euo pipefail
dir=$(cd "${1:?usage: history_memory.sh DIR [SPECTRA_BINARY]}" && pwd)
cd "$(dirname "$0")/../.."
root=$(pwd)
bin=${2:-${CARGO_TARGET_DIR:-$HOME/.cache/spectra/target}/release/spectra}
days=$(sed -n 's/^window_days = //p' "$dir/spectra.toml")
[ -d "$dir/store.base" ] || cp -a "$dir/store" "$dir/store.base"
rm -rf "$dir/store" && cp -a "$dir/store.base" "$dir/store"
export SPECTRA_TANSU_RUN="$dir/tansu"
mkdir -p "$SPECTRA_TANSU_RUN"
"$root/scripts/tansu.sh" stop >/dev/null 2>&1 || true
brokers=$("$root/scripts/tansu.sh" start)
pid=""
# The service is stopped before the store is put back (it polls the store).
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  "$root/scripts/tansu.sh" stop >/dev/null 2>&1 || true
  rm -rf "$dir/store" && cp -a "$dir/store.base" "$dir/store"
}
fail() { echo "history_memory: $*" >&2; exit 1; }
trap cleanup EXIT
sed -E -e "s/^brokers = .*/brokers = \"$brokers\"/" \
  -e 's/^(invoices|outlets|skus|dlq) = "([^"]*)"/\1 = "\2.x"/' "$dir/spectra.toml" >"$dir/history.toml"
common=(--config "$dir/history.toml" --admin-listen 127.0.0.1:0)
api=http://127.0.0.1:18077/api
"$bin" publish "${common[@]}" --set publish.listen=127.0.0.1:18077 --set publish.poll_seconds=5 \
  >"$dir/history-publish.out" 2>"$dir/history-publish.log" &
pid=$!
up=0
for _ in $(seq 1 120); do curl -sf "$api/segmentations" >/dev/null && { up=1; break; }; sleep 1; done
[ "$up" = 1 ] || fail "the publisher did not answer on 127.0.0.1:18077 (see $dir/history-publish.log)"
mem() { echo "$1: VmRSS $(awk '/VmRSS/ {print $2}' /proc/$pid/status) KiB, VmHWM $(awk '/VmHWM/ {print $2}' /proc/$pid/status) KiB"; }
outlet=$(curl -sf "$api/segmentations/national/segments" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["segment_id"])')
outlet=$(curl -sf "$api/segmentations/national/segments/$outlet/outlets?limit=1" | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("outlets", d) if isinstance(d, dict) else d; print(d[0]["outlet_id"])')
mem "serving, no 360 yet"
curl -sf -o /dev/null "$api/outlets/$outlet"
mem "after the first 360 request"
mapfile -t feed <"$dir/feed.args"
"$bin" generate "${common[@]}" "${feed[@]}" --days "$((days + 2))" --from-day "$((days + 1))" \
  >/dev/null 2>"$dir/history-generate.log"
for s in ingest aggregate segment; do "$bin" "$s" "${common[@]}" --once >/dev/null 2>"$dir/history-$s.log"; done
run=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$dir/store/segmentations/national/latest.json")
published=0
end=$((SECONDS + 240))
while ((SECONDS < end)); do
  curl -sf "$api/segmentations" | grep -q "\"published\":{[^}]*\"$run\"" && { published=1; break; }
  # DURING_CYCLE=1: 360 views asked for while the service loads and publishes the new
  # run (the history built beside the publish cycle).
  if [ "${DURING_CYCLE:-0}" = 1 ]; then curl -s -o /dev/null "$api/outlets/$outlet"; sleep 0.5; else sleep 2; fi
done
[ "$published" = 1 ] || fail "the service did not publish $run within 240 s"
mem "after the new run ($run) is published"
curl -sf -o /dev/null "$api/outlets/$outlet"
mem "after a 360 request on the new run"
