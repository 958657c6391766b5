// Cluster mode's tables in PostgreSQL (docs/cluster.md, "The schema"): created by the first
// node, only read by the others once the recorded version is current.
#pragma once

#include "storage/pg_connection.h"

#include <string>

namespace durable::detail {

// What a cluster records when it is created: its slot count, and the secret its nodes' calls
// to each other carry (a node reads it when it joins; whoever can read PostgreSQL's tables
// can write the data anyway).
struct ClusterRecord {
  int slots = 0;
  std::string secret;
};

// Creates what is missing of the schema (under an advisory lock, so nodes starting together
// do not race) and records the slot count and a new secret on first use. Returns what the
// cluster recorded: a later `slots` that differs changes nothing.
ClusterRecord ensurePostgresSchema(PgBlocking& db, int slots);

}  // namespace durable::detail
