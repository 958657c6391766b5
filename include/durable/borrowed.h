// durable/borrowed.h: what the option structs (RequestInit, ListOptions, StubOptions, ...)
// hold instead of owning strings and handles.
//
// Why: those structs are written in place, often inside a co_await expression (the README's
// first example awaits ns.getByName(id).fetch(...), whose hidden default argument
// `const StubOptions& = {}` held a std::string and was freed at a frame address):
//
//   co_await ns.getByName(id).fetch(url, {.method = "POST", .headers = h});
//   co_await storage().list({.prefix = "note:"});
//
// g++ 12 (Debian 12's compiler) miscompiles an aggregate temporary in a co_await expression
// when a member needs a destructor: it moves the member into the coroutine frame bitwise and
// then destroys both copies (GCC PR 99576; PR 100611 is the same for lambda captures). A
// std::string member is freed twice, or freed at an address malloc never returned. Members
// that need no destructor are immune, so every option struct is trivially destructible (a
// static_assert next to each keeps it so) and borrows what it names: the callee reads or
// copies it before the call returns.
//
// A borrowed value must outlive the call it is passed to, so binding one to a temporary is a
// compile error: `o.prefix = a + b;` would dangle. Name the temporary first.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

namespace durable {

// A string an option struct borrows: a literal, a std::string_view, or a named std::string.
class BorrowedString {
 public:
  constexpr BorrowedString() noexcept = default;
  constexpr BorrowedString(const char* s) noexcept : view_(s) {}
  constexpr BorrowedString(std::string_view s) noexcept : view_(s) {}
  BorrowedString(const std::string& s) noexcept : view_(s) {}
  // The string would be destroyed before the call that reads it; name it first.
  BorrowedString(std::string&&) = delete;
  BorrowedString(const std::string&&) = delete;

  constexpr std::string_view view() const noexcept { return view_; }
  constexpr operator std::string_view() const noexcept { return view_; }
  std::string str() const { return std::string(view_); }
  constexpr bool empty() const noexcept { return view_.empty(); }
  friend constexpr bool operator==(BorrowedString a, BorrowedString b) noexcept { return a.view_ == b.view_; }

 private:
  std::string_view view_;
};

// An object of type T that an option struct borrows (a Headers, a WebSocket), or none.
template <class T>
class Borrowed {
 public:
  constexpr Borrowed() noexcept = default;
  constexpr Borrowed(const T& value) noexcept : value_(&value) {}
  // The object would be destroyed before the call that reads it; name it first.
  Borrowed(T&&) = delete;
  Borrowed(const T&&) = delete;

  constexpr const T* get() const noexcept { return value_; }
  constexpr explicit operator bool() const noexcept { return value_ != nullptr; }

 private:
  const T* value_ = nullptr;
};

namespace detail {

// g++ also destroys twice the by-value captures of a lambda written inside a co_await
// expression (PR 100611), so the calls that take a callable refuse a temporary lambda whose
// captures need a destructor. Seen on 12.2, the only g++ here; later releases are treated
// alike until one is checked (tests/unit/await_shapes_test.cc holds the shapes).
#if defined(__GNUC__) && !defined(__clang__)
inline constexpr bool kCompilerDestroysAwaitTemporariesTwice = true;
#else
inline constexpr bool kCompilerDestroysAwaitTemporariesTwice = false;
#endif

template <class F, class Exempt>
constexpr void requireSafeCallable() {
  using Fn = std::remove_cvref_t<F>;
  static_assert(!kCompilerDestroysAwaitTemporariesTwice || std::is_lvalue_reference_v<F> ||
                    std::is_same_v<Fn, Exempt> || std::is_trivially_destructible_v<Fn>,
                "g++ 12 destroys the by-value captures of a lambda written inside a co_await "
                "expression twice (GCC PR 100611). Capture by reference ([&], [this]) or name "
                "the lambda in a statement of its own and pass the name.");
}

}  // namespace detail

}  // namespace durable
