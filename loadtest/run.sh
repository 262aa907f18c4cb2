#!/usr/bin/env bash
# One command for a whole load test on this machine:
#   a private redis-server, the release service on it, redis-benchmark on the
#   same Redis as this run's reference, then the load generator, one step at a
#   time, and one table at the end.
#
#   loadtest/run.sh [STEP ...]        (default: closed open:5000)
#
# Steps
#   closed          closed loop: $CONNECTIONS connections as fast as they go, $CODES codes
#   cors            the same, each request with an Origin the client allows (a
#                   browser app's requests: the CORS check and headers)
#   open:RATE       open loop at RATE redemptions/s for $OPEN_SECONDS seconds
#   curve           open:RATE for each RATE in $CURVE_RATES (latency against arrival rate)
#   mix             closed loop with $MIX (replays, wrong verifiers, unknown codes)
#   soak:SECONDS    open loop at $SOAK_RATE for SECONDS, in 60 s rounds, RSS after each
#   reconnect       closed loop, every request on a new connection (Connection: close)
#   minimal         closed@minimal
#
#   STEP@dpop       the step with a DPoP proof (RFC 9449) on every request: ES256,
#                   one key per connection, a fresh jti each, all signed by the
#                   generator before the window (not measured); the tokens must
#                   come back bound (token_type DPoP). Combines with one target
#                   below (closed@dpop@https). The services then accept proofs
#                   up to $DPOP_MAX_AGE s old (signing precedes a whole step).
#   STEP@rediss     the step against a second service on the same Redis over TLS
#                   (rediss:// to its TLS port, a CA made for the run)
#   STEP@https      the step against a third service whose own listener speaks TLS
#                   (the generator trusts the run's CA); reconnect@https pays a
#                   TLS handshake per request
#   STEP@minimal    the step against minimal-handler (loadtest/src/bin): one
#                   GETDEL and the same two signatures, nothing else; the least
#                   work a redemption needs, on the same Redis, keys and workers
#   STEP@minimal-checked   against minimal-handler's checked take: GET, the
#                   service's own checks (client, redirect URI, PKCE), one MULTI
#                   (GETDEL + SET used-marker NX): the service's guarantees at
#                   least cost
#   STEP@minimal-dpop      the checked take after one DPoP proof check (JWS, JWK,
#                   ES256 signature, claims, thumbprint) and SET NX of its jti,
#                   pipelined with the GET; implies @dpop
#   STEP@b          the step against a service built from another commit
#                   (SERVER_BIN_B), on the same Redis: an A/B pair in one run
#   Only one service is under load at a time; the others idle.
#
# Settings (environment)
#   ALG=ES256            signing algorithm of both tokens: ES256 | EdDSA | RS256
#   WORKERS=2            actix workers (TOKEN_ENDPOINT_WORKERS)
#   CONNECTIONS=64       load-generator connections
#   CODES=200000         codes per closed-loop step
#   OPEN_SECONDS=10      length of each open-loop step
#   CURVE_RATES="2000 5000 10000 15000 20000 25000"
#   SOAK_RATE=3000
#   MIX="replay=0.05,wrong_verifier=0.02,unknown=0.02"
#   LOADGEN_ARGS=        extra arguments for every loadgen run
#   SERVER_ENV=          extra VAR=value settings for the service
#   REPLICA=0            1: give the private Redis a replica, to measure
#                        SERVER_ENV=TOKEN_ENDPOINT_REDIS_REPLICA_ACKS=1 (WAIT)
#   DPOP_MAX_AGE=600     with @dpop steps: the services' and minimal handlers'
#                        TOKEN_ENDPOINT_DPOP_PROOF_MAX_AGE_SECS (60 to 600), and
#                        loadgen's --dpop-max-age. Proofs are signed before each
#                        step, so the last ones are as old as the step is long
#   OUT=target/loadtest  where logs, JSON summaries and the table go
#   SERVER_BIN=          another build of the service to measure
#   SERVER_BIN_B=        the build STEP@b runs (another commit, built with its own
#                        CARGO_TARGET_DIR), for A/B pairs in the same run
set -euo pipefail

