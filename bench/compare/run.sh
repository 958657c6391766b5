#!/usr/bin/env bash
# durable against workerd, side by side, on the seed app (issue: the comparative benchmark).
#
#   make bench                 # builds durable, installs workerd, runs bench/run.sh, then this
#   bash bench/compare/run.sh  # just this, with build/durable already built
#
# Both servers serve the seed's routes on loopback with their storage on disk: durable with
# examples/seed/wrangler.toml and --durability full (a reply waits for fsync), workerd with
# workerd-app/config.capnp (the seed's TypeScript classes and Hono routes, bundled by esbuild;
# durableObjectStorage = localDisk, a SQLite file per object, fsync per commit). Every workload
# runs on both, alternating workerd, durable, workerd, durable ... for ROUNDS rounds; each run
# gets a fresh server and a fresh state directory, a WARM-second warm-up with the same load,
# then wrk -t1 -c$CONNS -d${SECS}s. The table shows the median over rounds.
#
# Environment: SECS (10) CONNS (32) ROUNDS (3) WARM (2) COLD_N (5) BIN (build/durable)
#              WRK_TIMEOUT (10: wrk's per-request timeout in seconds, so slow answers are
#              counted as latency, not as socket errors)
#              WS_BUILD (build) WS_SOCKETS (5000) WS_SETTLE (12)
#              ONLY (space-separated keys: hot many1k many100k get ping mixed cold ws; default all)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${BIN:-build/durable}
SECS=${SECS:-10}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
WARM=${WARM:-2}
COLD_N=${COLD_N:-5}
WRK_TIMEOUT=${WRK_TIMEOUT:-10}
WS_BUILD=${WS_BUILD:-build}
WS_SOCKETS=${WS_SOCKETS:-5000}  # workerd holds 2 descriptors per WebSocket: 10,000 hit EMFILE at ulimit 20,000
WS_SETTLE=${WS_SETTLE:-12}
PORT_W=${PORT_W:-18911}
PORT_D=${PORT_D:-18912}
PORT_B=${PORT_B:-18913}  # the bare Beast broadcast server (the fan-out ceiling)
ONLY=${ONLY:-}

[ -x "$BIN" ] || { echo "compare: $BIN is missing; run make build" >&2; exit 1; }
command -v wrk >/dev/null || { echo "compare: wrk is missing; run bash scripts/deps.sh --bench" >&2; exit 1; }
bash bench/compare/build-workerd.sh
WORKERD=$(ls "$ROOT"/bench/compare/node_modules/@cloudflare/workerd-linux-*/bin/workerd 2>/dev/null | head -1)
WORKERD=${WORKERD:-$ROOT/bench/compare/node_modules/.bin/workerd}
WCONFIG=$ROOT/bench/compare/workerd-app/config.capnp

WORK=$(mktemp -d /tmp/durable-compare.XXXXXX)
SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then kill -KILL "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# workerd's on-disk storage is SQLite-backed: durable serves the seed with ChatRoom
# SQLite-backed too, so that both run the same workload (bench/sqlite-chat-config.sh).
DCONFIG=$WORK/wrangler.toml
bash "$ROOT/bench/sqlite-chat-config.sh" > "$DCONFIG"

port_of() { case $1 in workerd) echo "$PORT_W" ;; bare) echo "$PORT_B" ;; *) echo "$PORT_D" ;; esac; }

# The command line that serves the seed app as server $1 on port $2 with state in $3.
server_cmd() {
  case $1 in
    workerd) echo "$WORKERD serve $WCONFIG --directory-path do-storage=$3 --socket-addr http=127.0.0.1:$2" ;;
    durable) echo "$ROOT/$BIN serve --config $DCONFIG --listen 127.0.0.1:$2 --persist-to $3 --durability full" ;;
    bare) echo "$ROOT/$WS_BUILD/beast_broadcast --listen 127.0.0.1:$2" ;;  # no state
  esac
}

start() {  # server -> sets SERVER, waits for 200 on /health (20 s at most)
  local port state
  port=$(port_of "$1")
  state=$WORK/state-$1
  rm -rf "$state"; mkdir -p "$state"
  # shellcheck disable=SC2046
  $(server_cmd "$1" "$port" "$state") > "$WORK/$1.out" 2> "$WORK/$1.err" &
  SERVER=$!
  for _ in $(seq 400); do
    if [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ]; then return; fi
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.05
  done
  echo "compare: $1 did not start" >&2; tail -20 "$WORK/$1.err" >&2; exit 1
}

