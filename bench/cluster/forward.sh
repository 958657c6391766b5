#!/usr/bin/env bash
# Three nodes on one PostgreSQL (cluster mode): increments of one object entering at the node
# that owns it against entering at a node that forwards them to the owner, alternating owner,
# other, owner, ... for ROUNDS rounds on the same running cluster.
#
#   bash bench/cluster/forward.sh
#
# Environment: ROUNDS (4) SECS (5) CONNS (32) BASE_PORT (18911) PGPORT (55441) BUILD (build).
# All of it shares this machine's cores: three servers, PostgreSQL and wrk.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-4}
SECS=${SECS:-5}
CONNS=${CONNS:-32}
BASE_PORT=${BASE_PORT:-18911}
PGPORT=${PGPORT:-55441}
BUILD=${BUILD:-build}
WORK=$(mktemp -d)
. bench/cluster/postgres.sh
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  stop_postgres
  rm -rf "$WORK"
}
trap cleanup EXIT
start_postgres
url="host=127.0.0.1 port=$PGPORT user=durable dbname=postgres"
for i in 1 2 3; do
  "./$BUILD/durable" serve --config examples/seed/wrangler.toml --listen 127.0.0.1:$((BASE_PORT + i - 1)) \
    --admin off --persist-to "$WORK/n$i" --shards 1 --cluster "$url" --node "n$i" > "$WORK/n$i.log" 2>&1 &
  PIDS+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 200); do grep -q listening "$WORK/n$i.log" 2>/dev/null && break; sleep 0.05; done
done
for _ in $(seq 100); do
  [ "$(psql_ "SELECT count(DISTINCT owner) FROM durable_slots WHERE owner IS NOT NULL")" = 3 ] && break
  sleep 0.2
done
sleep 3  # a lease round after the hand-off, so every node's routes name the new owners
curl -s -X POST "http://127.0.0.1:$BASE_PORT/counters/hot/increment" > /dev/null
owner=$(psql_ "SELECT owner FROM durable_slots WHERE slot = (SELECT slot FROM durable_kv LIMIT 1)")
owner_port=$((BASE_PORT + ${owner#n} - 1))
other_port=$((BASE_PORT + ${owner#n} % 3))
# Busy CPU time of the whole machine, in clock ticks (/proc/stat: all but idle and iowait).
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
TICK=$(getconf CLK_TCK)
declare -A RESULTS CPU
for round in $(seq "$ROUNDS"); do
  for which in owner other; do
    port=$owner_port
    [ "$which" = other ] && port=$other_port
    url_="http://127.0.0.1:$port/counters/hot/increment"
    wrk -t1 -c"$CONNS" -d2s -s bench/post.lua "$url_" > /dev/null
    b0=$(busy)
    out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s bench/post.lua "$url_")
    # An error answer is not throughput: a round with any is reported and the run fails.
    bad=$(awk '/Non-2xx/ {n=$NF} /Socket errors/ {n=n "+" $0} END {print n}' <<<"$out")
    if [ -n "$bad" ]; then echo "forward: $which round $round had errors: $bad" >&2; exit 1; fi
    line=$(awk '/Requests\/sec/ {r=$2} $1=="99%" {p=$2} END {printf "%d@%s", r, p}' <<<"$out")
    b1=$(busy)
    # Machine CPU per request (all processes: wrk, the nodes, PostgreSQL), in microseconds.
    CPU[$which]="${CPU[$which]:-} $(awk -v t=$((b1 - b0)) -v hz="$TICK" -v r="${line%@*}" -v s="$SECS" 'BEGIN {printf "%.0f", t / hz * 1e6 / (r * s)}')"
    RESULTS[$which]="${RESULTS[$which]:-} $line"
  done
done
echo "# $(date -u '+%F %H:%M UTC') one object, owner $owner (:$owner_port), other :$other_port, wrk -t1 -c$CONNS -d${SECS}s, 3 nodes --shards 1, durability full, $ROUNDS alternating rounds"
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for which in owner other; do
  runs=${RESULTS[$which]}
  printf '%-6s median %7s req/s   runs (req/s@p99):%s   machine CPU per request (us):%s\n' "$which" \
    "$(echo "$runs" | tr ' ' '\n' | grep . | cut -d@ -f1 | median)" "$runs" "${CPU[$which]}"
done
read -ra a <<< "${RESULTS[owner]}"
read -ra b <<< "${RESULTS[other]}"
ratios=""
for i in "${!a[@]}"; do ratios+=" $(awk -v x="${b[$i]%@*}" -v y="${a[$i]%@*}" 'BEGIN {printf "%.2f", x / y}')"; done
echo "entering elsewhere / at the owner per round:$ratios   median $(echo "$ratios" | median)"
