#include "base/exec_context.h"

#include <durable/task.h>

#include <cstddef>
#include <new>

// Under AddressSanitizer frames go straight to the allocator, so that a use after free of a
// frame is still caught.
#if defined(__SANITIZE_ADDRESS__)
#define DURABLE_FRAME_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DURABLE_FRAME_CACHE 0
#endif
#endif
#ifndef DURABLE_FRAME_CACHE
#define DURABLE_FRAME_CACHE 1
#endif

namespace durable::detail {
namespace {

#if DURABLE_FRAME_CACHE
constexpr std::size_t kGranule = 64;
constexpr std::size_t kClasses = 64;      // frames up to 4 KiB
constexpr unsigned kKeepPerClass = 256;   // what a shard keeps of each size

struct FreeFrame {
  FreeFrame* next;
};

struct FrameCache {
  FreeFrame* heads[kClasses] = {};
  unsigned counts[kClasses] = {};
  ~FrameCache() {
    for (std::size_t c = 0; c < kClasses; ++c) {
      while (FreeFrame* f = heads[c]) {
        heads[c] = f->next;
        ::operator delete(f);
      }
      // A frame freed later in this thread's exit goes straight back to the allocator.
      counts[c] = kKeepPerClass;
    }
  }
};

thread_local FrameCache t_frames;
#endif

}  // namespace

void* allocateFrame(std::size_t bytes) {
#if DURABLE_FRAME_CACHE
  const std::size_t c = (bytes + kGranule - 1) / kGranule;
  if (c < kClasses) {
    if (FreeFrame* f = t_frames.heads[c]) {
      t_frames.heads[c] = f->next;
      --t_frames.counts[c];
      return f;
    }
    return ::operator new(c * kGranule);
  }
#endif
  return ::operator new(bytes);
}

void freeFrame(void* frame, std::size_t bytes) noexcept {
#if DURABLE_FRAME_CACHE
  const std::size_t c = (bytes + kGranule - 1) / kGranule;
  if (c < kClasses && t_frames.counts[c] < kKeepPerClass) {
    auto* f = static_cast<FreeFrame*>(frame);
    f->next = t_frames.heads[c];
    t_frames.heads[c] = f;
    ++t_frames.counts[c];
    return;
  }
#endif
  ::operator delete(frame);
}

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

}  // namespace durable::detail
