// durable/sql.h over ObjectSqlDb, and the object store's part in it: opening and replaying the
// object's database, carrying its log entries in the partition's batches, transactionSync().
#include "base/exec_context.h"
#include "base/log.h"
#include "storage/object_store.h"

#include <durable/error.h>
#include <durable/sql.h>
#include <durable/storage.h>

#include <algorithm>

namespace durable {

namespace detail {

// ---------------------------------------------------------------- ObjectStore: SQL

Task<void> ObjectStore::openSql() {
  if (sqlReady()) co_return;
  if (!sql_) {
    sql_ = std::make_unique<ObjectSqlDb>(sqlConfig_->file, sqlConfig_->limits);
    sqlStale_ = true;  // until the log's entries above what the file holds are in
  }
  // Entries in flight may yet land in the log: a replay must wait for them. A new instance
  // starts only after a reset, when the partition has failed every batch of the old one.
  auto log = partition_.readSqlLog(ns_, id_.raw(), sql_->committedLsn());
  std::vector<SqlLogEntry> entries;
  if (log.index() == 0) {
    entries = std::move(std::get<0>(log));
  } else {
    entries = co_await std::move(std::get<1>(log));
  }
  if (sqlReady()) co_return;
  sql_->lost();
  for (const auto& e : entries) {
    if (e.lsn <= sql_->appliedLsn()) continue;
    sql_->replay(ObjectSqlDb::Entry{e.lsn, e.records});
  }
  sqlStale_ = false;
}

ObjectSqlDb& ObjectStore::sqlForStatement() {
  if (!sqlConfig_) {
    throw Error(ErrorCode::kInvalidArgument,
                "SQL is not enabled for this Durable Object class: create it with new_sqlite_classes in a migration");
  }
  checkWritable();
  if (!sqlReady()) {
    resyncSql();
    if (!sqlReady()) {
      throw Error(ErrorCode::kUnavailable,
                  "the object's SQL database is catching up with its log after a failed write; try again",
                  {.retryable = true});
    }
  }
  return *sql_;
}

void ObjectStore::sqlLost() {
  if (sql_) sql_->lost();
  sqlStale_ = true;
  quiesce_.release();
  syncFrames_.clear();
  syncOwn_.reset();
  syncTxn_ = nullptr;
}

void ObjectStore::resyncSql() {
  if (sqlReady() || resyncing_ || inFlight_ != 0 || dirty_) return;
  resyncing_ = true;
  auto lock = std::make_shared<InputGate::Lock>(inputGate_.lock(kResyncFlow));
  ContextScope scope({currentContext().host, kResyncFlow});
  spawn(openSql(), std::function<void(Result<void>)>([this, lock](Result<void> r) {
          resyncing_ = false;
          if (!r.ok()) {
            logError("storage: object ", id_.toString(), ": its SQL database cannot catch up with its log: ",
                     describeException(r.error()));
          }
          lock->release();
        }));
}

void ObjectStore::wipeSql() {
  sqlForStatement().wipe();
  touch();
}

void ObjectStore::beginSyncTxn(TxnOverlay* enclosing) {
  ObjectSqlDb& db = sqlForStatement();
  SyncFrame frame;
  if (!enclosing) enclosing = syncTxn_;
  if (enclosing) {
    frame.target = enclosing;
    frame.snapshot = *enclosing;
  } else {
    syncOwn_ = std::make_unique<TxnOverlay>();
    syncTxn_ = frame.target = syncOwn_.get();
  }
  db.beginSavepoint();
  syncFrames_.push_back(std::move(frame));
}

void ObjectStore::endSyncTxn(bool keep) {
  // None: the object's storage was reset meanwhile, which undid everything.
  if (syncFrames_.empty()) return;
  SyncFrame frame = std::move(syncFrames_.back());
  syncFrames_.pop_back();
  if (sql_ && !sqlStale_) sql_->endSavepoint(keep);
  if (frame.snapshot) {
    if (!keep) *frame.target = std::move(*frame.snapshot);
    return;
  }
  auto own = std::move(syncOwn_);
  syncTxn_ = nullptr;
  if (keep) apply(std::move(*own));
}

void ObjectStore::beginSqlSavepoint() {
  if (sqlConfig_) sqlForStatement().beginSavepoint();
}

void ObjectStore::endSqlSavepoint(bool keep) {
  if (sql_ && !sqlStale_) sql_->endSavepoint(keep);
}

}  // namespace detail

// ---------------------------------------------------------------- durable/sql.h

const Value& SqlRow::operator[](std::string_view column) const {
  for (std::size_t i = columns_->size(); i-- > 0;) {
    if ((*columns_)[i] == column) return values_[i];
  }
  throw Error(ErrorCode::kInvalidArgument, "the row has no column named \"" + std::string(column.substr(0, 64)) + "\"");
}

const SqlRow& SqlCursor::one() const {
  if (rows_.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "Expected exactly one result from SQL query, but got no results.");
  }
  if (rows_.size() > 1) {
    throw Error(ErrorCode::kInvalidArgument, "Expected exactly one result from SQL query, but got multiple results.");
  }
  return rows_.front();
}

std::vector<std::vector<Value>> SqlCursor::raw() const {
  std::vector<std::vector<Value>> out;
  out.reserve(rows_.size());
  for (const auto& row : rows_) out.push_back(row.values());
  return out;
}

