#!/usr/bin/env bash
# WebSocket benchmarks (bench/README.md): fan-out deliveries/s in one room of the seed app
# (HibernatingRoom and ChatRoom), then server memory per idle hibernated socket. Not part of
# `make test`.
#
#   bash bench/ws.sh [seconds] [sockets]      # defaults: 10 s per fan-out case, 10000 sockets
#
# Builds what it needs in $BUILD (default build) with -DDURABLE_BUILD_BENCH=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SECS=${1:-10}
SOCKETS=${2:-10000}
RECEIVERS=${RECEIVERS:-100}
WINDOW=${WINDOW:-32}
PORT=${PORT:-18898}
WORK=$(mktemp -d)
SERVER=""
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDURABLE_BUILD_BENCH=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target durable_bin ws_fanout ws_memory >/dev/null

# The seed's config with a short hibernation timeout (its [durable] table comes last).
cp examples/seed/wrangler.toml "$WORK/wrangler.toml"
printf '\nhibernation_timeout_ms = 500\n' >> "$WORK/wrangler.toml"

start() {
  rm -rf "$WORK/state"
  "$BUILD/durable" serve --config "$WORK/wrangler.toml" --listen 127.0.0.1:$PORT --persist-to "$WORK/state" \
    > "$WORK/out" 2> "$WORK/err" &
  SERVER=$!
  for _ in $(seq 100); do grep -q listening "$WORK/out" 2>/dev/null && return; sleep 0.05; done
  echo "server did not start"; cat "$WORK/err"; exit 1
}
stop() { kill -TERM $SERVER; wait $SERVER || true; SERVER=""; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "# $(date -u +%F) $(nproc) cores (client and server share them), $RECEIVERS receivers + 1 sender, window $WINDOW, ${SECS}s"
cpu() { awk '{print $14 + $15}' /proc/$SERVER/stat; }  # server user+system ticks
fanout() {  # route, room
  local before after
  before=$(cpu)
  "$BUILD/ws_fanout" --port $PORT --route "$1" --receivers "$RECEIVERS" --window "$WINDOW" --seconds "$SECS" --room "$2"
  after=$(cpu)
  echo "  server CPU during the run: $(( (after - before) * 1000 / $(getconf CLK_TCK) )) ms"
}
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
start
fanout hibernating h1
fanout chat c1
stop
start
"$BUILD/ws_memory" --port $PORT --pid $SERVER --sockets "$SOCKETS" --rooms 100 --settle 3
stop
