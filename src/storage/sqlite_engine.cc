#include "storage/sqlite_engine.h"

#include "base/file_sync.h"
#include "base/log.h"
#include "storage/fault_vfs.h"
#include "storage/sqlite_engine_internal.h"

#include <durable/error.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

namespace durable::detail {

using namespace sqlite_engine_internal;

namespace {

// SQLite counts every allocation under a global mutex unless told so before it initializes;
// nothing here reads the count, and a SQLite-backed object's statement allocates several times
// (7 % of the SQL counter's rate over 1,000 objects). Before main(): the server opens other
// databases before its engines.
const int kMemoryStatusOff = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);

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

namespace {

void execSql(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw Error(ErrorCode::kUnavailable, std::string("sqlite: ") + msg + " in: " + sql);
  }
}

sqlite3* openDatabase(const std::filesystem::path& path, config::Durability durability, bool readOnly,
                      const char* vfs = nullptr) {
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


}  // namespace

std::size_t SqliteEngine::JournalKeyHash::operator()(const JournalKey& k) const noexcept {
  std::uint64_t h;
  std::memcpy(&h, k.id.data(), sizeof h);  // an ID's bytes are a hash already
  return static_cast<std::size_t>(h ^ static_cast<std::uint64_t>(k.ns) * 0x9e3779b97f4a7c15ull);
}

SqliteEngine::SqliteEngine(int index, std::filesystem::path file, config::Durability durability,
                           boost::asio::io_context& shard, bool faultInjection, std::uint64_t journalWindow,
                           std::size_t foldBudget)
    : index_(index), file_(std::move(file)), shard_(shard), faultInjection_(faultInjection),
      journalWindow_(journalWindow), foldBudget_(foldBudget) {
  const bool syncThread = durability == config::Durability::kFull;
  // Under "full" the sync thread flushes the WAL; SQLite itself runs as under "relaxed".
  writer_ = openDatabase(file_, config::Durability::kRelaxed, false, faultInjection ? faultVfsName() : nullptr);
  execSql(writer_,
          "CREATE TABLE IF NOT EXISTS kv(ns INTEGER NOT NULL, obj BLOB NOT NULL, key BLOB NOT NULL, "
          "value BLOB NOT NULL, PRIMARY KEY(ns, obj, key)) WITHOUT ROWID;"
          "CREATE TABLE IF NOT EXISTS alarms(ns INTEGER NOT NULL, obj BLOB NOT NULL, time INTEGER NOT NULL, "
          "PRIMARY KEY(ns, obj)) WITHOUT ROWID;"
          "CREATE INDEX IF NOT EXISTS alarms_by_time ON alarms(time);"
          "CREATE TABLE IF NOT EXISTS names(ns INTEGER NOT NULL, obj BLOB NOT NULL, name BLOB NOT NULL, "
          "PRIMARY KEY(ns, obj)) WITHOUT ROWID;"
          "CREATE TABLE IF NOT EXISTS sqllog(ns INTEGER NOT NULL, obj BLOB NOT NULL, lsn INTEGER NOT NULL, "
          "records BLOB NOT NULL, at INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(ns, obj, lsn)) WITHOUT ROWID;"
          "CREATE TABLE IF NOT EXISTS sqljournal(seq INTEGER PRIMARY KEY, ns INTEGER NOT NULL, obj BLOB NOT NULL, "
          "lsn INTEGER NOT NULL, records BLOB NOT NULL, at INTEGER NOT NULL);"
          "CREATE TABLE IF NOT EXISTS sqlhistory(ns INTEGER NOT NULL, obj BLOB NOT NULL, lsn INTEGER NOT NULL, "
          "last INTEGER NOT NULL, at INTEGER NOT NULL, entries BLOB NOT NULL, PRIMARY KEY(ns, obj, lsn)) WITHOUT ROWID;");
  // A state made between 2026-12-06 and -07 has the log without its times.
  if (sqlite3_exec(writer_, "SELECT at FROM sqllog LIMIT 0", nullptr, nullptr, nullptr) != SQLITE_OK) {
    execSql(writer_, "ALTER TABLE sqllog ADD COLUMN at INTEGER NOT NULL DEFAULT 0");
  }
  upsertStmt_ = Statement(writer_, "INSERT OR REPLACE INTO kv(ns, obj, key, value) VALUES(?1, ?2, ?3, ?4)");
  deleteStmt_ = Statement(writer_, "DELETE FROM kv WHERE ns = ?1 AND obj = ?2 AND key = ?3");
  deleteAllStmt_ = Statement(writer_, "DELETE FROM kv WHERE ns = ?1 AND obj = ?2");
  setAlarmStmt_ = Statement(writer_, "INSERT OR REPLACE INTO alarms(ns, obj, time) VALUES(?1, ?2, ?3)");
  deleteAlarmStmt_ = Statement(writer_, "DELETE FROM alarms WHERE ns = ?1 AND obj = ?2");
  nameStmt_ = Statement(writer_, "INSERT OR IGNORE INTO names(ns, obj, name) VALUES(?1, ?2, ?3)");
  appendSqlLogStmt_ =
      Statement(writer_, "INSERT INTO sqljournal(ns, obj, lsn, records, at, seq) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  pruneSqlLogStmt_ = Statement(writer_, "DELETE FROM sqllog WHERE ns = ?1 AND obj = ?2 AND lsn <= ?3");
  pruneSqlJournalStmt_ = Statement(writer_, "DELETE FROM sqljournal WHERE ns = ?1 AND obj = ?2 AND lsn <= ?3");
  insertChunkStmt_ = Statement(writer_,
                               "INSERT INTO sqlhistory(ns, obj, lsn, last, at, entries) VALUES(?1, ?2, ?3, ?4, ?5, ?6) "
                               // Two runs from one LSN: the longer holds the other.
                               "ON CONFLICT(ns, obj, lsn) DO UPDATE SET last = excluded.last, at = excluded.at, "
                               "entries = excluded.entries WHERE excluded.last > sqlhistory.last");
  pruneChunksStmt_ = Statement(writer_, "DELETE FROM sqlhistory WHERE ns = ?1 AND obj = ?2 AND last <= ?3");
  straddlingChunksStmt_ =
      Statement(writer_, "SELECT lsn, entries FROM sqlhistory WHERE ns = ?1 AND obj = ?2 AND lsn <= ?3");
  deleteChunkStmt_ = Statement(writer_, "DELETE FROM sqlhistory WHERE ns = ?1 AND obj = ?2 AND lsn = ?3");
  truncateJournalStmt_ = Statement(writer_, "DELETE FROM sqljournal WHERE seq < ?1");
  loadJournal();
  beginStmt_ = Statement(writer_, "BEGIN IMMEDIATE");
  commitStmt_ = Statement(writer_, "COMMIT");
  rollbackStmt_ = Statement(writer_, "ROLLBACK");

  reader_ = openDatabase(file_, durability, true);
  readStmt_ = Statement(reader_, "SELECT value FROM kv WHERE ns = ?1 AND obj = ?2 AND key = ?3");
  readAlarmStmt_ = Statement(reader_, "SELECT time FROM alarms WHERE ns = ?1 AND obj = ?2");
  readSqlLogStmt_ = Statement(
      reader_, "SELECT lsn, records, at FROM sqllog WHERE ns = ?1 AND obj = ?2 AND lsn > ?3 AND lsn <= ?4 ORDER BY lsn");
  // From the run holding the entry after ?3 on: runs of one object do not overlap (but for
  // two from one LSN, which the upsert in insertChunkStmt_ makes one), so it is an index seek.
  readChunksStmt_ = Statement(reader_,
                              "SELECT entries FROM sqlhistory WHERE ns = ?1 AND obj = ?2 AND lsn <= ?4 AND last > ?3 "
                              "AND lsn >= coalesce((SELECT max(lsn) FROM sqlhistory WHERE ns = ?1 AND obj = ?2 "
                              "AND lsn <= ?3 + 1), 0) ORDER BY lsn");
  chunkAtStmt_ = Statement(
      reader_, "SELECT entries FROM sqlhistory WHERE ns = ?1 AND obj = ?2 AND at <= ?3 ORDER BY lsn DESC LIMIT 1");
  readJournalRowStmt_ =
      Statement(reader_, "SELECT lsn, records, at FROM sqljournal WHERE seq = ?1 AND ns = ?2 AND obj = ?3 AND lsn = ?4");
  readJournalTailStmt_ = Statement(reader_,
                                   "SELECT lsn, records, at FROM sqljournal WHERE seq > ?1 AND ns = ?2 AND obj = ?3");
  // Times grow with LSNs (ObjectSqlDb keeps them so): the last entry at or before a time is
  // the one with the highest LSN among them. A bookmark's lookup is rare: the journal's part
  // is a scan of its rows.
  sqlLogAtStmt_ = Statement(reader_,
                            "SELECT * FROM (SELECT lsn, at FROM sqllog WHERE ns = ?1 AND obj = ?2 AND at <= ?3 "
                            "ORDER BY lsn DESC LIMIT 1) UNION ALL SELECT * FROM (SELECT lsn, at FROM sqljournal "
                            "WHERE ns = ?1 AND obj = ?2 AND at <= ?3 ORDER BY lsn DESC LIMIT 1) ORDER BY 1 DESC LIMIT 1");
  sqlLogOldestStmt_ = Statement(reader_,
                                "SELECT min(lsn) FROM (SELECT min(lsn) AS lsn FROM sqllog WHERE ns = ?1 AND obj = ?2 "
                                "UNION ALL SELECT min(lsn) FROM sqljournal WHERE ns = ?1 AND obj = ?2 "
                                "UNION ALL SELECT min(lsn) FROM sqlhistory WHERE ns = ?1 AND obj = ?2)");

  if (syncThread) {
    // The WAL exists from the schema statements on and SQLite only deletes it when the last
    // connection closes, so this descriptor names the live WAL for the partition's lifetime.
    const auto wal = file_.string() + "-wal";
    walFd_ = ::open(wal.c_str(), O_RDWR | O_CLOEXEC);
    if (walFd_ < 0) throw Error(ErrorCode::kUnavailable, "cannot open " + wal + ": " + std::strerror(errno));
    if (int rc = syncDescriptor(walFd_)) {
      throw Error(ErrorCode::kUnavailable, "cannot sync " + wal + ": " + std::strerror(rc));
    }
    syncDirectoryOf(file_);
    syncThread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), ("sync-" + std::to_string(index_)).c_str());
      syncLoop();
    });
  }
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), ("commit-" + std::to_string(index_)).c_str());
    commitLoop();
  });
}

