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
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

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

// Runs `body` in the object as one event (src/runtime/namespace.cc); throws what it threw,
// made remote, or the runtime's error.
Task<void> rpcDispatch(const NamespaceImpl* ns, ObjectId id, bool (*isClass)(DurableObject&),
                       std::function<Task<void>(DurableObject&)> body);

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
  if constexpr (std::is_void_v<R>) {
    std::function<Task<void>(DurableObject&)> body = [p = &params](DurableObject& o) {
      return rpcInvokeVoid<Method, C, Params>(static_cast<C*>(&o), p);
    };
    co_await rpcDispatch(ns, std::move(id), &isInstanceOf<C>, std::move(body));
  } else {
    std::optional<R> out;
    std::function<Task<void>(DurableObject&)> body = [p = &params, o = &out](DurableObject& obj) {
      return rpcInvoke<Method, C, R, Params>(static_cast<C*>(&obj), p, o);
    };
    co_await rpcDispatch(ns, std::move(id), &isInstanceOf<C>, std::move(body));
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
