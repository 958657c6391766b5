#include "storage/partition.h"

#include "runtime/log.h"
#include "storage/fault_vfs.h"
#include "storage/object_store.h"

#include <durable/error.h>

#include <boost/asio/post.hpp>

#include <cstring>

namespace durable::detail {

namespace {

[[noreturn]] void fail(sqlite3* db, std::string_view what) {
  throw Error(ErrorCode::kUnavailable, std::string(what) + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
}

void check(sqlite3* db, int rc, std::string_view what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) fail(db, what);
}

void bindBlob(sqlite3_stmt* s, int i, const void* p, std::size_t n) {
  // A zero-length blob must still be a blob, not NULL: pass a non-null pointer.
  static const char kEmpty = 0;
  sqlite3_bind_blob(s, i, n ? p : &kEmpty, static_cast<int>(n), SQLITE_STATIC);
}

void bindObject(sqlite3_stmt* s, std::int64_t ns, const ObjectId::Raw& id) {
  sqlite3_bind_int64(s, 1, ns);
  bindBlob(s, 2, id.data(), id.size());
}

std::string_view columnBlob(sqlite3_stmt* s, int i) {
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

}  // namespace

Statement::Statement(sqlite3* db, std::string_view sql) {
  check(db, sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &s_, nullptr),
        "prepare");
}

Statement& Statement::operator=(Statement&& o) noexcept {
  if (this != &o) {
    if (s_) sqlite3_finalize(s_);
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}

Statement::~Statement() {
  if (s_) sqlite3_finalize(s_);
}

void execSql(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw Error(ErrorCode::kUnavailable, std::string("sqlite: ") + msg + " in: " + sql);
  }
}

sqlite3* openDatabase(const std::filesystem::path& path, config::Durability durability, bool readOnly,
                      const char* vfs) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_NOMUTEX | (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  if (sqlite3_open_v2(path.c_str(), &db, flags, vfs) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw Error(ErrorCode::kUnavailable, "cannot open " + path.string() + ": " + msg);
  }
  sqlite3_busy_timeout(db, 5000);
  try {
    if (!readOnly) {
      execSql(db, "PRAGMA journal_mode=WAL");
      execSql(db, durability == config::Durability::kFull ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    }
    execSql(db, "PRAGMA cache_size=-16384");
  } catch (...) {
    sqlite3_close(db);
    throw;
  }
  return db;
}

Partition::Partition(int index, std::filesystem::path file, config::Durability durability,
                     boost::asio::io_context& shard, bool faultInjection)
    : index_(index), file_(std::move(file)), shard_(shard) {
  writer_ = openDatabase(file_, durability, false, faultInjection ? faultVfsName() : nullptr);
  execSql(writer_,
          "CREATE TABLE IF NOT EXISTS kv(ns INTEGER NOT NULL, obj BLOB NOT NULL, key BLOB NOT NULL, "
          "value BLOB NOT NULL, PRIMARY KEY(ns, obj, key)) WITHOUT ROWID;"
          "CREATE TABLE IF NOT EXISTS alarms(ns INTEGER NOT NULL, obj BLOB NOT NULL, time INTEGER NOT NULL, "
          "PRIMARY KEY(ns, obj)) WITHOUT ROWID;"
          "CREATE INDEX IF NOT EXISTS alarms_by_time ON alarms(time);");
  upsertStmt_ = Statement(writer_, "INSERT OR REPLACE INTO kv(ns, obj, key, value) VALUES(?1, ?2, ?3, ?4)");
  deleteStmt_ = Statement(writer_, "DELETE FROM kv WHERE ns = ?1 AND obj = ?2 AND key = ?3");
  deleteAllStmt_ = Statement(writer_, "DELETE FROM kv WHERE ns = ?1 AND obj = ?2");
  setAlarmStmt_ = Statement(writer_, "INSERT OR REPLACE INTO alarms(ns, obj, time) VALUES(?1, ?2, ?3)");
  deleteAlarmStmt_ = Statement(writer_, "DELETE FROM alarms WHERE ns = ?1 AND obj = ?2");
  beginStmt_ = Statement(writer_, "BEGIN IMMEDIATE");
  commitStmt_ = Statement(writer_, "COMMIT");
  rollbackStmt_ = Statement(writer_, "ROLLBACK");

  reader_ = openDatabase(file_, durability, true);
  readStmt_ = Statement(reader_, "SELECT value FROM kv WHERE ns = ?1 AND obj = ?2 AND key = ?3");
  readAlarmStmt_ = Statement(reader_, "SELECT time FROM alarms WHERE ns = ?1 AND obj = ?2");

  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), ("commit-" + std::to_string(index_)).c_str());
    commitLoop();
  });
}

Partition::~Partition() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  readStmt_ = {};
  readAlarmStmt_ = {};
  for (auto& s : listStmts_) s = {};
  upsertStmt_ = {};
  deleteStmt_ = {};
  deleteAllStmt_ = {};
  setAlarmStmt_ = {};
  deleteAlarmStmt_ = {};
  beginStmt_ = {};
  commitStmt_ = {};
  rollbackStmt_ = {};
  sqlite3_close(reader_);
  sqlite3_close(writer_);
}