SqliteEngine::~SqliteEngine() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  commitCv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Only now: the commit thread may have written a last batch that still needs its sync.
  {
    std::lock_guard lock(mu_);
    syncStopping_ = true;
  }
  syncCv_.notify_all();
  if (syncThread_.joinable()) syncThread_.join();
  if (walFd_ >= 0) ::close(walFd_);
  readStmt_ = {};
  readAlarmStmt_ = {};
  readSqlLogStmt_ = {};
  readJournalRowStmt_ = {};
  readJournalTailStmt_ = {};
  sqlLogAtStmt_ = {};
  sqlLogOldestStmt_ = {};
  for (auto& s : listStmts_) s = {};
  upsertStmt_ = {};
  deleteStmt_ = {};
  deleteAllStmt_ = {};
  setAlarmStmt_ = {};
  deleteAlarmStmt_ = {};
  nameStmt_ = {};
  appendSqlLogStmt_ = {};
  pruneSqlLogStmt_ = {};
  pruneSqlJournalStmt_ = {};
  insertChunkStmt_ = {};
  pruneChunksStmt_ = {};
  straddlingChunksStmt_ = {};
  deleteChunkStmt_ = {};
  readChunksStmt_ = {};
  chunkAtStmt_ = {};
  truncateJournalStmt_ = {};
  beginStmt_ = {};
  commitStmt_ = {};
  rollbackStmt_ = {};
  sqlite3_close(reader_);
  sqlite3_close(writer_);
}

