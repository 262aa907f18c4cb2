#!/usr/bin/env bash
# Instructions the service executes per redemption, counted by valgrind's
# callgrind: a count, not a time, so it does not move with whatever else
# this shared machine is doing. For comparing two ways of sending the same
# redemptions (say, with and without an Origin header) where a closed-loop
# throughput difference of 1% drowns in the noise.
#
#   loadtest/instructions.sh [VARIANT ...]     (default: plain origin plain origin)
#
# Variants
#   plain     the redemption as loadgen sends it
#   origin    the same with `Origin: https://app.loadtest`, which the client allows
#
# Settings (environment): N=3000 redemptions per variant, CONNECTIONS=4.
# The release build of the service runs under callgrind with one worker on
# a private redis-server; the figure includes its start-up and shutdown,
# which are the same for every variant, so compare differences.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-3000}
CONNECTIONS=${CONNECTIONS:-4}
VARIANTS=("$@")
[ ${#VARIANTS[@]} -eq 0 ] && VARIANTS=(plain origin plain origin)
command -v valgrind >/dev/null || { echo "error: valgrind is not installed (apt-get install -y valgrind)" >&2; exit 2; }

cargo build --release --quiet -p token-endpoint -p token-endpoint-loadtest --bins
DIR=$(mktemp -d)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile "$DIR/redis.pid" --dir "$DIR" >/dev/null
trap 'redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
cat >"$DIR/clients.toml" <<EOF
[[clients]]
client_id = "loadtest"
token_endpoint_auth_method = "none"
audience = "https://api.example.com"
allowed_cors_origins = ["https://app.loadtest"]
EOF
target/release/token-endpoint generate-key >"$DIR/key.pem"
chmod 600 "$DIR/key.pem"

echo "| variant | instructions (callgrind Ir) | per redemption |"
echo "|---|---|---|"
for variant in "${VARIANTS[@]}"; do
    case "$variant" in
        plain) args=() ;;
        origin) args=(--origin https://app.loadtest) ;;
        *) echo "error: unknown variant $variant" >&2; exit 2 ;;
    esac
    port=$(free_port)
    env TOKEN_ENDPOINT_BIND="127.0.0.1:$port" TOKEN_ENDPOINT_WORKERS=1 \
        TOKEN_ENDPOINT_ISSUER=https://id.loadtest TOKEN_ENDPOINT_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
        TOKEN_ENDPOINT_CLIENTS_FILE="$DIR/clients.toml" TOKEN_ENDPOINT_SIGNING_KEYS="$DIR/key.pem" \
        TOKEN_ENDPOINT_LOG=warn TOKEN_ENDPOINT_SHUTDOWN_DELAY_MS=0 \
        valgrind --tool=callgrind --callgrind-out-file="$DIR/callgrind.out" \
        target/release/token-endpoint serve 2>"$DIR/valgrind.log" &
    pid=$!
    for _ in $(seq 300); do
        python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/livez', timeout=1)" 2>/dev/null && break
        sleep 0.2
    done
    target/release/loadgen run --target "http://127.0.0.1:$port" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
        --client-id loadtest --codes "$N" --connections "$CONNECTIONS" --quiet "${args[@]}" >"$DIR/loadgen.log" \
        || { cat "$DIR/loadgen.log" >&2; exit 1; }
    kill -INT "$pid"
    wait "$pid" || true
    total=$(grep -oE 'Collected : [0-9]+' "$DIR/valgrind.log" | grep -oE '[0-9]+$')
    echo "| $variant | $total | $((total / N)) |"
done
