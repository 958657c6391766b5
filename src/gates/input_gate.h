// The input gate of one object: while the object waits on its own storage (a transaction,
// blockConcurrencyWhile), no other event enters it. After workerd's io-gate.h, on one thread:
// an event's flow takes an RAII Lock; while any Lock is held, only the flows holding one
// run; everything else waits here, in order, until the last Lock goes.
//
// Two kinds of work wait here. A resumption belongs to a flow that is already running (a
// coroutine of the event that was suspended); it goes as soon as the gate admits its flow,
// which may be before earlier-queued new events. A new event keeps its place: it starts only
// once the gate is open, nothing before it still waits, and the gate is not broken.
//
// A broken gate (the object failed in a way that resets it) admits no new event until the
// owner resets it once the running flows are gone; the waiting events then go, in order, to
// the fresh instance. Resumptions still go while it is broken: a flow must be able to finish.
//
// Not thread-safe: the gate belongs to its object's shard thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <utility>
#include <vector>

namespace durable::detail {

class InputGate {
 public:
  using Flow = std::uint64_t;

  class [[nodiscard]] Lock {
   public:
    Lock() = default;
    Lock(Lock&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)), flow_(other.flow_) {}
    Lock& operator=(Lock&& other) noexcept;
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;
    ~Lock() { release(); }
    // Gives the lock back now; a released or moved-from Lock does nothing.
    void release();
    bool held() const { return gate_ != nullptr; }

   private:
    friend class InputGate;
    Lock(InputGate* gate, Flow flow) : gate_(gate), flow_(flow) {}
    InputGate* gate_ = nullptr;
    Flow flow_ = 0;
  };

  // `post` runs a function later on the gate's thread, from a fresh stack: the gate lets
  // waiting work go from there, never from inside the call that opened it.
  // `mayStart` is asked before each new event starts and may take a lock itself (the owner
  // constructs the object there; a constructor may call blockConcurrencyWhile); the event
  // starts only if it returns true and the gate is still open.
  InputGate(std::function<void(std::function<void()>)> post, std::function<bool()> mayStart = {});
  // Locks belong to the object's flows, which end before the object goes; work still waiting
  // is dropped without running.
  ~InputGate();
  InputGate(const InputGate&) = delete;
  InputGate& operator=(const InputGate&) = delete;

  // Flows are numbered by the owner; 0 is no flow and may not lock.
  Lock lock(Flow flow);
  bool admits(Flow flow) const;
  bool locked() const { return !owners_.empty(); }
  // Open, not broken, and nothing waiting.
  bool idle() const { return owners_.empty() && waiting_.empty() && !broken_; }
  std::size_t waiting() const { return waiting_.size(); }

  // A resumption of `flow`: runs now if admitted, else once it is. A template so that the
  // common case, admitted at once, wraps nothing in a std::function.
  template <class F>
  void resume(Flow flow, F&& fn) {
    if (admits(flow)) {
      fn();
      return;
    }
    waiting_.push_back({std::function<void()>(std::forward<F>(fn)), flow});
  }
  // Whether a new event may start at once: open, nothing waiting, not broken, and mayStart.
  // When it returns true the caller starts the event; otherwise the caller queues it (enter).
  bool admitsNewEvent();
  // A new event: starts now if admitsNewEvent(), else waits its turn.
  template <class F>
  void enter(F&& start) {
    if (admitsNewEvent()) {
      start();
      return;
    }
    enqueue(std::function<void()>(std::forward<F>(start)));
  }
  // Queues a new event behind everything else, without trying to start it now.
  void enqueue(std::function<void()> start);

  // Removes the new events waiting here, in order, and gives them to the caller to fail:
  // the object cannot take them (it was reset and its old code has not ended).
  std::vector<std::function<void()>> takeNewEvents();

  void breakGate() { broken_ = true; }
  bool broken() const { return broken_; }
  // The object was reset: every lock is void and the gate whole again; waiting events go.
  void reset();
  // Lets waiting work go (on a fresh stack) if any may; for the owner after an event ends.
  void wake() {
    if (!waiting_.empty()) schedule();
  }

 private:
  struct Waiting {
    std::function<void()> fn;
    Flow flow;  // 0: a new event
  };
  void unlock(Flow flow);
  // Lets go, on a fresh stack, whatever waits and may now run.
  void schedule();
  void drain();

  std::function<void(std::function<void()>)> post_;
  std::function<bool()> mayStart_;
  std::vector<Flow> owners_;  // one entry per Lock held; a flow may hold several
  std::deque<Waiting> waiting_;
  bool broken_ = false;
  bool drainPosted_ = false;
};

}  // namespace durable::detail
