#include "storage/postgres_schema.h"

#include <durable/error.h>

#include <openssl/rand.h>

namespace durable::detail {

namespace {

// Ours alone among the sessions of the database: it serializes schema creation across nodes.
constexpr std::int64_t kSchemaLockKey = 0x6475726162;  // "durab"
// Raised whenever kSchema changes: a node that finds this version recorded runs no DDL.
constexpr std::int64_t kSchemaVersion = 4;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS durable_cluster(
  id int PRIMARY KEY CHECK (id = 1),
  slots int NOT NULL CHECK (slots > 0),
  secret text NOT NULL,
  created timestamptz NOT NULL DEFAULT clock_timestamp());
-- The cluster's classes: the meta.sqlite of a single server, shared (cluster/shared_meta.h).
CREATE TABLE IF NOT EXISTS durable_meta(
  id int PRIMARY KEY CHECK (id = 1),
  meta bytea NOT NULL);
CREATE TABLE IF NOT EXISTS durable_nodes(
  name text PRIMARY KEY,
  address text NOT NULL DEFAULT '',
  lease_until timestamptz NOT NULL,
  incarnation bigint NOT NULL DEFAULT 1);
-- A node that is stopping (SIGTERM) hands its slots off: no node targets it any more, while its
-- slots stay its own until it releases them.
ALTER TABLE durable_nodes ADD COLUMN IF NOT EXISTS leaving boolean NOT NULL DEFAULT false;
CREATE TABLE IF NOT EXISTS durable_slots(
  slot int PRIMARY KEY,
  owner text,
  epoch bigint NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS durable_kv(
  ns bigint NOT NULL, obj bytea NOT NULL, key bytea NOT NULL, value bytea NOT NULL, slot int NOT NULL,
  PRIMARY KEY (ns, obj, key));
CREATE TABLE IF NOT EXISTS durable_alarms(
  ns bigint NOT NULL, obj bytea NOT NULL, time bigint NOT NULL, slot int NOT NULL,
  PRIMARY KEY (ns, obj));
CREATE INDEX IF NOT EXISTS durable_alarms_by_slot ON durable_alarms(slot);
ALTER TABLE durable_alarms ADD COLUMN IF NOT EXISTS runs int NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS durable_names(
  ns bigint NOT NULL, obj bytea NOT NULL, name bytea NOT NULL, slot int NOT NULL,
  PRIMARY KEY (ns, obj));
-- The version of this schema a node last installed (kSchemaVersion).
CREATE TABLE IF NOT EXISTS durable_schema(version bigint NOT NULL);
CREATE TABLE IF NOT EXISTS durable_sqllog(
  ns bigint NOT NULL, obj bytea NOT NULL, lsn bigint NOT NULL, records bytea NOT NULL, at bigint NOT NULL,
  slot int NOT NULL, PRIMARY KEY (ns, obj, lsn));
-- The fence of every commit: the slots it writes must be held by `me` at these epochs. The
-- rows are locked FOR SHARE in slot order (a claim locks them FOR UPDATE in the same order),
-- so a claim waits for the commits that checked the old epoch, and no two wait on each other.
CREATE OR REPLACE FUNCTION durable_fence(want_slots int[], want_epochs bigint[], me text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE held int[];
BEGIN
  SELECT coalesce(array_agg(locked.slot), '{}') INTO held FROM (
    SELECT s.slot FROM durable_slots s JOIN unnest(want_slots, want_epochs) AS w(slot, epoch)
      ON s.slot = w.slot AND s.epoch = w.epoch AND s.owner = me
    ORDER BY s.slot FOR SHARE OF s) AS locked;
  IF cardinality(held) <> cardinality(want_slots) THEN
    -- The detail names the slots lost, so that the node forgets only those.
    RAISE EXCEPTION 'this node no longer holds every slot this commit writes to' USING ERRCODE = 'DU001',
      DETAIL = array_to_string(ARRAY(SELECT unnest(want_slots) EXCEPT SELECT unnest(held) ORDER BY 1), ',');
  END IF;
END $$;
)sql";

}  // namespace

ClusterRecord ensurePostgresSchema(PgBlocking& db, int slots) {
  unsigned char random[32];
  if (RAND_bytes(random, sizeof random) != 1) throw Error(ErrorCode::kUnavailable, "no randomness for the cluster secret");
  std::string secret;
  for (unsigned char b : random) {
    secret += "0123456789abcdef"[b >> 4];
    secret += "0123456789abcdef"[b & 15];
  }
  auto recorded = [&db] {
    auto r = db.run("SELECT slots::int8, secret FROM durable_cluster WHERE id = 1");
    return ClusterRecord{static_cast<int>(pgInt8(r.get(), 0, 0)), std::string(pgBytes(r.get(), 0, 1))};
  };
  // DDL locks its tables (ALTER TABLE even when there is nothing to add), and a node joining a
  // running cluster would queue every node's renewals and commits behind it: when the schema
  // is current, it is only read.
  if (pgBytes(db.run("SELECT to_regclass('durable_schema') IS NOT NULL").get(), 0, 0)[0] != 0) {
    auto v = db.run("SELECT coalesce(max(version), 0)::int8 FROM durable_schema");
    if (pgInt8(v.get(), 0, 0) >= kSchemaVersion) return recorded();
  }
  db.script("BEGIN");
  try {
    db.run("SELECT pg_advisory_xact_lock($1::int8)", PgParams().int8(kSchemaLockKey));
    db.script(kSchema);
    db.run("INSERT INTO durable_cluster(id, slots, secret) VALUES(1, $1::int8, $2::text) ON CONFLICT (id) DO NOTHING",
           PgParams().int8(slots).bytes(secret));
    const auto record = recorded();
    db.run("INSERT INTO durable_slots(slot) SELECT generate_series(0, $1::int8 - 1) ON CONFLICT (slot) DO NOTHING",
           PgParams().int8(record.slots));
    db.script("DELETE FROM durable_schema");
    db.run("INSERT INTO durable_schema(version) VALUES($1::int8)", PgParams().int8(kSchemaVersion));
    db.script("COMMIT");
    return record;
  } catch (...) {
    PQclear(PQexec(db.raw(), "ROLLBACK"));
    throw;
  }
}

}  // namespace durable::detail
