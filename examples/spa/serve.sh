#!/usr/bin/env bash
# Serve the example single-page app on http://localhost:5173, one of the demo
# client's origins (README, "Browser walk-through"). Installs oidc-client-ts
# from the lock file first. PORT=... for another of the demo's ports (3000,
# 4200, 8000).
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules/oidc-client-ts ] || npm ci --no-audit --no-fund
PORT=${PORT:-5173}
echo "open http://localhost:$PORT/ (the token endpoint's demo must be running: cargo run --release)"
exec python3 -m http.server "$PORT" --bind 127.0.0.1
