#include "storage/object_store.h"

#include "base/log.h"
#include "base/utf8.h"

#include <durable/clock.h>
#include <durable/error.h>

#include <algorithm>

namespace durable::detail {

std::optional<std::string> prefixEnd(std::string_view view) {
  std::string prefix(view);
  while (!prefix.empty()) {
    auto& c = reinterpret_cast<unsigned char&>(prefix.back());
    if (c != 0xFF) {
      ++c;
      return prefix;
    }
    prefix.pop_back();
  }
  return std::nullopt;
}

namespace {

struct Range {
  std::string lower;
  bool lowerInclusive = true;
  std::optional<std::string> upper;  // exclusive
  bool empty = false;

  bool contains(std::string_view k) const {
    if (lowerInclusive ? k < lower : k <= lower) return false;
    return !upper || k < *upper;
  }
};

Range rangeOf(const ListOptions& o) {
  if (o.start && o.startAfter) {
    throw Error(ErrorCode::kInvalidArgument, "list(): start and startAfter cannot be combined");
  }
  Range r;
  if (o.start) r.lower = o.start->view();
  if (o.startAfter) {
    r.lower = o.startAfter->view();
    r.lowerInclusive = false;
  }
  if (o.end) r.upper = o.end->str();
  if (o.prefix && !o.prefix->empty()) {
    const std::string_view prefix = *o.prefix;
    if (prefix > r.lower) {
      r.lower = prefix;
      r.lowerInclusive = true;
    }
    if (auto pe = prefixEnd(prefix); pe && (!r.upper || *pe < *r.upper)) r.upper = std::move(pe);
  }
  if (r.upper && (*r.upper < r.lower || (*r.upper == r.lower))) r.empty = true;
  return r;
}

}  // namespace

ObjectStore::ObjectStore(Partition& partition, std::int64_t ns, const ObjectId& id, Limits limits,
                         std::function<void()> onReset, InputGate& inputGate, OutputGate& outputGate,
                         std::optional<SqlConfig> sql)
    : partition_(partition),
      // A SQLite-backed object's keys are in its own database, which answers at once.
      readsMayWait_(partition.readsMayWait() && !sql),
      alarmReadsMayWait_(partition.readsMayWait()),
      ns_(ns),
      id_(id),
      limits_(limits),
      onReset_(std::move(onReset)),
      inputGate_(inputGate),
      outputGate_(outputGate),
      sqlConfig_(std::move(sql)) {}

ObjectStore::~ObjectStore() = default;

void ObjectStore::checkKey(std::string_view key) const {
  if (!validUtf8(key)) throw Error(ErrorCode::kInvalidArgument, "Keys must be UTF-8 text");
  if (key.size() > kMaxKeyBytes) {
    throw Error(ErrorCode::kInvalidArgument,
                "Keys cannot be larger than " + std::to_string(kMaxKeyBytes) + " bytes (got " +
                    std::to_string(key.size()) + ")");
  }
}

void ObjectStore::checkValue(std::string_view key, const std::string& encoded) const {
  // The tag byte is ours, not the caller's: it does not count against the limit.
  const std::size_t size = encoded.size() - 1;
  if (limits_.keyCounts) {
    if (key.size() + size > limits_.maxValueBytes) {
      throw Error(ErrorCode::kInvalidArgument,
                  "Key and value together cannot be larger than " + std::to_string(limits_.maxValueBytes) +
                      " bytes (key \"" + std::string(key.substr(0, 64)) + "\" got " + std::to_string(key.size() + size) +
                      ")");
    }
  } else if (size > limits_.maxValueBytes) {
    throw Error(ErrorCode::kInvalidArgument, "Values cannot be larger than " + std::to_string(limits_.maxValueBytes) +
                                                 " bytes (key \"" + std::string(key.substr(0, 64)) + "\" got " +
                                                 std::to_string(size) + ")");
  }
}

std::optional<std::string> ObjectStore::read(std::string_view key, const TxnOverlay* txn) {
  if (txn) {
    if (auto it = txn->writes.find(key); it != txn->writes.end()) return it->second;
    if (txn->deleteAll) return std::nullopt;
  }
  if (auto it = cache_.find(key); it != cache_.end()) return encoded(it->second);
  if (complete_) return std::nullopt;
  if (sqlConfig_) {
    auto value = sqlForStatement().kvGet(key);
    cache_.emplace(std::string(key), Entry{.value = value});
    return value;
  }
  auto v = partition_.read(ns_, id_.raw(), key);
  // Storage loads what an engine that waits must fetch before it reads (needsLoad()), unless
  // a failed commit emptied the cache in between.
  if (v.index() != 0) {
    throw Error(ErrorCode::kUnavailable, "storage was reset while this call waited for it; try again",
                {.retryable = true});
  }
  cache_.emplace(std::string(key), Entry{.value = std::get<0>(v)});
  return std::move(std::get<0>(v));
}

bool ObjectStore::needsLoad(std::string_view key, const TxnOverlay* txn) const {
  if (!readsMayWait_ || complete_) return false;
  if (txn && (txn->deleteAll || txn->writes.contains(key))) return false;
  return !cache_.contains(key);
}

bool ObjectStore::needsAlarmLoad(const TxnOverlay* txn) const {
  if (!alarmReadsMayWait_ || alarmLoaded_) return false;
  if (txn && txn->alarmChanged) return false;
  return !(firing_ && !firingChanged_);
}

template <class T>
Task<T> ObjectStore::awaitEngine(Future<T> answer) {
  // While the object waits on its own storage, no other event enters.
  InputGate::Lock lock;
  const std::uint64_t flow = currentContext().flow;
  if (flow != 0) lock = inputGate_.lock(flow);
  co_return co_await answer;
}

Task<void> ObjectStore::load(std::vector<std::string> keys, bool alarm) {
  for (auto& key : keys) {
    auto v = partition_.read(ns_, id_.raw(), key);
    std::optional<std::string> value;
    if (v.index() == 0) {
      value = std::move(std::get<0>(v));
    } else {
      value = co_await awaitEngine(std::move(std::get<1>(v)));
    }
    // Written while the read waited (by the same event): the write is newer.
    if (!complete_) cache_.try_emplace(std::move(key), Entry{.value = std::move(value)});
  }
  if (alarm && !alarmLoaded_) {
    auto v = partition_.readAlarm(ns_, id_.raw());
    std::optional<std::int64_t> time;
    if (v.index() == 0) {
      time = std::get<0>(v);
    } else {
      time = co_await awaitEngine(std::move(std::get<1>(v)));
    }
    if (!alarmLoaded_) {
      alarm_ = time;
      alarmLoaded_ = true;
    }
  }
}

void ObjectStore::checkWritable() const {
  if (retiredFlowsBelow_ == 0) return;
  const std::uint64_t flow = currentContext().flow;
  if (flow != 0 && flow < retiredFlowsBelow_) std::rethrow_exception(retiredWhy_);
}

void ObjectStore::markOpen(const std::string& key, Entry& e) {
  if (e.seq != kOpen) {
    e.seq = kOpen;
    openKeys_.push_back(key);
  }
}

void ObjectStore::touch() {
  if (!openHold_.held()) openHold_ = outputGate_.hold();
  dirty_ = true;
  partition_.markDirty(this);
}

void ObjectStore::write(std::string_view key, std::optional<std::string> encoded, TxnOverlay* txn,
                        std::shared_ptr<Value> decoded) {
  if (txn) {
    txn->writes.insert_or_assign(std::string(key), std::move(encoded));
    return;
  }
  if (sqlConfig_) {
    ObjectSqlDb& db = sqlForStatement();
    if (db.inSavepoint()) {
      // Into the object's database at once, so that the savepoint's rollback undoes it.
      kvWrittenInSavepoint_ = true;
      if (encoded) {
        db.kvPut(key, *encoded);
      } else {
        db.kvDelete(key);
      }
      cacheWrite(key, std::move(encoded), std::move(decoded), false);
      return;
    }
  }
  cacheWrite(key, std::move(encoded), std::move(decoded), sqlConfig_.has_value());
}

void ObjectStore::writeAll(std::vector<std::pair<std::string, std::optional<std::string>>> writes, bool deleteAll) {
  if (!sqlSavepointOpen()) {
    // A SQLite-backed object's database gets them with the batch, all at once (flushSqlKv).
    if (sqlConfig_) sqlForStatement();
    if (deleteAll) removeAll(nullptr);
    for (auto& [k, v] : writes) cacheWrite(k, std::move(v), nullptr, sqlConfig_.has_value());
    return;
  }
  // The database first, all or nothing; then the cache, which cannot fail.
  std::vector<ObjectSqlDb::KvWrite> rows;
  rows.reserve(writes.size());
  for (const auto& [k, v] : writes) rows.push_back({k, v ? &*v : nullptr});
  kvWrittenInSavepoint_ = true;
  sqlForStatement().kvWriteAll(deleteAll, rows);
  if (deleteAll) cacheRemoveAll();
  for (auto& [k, v] : writes) cacheWrite(k, std::move(v), nullptr, false);
}

bool ObjectStore::fits(std::string_view key, std::size_t encodedBytes) const {
  const std::size_t size = encodedBytes - 1;  // the tag byte is ours
  return limits_.keyCounts ? key.size() + size <= limits_.maxValueBytes : size <= limits_.maxValueBytes;
}

void ObjectStore::removeAll(TxnOverlay* txn) {
  if (txn) {
    txn->writes.clear();
    txn->deleteAll = true;
    txn->alarmChanged = true;
    txn->alarm.reset();
    return;
  }
  if (sqlConfig_) {
    ObjectSqlDb& db = sqlForStatement();
    kvWrittenInSavepoint_ = kvWrittenInSavepoint_ || db.inSavepoint();
    db.kvDeleteAll();
  }
  cacheRemoveAll();
}

void ObjectStore::cacheRemoveAll() {
  // In-flight entries stay known to committed() through inFlightKeys_; the cache itself
  // restarts empty and complete.
  cache_.clear();
  openKeys_.clear();
  sqlKvPending_ = false;
  complete_ = true;
  openDeleteAll_ = !sqlConfig_;
  alarmLoaded_ = true;
  alarm_.reset();
  alarmSeq_ = kOpen;
  touch();
}

ObjectStore::ListPlan ObjectStore::planList(const ListOptions& o, const TxnOverlay* txn) {
  ListPlan p;
  Range r = rangeOf(o);
  p.limit = o.limit.value_or(SIZE_MAX);
  p.reverse = o.reverse;
  if (p.limit == 0 || r.empty) {
    p.done = true;
    return p;
  }
  if (o.prefix && !o.prefix->empty()) p.prefix = o.prefix->str();
  auto wanted = [&](std::string_view k) {
    return r.contains(k) && (!p.prefix || k.substr(0, p.prefix->size()) == *p.prefix);
  };
  // Overrides of the engine's rows, in key order: the overlay's writes over the cache's
  // undurable entries (or the whole cache when it is complete). nullopt means "deleted".
  // Copies: a list that waits for the engine must not hold views into a cache that may change.
  std::map<std::string, std::optional<std::string>, std::less<>> over;
  p.skipEngine = complete_ || (txn && txn->deleteAll);
  if (!(txn && txn->deleteAll)) {
    auto lo = r.lowerInclusive ? cache_.lower_bound(r.lower) : cache_.upper_bound(r.lower);
    for (auto it = lo; it != cache_.end(); ++it) {
      if (r.upper && it->first >= *r.upper) break;
      if ((complete_ || it->second.seq != 0) && wanted(it->first)) over.emplace(it->first, encoded(it->second));
    }
  }
  if (txn) {
    for (auto& [k, v] : txn->writes) {
      if (wanted(k)) over.insert_or_assign(k, v);
    }
  }
  p.overrides.reserve(over.size());
  for (auto& entry : over) p.overrides.emplace_back(entry.first, std::move(entry.second));
  if (p.reverse) std::reverse(p.overrides.begin(), p.overrides.end());
  p.range.lower = std::move(r.lower);
  p.range.lowerInclusive = r.lowerInclusive;
  p.range.upper = std::move(r.upper);
  return p;
}

std::size_t ObjectStore::ListPlan::pageSize() const {
  if (limit == SIZE_MAX) return SIZE_MAX;
  // Each override may hide one row; one more row tells whether the engine has run out.
  return (limit - taken) + (overrides.size() - nextOverride) + 1;
}

Deferred<Rows> ObjectStore::fetchPage(const ListPlan& p) {
  std::string_view lower = p.range.lower;
  bool lowerInclusive = p.range.lowerInclusive;
  std::optional<std::string> upper = p.range.upper;
  if (p.resumeAfter) {
    if (p.reverse) {
      upper = *p.resumeAfter;
    } else {
      lower = *p.resumeAfter;
      lowerInclusive = false;
    }
  }
  if (sqlConfig_) {
    Rows rows;
    for (auto& [k, v] : sqlForStatement().kvScan(lower, lowerInclusive, upper, p.reverse, p.pageSize())) {
      rows.push_back({std::move(k), std::move(v)});
    }
    return rows;
  }
  return partition_.scan(ns_, id_.raw(), lower, lowerInclusive, upper, p.reverse, p.pageSize());
}

bool ObjectStore::ListPlan::emit(std::string_view k, std::string_view v, const Accept& accept) {
  if (accept(k, v)) ++taken;
  if (taken >= limit) done = true;
  return !done;
}

bool ObjectStore::ListPlan::feed(const Rows& rows, std::size_t asked, const Accept& accept) {
  auto before = [this](std::string_view a, std::string_view b) { return reverse ? a > b : a < b; };
  for (const Row& row : rows) {
    resumeAfter = row.key;
    if (prefix && std::string_view(row.key).substr(0, prefix->size()) != *prefix) continue;
    for (; nextOverride < overrides.size() && before(overrides[nextOverride].first, row.key); ++nextOverride) {
      const auto& [k, v] = overrides[nextOverride];
      if (v && !emit(k, *v, accept)) return false;
    }
    if (nextOverride < overrides.size() && overrides[nextOverride].first == row.key) {
      const auto& v = overrides[nextOverride++].second;
      if (v && !emit(row.key, *v, accept)) return false;
      continue;
    }
    if (!emit(row.key, row.value, accept)) return false;
  }
  return rows.size() >= asked;
}

void ObjectStore::ListPlan::finish(const Accept& accept) {
  for (; !done && nextOverride < overrides.size(); ++nextOverride) {
    const auto& [k, v] = overrides[nextOverride];
    if (v) emit(k, *v, accept);
  }
  done = true;
}

void ObjectStore::list(ListPlan& p, const Accept& accept) {
  while (!p.done && !p.skipEngine) {
    const std::size_t asked = p.pageSize();
    Deferred<Rows> page = fetchPage(p);
    if (page.index() != 0) throw Error(ErrorCode::kInternal, "list(): the storage engine answered later than expected");
    if (!p.feed(std::get<0>(page), asked, accept)) break;
  }
  p.finish(accept);
}

Task<void> ObjectStore::listLater(ListPlan p, Accept accept) {
  while (!p.done && !p.skipEngine) {
    const std::size_t asked = p.pageSize();
    Deferred<Rows> page = fetchPage(p);
    // Statements, not ?: : with a co_await in one arm, g++ 12.2 destroyed a temporary it
    // never built (the cache was left pointing at freed memory).
    Rows rows;
    if (page.index() == 0) {
      rows = std::move(std::get<0>(page));
    } else {
      rows = co_await awaitEngine(std::move(std::get<1>(page)));
    }
    if (!p.feed(rows, asked, accept)) break;
  }
  p.finish(accept);
}

void ObjectStore::beginAlarm(std::int64_t scheduledTime) {
  firing_ = true;
  firingChanged_ = false;
  firingTime_ = scheduledTime;
}

void ObjectStore::endAlarm(bool succeeded) {
  if (!firing_) return;
  firing_ = false;
  if (succeeded && !firingChanged_ && alarm(nullptr) == firingTime_) setAlarm(std::nullopt, nullptr);
}

std::optional<std::int64_t> ObjectStore::alarm(const TxnOverlay* txn) {
  if (txn && txn->alarmChanged) return txn->alarm;
  if (firing_ && !firingChanged_) return std::nullopt;
  if (!alarmLoaded_) {
    auto v = partition_.readAlarm(ns_, id_.raw());
    if (v.index() != 0) {
      throw Error(ErrorCode::kUnavailable, "storage was reset while this call waited for it; try again",
                {.retryable = true});
    }
    alarm_ = std::get<0>(v);
    alarmLoaded_ = true;
  }
  return alarm_;
}

void ObjectStore::setAlarm(std::optional<std::int64_t> time, TxnOverlay* txn) {
  if (txn) {
    txn->alarmChanged = true;
    txn->alarm = time;
    return;
  }
  alarmLoaded_ = true;
  alarm_ = time;
  alarmSeq_ = kOpen;
  if (firing_) firingChanged_ = true;
  touch();
}

void ObjectStore::apply(TxnOverlay&& txn) {
  std::vector<std::pair<std::string, std::optional<std::string>>> writes;
  writes.reserve(txn.writes.size());
  for (auto& [k, v] : txn.writes) writes.emplace_back(k, std::move(v));
  writeAll(std::move(writes), txn.deleteAll);
  // Not skipped after deleteAll: the transaction may have set an alarm after it.
  if (txn.alarmChanged) setAlarm(txn.alarm, nullptr);
}

Future<void> ObjectStore::waitDurable() {
  Promise<void> promise;
  Future<void> future = promise.future();
  outputGate_.whenReleased([promise](std::exception_ptr error) mutable {
    if (error) {
      promise.setError(std::move(error));
    } else {
      promise.setValue();
    }
  });
  return future;
}

void ObjectStore::emit(std::uint64_t seq, ObjectBatch& out) {
  if (sqlKvPending_) {
    emitting_ = true;
    if (!sql_ || !sqlReady()) {
      abandonOpenBatch(std::make_exception_ptr(Error(
          ErrorCode::kUnavailable, "storage: the object's SQL database was reset before its writes could reach it",
          {.retryable = true})));
    } else {
      try {
        flushSqlKv();
      } catch (const std::exception&) {
        // flushSqlKv() abandoned the open batch: what is left of it is empty.
      }
    }
    emitting_ = false;
  }
  out.ns = ns_;
  out.id = id_.raw();
  out.fenceEpoch = fenceEpoch_;
  out.deleteAll = std::exchange(openDeleteAll_, false);
  out.writes.reserve(openKeys_.size());
  for (auto& key : openKeys_) {
    auto it = cache_.find(key);
    if (it == cache_.end() || it->second.seq != kOpen) continue;
    it->second.seq = seq;
    // A SQLite-backed object's keys travel in its SQL log entry.
    if (sqlConfig_) continue;
    if (it->second.encodePending) {
      // The engine encodes it as it commits; the shard encodes it only if it needs the bytes itself.
      out.writes.push_back({key, std::nullopt, it->second.decoded});
    } else {
      out.writes.push_back({key, it->second.value});
    }
  }
  if (alarmSeq_ == kOpen) {
    out.alarmChanged = true;
    out.alarm = alarm_;
    alarmSeq_ = seq;
  }
  if (!nameRecorded_ && id_.name()) {
    out.name = *id_.name();
    nameRecorded_ = true;
  }
  std::uint64_t sqlLsn = 0;
  if (sql_ && !sqlStale_) {
    for (auto& entry : sql_->emit(durable::now())) {
      sqlLsn = entry.lsn;
      out.sqlLog.push_back(SqlLogEntry{entry.lsn, std::move(entry.records), entry.at});
    }
    out.sqlLogPruneThrough = sql_->takePruneThrough();
  }
  inFlightSqlLsn_.push_back(sqlLsn);
  out.retired = std::move(retired_);
  retired_.clear();
  inFlightKeys_.push_back(std::move(openKeys_));
  openKeys_.clear();
  inFlightHolds_.push_back(std::move(openHold_));
  dirty_ = false;
  ++inFlight_;
}

void ObjectStore::emitted() {
  if (std::exchange(resetAfterEmit_, false) && onReset_) onReset_();
}

void ObjectStore::committed(std::uint64_t seq) {
  // An entry written again in a later batch keeps that batch's seq: it is still in flight.
  if (!inFlightKeys_.empty()) {
    for (auto& key : inFlightKeys_.front()) {
      if (auto it = cache_.find(key); it != cache_.end() && it->second.seq == seq) it->second.seq = 0;
    }
    inFlightKeys_.pop_front();
  }
  if (alarmSeq_ == seq) alarmSeq_ = 0;
  --inFlight_;
  if (!inFlightSqlLsn_.empty()) {
    const std::uint64_t lsn = inFlightSqlLsn_.front();
    inFlightSqlLsn_.pop_front();
    if (sql_ && !sqlStale_) {
      try {
        sql_->durable(lsn, durable::now());
        // A hot object's file commits only in a moment when nothing it holds is in flight:
        // after four commits' worth of entries without one, new events wait for it.
        if (sql_->mustQuiesce(4 * sql_->commitInterval())) {
          if (!quiesce_.held()) quiesce_ = inputGate_.lock(kQuiesceFlow);
        } else {
          quiesce_.release();
        }
      } catch (const std::exception& e) {
        // The log has every entry; the file catches up by replaying before its next statement.
        logError("storage: object ", id_.toString(), ": its SQL database could not commit: ", e.what());
        sql_->markStale();
      }
    }
    if (sql_ && !sqlReady()) resyncSql();
  }
  // Last: releasing may send output at once, which must see this store's state as final.
  if (!inFlightHolds_.empty()) {
    OutputGate::Hold hold = std::move(inFlightHolds_.front());
    inFlightHolds_.pop_front();
    hold.release();
  }
}

void ObjectStore::reset(std::exception_ptr why) {
  cache_.clear();
  sqlKvPending_ = false;
  complete_ = false;
  openKeys_.clear();
  inFlightKeys_.clear();
  openDeleteAll_ = false;
  dirty_ = false;
  inFlight_ = 0;
  alarmLoaded_ = false;
  alarm_.reset();
  alarmSeq_ = 0;
  firing_ = false;
  inFlightSqlLsn_.clear();
  if (sql_) sqlLost();
  auto holds = std::move(inFlightHolds_);
  inFlightHolds_.clear();
  holds.push_back(std::move(openHold_));
  for (auto& hold : holds) hold.release(why);
  if (onReset_) onReset_();
}

}  // namespace durable::detail
