// The preupdate hook is compiled into Debian's libsqlite3 (the session extension needs it);
// its declarations are behind this macro.
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "storage/sql_changes.h"

#include <durable/error.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

namespace durable::detail {

namespace {

// Record layout: a tag byte, then
//   'S' text                                         a schema statement
//   'I' table newRowid count values                  a row inserted
//   'U' table oldRowid newRowid count old... new...  a row updated
//   'D' table oldRowid count values                  a row deleted
//   'K' key value                                    a key of the key-value API (_cf_KV) written
//   'X' key                                          a key of the key-value API deleted
// where text and table are a varint length and bytes, a rowid 8 bytes, a count a varint and a
// value a type byte (SQLite's) and its payload.

void putVarint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void putFixed(std::string& out, std::uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 8);
}

void putBytes(std::string& out, const void* p, std::size_t n) {
  putVarint(out, n);
  out.append(static_cast<const char*>(p), n);
}

void putValue(std::string& out, sqlite3_value* v) {
  const int type = v ? sqlite3_value_type(v) : SQLITE_NULL;
  out.push_back(static_cast<char>(type));
  switch (type) {
    case SQLITE_INTEGER: putFixed(out, static_cast<std::uint64_t>(sqlite3_value_int64(v))); break;
    case SQLITE_FLOAT: {
      const double d = sqlite3_value_double(v);
      std::uint64_t bits;
      std::memcpy(&bits, &d, 8);
      putFixed(out, bits);
      break;
    }
    case SQLITE_TEXT: putBytes(out, sqlite3_value_text(v), static_cast<std::size_t>(sqlite3_value_bytes(v))); break;
    case SQLITE_BLOB: putBytes(out, sqlite3_value_blob(v), static_cast<std::size_t>(sqlite3_value_bytes(v))); break;
    default: break;
  }
}

[[noreturn]] void corrupt(const std::string& why) { throw Error(ErrorCode::kInternal, "SQL change records: " + why); }

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool done() const { return pos_ >= in_.size(); }
  char byte() {
    if (pos_ >= in_.size()) corrupt("truncated");
    return in_[pos_++];
  }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const auto b = static_cast<unsigned char>(byte());
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    corrupt("a bad varint");
  }
  std::uint64_t fixed() {
    if (in_.size() - pos_ < 8) corrupt("truncated");
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in_[pos_ + i])) << (8 * i);
    pos_ += 8;
    return v;
  }
  std::string_view bytes() {
    const auto n = varint();
    if (in_.size() - pos_ < n) corrupt("truncated");
    auto s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
};

struct Value {
  int type = SQLITE_NULL;
  std::int64_t i = 0;
  double d = 0;
  std::string_view bytes;
};

Value readValue(Reader& r) {
  Value v;
  v.type = r.byte();
  switch (v.type) {
    case SQLITE_INTEGER: v.i = static_cast<std::int64_t>(r.fixed()); break;
    case SQLITE_FLOAT: {
      const std::uint64_t bits = r.fixed();
      std::memcpy(&v.d, &bits, 8);
      break;
    }
    case SQLITE_TEXT:
    case SQLITE_BLOB: v.bytes = r.bytes(); break;
    case SQLITE_NULL: break;
    default: corrupt("a bad value type");
  }
  return v;
}

void bindValue(sqlite3_stmt* s, int i, const Value& v) {
  switch (v.type) {
    case SQLITE_INTEGER: sqlite3_bind_int64(s, i, v.i); break;
    case SQLITE_FLOAT: sqlite3_bind_double(s, i, v.d); break;
    case SQLITE_TEXT: sqlite3_bind_text(s, i, v.bytes.data(), static_cast<int>(v.bytes.size()), SQLITE_TRANSIENT); break;
    case SQLITE_BLOB: sqlite3_bind_blob(s, i, v.bytes.data(), static_cast<int>(v.bytes.size()), SQLITE_TRANSIENT); break;
    default: sqlite3_bind_null(s, i); break;
  }
}

