#include "storage/object_sql.h"

#include "base/file_sync.h"

#include <durable/error.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <system_error>

namespace durable::detail {

namespace {

[[noreturn]] void fail(sqlite3* db, const std::string& what) {
  throw Error(ErrorCode::kUnavailable, what + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
}

std::string targetRecord(char tag, std::uint64_t target) {
  std::string out(1, tag);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(target >> (8 * i)));
  return out;
}
std::optional<std::uint64_t> targetOf(char tag, std::string_view records) {
  if (records.size() != 9 || records[0] != tag) return std::nullopt;
  std::uint64_t target = 0;
  for (int i = 0; i < 8; ++i) target |= static_cast<std::uint64_t>(static_cast<unsigned char>(records[1 + i])) << (8 * i);
  return target;
}

}  // namespace

ObjectSqlDb::ObjectSqlDb(const std::filesystem::path& file) : ObjectSqlDb(file, Limits{}, History{}) {}

ObjectSqlDb::ObjectSqlDb(const std::filesystem::path& file, const Limits& limits)
    : ObjectSqlDb(file, limits, History{}) {}

ObjectSqlDb::ObjectSqlDb(const std::filesystem::path& file, const Limits& limits, const History& history)
    : history_(history) {
  const bool inMemory = file == ":memory:";
  std::error_code ec;
  if (!inMemory) std::filesystem::create_directories(file.parent_path(), ec);
  if (ec) throw Error(ErrorCode::kUnavailable, "cannot create " + file.parent_path().string() + ": " + ec.message());
  if (sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    const std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(ErrorCode::kUnavailable, "cannot open " + file.string() + ": " + why);
  }
  try {
    // Durability is the log's: the file is synced only when a checkpoint copies the WAL back,
    // which keeps it whole (never corrupt) through a power cut; what it lost, the log has.
    // Unsynced while a new file turns to WAL and gets its tables (a file that a crash leaves
    // unreadable then held nothing yet): creating one costs no fsync. NORMAL from there on.
    exec("PRAGMA synchronous=OFF");
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA foreign_keys=ON");
    sqlite3_db_config(db_, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
    sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
    sqlite3_limit(db_, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_limit(db_, SQLITE_LIMIT_LENGTH, limits.maxValueBytes);
    authorsLengthLimit_ = limits.maxValueBytes;
    sqlite3_limit(db_, SQLITE_LIMIT_SQL_LENGTH, limits.maxStatementBytes);
    sqlite3_limit(db_, SQLITE_LIMIT_VARIABLE_NUMBER, limits.maxBoundParameters);
    sqlite3_limit(db_, SQLITE_LIMIT_COLUMN, limits.maxColumns);
    sqlite3_limit(db_, SQLITE_LIMIT_TRIGGER_DEPTH, 10);
    {
      sqlite3_stmt* pageSize = nullptr;
      std::int64_t bytes = 4096;
      if (sqlite3_prepare_v2(db_, "PRAGMA page_size", -1, &pageSize, nullptr) == SQLITE_OK &&
          sqlite3_step(pageSize) == SQLITE_ROW) {
        bytes = sqlite3_column_int64(pageSize, 0);
      }
      sqlite3_finalize(pageSize);
      const std::uint64_t pages = std::max<std::uint64_t>(limits.maxDatabaseBytes / static_cast<std::uint64_t>(bytes), 2);
      exec(("PRAGMA max_page_count=" + std::to_string(pages)).c_str());
    }
    exec("BEGIN;"
         "CREATE TABLE IF NOT EXISTS _cf_meta(k INTEGER PRIMARY KEY, lsn INTEGER NOT NULL, at INTEGER NOT NULL DEFAULT 0);"
         "INSERT OR IGNORE INTO _cf_meta(k, lsn) VALUES (1, 0);"
         "CREATE TABLE IF NOT EXISTS _cf_KV(key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;"
         "COMMIT");
    exec("PRAGMA synchronous=NORMAL");
    // A file made on 2026-12-06 has no time of its last entry, nor an armed restore.
    if (sqlite3_exec(db_, "SELECT at FROM _cf_meta LIMIT 0", nullptr, nullptr, nullptr) != SQLITE_OK) {
      exec("ALTER TABLE _cf_meta ADD COLUMN at INTEGER NOT NULL DEFAULT 0");
    }
    if (sqlite3_exec(db_, "SELECT pending FROM _cf_meta LIMIT 0", nullptr, nullptr, nullptr) != SQLITE_OK) {
      exec("ALTER TABLE _cf_meta ADD COLUMN pending INTEGER");
    }
    sqlite3_stmt* read = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT lsn, at FROM _cf_meta WHERE k = 1", -1, &read, nullptr) != SQLITE_OK) {
      fail(db_, "open " + file.string());
    }
    if (sqlite3_step(read) == SQLITE_ROW) {
      appliedLsn_ = static_cast<std::uint64_t>(sqlite3_column_int64(read, 0));
      lastAt_ = sqlite3_column_int64(read, 1);
    }
    sqlite3_finalize(read);
    committedLsn_ = durableLsn_ = appliedLsn_;
    readPendingRestore();
    if (sqlite3_prepare_v3(db_, "UPDATE _cf_meta SET lsn = ?1, at = ?2 WHERE k = 1", -1, SQLITE_PREPARE_PERSISTENT,
                           &setLsn_, nullptr) != SQLITE_OK) {
      fail(db_, "open " + file.string());
    }
    auto prepare = [&](const char* sql, sqlite3_stmt** out) {
      if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, out, nullptr) != SQLITE_OK) {
        fail(db_, "open " + file.string());
      }
    };
    prepare("SELECT value FROM _cf_KV WHERE key = ?1", &kvGet_);
    prepare("INSERT OR REPLACE INTO _cf_KV(key, value) VALUES (?1, ?2)", &kvPut_);
    prepare("DELETE FROM _cf_KV WHERE key = ?1", &kvDelete_);
  } catch (...) {
    sqlite3_finalize(setLsn_);
    sqlite3_finalize(kvGet_);
    sqlite3_finalize(kvPut_);
    sqlite3_finalize(kvDelete_);
    sqlite3_close(db_);
    throw;
  }
  recorder_.emplace(db_);
  sqlite3_set_authorizer(db_, &ObjectSqlDb::authorize, this);
  if (!inMemory) {
    snapshotDir_ = file.parent_path() / (file.stem().string() + ".snapshots");
    std::error_code ignored;
    for (const auto& f : std::filesystem::directory_iterator(snapshotDir_, ignored)) {
      unsigned long long lsn = 0, at = 0;
      char tail = 0;
      const std::string name = f.path().filename().string();
      if (name.size() == 40 && std::sscanf(name.c_str(), "%16llx-%16llx.sqlit%c", &lsn, &at, &tail) == 3 && tail == 'e') {
        snapshots_.push_back({lsn, static_cast<std::int64_t>(at), f.path()});
      }
    }
    std::sort(snapshots_.begin(), snapshots_.end(), [](const Snapshot& a, const Snapshot& b) { return a.lsn < b.lsn; });
  }
}

