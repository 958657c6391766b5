#!/usr/bin/env bash
# `make cluster` / `make cluster-stop`: a local PostgreSQL (data under .durable/pg) and three
# durable nodes serving the demo app on 127.0.0.1:8787-8789, each with its state directory and
# log under .durable/cluster/. For trying cluster mode on one machine, not for production
# (docs/cluster.md says what production needs).
set -euo pipefail

BUILD=${BUILD:-build}
CONFIG=${CONFIG:-examples/seed/wrangler.toml}
PGPORT=${PGPORT:-55432}
NODES=${NODES:-3}
BASE_PORT=${BASE_PORT:-8787}
PGBIN=${DURABLE_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
root=$(pwd)/.durable
pgdata=$root/pg
dir=$root/cluster
url="host=127.0.0.1 port=$PGPORT user=durable dbname=postgres"

# PostgreSQL refuses to run as root: then it runs as the account the Debian package made.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  mkdir -p "$root" "$dir"
  if [ ! -s "$pgdata/PG_VERSION" ]; then
    mkdir -p "$pgdata"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$pgdata"
    as_pg "$PGBIN/initdb" -D "$pgdata" -U durable -A trust -E UTF8 --locale=C >"$dir/initdb.log"
  fi
  if ! as_pg "$PGBIN/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" -D "$pgdata" -w -l "$pgdata/server.log" \
      -o "-p $PGPORT -k $pgdata -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  fi
  echo "postgres: $url"
  for i in $(seq 1 "$NODES"); do
    port=$((BASE_PORT + i - 1))
    if [ -f "$dir/n$i.pid" ] && kill -0 "$(cat "$dir/n$i.pid")" 2>/dev/null; then
      echo "node n$i: already running (pid $(cat "$dir/n$i.pid"))"
      continue
    fi
    "./$BUILD/durable" serve --config "$CONFIG" --listen "127.0.0.1:$port" --persist-to "$dir/n$i" \
      --cluster "$url" --node "n$i" >"$dir/n$i.log" 2>&1 &
    echo $! >"$dir/n$i.pid"
  done
  for i in $(seq 1 "$NODES"); do
    for _ in $(seq 1 100); do
      grep -q "listening on" "$dir/n$i.log" && break
      if ! kill -0 "$(cat "$dir/n$i.pid")" 2>/dev/null; then
        echo "node n$i did not start:" >&2
        cat "$dir/n$i.log" >&2
        exit 1
      fi
      sleep 0.1
    done
    echo "node n$i: http://127.0.0.1:$((BASE_PORT + i - 1)) (log $dir/n$i.log)"
  done
}

stop() {
  for pidfile in "$dir"/n*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
  done
  if [ -s "$pgdata/PG_VERSION" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true
  fi
  echo "cluster stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: scripts/cluster.sh start|stop" >&2; exit 2 ;;
esac
