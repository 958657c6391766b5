// One object's own SQL database, kept never ahead of its partition's log (docs/sql-design.md).
//
// The file is a cache of the log: the changes made since the last batch leave with the next as
// a log entry (emit()), and the file commits (unsynced) only once every entry it holds is
// durable in the log (durable()). Until then they sit in one open transaction, so a crash or a
// failed batch loses the file's uncommitted part, never an entry the log has: opening the file
// again and replaying the log's entries above committedLsn() restores it. `_cf_meta` holds that
// LSN, written in the same transaction as the changes it counts.
//
// As on Cloudflare, a statement is atomic and an event that throws keeps the writes it made;
// transactionSync() is a savepoint (beginSavepoint/endSavepoint), undone whole on a throw.
//
// Shard thread only; statements run synchronously (as Cloudflare's sql.exec does).
#pragma once

#include "storage/sql_changes.h"

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace durable::detail {

class ObjectSqlDb {
 public:
  // A log entry: the changes of the turns since the previous one.
  struct Entry {
    std::uint64_t lsn = 0;
    std::string records;
  };

  // Opens `file`, creating it (and its directory) when missing. Throws Error (kUnavailable).
  explicit ObjectSqlDb(const std::filesystem::path& file);
  // Closes without committing what is not durable.
  ~ObjectSqlDb();
  ObjectSqlDb(const ObjectSqlDb&) = delete;
  ObjectSqlDb& operator=(const ObjectSqlDb&) = delete;

  sqlite3* db() const { return db_; }
  // The last log entry the file holds, committed or in its open transaction.
  std::uint64_t appliedLsn() const { return appliedLsn_; }
  // The last entry the file holds committed: what survives a crash of this process.
  std::uint64_t committedLsn() const { return committedLsn_; }

  // Applies a log entry above appliedLsn() (lsn must be appliedLsn() + 1) and commits: for
  // opening, after a crash or a lost batch.
  void replay(const Entry& entry);

  // Runs a statement, recording what it changes: steps it to its end (SQLITE_DONE, or the
  // error), calling onRow() for each result row.
  template <class OnRow>
  int run(sqlite3_stmt* stmt, OnRow&& onRow) {
    // A read outside the open transaction reads in autocommit: no transaction kept open for it.
    if (!sqlite3_stmt_readonly(stmt)) ensureTransaction();
    return recorder_->run(stmt, std::forward<OnRow>(onRow));
  }

  // transactionSync(): a savepoint; endSavepoint(false) undoes it and what it recorded. Nested
  // calls nest.
  void beginSavepoint();
  void endSavepoint(bool keep);

  // The changes since the last emit, as the next log entry; nullopt when there are none (then
  // a transaction holding nothing pending is committed). Not inside a savepoint.
  std::optional<Entry> emit();
  // Every entry up to `lsn` is durable in the log: commits the file's transaction when it
  // holds nothing newer (no entry in flight, no change since the last emit).
  void durable(std::uint64_t lsn);
  // An entry in flight was lost (its batch failed): rolls back to committedLsn(). The caller
  // replays the log's entries above it.
  void lost();
  // Whether the open transaction has held durable entries for `limit` emits without a moment
  // to commit: the owner should stop starting turns until durable() commits.
  bool mustQuiesce(std::uint64_t limit) const { return inTransaction_ && appliedLsn_ - committedLsn_ >= limit; }

 private:
  void exec(const char* sql);
  void ensureTransaction();
  void writeLsn(std::uint64_t lsn);

  sqlite3* db_ = nullptr;
  sqlite3_stmt* setLsn_ = nullptr;
  std::optional<SqlChangeRecorder> recorder_;  // made once db_ is open
  bool inTransaction_ = false;
  std::vector<std::size_t> savepoints_;  // the recorder's size at each open savepoint
  std::uint64_t appliedLsn_ = 0;
  std::uint64_t committedLsn_ = 0;
  std::uint64_t durableLsn_ = 0;
};

}  // namespace durable::detail
