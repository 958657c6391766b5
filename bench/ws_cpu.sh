#!/usr/bin/env bash
# Where one fan-out message's CPU goes (issue 19's profile): a fresh server on the seed app with
# ChatRoom SQLite-backed (bench/sqlite-chat-config.sh), a 2 s warm-up, then ws_fanout for SECS
# seconds; prints each server thread's CPU per message, the load generator's, and the commit
# metrics (batches, mean commit and fdatasync). With PERF=1, a second run under `perf record
# --call-graph dwarf` prints the shard's samples by the frame they fall under (the table in
# bench/README.md, "What one ChatRoom message costs").
#
#   bash bench/ws_cpu.sh [chat|hibernating] [secs]      # BIN (build/durable), PORT (18950)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUTE=${1:-chat}
SECS=${2:-5}
BIN=${BIN:-build/durable}
PORT=${PORT:-18950}
ADMIN=$((PORT + 1))
[ -x "$BIN" ] && [ -x build/ws_fanout ] || { echo "ws_cpu: build $BIN and build/ws_fanout first (-DDURABLE_BUILD_BENCH=ON)" >&2; exit 1; }
WORK=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && kill -KILL $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
bash bench/sqlite-chat-config.sh > "$WORK/wrangler.toml"
printf '\nhibernation_timeout_ms = 500\n' >> "$WORK/wrangler.toml"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

start() {
  rm -rf "$WORK/state"
  "$BIN" serve --config "$WORK/wrangler.toml" --listen 127.0.0.1:$PORT --admin 127.0.0.1:$ADMIN \
    --persist-to "$WORK/state" > "$WORK/out" 2> "$WORK/err" &
  SERVER=$!
  for _ in $(seq 100); do grep -q listening "$WORK/out" 2>/dev/null && break; sleep 0.05; done
  grep -q listening "$WORK/out" || { echo "ws_cpu: the server did not start"; cat "$WORK/err"; exit 1; }
  build/ws_fanout --port $PORT --route "$ROUTE" --receivers 100 --window 32 --seconds 2 --room r1 > /dev/null
}
stop() { kill -KILL $SERVER; wait $SERVER 2>/dev/null || true; SERVER=; }
ticks() { for t in /proc/$SERVER/task/*; do echo "$(cat $t/comm) $(awk '{print $14 + $15}' $t/stat)"; done | sort; }
metric() { curl -s 127.0.0.1:$ADMIN/metrics | awk -v m="$1" '$1 == m { print $2 }'; }

echo "# $(date -u '+%F %H:%M UTC') $BIN route=$ROUTE, 100 receivers, window 32, ${SECS}s after a 2s warm-up"
start
# ws_fanout runs SECS + 2 seconds; the CPU is sampled over SECS of them, after its sockets are up.
build/ws_fanout --port $PORT --route "$ROUTE" --receivers 100 --window 32 --seconds $((SECS + 2)) --room r1 \
  > "$WORK/fanout" &
FANOUT=$!
sleep 1
ticks > "$WORK/before"
k0=$(awk '{print $14 + $15}' /proc/$FANOUT/stat)
b0=$(metric durable_storage_commit_duration_seconds_count); c0=$(metric durable_storage_commit_duration_seconds_sum)
s0=$(metric durable_storage_sync_duration_seconds_count); y0=$(metric durable_storage_sync_duration_seconds_sum)
sleep "$SECS"
ticks > "$WORK/after"
k1=$(awk '{print $14 + $15}' /proc/$FANOUT/stat)
b1=$(metric durable_storage_commit_duration_seconds_count); c1=$(metric durable_storage_commit_duration_seconds_sum)
s1=$(metric durable_storage_sync_duration_seconds_count); y1=$(metric durable_storage_sync_duration_seconds_sum)
wait $FANOUT
cat "$WORK/fanout"
stop
# Messages in the sampled seconds, at the run's mean rate.
messages=$(sed -n 's/.*, \([0-9]*\) broadcasts\/s.*/\1/p' "$WORK/fanout")
messages=$((messages * SECS))
hz=$(getconf CLK_TCK)
{ cat "$WORK/before"; echo "client $k0"; } | sort > "$WORK/b"
{ cat "$WORK/after"; echo "client $k1"; } | sort > "$WORK/a"
join "$WORK/b" "$WORK/a" | awk -v n="$messages" -v hz="$hz" -v secs="$SECS" \
  '{ d = ($3 - $2) * 1e6 / hz; if (d > 0) printf "  %-10s %5.0f %% of a core, %6.1f us per message\n", $1, d / 1e4 / secs, d / n }'
awk -v b="$((b1 - b0))" -v c="$c1" -v c0="$c0" -v s="$((s1 - s0))" -v y="$y1" -v y0="$y0" -v n="$messages" 'BEGIN {
  if (b > 0) printf "  %d batches, %.1f messages each; commit (submit to durable) %.2f ms mean; %d fdatasyncs, %.2f ms mean\n",
    b, n / b, (c - c0) * 1000 / b, s, (s > 0 ? (y - y0) * 1000 / s : 0) }'

[ "${PERF:-0}" = 1 ] || exit 0
command -v perf > /dev/null || { echo "ws_cpu: perf is missing" >&2; exit 1; }
start
build/ws_fanout --port $PORT --route "$ROUTE" --receivers 100 --window 32 --seconds $((SECS + 2)) --room r1 > "$WORK/fanout" &
FANOUT=$!
sleep 1
perf record -F 499 --call-graph dwarf,65528 -p $SERVER -o "$WORK/perf.data" -- sleep "$SECS" > /dev/null 2>&1
wait $FANOUT
stop
echo "# perf: the shard's samples by the frame they fall under (% of all the server's samples)"
perf report -i "$WORK/perf.data" --no-children --sort comm -g none --stdio 2>/dev/null | grep -E '^ +[0-9]'
perf report -i "$WORK/perf.data" --children --comm shard-0 --sort sym -g none --stdio 2>/dev/null > "$WORK/report"
for frame in 'durable::Storage::get<' 'durable::Storage::put' 'durable::detail::Partition::flush' \
  'seed::ChatRoom::broadcast' 'runFlusher' 'durable::detail::Partition::engineCommitted' \
  'durable::detail::NetSocket::onRead' 'seed::ChatRoom::webSocketMessage'; do
  printf "  %-48s %s\n" "$frame" "$(grep -F -- "$frame" "$WORK/report" | head -1 | awk '{ print $1 }')"
done
