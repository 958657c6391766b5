// durable/object.h: State, DurableObject's default handlers and Env, over the shard's ObjectHost.
#include "runtime/runtime.h"

#include "base/utf8.h"

#include <durable/error.h>
#include <durable/object.h>

#include <algorithm>
#include <cstdlib>

namespace durable {

using detail::validUtf8;

const ObjectId& State::id() const { return host_->id(); }
Storage& State::storage() { return host_->storage(); }
Future<void> State::blockConcurrencyWhileImpl(std::function<Task<void>()> fn) {
  return host_->blockConcurrencyWhile(std::move(fn));
}
void State::waitUntil(Task<void> task) { host_->waitUntil(std::move(task)); }
void State::abort(const std::string& reason) { host_->abort(reason); }

Task<Response> DurableObject::fetch(Request) {
  throw Error(ErrorCode::kInternal, "Handler does not export a fetch() function.");
  co_return Response(nullptr);
}

Task<void> DurableObject::alarm(AlarmInfo) { co_return; }

const Namespace& Env::ns(std::string_view binding) const {
  if (impl_) {
    if (auto it = impl_->namespaces.find(binding); it != impl_->namespaces.end()) return it->second;
  }
  throw Error(ErrorCode::kNotFound, "no Durable Object binding named " + std::string(binding));
}

std::optional<std::string> Env::var(std::string_view name) const {
  if (const char* v = std::getenv(std::string(name).c_str())) return std::string(v);
  if (impl_) {
    if (auto it = impl_->vars.find(name); it != impl_->vars.end()) return it->second;
  }
  return std::nullopt;
}

// ---- WebSockets (hibernation API): a socket belongs to the shard's ObjectSockets entry of its
// object, so that it outlives the instance.

void State::acceptWebSocket(WebSocket ws, std::vector<std::string> tags) {
  auto impl = detail::WebSocketAccess::impl(ws);
  if (!impl) throw Error(ErrorCode::kInvalidArgument, "acceptWebSocket(): empty WebSocket");
  if (impl->accepted) throw Error(ErrorCode::kInvalidArgument, "acceptWebSocket(): this WebSocket was accepted already");
  if (!impl->partner.expired()) {
    throw Error(ErrorCode::kInvalidArgument, "acceptWebSocket(): pass the pair's server end, not its client end");
  }
  if (tags.size() > 10) throw Error(ErrorCode::kInvalidArgument, "acceptWebSocket(): at most 10 tags");
  for (const auto& t : tags) {
    if (t.size() > 256) throw Error(ErrorCode::kInvalidArgument, "acceptWebSocket(): a tag is longer than 256 characters");
  }
  detail::Shard& shard = host_->shard();
  impl->shard = &shard;
  impl->ns = &host_->ns();
  impl->id = host_->id();
  impl->accepted = true;
  impl->tags = std::move(tags);
  shard.socketsOf(host_->ns(), host_->id()).sockets.push_back(impl);
}

std::vector<WebSocket> State::getWebSockets(std::optional<std::string_view> tag) {
  std::vector<WebSocket> out;
  auto* os = host_->shard().findSockets(host_->ns(), host_->id());
  if (!os) return out;
  for (auto& s : os->sockets) {
    if (s->readyState == WebSocket::kClosed) continue;
    if (tag && std::find(s->tags.begin(), s->tags.end(), *tag) == s->tags.end()) continue;
    out.push_back(detail::WebSocketAccess::wrap(s));
  }
  return out;
}

std::vector<std::string> State::getTags(const WebSocket& ws) {
  const auto& impl = detail::WebSocketAccess::impl(ws);
  if (!impl || !impl->accepted) throw Error(ErrorCode::kInvalidArgument, "getTags(): not an accepted WebSocket");
  return impl->tags;
}

void State::setWebSocketAutoResponse(std::string request, std::string response) {
  // Both are text frames: the request is compared with received text, the response is sent.
  if (!validUtf8(request) || !validUtf8(response)) {
    throw Error(ErrorCode::kInvalidArgument, "setWebSocketAutoResponse(): the request and response must be valid UTF-8");
  }
  host_->shard().socketsOf(host_->ns(), host_->id()).autoResponse.emplace(std::move(request), std::move(response));
}

void State::setWebSocketAutoResponse() {
  if (auto* os = host_->shard().findSockets(host_->ns(), host_->id())) os->autoResponse.reset();
}

std::optional<std::int64_t> State::getWebSocketAutoResponseTimestamp(const WebSocket& ws) {
  const auto& impl = detail::WebSocketAccess::impl(ws);
  return impl ? impl->autoResponseAt : std::nullopt;
}

void State::setHibernatableWebSocketEventTimeout(std::optional<std::int64_t> ms) {
  host_->shard().socketsOf(host_->ns(), host_->id()).eventTimeoutMs = ms;
}

std::optional<std::int64_t> State::getHibernatableWebSocketEventTimeout() {
  auto* os = host_->shard().findSockets(host_->ns(), host_->id());
  return os ? os->eventTimeoutMs : std::nullopt;
}

Task<void> DurableObject::webSocketMessage(WebSocket, WebSocketMessage) { co_return; }
Task<void> DurableObject::webSocketClose(WebSocket, int, std::string, bool) { co_return; }
Task<void> DurableObject::webSocketError(WebSocket, std::string) { co_return; }

}  // namespace durable
