// durable/object.h: what an object author subclasses, and the state the runtime gives it.
//
// The runtime constructs at most one instance per ObjectId at a time, on the shard that owns
// the ID, from (State&, Env&), on the first event after the object was idle or never ran.
// Handlers are coroutines. While one awaits something outside the object (another object,
// the network, a timer), other events may start, as in JavaScript; while the object awaits
// its own storage, or runs inside blockConcurrencyWhile or transaction, none do.
#pragma once

#include <durable/borrowed.h>
#include <durable/http.h>
#include <durable/id.h>
#include <durable/storage.h>
#include <durable/task.h>
#include <durable/websocket.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace durable {

class Env;
class Namespace;

namespace detail {
class ObjectHost;
class Runtime;
}

// What alarm() is told about the run.
struct AlarmInfo {
  int retryCount = 0;      // 0 on the first run
  bool isRetry = false;
  std::int64_t scheduledTime = 0;  // epoch ms the alarm was set for
};

class State {
 public:
  const ObjectId& id() const;
  Storage& storage();

  // Runs fn and lets no other event into the object until it finishes. Returns at once with
  // a Future of fn's completion; a constructor may ignore it, as in JavaScript. If fn throws,
  // the object is reset (the next event constructs it again) and the Future carries the error.
  // A callback that runs past 30 seconds resets the object as abort() does, and fails the
  // Future; until the callback ends, every event sent to the object fails at once (retryable).
  template <class F>
  Future<void> blockConcurrencyWhile(F&& fn) {
    detail::requireSafeCallable<F, std::function<Task<void>()>>();
    return blockConcurrencyWhileImpl(std::function<Task<void>()>(std::forward<F>(fn)));
  }

  // Keeps the object alive (not evicted) until `task` finishes; its result is ignored, its
  // failure logged.
  void waitUntil(Task<void> task);

  // Resets the object, as Cloudflare's ctx.abort(reason) does: `reason` is logged, every
  // event running now fails (its caller gets an Error with retryable(), whatever the event
  // does next), and the next event meets a new instance constructed from what is stored.
  // Writes made before the call are kept. Throws that error, so the calling event stops here.
  [[noreturn]] void abort(const std::string& reason = "");

  // ---- WebSockets (hibernation API) ----

  // Makes the object the owner of `ws` (the server end of a WebSocketPair): its messages and
  // closes arrive as webSocketMessage/webSocketClose events, even after the object was evicted.
  // At most 10 tags of at most 256 characters; throws Error(kInvalidArgument) otherwise.
  void acceptWebSocket(WebSocket ws, std::vector<std::string> tags = {});
  // The object's open sockets, all of them or those with `tag`.
  std::vector<WebSocket> getWebSockets(std::optional<std::string_view> tag = std::nullopt);
  std::vector<std::string> getTags(const WebSocket& ws);
  // A text message equal to `request` is answered with `response` by the runtime, without
  // waking the object. Without arguments: clears it.
  void setWebSocketAutoResponse(std::string request, std::string response);
  void setWebSocketAutoResponse();
  // When the runtime last auto-responded on `ws` (epoch ms), if ever.
  std::optional<std::int64_t> getWebSocketAutoResponseTimestamp(const WebSocket& ws);
  // How long a WebSocket event handler may run; accepted and reported, not enforced.
  void setHibernatableWebSocketEventTimeout(std::optional<std::int64_t> ms);
  std::optional<std::int64_t> getHibernatableWebSocketEventTimeout();

  // The runtime makes the one State of each live object.
 private:
  friend class detail::ObjectHost;
  explicit State(detail::ObjectHost* host) : host_(host) {}
  Future<void> blockConcurrencyWhileImpl(std::function<Task<void>()> fn);

  detail::ObjectHost* host_;
};

class DurableObject {
 public:
  DurableObject(State& state, Env& env) : state_(state), env_(env) {}
  virtual ~DurableObject() = default;
  DurableObject(const DurableObject&) = delete;
  DurableObject& operator=(const DurableObject&) = delete;

  // An HTTP request sent to this object through a Stub. An exception becomes an
  // `{"error": message}` response, with a durable::Error's status (404 for kNotFound, ...)
  // or else 500; the object stays usable.
  virtual Task<Response> fetch(Request request);
  // The object's alarm fired. An exception schedules a retry.
  virtual Task<void> alarm(AlarmInfo info);
  // A message on a socket the object accepted.
  virtual Task<void> webSocketMessage(WebSocket ws, WebSocketMessage message);
  // The client closed the socket (wasClean), or the connection dropped (code 1006).
  virtual Task<void> webSocketClose(WebSocket ws, int code, std::string reason, bool wasClean);
  // The socket failed (a protocol violation, an oversized message).
  virtual Task<void> webSocketError(WebSocket ws, std::string error);

 protected:
  State& state() { return state_; }
  Storage& storage() { return state_.storage(); }
  Env& env() { return env_; }

 private:
  State& state_;
  Env& env_;
};

// The bindings a Worker and every object see: namespaces by binding name, and variables.
class Env {
 public:
  // The namespace bound as `binding`; throws Error(kNotFound) naming it if there is none.
  const Namespace& ns(std::string_view binding) const;
  // A variable from the config's [vars] table, overridden by the process environment.
  std::optional<std::string> var(std::string_view name) const;

  // An Env with no bindings and no [vars] (a Worker tested alone).
  Env() = default;

  struct Impl;

 private:
  friend class detail::Runtime;
  explicit Env(const Impl* impl) : impl_(impl) {}
  const Impl* impl_ = nullptr;
};

}  // namespace durable
