#include "storage/object_sql_reader.h"

#include "storage/object_sql.h"

#include <durable/error.h>

#include <strings.h>

#include <chrono>
#include <cstring>

namespace durable::detail {

namespace {

// PRAGMAs that only read. Others (hard_heap_limit, temp_store_directory, ...) act while a
// statement is prepared, before anything could check that it only reads.
constexpr const char* kReadPragmas[] = {"table_list",       "table_info",  "table_xinfo",   "index_list",
                                        "index_info",       "index_xinfo", "foreign_key_list", "foreign_key_check",
                                        "quick_check",      "integrity_check", "page_count", "page_size",
                                        "freelist_count",   "data_version", "schema_version", "user_version",
                                        "application_id",   "encoding",    "collation_list", "function_list",
                                        "pragma_list",      "compile_options"};

// Writes cannot happen here (the file is opened read-only, and query() runs only statements
// SQLite calls read-only); this stops what acts before that check or outside the file. FTS5
// prepares statements of its own on the connection, so what is not named here passes.
int authorizeRead(void*, int action, const char* a, const char* b, const char*, const char*) {
  switch (action) {
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
      return SQLITE_DENY;
    case SQLITE_FUNCTION:
      // fts3_tokenizer() with one argument hands out a pointer; load_extension() loads code.
      return b && (strcasecmp(b, "fts3_tokenizer") == 0 || strcasecmp(b, "load_extension") == 0) ? SQLITE_DENY : SQLITE_OK;
    case SQLITE_PRAGMA:
      if (!a) return SQLITE_DENY;
      for (const char* name : kReadPragmas) {
        if (strcasecmp(a, name) != 0) continue;
        // A value after "=" sets: only the ones that take an object name as their argument read.
        const bool takesName = std::strstr(name, "_info") || std::strstr(name, "_list") ||
                               std::strstr(name, "_check") || strcasecmp(name, "table_xinfo") == 0;
        return !b || takesName ? SQLITE_OK : SQLITE_DENY;
      }
      return SQLITE_DENY;
    default:
      return SQLITE_OK;
  }
}

struct Finalize {
  sqlite3_stmt* stmt = nullptr;
  ~Finalize() { sqlite3_finalize(stmt); }
};

}  // namespace

ObjectSqlReader::ObjectSqlReader(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return;
  if (sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    const std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(ErrorCode::kUnavailable, "cannot open " + file.string() + ": " + why);
  }
  sqlite3_limit(db_, SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  // The object may be committing at this moment: wait for it rather than fail.
  sqlite3_busy_timeout(db_, 2000);
}

ObjectSqlReader::~ObjectSqlReader() { sqlite3_close(db_); }

std::pair<std::size_t, std::uint64_t> ObjectSqlReader::kvSize() {
  if (!db_) return {0, 0};
  Finalize q;
  if (sqlite3_prepare_v2(db_, "SELECT count(*), coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0) FROM _cf_KV",
                         -1, &q.stmt, nullptr) != SQLITE_OK ||
      sqlite3_step(q.stmt) != SQLITE_ROW) {
    return {0, 0};
  }
  return {static_cast<std::size_t>(sqlite3_column_int64(q.stmt, 0)), static_cast<std::uint64_t>(sqlite3_column_int64(q.stmt, 1))};
}

std::uint64_t ObjectSqlReader::bytesOnDisk(const std::filesystem::path& file) {
  std::uint64_t total = 0;
  for (const auto& f : {file, std::filesystem::path(file.string() + "-wal")}) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(f, ec);
    if (!ec) total += size;
  }
  return total;
}

Rows ObjectSqlReader::kv(std::string_view lower, bool lowerInclusive, const std::optional<std::string>& upper,
                         std::size_t limit) {
  Rows rows;
  if (!db_) return rows;
  std::string sql = "SELECT key, value FROM _cf_KV WHERE key ";
  sql += lowerInclusive ? ">= ?1" : "> ?1";
  if (upper) sql += " AND key < ?2";
  sql += " ORDER BY key LIMIT ?3";
  Finalize q;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &q.stmt, nullptr) != SQLITE_OK) {
    // A file from before _cf_KV existed has no keys in it.
    return rows;
  }
  sqlite3_bind_text(q.stmt, 1, lower.data(), static_cast<int>(lower.size()), SQLITE_STATIC);
  if (upper) sqlite3_bind_text(q.stmt, 2, upper->data(), static_cast<int>(upper->size()), SQLITE_STATIC);
  sqlite3_bind_int64(q.stmt, 3, limit > static_cast<std::size_t>(INT64_MAX) ? -1 : static_cast<sqlite3_int64>(limit));
  int rc;
  while ((rc = sqlite3_step(q.stmt)) == SQLITE_ROW) {
    const auto* k = reinterpret_cast<const char*>(sqlite3_column_text(q.stmt, 0));
    const auto* v = static_cast<const char*>(sqlite3_column_blob(q.stmt, 1));
    rows.push_back({std::string(k ? k : "", static_cast<std::size_t>(sqlite3_column_bytes(q.stmt, 0))),
                    std::string(v ? v : "", static_cast<std::size_t>(sqlite3_column_bytes(q.stmt, 1)))});
  }
  if (rc != SQLITE_DONE) throw Error(ErrorCode::kUnavailable, std::string("reading keys: ") + sqlite3_errmsg(db_));
  return rows;
}

