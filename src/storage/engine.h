// The storage engine seam: what a partition needs from whatever keeps its rows. Objects, their
// caches (ObjectStore) see only Partition, which batches the writes of many
// objects and hands each batch to its engine; the engine decides where the rows live and when
// a batch is durable.
//
// Engines: SqliteEngine (storage/sqlite_engine.h, one database file per partition, the
// default) and MemoryEngine (storage/memory_engine.h, rows in memory that outlive a runtime
// restart but not the process; for tests). A networked engine (PostgreSQL) fits the same
// contract: a commit is reported when it is, not when it is submitted.
//
// Contract, for every engine:
// - Every call is made on the partition's shard thread, but for those made before the shard
//   threads start (setSink, purgeNamespace, from the Runtime's constructor); every report
//   (CommitSink) is delivered on the shard thread, never inside the call that caused it.
// - Reads see every batch already reported committed, and may see batches submitted since.
//   A read answers at once (Deferred holds the value) or later (it holds a Future, completed
//   on the shard thread); readsMayWait() says whether an engine ever does the latter, so that
//   callers over an engine that never waits pay nothing for the possibility.
// - Batches are submitted in sequence order and reported in that order; one report may cover
//   several batches (all up to its sequence number).
// - A batch that fails is reported with its error, and so is every later batch of the same
//   epoch without being applied: they were built on its writes. The partition starts a new
//   epoch once it has reset the objects involved.
// - A report says how the batch failed (CommitFailure): unwritten, with an unknown outcome
//   (a connection lost during the commit: its writes may have landed), or fatally: the engine
//   cannot know what is durable any more (a failed fsync), and the partition stops serving
//   until the server restarts.
#pragma once

#include <durable/id.h>
#include <durable/task.h>
#include <durable/value.h>