stop() {  # SIGTERM, SIGKILL after 15 s
  [ -n "$SERVER" ] || return 0
  kill -TERM "$SERVER" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  SERVER=
}

to_ms() {  # wrk's 850.00us / 12.34ms / 1.02s -> milliseconds
  awk -v v="$1" 'BEGIN { u = v; sub(/^[0-9.]+/, "", u); n = v + 0;
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.2f", n }'
}

# One measured run: server, then wrk arguments after the URL path and the env (NOBJ=...).
# Appends "req/s p99ms errors" to $WORK/<key>.<server>.
measure() {  # key server env path [wrk args...]
  local key=$1 server=$2 envs=$3 path=$4; shift 4
  local port url out rps p99 non2xx sockerr
  port=$(port_of "$server")
  url="http://127.0.0.1:$port$path"
  start "$server"
  if [ "$key" = get ]; then curl -s -o /dev/null -X POST "http://127.0.0.1:$port/counters/hot/increment"; fi
  env $envs timeout $((WARM + 30)) wrk -t1 -c"$CONNS" -d"${WARM}s" "$@" "$url" > /dev/null 2>&1 || true
  out=$(env $envs timeout $((SECS + 60)) wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout "${WRK_TIMEOUT}s" --latency "$@" "$url" 2>&1) || true
  stop
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  sockerr=$(echo "$out" | awk '/Socket errors/ {gsub(",", ""); print $4+$6+$8+$10}')
  echo "${rps:-0} $(to_ms "${p99:-0}") ${non2xx:-0} ${sockerr:-0}" >> "$WORK/$key.$server"
  printf '  %-8s round %s  %-8s %10s req/s  p99 %8s ms  non-2xx %s  socket errors %s\n' "$key" "$round" "$server" \
    "${rps:-0}" "$(to_ms "${p99:-0}")" "${non2xx:-0}" "${sockerr:-0}" >&2
}

median() {  # column of $WORK/<file>
  awk -v c="$2" '{print $c}' "$1" | sort -g | awk '{a[NR]=$1} END { if (NR == 0) print "-"; else print a[int((NR+1)/2)] }'
}
sum_col() { awk -v c="$2" '{s += $c} END {print s + 0}' "$1"; }

# key | label | env | path | wrk args
WORKLOADS=(
  "hot|increment, one hot object||/counters/hot/increment|-s bench/post.lua"
  "many1k|increment, 1,000 objects (random)|NOBJ=1000|/|-s bench/many.lua"
  "many100k|increment, 100,000 objects (random)|NOBJ=100000|/|-s bench/many.lua"
  "get|GET counter, one object||/counters/hot|"
  "ping|GET /api/ping, rate-limited, 10,000 client IPs (allowed)|NIP=10000|/|-s bench/compare/ping.lua"
  "mixed|mixed 80% GET / 20% increment, 10,000 objects|NOBJ=10000 READ_PCT=80|/|-s bench/compare/mixed.lua"
)

selected() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

START=$(date +%s)
echo "compare: workerd $("$WORKERD" --version 2>/dev/null | awk '{print $2}'), durable $BIN; wrk -t1 -c$CONNS -d${SECS}s, warm-up ${WARM}s, $ROUNDS rounds" >&2
for w in "${WORKLOADS[@]}"; do
  IFS='|' read -r key label envs path args <<< "$w"
  selected "$key" || continue
  for round in $(seq "$ROUNDS"); do
    for server in workerd durable; do
      # shellcheck disable=SC2086
      measure "$key" "$server" "$envs" "$path" $args
    done
  done
done

# Cold start: spawn to first 200 on /health, fresh state directory each time, alternating.
if selected cold; then
  for i in $(seq "$COLD_N"); do
    for server in workerd durable; do
      state=$WORK/cold-$server-$i; mkdir -p "$state"
      # shellcheck disable=SC2046
      ms=$(node bench/compare/coldstart.mjs "$(port_of $server)" $(server_cmd $server "$(port_of $server)" "$state")) || ms=
      echo "${ms:-99999} 0 0" >> "$WORK/cold.$server"
      printf '  cold     start %s  %-8s %8s ms\n' "$i" "$server" "${ms:-failed}" >&2
      rm -rf "$state"
    done
  done
fi

