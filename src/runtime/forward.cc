// Requests for objects another node holds (cluster mode, docs/cluster.md): the Worker ran here;
// the object's event runs on the node that holds its slot. The request carries the slot epoch
// the sender's routes name: a node that does not hold the slot at that epoch answers 421 before
// the object sees anything, so the sender reads the routes again and tries once more. A request
// that reached the owner is never sent twice: if the connection fails after it was sent, the
// caller gets 503. Fetches and calls travel on the node-to-node channels (net/peer_channel.h),
// WebSockets on relays (net/websocket_relay.h).
#include "runtime/runtime.h"

#include "base/encoding.h"
#include "base/exec_context.h"
#include "base/log.h"
#include "base/request_tag.h"
#include "ids/id_codec.h"
#include "net/error_response.h"
#include "net/websocket_relay.h"

#include <durable/error.h>
#include <durable/json.h>
#include <durable/timer.h>

#include <boost/json.hpp>

#include <openssl/crypto.h>

#include <cctype>
#include <chrono>

namespace durable::detail {

namespace {

constexpr std::string_view kSecretHeader = "x-durable-cluster-secret";
constexpr std::string_view kNamespaceHeader = "x-durable-ns";
constexpr std::string_view kObjectHeader = "x-durable-object";
// The name the ID was made from (idFromName), in hex, so that the owner records it as a local
// stub's first batch would (the admin API shows it).
constexpr std::string_view kObjectNameHeader = "x-durable-object-name";
constexpr std::string_view kEpochHeader = "x-durable-slot-epoch";
constexpr std::string_view kUrlHeader = "x-durable-url";
constexpr std::string_view kMisdirectedHeader = "x-durable-misdirected";
// An error the object's event ended with, as the caller must see it (code, flags, message).
constexpr std::string_view kErrorHeader = "x-durable-error";
// An RPC call rather than a fetch: the class (typeid name) and the method's place in its list.
constexpr std::string_view kRpcClassHeader = "x-durable-rpc-class";
constexpr std::string_view kRpcMethodHeader = "x-durable-rpc-method";
constexpr std::string_view kRpcSignatureHeader = "x-durable-rpc-signature";

// A call's arguments on the wire: each Value's encoding after its length (4 bytes, little endian).
std::string encodeArguments(const std::vector<Value>& args) {
  std::string out;
  for (const auto& v : args) {
    const std::string bytes = v.encode();
    const auto n = static_cast<std::uint32_t>(bytes.size());
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
    out += bytes;
  }
  return out;
}

std::vector<Value> decodeArguments(std::string_view in) {
  std::vector<Value> out;
  while (!in.empty()) {
    if (in.size() < 4) throw Error(ErrorCode::kInvalidArgument, "RPC: truncated arguments");
    std::uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
    in.remove_prefix(4);
    if (in.size() < n) throw Error(ErrorCode::kInvalidArgument, "RPC: truncated arguments");
    out.push_back(Value::decode(in.substr(0, n)));
    in.remove_prefix(n);
  }
  return out;
}

Task<void> runCallOf(RpcInvoke invoke, DurableObject& object, std::vector<Value> args, std::shared_ptr<Value> out) {
  *out = co_await invoke(object, args);
}

void carryName(Request& out, const ObjectId& id) {
  // A long name would push the request past the owner's header limit; it is only shown.
  if (!id.name() || id.name()->size() > 1024) return;
  out.headers().set(kObjectNameHeader, toHex(*id.name()));
}

// The ID with the name the sender gave it, when that name is well formed hex and makes the ID.
ObjectId withName(const NamespaceKey& key, const ObjectId& id, std::string_view hex) {
  if (hex.empty()) return id;
  auto name = fromHex(hex);
  if (!name) return id;
  ObjectId named = makeNamedId(key, id.jurisdiction(), *name);
  return named == id ? named : id;
}

bool sameSecret(std::string_view given, const std::string& secret) {
  return !secret.empty() && given.size() == secret.size() && CRYPTO_memcmp(given.data(), secret.data(), given.size()) == 0;
}

std::string encodeError(const std::exception_ptr& e) {
  boost::json::object o;
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    o["code"] = static_cast<int>(err.code());
    o["message"] = err.what();
    o["remote"] = err.remote();
    o["retryable"] = err.retryable();
    o["overloaded"] = err.overloaded();
  } catch (const std::exception& err) {
    o["code"] = static_cast<int>(ErrorCode::kInternal);
    o["message"] = err.what();
  } catch (...) {
    o["code"] = static_cast<int>(ErrorCode::kInternal);
    o["message"] = "unknown error";
  }
  return boost::json::serialize(o);
}

Error decodeError(std::string_view text) {
  try {
    const auto v = boost::json::parse(text).as_object();
    const auto code = static_cast<ErrorCode>(v.at("code").to_number<int>());
    Error::Flags flags;
    if (const auto* b = v.if_contains("remote")) flags.remote = b->as_bool();
    if (const auto* b = v.if_contains("retryable")) flags.retryable = b->as_bool();
    if (const auto* b = v.if_contains("overloaded")) flags.overloaded = b->as_bool();
    return Error(code, std::string(v.at("message").as_string()), flags);
  } catch (const std::exception&) {
    return Error(ErrorCode::kInternal, "the node holding the object answered with an unreadable error");
  }
}

// The request this one serves (its id and trace context), beside the request rather than in its
// headers, as a local stub call carries it: the owner's logs and the services it calls see it.
constexpr std::string_view kTagIdHeader = "x-durable-request-id";
constexpr std::string_view kTagTraceHeader = "x-durable-traceparent";

void carryTag(Request& out, const RequestTag& tag) {
  if (const auto id = requestIdOf(tag); !id.empty()) out.headers().set(kTagIdHeader, id);
  if (tag.hasTraceparent) out.headers().set(kTagTraceHeader, traceparentOf(tag));
}

RequestTag tagOf(const Request& request) {
  const auto id = request.headers().get(kTagIdHeader);
  const auto trace = request.headers().get(kTagTraceHeader);
  if (!id && !trace) return currentContext().request;
  return makeRequestTag(id ? std::optional<std::string_view>(*id) : std::nullopt,
                        trace ? std::optional<std::string_view>(*trace) : std::nullopt);
}

Response refusal(int status, const std::string& message, bool misdirected = false) {
  boost::json::object body;
  body["error"] = message;
  Response r(boost::json::serialize(body), {.status = status});
  r.headers().set("content-type", "application/json");
  if (misdirected) r.headers().set(kMisdirectedHeader, "1");
  return r;
}

// Waits until the lease thread read the routes again (or a moment passed).
Task<void> routesRefreshed(const SlotTable& slots) {
  const auto before = slots.routesVersion();
  slots.requestRefresh();
  for (int i = 0; i < 400 && slots.routesVersion() == before; ++i) co_await durable::sleep(5);
}

}  // namespace

