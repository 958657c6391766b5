// co_await of one Asio operation from a runtime coroutine (HttpClient, the WebSocket relay).
#pragma once

#include "base/exec_context.h"

#include <boost/beast/core/error.hpp>

#include <coroutine>
#include <functional>
#include <optional>
#include <utility>

namespace durable::detail {

// Awaits one Asio operation: `start` begins it with a handler taking (error_code, T); the
// coroutine resumes through the runtime (scheduleResume), inside its object's gate.
template <class T>
struct AsioOp {
  std::function<void(std::function<void(boost::beast::error_code, T)>)> start;
  boost::beast::error_code ec;
  std::optional<T> value;
  std::coroutine_handle<> handle;
  ExecContext ctx;

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    handle = h;
    ctx = currentContext();
    start([this](boost::beast::error_code e, T v) {
      ec = e;
      value.emplace(std::move(v));
      scheduleResume(handle, ctx);
    });
  }
  std::pair<boost::beast::error_code, T> await_resume() { return {ec, std::move(*value)}; }
};

}  // namespace durable::detail
