#!/usr/bin/env bash
# Two or more durable binaries on the same workload, alternating A B A B ... for ROUNDS
# rounds, each run with a fresh server and state directory. On a VM whose speed drifts by
# 10-40 % within minutes, only figures measured this way, side by side, compare builds.
#
#   bash bench/ab.sh WORKLOAD BINARY[:SHARDS]...
#   e.g. git worktree add /tmp/old HEAD~1 && make -C /tmp/old build
#        bash bench/ab.sh hot /tmp/old/build/durable build/durable
#
# WORKLOAD: hot (increments of one object), many (increments over 1,000 objects), get (GET
# of one counter). Environment: ROUNDS (4) SECS (5) CONNS (32) SHARDS (1) DURABILITY (full)
# PORT (18905); BINARY:N runs that binary with --shards N instead. Prints, per binary, req/s and p99 of every round and the median req/s; then, for
# every binary after the first, its rate over the first's round by round (each pair ran
# back to back) and the median of those ratios, the figure to quote.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,12p "$0"; exit 2; }
WORKLOAD=$1; shift
ROUNDS=${ROUNDS:-4}
SECS=${SECS:-5}
CONNS=${CONNS:-32}
SHARDS=${SHARDS:-1}
DURABILITY=${DURABILITY:-full}
PORT=${PORT:-18905}
case $WORKLOAD in
  hot) ARGS=(-s bench/post.lua "http://127.0.0.1:$PORT/counters/hot/increment") ;;
  many) ARGS=(-s bench/many.lua "http://127.0.0.1:$PORT/") ;;
  get) ARGS=("http://127.0.0.1:$PORT/counters/hot") ;;
  *) echo "ab: unknown workload $WORKLOAD (hot, many, get)" >&2; exit 2 ;;
esac
WORK=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && kill -KILL $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

declare -A RESULTS
DISK_BEFORE=$(bash bench/disk-probe.sh)
for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    rm -rf "$WORK/state"
    exe=$bin shards=$SHARDS
    if [[ $bin =~ ^(.*):([0-9]+)$ ]]; then exe=${BASH_REMATCH[1]} shards=${BASH_REMATCH[2]}; fi
    "$exe" serve --config examples/seed/wrangler.toml --listen 127.0.0.1:$PORT --persist-to "$WORK/state" \
      --durability "$DURABILITY" --shards "$shards" > "$WORK/out" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do grep -q listening "$WORK/out" 2>/dev/null && break; sleep 0.05; done
    wrk -t1 -c"$CONNS" -d2s "${ARGS[@]}" > /dev/null
    line=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "${ARGS[@]}" |
      awk '/Requests\/sec/ {r=$2} $1=="99%" {p=$2} END {printf "%d@%s", r, p}')
    RESULTS[$bin]="${RESULTS[$bin]:-} $line"
    kill -TERM $SERVER; wait $SERVER 2>/dev/null || true
    SERVER=
  done
done

echo "# $(date -u '+%F %H:%M UTC') $WORKLOAD, wrk -t1 -c$CONNS -d${SECS}s, --shards $SHARDS unless :N, --durability $DURABILITY, $ROUNDS alternating rounds, disk $DISK_BEFORE then $(bash bench/disk-probe.sh) us per synced 4 KiB write (bench/disk-probe.sh)"
for bin in "$@"; do
  runs=${RESULTS[$bin]}
  median=$(echo "$runs" | tr ' ' '\n' | grep . | cut -d@ -f1 | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}')
  printf '%-40s median %7d req/s   runs (req/s@p99):%s\n' "$bin" "$median" "$runs"
done
first=$1; shift
for bin in "$@"; do
  ratios=$(paste <(echo "${RESULTS[$first]}" | tr ' ' '\n' | grep . | cut -d@ -f1) \
                 <(echo "${RESULTS[$bin]}" | tr ' ' '\n' | grep . | cut -d@ -f1) |
           awk '{printf "%.2f\n", $2 / $1}')
  median=$(echo "$ratios" | sort -g | awk '{a[NR]=$1} END {printf "%.2f", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
  echo "$bin / $first, round by round: $(echo $ratios); median $median"
done
