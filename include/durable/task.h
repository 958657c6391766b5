// durable/task.h: the coroutine types every handler is written in.
//
// Task<T> is lazy: nothing runs until it is awaited (or handed to the runtime), and the
// awaiting coroutine is resumed by symmetric transfer, so a chain of co_awaits costs no
// stack depth. Future<T> is its eager twin: a value that somebody else will provide
// (another object's reply, a commit becoming durable); awaiting it suspends until then.
//
// Thread safety: both types belong to one shard thread. The runtime moves work between
// shards by posting, never by sharing a Task or a Future.
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <variant>

namespace durable {

template <class T = void>
class Task;

namespace detail {

// Coroutine frames come from a per-thread cache of freed frames (by size, up to 4 KiB): a
// request passes through about ten coroutines, and their frames are larger than what malloc
// serves from its fastest path.
void* allocateFrame(std::size_t bytes);
void freeFrame(void* frame, std::size_t bytes) noexcept;

struct PromiseBase {
  static void* operator new(std::size_t bytes) { return allocateFrame(bytes); }
  static void operator delete(void* frame, std::size_t bytes) noexcept { freeFrame(frame, bytes); }

  std::coroutine_handle<> continuation = std::noop_coroutine();
  std::exception_ptr error;

  std::suspend_always initial_suspend() noexcept { return {}; }
  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      return h.promise().continuation;
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class T>
struct TaskPromise : PromiseBase {
  std::optional<T> value;
  Task<T> get_return_object() noexcept;
  template <class U = T>
  void return_value(U&& v) { value.emplace(std::forward<U>(v)); }
  T take() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};

template <>
struct TaskPromise<void> : PromiseBase {
  Task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() {
    if (error) std::rethrow_exception(error);
  }
};

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::TaskPromise<T>;
  using value_type = T;

  Task() = default;
  explicit Task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() {
    if (h_) h_.destroy();
  }

  auto operator co_await() && noexcept {
    struct Awaiter {
      std::coroutine_handle<promise_type> h;
      bool await_ready() const noexcept { return !h || h.done(); }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
        h.promise().continuation = awaiting;
        return h;
      }
      T await_resume() { return h.promise().take(); }
    };
    return Awaiter{h_};
  }

  // For the runtime: the raw handle, to start the task detached (see spawn()).
  std::coroutine_handle<promise_type> release() noexcept { return std::exchange(h_, {}); }

 private:
  std::coroutine_handle<promise_type> h_;
};

namespace detail {
template <class T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}

// A fire-and-forget coroutine frame that owns the task it runs and frees itself at the end.
struct Detached {
  struct promise_type {
    static void* operator new(std::size_t bytes) { return allocateFrame(bytes); }
    static void operator delete(void* frame, std::size_t bytes) noexcept { freeFrame(frame, bytes); }
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};
}  // namespace detail

// A result that is either a value or the exception that replaced it.
template <class T>
class Result {
 public:
  Result(T v) : v_(std::move(v)) {}
  Result(std::exception_ptr e) : v_(std::move(e)) {}
  bool ok() const noexcept { return v_.index() == 0; }
  T& value() & {
    if (!ok()) std::rethrow_exception(std::get<1>(v_));
    return std::get<0>(v_);
  }
  T value() && {
    if (!ok()) std::rethrow_exception(std::get<1>(v_));
    return std::move(std::get<0>(v_));
  }
  std::exception_ptr error() const { return ok() ? nullptr : std::get<1>(v_); }

 private:
  std::variant<T, std::exception_ptr> v_;
};

template <>
class Result<void> {
 public:
  Result() = default;
  Result(std::exception_ptr e) : e_(std::move(e)) {}
  bool ok() const noexcept { return !e_; }
  void value() const {
    if (e_) std::rethrow_exception(e_);
  }
  std::exception_ptr error() const { return e_; }

