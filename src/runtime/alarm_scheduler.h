// The alarm scheduler: one per shard, holding every pending alarm of the shard's partitions
// in memory, ordered by time.
//
// Why in memory and per shard: start-up reads each partition's `alarms` table once (one
// indexed scan, no object is opened), so a node with 100,000 pending alarms starts in the time
// of that scan. An alarm enters the schedule only once the write that set it is durable, so a
// fired alarm always has a row on disk, and a crash before it ran leaves the row to be found
// on restart: at-least-once.
//
// Retries: when alarm() throws, the alarm runs again after 2 s, 4 s, 8 s ... (each plus up to
// 25 % jitter), at most 6 retries; then it is abandoned, logged, and its row deleted. Retry
// state lives here, and, where alarms can move between nodes (cluster mode), beside the alarm in
// storage too: each run is counted there before it starts (StorageEngine::countAlarmRun), so an
// alarm that runs again on the node that took its slot after its node died is a retry. On one
// node, after a restart a failing alarm starts again at retry 0.
#pragma once

#include <durable/id.h>


#include "storage/engine.h"

#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <utility>
#include <vector>

namespace durable::detail {

class Shard;

class AlarmScheduler {
 public:
  static constexpr int kMaxRetries = 6;
  static constexpr std::int64_t kFirstBackoffMs = 2000;

  explicit AlarmScheduler(Shard& shard);
  ~AlarmScheduler();

  // Shard thread only, from here on.

  // Reads every alarm of the shard's partitions. Called once, before the first event.
  void load();
  // Cluster mode: reads the alarms of the shard's partitions again after this node claimed
  // slots, and schedules those it did not know (alarms/slot ownership: docs/cluster.md). The
  // read does not block the shard; `done` learns its error, if any (the schedule is then
  // unchanged: the caller tries again). Asked while a load is in flight, another follows it.
  void loadNew(std::function<void(std::exception_ptr)> done);
  // A committed change: the object's alarm is now `time`, or gone.
  void onDurable(std::int64_t ns, const ObjectId::Raw& id, std::optional<std::int64_t> time);
  // The clock may have moved (a manual clock was advanced): fire what is due, re-arm.
  void poke();
  // Runs the object's pending alarm now, as if it were due (the admin API's alarm run).
  enum class RunNow { kStarted, kNoAlarm, kPaused };
  RunNow runNow(std::int64_t ns, const ObjectId::Raw& id);
  // No alarm fires while paused: a command-line tool that opens a stopped server's state
  // (durable objects list ...) reads it without running anyone's code.
  void pause() { paused_ = true; }
  std::size_t pending() const { return byKey_.size(); }
  // A loadNew() read is in flight: a stopping shard waits for it (a read left unanswered would
  // leave its coroutine suspended for good).
  bool loading() const { return loading_; }
  // Alarms whose handler runs now, and whether any is due and not yet started.
  std::size_t running() const { return running_; }
  bool due() const;

 private:
  struct Key {
    std::int64_t ns;
    ObjectId::Raw id;
    auto operator<=>(const Key&) const = default;
  };
  struct Entry {
    std::int64_t time = 0;           // when it runs next
    std::int64_t scheduledTime = 0;  // what it was set for (AlarmInfo::scheduledTime)
    int retry = 0;
    bool running = false;
    bool deleted = false;            // deleted while running
    std::uint64_t generation = 0;    // bumped by every durable change
  };

  void schedule(const Key& key, Entry& e);
  void startLoad();
  void loaded(const std::vector<StoredAlarm>& found);
  void unschedule(const Key& key, const Entry& e);
  void arm();
  void fireDue();
  // Runs the alarm once its run is counted: `previous` runs before it, or nullopt when the
  // alarm is no longer stored as it was.
  void run(const Key& key, std::uint64_t generation, std::optional<int> previous);
  // `ran`: false when the alarm did not run after all (it changed while its run was counted).
  void finished(const Key& key, std::uint64_t generation, std::exception_ptr error, bool ran = true);

  Shard& shard_;
  std::map<Key, Entry> byKey_;
  std::set<std::pair<std::int64_t, Key>> byTime_;
  std::optional<std::int64_t> armedFor_;
  std::uint64_t armedTimer_ = 0;  // ShardTimers::Id of the wake-up for armedFor_, or 0
  std::mt19937_64 rng_;
  std::size_t running_ = 0;
  bool paused_ = false;
  // loadNew(): whether a read is in flight, who waits for it and for the one after it, and
  // the alarms changed while it was in flight (what it read of them may be stale).
  bool loading_ = false;
  std::vector<std::function<void(std::exception_ptr)>> loadWaiters_, nextLoadWaiters_;
  std::set<Key> changedWhileLoading_;
  // A count answered after the scheduler is gone (its shard stopping) finds this false.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace durable::detail