#include "metrics/metrics.h"
#include "storage/value_codec.h"

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace durable::detail {

struct WriteOp {
  std::string key;
  std::optional<std::string> value;  // nullopt: delete, unless `encodeHere` is set
  // A JSON value put but not yet encoded (ObjectStore::writeDecoded): the engine encodes it,
  // off the shard thread if it has a thread of its own. Immutable, so both threads may read it.
  std::shared_ptr<const Value> encodeHere;

  // The bytes to store (encoding `encodeHere` into `scratch` if needed), or null to delete.
  const std::string* bytes(std::string& scratch) const {
    if (value) return &*value;
    if (!encodeHere) return nullptr;
    // Its text was checked when it was put, so encoding cannot throw.
    encodeChecked(*encodeHere, scratch);
    return &scratch;
  }
};

// One entry of an object's SQL log (docs/sql-design.md): the records of SqlChangeRecorder.
struct SqlLogEntry {
  std::uint64_t lsn = 0;
  std::string records;
  std::int64_t at = 0;  // epoch ms when its changes were made (the bookmarks' time)
};

// Where an object's SQL log stands at a time (point-in-time recovery): its last entry made at or
// before it, and its oldest entry still kept (0 when it has none).
struct SqlLogPosition {
  std::uint64_t lsn = 0;  // 0: no entry at or before the time is kept
  std::int64_t at = 0;
  std::uint64_t oldestLsn = 0;
};

// One object's part of a batch, copied out of its cache so an engine thread never touches
// shard-owned memory.
struct ObjectBatch {
  std::int64_t ns = 0;
  ObjectId::Raw id{};
  // Cluster mode: the slot epoch the object's state was loaded under (0: not in a cluster).
  // The engine commits the batch only if the object's slot is still held at this epoch.
  std::int64_t fenceEpoch = 0;
  bool deleteAll = false;  // applied before `writes`
  std::vector<WriteOp> writes;
  bool alarmChanged = false;
  std::optional<std::int64_t> alarm;  // when alarmChanged: the new time, or nullopt to delete
  // The name the ID was made from (idFromName), on the first batch of each activation, so the
  // admin API can show it; the engine keeps the first one it is given.
  std::optional<std::string> name;
  // A SQLite-backed object's SQL changes since its previous batch (storage/object_sql.h), in
  // LSN order: the partition's log keeps them as the object's history.
  std::vector<SqlLogEntry> sqlLog;
  // The object's file holds its log through this LSN, synced: those entries may go. Applied
  // after `sqlLog`.
  std::optional<std::uint64_t> sqlLogPruneThrough;
  // Decoded values the object's cache replaced. Releasing a large JSON tree is thousands of
  // frees: the engine's thread does it when it drops the batch, not the shard.
  std::vector<std::shared_ptr<const Value>> retired;
};

// A read's answer: now, or later.
template <class T>
using Deferred = std::variant<T, Future<T>>;

// A read's answer as a task: done at once when the engine had it, else when its Future is.
template <class T>
Task<T> answerOf(Deferred<T> deferred) {
  if (deferred.index() == 0) co_return std::move(std::get<0>(deferred));
  Future<T> later = std::move(std::get<1>(deferred));
  co_return co_await later;
}

struct Row {
  std::string key;
  std::string value;
};
using Rows = std::vector<Row>;

// One object as storage has it, for the admin API (admin/admin.h).
struct StoredObject {
  ObjectId::Raw id{};
  std::size_t keys = 0;
  std::uint64_t bytes = 0;  // its keys and encoded values
  std::optional<std::int64_t> alarm;
  std::optional<std::string> name;  // ObjectBatch::name, once recorded
};

struct StoredAlarm {
  std::int64_t ns = 0;
  ObjectId::Raw id{};
  std::int64_t time = 0;
};

enum class CommitFailure {
  kNotWritten,      // nothing of it landed: the callers may retry
  kOutcomeUnknown,  // it may have landed: a retry could apply it twice
  kFatal,           // the partition stops (see above)
};

struct CommitBatch {
  std::uint64_t seq = 0;
  std::uint64_t epoch = 0;
  std::vector<ObjectBatch> objects;
};

// Where an engine reports, on the shard thread.
class CommitSink {
 public:
  // Every batch up to `seq` is durable.
  virtual void engineCommitted(std::uint64_t seq) = 0;
  // Every batch up to `seq` not yet reported failed, why, and how.
  virtual void engineFailed(std::uint64_t seq, std::exception_ptr why, CommitFailure how) = 0;
  // The engine took the batch that made accepting() answer false: submit the next one.
  virtual void engineReady() = 0;

 protected:
  ~CommitSink() = default;
};

class StorageEngine {
 public:
  virtual ~StorageEngine() = default;

  // Set once, before the first submit().
  void setSink(CommitSink* sink) { sink_ = sink; }

  virtual bool readsMayWait() const = 0;
  virtual Deferred<std::optional<std::string>> read(std::int64_t ns, const ObjectId::Raw& id, std::string_view key) = 0;
  // Up to `limit` rows of one object in [lower, upper) (lower exclusive when !lowerInclusive;
  // no upper bound when upper is nullopt), in ascending key order or descending.
  virtual Deferred<Rows> scan(std::int64_t ns, const ObjectId::Raw& id, std::string_view lower, bool lowerInclusive,
                              const std::optional<std::string>& upper, bool reverse, std::size_t limit) = 0;
  virtual Deferred<std::optional<std::int64_t>> readAlarm(std::int64_t ns, const ObjectId::Raw& id) = 0;
  // Counts a run of the object's alarm due at `time`, before it starts: the runs counted before
  // this one, or nullopt when that alarm is no longer stored. An engine whose alarms can move to
  // another node (cluster mode) keeps the count beside the alarm, so that an alarm that runs
  // again after its node died is a retry there too; the others count nothing here (0), the
  // scheduler's memory has their retries.
  virtual Deferred<std::optional<int>> countAlarmRun(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) {
    return std::optional<int>(0);
  }
  // The object's SQL log entries in (afterLsn, throughLsn], in order.
  virtual Deferred<std::vector<SqlLogEntry>> readSqlLog(std::int64_t ns, const ObjectId::Raw& id,
                                                        std::uint64_t afterLsn, std::uint64_t throughLsn) = 0;
  virtual Deferred<SqlLogPosition> sqlLogPosition(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) = 0;

  // False while a batch submitted earlier still waits to be taken: the partition then keeps
  // its open batch growing (so consecutive writes of a key go out once) until engineReady().
  virtual bool accepting() = 0;
  virtual void submit(CommitBatch batch) = 0;

  // The two calls below answer before they return, blocking the shard thread: they are made
  // where nothing else runs on it yet (start-up).
  //
  // The rows of a deleted class go, durably.
  virtual void purgeNamespace(std::int64_t ns) = 0;
  // Calls fn(ns, id, time) for every stored alarm.
  virtual void loadAlarms(const std::function<void(std::int64_t, const ObjectId::Raw&, std::int64_t)>& fn) = 0;

  // The calls below are the admin API's and the cluster's, made while objects run: an engine
  // over the network answers later (a Future), so that the shard keeps serving meanwhile. The
  // admin API's pages are bounded (`limit`) so that one call costs what a large list() does.
  //
  // Up to `limit` objects of a namespace with stored keys or an alarm, in ascending ID order,
  // each with an ID above `after` when given.
  virtual Deferred<std::vector<StoredObject>> listObjects(std::int64_t ns, const std::optional<ObjectId::Raw>& after,
                                                          std::size_t limit) = 0;
  // How many objects listObjects() would list in all.
  virtual Deferred<std::size_t> countObjects(std::int64_t ns) = 0;
  // One object; its keys and bytes are 0 and its alarm nullopt when it has nothing stored.
  virtual Deferred<StoredObject> describeObject(std::int64_t ns, const ObjectId::Raw& id) = 0;
  // Every stored alarm, as loadAlarms() gives them; read again after a node claimed slots.
  virtual Deferred<std::vector<StoredAlarm>> readAlarms() {
    std::vector<StoredAlarm> all;
    loadAlarms([&all](std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) { all.push_back({ns, id, time}); });
    return all;
  }

  // Cluster mode, when the node's lease may have lapsed: fails what is in flight now (its
  // outcome is unknown to the caller) instead of waiting for a store that another node may be
  // writing to by the time it answers. Later calls work as before.
  virtual void abandonInFlight() {}

  // How long each flush to disk took, for an engine that flushes (metrics.h); read from any thread.
  virtual const metrics::Histogram* syncDurations() const { return nullptr; }

 protected:
  CommitSink* sink_ = nullptr;
};

}  // namespace durable::detail
