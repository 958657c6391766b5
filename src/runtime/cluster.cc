// The runtime's side of cluster mode (docs/cluster.md): which events an object may run on this
// node (admission, and the lease watch that ends what already runs), the alarms of slots it
// claims, and requests for objects another node holds.
//
// Requests: the Worker ran here; the object's event runs on the node that holds its slot. The
// request carries the slot epoch the sender's routes name: a node that does not hold the slot
// at that epoch answers 421 before the object sees anything, so the sender reads the routes
// again and tries once more. A request that reached the owner is never sent twice: if the
// connection fails after it was sent, the caller gets 503.
#include "runtime/runtime.h"

#include "base/log.h"
#include "base/exec_context.h"
#include "net/error_response.h"

#include <durable/error.h>
#include <durable/json.h>
#include <durable/timer.h>

#include <boost/json.hpp>

#include <openssl/crypto.h>

#include <chrono>
#include <cstdio>
#include <mutex>

namespace durable::detail {

namespace {

constexpr std::string_view kSecretHeader = "x-durable-cluster-secret";
constexpr std::string_view kNamespaceHeader = "x-durable-ns";
constexpr std::string_view kObjectHeader = "x-durable-object";
constexpr std::string_view kEpochHeader = "x-durable-slot-epoch";
constexpr std::string_view kUrlHeader = "x-durable-url";
constexpr std::string_view kMisdirectedHeader = "x-durable-misdirected";
// An error the object's event ended with, as the caller must see it (code, flags, message).
constexpr std::string_view kErrorHeader = "x-durable-error";

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

// Why an event is refused or ended while the node cannot trust its lease.
std::exception_ptr leaseLapsed() {
  return std::make_exception_ptr(Error(ErrorCode::kUnavailable,
                                       "this node's cluster lease may have lapsed; it serves again once renewed",
                                       {.retryable = true}));
}

}  // namespace

std::FILE* eventLog = nullptr;

void ObjectHost::logEvent(char what) {
  static std::mutex mu;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
  std::lock_guard lock(mu);
  std::fprintf(eventLog, "%c %lld %s\n", what, static_cast<long long>(ns), idHex().c_str());
  std::fflush(eventLog);
}

std::exception_ptr ObjectHost::fencedOut() {
  const SlotTable* slots = shard_.runtime().options().slots.get();
  if (!slots) return nullptr;
  auto refuse = [](const std::string& why) {
    return std::make_exception_ptr(Error(ErrorCode::kUnavailable, why, {.retryable = true}));
  };
  // A node that cannot be sure of its lease serves nothing: another may own its slots now.
  if (!slots->leaseTrusted()) return leaseLapsed();
  const int slot = slots->slotOf(id_.raw());
  const std::int64_t epoch = slots->epoch(slot);
  if (epoch == 0) return refuse("this node does not hold the object's slot " + std::to_string(slot));
  const std::int64_t loadedUnder = store_.fenceEpoch();
  if (loadedUnder == epoch) return nullptr;
  if (loadedUnder != 0) {
    // The slot was lost and claimed again: another node may have written meanwhile.
    auto why = refuse("the object's slot " + std::to_string(slot) + " moved; its state is loaded again");
    if (!store_.idle() || running_ > 0) {
      // Writes of the old epoch are still open or in flight: their fenced commit fails and
      // resets the store; until then nothing new runs on the old state.
      resetInstance(why, false);
      return why;
    }
    store_.forgetLoaded(why);
  }
  store_.setFenceEpoch(epoch);
  return nullptr;
}

void Runtime::slotsClaimed() {
  if (!started_) return;
  for (auto& sp : shards_) {
    Shard* s = sp.get();
    postTo(*s, [s] {
      try {
        s->alarms().loadNew();
      } catch (const std::exception& e) {
        logWarn("shard ", s->index(), ": cannot load the alarms of claimed slots: ", e.what());
      }
    });
  }
}

void Shard::watchLease() {
  // Admission already refuses new events once the lease is not trusted (ObjectHost::fencedOut);
  // this ends those already running, so that none outlives the lease: a commit or read still
  // waiting on PostgreSQL fails now (outcome unknown: 503), and every instance is reset.
  leaseTimer_.expires_after(std::chrono::milliseconds(20));
  leaseTimer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    const bool trusted = runtime_.options().slots->leaseTrusted();
    if (!trusted && !leaseLapsed_) {
      leaseLapsed_ = true;
      logWarn("shard ", index_, ": the cluster lease may have lapsed: failing what is in flight");
      for (auto& p : partitions) p->abandonInFlight();
      const auto why = leaseLapsed();
      for (auto& [key, host] : objects_) host->fenceOff(why);
    } else if (trusted) {
      leaseLapsed_ = false;
    }
    // Slots given away (hand-off) or lost (a fenced-out commit): the events of their objects
    // that are still running end now, before another node may claim the slots.
    const auto drops = runtime_.options().slots->drops();
    if (drops != slotDropsSeen_) {
      slotDropsSeen_ = drops;
      auto why = std::make_exception_ptr(
          Error(ErrorCode::kUnavailable, "the object's slot moved to another node", {.retryable = true}));
      for (auto& [key, host] : objects_) {
        if (host->runningEvents() && runtime_.heldElsewhere(host->id())) host->fenceOff(why);
      }
    }
    watchLease();
  });
}

