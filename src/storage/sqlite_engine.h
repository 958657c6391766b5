// The embedded engine: one SQLite database per partition, written by a commit thread and made
// durable by a sync thread.
//
// Why shared databases and not one file per object: on this machine a durable commit costs
// one fdatasync (~50-110 us) plus ~30-70 us of SQLite CPU, and a hot shard serves thousands
// of objects. One database per partition lets a single commit (and a single fsync) cover the
// writes of every object on the shard made since the previous commit: group commit across
// objects, not only within one. It also keeps start-up and the number of open files
// independent of the number of objects.
//
// Schema (on-disk format):
//   kv(ns INTEGER, obj BLOB(32), key BLOB, value BLOB)  PRIMARY KEY(ns, obj, key), WITHOUT ROWID
//      key is the UTF-8 key compared as bytes; value is Value::encode() (durable/value.h).
//   alarms(ns INTEGER, obj BLOB(32), time INTEGER)      PRIMARY KEY(ns, obj); index on time
//      time is epoch milliseconds.
//   sqljournal(seq INTEGER PRIMARY KEY, ns, obj, lsn, records, at)
//      SQLite-backed objects' log entries (storage/object_sql.h) as the batches wrote them.
//   sqlhistory(ns, obj, lsn, last, at, entries)        PRIMARY KEY(ns, obj, lsn), WITHOUT ROWID
//      the same entries folded out of the journal: one row per run of one object's entries,
//      lsn..last, `at` the first one's time, `entries` their LSNs, times and records.
//   sqllog(ns, obj, lsn, records, at)                   PRIMARY KEY(ns, obj, lsn), WITHOUT ROWID
//      one row per entry, as states before 2026-12-07 wrote them; read, pruned, never written.
//
// Why a journal before the log: a batch of N objects' entries inserted by (ns, obj, lsn) lands
// on N pages (each object's newest entry ends its own run), each a WAL frame, each copied again
// by the checkpoint; the batch's key-value writes for the same objects share a few pages. The
// journal takes a batch's entries on one or two pages, and once it holds more than its window
// the oldest objects' entries move to the history in runs, one row per run, so that a page of
// the history is written once per run, not once per entry (sqlite_sql_log.cc). Measured over
// 1,000 objects (bench/sql/run.sh many, one run each): 14,000 increments/s writing a row per
// entry into the history directly, 26,000-29,000 folding a row per entry out of the journal,
// 38,000-42,000 with a journal never folded; bench/README.md has the side-by-side figures.
//
// The commit thread takes every submitted batch at once and writes them in one SQLite
// transaction.
//
// Durability "full": SQLite writes the WAL without syncing it (synchronous=NORMAL) and a third
// thread, the sync thread, makes it durable with fdatasync of the WAL file, over and over while
// anything written is not yet synced. A batch is durable once a sync that began after its
// transaction committed has returned. So the next batches are written while the disk flushes
// the previous ones, and one flush covers everything written before it began. Measured against
// synchronous=FULL, where SQLite flushes inside COMMIT and the next batch waits for it: 1.12x
// on one hot object and 1.09x over 1,000 objects (bench/ab.sh, bench/results/2026-11-27.md).
// Checkpoints keep SQLite's own ordering: under NORMAL it syncs the WAL before copying it into
// the database and syncs the database before the WAL is reused.
// Durability "relaxed" has no sync thread: a batch counts as committed once written.
//
// A failed fdatasync is fatal (engine.h): the kernel may have dropped the pages it could not
// write and will not report it again, while SQLite already counts the transaction as
// committed. Every later batch fails too, as in PostgreSQL (data_sync_retry = off).
#pragma once

#include "config/config.h"
#include "storage/engine.h"

#include <boost/asio/io_context.hpp>

#include <sqlite3.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace durable::detail {

// A prepared statement, finalized on destruction.
class Statement {
 public:
  Statement() = default;
  Statement(sqlite3* db, std::string_view sql);
  Statement(Statement&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Statement& operator=(Statement&& o) noexcept;
  ~Statement();
  sqlite3_stmt* get() const { return s_; }
  explicit operator bool() const { return s_ != nullptr; }

 private:
  sqlite3_stmt* s_ = nullptr;
};

class SqliteEngine final : public StorageEngine {
  struct JournalKey {
    std::int64_t ns;
    ObjectId::Raw id;
    bool operator==(const JournalKey&) const = default;
  };
  struct JournalKeyHash {
    std::size_t operator()(const JournalKey& k) const noexcept;
  };
  struct JournalRow {
    std::uint64_t seq, lsn;
    std::int64_t at;
  };

