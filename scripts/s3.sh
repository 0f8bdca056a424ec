#!/usr/bin/env bash
# The S3-compatible server for tests: moto's server mode (Apache-2.0), a pinned
# `moto[server]` from PyPI installed into a virtualenv under the cache directory.
#   scripts/s3.sh install           -> installs it (once); prints the venv's python
#   scripts/s3.sh start [PORT]      -> starts it on PORT (default: a free port); prints http://host:port
#   scripts/s3.sh stop              -> stops the server started by `start`
# Tests read the endpoint from SPECTRA_TEST_S3 (scripts/test.sh exports it) and use the
# credentials below; every test creates a bucket of its own.
set -euo pipefail
MOTO_VERSION=5.2.5
CACHE="${SPECTRA_CACHE:-$HOME/.cache/spectra}/moto-$MOTO_VERSION"
RUN="${SPECTRA_S3_RUN:-$CACHE/run}"
PY="$CACHE/venv/bin/python"

install() {
  if [ -x "$PY" ] && "$PY" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    echo "$PY"; return
  fi
  mkdir -p "$CACHE"
  if ! python3 -m venv "$CACHE/venv" >&2 2>/dev/null; then
    # Debian's python3 needs python3-venv for `-m venv`.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
      python3 -m venv "$CACHE/venv" >&2
    else
      echo "python3 -m venv failed: install python3-venv" >&2; exit 1
    fi
  fi
  "$CACHE/venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
  echo "$PY"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
  install >/dev/null
  local port="${1:-$(free_port)}"
  mkdir -p "$RUN"
  "$CACHE/venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$RUN/moto.log" 2>&1 &
  echo $! >"$RUN/moto.pid"
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null \
      || python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then
      echo "http://127.0.0.1:$port"; return
    fi
    sleep 0.1
  done
  echo "moto did not start; see $RUN/moto.log" >&2; exit 1
}

stop() {
  if [ -f "$RUN/moto.pid" ]; then
    kill "$(cat "$RUN/moto.pid")" 2>/dev/null || true
    rm -f "$RUN/moto.pid"
  fi
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 install|start [PORT]|stop" >&2; exit 2 ;;
esac
