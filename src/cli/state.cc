#include "cli/state.h"
#include "cli/options.h"

#include "base/log.h"
#include "cluster/membership.h"
#include "cluster/shared_meta.h"
#include "config/migrations.h"
#include "storage/pg_connection.h"
#include "storage/postgres_engine.h"

#include <algorithm>
#include <cstdlib>
#include <unistd.h>

#include <set>
#include <vector>

namespace durable::cli {

namespace {

// The class names live after `migrations` (the config holds the whole history; recorded
// tags must be a prefix of it). Names only: keys and namespace IDs come from meta.sqlite.
config::MigrationState liveClassesAfter(const std::vector<config::Migration>& migrations) {
  std::set<std::string> live;
  for (const auto& m : migrations) {
    live.insert(m.newClasses.begin(), m.newClasses.end());
    live.insert(m.newSqliteClasses.begin(), m.newSqliteClasses.end());
    for (const auto& r : m.renamedClasses) {
      if (live.erase(r.from)) live.insert(r.to);
    }
    for (const auto& d : m.deletedClasses) live.erase(d);
  }
  config::MigrationState state;
  for (const auto& name : live) state.classes.push_back({name, 0, {}});
  return state;
}

// The classes that new_sqlite_classes created, under their names after every migration.
std::set<std::string> sqliteBackedClasses(const std::vector<config::Migration>& migrations) {
  std::set<std::string> sqlite;
  for (const auto& m : migrations) {
    sqlite.insert(m.newSqliteClasses.begin(), m.newSqliteClasses.end());
    for (const auto& r : m.renamedClasses) {
      if (sqlite.erase(r.from)) sqlite.insert(r.to);
    }
    for (const auto& d : m.deletedClasses) sqlite.erase(d);
  }
  return sqlite;
}

// The config's bindings over the classes `state` has, into `out`.
std::vector<detail::NamespaceImpl*> bindClasses(const config::Config& cfg, const config::MigrationState& state,
                                                const Factories& classes, OpenState& out) {
  std::vector<detail::NamespaceImpl*> bindings;
  const std::set<std::string> sqliteClasses = sqliteBackedClasses(cfg.migrations);
  for (const auto& b : cfg.bindings) {
    for (const auto& c : state.classes) {
      if (c.name != b.className) continue;
      auto ns = std::make_unique<detail::NamespaceImpl>();
      ns->binding = b.name;
      ns->className = c.name;
      ns->nsId = c.nsId;
      ns->key = c.key;
      ns->sqliteBacked = sqliteClasses.count(c.name) > 0;
      ns->factory = classes.at(c.name);
      bindings.push_back(ns.get());
      out.namespaces.push_back(std::move(ns));
    }
  }
  return bindings;
}

// A node of a cluster (docs/cluster.md): the classes come from the cluster's shared meta, the
// rows live in PostgreSQL, and the node holds the slots it claims. The directory keeps what is
// this node's alone (SQLite-backed objects' working files, the meta's working copy).
OpenState openClusterNode(const config::Config& cfg, const std::filesystem::path& dir, const Factories& classes,
                          OpenState out) {
  std::set<std::string> exported;
  for (const auto& [name, _] : classes) exported.insert(name);
  const auto& cs = cfg.cluster;
  config::MigrationState state;
  detail::withSharedMeta(cs.url, cs.slots, dir / "cluster", [&](config::MetaStore& meta, detail::PgBlocking& db) {
    const auto applied = meta.appliedTags();
    // Nodes that serve now (this name aside): a migration must not change the classes under them.
    std::vector<std::string> live;
    const bool extends = !applied.empty() && cfg.migrations.size() > applied.size() &&
                         std::equal(applied.begin(), applied.end(), cfg.migrations.begin(),
                                    [](const std::string& tag, const auto& m) { return tag == m.tag; });
    if (extends) {
      auto r = db.run(
          "SELECT name FROM durable_nodes WHERE lease_until > clock_timestamp() AND name <> $1::text ORDER BY name",
          detail::PgParams().bytes(cs.node));
      for (int i = 0; i < PQntuples(r.get()); ++i) live.emplace_back(detail::pgBytes(r.get(), i, 0));
    }
    if (!live.empty()) {
      std::string names;
      for (const auto& n : live) names += (names.empty() ? "" : ", ") + n;
      throw config::ConfigError(cfg.source + ":" + std::to_string(cfg.migrations[applied.size()].line) + ": migration " +
                                cfg.migrations[applied.size()].tag + " is not applied in the cluster, and nodes " + names +
                                " serve its classes as they are (through migration " + applied.back() +
                                "): start this node with the cluster's migrations, or stop every node and start "
                                "them all with this config (the first one applies it)");
    }
    state = meta.apply(cfg);
    config::validateBindings(cfg, state, exported);
  });

  detail::ClusterOptions co;
  co.url = cs.url;
  co.node = cs.node;
  co.address = cs.advertise;
  co.lease = std::chrono::milliseconds(cs.leaseMs);
  co.slots = cs.slots;
  co.secret = cs.secret;
  if (const char* env = std::getenv("DURABLE_CLUSTER_SECRET"); env && *env) {
    co.secret = env;
    if (co.secret.size() < 16) throw cli::UsageError("DURABLE_CLUSTER_SECRET must be at least 16 characters");
  }
  out.cluster = std::make_unique<detail::ClusterMembership>(co);

  auto bindings = bindClasses(cfg, state, classes, out);
  std::map<std::string, std::string, std::less<>> vars(cfg.vars.begin(), cfg.vars.end());
  // Partitions are only this node's way of spreading slots over its shards: nothing on disk
  // depends on their number.
  const int partitions = static_cast<int>(cfg.settings.shards ? cfg.settings.shards : detail::defaultShardCount());
  detail::RuntimeOptions runtimeOptions{dir, cfg.settings};
  runtimeOptions.slots = out.cluster->slots();
  const bool relaxed = cfg.settings.durability == config::Durability::kRelaxed;
  runtimeOptions.engine = [url = cs.url, node = cs.node, slots = out.cluster->slots(), partitions, relaxed](
                              int p, boost::asio::io_context& shard) -> std::unique_ptr<detail::StorageEngine> {
    return std::make_unique<detail::PostgresEngine>(p, partitions, url, node, slots, shard, relaxed);
  };
  out.runtime = std::make_unique<detail::Runtime>(runtimeOptions, bindings, std::move(vars), state.namespacesToPurge,
                                                  partitions);
  if (!state.namespacesToPurge.empty()) {
    detail::withSharedMeta(cs.url, cs.slots, dir / "cluster", [&](config::MetaStore& meta, detail::PgBlocking&) {
      for (auto ns : state.namespacesToPurge) meta.markPurged(ns);
    });
  }
  // Not started here: the server first learns the port it listens on (ClusterMembership::advertise).
  return out;
}

}  // namespace

OpenState openState(const config::Config& cfg, const std::string& configPath, const std::filesystem::path& dir,
                    const Factories& classes, bool forTool) {
  std::set<std::string> exported;
  for (const auto& [name, _] : classes) exported.insert(name);
  // Check the bindings against the classes the config's migrations leave live before
  // applying them: a config refused here must not leave its migrations recorded in
  // meta.sqlite (they would then conflict with the corrected config's).
  config::validateBindings(cfg, liveClassesAfter(cfg.migrations), exported);

  OpenState out;
  // Before anything in the directory is opened, and held until the runtime is gone.
  out.lock = std::make_unique<detail::StateDirLock>(dir);
  detail::logInfo("config ", configPath, (cfg.name.empty() ? "" : " (name " + cfg.name + ")"), ", state in ",
                  dir.string(), ", pid ", ::getpid());
  const bool cluster = cfg.cluster.enabled() && !forTool;
  if (cluster) return openClusterNode(cfg, dir, classes, std::move(out));
  config::MetaStore meta(dir);
  if (forTool) {
    const auto applied = meta.appliedTags();
    if (cfg.migrations.size() > applied.size()) {
      std::string ahead;
      for (std::size_t i = applied.size(); i < cfg.migrations.size(); ++i) {
        ahead += (ahead.empty() ? "" : ", ") + cfg.migrations[i].tag;
      }
      throw config::ConfigError(configPath + ": migrations " + ahead + " are not applied to " + dir.string() +
                                ": a tool does not change a state's classes; serve it with this config first, or "
                                "pass the config its server runs with");
    }
  }
  auto state = meta.apply(cfg);
  if (forTool) state.namespacesToPurge.clear();
  config::validateBindings(cfg, state, exported);

  int partitions = meta.partitions().value_or(0);
  if (partitions <= 0) {
    // Fixed for the life of the state directory: a later run with more shards has no
    // partition to give them (Runtime caps shards at partitions).
    unsigned n = cfg.settings.shards ? cfg.settings.shards : detail::defaultShardCount();
    partitions = static_cast<int>(n);
    meta.setPartitions(partitions);
  }

  auto bindings = bindClasses(cfg, state, classes, out);
  std::map<std::string, std::string, std::less<>> vars(cfg.vars.begin(), cfg.vars.end());

  detail::RuntimeOptions runtimeOptions{dir, cfg.settings};
  runtimeOptions.pauseAlarms = forTool;
  out.runtime = std::make_unique<detail::Runtime>(runtimeOptions, bindings, std::move(vars), state.namespacesToPurge,
                                                  partitions);
  for (auto ns : state.namespacesToPurge) meta.markPurged(ns);
  return out;
}

}  // namespace durable::cli
