// durable/timer.h: waiting for time to pass, as setTimeout lets JavaScript do.
//
//   co_await durable::sleep(std::chrono::milliseconds(250));
//
// Time is durable::now()'s (durable/clock.h): under a ManualClock a sleep ends only when the
// clock is advanced past it. Sleeping is waiting on something outside the object, like a
// call to another object: other events may enter the object meanwhile (its input gate is not
// held), and the object stays in memory until the sleep ends.
#pragma once

#include <durable/task.h>

#include <chrono>
#include <cstdint>

namespace durable {

// Completes once `duration` has passed (at once, on a later turn, for zero or less). Only on
// the runtime's threads: in a Worker's handler or an object's event; elsewhere it throws
// Error(kFailedPrecondition).
Task<void> sleep(std::chrono::milliseconds duration);
inline Task<void> sleep(std::int64_t ms) { return sleep(std::chrono::milliseconds(ms)); }

}  // namespace durable
