// durable/timer.h: waiting for time to pass, and work for later, as JavaScript's setTimeout.
//
//   co_await durable::sleep(std::chrono::milliseconds(250));
//   auto reminder = durable::setTimeout(std::chrono::seconds(30), [this]() -> durable::Task<void> { ... });
//   reminder.cancel();                                   // clearTimeout
//
// Time is durable::now()'s (durable/clock.h): under a ManualClock a sleep ends only when the
// clock is advanced past it. Sleeping is waiting on something outside the object, like a
// call to another object: other events may enter the object meanwhile (its input gate is not
// held), and the object stays in memory until the sleep ends.
#pragma once

#include <durable/task.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

namespace durable {

// Completes once `duration` has passed (at once, on a later turn, for zero or less). Only on
// the runtime's threads: in a Worker's handler or an object's event; elsewhere it throws
// Error(kFailedPrecondition).
Task<void> sleep(std::chrono::milliseconds duration);
inline Task<void> sleep(std::int64_t ms) { return sleep(std::chrono::milliseconds(ms)); }

// What setTimeout() returns: a handle to cancel it. Copies refer to the same timeout; dropping
// them does not cancel it (as in JavaScript).
class Timeout {
 public:
  Timeout() = default;
  // Stops it if it has not started yet; otherwise (or on an empty handle) does nothing. From
  // the thread it was set on: the object's, or the Worker's shard.
  void cancel();
  // Set, not yet started and not cancelled.
  bool pending() const;

  struct State;

 private:
  friend Timeout setTimeout(std::chrono::milliseconds delay, std::function<Task<void>()> fn);
  explicit Timeout(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

// Runs `fn` once `delay` has passed on durable::now()'s clock. Set in an object, it runs as an
// event of that object (through its input gate, its writes behind the output gate), and the
// object stays in memory until it has run or was cancelled; set in a Worker's handler, it runs
// on that shard by itself. What fn throws is logged. Only on the runtime's threads; elsewhere
// it throws Error(kFailedPrecondition).
Timeout setTimeout(std::chrono::milliseconds delay, std::function<Task<void>()> fn);

}  // namespace durable