std::string quoted(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// Whether the statement's first keyword is CREATE, DROP or ALTER (after blanks and comments).
bool changesSchema(const char* sql) {
  std::string_view s = sql ? sql : "";
  for (;;) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r' ||
                          s.front() == '\f' || s.front() == ';')) {
      s.remove_prefix(1);
    }
    if (s.starts_with("--")) {
      const auto eol = s.find('\n');
      s = eol == std::string_view::npos ? std::string_view() : s.substr(eol + 1);
    } else if (s.starts_with("/*")) {
      const auto close = s.find("*/", 2);
      s = close == std::string_view::npos ? std::string_view() : s.substr(close + 2);
    } else {
      break;
    }
  }
  auto keyword = [&s](std::string_view k) {
    if (s.size() < k.size()) return false;
    for (std::size_t i = 0; i < k.size(); ++i) {
      char c = s[i];
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      if (c != k[i]) return false;
    }
    return s.size() == k.size() || !((s[k.size()] >= 'A' && s[k.size()] <= 'Z') || (s[k.size()] >= 'a' && s[k.size()] <= 'z') ||
                                     s[k.size()] == '_' || (s[k.size()] >= '0' && s[k.size()] <= '9'));
  };
  return keyword("CREATE") || keyword("DROP") || keyword("ALTER");
}

struct Stmt {
  sqlite3_stmt* s = nullptr;
  Stmt() = default;
  Stmt(sqlite3* db, const std::string& sql) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      throw Error(ErrorCode::kInternal, "SQL change replay: " + std::string(sqlite3_errmsg(db)) + " in: " + sql);
    }
  }
  Stmt(Stmt&& o) noexcept : s(o.s) { o.s = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept {
    std::swap(s, o.s);
    return *this;
  }
  ~Stmt() { sqlite3_finalize(s); }
};

// What replay needs of one table, read once per table between schema statements.
struct Table {
  std::vector<std::string> columns;  // every column, in order, as the preupdate hook counts them
  std::vector<bool> generated;       // computed: never written
  std::vector<int> key;              // WITHOUT ROWID: the primary key's columns, in key order
  bool withoutRowid = false;
  Stmt insert, update, remove;
};

class Replayer {
 public:
  explicit Replayer(sqlite3* db) : db_(db) {}

  void schema(std::string_view text) {
    tables_.clear();
    char* err = nullptr;
    const std::string sql(text);
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string why = err ? err : "unknown error";
      sqlite3_free(err);
      throw Error(ErrorCode::kInternal, "SQL change replay: " + why + " in: " + sql);
    }
  }

  Table& table(std::string_view name) {
    auto it = tables_.find(name);
    if (it != tables_.end()) return *it->second;
    auto t = std::make_unique<Table>();
    Stmt info(db_, "SELECT name, pk, hidden FROM pragma_table_xinfo(?1)");
    sqlite3_bind_text(info.s, 1, name.data(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
    std::vector<std::pair<int, int>> pk;  // (position in key, column)
    while (sqlite3_step(info.s) == SQLITE_ROW) {
      const int column = static_cast<int>(t->columns.size());
      t->columns.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(info.s, 0)));
      const int hidden = sqlite3_column_int(info.s, 2);
      t->generated.push_back(hidden == 2 || hidden == 3);
      if (const int k = sqlite3_column_int(info.s, 1); k > 0) pk.emplace_back(k, column);
    }
    if (t->columns.empty()) corrupt("no table " + std::string(name));
    {
      sqlite3_stmt* probe = nullptr;
      const std::string sql = "SELECT rowid FROM " + quoted(name) + " LIMIT 0";
      t->withoutRowid = sqlite3_prepare_v2(db_, sql.c_str(), -1, &probe, nullptr) != SQLITE_OK;
      sqlite3_finalize(probe);
    }
    std::sort(pk.begin(), pk.end());
    for (const auto& [_, column] : pk) t->key.push_back(column);

    std::string cols, params, sets, where;
    int n = 0;
    if (!t->withoutRowid) {
      cols = "rowid";
      params = "?";
      n = 1;
    }
    for (std::size_t c = 0; c < t->columns.size(); ++c) {
      if (t->generated[c]) continue;
      cols += std::string(cols.empty() ? "" : ", ") + quoted(t->columns[c]);
      params += std::string(params.empty() ? "" : ", ") + "?";
      sets += std::string(sets.empty() ? "" : ", ") + quoted(t->columns[c]) + " = ?";
      ++n;
    }
    if (t->withoutRowid) {
      for (int c : t->key) where += std::string(where.empty() ? "" : " AND ") + quoted(t->columns[c]) + " IS ?";
    } else {
      where = "rowid = ?";
    }
    t->insert = Stmt(db_, "INSERT OR REPLACE INTO " + quoted(name) + " (" + cols + ") VALUES (" + params + ")");
    t->update = Stmt(db_, "UPDATE " + quoted(name) + " SET " + sets + " WHERE " + where);
    t->remove = Stmt(db_, "DELETE FROM " + quoted(name) + " WHERE " + where);
    return *tables_.emplace(std::string(name), std::move(t)).first->second;
  }

  void step(sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE) throw Error(ErrorCode::kInternal, "SQL change replay: " + std::string(sqlite3_errmsg(db_)));
  }

  // Binds the row's written columns from `values` from parameter `first` on.
  int bindColumns(const Table& t, sqlite3_stmt* s, const std::vector<Value>& values, int first) {
    int i = first;
    for (std::size_t c = 0; c < t.columns.size(); ++c) {
      if (!t.generated[c]) bindValue(s, i++, values[c]);
    }
    return i;
  }

  void bindKey(const Table& t, sqlite3_stmt* s, int first, std::int64_t rowid, const std::vector<Value>& old) {
    if (!t.withoutRowid) {
      sqlite3_bind_int64(s, first, rowid);
      return;
    }
    for (int c : t.key) bindValue(s, first++, old[static_cast<std::size_t>(c)]);
  }

  // 'K' or 'X': the key (and the value) from `r`.
  void kv(bool put, Reader& r) {
    Stmt& s = put ? kvPut_ : kvDelete_;
    if (!s.s) {
      s = Stmt(db_, put ? "INSERT OR REPLACE INTO _cf_KV(key, value) VALUES (?1, ?2)" : "DELETE FROM _cf_KV WHERE key = ?1");
    }
    const std::string_view key = r.bytes();
    sqlite3_bind_text(s.s, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    if (put) {
      const std::string_view value = r.bytes();
      sqlite3_bind_blob(s.s, 2, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
    }
    step(s.s);
  }

  void insert(Table& t, std::int64_t rowid, const std::vector<Value>& row) {
    int i = 1;
    if (!t.withoutRowid) sqlite3_bind_int64(t.insert.s, i++, rowid);
    bindColumns(t, t.insert.s, row, i);
    step(t.insert.s);
  }

 private:
  sqlite3* db_;
  std::map<std::string, std::unique_ptr<Table>, std::less<>> tables_;
  Stmt kvPut_, kvDelete_;
};

std::vector<Value> readRow(Reader& r, std::size_t count) {
  std::vector<Value> row;
  row.reserve(count);
  for (std::size_t i = 0; i < count; ++i) row.push_back(readValue(r));
  return row;
}

}  // namespace

