// The runtime's side of cluster mode (docs/cluster.md): which events an object may run on this
// node (admission, the lease watch that ends what already runs, and the check as an answer
// leaves), and the alarms of slots it claims. Requests for objects another node holds:
// runtime/forward.cc.
#include "runtime/runtime.h"

#include "base/log.h"

#include <durable/clock.h>
#include <durable/error.h>
#include <durable/timer.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>

namespace durable::detail {

namespace {

// Why an event is refused or ended while the node cannot trust its lease.
std::exception_ptr leaseLapsed() {
  return std::make_exception_ptr(Error(ErrorCode::kUnavailable,
                                       "this node's cluster lease may have lapsed; it serves again once renewed",
                                       {.retryable = true}));
}

// The same, for an event whose writes were on their way: they may have landed.
std::exception_ptr outcomeUnknown(const std::string& what) {
  return std::make_exception_ptr(Error(ErrorCode::kUnavailable,
                                       what + " while the object's writes were on their way: their outcome is unknown "
                                              "(they may have landed)",
                                       {.retryable = false}));
}

}  // namespace

std::FILE* eventLog = nullptr;

void ObjectHost::logEvent(char what) {
  static std::mutex mu;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
  std::lock_guard lock(mu);
  std::fprintf(eventLog, "%c %lld %s\n", what, static_cast<long long>(ns), idHex().c_str());
  std::fflush(eventLog);
}

std::exception_ptr ObjectHost::fencedOut() {
  const SlotTable* slots = shard_.runtime().options().slots.get();
  if (!slots) return nullptr;
  auto refuse = [](const std::string& why) {
    return std::make_exception_ptr(Error(ErrorCode::kUnavailable, why, {.retryable = true}));
  };
  // A node that cannot be sure of its lease serves nothing: another may own its slots now.
  if (!slots->leaseTrusted()) return leaseLapsed();
  const int slot = slots->slotOf(id_.raw());
  const std::int64_t epoch = slots->epoch(slot);
  if (epoch == 0) return refuse("this node does not hold the object's slot " + std::to_string(slot));
  if (slots->draining(slot)) {
    return refuse("the object's slot " + std::to_string(slot) + " is moving to another node; try again");
  }
  const std::int64_t loadedUnder = store_.fenceEpoch();
  if (loadedUnder == epoch) return nullptr;
  if (loadedUnder != 0) {
    // The slot was lost and claimed again: another node may have written meanwhile.
    auto why = refuse("the object's slot " + std::to_string(slot) + " moved; its state is loaded again");
    if (!store_.idle() || running_ > 0) {
      // Writes of the old epoch are still open or in flight: their fenced commit fails and
      // resets the store; until then nothing new runs on the old state.
      resetInstance(why, false);
      return why;
    }
    store_.forgetLoaded(why);
  }
  store_.setFenceEpoch(epoch);
  return nullptr;
}

bool ObjectHost::mayRelease() const {
  const SlotTable* slots = shard_.runtime().options().slots.get();
  return !slots || (slots->leaseTrusted() && slots->epoch(slots->slotOf(id_.raw())) == store_.fenceEpoch());
}

bool Shard::outputAllowed(const NamespaceImpl& ns, const ObjectId& id) {
  const SlotTable* slots = runtime_.options().slots.get();
  if (!slots) return true;
  if (const ObjectHost* host = findHost(ns, id)) return host->mayRelease();
  // Hibernated: the automatic response answers for it, which is output of the slot's too.
  return slots->leaseTrusted() && slots->epoch(slots->slotOf(id.raw())) != 0;
}

std::exception_ptr ObjectHost::outputFenced(std::uint64_t startMark) const {
  if (mayRelease()) return nullptr;
  // A read could be stale by now; a write committed under the fence is not, but its answer is
  // withheld all the same, and the caller cannot know whether it landed.
  const bool wrote = outputGate_.mark() != startMark;
  return std::make_exception_ptr(Error(
      ErrorCode::kUnavailable,
      wrote ? "this node's cluster lease may have lapsed before the answer left; its writes may have landed"
            : "this node's cluster lease may have lapsed; it serves again once renewed",
      {.retryable = !wrote}));
}

void Runtime::slotsClaimed() {
  if (!started_) return;
  for (auto& sp : shards_) {
    Shard* s = sp.get();
    postTo(*s, [s] { s->loadClaimedAlarms(); });
  }
}

void Shard::loadClaimedAlarms() {
  alarms().loadNew([this](std::exception_ptr error) {
    if (!error) return;
    // Until they are read, the claimed slots' alarms would not fire: again in a second.
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      logWarn("shard ", index_, ": cannot load the alarms of claimed slots (trying again in 1 s): ", e.what());
    } catch (...) {
      logWarn("shard ", index_, ": cannot load the alarms of claimed slots (trying again in 1 s)");
    }
    timers().at(durable::now() + 1000, [this] { loadClaimedAlarms(); });
  });
}

