// config/migrations.h: applying the config's class migrations to the persist directory.
//
// Which classes exist, their namespace IDs and their ID keys live in <dir>/meta.sqlite, so
// they outlive restarts and config edits: a class keeps its key (and so every object keeps
// its ID) across renames, and a deleted class's data is queued for purging.
#pragma once

#include "config/config.h"
#include "ids/id_codec.h"

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

struct sqlite3;

namespace durable::config {

struct ClassRecord {
  std::string name;
  std::int64_t nsId;
  detail::NamespaceKey key;
};

struct MigrationState {
  std::vector<ClassRecord> classes;            // live classes, by nsId
  std::vector<std::int64_t> namespacesToPurge;  // deleted classes whose data is not yet gone
};

// Thread-safe; every method runs under one lock.
class MetaStore {
 public:
  // Creates the directory and the database if missing. Throws Error(kUnavailable) if SQLite
  // cannot open or initialise it.
  explicit MetaStore(const std::filesystem::path& persistDir);
  ~MetaStore();
  MetaStore(const MetaStore&) = delete;
  MetaStore& operator=(const MetaStore&) = delete;

  // Applies, in order, the config's migrations not yet recorded, each in its own
  // transaction. The recorded tags must be a prefix of the config's, else ConfigError naming
  // the first mismatch. A failing migration changes nothing and throws ConfigError
  // "<source>:<line>: migration <tag>: <reason>". Returns the state after all of them.
  MigrationState apply(const Config& config);

  // The tags of the migrations applied so far, in order.
  std::vector<std::string> appliedTags();

  // The storage layer calls this once a deleted class's data is gone.
  void markPurged(std::int64_t nsId);

  // How many storage partitions the data directory uses; nullopt until first set.
  std::optional<int> partitions();
  void setPartitions(int n);

 private:
  MigrationState readState();
  void applyOne(const Migration& m);
  void exec(const char* sql);

  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
  std::mutex mu_;
};

// Every binding must name a class that is live after migrations and exported by the binary.
// Throws ConfigError "<source>:<line>: binding <NAME>: class <C> is not declared by any
// migration" or "... is not exported by this server (exported: A, B)".
void validateBindings(const Config& config, const MigrationState& state,
                      const std::set<std::string>& exportedClasses);

}  // namespace durable::config
