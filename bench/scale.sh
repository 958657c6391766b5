#!/usr/bin/env bash
# Scale run (bench/README.md, "Scale run"): OBJECTS (1,000,000) objects on one node. Not part of
# `make test` or CI.
#
#   bash bench/scale.sh                      # 1,000,000 counters
#   OBJECTS=10000 SECS=5 bash bench/scale.sh # a quick check
#
# Serves the seed app (examples/seed/wrangler.toml, durability full, default shards) from
# $BUILD/durable with a fresh state directory, then:
#   1. creation: one POST /counters/o<i>/increment for each i in [0, OBJECTS) (each a new
#      Counter with one key), wrk with CONNS connections; objects/s = OBJECTS / wall time;
#   2. random access: SECS seconds of wrk, READ_PCT % GET /counters/o<i> and the rest
#      increments, i uniformly random over the OBJECTS names;
#   3. SETTLE seconds idle (past the 60 s idle timeout, so the objects leave memory);
# and prints the server's VmRSS after each step, the state directory's size (du) per object
# and its SQLite files, then stops the server (SIGTERM) and counts the stored keys with sqlite3.
#
# CLASS=sql runs the same over SQLite-backed counters (bench/sql/sql_counter.cc: UPDATE …
# RETURNING in each object's own database), built with -DDURABLE_BUILD_BENCH=ON.
#
# Environment: CLASS (kv | sql) OBJECTS (1000000) SECS (60) SETTLE (65; 0 skips step 3) CONNS (256)
#              THREADS (wrk threads, 1) READ_PCT (50) BUILD (build) PORT (18920)
#              STATE (state directory; default a fresh one under /var/tmp, removed at the end
#              unless KEEP=1) CREATE_TIMEOUT (seconds, 3600) SHARDS (default: one per core)
# wrk is installed by `bash scripts/deps.sh --bench`; sqlite3 is optional (the key count).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OBJECTS=${OBJECTS:-1000000}
SECS=${SECS:-60}
SETTLE=${SETTLE:-65}
CONNS=${CONNS:-256}
THREADS=${THREADS:-1}
READ_PCT=${READ_PCT:-50}
PORT=${PORT:-18920}
CREATE_TIMEOUT=${CREATE_TIMEOUT:-3600}
SHARDS=${SHARDS:-}
KEEP=${KEEP:-}
CLASS=${CLASS:-kv}
case $CLASS in
  kv) TARGET=durable_bin EXE=durable CONFIG=examples/seed/wrangler.toml ;;
  sql) TARGET=sql_counter EXE=sql_counter CONFIG=bench/sql/wrangler.toml ;;
  *) echo "scale: CLASS is kv or sql" >&2; exit 2 ;;
