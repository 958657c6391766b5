// durable/namespace.h: IDs of a class's objects, and stubs that send them requests.
#include "base/exec_context.h"
#include "runtime/runtime.h"

#include <durable/error.h>
#include <durable/namespace.h>

#include <map>

#include <optional>
#include <unordered_map>

namespace durable {

using detail::ContextScope;
using detail::currentContext;
using detail::ExecContext;
using detail::ObjectHost;

namespace detail {
Namespace makeNamespace(const NamespaceImpl* impl) { return Namespace(impl); }

bool asksForWebSocket(const Request& request) {
  std::string upgrade = request.headers().get("upgrade").value_or("");
  for (auto& c : upgrade) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return upgrade == "websocket";
}
}  // namespace detail

ObjectId Namespace::idFromName(std::string_view name) const {
  // Two HMACs per name cost more than the rest of a request; hot names repeat. The cache is
  // per thread (no locks) and keyed by the namespace's key, so it can never mix namespaces.
  thread_local std::unordered_map<std::string, ObjectId> cache;
  thread_local std::string probe;
  probe.assign(reinterpret_cast<const char*>(impl_->key.data()), 16);
  probe += jurisdiction_;
  probe += '\0';
  probe += name;
  if (auto it = cache.find(probe); it != cache.end()) return it->second;
  ObjectId id = detail::makeNamedId(impl_->key, jurisdiction_, name);
  if (cache.size() >= 16384) cache.clear();
  cache.emplace(probe, id);
  return id;
}

ObjectId Namespace::newUniqueId(const UniqueIdOptions& options) const {
  const std::string_view wanted = options.jurisdiction;
  if (!jurisdiction_.empty() && !wanted.empty() && wanted != jurisdiction_) {
    throw Error(ErrorCode::kInvalidArgument, "newUniqueId: jurisdiction " + std::string(wanted) +
                                                 " differs from this namespace's " + jurisdiction_);
  }
  return detail::makeUniqueId(impl_->key, wanted.empty() ? std::string_view(jurisdiction_) : wanted);
}

ObjectId Namespace::idFromString(std::string_view hex) const { return detail::parseId(impl_->key, jurisdiction_, hex); }

Stub Namespace::get(const ObjectId& id, const StubOptions&) const {
  // An ID made by another namespace fails its MAC here: it can never reach this class's data.
  if (!detail::verifiedUnder(id, impl_->key)) {
    detail::parseId(impl_->key, jurisdiction_, id.toString());
  } else if (!jurisdiction_.empty() && id.jurisdiction() != jurisdiction_) {
    throw Error(ErrorCode::kInvalidArgument, "Invalid Durable Object ID: the ID's jurisdiction is not " + jurisdiction_);
  }
  return Stub(impl_, id);
}

Namespace Namespace::jurisdiction(std::string_view name) const {
  detail::jurisdictionCode(name);  // validates
  return Namespace(impl_, std::string(name));
}

namespace {
struct FetchAwaiter {
  const detail::NamespaceImpl* ns;
  ObjectId id;
  Request request;
  std::optional<Result<Response>> result;
  std::coroutine_handle<> handle;
  ExecContext ctx;

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    handle = h;
    ctx = currentContext();
    // Only `this` is captured: the callback fits std::function's inline buffer. The request
    // this call serves goes with it, beside the Request rather than in its headers.
    ns->runtime->dispatchFetch(*ns, id, std::move(request), ctx.request, [this](Result<Response> r) {
      result.emplace(std::move(r));
      detail::resumeNow(handle, ctx);
    });
  }
  Response await_resume() { return std::move(*result).value(); }
};

struct CallAwaiter {
  const detail::NamespaceImpl* ns;
  ObjectId id;
  bool (*isClass)(DurableObject&);
  std::function<Task<void>(DurableObject&)> body;
  detail::RpcRemote remote;
  std::exception_ptr error;
  std::coroutine_handle<> handle;
  ExecContext ctx;

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    handle = h;
    ctx = currentContext();
    ns->runtime->dispatchCall(*ns, id, isClass, std::move(body), std::move(remote), ctx.request, [this](std::exception_ptr e) {
      error = std::move(e);
      detail::resumeNow(handle, ctx);
    });
  }
  void await_resume() {
    if (error) std::rethrow_exception(error);
  }
};

Task<Response> stubFetch(const detail::NamespaceImpl* ns, ObjectId id, Request request) {
  const bool upgrade = detail::asksForWebSocket(request);
  // A named awaiter, not a braced temporary: see RequestInit in durable/http.h.
  FetchAwaiter awaiter{ns, std::move(id), std::move(request), std::nullopt, {}, {}};
  Response response = co_await awaiter;
  // As on Cloudflare, and the same on every node: a cluster node relays an object's WebSocket
  // only for a request that asked for one.
  if (response.webSocket() && !upgrade) {
    throw Error(ErrorCode::kInvalidArgument,
                "the object answered with a WebSocket a request without the header \"Upgrade: websocket\"; pass "
                "the client's request on to the object, or set that header on the request made for it");
  }
  co_return response;
}
}  // namespace

namespace detail {
Task<void> rpcDispatch(const NamespaceImpl* ns, ObjectId id, bool (*isClass)(DurableObject&),
                       std::function<Task<void>(DurableObject&)> body, RpcRemote remote) {
  CallAwaiter awaiter{ns, std::move(id), isClass, std::move(body), std::move(remote), nullptr, {}, {}};
  co_await awaiter;
}

namespace {
// Filled while the program starts (RpcRegistered's initializers), read-only after.
std::map<std::string, std::shared_ptr<const RpcTable>, std::less<>>& rpcTables() {
  static std::map<std::string, std::shared_ptr<const RpcTable>, std::less<>> tables;
  return tables;
}
}  // namespace

bool registerRpcTable(const char* className, std::shared_ptr<const RpcTable> table) {
  auto [it, inserted] = rpcTables().try_emplace(className, std::move(table));
  // Two classes of one name (anonymous namespaces give the same typeid name): neither can be
  // called from another node (findRpcTable answers nothing), rather than the wrong one run.
  if (!inserted && it->second && table && it->second->isClass != table->isClass) it->second = nullptr;
  return true;
}

std::shared_ptr<const RpcTable> findRpcTable(std::string_view className) {
  const auto& tables = rpcTables();
  auto it = tables.find(className);
  return it == tables.end() ? nullptr : it->second;
}
}  // namespace detail

Task<Response> Stub::fetch(Request request) const { return stubFetch(ns_, id_, std::move(request)); }

}  // namespace durable
