#!/usr/bin/env bash
# Server memory under the attacks of issue 18, item 4 (bench/attack_memory.cc): the demo app on
# its default config (examples/seed/wrangler.toml, as `make run` serves it), a fresh state
# directory, each attack in turn with VmRSS sampled during and after. Not part of `make test`.
#
#   bash bench/attack.sh [attack]     # slow-readers, fragments, bodies, or all (the default)
#
# Builds what it needs in $BUILD (default build) with -DDURABLE_BUILD_BENCH=ON; HOLD and AFTER
# set the seconds an attack holds and the seconds waited after it (default 10 each).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ATTACK=${1:-all}
PORT=${PORT:-18896}
WORK=$(mktemp -d)
SERVER=""
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDURABLE_BUILD_BENCH=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target durable_bin attack_memory >/dev/null

start() {
  rm -rf "$WORK/state"
  "$BUILD/durable" serve --config examples/seed/wrangler.toml --listen 127.0.0.1:$PORT --persist-to "$WORK/state" \
    > "$WORK/out" 2> "$WORK/err" &
  SERVER=$!
  for _ in $(seq 100); do grep -q listening "$WORK/out" 2>/dev/null && return; sleep 0.05; done
  echo "server did not start"; cat "$WORK/err"; exit 1
}

echo "# $(date -u '+%F %H:%M') UTC, $(git rev-parse --short HEAD), $(nproc) cores shared by client and server, $(pgrep -c cc1plus || true) compilers running"
[ "$ATTACK" = all ] && ATTACKS="slow-readers fragments bodies" || ATTACKS=$ATTACK
status=0
header=1
for attack in $ATTACKS; do
  start  # a fresh server for each attack, so one attack's leftovers do not count in the next
  "$BUILD/attack_memory" --port $PORT --pid $SERVER --attack "$attack" --hold "${HOLD:-10}" --after "${AFTER:-10}" \
    > "$WORK/report" || status=1
  if [ $header = 1 ]; then grep '^|' "$WORK/report"; header=0; else grep '^|' "$WORK/report" | tail -n +3; fi
  curl -s -o /dev/null -w "%{http_code} %{time_total}" http://127.0.0.1:$PORT/health > "$WORK/health" || true
  kill -TERM $SERVER; wait $SERVER || true; SERVER=""
  echo "   ($attack: then GET /health answered $(cat "$WORK/health") s; server log lines: $(wc -l < "$WORK/err"))"
done
[ $status = 0 ] && echo "met: every peak under 300 MiB and back within 64 MiB of the start after" \
                || echo "NOT met: a peak at or over 300 MiB, or RSS not back within 64 MiB of the start"
exit $status
