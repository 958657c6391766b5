// What the SQLite engine's two source files share: sqlite_engine.cc (the partition's tables,
// its commit and sync threads) and sqlite_sql_log.cc (the SQL log's journal and history).
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

}  // namespace durable::detail::sqlite_engine_internal