cd "$(dirname "$0")/.."
ALG=${ALG:-ES256}
WORKERS=${WORKERS:-2}
CONNECTIONS=${CONNECTIONS:-64}
CODES=${CODES:-200000}
OPEN_SECONDS=${OPEN_SECONDS:-10}
CURVE_RATES=${CURVE_RATES:-"2000 5000 10000 15000 20000 25000"}
SOAK_RATE=${SOAK_RATE:-3000}
MIX=${MIX:-"replay=0.05,wrong_verifier=0.02,unknown=0.02"}
LOADGEN_ARGS=${LOADGEN_ARGS:-}
SERVER_ENV=${SERVER_ENV:-}
REPLICA=${REPLICA:-0}
OUT=${OUT:-target/loadtest}
DPOP_MAX_AGE=${DPOP_MAX_AGE:-600}
ISSUER=https://id.loadtest
STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(closed open:5000)

for tool in redis-server redis-benchmark python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install -y redis-server redis-tools python3)" >&2; exit 2; }
done

cargo build --release --quiet -p token-endpoint -p token-endpoint-loadtest --bins
RELEASE=${CARGO_TARGET_DIR:-target}/release
BIN=${SERVER_BIN:-$RELEASE/token-endpoint}
LOADGEN=$RELEASE/loadgen
MINIMAL=$RELEASE/minimal-handler

# With a step @dpop, every service accepts proofs as old as DPOP_MAX_AGE (a
# build that knows no DPoP refuses the setting, so only then); the minimal
# handlers always do.
DPOP_ENV=()
case " ${STEPS[*]} " in
    *@dpop*) DPOP_ENV=(TOKEN_ENDPOINT_DPOP_PROOF_MAX_AGE_SECS="$DPOP_MAX_AGE") ;;
esac

RUN_DIR=$(mktemp -d)
mkdir -p "$OUT"
rm -f "$OUT"/step-*.json
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$RUN_DIR"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The TLS steps: a CA for the run, and a TLS port on the same Redis.
TLS_DIR="$RUN_DIR/tls"
REDIS_TLS_PORT=
REDIS_TLS_ARGS=()
# Only for steps that use them: the two extra services would otherwise idle
# beside every @dpop or @minimal-* step.
case " ${STEPS[*]} " in
    *@rediss* | *@https*)
        "$LOADGEN" tls-certs --out "$TLS_DIR"
        REDIS_TLS_PORT=$(free_port)
        REDIS_TLS_ARGS=(--tls-port "$REDIS_TLS_PORT" --tls-cert-file "$TLS_DIR/server.pem"
            --tls-key-file "$TLS_DIR/server.key" --tls-ca-cert-file "$TLS_DIR/ca.pem"
            --tls-auth-clients no) ;;
esac

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --repl-diskless-sync-delay 0 --dir "$RUN_DIR" --daemonize no "${REDIS_TLS_ARGS[@]}" \
    >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
if [ "$REPLICA" = 1 ]; then
    REPLICA_PORT=$(free_port)
    mkdir -p "$RUN_DIR/replica"
    redis-server --port "$REPLICA_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --replicaof 127.0.0.1 "$REDIS_PORT" --dir "$RUN_DIR/replica" --daemonize no \
        >"$OUT/redis-replica.log" 2>&1 &
    PIDS+=("$!")
    # Ready when a write is acknowledged: after a diskless sync the master
    # streams only once the replica has acknowledged, up to a second later.
    for _ in $(seq 100); do
        [ "$(printf 'SET replication-probe 1\r\nWAIT 1 100\r\n' | redis-cli -p "$REDIS_PORT" | tail -1)" = 1 ] && break
        sleep 0.1
    done
fi

"$BIN" generate-key --alg ES256 >"$RUN_DIR/es256.pem"
KEYS="$RUN_DIR/es256.pem"
if [ "$ALG" != ES256 ]; then
    if [ "$ALG" = RS256 ]; then
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$RUN_DIR/alg.pem" 2>/dev/null
    else
        "$BIN" generate-key --alg "$ALG" >"$RUN_DIR/alg.pem"
    fi
    # The first key signs access tokens: ALG signs both tokens.
    KEYS="$RUN_DIR/alg.pem,$RUN_DIR/es256.pem"