void ObjectSqlDb::markStale() {
  if (inTransaction_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  inTransaction_ = false;
  savepoints_.clear();
  stale_ = true;
}

void ObjectSqlDb::noticeLostTransaction() {
  if (inTransaction_ && sqlite3_get_autocommit(db_)) {
    inTransaction_ = false;
    savepoints_.clear();
    stale_ = true;
  }
}

void ObjectSqlDb::runInternal(sqlite3_stmt* stmt, const char* what, bool recorded) {
  useAuthorsLimit(false);
  ensureTransaction();
  const int rc = recorded ? recorder_->run(stmt) : sqlite3_step(stmt);
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  noticeLostTransaction();
  if (rc != SQLITE_DONE) {
    throw Error((rc & 0xff) == SQLITE_FULL ? ErrorCode::kResourceExhausted : ErrorCode::kUnavailable,
                std::string(what) + ": " + errorMessage(rc));
  }
}

std::optional<std::string> ObjectSqlDb::kvGet(std::string_view key) {
  sqlite3_bind_text(kvGet_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
  std::optional<std::string> out;
  const int rc = sqlite3_step(kvGet_);
  if (rc == SQLITE_ROW) {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(kvGet_, 0));
    out.emplace(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(kvGet_, 0)));
  }
  sqlite3_reset(kvGet_);
  sqlite3_clear_bindings(kvGet_);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail(db_, "object database: reading a key");
  return out;
}

