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
// The author's statements (prepareUser) run under an authorizer and limits: they cannot leave
// the object's own database, touch the `_cf_` tables, or end the transaction the file keeps
// open (see prepareUser()).
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

  // What the author's SQL may do (Cloudflare's limits for SQLite-backed objects by default).
  struct Limits {
    std::uint64_t maxDatabaseBytes = 10ull * 1024 * 1024 * 1024;
    int maxValueBytes = 2 * 1024 * 1024;  // a string, a blob, or a whole row
    int maxStatementBytes = 100 * 1000;
    int maxBoundParameters = 100;
    int maxColumns = 100;
  };

  // Opens `file` (":memory:" for a database that only the log keeps), creating it and its
  // directory when missing. Throws Error (kUnavailable).
  ObjectSqlDb(const std::filesystem::path& file, const Limits& limits);
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

  // The author's statements: the first statement of `sql`, prepared under the authorizer and
  // the limits, with `tail` set past it. Throws Error(kInvalidArgument) with SQLite's message,
  // or a clearer one for what is refused: ATTACH and DETACH, BEGIN, COMMIT, ROLLBACK and
  // SAVEPOINT (transactionSync() is the way), PRAGMAs but a read-only few, a name starting
  // with `_cf_`, temporary objects, and ROLLBACK or FAIL as conflict resolution (both would
  // leave part of a statement, or undo the file's open transaction). nullptr when `sql` holds
  // only blanks and comments. The caller finalizes the statement.
  sqlite3_stmt* prepareUser(std::string_view sql, std::string_view* tail);
  // Runs an author's statement like run(), atomically: a failed statement changes nothing.
  // Returns SQLite's code; `rowsWritten` counts the rows it inserted, updated or deleted
  // (those of its triggers included).
  template <class OnRow>
  int runUser(sqlite3_stmt* stmt, OnRow&& onRow, std::uint64_t& rowsWritten) {
    const std::uint64_t before = recorder_->rowsRecorded();
    const int rc = run(stmt, std::forward<OnRow>(onRow));
    noticeLostTransaction();
    rowsWritten += recorder_->rowsRecorded() - before;
    return rc;
  }
  // SQLite ended the file's transaction itself (a statement failed with SQLITE_FULL, IOERR or
  // NOMEM): the file lost what it held uncommitted, but the entries and the records since the
  // last emit are still good. They leave as usual; no statement may run until the file has
  // replayed the log again (lost(), then replay()), once nothing is in flight.
  bool stale() const { return stale_; }
  // Makes the file stale() itself: its commit failed.
  void markStale();
  // The message for an author's statement that failed with `rc`.
  std::string errorMessage(int rc) const;

  // deleteAll() of a SQLite-backed object: drops every table, view and trigger of the author's.
  void wipe();
  // The file's size in bytes (pages in use times the page size).
  std::uint64_t databaseSize();

  // transactionSync(): a savepoint; endSavepoint(false) undoes it and what it recorded. Nested
  // calls nest.
  void beginSavepoint();
  void endSavepoint(bool keep);
  bool inSavepoint() const { return !savepoints_.empty(); }

  // The changes since the last emit, as the next log entry; nullopt when there are none (then
  // a transaction holding nothing pending is committed). Inside a savepoint, only what was
  // recorded before the outermost one leaves: the rest may still be undone.
  std::optional<Entry> emit();
  // Every entry up to `lsn` is durable in the log: commits the file's transaction when it
  // holds nothing newer (no entry in flight, no change since the last emit).
  void durable(std::uint64_t lsn);
  // An entry in flight was lost (its batch failed), or the file is stale(): rolls back to
  // committedLsn() and drops what was not emitted. The caller replays the log's entries above it.
  void lost();
  // Whether the open transaction has held durable entries for `limit` emits without a moment
  // to commit: the owner should stop starting turns until durable() commits.
  bool mustQuiesce(std::uint64_t limit) const { return inTransaction_ && appliedLsn_ - committedLsn_ >= limit; }

 private:
  void exec(const char* sql);
  void ensureTransaction();
  void writeLsn(std::uint64_t lsn);
  // After an author's statement: whether SQLite ended the file's transaction (then stale()).
  void noticeLostTransaction();
  static int authorize(void* self, int action, const char* a, const char* b, const char* dbName, const char* trigger);

  sqlite3* db_ = nullptr;
  sqlite3_stmt* setLsn_ = nullptr;
  std::optional<SqlChangeRecorder> recorder_;  // made once db_ is open
  bool preparingUser_ = false;  // the authorizer applies
  std::string refusal_;         // why the authorizer refused the statement being prepared
  bool inTransaction_ = false;
  bool stale_ = false;
  std::vector<std::size_t> savepoints_;  // the recorder's size at each open savepoint
  std::uint64_t appliedLsn_ = 0;
  std::uint64_t committedLsn_ = 0;
  std::uint64_t durableLsn_ = 0;
};

}  // namespace durable::detail
