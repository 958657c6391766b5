// One shard's timers on durable::now()'s clock: what durable::sleep() and the runtime's own
// deadlines (blockConcurrencyWhile's) wait on. With the real clock an Asio timer wakes them;
// with a ManualClock (tests) nothing moves until the clock is advanced, which wakes them.
//
// Shard thread only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <utility>

namespace durable::detail {

class ShardTimers {
 public:
  using Id = std::uint64_t;

  explicit ShardTimers(boost::asio::io_context& context);
  ~ShardTimers();
  ShardTimers(const ShardTimers&) = delete;
  ShardTimers& operator=(const ShardTimers&) = delete;

  // Runs `fn` from the event loop once now() >= deadlineMs (epoch ms), on a later turn even
  // when that is already so.
  Id at(std::int64_t deadlineMs, std::function<void()> fn);
  // A timer not yet run never runs; a cancelled or run one is ignored.
  void cancel(Id id);
  std::size_t pending() const { return byTime_.size(); }

 private:
  void poke();
  void arm();

  boost::asio::io_context& context_;
  boost::asio::steady_timer timer_;
  std::map<std::pair<std::int64_t, Id>, std::function<void()>> byTime_;
  std::map<Id, std::int64_t> deadlineOf_;
  Id next_ = 0;
  std::optional<std::int64_t> armedFor_;
  bool pokePosted_ = false;
  int clockSubscription_ = 0;
};

}  // namespace durable::detail
