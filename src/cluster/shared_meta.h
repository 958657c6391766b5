// The classes of a cluster (their names, namespace IDs and ID keys, and the migrations that
// made them) live in PostgreSQL, so that an object has the same ID on every node. They are the
// same database a single server keeps in meta.sqlite (config/migrations.h): a node takes the
// cluster's copy under an advisory lock, applies its config's migrations to it as a server
// would to its own, and puts it back. A node whose migrations are not the cluster's refuses
// to start, with MetaStore's error naming the first one that differs.
#pragma once

#include "config/config.h"
#include "config/migrations.h"

#include <filesystem>
#include <functional>
#include <string>

namespace durable::detail {

class PgBlocking;

// Runs `change` on the cluster's meta database, checked out into `workDir`/meta.sqlite, and
// stores the result back; one node at a time. `change` also gets the connection whose
// transaction holds the meta's lock, for reads that must agree with it. Throws what `change`
// throws (nothing is stored then) or Error(kUnavailable) when PostgreSQL cannot be reached.
void withSharedMeta(const std::string& url, int slots, const std::filesystem::path& workDir,
                    const std::function<void(config::MetaStore&, PgBlocking&)>& change);

}  // namespace durable::detail