fi
cat >"$RUN_DIR/clients.toml" <<EOF
[[clients]]
client_id = "loadtest"
token_endpoint_auth_method = "none"
audience = "https://api.example.com"
id_token_signed_response_alg = "$ALG"
allowed_cors_origins = ["https://app.loadtest"]
EOF

# start_service NAME REDIS_URL [VAR=value ...]: the release service on its own
# port; sets SERVICE_PID and SERVICE_TARGET.
start_service() {
    local name=$1 redis_url=$2; shift 2
    local port scheme=http
    port=$(free_port)
    for setting in "$@"; do
        case "$setting" in TOKEN_ENDPOINT_TLS_CERT_FILE=*) scheme=https ;; esac
    done
    # shellcheck disable=SC2086
    env TOKEN_ENDPOINT_BIND="127.0.0.1:$port" TOKEN_ENDPOINT_WORKERS="$WORKERS" \
        TOKEN_ENDPOINT_ISSUER="$ISSUER" TOKEN_ENDPOINT_REDIS_URL="$redis_url" \
        TOKEN_ENDPOINT_CLIENTS_FILE="$RUN_DIR/clients.toml" TOKEN_ENDPOINT_SIGNING_KEYS="$KEYS" \
        TOKEN_ENDPOINT_LOG=warn "${DPOP_ENV[@]}" "$@" $SERVER_ENV "${SERVICE_BIN:-$BIN}" serve \
        >"$OUT/server-$name.log" 2>&1 &
    SERVICE_PID=$!
    PIDS+=("$SERVICE_PID")
    SERVICE_TARGET="$scheme://127.0.0.1:$port"
    for _ in $(seq 100); do
        python3 - "$SERVICE_TARGET" "$TLS_DIR/ca.pem" <<'PY' 2>/dev/null && return 0
import ssl, sys, urllib.request
target, ca = sys.argv[1:]
context = ssl.create_default_context(cafile=ca) if target.startswith("https") else None
urllib.request.urlopen(f"{target}/readyz", timeout=1, context=context)
PY
        sleep 0.1
    done
    echo "error: the $name service did not get ready (see $OUT/server-$name.log)" >&2
    exit 1
}

start_service plain "$REDIS_URL"
SERVER_PID=$SERVICE_PID
TARGET=$SERVICE_TARGET

# start_minimal MODE: minimal-handler in MODE (getdel, checked, dpop) on its
# own port; sets MINIMAL_PID and MINIMAL_TARGET.
start_minimal() {
    local mode=$1 port
    port=$(free_port)
    env MINIMAL_BIND="127.0.0.1:$port" MINIMAL_MODE="$mode" TOKEN_ENDPOINT_REDIS_URL="$REDIS_URL" \
        TOKEN_ENDPOINT_SIGNING_KEYS="$KEYS" TOKEN_ENDPOINT_WORKERS="$WORKERS" \
        TOKEN_ENDPOINT_ISSUER="$ISSUER" TOKEN_ENDPOINT_DPOP_PROOF_MAX_AGE_SECS="$DPOP_MAX_AGE" \
        "$MINIMAL" >"$OUT/server-minimal-$mode.log" 2>&1 &
    MINIMAL_PID=$!
    PIDS+=("$MINIMAL_PID")
    MINIMAL_TARGET="http://127.0.0.1:$port"
    for _ in $(seq 100); do
        python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/readyz', timeout=1)" \
            "$MINIMAL_TARGET" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "error: minimal-handler ($mode) did not get ready (see $OUT/server-minimal-$mode.log)" >&2
    exit 1
}
case " ${STEPS[*]} " in
    *" minimal "* | *"@minimal "* | *"@minimal@"*)
        start_minimal getdel
        GETDEL_PID=$MINIMAL_PID GETDEL_TARGET=$MINIMAL_TARGET ;;
