#include "storage/partition.h"

#include "base/log.h"

#include <durable/error.h>

#include <boost/asio/post.hpp>

#include <algorithm>

namespace durable::detail {

Partition::Partition(int index, std::unique_ptr<StorageEngine> engine, boost::asio::io_context& shard)
    : index_(index), engine_(std::move(engine)), readsMayWait_(engine_->readsMayWait()), shard_(shard) {
  engine_->setSink(this);
}

Partition::~Partition() = default;

void Partition::checkUsable() const {
  if (stoppedBy_) {
    throw Error(ErrorCode::kUnavailable, "storage is stopped until the server restarts: " + describeException(stoppedBy_));
  }
}

Deferred<std::optional<std::string>> Partition::read(std::int64_t ns, const ObjectId::Raw& id, std::string_view key) {
  checkUsable();
  return engine_->read(ns, id, key);
}

Deferred<std::optional<std::int64_t>> Partition::readAlarm(std::int64_t ns, const ObjectId::Raw& id) {
  checkUsable();
  return engine_->readAlarm(ns, id);
}

Deferred<std::optional<int>> Partition::countAlarmRun(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) {
  checkUsable();
  return engine_->countAlarmRun(ns, id, time);
}

Deferred<std::vector<SqlLogEntry>> Partition::readSqlLog(std::int64_t ns, const ObjectId::Raw& id,
                                                         std::uint64_t afterLsn, std::uint64_t throughLsn) {
  checkUsable();
  return engine_->readSqlLog(ns, id, afterLsn, throughLsn);
}

Deferred<SqlLogPosition> Partition::sqlLogPosition(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) {
  checkUsable();
  return engine_->sqlLogPosition(ns, id, time);
}

Deferred<Rows> Partition::scan(std::int64_t ns, const ObjectId::Raw& id, std::string_view lower, bool lowerInclusive,
                               const std::optional<std::string>& upper, bool reverse, std::size_t limit) {
  checkUsable();
  return engine_->scan(ns, id, lower, lowerInclusive, upper, reverse, limit);
}

void Partition::purgeNamespace(std::int64_t ns) { engine_->purgeNamespace(ns); }

Deferred<std::vector<StoredObject>> Partition::listObjects(std::int64_t ns, const std::optional<ObjectId::Raw>& after,
                                                std::size_t limit) {
  checkUsable();
  return engine_->listObjects(ns, after, limit);
}

Deferred<std::size_t> Partition::countObjects(std::int64_t ns) {
  checkUsable();
  return engine_->countObjects(ns);
}

Deferred<StoredObject> Partition::describeObject(std::int64_t ns, const ObjectId::Raw& id) {
  checkUsable();
  return engine_->describeObject(ns, id);
}

void Partition::loadAlarms(const std::function<void(std::int64_t, const ObjectId::Raw&, std::int64_t)>& fn) {
  engine_->loadAlarms(fn);
}

void Partition::markDirty(BatchWriter* store) {
  if (dirtySet_.insert(store).second) dirty_.push_back(store);
  if (!flushPosted_) {
    flushPosted_ = true;
    boost::asio::post(shard_, [this] {
      flushPosted_ = false;
      flush();
    });
  }
}

void Partition::flush() {
  if (dirty_.empty()) return;
  if (!engine_->accepting()) return;
  CommitBatch batch;
  batch.seq = openSeq_++;
  batch.epoch = epoch_;
  batch.objects.reserve(dirty_.size());
  for (BatchWriter* store : dirty_) {
    batch.objects.emplace_back();
    store->emit(batch.seq, batch.objects.back());
  }
  InFlight& f = inFlight_.emplace_back();
  f.seq = batch.seq;
  f.submitted = std::chrono::steady_clock::now();
  metrics_.batchObjects.observe(static_cast<double>(batch.objects.size()));
  for (const auto& ob : batch.objects) {
    if (ob.alarmChanged) f.alarms.push_back({ob.ns, ob.id, ob.alarm});
  }
  f.stores = std::move(dirty_);
  dirty_.clear();
  dirtySet_.clear();
  engine_->submit(std::move(batch));
  const std::vector<BatchWriter*> stores = inFlight_.back().stores;
  for (BatchWriter* store : stores) store->emitted();
}

void Partition::engineCommitted(std::uint64_t seq) {
  if (seq <= committedSeq_) return;
  committedSeq_ = seq;
  ++commits_;
  const auto now = std::chrono::steady_clock::now();
  while (!inFlight_.empty() && inFlight_.front().seq <= seq) {
    InFlight f = std::move(inFlight_.front());
    inFlight_.pop_front();
    metrics_.commitDuration.observe(std::chrono::duration<double>(now - f.submitted).count());
    for (BatchWriter* store : f.stores) store->committed(f.seq);
    if (onAlarmDurable) {
      for (const auto& a : f.alarms) onAlarmDurable(a.ns, a.id, a.time);
    }
  }
  if (onQuiet && quiescent()) onQuiet();
}

void Partition::engineFailed(std::uint64_t seq, std::exception_ptr why, CommitFailure how) {
  const std::string error = describeException(why);
  const bool fatal = how == CommitFailure::kFatal;
  if (fatal && !stoppedBy_) {
    stoppedBy_ = why;
    log("storage: partition ", index_, " is stopped until the server restarts: ", error);
  }
  if (seq <= committedSeq_) return;  // a refused batch of an epoch already failed below
  // The batch never became durable, and every batch after it, in flight or open, was built
  // on its writes. Every reply that depends on any of them fails; every object that wrote to
  // one is reset so its next event reloads what the engine really holds. The engine refuses
  // the rest of this epoch's batches (CommitBatch::epoch); the next batch starts a new one.
  log("storage: commit of partition ", index_, " batch ", seq, " failed: ", error);
  std::vector<BatchWriter*> stores = std::move(dirty_);
  dirty_.clear();
  dirtySet_.clear();
  for (auto& f : inFlight_) stores.insert(stores.end(), f.stores.begin(), f.stores.end());
  inFlight_.clear();
  committedSeq_ = openSeq_++;  // the open batch is abandoned with its objects
  ++epoch_;
  // A store in several batches is reset once: reset() may end its object.
  std::sort(stores.begin(), stores.end());
  stores.erase(std::unique(stores.begin(), stores.end()), stores.end());
  // Retryable only when nothing landed and the storage still works: after a fatal failure a
  // retry fails too, and a commit whose outcome is unknown may have applied the writes.
  const char* what = fatal ? "storage failed"
                     : how == CommitFailure::kOutcomeUnknown
                         ? "the storage commit's outcome is unknown (its writes may have landed)"
                         : "storage commit failed";
  auto err = std::make_exception_ptr(Error(ErrorCode::kUnavailable, std::string(what) + "; the object was reset: " + error,
                                           {.retryable = how == CommitFailure::kNotWritten}));
  for (BatchWriter* store : stores) store->reset(err);
  if (onQuiet && quiescent()) onQuiet();
}

}  // namespace durable::detail