SqlChangeRecorder::SqlChangeRecorder(sqlite3* db) : db_(db) { sqlite3_preupdate_hook(db_, &onPreupdate, this); }

SqlChangeRecorder::~SqlChangeRecorder() { sqlite3_preupdate_hook(db_, nullptr, nullptr); }

void SqlChangeRecorder::begin(sqlite3_stmt* stmt) {
  active_ = true;
  statementStart_ = records_.size();
  statementRowsStart_ = rows_;
  inSchemaStatement_ = !sqlite3_stmt_readonly(stmt) && changesSchema(sqlite3_sql(stmt));
}

void SqlChangeRecorder::end(sqlite3_stmt* stmt, int rc) {
  const bool schema = inSchemaStatement_;
  inSchemaStatement_ = false;
  active_ = false;
  if (rc != SQLITE_DONE) {
    // A failed statement changed nothing (SQLite rolled it back): neither did its records.
    records_.resize(statementStart_);
    rows_ = statementRowsStart_;
    return;
  }
  if (schema) {
    char* text = sqlite3_expanded_sql(stmt);
    if (!text) throw Error(ErrorCode::kResourceExhausted, "SQL change recorder: out of memory");
    records_.push_back('S');
    putBytes(records_, text, std::strlen(text));
    sqlite3_free(text);
  }
}