esac
case " ${STEPS[*]} " in
    *@minimal-checked*)
        start_minimal checked
        CHECKED_PID=$MINIMAL_PID CHECKED_TARGET=$MINIMAL_TARGET ;;
esac
case " ${STEPS[*]} " in
    *@minimal-dpop*)
        start_minimal dpop
        MINDPOP_PID=$MINIMAL_PID MINDPOP_TARGET=$MINIMAL_TARGET ;;
esac
if [ -n "$REDIS_TLS_PORT" ]; then
    start_service rediss "rediss://127.0.0.1:$REDIS_TLS_PORT" \
        TOKEN_ENDPOINT_REDIS_TLS_CA_FILE="$TLS_DIR/ca.pem"
    REDISS_PID=$SERVICE_PID
    REDISS_TARGET=$SERVICE_TARGET
    start_service https "$REDIS_URL" \
        TOKEN_ENDPOINT_TLS_CERT_FILE="$TLS_DIR/server.pem" TOKEN_ENDPOINT_TLS_KEY_FILE="$TLS_DIR/server.key"
    HTTPS_PID=$SERVICE_PID
    HTTPS_TARGET=$SERVICE_TARGET
fi

if [ -n "${SERVER_BIN_B:-}" ]; then
    SERVICE_BIN=$SERVER_BIN_B start_service b "$REDIS_URL"
    B_PID=$SERVICE_PID
    B_TARGET=$SERVICE_TARGET
fi

echo "== reference: redis-benchmark on the same Redis, $CONNECTIONS clients" >&2
{
    redis-benchmark -p "$REDIS_PORT" -c "$CONNECTIONS" -n 200000 --csv -t set,get
    redis-benchmark -p "$REDIS_PORT" -c "$CONNECTIONS" -n 200000 --csv \
        EVAL "return redis.call('DEL', KEYS[1])" 1 'oauth:bench:{x}'
    if [ -n "$REDIS_TLS_PORT" ]; then
        # The same GET over TLS (keep-alive, as the services' connections).
        redis-benchmark --tls --cacert "$TLS_DIR/ca.pem" -p "$REDIS_TLS_PORT" \
            -c "$CONNECTIONS" -n 200000 --csv -t get | sed 's/^"GET"/"GET-TLS"/'
    fi
} | grep -v '^"test"' >"$OUT/redis-benchmark.csv"
cat "$OUT/redis-benchmark.csv" >&2

n=0
loadgen_step() {
    local name=$1; shift
    n=$((n + 1))
    local json="$OUT/step-$(printf %02d $n).json"
    echo "== $name" >&2
    local status=0
    # Redis's own count of the time each command took, for this step only.
    redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null
    # shellcheck disable=SC2086
    "$LOADGEN" run --target "$STEP_TARGET" --redis-url "$REDIS_URL" --client-id loadtest \
        --connections "$CONNECTIONS" --json "$json" "${STEP_ARGS[@]}" \
        --watch "server=$STEP_PID" --watch "redis=$REDIS_PID" "$@" $LOADGEN_ARGS || status=$?
    redis-cli -p "$REDIS_PORT" INFO commandstats >"$json.commandstats"
    python3 - "$json" "$name" "$STEP_BASE" "$STEP_AGAINST" "$STEP_DPOP" <<'PY'
import json, re, sys
path, name, base, against, dpop = sys.argv[1:]
d = json.load(open(path))
d["step"] = name
# What the comparisons pair rows by: the same step, against what, with DPoP.
d["pairing"] = {"base": base, "against": against, "dpop": dpop == "1"}
# The redemption's commands (not the seeding's SETs): Redis CPU per call.
stats = {}
for line in open(path + ".commandstats"):
    m = re.match(r"cmdstat_(\w+):calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)", line)
    if m and m.group(1) in ("evalsha", "eval", "get", "getdel", "exec", "wait"):
        stats[m.group(1)] = {"calls": int(m.group(2)), "usec_per_call": float(m.group(4))}
d["redis_commands"] = stats
json.dump(d, open(path, "w"), indent=1)
PY
    return $status
}

