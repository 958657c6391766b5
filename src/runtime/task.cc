#include <durable/task.h>

namespace durable {
namespace {
thread_local ResumeScheduler t_scheduler = nullptr;
thread_local ExecContext t_context;
}  // namespace

ExecContext& currentContext() noexcept { return t_context; }

void setResumeScheduler(ResumeScheduler scheduler) noexcept { t_scheduler = scheduler; }

void scheduleResume(std::coroutine_handle<> h, ExecContext ctx) {
  // Without a shard (a unit test driving tasks by hand) the waiter resumes inline.
  if (t_scheduler) {
    t_scheduler(h, ctx);
  } else {
    ContextScope scope(ctx);
    h.resume();
  }
}

}  // namespace durable
