#!/usr/bin/env bash
# Counters three ways in one binary (sql_counter.cc), alternating kv, sql, sqlkv each round with
# a fresh server and state directory, so that the ratios compare runs made side by side.
#
#   bash bench/sql/run.sh [hot|many]     hot: one object; many: 1,000 objects
#
# Environment: ROUNDS (5) SECS (5) WARM (2: seconds of load before each measured run; the
# first touch of a SQLite-backed object creates its file) CONNS (32) SHARDS (1) PORT (18915)
# BIN (build/sql_counter).
# Prints each kind's req/s and p99 per round and its median, and sql/kv and sqlkv/kv round by
# round with their medians (the issue's target: sql >= 0.70 of kv, durability full).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORKLOAD=${1:-hot}
case $WORKLOAD in hot) NOBJ=1 ;; many) NOBJ=1000 ;; *) echo "sql bench: hot or many" >&2; exit 2 ;; esac
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-5}
WARM=${WARM:-2}
CONNS=${CONNS:-32}
SHARDS=${SHARDS:-1}
PORT=${PORT:-18915}
BIN=${BIN:-build/sql_counter}
[ -x "$BIN" ] || { echo "sql bench: $BIN missing (cmake -DDURABLE_BUILD_BENCH=ON, make sql_counter)" >&2; exit 2; }
WORK=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && kill -KILL $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
declare -A RESULTS
for round in $(seq "$ROUNDS"); do
  for kind in kv sql sqlkv; do
    rm -rf "$WORK/state"
    "$BIN" serve --config bench/sql/wrangler.toml --listen 127.0.0.1:$PORT --persist-to "$WORK/state" \
      --shards "$SHARDS" --admin off > "$WORK/out" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do grep -q listening "$WORK/out" 2>/dev/null && break; sleep 0.05; done
    KIND=$kind NOBJ=$NOBJ wrk -t1 -c"$CONNS" -d"${WARM}s" -s bench/sql/counter.lua "http://127.0.0.1:$PORT/" > /dev/null
    line=$(KIND=$kind NOBJ=$NOBJ wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s bench/sql/counter.lua "http://127.0.0.1:$PORT/" |
      awk '/Requests\/sec/ {r=$2} $1=="99%" {p=$2} END {printf "%d@%s", r, p}')
    RESULTS[$kind]="${RESULTS[$kind]:-} $line"
    kill -TERM $SERVER; wait $SERVER 2>/dev/null || true
    SERVER=
  done
done
echo "# $(date -u '+%F %H:%M UTC') $WORKLOAD ($NOBJ objects), wrk -t1 -c$CONNS -d${SECS}s after ${WARM}s of warm-up, --shards $SHARDS, durability full, $ROUNDS alternating rounds"
median() { sort -g | awk '{a[NR]=$1} END {printf "%s", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for kind in kv sql sqlkv; do
  printf '%-6s median %7s req/s   runs (req/s@p99):%s\n' "$kind" \
    "$(echo "${RESULTS[$kind]}" | tr ' ' '\n' | grep . | cut -d@ -f1 | median)" "${RESULTS[$kind]}"
done
for kind in sql sqlkv; do
  ratios=$(paste <(echo "${RESULTS[kv]}" | tr ' ' '\n' | grep . | cut -d@ -f1) \
                 <(echo "${RESULTS[$kind]}" | tr ' ' '\n' | grep . | cut -d@ -f1) | awk '{printf "%.2f\n", $2 / $1}')
  echo "$kind / kv, round by round: $(echo $ratios); median $(echo "$ratios" | median)"
done
