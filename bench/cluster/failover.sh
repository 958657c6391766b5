#!/usr/bin/env bash
# How long objects are unavailable after kill -9 of a node, for each lease: three nodes on one
# PostgreSQL, OBJECTS counters written once through the first node, then the second node is
# killed and every counter is read through the first, over and over, until all of them answer.
# Prints, per lease, the time from the kill until the last counter answered.
#
#   bash bench/cluster/failover.sh [LEASE_MS...]      (default: 2000 5000 10000)
#
# Environment: OBJECTS (300) BASE_PORT (18921) PGPORT (55442) BUILD (build).
set -euo pipefail
cd "$(dirname "$0")/../.."
LEASES=("$@")
[ ${#LEASES[@]} -eq 0 ] && LEASES=(2000 5000 10000)
OBJECTS=${OBJECTS:-300}
BASE_PORT=${BASE_PORT:-18921}
PGPORT=${PGPORT:-55442}
BUILD=${BUILD:-build}
WORK=$(mktemp -d)
. bench/cluster/postgres.sh
PIDS=()
stop_nodes() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; PIDS=(); }
cleanup() {
  stop_nodes
  stop_postgres
  rm -rf "$WORK"
}
trap cleanup EXIT
start_postgres

echo "# $(date -u '+%F %H:%M UTC') kill -9 of one of three nodes, $OBJECTS counters read through a survivor"
for lease in "${LEASES[@]}"; do
  db="l$lease"
  psql_ "CREATE DATABASE $db"
  url="host=127.0.0.1 port=$PGPORT user=durable dbname=$db"
  { cat examples/seed/wrangler.toml; printf '\n[cluster]\nlease_ms = %s\n' "$lease"; } > "$WORK/$db.toml"
  for i in 1 2 3; do
    "./$BUILD/durable" serve --config "$WORK/$db.toml" --listen 127.0.0.1:$((BASE_PORT + i - 1)) --admin off \
      --persist-to "$WORK/$db-n$i" --shards 1 --cluster "$url" --node "n$i" > "$WORK/$db-n$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in 1 2 3; do
    for _ in $(seq 200); do grep -q listening "$WORK/$db-n$i.log" 2>/dev/null && break; sleep 0.05; done
  done
  for _ in $(seq 300); do
    [ "$(psql_ "SELECT count(DISTINCT owner) FROM durable_slots WHERE owner IS NOT NULL" "$db")" = 3 ] && break
    sleep 0.1
  done
  sleep $(awk -v l="$lease" 'BEGIN {print 2 * l / 1000}')  # the hand-off settled, routes read again
  for c in $(seq "$OBJECTS"); do
    curl -s -o /dev/null -X POST "http://127.0.0.1:$BASE_PORT/counters/f$c/increment"
  done
  held=$(psql_ "SELECT count(*) FROM durable_slots WHERE owner = 'n2'" "$db")
  kill -KILL "${PIDS[1]}"
  t0=$(date +%s.%N)
  # Every pending counter at once (curl --parallel), so that a pass takes one request's time.
  pending=$(seq "$OBJECTS")
  while [ -n "$pending" ]; do
    urls=()
    for c in $pending; do urls+=(-o /dev/null "http://127.0.0.1:$BASE_PORT/counters/f$c"); done
    pending=$(curl -s -Z --parallel-max 100 -m 5 -w '%{http_code} %{url}\n' "${urls[@]}" 2>/dev/null |
      awk '$1 != 200 {sub(/.*\/counters\/f/, "", $2); print $2}')
  done
  t1=$(date +%s.%N)
  printf 'lease %5d ms: every counter answered %.2f s after the kill (the killed node held %s slots)\n' \
    "$lease" "$(echo "$t1 - $t0" | bc)" "$held"
  stop_nodes
done