# WebSockets, with bench/ws_fanout.cc and bench/ws_memory.cc (bench/README.md, "WebSockets"),
# built as bench/ws.sh builds them. Fan-out: one room, 100 receivers + 1 sender keeping 32
# broadcasts outstanding, deliveries/s and send-to-receipt p99, ROUNDS alternating rounds.
# Memory: server VmRSS growth per idle socket at WS_SOCKETS sockets in 100 HibernatingRooms,
# read WS_SETTLE s after the sockets open (both servers keep their default hibernation
# timeouts: 10 s in durable), one round. The HibernatingRoom rounds also run the same client
# against bench/beast_broadcast.cc, a bare Beast broadcast server (no storage, no objects), right
# after durable: the ceiling row puts it in the workerd columns (ratio: durable / bare).
WS_OK=
if selected ws; then
  if cmake -S . -B "$WS_BUILD" -DCMAKE_BUILD_TYPE=Release -DDURABLE_BUILD_BENCH=ON > "$WORK/ws-build.log" 2>&1 &&
     cmake --build "$WS_BUILD" -j "$(nproc)" --target ws_fanout ws_memory beast_broadcast >> "$WORK/ws-build.log" 2>&1; then
    WS_OK=1
  else
    tail -20 "$WORK/ws-build.log" >&2
    echo "compare: could not build ws_fanout / ws_memory / beast_broadcast in $WS_BUILD; WebSocket rows are TODO" >&2
  fi
fi
if [ -n "$WS_OK" ]; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  for route in hibernating chat; do
    servers="workerd durable"; [ $route = hibernating ] && servers="workerd durable bare"
    for round in $(seq "$ROUNDS"); do
      for server in $servers; do
        start "$server"
        out=$(timeout $((SECS + 60)) "$WS_BUILD/ws_fanout" --port "$(port_of $server)" --route $route \
          --receivers 100 --window 32 --seconds "$SECS" --room "r$round" 2>&1) || true
        stop
        line=$(echo "$out" | sed -n 's/.*: \([0-9.]*\) deliveries\/s.* p99 \([0-9.]*\) ms.*/\1 \2 0 0/p')
        echo "${line:-0 0 0 1}" >> "$WORK/ws-$route.$server"
        printf '  ws-%-11s round %s  %-8s %s\n' "$route" "$round" "$server" "$(echo "$out" | tail -1)" >&2
      done
    done
  done
  for server in workerd durable; do
    start "$server"
    out=$(timeout 300 "$WS_BUILD/ws_memory" --port "$(port_of $server)" --pid "$SERVER" --sockets "$WS_SOCKETS" \
      --rooms 100 --settle "$WS_SETTLE" 2>&1) || true
    stop
    kib=$(echo "$out" | sed -n 's/^per idle hibernated socket: \([0-9.]*\) KiB.*/\1/p')
    reached=$(echo "$out" | sed -n 's/.*reached \([0-9]*\) of.*/\1/p')
    echo "${kib:-0} ${reached:-0}" > "$WORK/ws-mem.$server"
    echo "$out" > "$WORK/ws-mem-$server.log"
    echo "$out" | sed "s/^/  ws-memory $server: /" >&2
  done
fi