void Runtime::forwardFetch(const NamespaceImpl& ns, const ObjectId& id, Request request, const RequestTag& tag,
                           std::function<void(Result<Response>)> reply) {
  Shard* caller = Shard::current();
  Shard& via = caller ? *caller : shardOf(id);
  auto start = [this, &via, &ns, id, request = std::move(request), tag, reply = std::move(reply)]() mutable {
    ContextScope scope({nullptr, 0, tag});
    spawn(forwarded(via, ns, id, std::move(request), tag), std::move(reply));
  };
  // Posted even on the caller's own shard: `reply` must not run inside the caller's suspension.
  postTo(via, std::move(start));
}

Task<Response> Runtime::forwarded(Shard& via, const NamespaceImpl& ns, ObjectId id, Request request, RequestTag tag) {
  // A WebSocket goes on a connection of its own, which is relayed once the owner accepts it
  // (net/websocket_relay.h).
  const bool upgrade = request.method() == "GET" && asksForWebSocket(request);
  const SlotTable& slots = *options_.slots;
  auto make = [&](const std::string& address, std::int64_t epoch) {
    RequestInit init{.method = request.method(), .redirect = "manual"};
    if (request.hasBody()) init.body = request.text();
    Request out("http://" + address + std::string(kForwardPath), init);
    // The node-to-node headers are ours alone: a client's own never cross.
    for (const auto& [name, value] : request.headers().entries()) {
      if (name.rfind("x-durable-", 0) != 0) out.headers().append(name, value);
    }
    out.headers().set(kSecretHeader, slots.secret);
    out.headers().set(kNamespaceHeader, std::to_string(ns.nsId));
    out.headers().set(kObjectHeader, id.toString());
    out.headers().set(kEpochHeader, std::to_string(epoch));
    out.headers().set(kUrlHeader, request.urlString());
    carryName(out, id);
    carryTag(out, tag);
    return out;
  };
  auto sent = toOwner(via, id, make, upgrade);
  std::optional<Response> response = co_await std::move(sent);
  if (!response) {
    // Claimed here meanwhile: the event runs on this node after all.
    Promise<Result<Response>> local;
    auto answer = local.future();
    dispatchFetch(ns, id, std::move(request), tag, [local](Result<Response> r) mutable { local.setValue(std::move(r)); });
    auto r = co_await answer;
    co_return std::move(r).value();
  }
  if (auto error = response->headers().get(kErrorHeader)) throw decodeError(*error);
  co_return std::move(*response);
}

