// durable/rpc.h: calling an object's methods through its stub (Cloudflare's Durable Object RPC).
//
// A class lists the coroutine methods callers may call; a caller names one and passes its
// arguments, and every part of the call is checked when it compiles:
//
//   class Counter : public durable::DurableObject {
//    public:
//     using DurableObject::DurableObject;
//     durable::Task<std::int64_t> increment(std::int64_t by) { ... }
//     using Rpc = durable::Rpc<&Counter::increment>;   // what stubs may call
//   };
//
//   std::int64_t n = co_await stub.call<&Counter::increment>(5);   // durable/namespace.h
//
// A call is one event in the object, like a fetch: the input gate holds while the method
// waits on the object's own storage, and its result is released only once the writes made
// before it returned are durable. What the method throws reaches the caller as a
// durable::Error with its message and remote() == true. Arguments and results are values that
// durable::Value holds (numbers, strings, Bytes, JSON, and anything Boost.JSON converts, such
// as structs described with BOOST_DESCRIBE_STRUCT): they are copied into the call, never
// shared with the object.
#pragma once

#include <durable/error.h>
#include <durable/id.h>
#include <durable/object.h>
#include <durable/task.h>
#include <durable/value.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace durable {

// The methods of a class that stubs may call: `using Rpc = durable::Rpc<&C::a, &C::b>;`.
template <auto... Methods>
struct Rpc {};

