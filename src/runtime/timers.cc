#include "runtime/timers.h"

#include "base/exec_context.h"
#include "runtime/runtime.h"

#include <durable/clock.h>
#include <durable/error.h>
#include <durable/timer.h>

#include <algorithm>

#include <boost/asio/post.hpp>

#include <vector>

namespace durable::detail {

ShardTimers::ShardTimers(boost::asio::io_context& context) : context_(context), timer_(context) {
  if (auto* manual = dynamic_cast<const ManualClock*>(&clock())) {
    clockSubscription_ = const_cast<ManualClock*>(manual)->subscribe([this] {
      boost::asio::post(context_, [this] { poke(); });
    });
  }
}

ShardTimers::~ShardTimers() {
  if (clockSubscription_) {
    if (auto* manual = dynamic_cast<const ManualClock*>(&clock())) {
      const_cast<ManualClock*>(manual)->unsubscribe(clockSubscription_);
    }
  }
}

ShardTimers::Id ShardTimers::at(std::int64_t deadlineMs, std::function<void()> fn) {
  const Id id = ++next_;
  byTime_.emplace(std::pair{deadlineMs, id}, std::move(fn));
  deadlineOf_.emplace(id, deadlineMs);
  arm();
  return id;
}

void ShardTimers::cancel(Id id) {
  auto it = deadlineOf_.find(id);
  if (it == deadlineOf_.end()) return;
  byTime_.erase({it->second, id});
  deadlineOf_.erase(it);
}

void ShardTimers::poke() {
  pokePosted_ = false;
  const std::int64_t now = durable::now();
  // What is due now, in deadline order; a callback may add timers, which wait for the next poke.
  std::vector<std::function<void()>> due;
  while (!byTime_.empty() && byTime_.begin()->first.first <= now) {
    auto node = byTime_.extract(byTime_.begin());
    deadlineOf_.erase(node.key().second);
    due.push_back(std::move(node.mapped()));
  }
  for (auto& fn : due) fn();
  arm();
}

void ShardTimers::arm() {
  if (byTime_.empty()) {
    if (armedFor_) timer_.cancel();
    armedFor_.reset();
    return;
  }
  const std::int64_t next = byTime_.begin()->first.first;
  const std::int64_t now = durable::now();
  if (next <= now) {
    if (!pokePosted_) {
      pokePosted_ = true;
      boost::asio::post(context_, [this] { poke(); });
    }
    return;
  }
  if (!clock().realTime()) return;
  if (armedFor_ == next) return;
  armedFor_ = next;
  timer_.expires_after(std::chrono::milliseconds(next - now));
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    armedFor_.reset();
    poke();
  });
}

}  // namespace durable::detail

namespace durable {

namespace {
struct SleepAwaiter {
  detail::ShardTimers& timers;
  std::int64_t deadline;
  std::coroutine_handle<> handle;
  detail::ExecContext ctx;

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    handle = h;
    ctx = detail::currentContext();
    timers.at(deadline, [this] {
      detail::resumeNow(handle, ctx);
    });
  }
  void await_resume() const noexcept {}
};
}  // namespace

Task<void> sleep(std::chrono::milliseconds duration) {
  detail::Shard* shard = detail::Shard::current();
  if (!shard) {
    throw Error(ErrorCode::kFailedPrecondition,
                "durable::sleep() runs only on the runtime's threads: in a Worker's handler or an object's event");
  }
  SleepAwaiter awaiter{shard->timers(), durable::now() + std::max<std::int64_t>(duration.count(), 0), {}, {}};
  co_await awaiter;
}

}  // namespace durable