void Shard::watchLease() {
  // Admission already refuses new events once the lease is not trusted (ObjectHost::fencedOut);
  // this ends those already running, so that none outlives the lease: a commit or read still
  // waiting on PostgreSQL fails now (outcome unknown: 503), and every instance is reset.
  leaseTimer_.expires_after(std::chrono::milliseconds(20));
  leaseTimer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    const bool trusted = runtime_.options().slots->leaseTrusted();
    if (!trusted && !leaseLapsed_) {
      leaseLapsed_ = true;
      logWarn("shard ", index_, ": the cluster lease may have lapsed: failing what is in flight");
      for (auto& p : partitions) p->abandonInFlight();
      const auto why = leaseLapsed();
      const auto whileWriting = outcomeUnknown("this node's cluster lease may have lapsed");
      for (auto& [key, host] : objects_) host->fenceOff(why, whileWriting);
      // Its slots may be claimed elsewhere by now: clients reconnect and find the owner.
      closeMovedSockets(true, "this node lost its cluster lease; reconnect");
    } else if (trusted) {
      leaseLapsed_ = false;
    }
    // Slots given away (hand-off) or lost (a fenced-out commit): the events of their objects
    // that are still running end now, before another node may claim the slots.
    const auto drops = runtime_.options().slots->drops();
    if (drops != slotDropsSeen_) {
      slotDropsSeen_ = drops;
      auto why = std::make_exception_ptr(
          Error(ErrorCode::kUnavailable, "the object's slot moved to another node", {.retryable = true}));
      const auto whileWriting = outcomeUnknown("the object's slot moved to another node");
      for (auto& [key, host] : objects_) {
        if (host->runningEvents() && runtime_.heldElsewhere(host->id())) host->fenceOff(why, whileWriting);
      }
      closeMovedSockets(false, "the object moved to another node; reconnect");
    }
    watchLease();
  });
}

bool Runtime::heldElsewhere(const ObjectId& id) const {
  const SlotTable* slots = options_.slots.get();
  return slots && slots->epoch(slots->slotOf(id.raw())) == 0;
}

Task<void> Runtime::handedOff(int slot) const {
  const SlotTable& slots = *options_.slots;
  const auto giveUpAt = std::chrono::steady_clock::now() + slots.handOffLimit();
  while (slots.draining(slot) && std::chrono::steady_clock::now() < giveUpAt) co_await durable::sleep(10);
}

bool Runtime::afterHandOff(const ObjectId& id, std::function<void()> then) {
  const SlotTable* slots = options_.slots.get();
  if (!slots || !Shard::current()) return false;
  const int slot = slots->slotOf(id.raw());
  if (slots->epoch(slot) == 0 || !slots->draining(slot)) return false;
  spawn(handedOff(slot), std::function<void(Result<void>)>([then = std::move(then)](Result<void>) { then(); }));
  return true;
}

bool Runtime::leaving(const ObjectId& id) const {
  const SlotTable* slots = options_.slots.get();
  if (!slots) return false;
  const int slot = slots->slotOf(id.raw());
  return slots->epoch(slot) == 0 || slots->draining(slot);
}

bool Runtime::slotsQuiet(const std::vector<int>& slotList, std::chrono::milliseconds wait) {
  const SlotTable* slots = options_.slots.get();
  if (!slots || !started_) return true;
  struct Answers {
    std::mutex mu;
    std::condition_variable cv;
    std::size_t left = 0;
    bool busy = false;
  };
  auto answers = std::make_shared<Answers>();
  answers->left = shards_.size();
  auto wanted = std::make_shared<std::vector<bool>>(static_cast<std::size_t>(slots->count()));
  for (int s : slotList) (*wanted)[static_cast<std::size_t>(s)] = true;
  for (auto& sp : shards_) {
    Shard* shard = sp.get();
    postTo(*shard, [shard, slots, answers, wanted] {
      const bool busy = shard->anyBusy([&](const ObjectHost& host) {
        return (*wanted)[static_cast<std::size_t>(slots->slotOf(host.id().raw()))];
      });
      std::lock_guard lock(answers->mu);
      answers->busy = answers->busy || busy;
      --answers->left;
      answers->cv.notify_all();
    });
  }
  std::unique_lock lock(answers->mu);
  // A shard that does not answer in time is busy (it runs something long).
  if (!answers->cv.wait_for(lock, wait, [&] { return answers->left == 0; })) return false;
  return !answers->busy;
}

bool Shard::anyBusy(const std::function<bool(const ObjectHost&)>& which) const {
  for (const auto& [key, host] : objects_) {
    if (which(*host) && !host->quiet()) return true;
  }
  return false;
}
}  // namespace durable::detail
