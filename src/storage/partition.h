// A partition: one SQLite database holding the storage of many objects, and the threads that
// commit it to disk.
//
// Why shared databases and not one file per object: on this machine a durable commit costs
// one fdatasync (~50-110 us) plus ~30-70 us of SQLite CPU, and a hot shard serves thousands
// of objects. One database per partition lets a single commit (and a single fsync) cover the
// writes of every object on the shard made since the previous commit: group commit across
// objects, not only within one. It also keeps start-up and the number of open files
// independent of the number of objects (see ../../../shared/reference figures: 1000 files
// FULL ~6k commits/s vs one file with batching ~90k increments/s).
//
// Schema (on-disk format):
//   kv(ns INTEGER, obj BLOB(32), key BLOB, value BLOB)  PRIMARY KEY(ns, obj, key), WITHOUT ROWID
//      key is the UTF-8 key compared as bytes; value is Value::encode() (durable/value.h).
//   alarms(ns INTEGER, obj BLOB(32), time INTEGER)      PRIMARY KEY(ns, obj); index on time
//      time is epoch milliseconds.
//
// Commit policy: writes accumulate in the open batch on the shard thread. A flush, posted
// after the first write of a batch, closes the batch and queues it for the commit thread even
// while a commit is running, unless a closed batch already waits there: then the open batch
// stays open until the commit thread takes the waiting one (and posts the flush again), so
// writes made during a commit go out together, each key once. The commit thread takes
// everything queued at once and writes it in one SQLite transaction. Batch sequence numbers start at 1 and commit in order; a reply
// that depends on batch S leaves once committed >= S.
//
// Durability "full": SQLite writes the WAL without syncing it (synchronous=NORMAL) and a third
// thread, the sync thread, makes it durable with fdatasync of the WAL file, over and over while
// anything written is not yet synced. A batch is durable once a sync that began after its
// transaction committed has returned. So the next batches are written while the disk flushes
// the previous ones, and one flush covers everything written before it began. Measured against
// synchronous=FULL, where SQLite flushes inside COMMIT and the next batch waits for it: 1.12x
// on one hot object and 1.09x over 1,000 objects (bench/ab.sh, bench/README.md).
// Checkpoints keep SQLite's own ordering: under NORMAL it syncs the WAL before copying it into
// the database and syncs the database before the WAL is reused.
// Durability "relaxed" has no sync thread: a batch counts as committed once written.
//
// Failures. A failed transaction fails every batch queued behind it too: they were built on its
// writes. The commit thread refuses batches of the failed epoch until the shard has reset the
// objects involved and started a new epoch. A failed fdatasync is different: the kernel may
// have dropped the pages it could not write and will not report it again, while SQLite already
// counts the transaction as committed. The partition then stops for good, as PostgreSQL does
// (data_sync_retry = off): every later commit and read fails with kUnavailable until the
// server restarts. Nothing that was acknowledged is lost.
#pragma once

#include "config/config.h"

#include <durable/id.h>
#include <durable/value.h>
#include <durable/task.h>

#include <boost/asio/io_context.hpp>

#include <sqlite3.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

namespace durable::detail {

class ObjectStore;

struct WriteOp {
  std::string key;
  std::optional<std::string> value;  // nullopt: delete, unless `encodeHere` is set
  // A JSON value put but not yet encoded (ObjectStore::writeDecoded): the commit thread
  // encodes it, off the shard thread. Immutable, so both threads may read it.
  std::shared_ptr<const Value> encodeHere;
};

// One object's part of a batch, copied out of its cache so the commit thread never touches
// shard-owned memory.
struct ObjectBatch {
  std::int64_t ns = 0;
  ObjectId::Raw id{};
  bool deleteAll = false;  // applied before `writes`
  std::vector<WriteOp> writes;
  bool alarmChanged = false;
  std::optional<std::int64_t> alarm;  // when alarmChanged: the new time, or nullopt to delete
};

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

// Opens `path` with the pragmas durable uses; throws durable::Error(kUnavailable) on failure.
sqlite3* openDatabase(const std::filesystem::path& path, config::Durability durability, bool readOnly,
                      const char* vfs = nullptr);
void execSql(sqlite3* db, const char* sql);  // throws with SQLite's message

class Partition {
 public:
  // `faultInjection`: open through the fault-injecting VFS (storage/fault_vfs.h), for tests.
  Partition(int index, std::filesystem::path file, config::Durability durability, boost::asio::io_context& shard,
            bool faultInjection = false);
  ~Partition();
  Partition(const Partition&) = delete;
  Partition& operator=(const Partition&) = delete;

  int index() const { return index_; }

  // ---- Shard thread only. ----

  std::optional<std::string> read(std::int64_t ns, const ObjectId::Raw& id, std::string_view key);
  // Calls fn(key, value) for the rows of one object in [lower, upper) (lower exclusive when
  // !lowerInclusive; no upper bound when upper is nullopt), ascending or descending, until fn
  // returns false.
  void scan(std::int64_t ns, const ObjectId::Raw& id, std::string_view lower, bool lowerInclusive,
            const std::optional<std::string>& upper, bool reverse,
            const std::function<bool(std::string_view, std::string_view)>& fn);
  std::optional<std::int64_t> readAlarm(std::int64_t ns, const ObjectId::Raw& id);

