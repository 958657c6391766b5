#!/usr/bin/env bash
# WebSocket benchmarks (bench/README.md): fan-out deliveries/s in one room of the seed app
# (HibernatingRoom and ChatRoom), then server memory per idle hibernated socket. Right after the
# HibernatingRoom case, the same case runs against bench/beast_broadcast.cc (a bare Beast
# broadcast server on BARE_PORT: the ceiling) and the ratio durable / bare is printed. Not part
# of `make test`.
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
BARE_PORT=${BARE_PORT:-18897}
WORK=$(mktemp -d)
SERVER=""
BARE=""
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; [ -n "$BARE" ] && kill $BARE 2>/dev/null; rm -rf "$WORK"' EXIT

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDURABLE_BUILD_BENCH=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target durable_bin ws_fanout ws_memory beast_broadcast >/dev/null

# The seed's config with ChatRoom SQLite-backed (bench/sqlite-chat-config.sh says why) and a
# short hibernation timeout (its [durable] table comes last).
bash bench/sqlite-chat-config.sh > "$WORK/wrangler.toml"
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
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }  # user+system ticks of process $1
fanout() {  # route, room[, port, pid]: prints ws_fanout's line, keeps it in $WORK/fanout.out
  local port=${3:-$PORT} pid=${4:-$SERVER} before after
  before=$(cpu "$pid")
  "$BUILD/ws_fanout" --port "$port" --route "$1" --receivers "$RECEIVERS" --window "$WINDOW" --seconds "$SECS" --room "$2" \
    | tee "$WORK/fanout.out"
  after=$(cpu "$pid")
  echo "  server CPU during the run: $(( (after - before) * 1000 / $(getconf CLK_TCK) )) ms"
}
deliveries() { sed -n 's/.*: \([0-9.]*\) deliveries\/s.*/\1/p' "$WORK/fanout.out"; }
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
start
fanout hibernating h1
DURABLE_RATE=$(deliveries)
# The ceiling: the same client against a bare Beast broadcast server (bench/beast_broadcast.cc).
"$BUILD/beast_broadcast" --listen 127.0.0.1:$BARE_PORT > "$WORK/bare.out" 2>&1 &
BARE=$!
for _ in $(seq 100); do grep -q listening "$WORK/bare.out" 2>/dev/null && break; sleep 0.05; done
echo "bare Beast broadcast server ($(sed -n 's/^listening on [^ ]* (\(.*\))$/\1/p' "$WORK/bare.out")):"
fanout hibernating h1 $BARE_PORT $BARE
BARE_RATE=$(deliveries)
kill -TERM $BARE; wait $BARE || true; BARE=""
echo "HibernatingRoom fan-out: durable ${DURABLE_RATE:-?} deliveries/s, bare Beast ${BARE_RATE:-?} deliveries/s, durable / bare = $(awk -v a="${DURABLE_RATE:-0}" -v b="${BARE_RATE:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
fanout chat c1
stop
start
"$BUILD/ws_memory" --port $PORT --pid $SERVER --sockets "$SOCKETS" --rooms 100 --settle 3
stop
