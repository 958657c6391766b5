#!/usr/bin/env bash
# The PostgreSQL engine (cluster mode, one node) against the SQLite engine on the same
# workload, alternating SQLite, PostgreSQL, SQLite, ... for ROUNDS rounds, each with a fresh
# server and fresh storage (a new state directory; a new PostgreSQL database). Both durable:
# --durability full (fdatasync of the partition's WAL) and synchronous_commit = on.
#
#   bash bench/cluster/engines.sh WORKLOAD      (hot: one object; many: 1,000 objects)
#
# Environment: ROUNDS (4) SECS (5) CONNS (32) PORT (18905) PGPORT (55440) BUILD (build).
# Prints req/s and p99 of every round, the medians, and PostgreSQL's rate over SQLite's round
# by round (each pair ran back to back) with their median: the figure to quote.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORKLOAD=${1:-}
ROUNDS=${ROUNDS:-4}
SECS=${SECS:-5}
CONNS=${CONNS:-32}
PORT=${PORT:-18905}
PGPORT=${PGPORT:-55440}
BUILD=${BUILD:-build}
case $WORKLOAD in
  hot) ARGS=(-s bench/post.lua "http://127.0.0.1:$PORT/counters/hot/increment") ;;
  many) ARGS=(-s bench/many.lua "http://127.0.0.1:$PORT/") ;;
  *) sed -n 2,11p "$0"; exit 2 ;;
esac
WORK=$(mktemp -d)
. bench/cluster/postgres.sh
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill -KILL "$SERVER" 2>/dev/null
  stop_postgres
  rm -rf "$WORK"
}
trap cleanup EXIT

start_postgres

declare -A RESULTS
for round in $(seq "$ROUNDS"); do
  for engine in sqlite postgres; do
    rm -rf "$WORK/state"
    extra=()
    if [ "$engine" = postgres ]; then
      psql_ "DROP DATABASE IF EXISTS bench" && psql_ "CREATE DATABASE bench"
      extra=(--cluster "host=127.0.0.1 port=$PGPORT user=durable dbname=bench" --node bench)
    fi
    "./$BUILD/durable" serve --config examples/seed/wrangler.toml --listen 127.0.0.1:$PORT --admin off \
      --persist-to "$WORK/state" --durability full --shards 1 "${extra[@]}" > "$WORK/out" 2>&1 &
    SERVER=$!
    for _ in $(seq 200); do grep -q listening "$WORK/out" 2>/dev/null && break; sleep 0.05; done
    wrk -t1 -c"$CONNS" -d2s "${ARGS[@]}" > /dev/null
    out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "${ARGS[@]}")
    # An error answer is not throughput: a round with any is reported and the run fails.
    bad=$(awk '/Non-2xx/ {n=$NF} /Socket errors/ {n=n "+" $0} END {print n}' <<<"$out")
    if [ -n "$bad" ]; then echo "engines: $engine had errors: $bad" >&2; exit 1; fi
    line=$(awk '/Requests\/sec/ {r=$2} $1=="99%" {p=$2} END {printf "%d@%s", r, p}' <<<"$out")
    RESULTS[$engine]="${RESULTS[$engine]:-} $line"
    kill -TERM $SERVER; wait $SERVER 2>/dev/null || true
    SERVER=
  done
done

echo "# $(date -u '+%F %H:%M UTC') $WORKLOAD, wrk -t1 -c$CONNS -d${SECS}s, --shards 1, durability full, $ROUNDS alternating rounds"
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for engine in sqlite postgres; do
  runs=${RESULTS[$engine]}
  printf '%-9s median %7s req/s   runs (req/s@p99):%s\n' "$engine" "$(echo "$runs" | tr ' ' '\n' | grep . | cut -d@ -f1 | median)" "$runs"
done
read -ra s <<< "${RESULTS[sqlite]}"
read -ra p <<< "${RESULTS[postgres]}"
ratios=""
for i in "${!s[@]}"; do
  ratios+=" $(awk -v a="${p[$i]%@*}" -v b="${s[$i]%@*}" 'BEGIN {printf "%.2f", a / b}')"
done
echo "postgres/sqlite per round:$ratios   median $(echo "$ratios" | median)"