std::optional<std::string> Partition::read(std::int64_t ns, const ObjectId::Raw& id, std::string_view key) {
  sqlite3_stmt* s = readStmt_.get();
  ResetGuard guard{s};
  bindObject(s, ns, id);
  bindBlob(s, 3, key.data(), key.size());
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) return std::string(columnBlob(s, 0));
  check(reader_, rc, "read");
  return std::nullopt;
}

std::optional<std::int64_t> Partition::readAlarm(std::int64_t ns, const ObjectId::Raw& id) {
  sqlite3_stmt* s = readAlarmStmt_.get();
  ResetGuard guard{s};
  bindObject(s, ns, id);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) return sqlite3_column_int64(s, 0);
  check(reader_, rc, "read alarm");
  return std::nullopt;
}

Statement& Partition::listStatement(bool lowerInclusive, bool hasUpper, bool reverse) {
  auto& slot = listStmts_[(lowerInclusive ? 1 : 0) | (hasUpper ? 2 : 0) | (reverse ? 4 : 0)];
  if (!slot) {
    std::string sql = "SELECT key, value FROM kv WHERE ns = ?1 AND obj = ?2 AND key ";
    sql += lowerInclusive ? ">= ?3" : "> ?3";
    if (hasUpper) sql += " AND key < ?4";
    sql += reverse ? " ORDER BY key DESC" : " ORDER BY key ASC";
    slot = Statement(reader_, sql);
  }
  return slot;
}

void Partition::scan(std::int64_t ns, const ObjectId::Raw& id, std::string_view lower, bool lowerInclusive,
                     const std::optional<std::string>& upper, bool reverse,
                     const std::function<bool(std::string_view, std::string_view)>& fn) {
  sqlite3_stmt* s = listStatement(lowerInclusive, upper.has_value(), reverse).get();
  ResetGuard guard{s};
  bindObject(s, ns, id);
  bindBlob(s, 3, lower.data(), lower.size());
  if (upper) bindBlob(s, 4, upper->data(), upper->size());
  for (;;) {
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return;
    if (rc != SQLITE_ROW) fail(reader_, "list");
    if (!fn(columnBlob(s, 0), columnBlob(s, 1))) return;
  }
}

void Partition::purgeNamespace(std::int64_t ns) {
  Statement kv(writer_, "DELETE FROM kv WHERE ns = ?1");
  Statement alarms(writer_, "DELETE FROM alarms WHERE ns = ?1");
  sqlite3_bind_int64(kv.get(), 1, ns);
  sqlite3_bind_int64(alarms.get(), 1, ns);
  check(writer_, sqlite3_step(kv.get()), "purge");
  check(writer_, sqlite3_step(alarms.get()), "purge");
}

std::vector<ObjectId::Raw> Partition::listObjects(std::int64_t ns) {
  Statement q(reader_, "SELECT DISTINCT obj FROM kv WHERE ns = ?1 UNION SELECT obj FROM alarms WHERE ns = ?1");
  sqlite3_bind_int64(q.get(), 1, ns);
  std::vector<ObjectId::Raw> out;
  for (;;) {
    int rc = sqlite3_step(q.get());
    if (rc == SQLITE_DONE) return out;
    if (rc != SQLITE_ROW) fail(reader_, "list objects");
    auto blob = columnBlob(q.get(), 0);
    if (blob.size() != ObjectId::kBytes) continue;
    ObjectId::Raw id;
    std::memcpy(id.data(), blob.data(), id.size());
    out.push_back(id);
  }
}

void Partition::loadAlarms(const std::function<void(std::int64_t, const ObjectId::Raw&, std::int64_t)>& fn) {
  Statement all(reader_, "SELECT ns, obj, time FROM alarms");
  for (;;) {
    int rc = sqlite3_step(all.get());
    if (rc == SQLITE_DONE) return;
    if (rc != SQLITE_ROW) fail(reader_, "load alarms");
    auto blob = columnBlob(all.get(), 1);
    if (blob.size() != ObjectId::kBytes) continue;
    ObjectId::Raw id;
    std::memcpy(id.data(), blob.data(), id.size());
    fn(sqlite3_column_int64(all.get(), 0), id, sqlite3_column_int64(all.get(), 2));
  }
}

void Partition::markDirty(ObjectStore* store) {
  if (dirtySet_.insert(store).second) dirty_.push_back(store);
  if (!flushPosted_) {
    flushPosted_ = true;
    boost::asio::post(shard_, [this] {
      flushPosted_ = false;
      flush();
    });
  }
}

Future<void> Partition::waitDurable(std::uint64_t seq) {
  if (seq <= committedSeq_) return Future<void>::fromValue({});
  Promise<void> p;
  auto f = p.future();
  waiters_.push_back({seq, [p](std::exception_ptr e) mutable {
                        if (e) {
                          p.setError(e);
                        } else {
                          p.setValue();
                        }
                      }});
  return f;
}

