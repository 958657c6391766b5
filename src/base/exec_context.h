// The runtime's bookkeeping that must follow a coroutine across a suspension: which object it
// runs in and which of that object's event flows it belongs to (for the input gate). The
// runtime sets it when it starts or resumes a coroutine; awaitables capture it on suspension.
// ExecContext itself is declared in <durable/task.h>, whose Future captures it.
#pragma once

#include <durable/task.h>

#include <coroutine>

namespace durable::detail {

// Restores `ctx` for the extent of a resumption.
class ContextScope {
 public:
  explicit ContextScope(ExecContext ctx) noexcept : prev_(currentContext()) { currentContext() = ctx; }
  ~ContextScope() { currentContext() = prev_; }
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;

 private:
  ExecContext prev_;
};

// Where a Future resumes its waiter. The runtime installs one per shard thread so that a
// value set from a completion handler resumes the waiter on a fresh stack, not inside the
// setter (which may be in the middle of releasing many waiters).
using ResumeScheduler = void (*)(std::coroutine_handle<>, ExecContext);
void setResumeScheduler(ResumeScheduler scheduler) noexcept;

}  // namespace durable::detail