failed=0
for step in "${STEPS[@]}"; do
    # STEP[@VARIANT...]: at most one target, and @dpop.
    IFS=@ read -r -a variants <<<"$step"
    step=${variants[0]}
    STEP_ARGS=()
    STEP_TARGET=$TARGET STEP_PID=$SERVER_PID STEP_AGAINST=service STEP_DPOP=0
    suffix= dpop_suffix= targets=0
    for variant in "${variants[@]:1}"; do
        case "$variant" in
            dpop) STEP_DPOP=1; continue ;;
            rediss) STEP_TARGET=$REDISS_TARGET; STEP_PID=$REDISS_PID; suffix=", Redis over TLS" ;;
            https) STEP_TARGET=$HTTPS_TARGET; STEP_PID=$HTTPS_PID; suffix=", HTTPS listener"
                   STEP_ARGS=(--ca-file "$TLS_DIR/ca.pem") ;;
            minimal) STEP_TARGET=$GETDEL_TARGET; STEP_PID=$GETDEL_PID; suffix=", minimal handler" ;;
            minimal-checked) STEP_TARGET=$CHECKED_TARGET; STEP_PID=$CHECKED_PID
                             suffix=", minimal handler: checked take" ;;
            minimal-dpop) STEP_TARGET=$MINDPOP_TARGET; STEP_PID=$MINDPOP_PID; STEP_DPOP=1
                          suffix=", minimal handler: checked take + DPoP" ;;
            b) [ -n "${B_PID:-}" ] || { echo "error: STEP@b needs SERVER_BIN_B" >&2; exit 2; }
               STEP_TARGET=$B_TARGET; STEP_PID=$B_PID; suffix=", build B" ;;
            *) echo "error: unknown variant @$variant (dpop, rediss, https, minimal, minimal-checked, minimal-dpop or b)" >&2
               exit 2 ;;
        esac
        STEP_AGAINST=$variant
        targets=$((targets + 1))
    done
    [ "$targets" -le 1 ] || { echo "error: $step: one target variant per step" >&2; exit 2; }
    if [ "$STEP_DPOP" = 1 ]; then
        STEP_ARGS+=(--dpop --issuer "$ISSUER" --dpop-max-age "$DPOP_MAX_AGE")
        dpop_suffix=", DPoP"
    fi
    STEP_BASE=$step
    suffix="$dpop_suffix$suffix"
    case "$step" in
        closed) loadgen_step "closed, $CONNECTIONS conns$suffix" --codes "$CODES" || failed=1 ;;
        minimal) STEP_TARGET=$GETDEL_TARGET; STEP_PID=$GETDEL_PID; STEP_AGAINST=minimal STEP_BASE=closed
                 loadgen_step "closed, $CONNECTIONS conns$dpop_suffix, minimal handler" --codes "$CODES" || failed=1 ;;
        reconnect) loadgen_step "closed, new connection per request$suffix" --codes "$CODES" \
                  --close || failed=1 ;;
        cors) loadgen_step "closed + Origin, $CONNECTIONS conns$suffix" --codes "$CODES" \
                  --origin https://app.loadtest || failed=1 ;;
        mix) loadgen_step "closed + mix$suffix" --codes "$CODES" --mix "$MIX" || failed=1 ;;
        open:*)
            rate=${step#open:}
            loadgen_step "open $rate/s$suffix" --rate "$rate" --codes $((rate * OPEN_SECONDS)) || failed=1 ;;
        curve)
            for rate in $CURVE_RATES; do
                loadgen_step "open $rate/s$suffix" --rate "$rate" --codes $((rate * OPEN_SECONDS)) --quiet \
                    || failed=1
            done ;;
        soak:*)
            seconds=${step#soak:}
            for round in $(seq $(((seconds + 59) / 60))); do
                loadgen_step "soak $SOAK_RATE/s round $round$suffix" --rate "$SOAK_RATE" \
                    --codes $((SOAK_RATE * 60)) --quiet || failed=1
            done ;;
        *) echo "error: unknown step $step" >&2; exit 2 ;;
    esac