# ---- the table ----
{
  echo "# $(date -u '+%F %H:%M UTC'), $(nproc) cores ($(awk -F: '/model name/ {sub(/^ /, "", $2); print $2; exit}' /proc/cpuinfo)), load generator on the same cores"
  echo "# workerd $("$WORKERD" --version | awk '{print $2}') (npm), localDisk DO storage; durable --durability full, default shards"
  echo "# wrk -t1 -c$CONNS -d${SECS}s --timeout ${WRK_TIMEOUT}s after a ${WARM}s warm-up, fresh server + state per run, median of $ROUNDS alternating rounds"
  echo "# ratio: durable / workerd (> 1: durable better); cold start and memory: workerd / durable"
  [ -n "$WS_OK" ] && echo "# fan-out ceiling row: bench/beast_broadcast.cc (bare Beast, no storage) in the workerd columns, durable's HibernatingRoom runs in the durable columns; ratio durable / bare"
  printf '| %-66s | %15s | %9s | %15s | %9s | %6s |\n' workload "workerd req/s" "p99 ms" "durable req/s" "p99 ms" ratio
  printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' $(seq 68))" "$(printf -- '-%.0s' $(seq 17))" \
    "$(printf -- '-%.0s' $(seq 11))" "$(printf -- '-%.0s' $(seq 17))" "$(printf -- '-%.0s' $(seq 11))" "$(printf -- '-%.0s' $(seq 8))"
  notes=()
  for w in "${WORKLOADS[@]}"; do
    IFS='|' read -r key label envs path args <<< "$w"
    selected "$key" || continue
    wr=$(median "$WORK/$key.workerd" 1); wp=$(median "$WORK/$key.workerd" 2)
    dr=$(median "$WORK/$key.durable" 1); dp=$(median "$WORK/$key.durable" 2)
    ratio=$(awk -v a="$dr" -v b="$wr" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    printf '| %-66s | %15.0f | %9s | %15.0f | %9s | %6s |\n' "$label" "$wr" "$wp" "$dr" "$dp" "$ratio"
    for s in workerd durable; do
      e=$(sum_col "$WORK/$key.$s" 3); t=$(sum_col "$WORK/$key.$s" 4)
      if [ "$e" -gt 0 ] || [ "$t" -gt 0 ]; then
        notes+=("$label: $s had $e non-2xx responses and $t socket errors/timeouts (wrk --timeout ${WRK_TIMEOUT}s) over $ROUNDS runs")
      fi
    done
  done
  if selected cold; then
    wc=$(median "$WORK/cold.workerd" 1); dc=$(median "$WORK/cold.durable" 1)
    ratio=$(awk -v a="$wc" -v b="$dc" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    printf '| %-66s | %15s | %9s | %15s | %9s | %6s |\n' "cold start to first 200 on /health (ms, median of $COLD_N)" "${wc} ms" "" "${dc} ms" "" "$ratio"
  fi
  if [ -n "$WS_OK" ]; then
    for route in hibernating chat; do
      f=$WORK/ws-$route
      wr=$(median "$f.workerd" 1); wp=$(median "$f.workerd" 2)
      dr=$(median "$f.durable" 1); dp=$(median "$f.durable" 2)
      ratio=$(awk -v a="$dr" -v b="$wr" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
      label="WebSocket fan-out, $([ $route = chat ] && echo ChatRoom || echo HibernatingRoom), 100 receivers (deliveries/s)"
      printf '| %-66s | %15.0f | %9s | %15.0f | %9s | %6s |\n' "$label" "$wr" "$wp" "$dr" "$dp" "$ratio"
      for s in workerd durable; do
        if [ "$(sum_col "$f.$s" 4)" -gt 0 ]; then notes+=("$label: a $s run printed no result"); fi
      done
      if [ $route = hibernating ]; then
        br=$(median "$f.bare" 1); bp=$(median "$f.bare" 2)
        ratio=$(awk -v a="$dr" -v b="$br" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
        label="WebSocket fan-out, ceiling: bare Beast broadcast (workerd columns)"
        printf '| %-66s | %15.0f | %9s | %15.0f | %9s | %6s |\n' "$label" "$br" "$bp" "$dr" "$dp" "$ratio"
        if [ "$(sum_col "$f.bare" 4)" -gt 0 ]; then notes+=("$label: a bare run printed no result"); fi
      fi
    done
    read -r wk wn < "$WORK/ws-mem.workerd"; read -r dk dn < "$WORK/ws-mem.durable"
    ratio=$(awk -v a="$wk" -v b="$dk" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "-" }')
    wcell="$wk KiB"; [ "$wk" = 0 ] && wcell=failed
    dcell="$dk KiB"; [ "$dk" = 0 ] && dcell=failed
    printf '| %-66s | %15s | %9s | %15s | %9s | %6s |\n' "idle WebSocket memory, $WS_SOCKETS sockets (RSS KiB/socket)" "$wcell" "" "$dcell" "" "$ratio"
    for s in workerd durable; do
      if [ "$(awk '{print $1}' "$WORK/ws-mem.$s")" = 0 ]; then
        notes+=("idle WebSocket memory: $s: $(grep -m1 'failed to open' "$WORK/ws-mem-$s.log" || tail -1 "$WORK/ws-mem-$s.log"); server: $(grep -v 'Message from' "$WORK/$s.err" | tail -1)")
      fi
    done
    notes+=("idle WebSocket memory: after ${WS_SETTLE}s idle, one message per room reached $wn (workerd) and $dn (durable) of $WS_SOCKETS sockets; ratio = workerd / durable KiB")
  else
    printf '| %-66s | %15s | %9s | %15s | %9s | %6s |\n' "TODO WebSocket fan-out (ws_fanout not built)" - - - - -
    printf '| %-66s | %15s | %9s | %15s | %9s | %6s |\n' "TODO idle WebSocket memory (ws_memory not built)" - - - - -
  fi
  for n in "${notes[@]+"${notes[@]}"}"; do echo "# note: $n"; done
  echo "# took $(( $(date +%s) - START )) s"
} | tee "$WORK/table"
mkdir -p bench/results
cp "$WORK/table" "bench/results/compare-$(date -u +%Y%m%dT%H%M%S).md"
