// The counters behind GET /metrics (src/admin/). Each one has a single writer, the thread that
// owns what it counts (a shard, a partition's sync thread), and any number of readers: the
// scrape sums them over shards. The writer adds with a relaxed load and store, which on x86 is a
// plain add with no lock prefix and no shared cache line, so the hot path pays what it would pay
// for an int; the atomic type is what makes the scrape's concurrent read defined.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace durable::detail::metrics {

// Written by one thread only.
class Counter {
 public:
  void add(std::uint64_t n = 1) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

// Written by one thread only; may go down.
class Gauge {
 public:
  void add(std::int64_t n) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void set(std::int64_t n) noexcept { v_.store(n, std::memory_order_relaxed); }
  std::int64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

// Upper bounds of histogram buckets, ascending; +Inf is implied.
inline constexpr double kSecondsBounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                            0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                            5,      10};
inline constexpr double kBatchBounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};

// A histogram merged over its writers: per bucket counts (not cumulative), their sum.
struct HistogramSnapshot {
  std::span<const double> bounds;
  std::vector<std::uint64_t> counts;  // bounds.size() + 1 entries, the last for +Inf
  double sum = 0;
};

// Written by one thread only.
class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds)
      : bounds_(bounds), counts_(std::make_unique<Counter[]>(bounds.size() + 1)) {}

  void observe(double v) noexcept {
    std::size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    counts_[i].add();
    sum_.store(sum_.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
  }

  // Adds this histogram's counts into `into` (whose bounds must be these).
  void addTo(HistogramSnapshot& into) const {
    if (into.counts.empty()) {
      into.bounds = bounds_;
      into.counts.assign(bounds_.size() + 1, 0);
    }
    for (std::size_t i = 0; i <= bounds_.size(); ++i) into.counts[i] += counts_[i].value();
    into.sum += sum_.load(std::memory_order_relaxed);
  }

 private:
  std::span<const double> bounds_;
  std::unique_ptr<Counter[]> counts_;
  std::atomic<double> sum_{0};
};

// HTTP methods as labels: the common ones, and the rest as "OTHER".
enum class Method : std::uint8_t { kGet, kHead, kPost, kPut, kDelete, kPatch, kOptions, kOther };
inline constexpr std::size_t kMethods = 8;
inline constexpr const char* kMethodNames[kMethods] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER"};
inline constexpr int kMinStatus = 100;
inline constexpr int kMaxStatus = 599;

// What a shard counts: its HTTP requests, objects, alarms and WebSockets. Namespaces are
// indexed by NamespaceImpl::index.
struct ShardMetrics {
  explicit ShardMetrics(std::size_t namespaces)
      : objectsLive(std::make_unique<Gauge[]>(namespaces)),
        activations(std::make_unique<Counter[]>(namespaces)),
        evictions(std::make_unique<Counter[]>(namespaces)) {}

  void countRequest(Method method, int status, double seconds) noexcept {
    if (status < kMinStatus || status > kMaxStatus) status = 500;
    httpRequests[static_cast<std::size_t>(method)][static_cast<std::size_t>(status - kMinStatus)].add();
    httpDuration.observe(seconds);
  }

  Counter httpRequests[kMethods][kMaxStatus - kMinStatus + 1];
  Histogram httpDuration{kSecondsBounds};
  std::unique_ptr<Gauge[]> objectsLive;
  std::unique_ptr<Counter[]> activations;
  std::unique_ptr<Counter[]> evictions;
  Gauge alarmsPending;
  Counter alarmsSucceeded;
  Counter alarmsFailed;     // threw or its commit failed; retried
  Counter alarmsAbandoned;  // failed every retry
  Gauge websocketsOpen;
  Counter websocketMessagesIn;
  Counter websocketMessagesOut;
};

// What a partition counts, on its shard thread: the time from a batch's hand-over to the
// engine until it is reported durable, and the objects in each batch.
struct PartitionMetrics {
  Histogram commitDuration{kSecondsBounds};
  Histogram batchObjects{kBatchBounds};
};

}  // namespace durable::detail::metrics
