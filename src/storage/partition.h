// A partition: the storage of many objects, committed together. The objects' caches
// (ObjectStore) write into the partition's open batch; the partition hands batches to its
// engine (storage/engine.h: SQLite on disk, or memory for tests) and tells each object when
// its writes are durable, or that they failed.
//
// Commit policy: writes accumulate in the open batch on the shard thread. A flush, posted
// after the first write of a batch, closes the batch and hands it to the engine even while a
// commit is running, unless the engine still has a batch waiting (accepting() is false): then
// the open batch stays open until the engine takes the waiting one (engineReady()), so writes
// made during a commit go out together, each key once. Batch sequence numbers start at 1 and
// commit in order; a reply waits on its object's output gate, whose Hold for batch S is
// released when S is reported committed (or failed).
//
// Failures. A failed batch fails every batch behind it too: they were built on its writes.
// Every object that wrote to one of them is reset (its cache forgotten, its output gate
// broken) and the next batch starts a new epoch. A fatal failure stops the partition: every
// later commit and read fails with kUnavailable until the server restarts. Nothing that was
// acknowledged is lost.
#pragma once

#include "metrics/metrics.h"
#include "storage/engine.h"

#include <durable/id.h>
#include <durable/task.h>

#include <boost/asio/io_context.hpp>

#include <chrono>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace durable::detail {

// An object's part of the partition's batches: the partition asks it for its writes when a
// batch closes, and tells it when that batch is durable or that its writes were lost.
// ObjectStore is the one implementation; the partition knows no more of it than this.
class BatchWriter {
 public:
  // Moves the writes made since the last emit into `out`; they belong to batch `seq` now.
  virtual void emit(std::uint64_t seq, ObjectBatch& out) = 0;
  virtual void committed(std::uint64_t seq) = 0;
  // A batch it wrote into failed: what it holds in memory is ahead of storage.
  virtual void reset(std::exception_ptr why) = 0;
  // After the batch that emit() filled was submitted: what must wait until the partition no
  // longer walks its writers (an object may end, and its instance's destructor may write).
  virtual void emitted() {}

 protected:
  ~BatchWriter() = default;
};

class Partition final : private CommitSink {
 public:
  Partition(int index, std::unique_ptr<StorageEngine> engine, boost::asio::io_context& shard);
  ~Partition();
  Partition(const Partition&) = delete;
  Partition& operator=(const Partition&) = delete;
  // StorageEngine::abandonInFlight.
  void abandonInFlight() { engine_->abandonInFlight(); }

  // ---- Shard thread only. ----

  // The engine's reads (storage/engine.h), refused once the partition is stopped.
  bool readsMayWait() const { return readsMayWait_; }
  Deferred<std::optional<std::string>> read(std::int64_t ns, const ObjectId::Raw& id, std::string_view key);
  Deferred<Rows> scan(std::int64_t ns, const ObjectId::Raw& id, std::string_view lower, bool lowerInclusive,
                      const std::optional<std::string>& upper, bool reverse, std::size_t limit);
  Deferred<std::optional<std::int64_t>> readAlarm(std::int64_t ns, const ObjectId::Raw& id);
  Deferred<std::optional<int>> countAlarmRun(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time);
  Deferred<std::vector<SqlLogEntry>> readSqlLog(std::int64_t ns, const ObjectId::Raw& id, std::uint64_t afterLsn,
                                                std::uint64_t throughLsn = UINT64_MAX);
  Deferred<SqlLogPosition> sqlLogPosition(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time);

  // Registers a writer with writes for the open batch, and schedules a flush.
  void markDirty(BatchWriter* store);
  // Hands the open batch to the engine now, unless it still has one waiting.
  void flush();
  // Batches the engine reported durable, for tests.
  std::uint64_t commits() const { return commits_; }
  // Read from any thread (metrics.h).
  const metrics::PartitionMetrics& metrics() const { return metrics_; }
  const StorageEngine& engine() const { return *engine_; }
  // True when nothing is open or in flight.
  bool quiescent() const { return dirty_.empty() && inFlight_.empty(); }
  // Deletes all rows of a namespace (a deleted class), synchronously, at start-up.
  void purgeNamespace(std::int64_t ns);
  // The engine's listings (storage/engine.h): now, or later.
  Deferred<std::vector<StoredObject>> listObjects(std::int64_t ns, const std::optional<ObjectId::Raw>& after,
                                                  std::size_t limit);
  Deferred<std::size_t> countObjects(std::int64_t ns);
  Deferred<StoredObject> describeObject(std::int64_t ns, const ObjectId::Raw& id);
  // Calls fn(ns, id, time) for every stored alarm, blocking (start-up).
  void loadAlarms(const std::function<void(std::int64_t, const ObjectId::Raw&, std::int64_t)>& fn);
  Deferred<std::vector<StoredAlarm>> readAlarms() { return engine_->readAlarms(); }

  // Called on the shard thread for each alarm change once its commit is durable.
  std::function<void(std::int64_t ns, const ObjectId::Raw& id, std::optional<std::int64_t> time)> onAlarmDurable;
  // Called on the shard thread when a commit's report leaves the partition quiescent().
  std::function<void()> onQuiet;

 private:
  struct AlarmChange {
    std::int64_t ns;
    ObjectId::Raw id;
    std::optional<std::int64_t> time;
  };
  struct InFlight {
    std::uint64_t seq;
    std::chrono::steady_clock::time_point submitted;
    std::vector<BatchWriter*> stores;
    std::vector<AlarmChange> alarms;
  };

  void engineCommitted(std::uint64_t seq) override;
  void engineFailed(std::uint64_t seq, std::exception_ptr why, CommitFailure how) override;
  void engineReady() override { flush(); }
  void checkUsable() const;  // throws once the partition is stopped

  const int index_;
  const std::unique_ptr<StorageEngine> engine_;
  const bool readsMayWait_;
  boost::asio::io_context& shard_;

  std::uint64_t openSeq_ = 1;
  std::uint64_t committedSeq_ = 0;
  std::uint64_t commits_ = 0;
  std::uint64_t epoch_ = 0;  // bumped when a failed commit has been dealt with
  bool flushPosted_ = false;
  std::vector<BatchWriter*> dirty_;
  std::unordered_set<BatchWriter*> dirtySet_;
  std::deque<InFlight> inFlight_;
  std::exception_ptr stoppedBy_;  // why the partition is stopped, or null
  metrics::PartitionMetrics metrics_;
};

}  // namespace durable::detail
