// durable/sql.h over ObjectSqlDb, and the object store's part in it: opening and replaying the
// object's database, carrying its log entries in the partition's batches, transactionSync().
#include "base/exec_context.h"
#include "base/log.h"
#include "storage/object_store.h"

#include <durable/error.h>
#include <durable/sql.h>
#include <durable/storage.h>

#include <durable/clock.h>

#include <algorithm>
#include <cstdio>

namespace durable {

namespace detail {

// ---------------------------------------------------------------- ObjectStore: SQL

namespace {

std::string encodeBookmark(std::int64_t at, std::uint64_t lsn) {
  char text[40];
  std::snprintf(text, sizeof text, "%016llx-%016llx", static_cast<unsigned long long>(at),
                static_cast<unsigned long long>(lsn));
  return text;
}

struct Bookmark {
  std::int64_t at = 0;
  std::uint64_t lsn = 0;
};

std::optional<Bookmark> decodeBookmark(std::string_view text) {
  if (text.size() != 33 || text[16] != '-') return std::nullopt;
  auto hex = [](std::string_view digits, std::uint64_t& out) {
    out = 0;
    for (char c : digits) {
      int v;
      if (c >= '0' && c <= '9') {
        v = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v = c - 'a' + 10;
      } else {
        return false;
      }
      out = out << 4 | static_cast<std::uint64_t>(v);
    }
    return true;
  };
  std::uint64_t at = 0, lsn = 0;
  if (!hex(text.substr(0, 16), at) || !hex(text.substr(17), lsn) || at > static_cast<std::uint64_t>(INT64_MAX)) {
    return std::nullopt;
  }
  return Bookmark{static_cast<std::int64_t>(at), lsn};
}

std::string retentionText(std::int64_t ms) {
  if (ms % (24 * 3600 * 1000) == 0) return std::to_string(ms / (24 * 3600 * 1000)) + " days";
  return std::to_string(ms) + " ms";
}

}  // namespace

Task<void> ObjectStore::catchUpSql() {
  auto read = partition_.readSqlLog(ns_, id_.raw(), sql_->committedLsn());
  auto pending = answerOf(std::move(read));
  std::vector<SqlLogEntry> entries = co_await std::move(pending);
  if (sqlReady()) co_return;
  sql_->lost();
  for (const auto& e : entries) {
    if (e.lsn <= sql_->appliedLsn()) continue;
    if (auto target = ObjectSqlDb::restoreTarget(e.records)) {
      // A restore whose entry was durable when the process stopped, but not yet applied.
      auto build = buildState(*target);
      std::unique_ptr<ObjectSqlDb> state = co_await std::move(build);
      sql_->replaceWith(state->db(), e.lsn);
      sql_->snapshotNow(durable::now());
    } else {
      sql_->replay(ObjectSqlDb::Entry{e.lsn, e.records, e.at});
    }
  }
  sqlStale_ = false;
}

Task<void> ObjectStore::openSql() {
  if (!sqlMustOpen()) co_return;
  if (!sql_) {
    sql_ = std::make_unique<ObjectSqlDb>(sqlConfig_->file, sqlConfig_->limits, sqlConfig_->history);
    sqlStale_ = true;  // until the log's entries above what the file holds are in
  }
  if (!sqlReady()) {
    auto catchUp = catchUpSql();
    co_await std::move(catchUp);
  }
  {
    // Keys a build before 2026-12-07 kept in the partition (SQLite-backed objects' keys live in
    // their own database now): moved in, in one batch that also deletes them there.
    auto scan = partition_.scan(ns_, id_.raw(), "", true, std::nullopt, false, SIZE_MAX);
    auto pending = answerOf(std::move(scan));
    Rows legacy = co_await std::move(pending);
    if (!legacy.empty()) {
      std::vector<ObjectSqlDb::KvWrite> writes;
      writes.reserve(legacy.size());
      for (const auto& row : legacy) {
        if (!sql_->kvGet(row.key)) writes.push_back({row.key, &row.value});
      }
      sql_->kvWriteAll(false, writes);
      openDeleteAll_ = true;
      touch();
      logInfo("storage: object ", id_.toString(), ": moved ", legacy.size(), " keys into its SQL database");
    }
  }
  const auto armed = sql_->pendingRestore();
  if (!armed) co_return;
  const std::uint64_t target = *armed;
  // What the old instance wrote is durable first: the restore entry comes after all of it.
  auto before = waitDurable();
  co_await before;
  // The file commits in steps: what it still holds open is durable now, and goes in.
  sql_->commitIfDurable(durable::now());
  const std::uint64_t lsn = sql_->appendRestore(target, durable::now());
  touch();
  auto recorded = waitDurable();
  co_await recorded;
  auto build = buildState(target);
  std::unique_ptr<ObjectSqlDb> state = co_await std::move(build);
  sql_->replaceWith(state->db(), lsn);
  // The cache holds keys as they were before the restore: reads go to the restored file again.
  std::erase_if(cache_, [](const auto& entry) { return entry.second.seq == 0; });
  complete_ = false;
  // A snapshot of the restored state: a later rebuild starts from it, not from the history the
  // restore went back to, which retention may prune.
  sql_->snapshotNow(durable::now());
  logInfo("storage: object ", id_.toString(), ": restored to the state after its SQL log entry ", target);
}

Task<std::unique_ptr<ObjectSqlDb>> ObjectStore::buildState(std::uint64_t target) {
  auto state = std::make_unique<ObjectSqlDb>(std::filesystem::path(":memory:"), sqlConfig_->limits);
  std::uint64_t from = 0;
  if (auto snapshot = sql_->snapshotAtOrBefore(target)) {
    state->replaceWithFile(snapshot->file, snapshot->lsn);
    from = snapshot->lsn;
  }
  if (target > from) {
    auto read = partition_.readSqlLog(ns_, id_.raw(), from, target);
    auto pending = answerOf(std::move(read));
    std::vector<SqlLogEntry> entries = co_await std::move(pending);
    if (entries.size() != target - from || entries.front().lsn != from + 1) {
      throw Error(ErrorCode::kNotFound, "the object's history up to that bookmark is no longer kept");
    }
    for (const auto& e : entries) {
      if (auto inner = ObjectSqlDb::restoreTarget(e.records)) {
        auto build = buildState(*inner);
        std::unique_ptr<ObjectSqlDb> restored = co_await std::move(build);
        state->replaceWith(restored->db(), e.lsn);
      } else {
        state->replay(ObjectSqlDb::Entry{e.lsn, e.records, e.at});
      }
    }
  }
  co_return state;
}

Task<std::string> ObjectStore::currentBookmark() {
  ObjectSqlDb& db = sqlWithKv();
  const std::int64_t now = durable::now();
  db.cut(now);
  const std::uint64_t lsn = db.appliedLsn();
  const std::int64_t at = lsn ? db.lastAt() : now;
  // A bookmark names history that is kept: the entries it counts are durable first.
  auto durableNow = waitDurable();
  co_await durableNow;
  co_return encodeBookmark(at, lsn);
}

Task<std::string> ObjectStore::bookmarkForTime(std::int64_t time) {
  ObjectSqlDb& db = sqlForStatement();
  const std::int64_t now = durable::now();
  const std::int64_t retention = sqlConfig_->history.retentionMs;
  if (time > now) time = now;
  if (time < now - retention) {
    throw Error(ErrorCode::kInvalidArgument, "getBookmarkForTime(): the time is more than " + retentionText(retention) +
                                                 " ago, outside the retention of the object's history");
  }
  flushSqlKv();
  db.cut(now);
  auto durableNow = waitDurable();
  co_await durableNow;
  auto read = partition_.sqlLogPosition(ns_, id_.raw(), time);
  auto pending = answerOf(std::move(read));
  const SqlLogPosition position = co_await std::move(pending);
  if (position.lsn != 0) co_return encodeBookmark(position.at, position.lsn);
  // Before the first entry: the empty database, unless older entries were pruned.
  if (position.oldestLsn <= 1) co_return encodeBookmark(time, 0);
  if (auto s = sql_->snapshotAtOrBefore(position.oldestLsn - 1); s && s->lsn == position.oldestLsn - 1) {
    co_return encodeBookmark(s->at, s->lsn);
  }
  throw Error(ErrorCode::kNotFound, "getBookmarkForTime(): no history of the object is kept for that time");
}

Task<std::string> ObjectStore::restoreOnNextSession(std::string text) {
  ObjectSqlDb& db = sqlWithKv();
  const auto bookmark = decodeBookmark(text);
  if (!bookmark) {
    throw Error(ErrorCode::kInvalidArgument,
                "onNextSessionRestoreBookmark(): not a bookmark (getCurrentBookmark() and getBookmarkForTime() make them)");
  }
  const std::int64_t now = durable::now();
  db.cut(now);
  if (bookmark->lsn > db.appliedLsn()) {
    throw Error(ErrorCode::kInvalidArgument, "onNextSessionRestoreBookmark(): an unknown bookmark (it is ahead of "
                                             "this object's history)");
  }
  const std::int64_t retention = sqlConfig_->history.retentionMs;
  if (bookmark->at < now - retention) {
    throw Error(ErrorCode::kInvalidArgument, "onNextSessionRestoreBookmark(): the bookmark is more than " +
                                                 retentionText(retention) + " old, outside the retention of the object's history");
  }
  const std::string undo = encodeBookmark(db.appliedLsn() ? db.lastAt() : now, db.appliedLsn());
  auto durableNow = waitDurable();
  co_await durableNow;
  // The bookmark must name a state this object had: an entry (or a snapshot) with that LSN and time.
  bool known = false;
  if (bookmark->lsn == 0) {
    auto read = partition_.sqlLogPosition(ns_, id_.raw(), INT64_MAX);
    auto pending = answerOf(std::move(read));
    const SqlLogPosition position = co_await std::move(pending);
    known = position.oldestLsn <= 1;
  } else {
    auto read = partition_.readSqlLog(ns_, id_.raw(), bookmark->lsn - 1, bookmark->lsn);
    auto pending = answerOf(std::move(read));
    const std::vector<SqlLogEntry> entries = co_await std::move(pending);
    known = entries.size() == 1 && entries[0].at == bookmark->at;
    if (auto s = sql_->snapshotAtOrBefore(bookmark->lsn); !known && s && s->lsn == bookmark->lsn) {
      known = s->at == bookmark->at;
    }
  }
  if (!known) {
    throw Error(ErrorCode::kInvalidArgument,
                "onNextSessionRestoreBookmark(): an unknown bookmark (no state of this object has it)");
  }
  // Armed in the log too, so that a restart before the next instance still restores.
  sql_->armRestore(bookmark->lsn, durable::now());
  touch();
  auto armed = waitDurable();
  co_await armed;
  co_return undo;
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

void ObjectStore::commitSql() {
  if (!sql_ || sqlStale_) return;
  try {
    sql_->commitIfDurable(durable::now());
  } catch (const std::exception& e) {
    // As when a batch's report commits it: the log has every entry, the file catches up.
    logError("storage: object ", id_.toString(), ": its SQL database could not commit: ", e.what());
    sql_->markStale();
  }
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
  if (!sql_ || sqlReady() || resyncing_ || inFlight_ != 0 || dirty_) return;
  resyncing_ = true;
  auto lock = std::make_shared<InputGate::Lock>(inputGate_.lock(kResyncFlow));
  ContextScope scope({currentContext().host, kResyncFlow});
  // Catching up only: an armed restore waits for the next instance (openSql at its start).
  spawn(catchUpSql(), std::function<void(Result<void>)>([this, lock](Result<void> r) {
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
  // What was written before the savepoint stays, whatever becomes of it.
  ObjectSqlDb& db = sqlWithKv();
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
  if (frame.snapshot) {
    endSqlSavepointOf(keep);
    if (!keep) *frame.target = std::move(*frame.snapshot);
    return;
  }
  auto own = std::move(syncOwn_);
  syncTxn_ = nullptr;
  if (keep) {
    // Inside the savepoint: the key-value writes (a deleteAll among them) and the SQL commit
    // together or not at all.
    try {
      apply(std::move(*own));
    } catch (...) {
      endSqlSavepointOf(false);
      throw;
    }
  }
  endSqlSavepointOf(keep);
}

void ObjectStore::endSqlSavepointOf(bool keep) {
  if (!sql_ || sqlStale_) return;
  sql_->endSavepoint(keep);
  if (!keep && kvWrittenInSavepoint_) {
    // Everything but what was just undone is in the database (nothing waits while a savepoint
    // is open): the database answers from here.
    cache_.clear();
    complete_ = false;
    openKeys_.clear();
    sqlKvPending_ = false;
  }
  if (!sql_->inSavepoint()) kvWrittenInSavepoint_ = false;
}

void ObjectStore::beginSqlSavepoint() {
  if (sqlConfig_) sqlWithKv().beginSavepoint();
}

std::uint64_t ObjectStore::sqlDatabaseSize() { return sqlWithKv().databaseSize(); }

void ObjectStore::flushSqlKv() {
  if (!sqlKvPending_) return;
  std::vector<ObjectSqlDb::KvWrite> rows;
  for (const auto& key : openKeys_) {
    auto it = cache_.find(key);
    if (it == cache_.end() || !it->second.sqlPending) continue;
    const auto& value = encoded(it->second);
    rows.push_back({it->first, value ? &*value : nullptr});
  }
  try {
    if (!rows.empty()) sql_->kvWriteAll(false, rows);
  } catch (const std::exception& e) {
    logError("storage: object ", id_.toString(), ": its key-value writes could not go into its SQL database: ", e.what());
    abandonOpenBatch(std::make_exception_ptr(Error(
        ErrorCode::kUnavailable, std::string("storage: the object's writes failed, and none of its last ones were kept: ") +
                                     e.what(),
        {.retryable = true})));
    throw;
  }
  for (const auto& key : openKeys_) {
    if (auto it = cache_.find(key); it != cache_.end()) it->second.sqlPending = false;
  }
  sqlKvPending_ = false;
}

void ObjectStore::abandonOpenBatch(std::exception_ptr why) {
  for (const auto& key : openKeys_) {
    if (auto it = cache_.find(key); it != cache_.end() && it->second.seq == kOpen) cache_.erase(it);
  }
  openKeys_.clear();
  complete_ = false;
  sqlKvPending_ = false;
  openDeleteAll_ = false;
  if (alarmSeq_ == kOpen) {
    alarmSeq_ = 0;
    alarmLoaded_ = false;
    alarm_.reset();
  }
  // The file rolls back to what it committed and drops what the batch recorded; it replays the
  // log's entries above that once nothing is in flight.
  if (sql_) sqlLost();
  openHold_.release(why);
  if (emitting_) {
    resetAfterEmit_ = true;
  } else if (onReset_) {
    onReset_();
  }
}

void ObjectStore::endSqlSavepoint(bool keep) { endSqlSavepointOf(keep); }

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
  // One statement, the common case, is prepared once per text and kept.
  sqlite3_stmt* cached = db.cachedUser(query);
  for (bool ran = false;;) {
    std::string_view tail;
    sqlite3_stmt* stmt = cached ? cached : db.prepareUser(rest, &tail);
    if (!stmt) {
      if (!ran) throw Error(ErrorCode::kInvalidArgument, "SQL code did not contain a statement.");
      break;
    }
    Finalize finalize{cached ? nullptr : stmt};
    const bool last = cached || detail::ObjectSqlDb::noStatementIn(tail);
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

std::uint64_t SqlStorage::databaseSize() { return store_->sqlDatabaseSize(); }

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

Task<std::string> Storage::getCurrentBookmark() { return store_->currentBookmark(); }

Task<std::string> Storage::getBookmarkForTime(std::int64_t epochMillis) { return store_->bookmarkForTime(epochMillis); }

Task<std::string> Storage::onNextSessionRestoreBookmark(std::string bookmark) {
  return store_->restoreOnNextSession(std::move(bookmark));
}

}  // namespace durable