void ObjectSqlDb::kvPut(std::string_view key, std::string_view encoded) {
  sqlite3_bind_text(kvPut_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
  sqlite3_bind_blob(kvPut_, 2, encoded.data(), static_cast<int>(encoded.size()), SQLITE_STATIC);
  runInternal(kvPut_, "storage: writing a key", false);
  recorder_->recordKvPut(key, encoded);
}

void ObjectSqlDb::kvDelete(std::string_view key) {
  sqlite3_bind_text(kvDelete_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
  runInternal(kvDelete_, "storage: deleting a key", false);
  recorder_->recordKvDelete(key);
}

void ObjectSqlDb::kvDeleteAll() {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, "DELETE FROM _cf_KV", -1, &stmt, nullptr) != SQLITE_OK) fail(db_, "storage: deleteAll");
  try {
    runInternal(stmt, "storage: deleteAll");
  } catch (...) {
    sqlite3_finalize(stmt);
    throw;
  }
  sqlite3_finalize(stmt);
}

void ObjectSqlDb::kvWriteAll(bool deleteAllFirst, std::span<const KvWrite> writes) {
  if (!deleteAllFirst && writes.size() == 1) {
    if (writes[0].value) {
      kvPut(writes[0].key, *writes[0].value);
    } else {
      kvDelete(writes[0].key);
    }
    return;
  }
  const std::size_t mark = recorder_->size();
  beginSavepoint();
  try {
    if (deleteAllFirst) kvDeleteAll();
    for (const auto& [key, value] : writes) {
      if (value) {
        kvPut(key, *value);
      } else {
        kvDelete(key);
      }
    }
  } catch (...) {
    // A stale() file lost its savepoints with its transaction; its records still go.
    if (!savepoints_.empty()) {
      endSavepoint(false);
    } else {
      recorder_->discard(mark);
    }
    throw;
  }
  endSavepoint(true);
}

std::vector<std::pair<std::string, std::string>> ObjectSqlDb::kvScan(std::string_view lower, bool lowerInclusive,
                                                                     const std::optional<std::string>& upper,
                                                                     bool reverse, std::size_t limit) {
  sqlite3_stmt*& stmt = kvScan_[(lowerInclusive ? 1 : 0) | (upper ? 2 : 0) | (reverse ? 4 : 0)];
  if (!stmt) {
    std::string sql = "SELECT key, value FROM _cf_KV WHERE key ";
    sql += lowerInclusive ? ">= ?1" : "> ?1";
    if (upper) sql += " AND key < ?2";
    sql += reverse ? " ORDER BY key DESC" : " ORDER BY key ASC";
    sql += " LIMIT ?3";
    if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
      fail(db_, "storage: listing keys");
    }
  }
  sqlite3_bind_text(stmt, 1, lower.data(), static_cast<int>(lower.size()), SQLITE_STATIC);
  if (upper) sqlite3_bind_text(stmt, 2, upper->data(), static_cast<int>(upper->size()), SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, limit > static_cast<std::size_t>(INT64_MAX) ? -1 : static_cast<sqlite3_int64>(limit));
  std::vector<std::pair<std::string, std::string>> rows;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const auto* k = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    const auto* v = static_cast<const char*>(sqlite3_column_blob(stmt, 1));
    rows.emplace_back(std::string(k ? k : "", static_cast<std::size_t>(sqlite3_column_bytes(stmt, 0))),
                      std::string(v ? v : "", static_cast<std::size_t>(sqlite3_column_bytes(stmt, 1))));
  }
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  if (rc != SQLITE_DONE) fail(db_, "storage: listing keys");
  return rows;
}

void ObjectSqlDb::wipe() {
  ensureTransaction();
  // Dropping a parent table before its children would fail their foreign keys until the end.
  exec("PRAGMA defer_foreign_keys=ON");
  std::vector<std::pair<std::string, std::string>> objects;  // type, name
  {
    sqlite3_stmt* list = nullptr;
    if (sqlite3_prepare_v2(db_,
                           "SELECT type, name FROM sqlite_schema WHERE type IN ('view', 'table') AND name NOT LIKE "
                           "'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' "
                           "ORDER BY type = 'table', sql NOT LIKE 'CREATE VIRTUAL%'",
                           -1, &list, nullptr) != SQLITE_OK) {
      fail(db_, "object database: listing its tables");
    }
    while (sqlite3_step(list) == SQLITE_ROW) {
      objects.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(list, 0)),
                           reinterpret_cast<const char*>(sqlite3_column_text(list, 1)));
    }
    sqlite3_finalize(list);
  }
  for (const auto& [type, name] : objects) {
    std::string quoted = "\"";
    for (char c : name) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    quoted += '"';
    // IF EXISTS: a virtual table's shadow tables went with it.
    const std::string drop = "DROP " + std::string(type == "view" ? "VIEW" : "TABLE") + " IF EXISTS " + quoted;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, drop.c_str(), -1, &stmt, nullptr) != SQLITE_OK) fail(db_, "object database: " + drop);
    const int rc = recorder_->run(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) fail(db_, "object database: " + drop);
  }
}