 public:
  // How many objects of namespace ?1 have stored keys or an alarm in a partition's file: also
  // what the admin API counts with, over the files, off the shards (admin/backup.h).
  static constexpr const char* kCountObjectsSql =
      "SELECT count(*) FROM (SELECT obj FROM kv WHERE ns = ?1 GROUP BY obj "
      "UNION SELECT obj FROM alarms WHERE ns = ?1 UNION SELECT obj FROM sqllog WHERE ns = ?1 GROUP BY obj "
      "UNION SELECT obj FROM sqljournal WHERE ns = ?1 UNION SELECT obj FROM sqlhistory WHERE ns = ?1 GROUP BY obj)";

  // How many rows the journal holds before its oldest objects' entries move to the log.
  static constexpr std::uint64_t kJournalWindow = 65'536;
  // And how many bytes of records not yet moved it holds at most (they are also kept in memory).
  static constexpr std::uint64_t kJournalBytes = 16ull << 20;
  // An entry this large skips the journal: a run of its own in the history.
  static constexpr std::size_t kOwnRunBytes = 4096;

  // `faultInjection`: open through the fault-injecting VFS (storage/fault_vfs.h), for tests.
  // `journalWindow`: kJournalWindow but in tests; `foldBudget`: how many entries a batch may
  // move at most (0: four times what it brought, at least 64), smaller in tests.
  SqliteEngine(int index, std::filesystem::path file, config::Durability durability, boost::asio::io_context& shard,
               bool faultInjection = false, std::uint64_t journalWindow = kJournalWindow, std::size_t foldBudget = 0);
  ~SqliteEngine() override;

  bool readsMayWait() const override { return false; }
  Deferred<std::optional<std::string>> read(std::int64_t ns, const ObjectId::Raw& id, std::string_view key) override;
  Deferred<Rows> scan(std::int64_t ns, const ObjectId::Raw& id, std::string_view lower, bool lowerInclusive,
                      const std::optional<std::string>& upper, bool reverse, std::size_t limit) override;
  Deferred<std::optional<std::int64_t>> readAlarm(std::int64_t ns, const ObjectId::Raw& id) override;
  Deferred<std::vector<SqlLogEntry>> readSqlLog(std::int64_t ns, const ObjectId::Raw& id, std::uint64_t afterLsn,
                                                std::uint64_t throughLsn) override;
  Deferred<SqlLogPosition> sqlLogPosition(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) override;
  bool accepting() override;
  void submit(CommitBatch batch) override;
  void purgeNamespace(std::int64_t ns) override;
  Deferred<std::vector<StoredObject>> listObjects(std::int64_t ns, const std::optional<ObjectId::Raw>& after,
                                       std::size_t limit) override;
  Deferred<std::size_t> countObjects(std::int64_t ns) override;
  Deferred<StoredObject> describeObject(std::int64_t ns, const ObjectId::Raw& id) override;
  void loadAlarms(const std::function<void(std::int64_t, const ObjectId::Raw&, std::int64_t)>& fn) override;
  const metrics::Histogram* syncDurations() const override { return &syncDurations_; }

 private:
  void commitLoop();
  void syncLoop();
  // Throws durable::Error with SQLite's message; rolls back first.
  void commit(const std::vector<CommitBatch>& batches);
  void reportCommitted(std::uint64_t seq);
  void reportFailed(std::uint64_t seq, std::exception_ptr why, bool fatal = false);
  Statement& listStatement(bool lowerInclusive, bool hasUpper, bool reverse);
  // Commit thread, inside commit()'s transaction: moves the oldest objects' journal rows to the
  // log while the journal holds more than its window, and deletes the rows before the first
  // one still not moved.
  void foldJournal(std::size_t entriesThisBatch);
  // Commit thread, inside commit()'s transaction: the object's entries into the journal, or
  // (at least kOwnRunBytes) as runs of their own; returns how many went into the journal.
  std::size_t appendSqlLog(const ObjectBatch& ob);
  // Commit thread, changing journal_ under journalMu_ (journal_'s comment says when).
  void journalAppended(const JournalKey& key, const JournalRow& row, std::string_view records);
  void journalPruned(const JournalKey& key, std::uint64_t throughLsn);
  void journalTruncated(std::uint64_t before);
  void insertChunk(std::int64_t ns, const ObjectId::Raw& id, std::uint64_t firstLsn, std::uint64_t lastLsn,
                   std::int64_t firstAt, std::string_view entries);
  void pruneStraddlingChunks(std::int64_t ns, const ObjectId::Raw& id, std::uint64_t throughLsn);
  // journal_ from the table: at start, after a purge, after a rolled-back commit.
  void loadJournal();
  // An object's journal rows with LSNs in (afterLsn, throughLsn]: copied under journalMu_.
  std::vector<JournalRow> journalRowsOf(std::int64_t ns, const ObjectId::Raw& id, std::uint64_t afterLsn,
                                        std::uint64_t throughLsn, std::uint64_t* lastSeq);
  struct DescribeStatements;
  StoredObject describeWith(DescribeStatements& q, std::int64_t ns, const ObjectId::Raw& id);

