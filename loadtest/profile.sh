#!/usr/bin/env bash
# Profile the service under the closed-loop load of loadtest/run.sh and
# print where its CPU goes (signing, HTTP, Redis client, JSON, kernel ...).
#
#   loadtest/profile.sh            (ALG, WORKERS, CODES as for run.sh)
#   STEP=minimal loadtest/profile.sh   the same load against minimal-handler
#                                       (the least work a redemption needs)
#   STEP=closed@dpop loadtest/profile.sh   with a DPoP proof on every request
#
# Needs perf (Debian: linux-perf). It samples on the CPU clock, so it works on
# virtual machines without hardware counters; call stacks come from DWARF
# (the release profile keeps line tables).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "error: perf is not installed (apt-get install -y linux-perf)" >&2; exit 2; }
OUT=${OUT:-target/loadtest-profile}
mkdir -p "$OUT"
STEP=${STEP:-closed}
case "$STEP" in
    closed|closed@dpop) process="target/release/token-endpoint serve" ;;
    minimal) process="target/release/minimal-handler" ;;
    *) echo "error: STEP is closed, closed@dpop or minimal" >&2; exit 2 ;;
esac
CODES=${CODES:-200000} OUT="$OUT" loadtest/run.sh "$STEP" >"$OUT/run.log" 2>&1 &
run=$!
server=""
for _ in $(seq 600); do
    server=$(pgrep -f "$process" | head -1 || true)
    [ -n "$server" ] && grep -q "seeded" "$OUT/run.log" 2>/dev/null && break
    sleep 0.1
done
[ -n "$server" ] || { echo "error: the service did not start; see $OUT/run.log" >&2; exit 1; }
sleep 1
perf record -F 2000 --call-graph dwarf,16384 -p "$server" -o "$OUT/perf.data" -- sleep 5 >/dev/null 2>&1
wait "$run"
grep -E '^\| closed' "$OUT/run.log" || true
perf script -i "$OUT/perf.data" -F ip,sym,dso 2>/dev/null | python3 loadtest/profile-split.py
