// What statements change in one SQLite database, as compact records that replay onto another
// copy of it: the capture an object's own SQL database commits through (docs/sql-design.md).
//
// Rows: SQLite's preupdate hook reports every row a statement changes, those its triggers and
// foreign-key actions change included, in tables with or without a declared PRIMARY KEY (the
// session extension of SQLite 3.40 skips the latter) and in FTS5's shadow tables. Schema: a
// statement that changes the schema is recorded as its text (bound values inlined), and the
// rows it changes are not: replaying the text redoes them (CREATE VIRTUAL TABLE's config rows,
// CREATE TABLE … AS SELECT's rows, given a SELECT without random() or the clock).
//
// Replay runs with triggers and foreign-key actions off (their effects are in the records) and
// is idempotent: an insert replaces, an update or delete of a missing row changes nothing.
#pragma once

#include <sqlite3.h>

#include <string>
#include <string_view>

namespace durable::detail {

class SqlChangeRecorder {
 public:
  // Installs its hooks on `db` (the preupdate hook); the recorder must go before `db` closes.
  explicit SqlChangeRecorder(sqlite3* db);
  ~SqlChangeRecorder();
  SqlChangeRecorder(const SqlChangeRecorder&) = delete;
  SqlChangeRecorder& operator=(const SqlChangeRecorder&) = delete;

  // Steps `stmt` to its end as sqlite3_step would (SQLITE_DONE, or the error), recording what
  // it changes; `onRow` is called for each result row (RETURNING, SELECT). Only statements run
  // here are recorded.
  template <class OnRow>
  int run(sqlite3_stmt* stmt, OnRow&& onRow) {
    begin(stmt);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) onRow();
    end(stmt, rc);
    return rc;
  }
  int run(sqlite3_stmt* stmt) {
    return run(stmt, [] {});
  }

  // A write of the object's key-value API (its `_cf_KV` table), run unrecorded by the caller:
  // recorded as the write itself. Recorded as rows, INSERT OR REPLACE would carry the value it
  // replaces too, whole (a ChatRoom's history, twice per message).
  void recordKvPut(std::string_view key, std::string_view value);
  void recordKvDelete(std::string_view key);

  // The records since the last take(), in order; the recorder starts empty again.
  std::string take();
  // The first `n` bytes of those records (a mark from size()); the rest stay.
  std::string takePrefix(std::size_t n);
  // Drops the records since the last take() (the statements were rolled back).
  void discard(std::size_t toSize);
  // How many bytes are recorded since the last take(): a mark for discard().
  std::size_t size() const { return records_.size(); }
  // How many row changes statements run here have made in all (a failed statement's excluded).
  std::uint64_t rowsRecorded() const { return rows_; }

 private:
  static void onPreupdate(void* self, sqlite3* db, int op, const char* dbName, const char* table, sqlite3_int64 oldRowid,
                          sqlite3_int64 newRowid);
  void begin(sqlite3_stmt* stmt);
  void end(sqlite3_stmt* stmt, int rc);

  sqlite3* db_;
  std::string records_;
  bool active_ = false;  // inside run(): what other statements change is not recorded
  bool inSchemaStatement_ = false;
  int schemaVersionBefore_ = 0;
  std::size_t statementStart_ = 0;
  std::uint64_t rows_ = 0;
  std::uint64_t statementRowsStart_ = 0;
};

// Applies records made by SqlChangeRecorder to `db`, in order, inside the caller's transaction;
// turns triggers off for the duration. Foreign-key enforcement must be off on `db` (PRAGMA
// foreign_keys cannot change inside a transaction). Throws Error (kInternal) on records it
// cannot read or apply.
void replaySqlChanges(sqlite3* db, std::string_view records);

}  // namespace durable::detail
