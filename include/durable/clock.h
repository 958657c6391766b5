// durable/clock.h: the one source of wall-clock time for the runtime and for objects.
//
// Objects call durable::now() where JavaScript calls Date.now(), and the alarm scheduler
// reads the same clock, so a test that installs a ManualClock controls both: an alarm an hour
// ahead, or a retry backoff, runs in microseconds instead of by sleeping.
//
// Thread safety: now() may be called from any thread. setClock() is for start-up and tests.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace durable {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual std::int64_t nowMs() const = 0;
  // Whether time moves by itself. A manual clock does not: the scheduler then waits for
  // advance() instead of arming timers.
  virtual bool realTime() const { return true; }
};

// Date.now(): the installed clock's time in epoch milliseconds.
std::int64_t now();
const Clock& clock();
// Installs `clock` for the whole process (nullptr restores the system clock).
void setClock(std::shared_ptr<Clock> clock);

// A clock that moves only when told to. Advancing it wakes every alarm scheduler.
class ManualClock : public Clock {
 public:
  explicit ManualClock(std::int64_t startMs = 1'700'000'000'000) : now_(startMs) {}
  std::int64_t nowMs() const override { return now_.load(std::memory_order_acquire); }
  bool realTime() const override { return false; }

  void set(std::int64_t ms);
  void advance(std::chrono::milliseconds by) { set(nowMs() + by.count()); }

  // Called after every change; the runtime subscribes its schedulers. Returns a handle id.
  int subscribe(std::function<void()> onChange);
  void unsubscribe(int handle);

 private:
  std::atomic<std::int64_t> now_;
  std::mutex mu_;
  int next_ = 0;
  std::vector<std::pair<int, std::function<void()>>> listeners_;
};

}  // namespace durable