namespace {

// Whether `sql` holds nothing but blanks, semicolons and comments.
bool noStatementIn(std::string_view sql) {
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

struct Finalize {
  sqlite3_stmt* stmt;
  ~Finalize() { sqlite3_finalize(stmt); }
};

void bindAll(detail::ObjectSqlDb& db, sqlite3_stmt* stmt, const Value* bindings, std::size_t count) {
  if (static_cast<std::size_t>(sqlite3_bind_parameter_count(stmt)) != count) {
    throw Error(ErrorCode::kInvalidArgument,
                "Wrong number of parameter bindings for SQL query (the statement has " +
                    std::to_string(sqlite3_bind_parameter_count(stmt)) + ", " + std::to_string(count) + " given).");
  }
  for (std::size_t i = 0; i < count; ++i) {
    const Value& v = bindings[i];
    const int at = static_cast<int>(i + 1);
    int rc = SQLITE_OK;
    switch (v.type()) {
      case Value::Type::kNull: rc = sqlite3_bind_null(stmt, at); break;
      case Value::Type::kBool: rc = sqlite3_bind_int64(stmt, at, v.as<bool>() ? 1 : 0); break;
      case Value::Type::kInt: rc = sqlite3_bind_int64(stmt, at, v.as<std::int64_t>()); break;
      case Value::Type::kDouble: rc = sqlite3_bind_double(stmt, at, v.as<double>()); break;
      case Value::Type::kString: {
        std::string s = v.as<std::string>();
        rc = sqlite3_bind_text64(stmt, at, s.data(), s.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
        break;
      }
      case Value::Type::kBytes: {
        Bytes b = v.as<Bytes>();
        rc = sqlite3_bind_blob64(stmt, at, b.data.data(), b.data.size(), SQLITE_TRANSIENT);
        break;
      }
      case Value::Type::kJson:
        throw Error(ErrorCode::kInvalidArgument,
                    "binding " + std::to_string(at) +
                        ": a JSON array or object cannot be bound; bind its text and use SQLite's JSON functions");
    }
    if (rc != SQLITE_OK) {
      throw Error(ErrorCode::kInvalidArgument, "binding " + std::to_string(at) + ": " + db.errorMessage(rc));
    }
  }
}

Value columnValue(sqlite3_stmt* stmt, int i) {
  switch (sqlite3_column_type(stmt, i)) {
    case SQLITE_INTEGER: return Value(static_cast<std::int64_t>(sqlite3_column_int64(stmt, i)));
    case SQLITE_FLOAT: return Value(sqlite3_column_double(stmt, i));
    case SQLITE_TEXT: {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
      return Value(std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt, i))));
    }
    case SQLITE_BLOB: {
      const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt, i));
      return Value(Bytes(std::string(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(stmt, i)))));
    }
    default: return Value();
  }
}

}  // namespace

SqlCursor SqlStorage::execBound(std::string_view query, const Value* bindings, std::size_t count) {
  detail::ObjectSqlDb& db = store_->sqlForStatement();
  SqlCursor cursor;
  std::string_view rest = query;
  for (bool ran = false;;) {
    std::string_view tail;
    sqlite3_stmt* stmt = db.prepareUser(rest, &tail);
    if (!stmt) {
      if (!ran) throw Error(ErrorCode::kInvalidArgument, "SQL code did not contain a statement.");
      break;
    }
    Finalize finalize{stmt};
    const bool last = noStatementIn(tail);
    if (!last && sqlite3_bind_parameter_count(stmt) > 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  "When executing multiple SQL statements in a single call, only the last statement can have "
                  "parameters.");
    }
    if (last) bindAll(db, stmt, bindings, count);
    const int columns = sqlite3_column_count(stmt);
    std::shared_ptr<const std::vector<std::string>> names;
    if (last) {
      auto list = std::make_shared<std::vector<std::string>>();
      list->reserve(static_cast<std::size_t>(columns));
      for (int i = 0; i < columns; ++i) list->emplace_back(sqlite3_column_name(stmt, i));
      names = std::move(list);
    }
    std::vector<SqlRow> rows;
    std::uint64_t written = 0;
    const bool writes = !sqlite3_stmt_readonly(stmt);
    int rc;
    try {
      rc = db.runUser(
          stmt,
          [&] {
            if (!last) return;
            std::vector<Value> values;
            values.reserve(static_cast<std::size_t>(columns));
            for (int i = 0; i < columns; ++i) values.push_back(columnValue(stmt, i));
            rows.emplace_back(names, std::move(values));
          },
          written);
    } catch (...) {
      if (writes) store_->sqlWritten();
      throw;
    }
    if (writes) store_->sqlWritten();
    if (rc != SQLITE_DONE) throw Error(ErrorCode::kInvalidArgument, db.errorMessage(rc));
    ran = true;
    if (last) {
      cursor.columns_ = std::move(names);
      cursor.rowsWritten_ = written;
      cursor.rowsRead_ = static_cast<std::uint64_t>(sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_FULLSCAN_STEP, 0)) +
                         rows.size() + written;
      cursor.rows_ = std::move(rows);
      break;
    }
    rest = tail;
  }
  return cursor;
}

std::uint64_t SqlStorage::databaseSize() { return store_->sqlForStatement().databaseSize(); }

// ---------------------------------------------------------------- Storage

SqlStorage& Storage::sql() {
  store_->sqlForStatement();
  return sql_;
}

void Storage::beginTransactionSync() {
  if (!store_->sqliteBacked()) throw Error(ErrorCode::kInvalidArgument, "Durable Object is not backed by SQL.");
  store_->checkWritable();
  store_->beginSyncTxn(txn_);
}

void Storage::endTransactionSync(bool keep) { store_->endSyncTxn(keep); }

}  // namespace durable
