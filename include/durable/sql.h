// durable/sql.h: a SQLite-backed object's own SQL database (ctx.storage.sql in JavaScript).
//
// Classes created by a migration's new_sqlite_classes have one; storage().sql() of any other
// class throws. Statements run at once, synchronously, as on Cloudflare, and their writes are
// part of the turn like storage().put(): committed with the turn's other writes, and every
// reply or message sent afterwards waits until they are durable.
//
//   auto& sql = storage().sql();
//   sql.exec("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, text TEXT NOT NULL)");
//   sql.exec("INSERT INTO notes(text) VALUES (?)", text);
//   for (const SqlRow& row : sql.exec("SELECT id, text FROM notes WHERE id > ?", after)) {
//     std::int64_t id = row.get<std::int64_t>("id");
//     ...
//   }
//   std::int64_t n = sql.exec("UPDATE c SET n = n + 1 WHERE id = 1 RETURNING n").one().get<std::int64_t>("n");
//
// Values: a column is null, an integer (Value::Type::kInt), a double, text or a blob (Bytes).
// Bindings are any Value of those types (a bool binds as 1 or 0) and are always bound as
// parameters, never spliced into the text. JSON arrays and objects are refused: bind their
// text (Json serialized) and use SQLite's JSON functions.
//
// What is refused, with Error(kInvalidArgument) and nothing changed, as on Cloudflare: ATTACH,
// BEGIN/COMMIT/ROLLBACK/SAVEPOINT (use Storage::transactionSync() or transaction()), PRAGMAs
// other than those that read (table_list, table_info(t), index_list(t), foreign_key_check,
// quick_check, ...) or change this connection's checks (foreign_keys, defer_foreign_keys, ...),
// names starting with `_cf_` (the runtime's own), temporary objects, and, unlike Cloudflare,
// ROLLBACK or FAIL as conflict resolution (they would undo more than the statement, or leave
// part of it). Errors carry SQLite's message and code name, e.g. "no such table: t: SQLITE_ERROR".
//
// Limits ([durable] config, Cloudflare's by default): the database 10 GB
// (sql_max_database_bytes), a string, blob or row 2 MB, a statement 100 KB, 100 bound
// parameters and 100 columns per table.
//
// A statement's rows are read in full before exec() returns, so a cursor is a plain value:
// it may be kept across co_await and outlives later statements.
//
// Thread safety: an object's SqlStorage is used only from its own handlers, on its shard.
#pragma once

#include <durable/value.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace durable {

namespace detail {
class ObjectStore;
}  // namespace detail

// One result row: values by column name or position.
class SqlRow {
 public:
  SqlRow(std::shared_ptr<const std::vector<std::string>> columns, std::vector<Value> values)
      : columns_(std::move(columns)), values_(std::move(values)) {}

  // By name: the last column of that name (as a JavaScript row object keeps); throws
  // Error(kInvalidArgument) when there is none.
  const Value& operator[](std::string_view column) const;
  const Value& operator[](std::size_t index) const { return values_.at(index); }
  // The column converted as Value::as<T>() does.
  template <class T>
  T get(std::string_view column) const {
    return (*this)[column].template as<T>();
  }
  std::size_t size() const { return values_.size(); }
  const std::vector<std::string>& columnNames() const { return *columns_; }
  const std::vector<Value>& values() const& { return values_; }
  std::vector<Value> values() && { return std::move(values_); }

 private:
  std::shared_ptr<const std::vector<std::string>> columns_;
  std::vector<Value> values_;
};

// What exec() returns: the last statement's rows and columns, and what it read and wrote.
class SqlCursor {
 public:
  using const_iterator = std::vector<SqlRow>::const_iterator;

  const_iterator begin() const { return rows_.begin(); }
  const_iterator end() const { return rows_.end(); }
  std::size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }

  // Every row.
  const std::vector<SqlRow>& toArray() const& { return rows_; }
  std::vector<SqlRow> toArray() && { return std::move(rows_); }
  // The only row; throws Error(kInvalidArgument) when there are none or several.
  const SqlRow& one() const;
  // Rows as arrays of values, in column order (a column name that repeats keeps every value).
  std::vector<std::vector<Value>> raw() const;
  // Also for a statement that returned no rows; empty for one that has no columns.
  const std::vector<std::string>& columnNames() const { return *columns_; }
  // Rows the statement visited: those it scanned, returned or changed.
  std::uint64_t rowsRead() const { return rowsRead_; }
  // Rows it inserted, updated or deleted, those its triggers changed included.
  std::uint64_t rowsWritten() const { return rowsWritten_; }

 private:
  friend class SqlStorage;
  std::shared_ptr<const std::vector<std::string>> columns_ = std::make_shared<const std::vector<std::string>>();
  std::vector<SqlRow> rows_;
  std::uint64_t rowsRead_ = 0;
  std::uint64_t rowsWritten_ = 0;
};

class SqlStorage {
 public:
  // Runs `query`: one statement, or several separated by `;` (then only the last may have
  // parameters, and the cursor holds its rows). Each binding is a Value: exec("... ?1 ... ?2",
  // 42, "text").
  template <class... Args>
  SqlCursor exec(std::string_view query, Args&&... bindings) {
    const Value values[] = {Value(std::forward<Args>(bindings))..., Value()};
    return execBound(query, values, sizeof...(Args));
  }
  SqlCursor execBound(std::string_view query, const Value* bindings, std::size_t count);

  // Bytes the database takes (its pages in use), the key-value API's data included.
  std::uint64_t databaseSize();

 private:
  friend class Storage;
  explicit SqlStorage(detail::ObjectStore* store) : store_(store) {}
  detail::ObjectStore* store_;
};

}  // namespace durable
