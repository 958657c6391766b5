#!/usr/bin/env bash
# Fairness under a join storm (issue 18, item 5; bench/README.md): SOCKETS WebSockets join one
# ChatRoom of the demo app on its default config (each join is broadcast to every member) while
# a probe asks GET /health on the same server every PROBE_MS over a new connection; prints the
# probe's p50/p99/max during the joins and the join rate (bench/ws_join.cc). A fresh server and
# state directory per round. Not part of `make test`.
#
#   bash bench/ws_join.sh [rounds]          # env: SOCKETS (3000) CONCURRENCY (16) PROBE_MS (10)
#                                           #      BUILD (build) BINARY (BUILD/durable) PORT
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BINARY=${BINARY:-$BUILD/durable}
ROUNDS=${1:-1}
SOCKETS=${SOCKETS:-3000}
CONCURRENCY=${CONCURRENCY:-16}
PROBE_MS=${PROBE_MS:-10}
PORT=${PORT:-18899}
WORK=$(mktemp -d)
SERVER=""
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

if [ -z "${NO_BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -DDURABLE_BUILD_BENCH=ON >/dev/null
  cmake --build "$BUILD" -j 2 --target durable_bin ws_join >/dev/null
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "# $(date -u '+%F %H:%M') UTC, $BINARY, $SOCKETS sockets into one ChatRoom, $CONCURRENCY handshakes at once, /health every ${PROBE_MS} ms; compilers running: $(pgrep -c cc1plus || true); load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  rm -rf "$WORK/state"
  "$BINARY" serve --config examples/seed/wrangler.toml --listen 127.0.0.1:$PORT --persist-to "$WORK/state" \
    > "$WORK/out" 2> "$WORK/err" &
  SERVER=$!
  for _ in $(seq 100); do grep -q listening "$WORK/out" 2>/dev/null && break; sleep 0.05; done
  "$BUILD/ws_join" --port $PORT --sockets "$SOCKETS" --concurrency "$CONCURRENCY" --probe-ms "$PROBE_MS" || true
  echo "  server: $(awk '/VmHWM/ {print "peak RSS " $2 / 1024 " MiB"}' /proc/$SERVER/status), CPU $(awk -v t="$(getconf CLK_TCK)" '{printf "%.1f s", ($14 + $15) / t}' /proc/$SERVER/stat)"
  kill -TERM $SERVER; wait $SERVER || true; SERVER=""
done