void Runtime::forwardCall(const NamespaceImpl& ns, const ObjectId& id, bool (*isClass)(DurableObject&),
                          std::function<Task<void>(DurableObject&)> body, RpcRemote remote, const RequestTag& tag,
                          std::function<void(std::exception_ptr)> done) {
  Shard* caller = Shard::current();
  Shard& via = caller ? *caller : shardOf(id);
  auto start = [this, &via, &ns, id, isClass, body = std::move(body), remote = std::move(remote), tag,
                done = std::move(done)]() mutable {
    ContextScope scope({nullptr, 0, tag});
    spawn(forwardedCall(via, ns, id, isClass, std::move(body), std::move(remote), tag),
          std::function<void(Result<void>)>([done = std::move(done)](Result<void> r) { done(r.error()); }));
  };
  // Posted even on the caller's own shard: `done` must not run inside the caller's suspension.
  postTo(via, std::move(start));
}

Task<void> Runtime::forwardedCall(Shard& via, const NamespaceImpl& ns, ObjectId id, bool (*isClass)(DurableObject&),
                                  std::function<Task<void>(DurableObject&)> body, RpcRemote remote, RequestTag tag) {
  if (remote.method < 0 || !remote.className) {
    // A call that arrived from another node for a slot this node has just lost.
    throw Error(ErrorCode::kUnavailable, "the object's slot moved while the call was on its way; retry",
                {.retryable = true});
  }
  const SlotTable& slots = *options_.slots;
  const std::string arguments = encodeArguments(remote.args());
  auto make = [&](const std::string& address, std::int64_t epoch) {
    Request out("http://" + address + std::string(kCallPath), RequestInit{.method = "POST", .body = arguments});
    out.headers().set(kSecretHeader, slots.secret);
    out.headers().set(kNamespaceHeader, std::to_string(ns.nsId));
    out.headers().set(kObjectHeader, id.toString());
    out.headers().set(kEpochHeader, std::to_string(epoch));
    out.headers().set(kRpcClassHeader, remote.className);
    out.headers().set(kRpcMethodHeader, std::to_string(remote.method));
    out.headers().set(kRpcSignatureHeader, remote.signature ? remote.signature : "");
    out.headers().set("content-type", "application/octet-stream");
    carryName(out, id);
    carryTag(out, tag);
    return out;
  };
  auto sent = toOwner(via, id, make);
  std::optional<Response> response = co_await std::move(sent);
  if (!response) {
    // Claimed here meanwhile: the call runs on this node after all.
    Promise<void> local;
    auto answer = local.future();
    dispatchCall(ns, id, isClass, std::move(body), RpcRemote{}, tag, [local](std::exception_ptr e) mutable {
      if (e) {
        local.setError(std::move(e));
      } else {
        local.setValue();
      }
    });
    co_await answer;
    co_return;
  }
  if (auto error = response->headers().get(kErrorHeader)) throw decodeError(*error);
  if (response->status() != 200) {
    throw Error(ErrorCode::kUnavailable, "RPC: the node holding the object answered " +
                                             std::to_string(response->status()) + ": " + response->text().substr(0, 200));
  }
  if (remote.result) remote.result(Value::decode(response->text()));
}