Deferred<std::optional<std::string>> SqliteEngine::read(std::int64_t ns, const ObjectId::Raw& id,
                                                        std::string_view key) {
  sqlite3_stmt* s = readStmt_.get();
  ResetGuard guard{s};
  bindObject(s, ns, id);
  bindBlob(s, 3, key.data(), key.size());
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) return std::optional<std::string>(columnBlob(s, 0));
  check(reader_, rc, "read");
  return std::optional<std::string>();
}

Deferred<std::optional<std::int64_t>> SqliteEngine::readAlarm(std::int64_t ns, const ObjectId::Raw& id) {
  sqlite3_stmt* s = readAlarmStmt_.get();
  ResetGuard guard{s};
  bindObject(s, ns, id);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) return std::optional<std::int64_t>(sqlite3_column_int64(s, 0));
  check(reader_, rc, "read alarm");
  return std::optional<std::int64_t>();
}

Statement& SqliteEngine::listStatement(bool lowerInclusive, bool hasUpper, bool reverse) {
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

Deferred<Rows> SqliteEngine::scan(std::int64_t ns, const ObjectId::Raw& id, std::string_view lower,
                                  bool lowerInclusive, const std::optional<std::string>& upper, bool reverse,
                                  std::size_t limit) {
  sqlite3_stmt* s = listStatement(lowerInclusive, upper.has_value(), reverse).get();
  ResetGuard guard{s};
  bindObject(s, ns, id);
  bindBlob(s, 3, lower.data(), lower.size());
  if (upper) bindBlob(s, 4, upper->data(), upper->size());
  Rows rows;
  while (rows.size() < limit) {
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) fail(reader_, "list");
    rows.push_back({std::string(columnBlob(s, 0)), std::string(columnBlob(s, 1))});
  }
  return rows;
}