  // The sequence number of the batch that writes made now will be committed in.
  std::uint64_t openSeq() const { return openSeq_; }
  std::uint64_t committedSeq() const { return committedSeq_; }
  // Registers a store whose cache has writes for the open batch, and schedules a flush.
  void markDirty(ObjectStore* store);
  // Completes once batch `seq` is durable; fails with Error(kUnavailable) if its commit failed.
  Future<void> waitDurable(std::uint64_t seq);
  // The same as a callback: `done(nullptr)` once durable, `done(error)` if the commit failed.
  // Runs inline when `seq` is durable already.
  void whenDurable(std::uint64_t seq, std::function<void(std::exception_ptr)> done);
  // The same to co_await, for the runtime's output gate, which waits once per event: the
  // waiter lives in the awaiting frame, so waiting allocates nothing (a Future needs shared
  // state and a callback that holds it). Resumes through scheduleResume(), as a Future does.
  class DurableWait {
   public:
    DurableWait(Partition& partition, std::uint64_t seq) : partition_(partition), seq_(seq) {}
    bool await_ready() const noexcept { return seq_ <= partition_.committedSeq_; }
    void await_suspend(std::coroutine_handle<> h) {
      handle_ = h;
      ctx_ = currentContext();
      // Only `this` is captured: the callback fits std::function's inline buffer.
      partition_.whenDurable(seq_, [this](std::exception_ptr e) {
        error_ = std::move(e);
        scheduleResume(handle_, ctx_);
      });
    }
    void await_resume() const {
      if (error_) std::rethrow_exception(error_);
    }

   private:
    Partition& partition_;
    std::uint64_t seq_;
    std::coroutine_handle<> handle_;
    ExecContext ctx_;
    std::exception_ptr error_;
  };
  DurableWait durable(std::uint64_t seq) { return DurableWait(*this, seq); }
  // Hands the open batch to the commit thread now if none is running.
  void flush();
  // Commits that reached the disk, for tests and metrics.
  std::uint64_t commits() const { return commits_; }
  // True when nothing is open or in flight.
  bool quiescent() const { return dirty_.empty() && inFlight_.empty(); }
  // Deletes all rows of a namespace (a deleted class), synchronously, at start-up.
  void purgeNamespace(std::int64_t ns);
  // The objects of a namespace with stored keys or an alarm.
  std::vector<ObjectId::Raw> listObjects(std::int64_t ns);
  // Calls fn(ns, id, time) for every stored alarm.
  void loadAlarms(const std::function<void(std::int64_t, const ObjectId::Raw&, std::int64_t)>& fn);

  // Called on the shard thread for each alarm change once its commit is durable.
  std::function<void(std::int64_t ns, const ObjectId::Raw& id, std::optional<std::int64_t> time)> onAlarmDurable;

 private:
  struct Waiter {
    std::uint64_t seq;
    std::function<void(std::exception_ptr)> done;
  };
  struct Batch {
    std::uint64_t seq = 0;
    std::uint64_t epoch = 0;
    std::vector<ObjectBatch> objects;
  };
  struct AlarmChange {
    std::int64_t ns;
    ObjectId::Raw id;
    std::optional<std::int64_t> time;
  };
  struct InFlight {
    std::uint64_t seq;
    std::vector<ObjectStore*> stores;
    std::vector<AlarmChange> alarms;
  };

  void commitLoop();
  void syncLoop();
  std::string commit(const std::vector<Batch>& batches);  // "" on success, else the error
  // `fatal`: the partition is stopped (a sync failed).
  void onCommitted(std::uint64_t seq, std::string error, bool fatal = false);
  void checkUsable() const;  // throws once the partition is stopped
  Statement& listStatement(bool lowerInclusive, bool hasUpper, bool reverse);

  const int index_;
  const std::filesystem::path file_;
  boost::asio::io_context& shard_;

  // Shard thread state.
  sqlite3* reader_ = nullptr;
  Statement readStmt_, readAlarmStmt_;
  Statement listStmts_[8];
  std::uint64_t openSeq_ = 1;
  std::uint64_t committedSeq_ = 0;
  std::uint64_t commits_ = 0;
  std::uint64_t epoch_ = 0;  // bumped when a failed commit has been dealt with
  bool flushPosted_ = false;
  std::vector<ObjectStore*> dirty_;
  std::unordered_set<ObjectStore*> dirtySet_;
  std::deque<InFlight> inFlight_;
  std::deque<Waiter> waiters_;
  std::string stopped_;  // why the partition is stopped, or empty

  // Commit and sync thread state, handed over under mu_.
  const bool faultInjection_;
  sqlite3* writer_ = nullptr;
  Statement upsertStmt_, deleteStmt_, deleteAllStmt_, setAlarmStmt_, deleteAlarmStmt_;
  Statement beginStmt_, commitStmt_, rollbackStmt_;
  int walFd_ = -1;  // durability full: our own descriptor of the WAL, for fdatasync
  std::mutex mu_;
  std::condition_variable commitCv_, syncCv_;
  std::vector<Batch> submitted_;
  bool commitWaiting_ = false;
  bool flushWhenTaken_ = false;  // flush() held the open batch back while one was waiting
  bool stopping_ = false;
  std::optional<std::uint64_t> failedEpoch_;  // commit thread only
  std::uint64_t writtenSeq_ = 0;  // the last batch written to the WAL
  std::uint64_t syncingSeq_ = 0;  // the last batch the running or last sync covers
  std::uint64_t syncedSeq_ = 0;   // the last batch known durable
  bool syncWaiting_ = false;
  bool syncStopping_ = false;
  std::string syncFailure_;  // set once a sync failed: the partition is stopped
  std::thread thread_, syncThread_;
};

}  // namespace durable::detail