ObjectSqlReader::Result ObjectSqlReader::query(std::string_view sql, std::size_t maxRows, std::chrono::milliseconds limit) {
  if (!db_) {
    // No file yet: an empty database answers as SQLite's empty database would.
    sqlite3* empty = nullptr;
    sqlite3_open_v2(":memory:", &empty, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    db_ = empty;
    sqlite3_limit(db_, SQLITE_LIMIT_ATTACHED, 0);
  }
  sqlite3_set_authorizer(db_, &authorizeRead, nullptr);
  // A query that runs past `limit` is interrupted: an operator's mistake must not hold a thread
  // (and the object's WAL, which cannot be checkpointed under an open read) for good.
  const auto deadline = std::chrono::steady_clock::now() + limit;
  sqlite3_progress_handler(
      db_, 10'000,
      [](void* d) -> int { return std::chrono::steady_clock::now() > *static_cast<const std::chrono::steady_clock::time_point*>(d) ? 1 : 0; },
      const_cast<std::chrono::steady_clock::time_point*>(&deadline));
  struct Unhook {
    sqlite3* db;
    ~Unhook() {
      sqlite3_progress_handler(db, 0, nullptr, nullptr);
      sqlite3_set_authorizer(db, nullptr, nullptr);
    }
  } unhook{db_};
  Finalize q;
  const char* tail = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &q.stmt, &tail) != SQLITE_OK) {
    throw Error(ErrorCode::kInvalidArgument, sqlite3_errmsg(db_));
  }
  if (!q.stmt) throw Error(ErrorCode::kInvalidArgument, "the query holds no statement");
  if (!ObjectSqlDb::noStatementIn(std::string_view(tail, static_cast<std::size_t>(sql.data() + sql.size() - tail)))) {
    throw Error(ErrorCode::kInvalidArgument, "one statement at a time");
  }
  if (!sqlite3_stmt_readonly(q.stmt)) {
    throw Error(ErrorCode::kInvalidArgument, "only statements that read are run here (SELECT, read-only PRAGMAs)");
  }
  Result out;
  const int columns = sqlite3_column_count(q.stmt);
  for (int i = 0; i < columns; ++i) out.columns.emplace_back(sqlite3_column_name(q.stmt, i));
  int rc;
  while ((rc = sqlite3_step(q.stmt)) == SQLITE_ROW) {
    if (out.rows.size() == maxRows) {
      out.truncated = true;
      break;
    }
    std::vector<Value> row;
    row.reserve(static_cast<std::size_t>(columns));
    for (int i = 0; i < columns; ++i) {
      switch (sqlite3_column_type(q.stmt, i)) {
        case SQLITE_INTEGER: row.emplace_back(static_cast<std::int64_t>(sqlite3_column_int64(q.stmt, i))); break;
        case SQLITE_FLOAT: row.emplace_back(sqlite3_column_double(q.stmt, i)); break;
        case SQLITE_TEXT:
          row.emplace_back(std::string(reinterpret_cast<const char*>(sqlite3_column_text(q.stmt, i)),
                                       static_cast<std::size_t>(sqlite3_column_bytes(q.stmt, i))));
          break;
        case SQLITE_BLOB: {
          const auto* p = static_cast<const char*>(sqlite3_column_blob(q.stmt, i));
          row.emplace_back(Bytes(std::string(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(q.stmt, i)))));
          break;
        }
        default: row.emplace_back(); break;
      }
    }
    out.rows.push_back(std::move(row));
  }
  if (rc == SQLITE_INTERRUPT) {
    throw Error(ErrorCode::kInvalidArgument, "the query ran past " + std::to_string(limit.count()) + " ms and was stopped");
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) throw Error(ErrorCode::kInvalidArgument, sqlite3_errmsg(db_));
  return out;
}

}  // namespace durable::detail