void SqliteEngine::purgeNamespace(std::int64_t ns) {
  Statement kv(writer_, "DELETE FROM kv WHERE ns = ?1");
  Statement alarms(writer_, "DELETE FROM alarms WHERE ns = ?1");
  Statement names(writer_, "DELETE FROM names WHERE ns = ?1");
  Statement sqllog(writer_, "DELETE FROM sqllog WHERE ns = ?1");
  Statement sqljournal(writer_, "DELETE FROM sqljournal WHERE ns = ?1");
  Statement sqlhistory(writer_, "DELETE FROM sqlhistory WHERE ns = ?1");
  for (Statement* q : {&kv, &alarms, &names, &sqllog, &sqljournal, &sqlhistory}) {
    sqlite3_bind_int64(q->get(), 1, ns);
    check(writer_, sqlite3_step(q->get()), "purge");
  }
  loadJournal();
  if (walFd_ >= 0) {
    if (int rc = syncDescriptor(walFd_)) throw Error(ErrorCode::kUnavailable, std::string("purge: ") + std::strerror(rc));
  }
}

void SqliteEngine::loadAlarms(const std::function<void(std::int64_t, const ObjectId::Raw&, std::int64_t)>& fn) {
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

void SqliteEngine::commitLoop() {
  const bool syncThread = walFd_ >= 0;
  std::vector<CommitBatch> batches;
  for (;;) {
    batches.clear();
    std::exception_ptr stopped;
    {
      std::unique_lock lock(mu_);
      commitWaiting_ = true;
      commitCv_.wait(lock, [this] { return stopping_ || !submitted_.empty(); });
      commitWaiting_ = false;
      if (submitted_.empty()) return;
      batches.swap(submitted_);
      if (std::exchange(readyWhenTaken_, false)) boost::asio::post(shard_, [this] { sink_->engineReady(); });
      stopped = syncFailure_;
    }
    if (stopped) {
      reportFailed(batches.back().seq, stopped, true);
      continue;
    }
    // Batches of a failed epoch come first (epochs only grow) and are refused unwritten.
    auto live = batches.begin();
    while (live != batches.end() && failedEpoch_ && live->epoch <= *failedEpoch_) ++live;
    if (live != batches.begin()) {
      reportFailed(std::prev(live)->seq,
                   std::make_exception_ptr(Error(ErrorCode::kUnavailable, "an earlier commit failed")));
    }
    if (live == batches.end()) continue;
    std::vector<CommitBatch> toCommit(std::make_move_iterator(live), std::make_move_iterator(batches.end()));
    const std::uint64_t seq = toCommit.back().seq;
    std::exception_ptr failure;
    try {
      commit(toCommit);
    } catch (...) {
      // The batches failed, not the thread: their objects hear it (reportFailed below) and
      // the next batches are tried.
      failure = std::current_exception();
    }
    if (!failure && syncThread) {
      bool wake;
      {
        std::lock_guard lock(mu_);
        writtenSeq_ = seq;
        wake = syncWaiting_;
      }
      if (wake) syncCv_.notify_one();
      continue;
    }
    if (failure) {
      failedEpoch_ = toCommit.back().epoch;
      if (syncThread) {
        // Batches written before this one must be reported durable before the failure resets
        // their objects, or a reloaded object could answer with writes not yet flushed.
        std::unique_lock lock(mu_);
        commitCv_.wait(lock, [this] { return syncedSeq_ >= writtenSeq_ || syncFailure_ != nullptr; });
      }
    }
    if (failure) {
      reportFailed(seq, std::move(failure));
    } else {
      reportCommitted(seq);
    }
  }
}

void SqliteEngine::syncLoop() {
  for (;;) {
    std::uint64_t target;
    {
      std::unique_lock lock(mu_);
      syncWaiting_ = true;
      syncCv_.wait(lock, [this] { return syncStopping_ || writtenSeq_ > syncingSeq_; });
      syncWaiting_ = false;
      if (writtenSeq_ <= syncingSeq_) return;
      target = syncingSeq_ = writtenSeq_;
    }
    int fault = faultInjection_ ? takeSyncFault() : 0;
    const auto began = std::chrono::steady_clock::now();
    int rc = fault ? EIO : syncDescriptor(walFd_);
    syncDurations_.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
    std::lock_guard lock(mu_);
    if (rc) {
      // Whatever was written but not known durable is lost to us: fail all of it, and stop.
      syncFailure_ = std::make_exception_ptr(
          Error(ErrorCode::kUnavailable, std::string("fdatasync of the WAL failed: ") + std::strerror(rc)));
      reportFailed(writtenSeq_, syncFailure_, true);
      commitCv_.notify_all();
      return;
    }
    syncedSeq_ = target;
    reportCommitted(target);
    commitCv_.notify_all();
  }
}

void SqliteEngine::commit(const std::vector<CommitBatch>& batches) {
  auto step = [this](sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) fail(writer_, "commit");
  };
  if (journalStale_) {
    loadJournal();
    journalStale_ = false;
  }
  step(beginStmt_.get());
  std::size_t sqlEntries = 0;
    try {
      std::string scratch;  // one buffer for every encoding in the transaction
      for (const CommitBatch& batch : batches) {
        for (const ObjectBatch& ob : batch.objects) {
          if (ob.deleteAll) {
            bindObject(deleteAllStmt_.get(), ob.ns, ob.id);
            step(deleteAllStmt_.get());
          }
          for (const WriteOp& w : ob.writes) {
            const std::string* bytes = w.bytes(scratch);
            sqlite3_stmt* s = bytes ? upsertStmt_.get() : deleteStmt_.get();
            bindObject(s, ob.ns, ob.id);
            bindBlob(s, 3, w.key.data(), w.key.size());
            if (bytes) bindBlob(s, 4, bytes->data(), bytes->size());
            step(s);
          }
          if (ob.alarmChanged) {
            sqlite3_stmt* s = ob.alarm ? setAlarmStmt_.get() : deleteAlarmStmt_.get();
            bindObject(s, ob.ns, ob.id);
            if (ob.alarm) sqlite3_bind_int64(s, 3, *ob.alarm);
            step(s);
          }
          if (ob.name) {
            bindObject(nameStmt_.get(), ob.ns, ob.id);
            bindBlob(nameStmt_.get(), 3, ob.name->data(), ob.name->size());
            step(nameStmt_.get());
          }
          sqlEntries += appendSqlLog(ob);
          if (ob.sqlLogPruneThrough) {
            for (sqlite3_stmt* prune : {pruneSqlLogStmt_.get(), pruneSqlJournalStmt_.get(), pruneChunksStmt_.get()}) {
              bindObject(prune, ob.ns, ob.id);
              sqlite3_bind_int64(prune, 3, static_cast<sqlite3_int64>(*ob.sqlLogPruneThrough));
              step(prune);
            }
            pruneStraddlingChunks(ob.ns, ob.id, *ob.sqlLogPruneThrough);
            journalPruned(JournalKey{ob.ns, ob.id}, *ob.sqlLogPruneThrough);
          }
        }
      }
      if (sqlEntries) foldJournal(sqlEntries);
      step(commitStmt_.get());
    } catch (...) {
      if (!sqlite3_get_autocommit(writer_)) {
        sqlite3_step(rollbackStmt_.get());
        sqlite3_reset(rollbackStmt_.get());
      }
      // What the journal's rows are is known again only from the table: until it is read, no
      // batch is written (commit() reads it first), or one could delete rows whose fold was
      // rolled back.
      truncatedBefore_ = 0;
      journalStale_ = true;
      try {
        loadJournal();
        journalStale_ = false;
      } catch (...) {
      }
      throw;
    }
    if (truncatedBefore_) journalTruncated(std::exchange(truncatedBefore_, 0));
}

bool SqliteEngine::accepting() {
  // A batch already waits for the commit thread, which is busy: what the partition wrote
  // since stays open and joins what comes next, so that it is emitted (and each key's value
  // encoded) once, and handed over as soon as the commit thread takes the waiting batch.
  std::lock_guard lock(mu_);
  if (!submitted_.empty() && !stopping_) {
    readyWhenTaken_ = true;
    return false;
  }
  return true;
}

void SqliteEngine::submit(CommitBatch batch) {
  bool wake;
  {
    std::lock_guard lock(mu_);
    submitted_.push_back(std::move(batch));
    wake = commitWaiting_;
  }
  if (wake) commitCv_.notify_one();
}

void SqliteEngine::reportCommitted(std::uint64_t seq) {
  boost::asio::post(shard_, [this, seq] { sink_->engineCommitted(seq); });
}

void SqliteEngine::reportFailed(std::uint64_t seq, std::exception_ptr why, bool fatal) {
  boost::asio::post(shard_, [this, seq, why = std::move(why), fatal] {
    sink_->engineFailed(seq, why, fatal ? CommitFailure::kFatal : CommitFailure::kNotWritten);
  });
}

}  // namespace durable::detail
