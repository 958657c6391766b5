#include "config/migrations.h"

#include <durable/error.h>

#include <sqlite3.h>

#include <cstring>
#include <system_error>

namespace durable::config {
namespace {

// Bumped whenever the schema below changes incompatibly, so an old binary refuses a newer
// directory instead of misreading it.
constexpr int kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS migrations (seq INTEGER PRIMARY KEY, tag TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS classes (name TEXT PRIMARY KEY, ns_id INTEGER NOT NULL UNIQUE, key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS purge (ns_id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
)sql";

// A migration's own mistake, caught and re-thrown with its source line and tag.
struct MigrationProblem : Error {
  explicit MigrationProblem(const std::string& reason) : Error(ErrorCode::kFailedPrecondition, reason) {}
};

// A prepared statement whose SQLite errors become Error(kUnavailable).
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) check(SQLITE_ERROR);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Stmt& bind(int i, const std::string& v) {
    check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Stmt& bind(int i, const detail::NamespaceKey& v) {
    check(sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  // True while there is a row.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) check(rc);
    return false;
  }
  void run() {
    while (step()) {
    }
  }
  std::int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return std::string(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  detail::NamespaceKey key(int col) const {
    detail::NamespaceKey k;
    const void* p = sqlite3_column_blob(stmt_, col);
    if (p == nullptr || static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)) != k.size()) {
      throw Error(ErrorCode::kInternal, "meta.sqlite: corrupt namespace key");
    }
    std::memcpy(k.data(), p, k.size());
    return k;
  }

 private:
  void check(int rc) const {
    if (rc != SQLITE_OK) throw Error(ErrorCode::kUnavailable, std::string("meta.sqlite: ") + sqlite3_errmsg(db_));
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

bool classExists(sqlite3* db, const std::string& name) {
  Stmt s(db, "SELECT 1 FROM classes WHERE name = ?");
  return s.bind(1, name).step();
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

MetaStore::MetaStore(const std::filesystem::path& persistDir) : path_(persistDir / "meta.sqlite") {
  std::error_code ec;
  std::filesystem::create_directories(persistDir, ec);
  if (ec) {
    throw Error(ErrorCode::kUnavailable, "cannot create persist directory " + persistDir.string() + ": " + ec.message());
  }
  if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(ErrorCode::kUnavailable, path_.string() + ": cannot open: " + msg);
  }
  try {
    // Another server process starting on the same directory waits rather than failing.
    sqlite3_busy_timeout(db_, 5000);
    exec("PRAGMA journal_mode = WAL");
    // A recorded migration must survive power loss, or a restart could mint a second key.
    exec("PRAGMA synchronous = FULL");
    exec("BEGIN IMMEDIATE");
    try {
      Stmt version(db_, "PRAGMA user_version");
      version.step();
      const std::int64_t v = version.int64(0);
      if (v > kSchemaVersion) {
        throw Error(ErrorCode::kUnavailable, path_.string() + ": written by a newer version (schema " +
                                                 std::to_string(v) + ", this binary understands " +
                                                 std::to_string(kSchemaVersion) + ")");
      }
      exec(kSchema);
      exec(("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str());
      exec("COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

MetaStore::~MetaStore() { sqlite3_close(db_); }

void MetaStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    throw Error(ErrorCode::kUnavailable, path_.string() + ": " + msg);
  }
}

std::vector<std::string> MetaStore::appliedTags() {
  std::lock_guard lock(mu_);
  std::vector<std::string> recorded;
  Stmt s(db_, "SELECT tag FROM migrations ORDER BY seq");
  while (s.step()) recorded.push_back(s.text(0));
  return recorded;
}

MigrationState MetaStore::apply(const Config& config) {
  std::lock_guard lock(mu_);
  std::vector<std::string> recorded;
  {
    Stmt s(db_, "SELECT tag FROM migrations ORDER BY seq");
    while (s.step()) recorded.push_back(s.text(0));
  }
  const auto& wanted = config.migrations;
  for (std::size_t i = 0; i < recorded.size(); ++i) {
    const std::string history = " (" + path_.string() + " has applied: " + joined(recorded) +
                                "; applied migrations cannot be changed or removed, only appended to)";
    if (i >= wanted.size()) {
      throw ConfigError(config.source + ": migration " + recorded[i] + " was applied but is missing from the config" +
                        history);
    }
    if (wanted[i].tag != recorded[i]) {
      throw ConfigError(config.source + ":" + std::to_string(wanted[i].line) + ": migration " + wanted[i].tag +
                        ": expected migration " + recorded[i] + " at this position" + history);
    }
  }
  for (std::size_t i = recorded.size(); i < wanted.size(); ++i) {
    const Migration& m = wanted[i];
    exec("BEGIN IMMEDIATE");
    try {
      applyOne(m);
      exec("COMMIT");
    } catch (const MigrationProblem& p) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw ConfigError(config.source + ":" + std::to_string(m.line) + ": migration " + m.tag + ": " + p.what());
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }
  return readState();
}

void MetaStore::applyOne(const Migration& m) {
  // nsIds are never reused, even after a purge, so no stale data can ever be read as a new
  // class's; the counter lives beside the classes so it commits with them.
  std::int64_t next = 1;
  {
    Stmt s(db_, "SELECT value FROM settings WHERE name = 'next_ns_id'");
    if (s.step()) next = s.int64(0);
  }
  auto create = [&](const std::string& name) {
    if (classExists(db_, name)) throw MigrationProblem("cannot create class " + name + ": it already exists");
    Stmt s(db_, "INSERT INTO classes (name, ns_id, key) VALUES (?, ?, ?)");
    s.bind(1, name).bind(2, next++).bind(3, detail::randomNamespaceKey()).run();
  };
  for (const auto& name : m.newClasses) create(name);
  for (const auto& name : m.newSqliteClasses) {
    if (classExists(db_, name)) {
      throw MigrationProblem("cannot create class " + name +
                             " as SQLite-backed (new_sqlite_classes): it already exists, and a class cannot change its "
                             "storage backend, as on Cloudflare; create a class of another name");
    }
    create(name);
  }
  for (const auto& r : m.renamedClasses) {
    if (!classExists(db_, r.from)) throw MigrationProblem("cannot rename class " + r.from + ": no such class");
    if (classExists(db_, r.to)) {
      throw MigrationProblem("cannot rename class " + r.from + " to " + r.to + ": " + r.to + " already exists");
    }
    Stmt s(db_, "UPDATE classes SET name = ? WHERE name = ?");
    s.bind(1, r.to).bind(2, r.from).run();
  }
  for (const auto& name : m.deletedClasses) {
    std::int64_t nsId = 0;
    {
      Stmt s(db_, "SELECT ns_id FROM classes WHERE name = ?");
      if (!s.bind(1, name).step()) throw MigrationProblem("cannot delete class " + name + ": no such class");
      nsId = s.int64(0);
    }
    Stmt(db_, "DELETE FROM classes WHERE name = ?").bind(1, name).run();
    Stmt(db_, "INSERT INTO purge (ns_id) VALUES (?)").bind(1, nsId).run();
  }
  Stmt(db_, "INSERT OR REPLACE INTO settings (name, value) VALUES ('next_ns_id', ?)").bind(1, next).run();
  Stmt(db_, "INSERT INTO migrations (tag) VALUES (?)").bind(1, m.tag).run();
}

MigrationState MetaStore::readState() {
  MigrationState state;
  {
    Stmt s(db_, "SELECT name, ns_id, key FROM classes ORDER BY ns_id");
    while (s.step()) state.classes.push_back(ClassRecord{s.text(0), s.int64(1), s.key(2)});
  }
  Stmt s(db_, "SELECT ns_id FROM purge ORDER BY ns_id");
  while (s.step()) state.namespacesToPurge.push_back(s.int64(0));
  return state;
}

void MetaStore::markPurged(std::int64_t nsId) {
  std::lock_guard lock(mu_);
  Stmt(db_, "DELETE FROM purge WHERE ns_id = ?").bind(1, nsId).run();
}

std::optional<int> MetaStore::partitions() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT value FROM settings WHERE name = 'partitions'");
  if (!s.step()) return std::nullopt;
  return static_cast<int>(s.int64(0));
}

void MetaStore::setPartitions(int n) {
  if (n <= 0) throw Error(ErrorCode::kInvalidArgument, "partitions must be positive, got " + std::to_string(n));
  std::lock_guard lock(mu_);
  Stmt(db_, "INSERT OR REPLACE INTO settings (name, value) VALUES ('partitions', ?)").bind(1, n).run();
}

void validateBindings(const Config& config, const MigrationState& state,
                      const std::set<std::string>& exportedClasses) {
  for (const Binding& b : config.bindings) {
    const std::string where =
        config.source + ":" + std::to_string(b.line) + ": binding " + b.name + ": class " + b.className;
    bool live = false;
    for (const auto& c : state.classes) live = live || c.name == b.className;
    if (!live) throw ConfigError(where + " is not declared by any migration");
    if (!exportedClasses.contains(b.className)) {
      throw ConfigError(where + " is not exported by this server (exported: " +
                        joined({exportedClasses.begin(), exportedClasses.end()}) + ")");
    }
  }
}

}  // namespace durable::config
