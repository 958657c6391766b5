// ObjectSqlDb's side that faces the author's SQL: the authorizer and its allow-lists, the
// refusals prepareUser() adds, the kept statements, and SQLite's errors as messages.
#include "storage/object_sql.h"

#include <durable/error.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <strings.h>

namespace durable::detail {

namespace {

bool internalName(const char* name) { return name && strncasecmp(name, "_cf_", 4) == 0; }

bool equalsIgnoringCase(const char* a, std::string_view b) {
  return a && std::strlen(a) == b.size() && strncasecmp(a, b.data(), b.size()) == 0;
}

// PRAGMAs an object may run, as on Cloudflare: they read, or change only how this connection
// checks or orders things. The argument each takes is checked by kind.
enum class PragmaArg { kNone, kBoolean, kObject, kOptionalObject, kQuickCheck, kOptionalInt };
struct AllowedPragma {
  std::string_view name;
  PragmaArg arg;
};
constexpr std::array kAllowedPragmas{
    AllowedPragma{"table_list", PragmaArg::kNone},
    AllowedPragma{"table_info", PragmaArg::kObject},
    AllowedPragma{"table_xinfo", PragmaArg::kObject},
    AllowedPragma{"data_version", PragmaArg::kNone},
    AllowedPragma{"page_size", PragmaArg::kNone},
    AllowedPragma{"case_sensitive_like", PragmaArg::kBoolean},
    AllowedPragma{"foreign_keys", PragmaArg::kBoolean},
    AllowedPragma{"defer_foreign_keys", PragmaArg::kBoolean},
    AllowedPragma{"ignore_check_constraints", PragmaArg::kBoolean},
    AllowedPragma{"legacy_alter_table", PragmaArg::kBoolean},
    AllowedPragma{"recursive_triggers", PragmaArg::kBoolean},
    AllowedPragma{"reverse_unordered_selects", PragmaArg::kBoolean},
    AllowedPragma{"foreign_key_list", PragmaArg::kObject},
    AllowedPragma{"index_info", PragmaArg::kObject},
    AllowedPragma{"index_list", PragmaArg::kObject},
    AllowedPragma{"index_xinfo", PragmaArg::kObject},
    AllowedPragma{"foreign_key_check", PragmaArg::kOptionalObject},
    AllowedPragma{"quick_check", PragmaArg::kQuickCheck},
    AllowedPragma{"optimize", PragmaArg::kOptionalInt},
};

bool allInt(std::string_view s) {
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) s.remove_prefix(1);
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool pragmaAllowed(const char* name, const char* arg) {
  for (const auto& p : kAllowedPragmas) {
    if (!equalsIgnoringCase(name, p.name)) continue;
    std::string_view a = arg ? arg : "";
    if (a.size() >= 2 && (a.front() == '\'' || a.front() == '"') && a.back() == a.front()) a = a.substr(1, a.size() - 2);
    switch (p.arg) {
      case PragmaArg::kNone: return arg == nullptr;
      case PragmaArg::kBoolean: {
        if (!arg) return true;
        for (std::string_view b : {"true", "false", "yes", "no", "on", "off", "1", "0"}) {
          if (a.size() == b.size() && strncasecmp(a.data(), b.data(), b.size()) == 0) return true;
        }
        return false;
      }
      case PragmaArg::kObject: return arg != nullptr && !internalName(std::string(a).c_str());
      case PragmaArg::kOptionalObject: return !arg || !internalName(std::string(a).c_str());
      case PragmaArg::kQuickCheck: return !arg || allInt(a) || !internalName(std::string(a).c_str());
      case PragmaArg::kOptionalInt: return !arg || allInt(a);
    }
  }
  return false;
}

// Whether `sql` uses ROLLBACK or FAIL as a word outside strings, quoted names and comments: as
// conflict resolution (OR ROLLBACK, ON CONFLICT FAIL) or in RAISE(). ROLLBACK would undo the
// transaction the file keeps open across turns; FAIL leaves part of a statement applied.
std::optional<std::string_view> forbiddenConflictWord(std::string_view sql) {
  std::size_t i = 0;
  const std::size_t n = sql.size();
  auto wordChar = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
           static_cast<unsigned char>(c) >= 0x80;
  };
  while (i < n) {
    const char c = sql[i];
    if (c == '\'' || c == '"' || c == '`' || c == '[') {
      const char close = c == '[' ? ']' : c;
      for (++i; i < n; ++i) {
        if (sql[i] == close) {
          if (close != ']' && i + 1 < n && sql[i + 1] == close) {
            ++i;
            continue;
          }
          break;
        }
      }
      ++i;
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      while (i < n && sql[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      const auto end = sql.find("*/", i + 2);
      i = end == std::string_view::npos ? n : end + 2;
    } else if (wordChar(c)) {
      const std::size_t start = i;
      while (i < n && wordChar(sql[i])) ++i;
      const std::string_view word = sql.substr(start, i - start);
      for (std::string_view bad : {"ROLLBACK", "FAIL"}) {
        if (word.size() == bad.size() && strncasecmp(word.data(), bad.data(), bad.size()) == 0) return bad;
      }
    } else {
      ++i;
    }
  }
  return std::nullopt;
}

const char* codeName(int rc) {
  switch (rc & 0xff) {
    case SQLITE_ERROR: return "SQLITE_ERROR";
    case SQLITE_INTERNAL: return "SQLITE_INTERNAL";
    case SQLITE_PERM: return "SQLITE_PERM";
    case SQLITE_ABORT: return "SQLITE_ABORT";
    case SQLITE_BUSY: return "SQLITE_BUSY";
    case SQLITE_LOCKED: return "SQLITE_LOCKED";
    case SQLITE_NOMEM: return "SQLITE_NOMEM";
    case SQLITE_READONLY: return "SQLITE_READONLY";
    case SQLITE_INTERRUPT: return "SQLITE_INTERRUPT";
    case SQLITE_IOERR: return "SQLITE_IOERR";
    case SQLITE_CORRUPT: return "SQLITE_CORRUPT";
    case SQLITE_FULL: return "SQLITE_FULL";
    case SQLITE_CANTOPEN: return "SQLITE_CANTOPEN";
    case SQLITE_SCHEMA: return "SQLITE_SCHEMA";
    case SQLITE_TOOBIG: return "SQLITE_TOOBIG";
    case SQLITE_CONSTRAINT: return "SQLITE_CONSTRAINT";
    case SQLITE_MISMATCH: return "SQLITE_MISMATCH";
    case SQLITE_MISUSE: return "SQLITE_MISUSE";
    case SQLITE_AUTH: return "SQLITE_AUTH";
    case SQLITE_RANGE: return "SQLITE_RANGE";
    default: return "SQLITE_ERROR";
  }
}

}  // namespace

bool ObjectSqlDb::noStatementIn(std::string_view sql) {
  std::size_t i = 0;
  while (i < sql.size()) {
    const char c = sql[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == ';') {
      ++i;
    } else if (sql.substr(i, 2) == "--") {
      const auto eol = sql.find('\n', i);
      i = eol == std::string_view::npos ? sql.size() : eol + 1;
    } else if (sql.substr(i, 2) == "/*") {
      const auto end = sql.find("*/", i + 2);
      i = end == std::string_view::npos ? sql.size() : end + 2;
    } else {
      return false;
    }
  }
  return true;
}

int ObjectSqlDb::authorize(void* self, int action, const char* a, const char* b, const char* dbName, const char*) {
  auto& me = *static_cast<ObjectSqlDb*>(self);
  if (!me.preparingUser_) return SQLITE_OK;
  auto deny = [&me](std::string why) {
    if (me.refusal_.empty()) me.refusal_ = std::move(why);
    return SQLITE_DENY;
  };
  if (dbName && std::strcmp(dbName, "main") != 0 && std::strcmp(dbName, "temp") != 0) {
    return deny("only the object's own database can be used (not \"" + std::string(dbName) + "\")");
  }
  auto named = [&](const char* name) {
    return internalName(name) ? deny("access to " + std::string(name) + " is prohibited: names starting with _cf_ are reserved")
                              : SQLITE_OK;
  };
  switch (action) {
    case SQLITE_SELECT:
    case SQLITE_RECURSIVE:
    case SQLITE_ANALYZE:
      return SQLITE_OK;
    case SQLITE_CREATE_TABLE:
    case SQLITE_DROP_TABLE:
    case SQLITE_CREATE_VIEW:
    case SQLITE_DROP_VIEW:
    case SQLITE_INSERT:
    case SQLITE_DELETE:
    case SQLITE_REINDEX:
    case SQLITE_READ:
    case SQLITE_UPDATE:
      return named(a);
    case SQLITE_CREATE_INDEX:
    case SQLITE_DROP_INDEX:
    case SQLITE_CREATE_TRIGGER:
    case SQLITE_DROP_TRIGGER:
    case SQLITE_ALTER_TABLE:
      return named(a) == SQLITE_OK ? named(b) : SQLITE_DENY;
    case SQLITE_CREATE_VTABLE:
    case SQLITE_DROP_VTABLE:
      if (!equalsIgnoringCase(b, "fts5") && !equalsIgnoringCase(b, "fts5vocab") && !equalsIgnoringCase(b, "rtree") &&
          !equalsIgnoringCase(b, "rtree_i32")) {
        return deny("virtual tables of module \"" + std::string(b ? b : "") + "\" are not available (fts5, fts5vocab, rtree are)");
      }
      return named(a);
    case SQLITE_FUNCTION:
      if (equalsIgnoringCase(b, "load_extension")) return deny("load_extension() is not available");
      return SQLITE_OK;
    case SQLITE_PRAGMA:
      if (pragmaAllowed(a, b)) return SQLITE_OK;
      return deny("PRAGMA " + std::string(a ? a : "") + (b ? "=" + std::string(b) : "") +
                  " is not allowed: only PRAGMAs that read (table_list, table_info, foreign_key_check, quick_check, ...) "
                  "or change this connection's checks (foreign_keys, defer_foreign_keys, ...) are");
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
      return deny(
          "To execute a transaction, please use storage().transaction() or storage().transactionSync() instead of the "
          "SQL BEGIN TRANSACTION or SAVEPOINT statements. The API is safer because it rolls back automatically on "
          "exceptions, and because it works with Durable Objects' automatic atomic write coalescing.");
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
      return deny("ATTACH and DETACH are not allowed: an object can use only its own database");
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_CREATE_TEMP_VIEW:
    case SQLITE_DROP_TEMP_TABLE:
    case SQLITE_DROP_TEMP_INDEX:
    case SQLITE_DROP_TEMP_TRIGGER:
    case SQLITE_DROP_TEMP_VIEW:
      return deny("temporary tables, indexes, triggers and views are not allowed");
    default:
      return deny("not authorized");
  }
}

void ObjectSqlDb::useAuthorsLimit(bool authors) {
  if (authors == authorsLimitOn_) return;
  authorsLimitOn_ = authors;
  sqlite3_limit(db_, SQLITE_LIMIT_LENGTH, authors ? authorsLengthLimit_ : std::max(authorsLengthLimit_, 4 * 1024 * 1024));
}

sqlite3_stmt* ObjectSqlDb::prepareUser(std::string_view sql, std::string_view* tail) {
  useAuthorsLimit(true);
  refusal_.clear();
  sqlite3_stmt* stmt = nullptr;
  const char* end = nullptr;
  preparingUser_ = true;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), 0, &stmt, &end);
  preparingUser_ = false;
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    std::string why = !refusal_.empty() ? refusal_ + ": SQLITE_AUTH" : errorMessage(rc);
    refusal_.clear();
    throw Error(ErrorCode::kInvalidArgument, std::move(why));
  }
  if (tail) *tail = sql.substr(static_cast<std::size_t>(end - sql.data()));
  if (!stmt) return nullptr;
  if (auto word = forbiddenConflictWord(std::string_view(sql.data(), static_cast<std::size_t>(end - sql.data())))) {
    sqlite3_finalize(stmt);
    throw Error(ErrorCode::kInvalidArgument,
                std::string(*word) +
                    " is not supported as conflict resolution or in RAISE(): it would undo more than the statement "
                    "(use ABORT, the default, or storage().transactionSync()): SQLITE_AUTH");
  }
  return stmt;
}

sqlite3_stmt* ObjectSqlDb::cachedUser(std::string_view sql) {
  if (auto it = userStatements_.find(sql); it != userStatements_.end()) {
    useAuthorsLimit(true);
    sqlite3_reset(it->second);
    sqlite3_clear_bindings(it->second);
    return it->second;
  }
  std::string_view tail;
  sqlite3_stmt* stmt = prepareUser(sql, &tail);
  if (!stmt) return nullptr;
  if (!noStatementIn(tail)) {
    sqlite3_finalize(stmt);
    return nullptr;
  }
  // A bound on what a misbehaving author can make us keep.
  if (userStatements_.size() >= 128) {
    for (auto& [text, s] : userStatements_) sqlite3_finalize(s);
    userStatements_.clear();
  }
  userStatements_.emplace(std::string(sql), stmt);
  return stmt;
}

std::string ObjectSqlDb::errorMessage(int rc) const {
  std::string msg = sqlite3_errmsg(db_);
  const int offset = sqlite3_error_offset(db_);
  if (offset >= 0) msg += " at offset " + std::to_string(offset);
  if ((rc & 0xff) == SQLITE_FULL) msg += " (the object's database is at its size limit)";
  return msg + ": " + codeName(rc);
}

}  // namespace durable::detail