namespace detail {

struct NamespaceImpl;

template <class M>
struct RpcMethod : std::false_type {};
template <class C, class R, class... P>
struct RpcMethod<Task<R> (C::*)(P...)> : std::true_type {
  using Class = C;
  using Result = R;
  using Params = std::tuple<std::remove_cvref_t<P>...>;
};
template <class C, class R, class... P>
struct RpcMethod<Task<R> (C::*)(P...) const> : RpcMethod<Task<R> (C::*)(P...)> {};
template <class C, class R, class... P>
struct RpcMethod<Task<R> (C::*)(P...) noexcept> : RpcMethod<Task<R> (C::*)(P...)> {};
template <class C, class R, class... P>
struct RpcMethod<Task<R> (C::*)(P...) const noexcept> : RpcMethod<Task<R> (C::*)(P...)> {};

// A parameter the method could change for its caller: a call copies its arguments, so such a
// change would be lost (and across nodes there is nothing to change).
template <class M>
struct RpcOutParameter : std::false_type {};
template <class C, class R, class... P>
struct RpcOutParameter<Task<R> (C::*)(P...)>
    : std::bool_constant<((std::is_lvalue_reference_v<P> && !std::is_const_v<std::remove_reference_t<P>>) || ...)> {};
template <class C, class R, class... P>
struct RpcOutParameter<Task<R> (C::*)(P...) const> : RpcOutParameter<Task<R> (C::*)(P...)> {};
template <class C, class R, class... P>
struct RpcOutParameter<Task<R> (C::*)(P...) noexcept> : RpcOutParameter<Task<R> (C::*)(P...)> {};
template <class C, class R, class... P>
struct RpcOutParameter<Task<R> (C::*)(P...) const noexcept> : RpcOutParameter<Task<R> (C::*)(P...)> {};

template <auto A, auto B>
constexpr bool sameMethod() {
  if constexpr (std::is_same_v<decltype(A), decltype(B)>) {
    return A == B;
  } else {
    return false;
  }
}

template <auto M, class List>
struct RpcListed : std::false_type {};
template <auto M, auto... Ms>
struct RpcListed<M, Rpc<Ms...>> : std::bool_constant<(sameMethod<M, Ms>() || ...)> {};

template <class C>
concept HasRpcList = requires { typename C::Rpc; };

// What a call can carry: what durable::Value holds and gives back.
template <class T>
concept RpcValue = std::is_void_v<T> || (std::is_constructible_v<Value, const T&> && requires(Value v) {
                     { std::move(v).template as<T>() } -> std::same_as<T>;
                   });

template <class C>
bool isInstanceOf(DurableObject& o) {
  return dynamic_cast<C*>(&o) != nullptr;
}

// The same call in a form that crosses nodes (cluster mode, src/runtime/forward.cc): the
// method's place in its class's Rpc list, the arguments as Values, and where the result goes.
struct RpcRemote {
  const char* className = nullptr;  // typeid(C).name(): every node runs the same binary
  int method = -1;
  const char* signature = nullptr;  // typeid(decltype(&C::m)).name()
  std::function<std::vector<Value>()> args;
  std::function<void(Value)> result;  // empty for a method that returns void
};

// What a node that holds an object needs to run a call sent from another: per class, each
// listed method as a function of Values (null for one whose types a call could not carry).
using RpcInvoke = Task<Value> (*)(DurableObject&, std::vector<Value>&);
struct RpcTable {
  bool (*isClass)(DurableObject&) = nullptr;
  std::vector<RpcInvoke> methods;
  // typeid of each method's pointer type: a caller built from another program is refused
  // rather than run the method that happens to sit at the same place.
  std::vector<const char*> signatures;
};
// Every class that some stub.call<> names is registered when the program starts (RpcRegistered).
bool registerRpcTable(const char* className, std::shared_ptr<const RpcTable> table);
std::shared_ptr<const RpcTable> findRpcTable(std::string_view className);

// Runs `body` in the object as one event (src/runtime/namespace.cc), or `remote` on the node
// that holds it; throws what it threw, made remote, or the runtime's error.
Task<void> rpcDispatch(const NamespaceImpl* ns, ObjectId id, bool (*isClass)(DurableObject&),
                       std::function<Task<void>(DurableObject&)> body, RpcRemote remote);

template <auto Method>
constexpr bool rpcCarriesCall() {
  using Traits = RpcMethod<decltype(Method)>;
  if constexpr (!Traits::value) {
    return false;
  } else {
    return !RpcOutParameter<decltype(Method)>::value && RpcValue<typename Traits::Result> &&
           []<class... P>(std::tuple<P...>*) { return (RpcValue<P> && ...); }(static_cast<typename Traits::Params*>(nullptr));
  }
}

template <auto Method>
Task<Value> rpcInvokeValues(DurableObject& object, std::vector<Value>& args) {
  using Traits = RpcMethod<decltype(Method)>;
  using C = typename Traits::Class;
  using Params = typename Traits::Params;
  constexpr std::size_t n = std::tuple_size_v<Params>;
  if (args.size() != n) {
    throw Error(ErrorCode::kInvalidArgument, "RPC: " + std::to_string(args.size()) + " arguments for a method that takes " +
                                                 std::to_string(n));
  }
  Params params = [&]<std::size_t... I>(std::index_sequence<I...>) {
    return Params(std::move(args[I]).template as<std::tuple_element_t<I, Params>>()...);
  }(std::make_index_sequence<n>{});
  auto* self = static_cast<C*>(&object);
  if constexpr (std::is_void_v<typename Traits::Result>) {
    co_await std::apply([self](auto&... p) { return (self->*Method)(std::move(p)...); }, params);
    co_return Value();
  } else {
    co_return Value(co_await std::apply([self](auto&... p) { return (self->*Method)(std::move(p)...); }, params));
  }
}

template <auto... Ms>
std::shared_ptr<const RpcTable> rpcTableFor(Rpc<Ms...>*, bool (*isClass)(DurableObject&)) {
  auto table = std::make_shared<RpcTable>();
  table->isClass = isClass;
  (table->methods.push_back([] {
    if constexpr (rpcCarriesCall<Ms>()) {
      return &rpcInvokeValues<Ms>;
    } else {
      return static_cast<RpcInvoke>(nullptr);
    }
  }()),
   ...);
  (table->signatures.push_back(typeid(decltype(Ms)).name()), ...);
  return table;
}

template <auto M, auto... Ms>
constexpr int rpcIndexIn(Rpc<Ms...>*) {
  int i = 0;
  int found = -1;
  ((found = found < 0 && sameMethod<M, Ms>() ? i : found, ++i), ...);
  return found;
}

template <class C>
struct RpcRegistered {
  static const bool done;
};
template <class C>
const bool RpcRegistered<C>::done =
    registerRpcTable(typeid(C).name(), rpcTableFor(static_cast<typename C::Rpc*>(nullptr), &isInstanceOf<C>));

template <auto Method, class C, class R, class Params>
Task<void> rpcInvoke(C* self, Params* params, std::optional<R>* out) {
  out->emplace(co_await std::apply([self](auto&... p) { return (self->*Method)(std::move(p)...); }, *params));
}
template <auto Method, class C, class Params>
Task<void> rpcInvokeVoid(C* self, Params* params) {
  co_await std::apply([self](auto&... p) { return (self->*Method)(std::move(p)...); }, *params);
}

// The call itself; `params` are the caller's arguments, already copied into this frame.
template <auto Method>
Task<typename RpcMethod<decltype(Method)>::Result> rpcCall(const NamespaceImpl* ns, ObjectId id,
                                                           typename RpcMethod<decltype(Method)>::Params params) {
  using Traits = RpcMethod<decltype(Method)>;
  using C = typename Traits::Class;
  using R = typename Traits::Result;
  using Params = typename Traits::Params;
  // Odr-used here, so that every program that calls a method of C can also run calls to C
  // that other nodes send it.
  (void)&RpcRegistered<C>::done;
  RpcRemote remote;
  remote.className = typeid(C).name();
  remote.method = rpcIndexIn<Method>(static_cast<typename C::Rpc*>(nullptr));
  remote.signature = typeid(decltype(Method)).name();
  remote.args = [p = &params] {
    return [p]<std::size_t... I>(std::index_sequence<I...>) {
      std::vector<Value> values;
      values.reserve(sizeof...(I));
      (values.emplace_back(std::get<I>(*p)), ...);
      return values;
    }(std::make_index_sequence<std::tuple_size_v<Params>>{});
  };
  if constexpr (std::is_void_v<R>) {
    std::function<Task<void>(DurableObject&)> body = [p = &params](DurableObject& o) {
      return rpcInvokeVoid<Method, C, Params>(static_cast<C*>(&o), p);
    };
    co_await rpcDispatch(ns, std::move(id), &isInstanceOf<C>, std::move(body), std::move(remote));
  } else {
    std::optional<R> out;
    remote.result = [o = &out](Value v) { o->emplace(std::move(v).template as<R>()); };
    std::function<Task<void>(DurableObject&)> body = [p = &params, o = &out](DurableObject& obj) {
      return rpcInvoke<Method, C, R, Params>(static_cast<C*>(&obj), p, o);
    };
    co_await rpcDispatch(ns, std::move(id), &isInstanceOf<C>, std::move(body), std::move(remote));
    co_return std::move(*out);
  }
}

template <auto Method, class... Args>
constexpr void checkRpcCall() {
  using Traits = RpcMethod<decltype(Method)>;
  static_assert(Traits::value, "stub.call<&C::m>: m must be a member function of C that returns durable::Task<R>");
  if constexpr (Traits::value) {
    using C = typename Traits::Class;
    using Params = typename Traits::Params;
    static_assert(std::is_base_of_v<DurableObject, C>, "stub.call<&C::m>: C must derive from durable::DurableObject");
    static_assert(HasRpcList<C>, "stub.call<&C::m>: C must list its callable methods: using Rpc = durable::Rpc<&C::m, ...>;");
    if constexpr (HasRpcList<C>) {
      static_assert(RpcListed<Method, typename C::Rpc>::value,
                    "stub.call<&C::m>: m is not in C's durable::Rpc<...> list of callable methods");
    }
    static_assert(!RpcOutParameter<decltype(Method)>::value,
                  "stub.call<&C::m>: m takes a parameter by non-const reference; a call copies its arguments, so take "
                  "it by value or const reference");
    static_assert(sizeof...(Args) == std::tuple_size_v<Params>, "stub.call<&C::m>: wrong number of arguments for m");
    if constexpr (sizeof...(Args) == std::tuple_size_v<Params>) {
      static_assert(std::is_constructible_v<Params, Args&&...>,
                    "stub.call<&C::m>: an argument does not convert to the type m takes");
    }
    static_assert([]<class... P>(std::tuple<P...>*) { return (RpcValue<P> && ...); }(static_cast<Params*>(nullptr)),
                  "stub.call<&C::m>: every parameter of m must be a type durable::Value holds (number, string, Bytes, "
                  "JSON, or a type Boost.JSON converts)");
    static_assert(RpcValue<typename Traits::Result>,
                  "stub.call<&C::m>: m's result must be void or a type durable::Value holds (number, string, Bytes, "
                  "JSON, or a type Boost.JSON converts)");
  }
}

}  // namespace detail
}  // namespace durable
