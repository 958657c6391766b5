#include "runtime/alarm_scheduler.h"

#include "base/log.h"
#include "runtime/runtime.h"

#include <durable/clock.h>

#include <boost/asio/post.hpp>

#include <vector>

namespace durable::detail {

AlarmScheduler::AlarmScheduler(Shard& shard) : shard_(shard), rng_(std::random_device{}()) {}

AlarmScheduler::~AlarmScheduler() {
  *alive_ = false;
  if (armedTimer_) shard_.timers().cancel(armedTimer_);
}

void AlarmScheduler::load() {
  for (auto& p : shard_.partitions) {
    p->loadAlarms([this](std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) {
      Key key{ns, id};
      Entry& e = byKey_[key];
      e.time = e.scheduledTime = time;
      schedule(key, e);
    });
  }
  arm();
}

namespace {
Task<std::vector<StoredAlarm>> readAllAlarms(Shard& shard) {
  std::vector<StoredAlarm> all;
  for (auto& p : shard.partitions) {
    auto pending = answerOf(p->readAlarms());
    std::vector<StoredAlarm> some = co_await std::move(pending);
    all.insert(all.end(), some.begin(), some.end());
  }
  co_return all;
}
}  // namespace

void AlarmScheduler::loadNew(std::function<void(std::exception_ptr)> done) {
  if (loading_) {
    // What is in flight may have been read before the slots that asked for this were claimed.
    nextLoadWaiters_.push_back(std::move(done));
    return;
  }
  loadWaiters_.push_back(std::move(done));
  startLoad();
}

void AlarmScheduler::startLoad() {
  loading_ = true;
  changedWhileLoading_.clear();
  spawn(readAllAlarms(shard_),
        std::function<void(Result<std::vector<StoredAlarm>>)>([this, alive = alive_](Result<std::vector<StoredAlarm>> r) {
          if (!*alive) return;
          loading_ = false;
          std::exception_ptr error = r.error();
          if (!error) loaded(r.value());
          changedWhileLoading_.clear();
          auto waiters = std::exchange(loadWaiters_, {});
          if (!nextLoadWaiters_.empty()) {
            loadWaiters_ = std::exchange(nextLoadWaiters_, {});
            startLoad();
          }
          for (auto& w : waiters) w(error);
        }));
}

void AlarmScheduler::loaded(const std::vector<StoredAlarm>& found) {
  // What this shard knows of the alarms of slots held here is replaced by what storage has: a
  // slot lost and claimed back may have had its alarms changed by another node meanwhile. An
  // alarm that changed here while the read was in flight is known better here.
  for (auto it = byKey_.begin(); it != byKey_.end();) {
    if (!it->second.running && !changedWhileLoading_.count(it->first) &&
        !shard_.runtime().heldElsewhere(ObjectId(it->first.id, std::nullopt))) {
      unschedule(it->first, it->second);
      it = byKey_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& f : found) {
    const Key key{f.ns, f.id};
    if (byKey_.count(key) || changedWhileLoading_.count(key)) continue;
    Entry& e = byKey_[key];
    e.time = e.scheduledTime = f.time;
    schedule(key, e);
  }
  arm();
}

void AlarmScheduler::schedule(const Key& key, Entry& e) { byTime_.emplace(e.time, key); }

void AlarmScheduler::unschedule(const Key& key, const Entry& e) { byTime_.erase({e.time, key}); }

void AlarmScheduler::onDurable(std::int64_t ns, const ObjectId::Raw& id, std::optional<std::int64_t> time) {
  Key key{ns, id};
  if (loading_) changedWhileLoading_.insert(key);
  auto it = byKey_.find(key);
  if (it == byKey_.end()) {
    if (time) {
      Entry& e = byKey_[key];
      e.time = e.scheduledTime = *time;
      schedule(key, e);
    }
    arm();
    return;
  }
  Entry& e = it->second;
  if (e.running) {
    // Decided when the run ends (finished()): the newest durable state wins.
    ++e.generation;
    e.deleted = !time;
    if (time) e.time = e.scheduledTime = *time;
    e.retry = 0;
    return;
  }
  unschedule(key, e);
  if (!time) {
    byKey_.erase(it);
  } else {
    e.time = e.scheduledTime = *time;
    e.retry = 0;
    schedule(key, e);
  }
  arm();
}

AlarmScheduler::RunNow AlarmScheduler::runNow(std::int64_t ns, const ObjectId::Raw& id) {
  Key key{ns, id};
  auto it = byKey_.find(key);
  if (it == byKey_.end()) return RunNow::kNoAlarm;
  if (paused_) return RunNow::kPaused;
  Entry& e = it->second;
  if (!e.running) {
    unschedule(key, e);
    e.time = durable::now();
    schedule(key, e);
    poke();
  }
  return RunNow::kStarted;
}

bool AlarmScheduler::due() const { return !paused_ && !byTime_.empty() && byTime_.begin()->first <= durable::now(); }

void AlarmScheduler::poke() {
  if (paused_) return arm();
  fireDue();
  arm();
}

void AlarmScheduler::arm() {
  // Every change to the schedule ends here.
  shard_.metrics().alarmsPending.set(static_cast<std::int64_t>(byKey_.size()));
  // The shard's timers wake us when the earliest alarm is due, on either clock (ShardTimers).
  const std::optional<std::int64_t> next =
      byTime_.empty() ? std::nullopt : std::optional<std::int64_t>(byTime_.begin()->first);
  if (paused_ || next == armedFor_) return;
  if (armedTimer_) shard_.timers().cancel(armedTimer_);
  armedTimer_ = 0;
  armedFor_ = next;
  if (!next) return;
  armedTimer_ = shard_.timers().at(*next, [this] {
    armedTimer_ = 0;
    armedFor_.reset();
    poke();
  });
}

void AlarmScheduler::fireDue() {
  const std::int64_t now = durable::now();
  while (!byTime_.empty() && byTime_.begin()->first <= now) {
    Key key = byTime_.begin()->second;
    byTime_.erase(byTime_.begin());
    Entry& e = byKey_.at(key);
    if (shard_.runtime().leaving(ObjectId(key.id, std::nullopt))) {
      // Cluster mode: the slot moved, or is being handed off; the node that claims it loads
      // this alarm then (and this one, if it claims the slot back).
      byKey_.erase(key);
      continue;
    }
    const NamespaceImpl* ns = shard_.runtime().namespaceById(key.ns);
    if (!ns) {
      log("alarms: no class is bound for namespace ", key.ns, "; alarm dropped");
      byKey_.erase(key);
      continue;
    }
    e.running = true;
    ++running_;
    const std::uint64_t generation = e.generation;
    Deferred<std::optional<int>> counted;
    try {
      counted = shard_.runtime().partitionOf(ObjectId(key.id, std::nullopt)).countAlarmRun(key.ns, key.id, e.scheduledTime);
    } catch (...) {
      finished(key, generation, std::current_exception());
      continue;
    }
    if (auto* now = std::get_if<std::optional<int>>(&counted)) {
      run(key, generation, *now);
      continue;
    }
    auto later = std::move(std::get<Future<std::optional<int>>>(counted));
    spawn([](Future<std::optional<int>> f) -> Task<std::optional<int>> { co_return co_await std::move(f); }(std::move(later)),
          std::function<void(Result<std::optional<int>>)>(
              [this, alive = alive_, key, generation](Result<std::optional<int>> r) {
                if (!*alive) return;
                if (!r.ok()) return finished(key, generation, r.error());
                run(key, generation, r.value());
              }));
  }
}

void AlarmScheduler::run(const Key& key, std::uint64_t generation, std::optional<int> previous) {
  auto it = byKey_.find(key);
  const NamespaceImpl* ns = shard_.runtime().namespaceById(key.ns);
  if (it == byKey_.end() || !previous || !ns) return finished(key, generation, nullptr, false);
  Entry& e = it->second;
  // Runs counted elsewhere (a node that died while it ran) are retries here too.
  e.retry = std::max(e.retry, *previous);
  AlarmInfo info;
  info.retryCount = e.retry;
  info.isRetry = e.retry > 0;
  info.scheduledTime = e.scheduledTime;
  shard_.host(*ns, ObjectId(key.id, std::nullopt)).alarm(info, [this, key, generation](std::exception_ptr error) {
    finished(key, generation, std::move(error));
  });
}

void AlarmScheduler::finished(const Key& key, std::uint64_t generation, std::exception_ptr error, bool ran) {
  --running_;
  // Last, once this run's outcome is in the schedule: whoever waits for the shard to settle.
  struct Settle {
    Shard& shard;
    ~Settle() { shard.checkSettled(); }
  } settle{shard_};
  auto& counters = shard_.metrics();
  if (ran) (error ? counters.alarmsFailed : counters.alarmsSucceeded).add();
  auto it = byKey_.find(key);
  if (it == byKey_.end()) return;
  Entry& e = it->second;
  e.running = false;
  if (e.generation != generation) {
    // Changed durably while it ran (the handler's own clean-up, or a new alarm): that stands.
    if (e.deleted) {
      byKey_.erase(it);
    } else {
      schedule(key, e);
    }
    arm();
    return;
  }
  if (!error) {
    byKey_.erase(it);
    arm();
    return;
  }
  if (e.retry >= kMaxRetries) {
    const NamespaceImpl* ns = shard_.runtime().namespaceById(key.ns);
    log("alarms: alarm of ", ns ? ns->className : "?", " ", ObjectId(key.id, std::nullopt).toString(), " failed ",
        kMaxRetries + 1, " times; abandoned. The last error: ", describeException(error));
    const std::int64_t scheduledTime = e.scheduledTime;
    counters.alarmsAbandoned.add();
    byKey_.erase(it);
    if (ns) shard_.host(*ns, ObjectId(key.id, std::nullopt)).abandonAlarm(scheduledTime);
    arm();
    return;
  }
  ++e.retry;
  std::int64_t backoff = kFirstBackoffMs << (e.retry - 1);
  backoff += static_cast<std::int64_t>(std::uniform_real_distribution<double>(0.0, 0.25)(rng_) * backoff);
  e.time = durable::now() + backoff;
  schedule(key, e);
  arm();
}

}  // namespace durable::detail