Task<std::optional<Response>> Runtime::toOwner(Shard& via, ObjectId id,
                                               std::function<Request(const std::string&, std::int64_t)> make,
                                               bool upgrade) {
  const SlotTable& slots = *options_.slots;
  const int slot = slots.slotOf(id.raw());
  // A slot no live node holds is usually being claimed (a hand-off just released it): its
  // routes are read again for a while. Nothing was sent, so waiting is safe.
  const auto unroutedUntil = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (int attempt = 0;; ++attempt) {
    if (slots.epoch(slot) != 0) co_return std::nullopt;
    const auto route = slots.route(slot);
    if (!route || route->epoch == 0 || route->address.empty()) {
      if (attempt == 0 || std::chrono::steady_clock::now() < unroutedUntil) {
        if (attempt > 0) co_await durable::sleep(50);
        co_await routesRefreshed(slots);
        continue;
      }
      throw Error(ErrorCode::kUnavailable, "no live node holds the object's slot " + std::to_string(slot) + " now",
                  {.retryable = true});
    }
    Request out = make(route->address, route->epoch);
    std::optional<Response> response;
    std::exception_ptr lost;
    bool undelivered = false;
    try {
      if (upgrade) {
        response = co_await sendUpgrade(via.context(), route->address, out,
                                        std::chrono::milliseconds(via.settings().requestTimeoutMs));
      } else {
        response = co_await via.peerChannels().send(route->address, out);
      }
    } catch (const NotDelivered&) {
      // The node is gone or going (a SIGTERM closes its listener before it gives its slots
      // up): the routes will name another, and the request never left.
      undelivered = true;
      lost = std::current_exception();
    } catch (...) {
      lost = std::current_exception();
    }
    if (undelivered && attempt == 0) {
      co_await routesRefreshed(slots);
      continue;
    }
    if (lost) {
      // Sent or not, nobody can tell: the object may have run it, so it is not sent again.
      throw Error(ErrorCode::kUnavailable,
                  "the node holding the object (" + route->address + ") did not answer: " + describeException(lost),
                  {.retryable = false});
    }
    if (response->status() == 421 && response->headers().has(kMisdirectedHeader)) {
      if (attempt == 0) {
        // Only around a move: worth a line, and the tests read it.
        logInfo("cluster: ", route->address, " no longer holds slot ", slot, " at epoch ", route->epoch,
                " (421): routes read again, the request sent once more");
        co_await routesRefreshed(slots);
        // The request was not consumed: `out` was a copy.
        continue;
      }
      throw Error(ErrorCode::kUnavailable, "the object's slot " + std::to_string(slot) + " is moving; retry",
                  {.retryable = true});
    }
    if (upgrade && response->status() == 101) {
      // The relay ends its connection with 1012 once the routes name another owner.
      auto& relayed = WebSocketAccess::impl(response->webSocket())->relayed;
      relayed->stillRouted = [&slots, slot, address = route->address, epoch = route->epoch] {
        const auto now = slots.route(slot);
        return now && now->address == address && now->epoch == epoch;
      };
      relayed->writeTimeout = std::chrono::milliseconds(via.settings().webSocketWriteTimeoutMs);
    }
    co_return std::move(response);
  }
}

Task<Response> Runtime::acceptForwarded(Request request) {
  const SlotTable* slots = options_.slots.get();
  if (!slots) co_return refusal(404, "not a cluster node");
  if (!sameSecret(request.headers().get(kSecretHeader).value_or(""), slots->secret)) {
    co_return refusal(403, "a node-to-node request without the cluster's secret is refused");
  }
  const auto nsText = request.headers().get(kNamespaceHeader).value_or("");
  const auto hex = request.headers().get(kObjectHeader).value_or("");
  const auto epochText = request.headers().get(kEpochHeader).value_or("");
  const auto url = request.headers().get(kUrlHeader).value_or("");
  const NamespaceImpl* ns = nullptr;
  std::int64_t epoch = 0;
  try {
    ns = namespaceById(std::stoll(nsText));
    epoch = std::stoll(epochText);
  } catch (const std::exception&) {
  }
  if (!ns) co_return refusal(400, "unknown namespace '" + nsText + "' in a forwarded request");
  std::optional<ObjectId> id;
  try {
    id = parseId(ns->key, "", hex);
  } catch (const std::exception& e) {
    co_return refusal(400, std::string("bad object ID in a forwarded request: ") + e.what());
  }
  id = withName(ns->key, *id, request.headers().get(kObjectNameHeader).value_or(""));
  const int slot = slots->slotOf(id->raw());
  // A slot being handed off: once it is released, the sender hears 421 and asks the new owner.
  if (slots->draining(slot)) co_await handedOff(slot);
  if (epoch == 0 || slots->epoch(slot) != epoch) {
    co_return refusal(421, "this node does not hold slot " + std::to_string(slot) + " at epoch " + epochText, true);
  }
  if (request.url().pathname() == kCallPath) {
    auto call = acceptForwardedCall(*ns, *id, request);
    co_return co_await std::move(call);
  }
  RequestInit init{.method = request.method()};
  if (request.hasBody()) init.body = request.text();
  std::optional<Request> original;
  try {
    original.emplace(url, init);
  } catch (const std::exception& e) {
    co_return refusal(400, std::string("bad URL in a forwarded request: ") + e.what());
  }
  for (const auto& [name, value] : request.headers().entries()) {
    if (name.rfind("x-durable-", 0) == 0 || name == "host" || name == "content-length") continue;
    original->headers().append(name, value);
  }
  Promise<Result<Response>> answer;
  auto done = answer.future();
  const RequestTag tag = tagOf(request);
  dispatchFetch(*ns, *id, std::move(*original), tag, [answer](Result<Response> r) mutable { answer.setValue(std::move(r)); });
  auto result = co_await done;
  if (result.ok()) co_return std::move(result).value();
  Response failed = errorResponse(result.error());
  failed.headers().set(kErrorHeader, encodeError(result.error()));
  co_return failed;
}

