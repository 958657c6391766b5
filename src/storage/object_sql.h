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
#include <span>
#include <unordered_map>
#include <utility>
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
    std::int64_t at = 0;  // epoch ms; never less than the previous entry's
  };
  // Point-in-time recovery: every `snapshotEvery` entries the committed file is copied (a
  // snapshot, beside the file), and the log's entries older than the newest snapshot made
  // before `retentionMs` ago may go (pruneThrough()). A database in memory keeps no snapshot
  // and prunes nothing: its log is all there is.
  struct History {
    std::uint64_t snapshotEvery = 10'000;
    std::int64_t retentionMs = 30ll * 24 * 3600 * 1000;
    // The file commits once this many durable entries wait, or snapshotEvery if fewer (the
    // rest: commitIfDurable()). 16 ran at about 0.85 of the rate of 256 over 1,000 objects; a crash
    // replays at most this many entries per object from the log.
    std::uint64_t commitEvery = 256;
  };
  struct Snapshot {
    std::uint64_t lsn = 0;
    std::int64_t at = 0;
    std::filesystem::path file;
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
  ObjectSqlDb(const std::filesystem::path& file, const Limits& limits, const History& history);
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
  // prepareUser() for a query of one statement, kept for the next exec() of the same text (as
  // Cloudflare keeps them): owned by the database, reset after each use. nullptr when `sql` is
  // not exactly one statement (the caller prepares it statement by statement).
  sqlite3_stmt* cachedUser(std::string_view sql);
  // Whether `sql` holds nothing but blanks, semicolons and comments: no statement.
  static bool noStatementIn(std::string_view sql);
  // Runs an author's statement like run(), atomically: a failed statement changes nothing.
  // Returns SQLite's code; `rowsWritten` counts the rows it inserted, updated or deleted
  // (those of its triggers included).
  template <class OnRow>
  int runUser(sqlite3_stmt* stmt, OnRow&& onRow, std::uint64_t& rowsWritten) {
    const std::uint64_t before = recorder_->rowsRecorded();
    // SQLite prepares a statement again when the schema changed: under the authorizer too.
    if (!sqlite3_stmt_readonly(stmt)) ensureTransaction();
    preparingUser_ = true;
    int rc;
    try {
      rc = recorder_->run(stmt, std::forward<OnRow>(onRow));
    } catch (...) {
      preparingUser_ = false;
      throw;
    }
    preparingUser_ = false;
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

  // The key-value API of a SQLite-backed object lives in `_cf_KV` (key TEXT PRIMARY KEY, value
  // BLOB: Value::encode()'s bytes), written at once and recorded like any change: one log, one
  // history, one size for both. Writes need a fresh file (not stale()).
  std::optional<std::string> kvGet(std::string_view key);
  void kvPut(std::string_view key, std::string_view encoded);
  void kvDelete(std::string_view key);
  void kvDeleteAll();
  // A key's new value (Value::encode()'s bytes), or its deletion when `value` is null.
  struct KvWrite {
    std::string_view key;
    const std::string* value;
  };
  // Several writes (after a deleteAll when `deleteAllFirst`) as one: all of them, or, when one
  // fails, none (their records dropped too).
  void kvWriteAll(bool deleteAllFirst, std::span<const KvWrite> writes);
  // Rows in [lower, upper) (lower exclusive when !lowerInclusive; no upper bound when nullopt),
  // ascending or descending, at most `limit`.
  std::vector<std::pair<std::string, std::string>> kvScan(std::string_view lower, bool lowerInclusive,
                                                          const std::optional<std::string>& upper, bool reverse,
                                                          std::size_t limit);

  // deleteAll() of a SQLite-backed object: drops every table, view and trigger of the author's.
  void wipe();
  // The file's size in bytes (pages in use times the page size).
  std::uint64_t databaseSize();

  // transactionSync(): a savepoint; endSavepoint(false) undoes it and what it recorded. Nested
  // calls nest.
  void beginSavepoint();
  void endSavepoint(bool keep);
  bool inSavepoint() const { return !savepoints_.empty(); }

  // Closes the changes made so far into an entry of their own, stamped `now` (a bookmark names
  // the state after an entry). Inside a savepoint, only what was recorded before the outermost
  // one: the rest may still be undone.
  void cut(std::int64_t now);
  // cut(), then every entry made since the last emit, in order; empty when there are none
  // (then a transaction holding nothing pending is committed).
  std::vector<Entry> emit(std::int64_t now = 0);
  // The time of the last entry (lastLsn()'s), or 0 when there is none.
  std::int64_t lastAt() const { return lastAt_; }

  // ---- Point-in-time recovery ----
  // An entry that restores the database to the state after entry `target`, appended after
  // cut(now); its LSN. The file itself changes only when replaceWith() applies it.
  std::uint64_t appendRestore(std::uint64_t target, std::int64_t now);
  // The target of a restore entry, or nullopt for an entry of changes.
  static std::optional<std::uint64_t> restoreTarget(std::string_view records);
  // An entry that arms a restore to `target` for the next instance (onNextSessionRestoreBookmark):
  // the state does not change, but pendingRestore() says so from now on, across restarts.
  void armRestore(std::uint64_t target, std::int64_t now);
  // The armed restore's target, until replaceWith() applies one.
  std::optional<std::uint64_t> pendingRestore() const { return pendingRestore_; }
  // Makes the database a copy of `source` (another connection's main database) at `lsn`,
  // committed; no transaction may be open.
  void replaceWith(sqlite3* source, std::uint64_t lsn);
  void replaceWithFile(const std::filesystem::path& source, std::uint64_t lsn);
  // A snapshot of the committed file now (no transaction may be open), e.g. after a restore.
  void snapshotNow(std::int64_t now) {
    if (!snapshotDir_.empty() && !inTransaction_) takeSnapshot(now);
  }
  // The newest snapshot at or before `lsn`.
  std::optional<Snapshot> snapshotAtOrBefore(std::uint64_t lsn) const;
  // The LSN through which the log may be pruned, once (the caller sends it with a batch).
  std::optional<std::uint64_t> takePruneThrough() { return std::exchange(pruneThrough_, std::nullopt); }
  // Every entry up to `lsn` is durable in the log: commits the file's transaction when it
  // holds nothing newer (no entry in flight, no change since the last emit).
  // `now` (epoch ms) decides which snapshots fall out of retention; 0: none does. The file
  // commits every kCommitEvery entries; commitIfDurable() (and closing) commit the rest.
  void durable(std::uint64_t lsn, std::int64_t now = 0);
  void commitIfDurable(std::int64_t now = 0);
  // An entry in flight was lost (its batch failed), or the file is stale(): rolls back to
  // committedLsn() and drops what was not emitted. The caller replays the log's entries above it.
  void lost();
  // Whether the open transaction has held durable entries for `limit` emits without a moment
  // to commit: the owner should stop starting turns until durable() commits.
  // How many durable entries the file holds open before it commits (History::commitEvery).
  std::uint64_t commitInterval() const { return std::min(history_.commitEvery, history_.snapshotEvery); }
  bool mustQuiesce(std::uint64_t limit) const { return inTransaction_ && appliedLsn_ - committedLsn_ >= limit; }

 private:
  void exec(const char* sql);
  void ensureTransaction();
  void writeLsn(std::uint64_t lsn);
  void takeSnapshot(std::int64_t now);
  bool committable() const;
  // A new entry of `records` after the last, stamped `now` (never before the one before); its LSN.
  std::uint64_t appendEntry(std::string records, std::int64_t now);
  void commit(std::int64_t now);
  // After an author's statement: whether SQLite ended the file's transaction (then stale()).
  void noticeLostTransaction();
  static int authorize(void* self, int action, const char* a, const char* b, const char* dbName, const char* trigger);

  sqlite3* db_ = nullptr;
  sqlite3_stmt* setLsn_ = nullptr;
  sqlite3_stmt* kvGet_ = nullptr;
  sqlite3_stmt* kvPut_ = nullptr;
  sqlite3_stmt* kvDelete_ = nullptr;
  sqlite3_stmt* kvScan_[8] = {};  // by lowerInclusive | hasUpper << 1 | reverse << 2
  // `recorded`: what it changes is recorded as rows; else the caller records it.
  void runInternal(sqlite3_stmt* stmt, const char* what, bool recorded = true);
  // The author's statements run under the author's length limit; the runtime's own writes (a
  // key and value of 2 MiB together, with their row) and replays under a larger one.
  void useAuthorsLimit(bool authors);
  int authorsLengthLimit_ = 0;
  bool authorsLimitOn_ = true;
  std::optional<SqlChangeRecorder> recorder_;  // made once db_ is open
  bool preparingUser_ = false;  // the authorizer applies
  // Looked up by the query's text as given: no string built per exec().
  struct TextHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept { return std::hash<std::string_view>{}(text); }
  };
  std::unordered_map<std::string, sqlite3_stmt*, TextHash, std::equal_to<>> userStatements_;  // cachedUser()
  std::string refusal_;         // why the authorizer refused the statement being prepared
  bool inTransaction_ = false;
  bool stale_ = false;
  std::vector<std::size_t> savepoints_;  // the recorder's size at each open savepoint
  std::uint64_t appliedLsn_ = 0;
  std::uint64_t committedLsn_ = 0;
  std::uint64_t durableLsn_ = 0;
  std::int64_t lastAt_ = 0;
  std::vector<Entry> ready_;  // cut, not yet emitted
  History history_;
  std::filesystem::path snapshotDir_;  // empty: none kept
  std::vector<Snapshot> snapshots_;    // by LSN
  std::optional<std::uint64_t> pruneThrough_;
  std::optional<std::uint64_t> pendingRestore_;
  void readPendingRestore();
  void writePendingRestore(std::optional<std::uint64_t> target);
};

}  // namespace durable::detail