 private:
  std::exception_ptr e_;
};

namespace detail {
template <class T>
Detached runDetached(Task<T> task, std::function<void(Result<T>)> done) {
  if constexpr (std::is_void_v<T>) {
    std::exception_ptr e;
    try {
      co_await std::move(task);
    } catch (...) {
      e = std::current_exception();
    }
    if (done) done(e ? Result<void>(e) : Result<void>());
  } else {
    std::optional<Result<T>> r;
    try {
      r.emplace(co_await std::move(task));
    } catch (...) {
      r.emplace(std::current_exception());
    }
    if (done) done(std::move(*r));
  }
}
}  // namespace detail

// Starts `task` now, on this thread, and calls `done` with its result when it finishes. The
// task runs until its first real suspension before spawn() returns.
template <class T>
void spawn(Task<T> task, std::function<void(Result<T>)> done = {}) {
  detail::runDetached<T>(std::move(task), std::move(done));
}

namespace detail {
// What a Future carries from its suspension to its resumption for the runtime (which object,
// which event flow: src/base/exec_context.h). Here only because the Future template needs it.
// The request an event serves: its x-request-id and W3C traceparent. Inline, so that copying
// a context allocates nothing; log lines and the stub and RPC calls the event makes carry them
// (src/base/request_tag.h).
struct RequestTag {
  static constexpr std::size_t kMaxId = 64;
  static constexpr std::size_t kTraceparent = 55;  // version 00: 2-32-16-2 hex digits
  std::uint8_t idSize = 0;  // 0: no request
  bool hasTraceparent = false;
  char id[kMaxId];
  char traceparent[kTraceparent];
};

struct ExecContext {
  void* host = nullptr;
  std::uint64_t flow = 0;
  RequestTag request{};
};
ExecContext& currentContext() noexcept;
// Resumes `h` with `ctx` restored, where the runtime says (src/base/exec_context.h).
void scheduleResume(std::coroutine_handle<> h, ExecContext ctx);

template <class T>
struct FutureState {
  std::optional<Result<std::conditional_t<std::is_void_v<T>, std::monostate, T>>> result;
  std::coroutine_handle<> waiter;
  ExecContext ctx;
};
}  // namespace detail

template <class T = void>
class Promise;

// An eager, single-consumer value provided later by a Promise<T>. Awaiting a ready Future
// does not suspend.
template <class T = void>
class [[nodiscard]] Future {
  using Stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

 public:
  Future() = default;
  bool ready() const noexcept { return state_ && state_->result.has_value(); }

  bool await_ready() const noexcept { return ready(); }
  void await_suspend(std::coroutine_handle<> h) noexcept {
    state_->waiter = h;
    state_->ctx = detail::currentContext();
  }
  T await_resume() {
    if constexpr (std::is_void_v<T>) {
      state_->result->value();
    } else {
      return std::move(*state_->result).value();
    }
  }

  static Future fromValue(Stored v) {
    Future f;
    f.state_ = std::make_shared<detail::FutureState<T>>();
    f.state_->result.emplace(std::move(v));
    return f;
  }

 private:
  friend class Promise<T>;
  std::shared_ptr<detail::FutureState<T>> state_;
};

template <class T>
class Promise {
  using Stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

 public:
  Promise() : state_(std::make_shared<detail::FutureState<T>>()) {}
  Future<T> future() const {
    Future<T> f;
    f.state_ = state_;
    return f;
  }
  void setValue(Stored v = Stored{}) { complete(Result<Stored>(std::move(v))); }
  void setError(std::exception_ptr e) { complete(Result<Stored>(std::move(e))); }
  bool done() const noexcept { return state_->result.has_value(); }

 private:
  void complete(Result<Stored> r) {
    if (state_->result) return;
    state_->result.emplace(std::move(r));
    if (auto w = std::exchange(state_->waiter, {})) detail::scheduleResume(w, state_->ctx);
  }
  std::shared_ptr<detail::FutureState<T>> state_;
};

// The awaitable a storage call returns. An answer the object's cache or an embedded engine
// has at once is ready, and awaiting it does not suspend; one that must wait for the storage
// engine (a read over the network) runs as a Task, which the await resumes into.
template <class T>
class [[nodiscard]] StorageOp {
 public:
  explicit StorageOp(T v) : v_(std::move(v)) {}
  explicit StorageOp(Task<T> later) : later_(later.release()) {}
  StorageOp(StorageOp&& o) noexcept : v_(std::move(o.v_)), later_(std::exchange(o.later_, {})) {}
  StorageOp& operator=(StorageOp&&) = delete;
  ~StorageOp() {
    if (later_) later_.destroy();
  }

  bool await_ready() const noexcept { return !later_; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    later_.promise().continuation = awaiting;
    return later_;
  }
  T await_resume() {
    if (!later_) return std::move(*v_);
    return later_.promise().take();
  }

 private:
  std::optional<T> v_;
  std::coroutine_handle<detail::TaskPromise<T>> later_;
};

// Not [[nodiscard]]: as in JavaScript, a write may be issued without awaiting it; it is
// applied at once and the output gate still holds every reply until it is durable.
template <>
class StorageOp<void> {
 public:
  bool await_ready() const noexcept { return true; }
  void await_suspend(std::coroutine_handle<>) noexcept {}
  void await_resume() noexcept {}
};

}  // namespace durable