  const int index_;
  const std::filesystem::path file_;
  boost::asio::io_context& shard_;
  const bool faultInjection_;

  // Shard thread.
  sqlite3* reader_ = nullptr;
  Statement readStmt_, readAlarmStmt_, readSqlLogStmt_, sqlLogAtStmt_, sqlLogOldestStmt_;
  Statement listStmts_[8];

  // Commit and sync threads, handed over under mu_.
  sqlite3* writer_ = nullptr;
  Statement upsertStmt_, deleteStmt_, deleteAllStmt_, setAlarmStmt_, deleteAlarmStmt_, nameStmt_;
  Statement appendSqlLogStmt_, pruneSqlLogStmt_, pruneSqlJournalStmt_, truncateJournalStmt_;
  Statement insertChunkStmt_, pruneChunksStmt_, straddlingChunksStmt_, deleteChunkStmt_;
  std::string chunk_;  // commit thread: the run being folded
  Statement readJournalRowStmt_, readJournalTailStmt_, readChunksStmt_, chunkAtStmt_;  // shard thread

  // The journal's rows, per object: written by the commit thread (and purgeNamespace, before it
  // starts) under journalMu_, read under it by the shard's log reads. A row leaves only once
  // the DELETE that removed it from the table committed, so that a reader that looks up the
  // rows it copied finds each one in the journal or (folded, then deleted) in the log.
  struct JournalObject {
    std::vector<JournalRow> rows;  // by seq; those before `dropped` are deleted from the table
    // The records of rows not yet folded (commit thread only): a fold reads no row back.
    std::vector<std::string> records;
    std::size_t dropped = 0;
    std::size_t folded = 0;  // rows before it are in the log too (or pruned)
  };
  struct Journal {
    std::unordered_map<JournalKey, JournalObject, JournalKeyHash> objects;
    std::map<std::uint64_t, JournalKey> byFirstUnfolded;  // each object's oldest row not folded
    std::deque<std::pair<std::uint64_t, JournalKey>> bySeq;  // every row in the table
    std::uint64_t lastSeq = 0;
  };
  const std::uint64_t journalWindow_;
  const std::size_t foldBudget_;
  std::mutex journalMu_;
  Journal journal_;
  std::uint64_t truncatedBefore_ = 0;  // commit thread: what this transaction deleted up to
  std::uint64_t unfoldedBytes_ = 0;   // commit thread: records held in JournalObject::records
  bool journalStale_ = false;         // commit thread: journal_ failed to reload after a rollback
  std::uint64_t nextSeq_ = 1;  // commit thread: never reused while the engine runs
  Statement beginStmt_, commitStmt_, rollbackStmt_;
  int walFd_ = -1;  // durability full: our own descriptor of the WAL, for fdatasync
  std::mutex mu_;
  std::condition_variable commitCv_, syncCv_;
  std::vector<CommitBatch> submitted_;
  bool commitWaiting_ = false;
  bool readyWhenTaken_ = false;  // accepting() said no: report engineReady() on the next take
  bool stopping_ = false;
  std::optional<std::uint64_t> failedEpoch_;  // commit thread only
  std::uint64_t writtenSeq_ = 0;  // the last batch written to the WAL
  std::uint64_t syncingSeq_ = 0;  // the last batch the running or last sync covers
  std::uint64_t syncedSeq_ = 0;   // the last batch known durable
  bool syncWaiting_ = false;
  bool syncStopping_ = false;
  std::exception_ptr syncFailure_;  // set once a sync failed: the engine is stopped
  metrics::Histogram syncDurations_{metrics::kSecondsBounds};  // written by the sync thread
  std::thread thread_, syncThread_;
};

}  // namespace durable::detail