void Partition::whenDurable(std::uint64_t seq, std::function<void(std::exception_ptr)> done) {
  if (seq <= committedSeq_) {
    done(nullptr);
    return;
  }
  waiters_.push_back({seq, std::move(done)});
}

void Partition::flush() {
  if (inFlight_ || dirty_.empty()) return;
  Batch batch;
  batch.seq = openSeq_++;
  batch.objects.reserve(dirty_.size());
  for (ObjectStore* store : dirty_) {
    batch.objects.emplace_back();
    store->emit(batch.seq, batch.objects.back());
  }
  inFlightAlarms_.clear();
  for (const auto& ob : batch.objects) {
    if (ob.alarmChanged) inFlightAlarms_.push_back({ob.ns, ob.id, ob.alarm});
  }
  batch.stores = std::move(dirty_);
  dirty_.clear();
  dirtySet_.clear();
  inFlightStores_ = batch.stores;
  inFlight_ = true;
  {
    std::lock_guard lock(mu_);
    submitted_.emplace(std::move(batch));
  }
  cv_.notify_one();
}

void Partition::commitLoop() {
  for (;;) {
    Batch batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || submitted_.has_value(); });
      if (!submitted_) return;
      batch = std::move(*submitted_);
      submitted_.reset();
    }
    std::string error = commit(batch);
    boost::asio::post(shard_, [this, seq = batch.seq, error = std::move(error)]() mutable {
      onCommitted(seq, std::move(error));
    });
  }
}

std::string Partition::commit(const Batch& batch) {
  auto step = [this](sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) fail(writer_, "commit");
  };
  try {
    step(beginStmt_.get());
    try {
      for (const ObjectBatch& ob : batch.objects) {
        if (ob.deleteAll) {
          bindObject(deleteAllStmt_.get(), ob.ns, ob.id);
          step(deleteAllStmt_.get());
        }
        for (const WriteOp& w : ob.writes) {
          sqlite3_stmt* s = w.value ? upsertStmt_.get() : deleteStmt_.get();
          bindObject(s, ob.ns, ob.id);
          bindBlob(s, 3, w.key.data(), w.key.size());
          if (w.value) bindBlob(s, 4, w.value->data(), w.value->size());
          step(s);
        }
        if (ob.alarmChanged) {
          sqlite3_stmt* s = ob.alarm ? setAlarmStmt_.get() : deleteAlarmStmt_.get();
          bindObject(s, ob.ns, ob.id);
          if (ob.alarm) sqlite3_bind_int64(s, 3, *ob.alarm);
          step(s);
        }
      }
      step(commitStmt_.get());
    } catch (...) {
      if (!sqlite3_get_autocommit(writer_)) {
        sqlite3_step(rollbackStmt_.get());
        sqlite3_reset(rollbackStmt_.get());
      }
      throw;
    }
    return {};
  } catch (const std::exception& e) {
    return e.what()[0] ? e.what() : "commit failed";
  }
}

void Partition::onCommitted(std::uint64_t seq, std::string error) {
  inFlight_ = false;
  auto stores = std::move(inFlightStores_);
  inFlightStores_.clear();
  if (error.empty()) {
    committedSeq_ = seq;
    ++commits_;
    for (ObjectStore* store : stores) store->committed(seq);
    if (onAlarmDurable) {
      for (const auto& a : inFlightAlarms_) onAlarmDurable(a.ns, a.id, a.time);
    }
    inFlightAlarms_.clear();
    // The next batch goes to the commit thread before the replies of this one are released:
    // it then commits while this thread writes them, instead of waiting for it.
    flush();
    // Callbacks may register new waiters: walk a private copy.
    auto waiters = std::move(waiters_);
    waiters_.clear();
    for (auto& w : waiters) {
      if (w.seq <= committedSeq_) {
        w.done(nullptr);
      } else {
        waiters_.push_back(std::move(w));
      }
    }
    return;
  }
  // The batch never reached the disk. Every reply that depends on it, or on the open batch
  // built on top of it, fails; every object that wrote to either is reset so its next event
  // reloads what is really on disk.
  log("storage: commit of partition ", index_, " batch ", seq, " failed: ", error);
  committedSeq_ = seq;  // nothing of it is durable; later waiters must not wait for it forever
  auto waiters = std::move(waiters_);
  waiters_.clear();
  auto open = std::move(dirty_);
  dirty_.clear();
  dirtySet_.clear();
  openSeq_++;  // the open batch is abandoned with its objects
  inFlightAlarms_.clear();
  for (ObjectStore* store : stores) store->reset();
  for (ObjectStore* store : open) store->reset();
  auto err = std::make_exception_ptr(
      Error(ErrorCode::kUnavailable, "storage commit failed; the object was reset: " + error));
  for (auto& w : waiters) w.done(err);
}

}  // namespace durable::detail
