// durable/value.h: what storage holds.
//
// A Value is null, a bool, a 64-bit integer, a double, a UTF-8 string, raw bytes, or a JSON
// array/object, and it comes back from storage with the type it was stored with. Any other
// C++ type that Boost.JSON can convert (value_from / value_to) is stored as JSON.
//
// The stored encoding (part of the on-disk format; do not renumber):
//   one tag byte, then the payload
//   0x00 null      (no payload)
//   0x01 false     (no payload)        0x02 true (no payload)
//   0x03 int64     (8 bytes, little-endian two's complement)
//   0x04 double    (8 bytes, little-endian IEEE 754)
//   0x05 string    (UTF-8 bytes)
//   0x06 bytes     (raw bytes)
//   0x07 JSON      (array or object as JSON text)
#pragma once

#include <durable/error.h>
#include <durable/json.h>

#include <boost/json.hpp>

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace durable {

// Raw bytes, distinct from text (an ArrayBuffer in JavaScript).
// A class with a constructor, not an aggregate, so that `Bytes{...}` inside a co_await
// expression is safe under g++ 12 (durable/borrowed.h).
struct Bytes {
  Bytes() = default;
  explicit Bytes(std::string bytes) : data(std::move(bytes)) {}
  std::string data;
  bool operator==(const Bytes&) const = default;
};

class Value {
 public:
  enum class Type { kNull, kBool, kInt, kDouble, kString, kBytes, kJson };

  Value() = default;  // null
  Value(std::nullptr_t) {}
  template <class B>
    requires std::same_as<B, bool>
  Value(B b) : v_(b) {}
  template <std::integral I>
    requires(!std::same_as<I, bool> && !std::same_as<I, char>)
  Value(I i) : v_(static_cast<std::int64_t>(i)) {}
  Value(double d) : v_(d) {}
  Value(float d) : v_(static_cast<double>(d)) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(Bytes b) : v_(std::move(b)) {}
  // JSON scalars become the matching scalar type; arrays and objects stay JSON.
  Value(const Json& j);
  Value(Json&& j);  // the same, moving an array or object instead of copying it
  Value(boost::json::array a) : v_(Json(std::move(a))) {}
  Value(boost::json::object o) : v_(Json(std::move(o))) {}
  // Anything else Boost.JSON can convert, e.g. std::vector<std::int64_t> or a struct with
  // tag_invoke overloads.
  template <class T>
    requires(!std::is_arithmetic_v<std::remove_cvref_t<T>> &&
             !std::is_convertible_v<T, std::string_view> && !std::same_as<std::remove_cvref_t<T>, Value> &&
             !std::same_as<std::remove_cvref_t<T>, Bytes> && !std::is_convertible_v<T, Json> &&
             boost::json::has_value_from<std::remove_cvref_t<T>>::value)
  Value(const T& t) : Value(boost::json::value_from(t)) {}

  Type type() const { return static_cast<Type>(v_.index()); }
  bool isNull() const { return type() == Type::kNull; }

  // The value as T. Numbers convert between int and double when no precision is lost;
  // anything else of the wrong type throws Error(kInvalidArgument).
  template <class T>
  T as() const&;
  // The same, moving a string, bytes or JSON out instead of copying it.
  template <class T>
  T as() &&;

  // The value as JSON (bytes become an array of numbers, as JSON.stringify would not; they are
  // rare in JSON contexts).
  Json toJson() const;

  bool operator==(const Value&) const = default;

  // The stored encoding described at the top of this file. Throws Error(kInvalidArgument) for
  // a string, or a string or object key inside JSON, that is not UTF-8: it could not be read
  // back as text (store such bytes as Bytes).
  std::string encode() const;
  static Value decode(std::string_view encoded);  // throws Error(kInternal) on a corrupt value

 private:
  std::int64_t asInt() const;
  double asDouble() const;
  std::variant<std::monostate, bool, std::int64_t, double, std::string, Bytes, Json> v_;
  friend struct ValueAccess;
};

template <class T>
T Value::as() const& {
  if constexpr (std::same_as<T, Value>) {
    return *this;
  } else if constexpr (std::same_as<T, bool>) {
    if (type() != Type::kBool) throw Error(ErrorCode::kInvalidArgument, "stored value is not a bool");
    return std::get<bool>(v_);
  } else if constexpr (std::integral<T>) {
    return static_cast<T>(asInt());
  } else if constexpr (std::floating_point<T>) {
    return static_cast<T>(asDouble());
  } else if constexpr (std::same_as<T, std::string>) {
    if (type() != Type::kString) throw Error(ErrorCode::kInvalidArgument, "stored value is not a string");
    return std::get<std::string>(v_);
  } else if constexpr (std::same_as<T, Bytes>) {
    if (type() != Type::kBytes) throw Error(ErrorCode::kInvalidArgument, "stored value is not bytes");
    return std::get<Bytes>(v_);
  } else if constexpr (std::same_as<T, Json>) {
    return toJson();
  } else if constexpr (std::same_as<T, boost::json::array> || std::same_as<T, boost::json::object>) {
    // One copy, not two (toJson() and value_to each copied): a stored chat history is read on
    // every message.
    if (type() == Type::kJson) {
      const Json& j = std::get<Json>(v_);
      if constexpr (std::same_as<T, boost::json::array>) {
        if (j.is_array()) return j.get_array();
      } else {
        if (j.is_object()) return j.get_object();
      }
    }
    try {
      return boost::json::value_to<T>(toJson());
    } catch (const std::exception& e) {
      throw Error(ErrorCode::kInvalidArgument, std::string("stored value has another type: ") + e.what());
    }
  } else {
    try {
      return boost::json::value_to<T>(toJson());
    } catch (const std::exception& e) {
      throw Error(ErrorCode::kInvalidArgument, std::string("stored value has another type: ") + e.what());
    }
  }
}

template <class T>
T Value::as() && {
  if constexpr (std::same_as<T, std::string>) {
    if (type() == Type::kString) return std::move(std::get<std::string>(v_));
  } else if constexpr (std::same_as<T, Bytes>) {
    if (type() == Type::kBytes) return std::move(std::get<Bytes>(v_));
  } else if constexpr (std::same_as<T, Json>) {
    if (type() == Type::kJson) return std::move(std::get<Json>(v_));
  } else if constexpr (std::same_as<T, boost::json::array>) {
    if (type() == Type::kJson && std::get<Json>(v_).is_array()) return std::move(std::get<Json>(v_).get_array());
  } else if constexpr (std::same_as<T, boost::json::object>) {
    if (type() == Type::kJson && std::get<Json>(v_).is_object()) return std::move(std::get<Json>(v_).get_object());
  }
  return static_cast<const Value&>(*this).template as<T>();
}

}  // namespace durable
