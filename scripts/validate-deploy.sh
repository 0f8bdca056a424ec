#!/usr/bin/env bash
# Validates everything under deploy/ without a container engine or a cluster:
#   - deploy/compose/docker-compose.yml with `docker-compose config -q`,
#   - the compose file has no default secret (it refuses to start without each one) and
#     publishes its ports on 127.0.0.1 unless SPECTRA_BIND is set,
#   - every manifest in deploy/k8s/ and deploy/k8s/examples/ against the Kubernetes
#     schemas (kubernetes-validate --strict: unknown fields are errors), and no Secret
#     among those `kubectl apply -f deploy/k8s/` applies,
#   - the Grafana dashboard and every YAML file under deploy/ parse.
# Missing tools are installed when running as root (Debian's docker-compose package,
# kubernetes-validate from PyPI at a pinned version); otherwise the script says what to
# install. Exits non-zero on the first failure, naming the file.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE_VERSION=1.34.1
# The Kubernetes version whose schemas the manifests must satisfy.
KUBERNETES_VERSION=1.30.0

fail() { echo "validate-deploy: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

command -v python3 >/dev/null || fail "python3 is required"

if ! command -v docker-compose >/dev/null; then
    is_root && command -v apt-get >/dev/null \
        || fail "docker-compose is missing: install Debian's docker-compose package (apt-get install docker-compose)"
    echo "validate-deploy: installing docker-compose (apt-get)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null \
        || fail "apt-get install docker-compose failed"
fi

# kubernetes-validate runs from its own virtual environment, so it neither needs nor
# disturbs the system's Python packages.
KV_VENV="${SPECTRA_TOOLS:-$HOME/.cache/spectra/tools}/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
KV="$KV_VENV/bin/kubernetes-validate"
if [ ! -x "$KV" ]; then
    if command -v kubernetes-validate >/dev/null \
        && kubernetes-validate --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION"; then
        KV=$(command -v kubernetes-validate)
    else
        echo "validate-deploy: installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $KV_VENV" >&2
        python3 -m venv "$KV_VENV" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
        "$KV_VENV/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
            || fail "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed"
    fi
fi

# kubernetes-validate's environment has PyYAML.
YAML_PY="$(dirname "$KV")/python3"
[ -x "$YAML_PY" ] || YAML_PY=python3

COMPOSE=deploy/compose/docker-compose.yml
SECRETS=(SPECTRA_API_TOKEN MINIO_ROOT_USER MINIO_ROOT_PASSWORD GRAFANA_ADMIN_PASSWORD)
# No secret has a default: without any one of them compose refuses, naming it.
for v in "${SECRETS[@]}"; do
    echo "validate-deploy: docker-compose config refuses to run without $v"
    others=()
    for o in "${SECRETS[@]}"; do [ "$o" = "$v" ] || others+=("$o=validate-only"); done
    if out=$(env -u "$v" "${others[@]}" docker-compose -f "$COMPOSE" config -q 2>&1 </dev/null); then
        fail "$COMPOSE is valid without $v: it must have no default"
    fi
    grep -q "$v" <<<"$out" || fail "without $v, $COMPOSE fails without naming it: $out"
done

echo "validate-deploy: docker-compose config ($COMPOSE)"
# Placeholder values of the required secrets, for validation only.
for v in "${SECRETS[@]}"; do export "$v=validate-only"; done
unset SPECTRA_BIND
docker-compose -f "$COMPOSE" config -q \
    || fail "$COMPOSE is invalid (see above)"
docker-compose -f "$COMPOSE" --profile feed config -q \
    || fail "$COMPOSE is invalid with --profile feed (see above)"

echo "validate-deploy: published ports listen on 127.0.0.1 unless SPECTRA_BIND is set"
exposed=$(docker-compose -f "$COMPOSE" config | "$YAML_PY" -c '
import sys, yaml
for name, svc in yaml.safe_load(sys.stdin)["services"].items():
    for p in svc.get("ports", []):
        ip = p.get("host_ip", "") if isinstance(p, dict) else (str(p).rsplit(":", 2)[0] if str(p).count(":") >= 2 else "")
        if ip != "127.0.0.1":
            print(f"{name}: {p}")
') || fail "cannot read the published ports of $COMPOSE"
[ -z "$exposed" ] || fail "$COMPOSE publishes beyond 127.0.0.1 by default: $exposed"

shopt -s nullglob
manifests=(deploy/k8s/*.yaml deploy/k8s/*.yml)
[ ${#manifests[@]} -gt 0 ] || fail "no manifests in deploy/k8s/"
# `kubectl apply -f deploy/k8s/` applies these: no Secret among them (it ships as an
# example under deploy/k8s/examples/, which that command does not read).
for m in "${manifests[@]}"; do
    ! grep -Eq '^kind:[[:space:]]*Secret[[:space:]]*$' "$m" \
        || fail "$m is a Secret: \`kubectl apply -f deploy/k8s/\` would apply it; keep it under deploy/k8s/examples/"
done
for m in "${manifests[@]}" deploy/k8s/examples/*.yaml; do
    echo "validate-deploy: kubernetes-validate --strict $m"
    "$KV" --strict --kubernetes-version "$KUBERNETES_VERSION" --quiet "$m" \
        || fail "$m does not validate against Kubernetes $KUBERNETES_VERSION (see above)"
done

echo "validate-deploy: dashboard JSON"
for d in deploy/observability/grafana/dashboards/*.json; do
    python3 -m json.tool "$d" >/dev/null || fail "$d is not valid JSON"
done

echo "validate-deploy: YAML under deploy/ parses"
while IFS= read -r -d '' y; do
    "$YAML_PY" -c 'import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))' "$y" \
        || fail "$y is not valid YAML"
done < <(find deploy \( -name '*.yml' -o -name '*.yaml' \) -print0 | sort -z)

echo "validate-deploy: ok"