esac
export CLASS
WORK=$(mktemp -d)
STATE=${STATE:-}
OWN_STATE=
if [ -z "$STATE" ]; then STATE=$(mktemp -d /var/tmp/durable-scale.XXXXXX); OWN_STATE=1; fi
SERVER=
WRK=
cleanup() {
  [ -n "$WRK" ] && kill "$WRK" 2>/dev/null
  [ -n "$SERVER" ] && kill -KILL "$SERVER" 2>/dev/null
  rm -rf "$WORK"
  if [ -n "$OWN_STATE" ] && [ -z "$KEEP" ]; then rm -rf "$STATE"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v wrk > /dev/null || { echo "scale: wrk is missing; run bash scripts/deps.sh --bench" >&2; exit 1; }
{ [ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release; } > "$WORK/build.log" 2>&1 &&
  cmake --build "$BUILD" -j "$(nproc)" --target "$TARGET" >> "$WORK/build.log" 2>&1 ||
  { tail -30 "$WORK/build.log"; echo "scale: build failed" >&2; exit 1; }

rm -rf "$STATE"; mkdir -p "$STATE"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$BUILD/$EXE" serve --config "$CONFIG" --listen 127.0.0.1:$PORT --persist-to "$STATE" \
  --durability full ${SHARDS:+--shards $SHARDS} > "$WORK/out" 2> "$WORK/err" &
SERVER=$!
for _ in $(seq 200); do grep -q listening "$WORK/out" 2>/dev/null && break; sleep 0.05; done
grep -q listening "$WORK/out" || { echo "scale: server did not start"; cat "$WORK/err"; exit 1; }

rss() { awk '/^VmRSS/ {print $2}' /proc/$SERVER/status; }       # KiB
hwm() { awk '/^VmHWM/ {print $2}' /proc/$SERVER/status; }       # KiB, peak
cpu() { awk '{print $14 + $15}' /proc/$SERVER/stat; }           # server user+system ticks
now() { date +%s.%N; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
wrk_summary() {  # wrk output -> one line
  awk '/Requests\/sec/ {r=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2}
       /Non-2xx/ {n=$NF} /Socket errors/ {s=$0; sub(/^ *Socket errors: */, "", s)}
       END {printf "%s req/s, latency p50 %s p99 %s, non-2xx %s, socket errors: %s", r, p50, p99, n+0, s=="" ? "none" : s}'
}

echo "# $(date -u '+%F %H:%M UTC'), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $OBJECTS $CLASS objects, wrk -t$THREADS -c$CONNS, durability full, shards ${SHARDS:-default}, state in $STATE"
RSS0=$(rss)
echo "server VmRSS at start: $RSS0 KiB"

# 1. Creation.
mkdir -p "$WORK/done"
CPU0=$(cpu)
T0=$(now)
OBJECTS=$OBJECTS PHASE=create WRK_THREADS=$THREADS DONE_DIR="$WORK/done" \
  wrk -t"$THREADS" -c"$CONNS" -d"${CREATE_TIMEOUT}s" --timeout 30s -s bench/scale.lua "http://127.0.0.1:$PORT/" \
  > "$WORK/create.out" 2>&1 &
WRK=$!
while [ "$(ls "$WORK/done" | wc -l)" -lt "$THREADS" ]; do
  kill -0 "$WRK" 2>/dev/null || break
  sleep 0.05
done
T1=$(now)
kill -INT "$WRK" 2>/dev/null || true
wait "$WRK" || true
WRK=
CPU1=$(cpu)
answered=$(cat "$WORK"/done/* 2>/dev/null | awk '{s += $1} END {print s + 0}')
bad=$(cat "$WORK"/done/* 2>/dev/null | awk '{s += $2} END {print s + 0}')
elapsed=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.2f", b - a }')
RSS1=$(rss)
printf 'creation: %d objects in %s s: %.0f objects/s; %d answered, %d not 200 {"count":1}; server CPU %d ms\n' \
  "$OBJECTS" "$elapsed" "$(awk -v n="$OBJECTS" -v t="$elapsed" 'BEGIN { print n / t }')" "$answered" "$bad" \
  "$(( (CPU1 - CPU0) * 1000 / $(getconf CLK_TCK) ))"
if [ "$answered" -ne "$OBJECTS" ]; then
  echo "scale: creation incomplete ($answered of $OBJECTS answered); wrk said:"; tail -5 "$WORK/create.out"
fi
grep -q "Socket errors" "$WORK/create.out" && echo "  wrk: $(grep 'Socket errors' "$WORK/create.out" | sed 's/^ *//')"
echo "server VmRSS after creation: $RSS1 KiB ($(mib "$RSS1")); growth per object: $(awk -v a="$RSS0" -v b="$RSS1" -v n="$OBJECTS" 'BEGIN { printf "%.0f bytes", (b - a) * 1024 / n }')"
du_state() { du -sb "$STATE" | awk '{print $1}'; }
echo "state directory after creation: $(du_state) bytes"

# 2. Random access.
CPU0=$(cpu)
OBJECTS=$OBJECTS PHASE=random READ_PCT=$READ_PCT WRK_THREADS=$THREADS \
  wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --timeout 30s --latency -s bench/scale.lua "http://127.0.0.1:$PORT/" \
  > "$WORK/random.out" 2>&1 || true
CPU1=$(cpu)
RSS2=$(rss)
echo "random access, $READ_PCT% GET / $((100 - READ_PCT))% increment over $OBJECTS objects, ${SECS}s: $(wrk_summary < "$WORK/random.out"); server CPU $(( (CPU1 - CPU0) * 1000 / $(getconf CLK_TCK) )) ms"
echo "server VmRSS after random access: $RSS2 KiB ($(mib "$RSS2")), peak (VmHWM) $(hwm) KiB"

# 3. Idle.
if [ "$SETTLE" -gt 0 ]; then
  sleep "$SETTLE"
  RSS3=$(rss)
  echo "server VmRSS after ${SETTLE}s idle: $RSS3 KiB ($(mib "$RSS3"))"
fi

# Disk.
BYTES=$(du_state)
echo "state directory: $BYTES bytes (du -sb): $(awk -v b="$BYTES" -v n="$OBJECTS" 'BEGIN { printf "%.0f bytes", b / n }') per object"
find "$STATE" -type f -printf '%s %P\n' | sort -k2 | awk '{t[$2 ~ /-wal$/ ? "wal" : ($2 ~ /-shm$/ ? "shm" : "db")] += $1; n++}
  END {printf "  %d files: databases %.0f bytes, WAL %.0f bytes, shm %.0f bytes\n", n, t["db"], t["wal"], t["shm"]}'

# Stop (SIGTERM commits and exits 0), then the files at rest and the key count.
kill -TERM "$SERVER"
rc=0; wait "$SERVER" || rc=$?
SERVER=
echo "server stopped: exit $rc; $(grep -c . "$WORK/err" || true) lines on stderr"
[ -s "$WORK/err" ] && grep -v '^$' "$WORK/err" | sort | uniq -c | sort -rn | head -5 | sed 's/^/  stderr: /'
BYTES=$(du_state)
echo "state directory after stop: $BYTES bytes: $(awk -v b="$BYTES" -v n="$OBJECTS" 'BEGIN { printf "%.0f bytes", b / n }') per object"
# The partitions and meta, not a million objects' files.
find "$STATE" -path "$STATE/sql" -prune -o -type f -printf '  %10s %P\n' | sort -k2
if [ "$CLASS" = sql ]; then
  echo "objects' own databases: $(find "$STATE/sql" -name '*.sqlite' -not -path '*.snapshots*' | wc -l) (expected $OBJECTS)"
elif command -v sqlite3 > /dev/null; then
  keys=0
  for db in $(find "$STATE" -name '*.sqlite' -o -name '*.db' | sort); do
    n=$(sqlite3 -readonly "$db" "SELECT count(*) FROM kv" 2>/dev/null) || continue
    keys=$((keys + n))
  done
  echo "stored keys (SELECT count(*) FROM kv over the partitions): $keys (expected $OBJECTS)"
fi