std::uint64_t ObjectSqlDb::databaseSize() {
  sqlite3_stmt* s = nullptr;
  std::uint64_t size = 0;
  if (sqlite3_prepare_v2(db_,
                         "SELECT (SELECT page_count FROM pragma_page_count) - (SELECT freelist_count FROM "
                         "pragma_freelist_count), (SELECT page_size FROM pragma_page_size)",
                         -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    size = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0)) * static_cast<std::uint64_t>(sqlite3_column_int64(s, 1));
  }
  sqlite3_finalize(s);
  return size;
}

ObjectSqlDb::~ObjectSqlDb() {
  // What is durable in the log goes into the file; what is not is not known durable: the log
  // has it, or nobody was told of it.
  if (committable()) {
    try {
      writeLsn(appliedLsn_);
      exec("COMMIT");
      inTransaction_ = false;
    } catch (const std::exception&) {
    }
  }
  if (inTransaction_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  for (auto& [text, s] : userStatements_) sqlite3_finalize(s);
  recorder_.reset();
  sqlite3_finalize(setLsn_);
  sqlite3_finalize(kvGet_);
  sqlite3_finalize(kvPut_);
  sqlite3_finalize(kvDelete_);
  for (auto* s : kvScan_) sqlite3_finalize(s);
  sqlite3_close(db_);
}

void ObjectSqlDb::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err ? err : "unknown error";
    sqlite3_free(err);
    throw Error(ErrorCode::kUnavailable, std::string("object database: ") + why + " in: " + sql);
  }
}

void ObjectSqlDb::ensureTransaction() {
  if (inTransaction_) return;
  exec("BEGIN");
  inTransaction_ = true;
}

void ObjectSqlDb::writeLsn(std::uint64_t lsn) {
  sqlite3_bind_int64(setLsn_, 1, static_cast<sqlite3_int64>(lsn));
  sqlite3_bind_int64(setLsn_, 2, lastAt_);
  const int rc = sqlite3_step(setLsn_);
  sqlite3_reset(setLsn_);
  if (rc != SQLITE_DONE) fail(db_, "object database: recording its LSN");
}

