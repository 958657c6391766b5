// The output gate of one object: a reply, a WebSocket message or an RPC result leaves only
// once the writes made before it are durable. After workerd's io-gate.h, on one thread:
// whatever must finish before output may go (a commit of the object's writes) takes a Hold;
// wait() completes when every Hold taken before the call is released. Holds may be released
// in any order; a wait looks only at the Holds that were taken before it.
//
// A Hold released with an error breaks the gate until repair(): that wait and every later one
// fail with the error (a commit that failed means the object's memory is ahead of its
// storage; the owner resets the object and repair()s the gate for its next instance).
//
// Not thread-safe: the gate belongs to its object's shard thread.
#pragma once

#include <durable/task.h>

#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <set>
#include <utility>

namespace durable::detail {

class OutputGate {
 public:
  class [[nodiscard]] Hold {
   public:
    Hold() = default;
    Hold(Hold&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)), ticket_(other.ticket_) {}
    Hold& operator=(Hold&& other) noexcept;
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    // Dropped without release(): released with no error (nothing failed).
    ~Hold() { release(); }
    // `error` non-null breaks the gate. A released or moved-from Hold does nothing.
    void release(std::exception_ptr error = nullptr);
    bool held() const { return gate_ != nullptr; }

   private:
    friend class OutputGate;
    Hold(OutputGate* gate, std::uint64_t ticket) : gate_(gate), ticket_(ticket) {}
    OutputGate* gate_ = nullptr;
    std::uint64_t ticket_ = 0;
  };

  OutputGate() = default;
  // Holds belong to the object's commits, which end before the object goes; callbacks still
  // waiting are dropped without running.
  ~OutputGate();
  OutputGate(const OutputGate&) = delete;
  OutputGate& operator=(const OutputGate&) = delete;

  Hold hold();

  // co_await gate.wait(): resumes (through scheduleResume, as a Future does) once the Holds
  // taken before wait() was called are released; throws the error of a broken gate. Keep
  // the awaitable in a named variable in g++ 12 (GCC PR 99576).
  class Wait {
   public:
    bool await_ready() const noexcept { return gate_.broken() || gate_.releasedBefore(mark_); }
    void await_suspend(std::coroutine_handle<> h) {
      handle_ = h;
      ctx_ = currentContext();
      gate_.whenReleased(mark_, [this](std::exception_ptr e) {
        error_ = std::move(e);
        scheduleResume(handle_, ctx_);
      });
    }
    void await_resume() const {
      if (error_) std::rethrow_exception(error_);
      if (gate_.broken()) std::rethrow_exception(gate_.error_);
    }

   private:
    friend class OutputGate;
    Wait(OutputGate& gate, std::uint64_t mark) : gate_(gate), mark_(mark) {}
    OutputGate& gate_;
    std::uint64_t mark_;
    std::coroutine_handle<> handle_;
    ExecContext ctx_;
    std::exception_ptr error_;
  };
  Wait wait() { return Wait(*this, next_); }
  // The same as a callback: `done(nullptr)` once released, `done(error)` if the gate broke.
  // Runs inline when nothing taken before it is held.
  void whenReleased(std::function<void(std::exception_ptr)> done) { whenReleased(next_, std::move(done)); }

  // For output queued now and sent later (a WebSocket's frames): mark() names "every Hold
  // taken so far"; clearFor(m) and whenReleased(m, done) ask about those Holds only.
  std::uint64_t mark() const { return next_; }
  // True when output marked `mark` may leave now: the Holds before it are released and the
  // gate is not broken (output built on a failed commit never leaves).
  bool clearFor(std::uint64_t mark) const { return !broken() && releasedBefore(mark); }
  void whenReleased(std::uint64_t mark, std::function<void(std::exception_ptr)> done);

  // Makes a broken gate usable again, for the object's next instance. Waits of the broken
  // gate have had their error already; Holds still held stay held.
  void repair() { error_ = nullptr; }

  bool broken() const { return error_ != nullptr; }
  // Holds not yet released.
  std::size_t held() const { return held_.size(); }

 private:
  void release(std::uint64_t ticket, std::exception_ptr error);
  bool releasedBefore(std::uint64_t mark) const { return held_.empty() || *held_.begin() >= mark; }

  std::uint64_t next_ = 1;
  std::set<std::uint64_t> held_;
  // Waiters by the mark they wait for; several may share one.
  std::multimap<std::uint64_t, std::function<void(std::exception_ptr)>> waiters_;
  std::exception_ptr error_;
};

}  // namespace durable::detail
