#!/usr/bin/env bash
# The first benchmark (issue 2): wrk against the demo app's counters, one hot object and
# 1,000 objects, durability full and relaxed. Not part of `make test`.
#
#   make bench                      # or: bash bench/run.sh [seconds] [connections]
#
# Prints one line per case: req/s and latency percentiles as wrk reports them.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/durable}
SECS=${1:-10}
CONNS=${2:-32}
SHARDS=${SHARDS:-}
PORT=${PORT:-18899}
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT

start() {  # durability
  rm -rf "$WORK/state" "$WORK/out"
  "$BIN" serve --config examples/seed/wrangler.toml --listen 127.0.0.1:$PORT --persist-to "$WORK/state" \
    --durability "$1" ${SHARDS:+--shards $SHARDS} > "$WORK/out" 2> "$WORK/err" &
  SERVER=$!
  for _ in $(seq 100); do grep -q listening "$WORK/out" 2>/dev/null && return; sleep 0.05; done
  echo "server did not start"; cat "$WORK/err"; exit 1
}

run() {  # name, wrk args...
  local name=$1; shift
  local out
  out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$@")
  printf '%-34s %10s req/s   p50 %8s   p99 %8s\n' "$name" \
    "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '$1=="50%" {print $2}')" \
    "$(echo "$out" | awk '$1=="99%" {print $2}')"
}

echo "# $(date -u +%F) $(nproc) cores, wrk -t1 -c$CONNS -d${SECS}s, shards=${SHARDS:-default}, disk $(bash bench/disk-probe.sh) us per synced 4 KiB write"
for durability in full relaxed; do
  start "$durability"
  # Warm up: activate the objects.
  wrk -t1 -c"$CONNS" -d2s -s bench/many.lua "http://127.0.0.1:$PORT/" > /dev/null
  run "hot object, durability $durability" -s bench/post.lua "http://127.0.0.1:$PORT/counters/hot/increment"
  run "1000 objects, durability $durability" -s bench/many.lua "http://127.0.0.1:$PORT/"
  kill -TERM $SERVER; wait $SERVER || true
done