void SqlChangeRecorder::onPreupdate(void* self, sqlite3* db, int op, const char* dbName, const char* table,
                                    sqlite3_int64 oldRowid, sqlite3_int64 newRowid) {
  auto& r = *static_cast<SqlChangeRecorder*>(self);
  // A schema statement's rows are redone by its text; a temp table is the connection's own.
  if (!r.active_ || r.inSchemaStatement_ || std::strcmp(dbName, "main") != 0) return;
  ++r.rows_;
  std::string& out = r.records_;
  const int count = sqlite3_preupdate_count(db);
  auto values = [&](bool old) {
    for (int i = 0; i < count; ++i) {
      sqlite3_value* v = nullptr;
      if (old) {
        sqlite3_preupdate_old(db, i, &v);
      } else {
        sqlite3_preupdate_new(db, i, &v);
      }
      putValue(out, v);
    }
  };
  switch (op) {
    case SQLITE_INSERT:
      out.push_back('I');
      putBytes(out, table, std::strlen(table));
      putFixed(out, static_cast<std::uint64_t>(newRowid));
      putVarint(out, static_cast<std::uint64_t>(count));
      values(false);
      break;
    case SQLITE_UPDATE:
      out.push_back('U');
      putBytes(out, table, std::strlen(table));
      putFixed(out, static_cast<std::uint64_t>(oldRowid));
      putFixed(out, static_cast<std::uint64_t>(newRowid));
      putVarint(out, static_cast<std::uint64_t>(count));
      values(true);
      values(false);
      break;
    case SQLITE_DELETE:
      out.push_back('D');
      putBytes(out, table, std::strlen(table));
      putFixed(out, static_cast<std::uint64_t>(oldRowid));
      putVarint(out, static_cast<std::uint64_t>(count));
      values(true);
      break;
    default: break;
  }
}

void SqlChangeRecorder::recordKvPut(std::string_view key, std::string_view value) {
  records_.push_back('K');
  putBytes(records_, key.data(), key.size());
  putBytes(records_, value.data(), value.size());
}

void SqlChangeRecorder::recordKvDelete(std::string_view key) {
  records_.push_back('X');
  putBytes(records_, key.data(), key.size());
}

std::string SqlChangeRecorder::take() {
  std::string out;
  out.swap(records_);
  return out;
}

std::string SqlChangeRecorder::takePrefix(std::size_t n) {
  if (n >= records_.size()) return take();
  std::string out = records_.substr(0, n);
  records_.erase(0, n);
  return out;
}

void SqlChangeRecorder::discard(std::size_t toSize) {
  if (toSize < records_.size()) records_.resize(toSize);
}

void replaySqlChanges(sqlite3* db, std::string_view records) {
  // The out-parameter reports the setting after the call: ask first (-1 changes nothing).
  int triggersWere = 1;
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, -1, &triggersWere);
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, nullptr);
  struct Restore {
    sqlite3* db;
    int was;
    ~Restore() { sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, was, nullptr); }
  } restore{db, triggersWere};

  Replayer replay(db);
  Reader r(records);
  while (!r.done()) {
    const char tag = r.byte();
    if (tag == 'S') {
      replay.schema(r.bytes());
      continue;
    }
    if (tag == 'K' || tag == 'X') {
      replay.kv(tag == 'K', r);
      continue;
    }
    if (tag != 'I' && tag != 'U' && tag != 'D') corrupt("a bad record tag");
    Table& t = replay.table(r.bytes());
    if (tag == 'I') {
      const auto rowid = static_cast<std::int64_t>(r.fixed());
      const auto row = readRow(r, r.varint());
      if (row.size() != t.columns.size()) corrupt("a row of " + std::to_string(row.size()) + " values for a table of " +
                                                  std::to_string(t.columns.size()) + " columns");
      replay.insert(t, rowid, row);
    } else if (tag == 'U') {
      const auto oldRowid = static_cast<std::int64_t>(r.fixed());
      const auto newRowid = static_cast<std::int64_t>(r.fixed());
      const std::size_t count = r.varint();
      const auto old = readRow(r, count);
      const auto row = readRow(r, count);
      if (count != t.columns.size()) corrupt("a row that does not fit its table");
      if (!t.withoutRowid && oldRowid != newRowid) {
        // The row moved: gone from its old rowid, whole at its new one.
        sqlite3_bind_int64(t.remove.s, 1, oldRowid);
        replay.step(t.remove.s);
        replay.insert(t, newRowid, row);
      } else {
        const int next = replay.bindColumns(t, t.update.s, row, 1);
        replay.bindKey(t, t.update.s, next, oldRowid, old);
        replay.step(t.update.s);
      }
    } else {
      const auto oldRowid = static_cast<std::int64_t>(r.fixed());
      const auto old = readRow(r, r.varint());
      if (old.size() != t.columns.size()) corrupt("a row that does not fit its table");
      replay.bindKey(t, t.remove.s, 1, oldRowid, old);
      replay.step(t.remove.s);
    }
  }
}

}  // namespace durable::detail