bool Runtime::heldElsewhere(const ObjectId& id) const {
  const SlotTable* slots = options_.slots.get();
  return slots && slots->epoch(slots->slotOf(id.raw())) == 0;
}

void Runtime::forwardFetch(const NamespaceImpl& ns, const ObjectId& id, Request request, const RequestTag& tag,
                           std::function<void(Result<Response>)> reply) {
  Shard* caller = Shard::current();
  Shard& via = caller ? *caller : shardOf(id);
  auto start = [this, &via, &ns, id, request = std::move(request), tag, reply = std::move(reply)]() mutable {
    ContextScope scope({nullptr, 0, tag});
    spawn(forwarded(via, ns, id, std::move(request), tag), std::move(reply));
  };
  if (caller == &via) {
    start();
  } else {
    postTo(via, std::move(start));
  }
}

Task<Response> Runtime::forwarded(Shard& via, const NamespaceImpl& ns, ObjectId id, Request request, RequestTag tag) {
  const SlotTable& slots = *options_.slots;
  const int slot = slots.slotOf(id.raw());
  if (auto upgrade = request.headers().get("upgrade"); upgrade && !upgrade->empty()) {
    throw Error(ErrorCode::kUnavailable,
                "a WebSocket to an object held by another node is not relayed yet (cluster mode): connect to the node "
                "that holds it",
                {.retryable = true});
  }
  for (int attempt = 0;; ++attempt) {
    if (slots.epoch(slot) != 0) {
      // Claimed here meanwhile: the event runs on this node after all.
      Promise<Result<Response>> local;
      auto answer = local.future();
      dispatchFetch(ns, id, std::move(request), tag, [local](Result<Response> r) mutable { local.setValue(std::move(r)); });
      auto r = co_await answer;
      co_return std::move(r).value();
    }
    const auto route = slots.route(slot);
    if (!route || route->epoch == 0 || route->address.empty()) {
      if (attempt == 0) {
        co_await routesRefreshed(slots);
        continue;
      }
      throw Error(ErrorCode::kUnavailable, "no live node holds the object's slot " + std::to_string(slot) + " now",
                  {.retryable = true});
    }
    RequestInit init{.method = request.method(), .redirect = "manual"};
    if (request.hasBody()) init.body = request.text();
    Request out("http://" + route->address + std::string(kForwardPath), init);
    for (const auto& [name, value] : request.headers().entries()) out.headers().append(name, value);
    out.headers().set(kSecretHeader, slots.secret);
    out.headers().set(kNamespaceHeader, std::to_string(ns.nsId));
    out.headers().set(kObjectHeader, id.toString());
    out.headers().set(kEpochHeader, std::to_string(route->epoch));
    out.headers().set(kUrlHeader, request.urlString());
    std::optional<Response> response;
    std::exception_ptr lost;
    try {
      response = co_await via.peerClient().fetch(std::move(out));
    } catch (...) {
      lost = std::current_exception();
    }
    if (lost) {
      // Sent or not, nobody can tell: the object may have run it, so it is not sent again.
      throw Error(ErrorCode::kUnavailable,
                  "the node holding the object (" + route->address + ") did not answer: " + describeException(lost),
                  {.retryable = false});
    }
    if (response->status() == 421 && response->headers().has(kMisdirectedHeader)) {
      if (attempt == 0) {
        co_await routesRefreshed(slots);
        // The request was not consumed: `out` was a copy.
        continue;
      }
      throw Error(ErrorCode::kUnavailable, "the object's slot " + std::to_string(slot) + " is moving; retry",
                  {.retryable = true});
    }
    if (auto error = response->headers().get(kErrorHeader)) throw decodeError(*error);
    co_return std::move(*response);
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
  const int slot = slots->slotOf(id->raw());
  if (epoch == 0 || slots->epoch(slot) != epoch) {
    co_return refusal(421, "this node does not hold slot " + std::to_string(slot) + " at epoch " + epochText, true);
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
  const RequestTag tag = currentContext().request;
  dispatchFetch(*ns, *id, std::move(*original), tag, [answer](Result<Response> r) mutable { answer.setValue(std::move(r)); });
  auto result = co_await done;
  if (result.ok()) co_return std::move(result).value();
  Response failed = errorResponse(result.error());
  failed.headers().set(kErrorHeader, encodeError(result.error()));
  co_return failed;
}

}  // namespace durable::detail
