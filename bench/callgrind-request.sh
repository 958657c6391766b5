#!/usr/bin/env bash
# Instructions per request of a durable binary, exactly (callgrind), GET /counters/hot on one
# keep-alive connection: (Ir after 2,500 requests - Ir after 500) / 2,000, so start-up cancels.
#
#   bash bench/callgrind-request.sh OLD/build/durable build/durable
#
# Side by side it says what a change costs per request without the VM's drift (bench/ab.sh
# measures rates, which drift by 10-40 %).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n 2,8p "$0"; exit 2; }
PORT=${PORT:-18930}
total() {
  local bin=$1 n=$2 work
  work=$(mktemp -d)
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" serve --config examples/seed/wrangler.toml \
    --persist-to "$work/s" --listen 127.0.0.1:$PORT --shards 1 > "$work/log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "localhost:$PORT/counters/hot" && break; sleep 0.3; done
  python3 - "$PORT" "$n" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    c.request("GET", "/counters/hot"); c.getresponse().read()
PY
  kill -TERM $pid; wait $pid || true
  callgrind_annotate "$work/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
  rm -rf "$work"
}
for bin in "$@"; do
  small=$(total "$bin" 500)
  big=$(total "$bin" 2500)
  echo "$bin: $(( (big - small) / 2000 )) instructions per request"
done
