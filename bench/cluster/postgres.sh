# Sourced by the cluster benchmarks: a fresh PostgreSQL 15 in $WORK/pg on 127.0.0.1:$PGPORT,
# fsync and synchronous_commit on, run as the Debian `postgres` account under root (it refuses
# root). Defines as_pg, psql_ [SQL [DB]] and stop_postgres; stops the server on exit.
PGBIN=${DURABLE_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psql_() { psql -h 127.0.0.1 -p "$PGPORT" -U durable -d "${2:-postgres}" -Atqc "$1"; }
stop_postgres() { as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true; }
start_postgres() {
  chmod 755 "$WORK"
  mkdir "$WORK/pg"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/pg"
  as_pg "$PGBIN/initdb" -D "$WORK/pg" -U durable -A trust -E UTF8 --locale=C >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -w -l "$WORK/pg/server.log" -o "-p $PGPORT -k $WORK/pg \
    -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200" start >/dev/null
}
