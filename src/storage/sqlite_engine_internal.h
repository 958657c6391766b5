// What the SQLite engine's source files share: sqlite_engine.cc (the partition's tables, its
// commit and sync threads), sqlite_sql_log.cc (the SQL log's journal and history) and
// sqlite_listing.cc (the objects the admin API lists).
#pragma once

#include "storage/sqlite_engine.h"

#include <durable/error.h>

#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace durable::detail::sqlite_engine_internal {

[[noreturn]] inline void fail(sqlite3* db, std::string_view what) {
  throw Error(ErrorCode::kUnavailable, std::string(what) + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
}

inline void check(sqlite3* db, int rc, std::string_view what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) fail(db, what);
}

inline void bindBlob(sqlite3_stmt* s, int i, const void* p, std::size_t n) {
  // A zero-length blob must still be a blob, not NULL: pass a non-null pointer.
  static const char kEmpty = 0;
  sqlite3_bind_blob(s, i, n ? p : &kEmpty, static_cast<int>(n), SQLITE_STATIC);
}

inline void bindObject(sqlite3_stmt* s, std::int64_t ns, const ObjectId::Raw& id) {
  sqlite3_bind_int64(s, 1, ns);
  bindBlob(s, 2, id.data(), id.size());
}

inline std::string_view columnBlob(sqlite3_stmt* s, int i) {
  const void* p = sqlite3_column_blob(s, i);
  int n = sqlite3_column_bytes(s, i);
  return {static_cast<const char*>(p), static_cast<std::size_t>(n)};
}

// Resets a statement when the scope ends, whatever happens inside.
struct ResetGuard {
  sqlite3_stmt* s;
  ~ResetGuard() {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
};

// One read transaction: every statement in the scope reads the same snapshot. A read ends the
// same way whether it committed or failed.
class ReadSnapshot {
 public:
  ReadSnapshot(sqlite3* db, std::string_view what) : db_(db) {
    check(db, sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), what);
  }
  ~ReadSnapshot() { sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr); }
  ReadSnapshot(const ReadSnapshot&) = delete;
  ReadSnapshot& operator=(const ReadSnapshot&) = delete;

 private:
  sqlite3* db_;
};

}  // namespace durable::detail::sqlite_engine_internal
