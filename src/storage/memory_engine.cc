#include "storage/memory_engine.h"

#include <boost/asio/post.hpp>

#include <limits>
#include <set>
#include <vector>

namespace durable::detail {

MemoryEngine::MemoryEngine(std::shared_ptr<Data> rows, boost::asio::io_context& shard)
    : rows_(std::move(rows)), shard_(shard) {}

namespace {
// Answers on a later turn of the loop, as over a network.
template <class T>
Future<T> later(boost::asio::io_context& shard, T value) {
  Promise<T> promise;
  Future<T> future = promise.future();
  boost::asio::post(shard, [promise, value = std::move(value)]() mutable { promise.setValue(std::move(value)); });
  return future;
}
}  // namespace

Deferred<std::optional<std::string>> MemoryEngine::read(std::int64_t ns, const ObjectId::Raw& id,
                                                        std::string_view key) {
  std::optional<std::string> value;
  {
    std::lock_guard lock(rows_->mu);
    if (auto object = rows_->kv.find({ns, id}); object != rows_->kv.end()) {
      if (auto row = object->second.find(key); row != object->second.end()) value = row->second;
    }
  }
  return later(shard_, std::move(value));
}

Deferred<Rows> MemoryEngine::scan(std::int64_t ns, const ObjectId::Raw& id, std::string_view lower, bool lowerInclusive,
                                  const std::optional<std::string>& upper, bool reverse, std::size_t limit) {
  Rows rows;
  {
    std::lock_guard lock(rows_->mu);
    if (auto object = rows_->kv.find({ns, id}); object != rows_->kv.end()) {
      const auto& keys = object->second;
      auto first = lowerInclusive ? keys.lower_bound(lower) : keys.upper_bound(lower);
      auto last = upper ? keys.lower_bound(*upper) : keys.end();
      if (first != keys.end() && last != keys.begin() && (last == keys.end() || first->first < last->first)) {
        if (reverse) {
          for (auto it = last; it != first && rows.size() < limit;) {
            --it;
            rows.push_back({it->first, it->second});
          }
        } else {
          for (auto it = first; it != last && rows.size() < limit; ++it) rows.push_back({it->first, it->second});
        }
      }
    }
  }
  return later(shard_, std::move(rows));
}

Deferred<std::optional<std::int64_t>> MemoryEngine::readAlarm(std::int64_t ns, const ObjectId::Raw& id) {
  std::optional<std::int64_t> time;
  {
    std::lock_guard lock(rows_->mu);
    if (auto it = rows_->alarms.find({ns, id}); it != rows_->alarms.end()) time = it->second;
  }
  return later(shard_, time);
}

Deferred<std::vector<SqlLogEntry>> MemoryEngine::readSqlLog(std::int64_t ns, const ObjectId::Raw& id,
                                                            std::uint64_t afterLsn, std::uint64_t throughLsn) {
  std::vector<SqlLogEntry> out;
  {
    std::lock_guard lock(rows_->mu);
    if (auto log = rows_->sqlLog.find({ns, id}); log != rows_->sqlLog.end()) {
      for (auto it = log->second.upper_bound(afterLsn); it != log->second.end() && it->first <= throughLsn; ++it) {
        out.push_back(it->second);
      }
    }
  }
  return later(shard_, std::move(out));
}

Deferred<SqlLogPosition> MemoryEngine::sqlLogPosition(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) {
  SqlLogPosition position;
  {
    std::lock_guard lock(rows_->mu);
    if (auto log = rows_->sqlLog.find({ns, id}); log != rows_->sqlLog.end() && !log->second.empty()) {
      position.oldestLsn = log->second.begin()->first;
      for (auto it = log->second.rbegin(); it != log->second.rend(); ++it) {
        if (it->second.at <= time) {
          position.lsn = it->first;
          position.at = it->second.at;
          break;
        }
      }
    }
  }
  return later(shard_, position);
}

void MemoryEngine::submit(CommitBatch batch) {
  // Reported on a later turn, as a networked engine would.
  auto report = [this, seq = batch.seq] { boost::asio::post(shard_, [this, seq] { sink_->engineCommitted(seq); }); };
  {
    std::lock_guard lock(rows_->mu);
    for (const ObjectBatch& ob : batch.objects) {
      const auto object = std::make_pair(ob.ns, ob.id);
      auto& keys = rows_->kv[object];
      if (ob.deleteAll) keys.clear();
      for (const WriteOp& w : ob.writes) {
        std::string scratch;
        if (const std::string* bytes = w.bytes(scratch)) {
          keys.insert_or_assign(w.key, *bytes);
        } else {
          keys.erase(w.key);
        }
      }
      if (keys.empty()) rows_->kv.erase(object);
      if (ob.alarmChanged) {
        if (ob.alarm) {
          rows_->alarms.insert_or_assign(object, *ob.alarm);
        } else {
          rows_->alarms.erase(object);
        }
      }
      if (ob.name) rows_->names.try_emplace(object, *ob.name);
      for (const SqlLogEntry& entry : ob.sqlLog) rows_->sqlLog[object][entry.lsn] = entry;
      if (ob.sqlLogPruneThrough) {
        if (auto log = rows_->sqlLog.find(object); log != rows_->sqlLog.end()) {
          log->second.erase(log->second.begin(), log->second.upper_bound(*ob.sqlLogPruneThrough));
          if (log->second.empty()) rows_->sqlLog.erase(log);
        }
      }
    }
    if (rows_->holding) {
      rows_->heldReports.emplace_back(std::move(report));
      return;
    }
  }
  report();
}

void MemoryEngine::Data::release() {
  std::vector<std::function<void()>> reports;
  {
    std::lock_guard lock(mu);
    holding = false;
    reports.swap(heldReports);
  }
  for (auto& report : reports) report();
}

void MemoryEngine::purgeNamespace(std::int64_t ns) {
  std::lock_guard lock(rows_->mu);
  std::erase_if(rows_->kv, [ns](const auto& entry) { return entry.first.first == ns; });
  std::erase_if(rows_->alarms, [ns](const auto& entry) { return entry.first.first == ns; });
  std::erase_if(rows_->names, [ns](const auto& entry) { return entry.first.first == ns; });
  std::erase_if(rows_->sqlLog, [ns](const auto& entry) { return entry.first.first == ns; });
}

StoredObject MemoryEngine::describeLocked(std::int64_t ns, const ObjectId::Raw& id) const {
  StoredObject o;
  o.id = id;
  const auto object = std::make_pair(ns, id);
  if (auto kv = rows_->kv.find(object); kv != rows_->kv.end()) {
    o.keys = kv->second.size();
    for (const auto& [key, value] : kv->second) o.bytes += key.size() + value.size();
  }
  if (auto alarm = rows_->alarms.find(object); alarm != rows_->alarms.end()) o.alarm = alarm->second;
  if (auto name = rows_->names.find(object); name != rows_->names.end()) o.name = name->second;
  return o;
}

Deferred<std::vector<StoredObject>> MemoryEngine::listObjects(std::int64_t ns, const std::optional<ObjectId::Raw>& after,
                                                   std::size_t limit) {
  std::lock_guard lock(rows_->mu);
  std::set<ObjectId::Raw> ids;
  for (const auto& [object, keys] : rows_->kv) {
    if (object.first == ns && !keys.empty() && (!after || object.second > *after)) ids.insert(object.second);
  }
  for (const auto& [object, time] : rows_->alarms) {
    if (object.first == ns && (!after || object.second > *after)) ids.insert(object.second);
  }
  for (const auto& [object, log] : rows_->sqlLog) {
    if (object.first == ns && !log.empty() && (!after || object.second > *after)) ids.insert(object.second);
  }
  std::vector<StoredObject> out;
  for (const auto& id : ids) {
    if (out.size() >= limit) break;
    out.push_back(describeLocked(ns, id));
  }
  return out;
}

Deferred<std::size_t> MemoryEngine::countObjects(std::int64_t ns) {
  return std::get<std::vector<StoredObject>>(listObjects(ns, std::nullopt, std::numeric_limits<std::size_t>::max())).size();
}

Deferred<StoredObject> MemoryEngine::describeObject(std::int64_t ns, const ObjectId::Raw& id) {
  std::lock_guard lock(rows_->mu);
  return describeLocked(ns, id);
}

void MemoryEngine::loadAlarms(const std::function<void(std::int64_t, const ObjectId::Raw&, std::int64_t)>& fn) {
  std::vector<std::pair<std::pair<std::int64_t, ObjectId::Raw>, std::int64_t>> all;
  {
    std::lock_guard lock(rows_->mu);
    all.assign(rows_->alarms.begin(), rows_->alarms.end());
  }
  for (const auto& [object, time] : all) fn(object.first, object.second, time);
}

}  // namespace durable::detail
