// durable/namespace.h: a binding to one class of objects, and stubs to reach its objects.
//
// A Namespace makes IDs and stubs. It is immutable and safe to use from any thread; a Stub
// is a small value (namespace + ID) and may be copied freely.
#pragma once

#include <durable/borrowed.h>
#include <durable/http.h>
#include <durable/id.h>
#include <durable/rpc.h>
#include <durable/task.h>

#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

namespace durable {

class Namespace;

namespace detail {
struct NamespaceImpl;
// The runtime's one way to make a Namespace of a bound class (src/runtime/namespace.cc).
Namespace makeNamespace(const NamespaceImpl* impl);
}

// Option structs borrow their strings: see durable/borrowed.h.
struct UniqueIdOptions {
  BorrowedString jurisdiction;  // "", "eu" or "fedramp"
};
static_assert(std::is_trivially_destructible_v<UniqueIdOptions>, "see durable/borrowed.h");

struct StubOptions {
  // Where the object would prefer to live. Accepted; one node has one place.
  BorrowedString locationHint;
};
static_assert(std::is_trivially_destructible_v<StubOptions>, "see durable/borrowed.h");

class Stub {
 public:
  const ObjectId& id() const { return id_; }
  // Sends `request` to the object and completes with its response once the writes the object
  // made before answering are durable.
  Task<Response> fetch(Request request) const;
  Task<Response> fetch(std::string url, RequestInit init = {}) const {
    return fetch(Request(std::move(url), std::move(init)));
  }
  // Calls a method the object's class lists in its `Rpc` (durable/rpc.h), with `args`
  // copied into the call: `co_await stub.call<&Counter::increment>(5)`. Completes with the
  // method's result once the writes it made are durable; throws what it threw (remote()), or
  // the runtime's error (retryable(), overloaded()). A stub of another class's namespace
  // throws Error(kInvalidArgument).
  template <auto Method, class... Args>
  Task<typename detail::RpcMethod<decltype(Method)>::Result> call(Args&&... args) const {
    detail::checkRpcCall<Method, Args...>();
    return detail::rpcCall<Method>(ns_, id_, typename detail::RpcMethod<decltype(Method)>::Params(std::forward<Args>(args)...));
  }

 private:
  friend class Namespace;
  Stub(const detail::NamespaceImpl* ns, ObjectId id) : ns_(ns), id_(std::move(id)) {}
  const detail::NamespaceImpl* ns_;
  ObjectId id_;
};

class Namespace {
 public:
  // Deterministic: the same name in this namespace (and jurisdiction) is always the same ID.
  ObjectId idFromName(std::string_view name) const;
  // A fresh random ID, carrying its jurisdiction.
  ObjectId newUniqueId(const UniqueIdOptions& options = {}) const;
  // Parses toString()'s output. Throws Error(kInvalidArgument) unless `hex` is 64 hex digits
  // made for this namespace (and, for a jurisdiction's namespace, that jurisdiction).
  ObjectId idFromString(std::string_view hex) const;

  Stub get(const ObjectId& id, const StubOptions& options = {}) const;
  Stub getByName(std::string_view name, const StubOptions& options = {}) const {
    return get(idFromName(name), options);
  }

  // The same class restricted to a jurisdiction: its names map to other IDs, and its new
  // IDs carry the jurisdiction. Throws Error(kInvalidArgument) for an unknown jurisdiction.
  Namespace jurisdiction(std::string_view name) const;

 private:
  friend Namespace detail::makeNamespace(const detail::NamespaceImpl* impl);
  explicit Namespace(const detail::NamespaceImpl* impl, std::string jurisdiction = {})
      : impl_(impl), jurisdiction_(std::move(jurisdiction)) {}
  const detail::NamespaceImpl* impl_;
  std::string jurisdiction_;
};

}  // namespace durable