Response Runtime::acceptChannel(const Request& request) {
  const SlotTable* slots = options_.slots.get();
  if (!slots) return refusal(404, "not a cluster node");
  if (!sameSecret(request.headers().get(kSecretHeader).value_or(""), slots->secret)) {
    return refusal(403, "a node-to-node request without the cluster's secret is refused");
  }
  if (request.headers().get("upgrade").value_or("") != PeerChannels::kProtocol) {
    return refusal(400, "a channel is opened with Upgrade: " + std::string(PeerChannels::kProtocol));
  }
  auto taker = std::make_shared<WebSocketImpl>();
  const std::size_t maxFrame = options_.settings.maxBodyBytes + 1024 * 1024;
  taker->adopt = [this, maxFrame](boost::asio::ip::tcp::socket socket, ConnectionSlot slot, std::string early) {
    servePeerChannel(std::move(socket), std::move(slot), std::move(early), maxFrame,
                     [this](Request forwarded) { return acceptForwarded(std::move(forwarded)); });
  };
  const WebSocket end = WebSocketAccess::wrap(taker);
  return Response(nullptr, {.status = 101, .webSocket = end});
}

Task<Response> Runtime::acceptForwardedCall(const NamespaceImpl& ns, const ObjectId& id, const Request& request) {
  std::exception_ptr error;
  std::shared_ptr<const RpcTable> table;
  RpcInvoke invoke = nullptr;
  std::vector<Value> args;
  try {
    table = findRpcTable(request.headers().get(kRpcClassHeader).value_or(""));
    if (!table) {
      throw Error(ErrorCode::kInvalidArgument,
                  "RPC: this node's program has no class of that name; every node must run the same program");
    }
    const std::string methodText = request.headers().get(kRpcMethodHeader).value_or("");
    std::size_t method = 0;
    try {
      method = std::stoul(methodText);
    } catch (const std::exception&) {
      method = table->methods.size();
    }
    if (method >= table->methods.size() || !table->methods[method] ||
        request.headers().get(kRpcSignatureHeader).value_or("") != table->signatures[method]) {
      throw Error(ErrorCode::kInvalidArgument, "RPC: the class has no callable method " + methodText +
                                                   " of that type here; every node must run the same program");
    }
    invoke = table->methods[method];
    args = decodeArguments(request.text());
  } catch (...) {
    error = std::current_exception();
  }
  if (!error) {
    auto result = std::make_shared<Value>();
    std::function<Task<void>(DurableObject&)> body = [invoke, args = std::move(args), result](DurableObject& o) {
      return runCallOf(invoke, o, args, result);
    };
    Promise<void> answer;
    auto done = answer.future();
    dispatchCall(ns, id, table->isClass, std::move(body), RpcRemote{}, tagOf(request),
                 [answer](std::exception_ptr e) mutable {
                   if (e) {
                     answer.setError(std::move(e));
                   } else {
                     answer.setValue();
                   }
                 });
    try {
      co_await done;
    } catch (...) {
      error = std::current_exception();
    }
    if (!error) {
      try {
        Response r(result->encode(), {.status = 200});
        r.headers().set("content-type", "application/octet-stream");
        co_return r;
      } catch (...) {
        error = std::current_exception();
      }
    }
  }
  Response failed = errorResponse(error);
  failed.headers().set(kErrorHeader, encodeError(error));
  co_return failed;
}

}  // namespace durable::detail