void ObjectSqlDb::replay(const Entry& entry) {
  if (inTransaction_) throw Error(ErrorCode::kInternal, "object database: replay with a transaction open");
  if (entry.lsn != appliedLsn_ + 1) {
    throw Error(ErrorCode::kInternal, "object database: log entry " + std::to_string(entry.lsn) + " after " +
                                          std::to_string(appliedLsn_));
  }
  // Foreign-key actions are in the records; the pragma is a no-op inside a transaction.
  exec("PRAGMA foreign_keys=OFF");
  // The records write FTS5's shadow tables directly, which defensive mode forbids the author.
  sqlite3_db_config(db_, SQLITE_DBCONFIG_DEFENSIVE, 0, nullptr);
  auto restore = [this] {
    sqlite3_db_config(db_, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
    exec("PRAGMA foreign_keys=ON");
  };
  useAuthorsLimit(false);
  exec("BEGIN");
  try {
    if (restoreTarget(entry.records)) {
      throw Error(ErrorCode::kInternal, "object database: a restore entry is applied by replaceWith(), not replayed");
    }
    if (auto armed = targetOf('P', entry.records)) {
      writePendingRestore(armed);
    } else {
      replaySqlChanges(db_, entry.records);
    }
    lastAt_ = std::max(lastAt_, entry.at);
    writeLsn(entry.lsn);
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    restore();
    throw;
  }
  restore();
  appliedLsn_ = committedLsn_ = entry.lsn;
  durableLsn_ = std::max(durableLsn_, entry.lsn);
}

void ObjectSqlDb::beginSavepoint() {
  ensureTransaction();
  exec("SAVEPOINT _cf_txn");
  savepoints_.push_back(recorder_->size());
}

void ObjectSqlDb::endSavepoint(bool keep) {
  // None open: a lost batch rolled everything back meanwhile.
  if (savepoints_.empty()) return;
  const std::size_t mark = savepoints_.back();
  savepoints_.pop_back();
  if (!keep) {
    exec("ROLLBACK TO _cf_txn");
    recorder_->discard(mark);
  }
  exec("RELEASE _cf_txn");
}

void ObjectSqlDb::cut(std::int64_t now) {
  const std::size_t ready = savepoints_.empty() ? recorder_->size() : savepoints_.front();
  if (ready == 0) return;
  std::string records = recorder_->takePrefix(ready);
  for (auto& mark : savepoints_) mark -= ready;
  appendEntry(std::move(records), now);
}

std::vector<ObjectSqlDb::Entry> ObjectSqlDb::emit(std::int64_t now) {
  cut(now);
  if (ready_.empty()) {
    // Statements that wrote nothing opened the transaction: it holds nothing to wait for.
    durable(durableLsn_);
    return {};
  }
  return std::exchange(ready_, {});
}

bool ObjectSqlDb::committable() const {
  return !stale_ && inTransaction_ && savepoints_.empty() && recorder_->size() == 0 && ready_.empty() &&
         durableLsn_ >= appliedLsn_;
}

void ObjectSqlDb::durable(std::uint64_t lsn, std::int64_t now) {
  durableLsn_ = std::max(durableLsn_, lsn);
  // A commit of the file costs a WAL append and its locks whatever it holds: one per
  // commitEvery entries, not one per turn (bench/sql/run.sh). The log has the rest meanwhile.
  // Snapshots are taken at commits: at least one per snapshotEvery entries.
  if (!committable() || (appliedLsn_ - committedLsn_ < commitInterval() && appliedLsn_ != committedLsn_)) return;
  commit(now);
}

void ObjectSqlDb::commitIfDurable(std::int64_t now) {
  if (committable()) commit(now);
}

void ObjectSqlDb::commit(std::int64_t now) {
  // The LSN is written with what it counts, in the transaction that commits them.
  writeLsn(appliedLsn_);
  exec("COMMIT");
  inTransaction_ = false;
  committedLsn_ = appliedLsn_;
  if (!snapshotDir_.empty() &&
      committedLsn_ >= (snapshots_.empty() ? 0 : snapshots_.back().lsn) + history_.snapshotEvery) {
    takeSnapshot(now);
  }
}

void ObjectSqlDb::takeSnapshot(std::int64_t now) {
  std::error_code ec;
  std::filesystem::create_directories(snapshotDir_, ec);
  char name[48];
  std::snprintf(name, sizeof name, "%016llx-%016llx.sqlite", static_cast<unsigned long long>(committedLsn_),
                static_cast<unsigned long long>(lastAt_));
  const auto final = snapshotDir_ / name;
  const auto temporary = snapshotDir_ / (std::string(name) + ".tmp");
  std::filesystem::remove(temporary, ec);
  sqlite3_stmt* vacuum = nullptr;
  // VACUUM INTO attaches its target for the moment it runs; the author's SQL never can.
  sqlite3_limit(db_, SQLITE_LIMIT_ATTACHED, 1);
  int rc = sqlite3_prepare_v2(db_, "VACUUM INTO ?1", -1, &vacuum, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(vacuum, 1, temporary.c_str(), -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(vacuum);
  }
  sqlite3_finalize(vacuum);
  sqlite3_limit(db_, SQLITE_LIMIT_ATTACHED, 0);
  // A snapshot that cannot be made costs only restore speed; the log still has everything.
  bool synced = false;
  if (rc == SQLITE_DONE) {
    const int fd = ::open(temporary.c_str(), O_RDONLY | O_CLOEXEC);
    synced = fd >= 0 && syncDescriptor(fd) == 0;
    if (fd >= 0) ::close(fd);
  }
  if (!synced) {
    std::filesystem::remove(temporary, ec);
    return;
  }
  std::filesystem::rename(temporary, final, ec);
  if (ec) return;
  try {
    syncDirectoryOf(final);
  } catch (const Error&) {
    return;
  }
  snapshots_.push_back({committedLsn_, lastAt_, final});
  if (now <= 0) return;
  // Retention: the newest snapshot made before the cutoff stands for every older moment, so
  // the log before it and older snapshots may go.
  const std::int64_t cutoff = now - history_.retentionMs;
  std::size_t keepFrom = 0;
  for (std::size_t i = 0; i < snapshots_.size(); ++i) {
    if (snapshots_[i].at <= cutoff) keepFrom = i;
  }
  if (snapshots_[keepFrom].at > cutoff) return;
  for (std::size_t i = 0; i < keepFrom; ++i) std::filesystem::remove(snapshots_[i].file, ec);
  pruneThrough_ = snapshots_[keepFrom].lsn;
  snapshots_.erase(snapshots_.begin(), snapshots_.begin() + static_cast<std::ptrdiff_t>(keepFrom));
}

std::optional<ObjectSqlDb::Snapshot> ObjectSqlDb::snapshotAtOrBefore(std::uint64_t lsn) const {
  std::optional<Snapshot> found;
  for (const auto& s : snapshots_) {
    if (s.lsn <= lsn) found = s;
  }
  return found;
}

std::uint64_t ObjectSqlDb::appendEntry(std::string records, std::int64_t now) {
  Entry entry;
  entry.records = std::move(records);
  entry.lsn = ++appliedLsn_;
  lastAt_ = std::max(lastAt_, now);
  entry.at = lastAt_;
  ready_.push_back(std::move(entry));
  return appliedLsn_;
}

std::uint64_t ObjectSqlDb::appendRestore(std::uint64_t target, std::int64_t now) {
  cut(now);
  return appendEntry(targetRecord('R', target), now);
}

void ObjectSqlDb::readPendingRestore() {
  pendingRestore_.reset();
  sqlite3_stmt* read = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT pending FROM _cf_meta WHERE k = 1", -1, &read, nullptr) == SQLITE_OK &&
      sqlite3_step(read) == SQLITE_ROW && sqlite3_column_type(read, 0) != SQLITE_NULL) {
    pendingRestore_ = static_cast<std::uint64_t>(sqlite3_column_int64(read, 0));
  }
  sqlite3_finalize(read);
}

void ObjectSqlDb::writePendingRestore(std::optional<std::uint64_t> target) {
  sqlite3_stmt* write = nullptr;
  int rc = sqlite3_prepare_v2(db_, "UPDATE _cf_meta SET pending = ?1 WHERE k = 1", -1, &write, nullptr);
  if (rc == SQLITE_OK) {
    if (target) sqlite3_bind_int64(write, 1, static_cast<sqlite3_int64>(*target));
    rc = sqlite3_step(write);
  }
  sqlite3_finalize(write);
  if (rc != SQLITE_DONE) fail(db_, "object database: recording an armed restore");
  pendingRestore_ = target;
}

void ObjectSqlDb::armRestore(std::uint64_t target, std::int64_t now) {
  cut(now);
  ensureTransaction();
  writePendingRestore(target);
  appendEntry(targetRecord('P', target), now);
}

std::optional<std::uint64_t> ObjectSqlDb::restoreTarget(std::string_view records) { return targetOf('R', records); }

void ObjectSqlDb::replaceWith(sqlite3* source, std::uint64_t lsn) {
  if (inTransaction_) throw Error(ErrorCode::kInternal, "object database: replaced with a transaction open");
  sqlite3_backup* backup = sqlite3_backup_init(db_, "main", source, "main");
  if (!backup) fail(db_, "object database: restoring");
  const int rc = sqlite3_backup_step(backup, -1);
  sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) fail(db_, "object database: restoring");
  exec("BEGIN");
  try {
    writeLsn(lsn);
    writePendingRestore(std::nullopt);
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    readPendingRestore();
    throw;
  }
  appliedLsn_ = committedLsn_ = lsn;
  durableLsn_ = std::max(durableLsn_, lsn);
}

void ObjectSqlDb::replaceWithFile(const std::filesystem::path& source, std::uint64_t lsn) {
  sqlite3* from = nullptr;
  if (sqlite3_open_v2(source.c_str(), &from, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    const std::string why = from ? sqlite3_errmsg(from) : "out of memory";
    sqlite3_close(from);
    throw Error(ErrorCode::kUnavailable, "cannot open snapshot " + source.string() + ": " + why);
  }
  try {
    replaceWith(from, lsn);
  } catch (...) {
    sqlite3_close(from);
    throw;
  }
  sqlite3_close(from);
}

void ObjectSqlDb::lost() {
  if (inTransaction_) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    inTransaction_ = false;
  }
  savepoints_.clear();
  recorder_->take();
  ready_.clear();
  stale_ = false;
  readPendingRestore();
  appliedLsn_ = durableLsn_ = committedLsn_;
}

}  // namespace durable::detail