done

python3 - "$OUT" "$ALG" "$WORKERS" "$(nproc)" <<'PY' | tee "$OUT/table.md"
import csv, glob, json, sys
out, alg, workers, cpus = sys.argv[1:]
print(f"\nALG={alg} WORKERS={workers} on {cpus} CPUs; service, Redis and generator share them.\n")
print("Reference, redis-benchmark on the same Redis in the same run (requests/s, p50 ms):")
for row in csv.reader(open(f"{out}/redis-benchmark.csv")):
    print(f"  {row[0].split(' ')[0]:<7} {float(row[1]):>9.0f}/s  p50 {row[3]}")
print()
print("| step | redemptions/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | CPU µs/req: service | Redis | loadgen | Redis µs/call | service RSS MiB (peak) | exactly once |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(glob.glob(f"{out}/step-*.json")):
    d = json.load(open(path))
    l = d.get("latency_ms") or {}
    cpu = d.get("cpu_us_per_request", {})
    mem = d.get("memory_mib", {}).get("server", {})
    cmds = ", ".join(f"{k} {v['usec_per_call']:.2f}"
                     for k, v in sorted(d.get("redis_commands", {}).items())) or "-"
    print(f"| {d['step']} | {d['redemptions_per_s']:.0f} | {l.get('p50', 0):.2f} | {l.get('p90', 0):.2f} | "
          f"{l.get('p99', 0):.2f} | {l.get('p999', 0):.2f} | {l.get('max', 0):.2f} | "
          f"{cpu.get('server', 0):.1f} | {cpu.get('redis', 0):.1f} | {cpu.get('loadgen', 0):.1f} | "
          f"{cmds} | "
          f"{mem.get('rss', 0):.1f} ({mem.get('peak', 0):.1f}) | {'PASS' if d['passed'] else 'FAIL'} |")

# Pairs from this run: each reference and each DPoP row beside the row it
# is measured against (the same step, against the service; bearer for DPoP).
rows = []
for path in sorted(glob.glob(f"{out}/step-*.json")):
    d = json.load(open(path))
    if "pairing" in d:
        rows.append(d)
def find(base, against, dpop):
    return next((r for r in rows if r["pairing"] == {"base": base, "against": against, "dpop": dpop}), None)
pairs = []
for r in rows:
    p = r["pairing"]
    if p["against"].startswith("minimal"):
        service = find(p["base"], "service", p["dpop"])
        if service:
            pairs.append((f"service against {p['against']}", service, r))
    if p["dpop"] and not p["against"].startswith("minimal"):
        bearer = find(p["base"], p["against"], False)
        if bearer:
            pairs.append(("DPoP against bearer", r, bearer))
if pairs:
    print()
    print("| pair (same run) | step | redemptions/s | ratio | CPU µs/req: service | Redis | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for label, a, b in pairs:
        ca, cb = a.get("cpu_us_per_request", {}), b.get("cpu_us_per_request", {})
        la, lb = a.get("latency_ms") or {}, b.get("latency_ms") or {}
        ratio = a["redemptions_per_s"] / b["redemptions_per_s"] if b["redemptions_per_s"] else 0
        step = a["pairing"]["base"] + (" (DPoP)" if a["pairing"]["dpop"] else "")
        if a["pairing"]["against"] not in ("service", "minimal", "minimal-checked", "minimal-dpop"):
            step += f" @{a['pairing']['against']}"
        print(f"| {label} | {step} | {a['redemptions_per_s']:.0f} vs {b['redemptions_per_s']:.0f} | {ratio:.2f} | "
              f"{ca.get('server', 0):.1f} vs {cb.get('server', 0):.1f} | {ca.get('redis', 0):.1f} vs {cb.get('redis', 0):.1f} | "
              f"{la.get('p50', 0):.2f} vs {lb.get('p50', 0):.2f} | {la.get('p99', 0):.2f} vs {lb.get('p99', 0):.2f} |")
PY
exit $failed
