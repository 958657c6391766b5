#include "runtime/timers.h"

#include "base/exec_context.h"
#include "base/log.h"
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

namespace durable {

struct Timeout::State {
  detail::ShardTimers* timers = nullptr;
  detail::ShardTimers::Id id = 0;
  bool pending = false;
  // Set in an object: resolved once the timeout has run or was cancelled. Until then a
  // waitUntil() task awaits it, which keeps the object in memory.
  std::optional<Promise<void>> keepAlive;
};

void Timeout::cancel() {
  if (!state_ || !state_->pending) return;
  state_->pending = false;
  state_->timers->cancel(state_->id);
  if (state_->keepAlive) state_->keepAlive->setValue();
}

bool Timeout::pending() const { return state_ && state_->pending; }

namespace {
// The task owns `fn`: a coroutine lambda's captures live in it, and must outlive its frame.
Task<void> runOwned(std::function<Task<void>()> fn) { co_await fn(); }
Task<void> awaitFuture(Future<void> f) { co_await f; }
}  // namespace

Timeout setTimeout(std::chrono::milliseconds delay, std::function<Task<void>()> fn) {
  detail::Shard* shard = detail::Shard::current();
  if (!shard) {
    throw Error(ErrorCode::kFailedPrecondition,
                "durable::setTimeout() runs only on the runtime's threads: in a Worker's handler or an object's event");
  }
  auto state = std::make_shared<Timeout::State>();
  state->timers = &shard->timers();
  state->pending = true;
  auto* host = static_cast<detail::ObjectHost*>(detail::currentContext().host);
  if (host) {
    state->keepAlive.emplace();
    host->waitUntil(awaitFuture(state->keepAlive->future()));
  }
  const std::int64_t deadline = durable::now() + std::max<std::int64_t>(delay.count(), 0);
  state->id = state->timers->at(deadline, [state, host, fn = std::move(fn)]() mutable {
    if (!state->pending) return;
    state->pending = false;
    if (host) {
      // An event of the object, queued behind its input gate like any other.
      host->run(
          [fn = std::move(fn)](DurableObject&, State&) mutable { return runOwned(std::move(fn)); },
          [host](std::exception_ptr error) {
            if (error) {
              detail::log("object ", host->ns().className, " ", host->id().toString(),
                          ": setTimeout callback threw: ", detail::describeException(error));
            }
          });
      state->keepAlive->setValue();
    } else {
      detail::ContextScope scope({});
      spawn(runOwned(std::move(fn)), std::function<void(Result<void>)>([](Result<void> r) {
              if (!r.ok()) detail::log("worker: setTimeout callback threw: ", detail::describeException(r.error()));
            }));
    }
  });
  return Timeout(std::move(state));
}

}  // namespace durable
