// Which slots this node holds, at which epoch, and whether its lease may still be trusted: the
// shared state between the cluster's membership thread (cluster/membership.h), which claims
// and renews, and the shards, whose PostgreSQL engines fence every commit with these epochs
// (storage/postgres_engine.h) and which admit no event while the lease may have lapsed.
//
// An object's slot is a hash of its ID, fixed when the cluster is created (docs/cluster.md).
// Epoch 0 means "not held here". Plain atomics: read on every commit, written on a claim.
#pragma once

#include <durable/id.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace durable::detail {

class SlotTable {
 public:
  explicit SlotTable(int slots) : epochs_(static_cast<std::size_t>(slots)), draining_(static_cast<std::size_t>(slots)) {}

  int count() const { return static_cast<int>(epochs_.size()); }

  // The same leading bytes ObjectId::hash() reads: HMAC output or random, so uniform.
  int slotOf(const ObjectId::Raw& id) const {
    std::uint64_t h;
    std::memcpy(&h, id.data(), sizeof h);
    return static_cast<int>(h % epochs_.size());
  }

  std::int64_t epoch(int slot) const { return epochs_[static_cast<std::size_t>(slot)].load(std::memory_order_acquire); }
  void hold(int slot, std::int64_t epoch) {
    draining_[static_cast<std::size_t>(slot)].store(false, std::memory_order_release);
    epochs_[static_cast<std::size_t>(slot)].store(epoch, std::memory_order_release);
  }
  void drop(int slot) {
    draining_[static_cast<std::size_t>(slot)].store(false, std::memory_order_release);
    if (epochs_[static_cast<std::size_t>(slot)].exchange(0, std::memory_order_acq_rel) != 0) {
      drops_.fetch_add(1, std::memory_order_release);
    }
  }
  // Hand-off: the slot stays held (the events already running commit and answer under its
  // epoch) but admits no new event, until its objects are quiet and it is dropped and released.
  void drain(int slot) {
    draining_[static_cast<std::size_t>(slot)].store(true, std::memory_order_release);
    drops_.fetch_add(1, std::memory_order_release);  // the shards close its WebSockets
  }
  bool draining(int slot) const { return draining_[static_cast<std::size_t>(slot)].load(std::memory_order_acquire); }
  // How long a hand-off waits for the events of the slots it gives away, and requests for
  // them wait for the hand-off: L, at least 5 s.
  std::chrono::milliseconds handOffLimit() const { return std::max(lease, std::chrono::milliseconds(5000)); }
  // Drops the slot if it is still held at `epoch` (not if it was claimed again since).
  void dropIfAt(int slot, std::int64_t epoch) {
    if (epochs_[static_cast<std::size_t>(slot)].compare_exchange_strong(epoch, 0, std::memory_order_acq_rel)) {
      draining_[static_cast<std::size_t>(slot)].store(false, std::memory_order_release);
      drops_.fetch_add(1, std::memory_order_release);
    }
  }
  // Counts the slots dropped or set draining so far: a shard that sees it move ends the events
  // of objects whose slot is gone and closes the WebSockets of those leaving (Shard::watchLease).
  std::uint64_t drops() const { return drops_.load(std::memory_order_acquire); }
  int held() const {
    int n = 0;
    for (const auto& e : epochs_) n += e.load(std::memory_order_relaxed) != 0;
    return n;
  }

  // Where a slot lives: the address of its live owner and the epoch it holds it at, as the
  // last lease round read them. Requests for objects this node does not hold go there.
  struct Route {
    std::string address;
    std::int64_t epoch = 0;
  };
  void setRoutes(std::vector<std::optional<Route>> routes) {
    {
      std::lock_guard lock(routesMu_);
      routes_ = std::move(routes);
    }
    routesVersion_.fetch_add(1, std::memory_order_release);
  }
  std::optional<Route> route(int slot) const {
    std::lock_guard lock(routesMu_);
    if (static_cast<std::size_t>(slot) >= routes_.size()) return std::nullopt;
    return routes_[static_cast<std::size_t>(slot)];
  }
  std::uint64_t routesVersion() const { return routesVersion_.load(std::memory_order_acquire); }
  // Asks the lease thread to read the routes again now (after a 421 from a node that no
  // longer holds a slot). Any thread.
  void requestRefresh() const {
    {
      std::lock_guard lock(refreshMu_);
      refreshWanted_ = true;
    }
    refreshCv_.notify_all();
  }
  // The lease thread: waits up to `most` or until requestRefresh(); false once stopWaiting().
  bool awaitRefresh(std::chrono::milliseconds most) const {
    std::unique_lock lock(refreshMu_);
    refreshCv_.wait_for(lock, most, [this] { return refreshWanted_ || stopped_; });
    refreshWanted_ = false;
    return !stopped_;
  }
  void stopWaiting() const {
    {
      std::lock_guard lock(refreshMu_);
      stopped_ = true;
    }
    refreshCv_.notify_all();
  }

  // What node-to-node requests carry to be accepted (docs/cluster.md). Set once, at start.
  std::string secret;
  // The node's lease ([cluster] lease_ms). Set once, at start.
  std::chrono::milliseconds lease{5000};

  // Self-fencing: the lease renewed by a statement that began at `sentAt` (monotonic) runs
  // until sentAt + lease by PostgreSQL's clock; trusted until sentAt + lease - margin here.
  void renewed(std::chrono::steady_clock::time_point sentAt, std::chrono::milliseconds trusted) {
    trustedUntil_.store((sentAt + trusted).time_since_epoch().count(), std::memory_order_release);
  }
  bool leaseTrusted(std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) const {
    return now.time_since_epoch().count() < trustedUntil_.load(std::memory_order_acquire);
  }

 private:
  std::vector<std::atomic<std::int64_t>> epochs_;
  std::vector<std::atomic<bool>> draining_;
  std::atomic<std::chrono::steady_clock::rep> trustedUntil_{0};
  std::atomic<std::uint64_t> drops_{0};
  mutable std::mutex routesMu_;
  std::vector<std::optional<Route>> routes_;
  std::atomic<std::uint64_t> routesVersion_{0};
  mutable std::mutex refreshMu_;
  mutable std::condition_variable refreshCv_;
  mutable bool refreshWanted_ = false, stopped_ = false;
};

}  // namespace durable::detail
