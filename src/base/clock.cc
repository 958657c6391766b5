#include <durable/clock.h>

namespace durable {

namespace {
class SystemClock : public Clock {
 public:
  std::int64_t nowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

std::shared_ptr<Clock>& installed() {
  static std::shared_ptr<Clock> c = std::make_shared<SystemClock>();
  return c;
}
// A raw pointer for the hot path; the shared_ptr above keeps the clock alive. Swapping clocks
// while objects run is for tests, which do it between runs.
std::atomic<const Clock*> g_clock{nullptr};
}  // namespace

const Clock& clock() {
  const Clock* c = g_clock.load(std::memory_order_acquire);
  if (!c) {
    c = installed().get();
    g_clock.store(c, std::memory_order_release);
  }
  return *c;
}

std::int64_t now() { return clock().nowMs(); }

void setClock(std::shared_ptr<Clock> c) {
  if (!c) c = std::make_shared<SystemClock>();
  installed() = std::move(c);
  g_clock.store(installed().get(), std::memory_order_release);
}

void ManualClock::set(std::int64_t ms) {
  now_.store(ms, std::memory_order_release);
  std::vector<std::function<void()>> call;
  {
    std::lock_guard lock(mu_);
    for (auto& [_, fn] : listeners_) call.push_back(fn);
  }
  for (auto& fn : call) fn();
}

int ManualClock::subscribe(std::function<void()> onChange) {
  std::lock_guard lock(mu_);
  listeners_.emplace_back(++next_, std::move(onChange));
  return next_;
}

void ManualClock::unsubscribe(int handle) {
  std::lock_guard lock(mu_);
  std::erase_if(listeners_, [&](auto& l) { return l.first == handle; });
}

}  // namespace durable
