#include <durable/task.h>

namespace durable {
namespace {
thread_local ResumeScheduler t_scheduler = nullptr;
}

void setResumeScheduler(ResumeScheduler scheduler) noexcept { t_scheduler = scheduler; }

void scheduleResume(std::coroutine_handle<> h) {
  // Without a shard (a unit test driving tasks by hand) the waiter resumes inline.
  if (t_scheduler) {
    t_scheduler(h);
  } else {
    h.resume();
  }
}

}  // namespace durable
