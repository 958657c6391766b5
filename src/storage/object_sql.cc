#include "storage/object_sql.h"

#include <durable/error.h>

#include <algorithm>
#include <system_error>

namespace durable::detail {

namespace {

[[noreturn]] void fail(sqlite3* db, const std::string& what) {
  throw Error(ErrorCode::kUnavailable, what + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
}

}  // namespace

ObjectSqlDb::ObjectSqlDb(const std::filesystem::path& file) {
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  if (ec) throw Error(ErrorCode::kUnavailable, "cannot create " + file.parent_path().string() + ": " + ec.message());
  if (sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    const std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(ErrorCode::kUnavailable, "cannot open " + file.string() + ": " + why);
  }
  try {
    // Durability is the log's: the file is never synced on the way.
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=OFF");
    exec("PRAGMA foreign_keys=ON");
    exec("CREATE TABLE IF NOT EXISTS _cf_meta(k INTEGER PRIMARY KEY, lsn INTEGER NOT NULL);"
         "INSERT OR IGNORE INTO _cf_meta VALUES (1, 0)");
    sqlite3_stmt* read = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT lsn FROM _cf_meta WHERE k = 1", -1, &read, nullptr) != SQLITE_OK) {
      fail(db_, "open " + file.string());
    }
    if (sqlite3_step(read) == SQLITE_ROW) appliedLsn_ = static_cast<std::uint64_t>(sqlite3_column_int64(read, 0));
    sqlite3_finalize(read);
    committedLsn_ = durableLsn_ = appliedLsn_;
    if (sqlite3_prepare_v3(db_, "UPDATE _cf_meta SET lsn = ?1 WHERE k = 1", -1, SQLITE_PREPARE_PERSISTENT, &setLsn_,
                           nullptr) != SQLITE_OK) {
      fail(db_, "open " + file.string());
    }
  } catch (...) {
    sqlite3_finalize(setLsn_);
    sqlite3_close(db_);
    throw;
  }
  recorder_.emplace(db_);
}

ObjectSqlDb::~ObjectSqlDb() {
  // What is not committed is not known durable: the log has it, or nobody was told of it.
  if (inTransaction_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  recorder_.reset();
  sqlite3_finalize(setLsn_);
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
  exec("BEGIN");
  try {
    replaySqlChanges(db_, entry.records);
    writeLsn(entry.lsn);
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    exec("PRAGMA foreign_keys=ON");
    throw;
  }
  exec("PRAGMA foreign_keys=ON");
  appliedLsn_ = committedLsn_ = entry.lsn;
  durableLsn_ = std::max(durableLsn_, entry.lsn);
}

void ObjectSqlDb::beginSavepoint() {
  ensureTransaction();
  exec("SAVEPOINT _cf_txn");
  savepoints_.push_back(recorder_->size());
}

void ObjectSqlDb::endSavepoint(bool keep) {
  if (savepoints_.empty()) throw Error(ErrorCode::kInternal, "object database: no savepoint to end");
  const std::size_t mark = savepoints_.back();
  savepoints_.pop_back();
  if (!keep) {
    exec("ROLLBACK TO _cf_txn");
    recorder_->discard(mark);
  }
  exec("RELEASE _cf_txn");
}

std::optional<ObjectSqlDb::Entry> ObjectSqlDb::emit() {
  if (!savepoints_.empty()) throw Error(ErrorCode::kInternal, "object database: emit inside transactionSync()");
  if (recorder_->size() == 0) {
    // Statements that wrote nothing opened the transaction: it holds nothing to wait for.
    durable(durableLsn_);
    return std::nullopt;
  }
  Entry entry;
  entry.records = recorder_->take();
  entry.lsn = appliedLsn_ + 1;
  writeLsn(entry.lsn);
  appliedLsn_ = entry.lsn;
  return entry;
}

void ObjectSqlDb::durable(std::uint64_t lsn) {
  durableLsn_ = std::max(durableLsn_, lsn);
  if (!inTransaction_ || !savepoints_.empty() || recorder_->size() != 0 || durableLsn_ < appliedLsn_) return;
  exec("COMMIT");
  inTransaction_ = false;
  committedLsn_ = appliedLsn_;
}

void ObjectSqlDb::lost() {
  if (inTransaction_) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    inTransaction_ = false;
  }
  savepoints_.clear();
  recorder_->take();
  appliedLsn_ = durableLsn_ = committedLsn_;
}

}  // namespace durable::detail
