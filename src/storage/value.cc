#include <durable/value.h>

#include "base/json_text.h"
#include "base/utf8.h"
#include "storage/value_codec.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace durable {

namespace {

enum Tag : unsigned char {
  kTagNull = 0x00,
  kTagFalse = 0x01,
  kTagTrue = 0x02,
  kTagInt = 0x03,
  kTagDouble = 0x04,
  kTagString = 0x05,
  kTagBytes = 0x06,
  kTagJson = 0x07,
};

// Explicit little-endian so the on-disk format does not depend on the host.
void putLe64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint64_t getLe64(std::string_view in) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return v;
}

[[noreturn]] void corrupt(const std::string& why) {
  throw Error(ErrorCode::kInternal, "corrupt stored value: " + why);
}

// A JSON string (or object key) holding bytes that are not UTF-8 would be written out as is
// and then fail to parse on the way back: refuse it before it is stored. `where` is a JSON
// Pointer to the string, so the caller can find it.
void checkJsonText(const Json& j, std::string& where) {
  auto refuse = [&](std::string_view what) {
    throw Error(ErrorCode::kInvalidArgument, std::string(what) + " at " + (where.empty() ? "/" : where) +
                                                 " is not valid UTF-8 (store bytes as durable::Bytes)");
  };
  switch (j.kind()) {
    case boost::json::kind::string:
      if (!detail::validUtf8(std::string_view(j.get_string().data(), j.get_string().size()))) refuse("JSON string");
      break;
    case boost::json::kind::array: {
      std::size_t i = 0;
      for (const auto& e : j.get_array()) {
        const std::size_t mark = where.size();
        where += '/';
        where += std::to_string(i++);
        checkJsonText(e, where);
        where.resize(mark);
      }
      break;
    }
    case boost::json::kind::object:
      for (const auto& [k, v] : j.get_object()) {
        const std::size_t mark = where.size();
        where += '/';
        // The key goes into the message only once it is known to be text.
        const std::string_view key(k.data(), k.size());
        if (!detail::validUtf8(key)) refuse("a JSON object key");
        for (char c : key) {
          if (c == '~') {
            where += "~0";
          } else if (c == '/') {
            where += "~1";
          } else {
            where += c;
          }
        }
        checkJsonText(v, where);
        where.resize(mark);
      }
      break;
    default:
      break;
  }
}

// Appends the JSON text of `j` to `out`, which holds only the tag. The serializer copies a
// string's bytes as they are between ASCII quotes and escapes, so the text is UTF-8 exactly
// when every string and key is: one pass over the output checks them all, far cheaper than
// walking the tree. The walk runs only to say where.
void encodeJsonText(const Json& j, std::string& out) {
  detail::appendJson(j, out);
  if (!detail::validUtf8(out)) {
    std::string where;
    checkJsonText(j, where);
    throw Error(ErrorCode::kInvalidArgument, "JSON text is not valid UTF-8 (store bytes as durable::Bytes)");
  }
}

// What the serializer may write for one string or key, or false if it is not UTF-8. Eight
// bytes at a time while the text is ASCII with nothing to escape, which is what chat messages and
// most keys are: a put walks every string of its value, so this walk is on the shard's hot path.
bool stringBound(const char* data, std::size_t size, std::size_t& bound) {
  constexpr std::uint64_t kOnes = 0x0101010101010101;
  constexpr std::uint64_t kHighs = 0x8080808080808080;
  // Exact for "some byte of x is below n" when every byte of x is below 0x80 (x is ASCII).
  auto anyBelow = [](std::uint64_t x, std::uint64_t n) { return (x - kOnes * n) & ~x & kHighs; };
  auto escapeCost = [](unsigned char c) -> std::size_t { return c < 0x20 ? 5 : (c == '"' || c == '\\') ? 1 : 0; };
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  std::size_t escaped = 0;
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w & kHighs) break;
    if (anyBelow(w, 0x20) | anyBelow(w ^ (kOnes * '"'), 1) | anyBelow(w ^ (kOnes * '\\'), 1)) {
      for (std::size_t k = i; k < i + 8; ++k) escaped += escapeCost(p[k]);
    }
  }
  // The rest (a short key, a string's last bytes, or text from its first non-ASCII byte on) in one
  // pass; the UTF-8 check only when a byte of it is not ASCII.
  unsigned char high = 0;
  for (std::size_t k = i; k < size; ++k) {
    high |= p[k];
    escaped += escapeCost(p[k]);
  }
  if ((high & 0x80) && !detail::validUtf8(std::string_view(data + i, size - i))) return false;
  bound += 2 + size + escaped;
  return true;
}

// What checkedEncodedBound() walks: false at the first string or key that is not UTF-8 (then
// checkJsonText finds it again and names where), else `bound` grows by what the serializer can
// write for `j` at most: every escape it may use counted at its longest (\u00XX).
bool textBound(const Json& j, std::size_t& bound) {
  switch (j.kind()) {
    case boost::json::kind::string:
      return stringBound(j.get_string().data(), j.get_string().size(), bound);
    case boost::json::kind::array: {
      const auto& a = j.get_array();
      bound += 2 + a.size();
      for (const auto& e : a) {
        if (!textBound(e, bound)) return false;
      }
      return true;
    }
    case boost::json::kind::object: {
      const auto& o = j.get_object();
      bound += 2 + 2 * o.size();
      for (const auto& [k, v] : o) {
        if (!stringBound(k.data(), k.size(), bound) || !textBound(v, bound)) return false;
      }
      return true;
    }
    case boost::json::kind::double_:
      bound += 32;  // the longest a double is written ("-2.2250738585072014E-308"), or null
      return true;
    default:
      bound += 20;  // null, a bool, or an integer
      return true;
  }
}

}  // namespace

struct ValueAccess {
  static const Json& json(const Value& v) { return std::get<Json>(v.v_); }
};

std::size_t detail::checkedEncodedBound(const Value& value) {
  if (value.type() != Value::Type::kJson) return value.encode().size();
  const Json& j = ValueAccess::json(value);
  std::size_t bound = 1;  // the tag
  if (!textBound(j, bound)) {
    std::string where;
    checkJsonText(j, where);
  }
  return bound;
}

void detail::encodeChecked(const Value& value, std::string& out) {
  if (value.type() != Value::Type::kJson) {
    out = value.encode();
    return;
  }
  out.clear();
  out.push_back(static_cast<char>(kTagJson));
  detail::appendJson(ValueAccess::json(value), out);
}

std::string detail::encodeSized(const Value& value, std::size_t sizeHint) {
  if (value.type() != Value::Type::kJson) return value.encode();
  std::string out;
  // A little over the hint: a value put back after a change is usually a little larger.
  out.reserve(sizeHint + sizeHint / 16 + 64);
  out.push_back(static_cast<char>(kTagJson));
  encodeJsonText(ValueAccess::json(value), out);
  // The cache keeps it: a poor hint (a first put, a value that shrank) must not leave it holding
  // up to twice its size.
  if (out.capacity() > out.size() + out.size() / 8 + 64) out.shrink_to_fit();
  return out;
}

Value::Value(const Json& j) {
  switch (j.kind()) {
    case boost::json::kind::null:
      break;
    case boost::json::kind::bool_:
      v_ = j.get_bool();
      break;
    case boost::json::kind::int64:
      v_ = j.get_int64();
      break;
    case boost::json::kind::uint64:
      if (j.get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        v_ = static_cast<std::int64_t>(j.get_uint64());
      } else {
        // Too large for int64; a double keeps the magnitude, as JavaScript would.
        v_ = static_cast<double>(j.get_uint64());
      }
      break;
    case boost::json::kind::double_:
      v_ = j.get_double();
      break;
    case boost::json::kind::string:
      v_ = std::string(j.get_string());
      break;
    case boost::json::kind::array:
    case boost::json::kind::object:
      v_ = j;
      break;
  }
}

Value::Value(Json&& j) {
  if (j.is_array() || j.is_object()) {
    v_ = std::move(j);
  } else {
    *this = Value(static_cast<const Json&>(j));
  }
}

std::int64_t Value::asInt() const {
  switch (type()) {
    case Type::kInt:
      return std::get<std::int64_t>(v_);
    case Type::kDouble: {
      double d = std::get<double>(v_);
      // 2^63 is exactly representable; every double below it and at least -2^63 fits.
      constexpr double kLimit = 9223372036854775808.0;
      if (std::trunc(d) == d && d >= -kLimit && d < kLimit) return static_cast<std::int64_t>(d);
      throw Error(ErrorCode::kInvalidArgument, "stored value is not an integer");
    }
    default:
      throw Error(ErrorCode::kInvalidArgument, "stored value is not a number");
  }
}

double Value::asDouble() const {
  switch (type()) {
    case Type::kInt:
      return static_cast<double>(std::get<std::int64_t>(v_));
    case Type::kDouble:
      return std::get<double>(v_);
    default:
      throw Error(ErrorCode::kInvalidArgument, "stored value is not a number");
  }
}

Json Value::toJson() const {
  switch (type()) {
    case Type::kNull:
      return nullptr;
    case Type::kBool:
      return std::get<bool>(v_);
    case Type::kInt:
      return std::get<std::int64_t>(v_);
    case Type::kDouble:
      return std::get<double>(v_);
    case Type::kString:
      return Json(std::get<std::string>(v_));
    case Type::kBytes: {
      boost::json::array a;
      const std::string& data = std::get<Bytes>(v_).data;
      a.reserve(data.size());
      for (char c : data) a.emplace_back(static_cast<std::int64_t>(static_cast<unsigned char>(c)));
      return a;
    }
    case Type::kJson:
      return std::get<Json>(v_);
  }
  return nullptr;
}

std::string Value::encode() const {
  std::string out;
  switch (type()) {
    case Type::kNull:
      out.push_back(static_cast<char>(kTagNull));
      break;
    case Type::kBool:
      out.push_back(static_cast<char>(std::get<bool>(v_) ? kTagTrue : kTagFalse));
      break;
    case Type::kInt:
      out.reserve(9);
      out.push_back(static_cast<char>(kTagInt));
      putLe64(out, static_cast<std::uint64_t>(std::get<std::int64_t>(v_)));
      break;
    case Type::kDouble:
      out.reserve(9);
      out.push_back(static_cast<char>(kTagDouble));
      putLe64(out, std::bit_cast<std::uint64_t>(std::get<double>(v_)));
      break;
    case Type::kString: {
      const std::string& s = std::get<std::string>(v_);
      // A string is text, as in JavaScript; raw bytes have their own type.
      if (!detail::validUtf8(s)) {
        throw Error(ErrorCode::kInvalidArgument, "string is not valid UTF-8 (store bytes as durable::Bytes)");
      }
      out.reserve(1 + s.size());
      out.push_back(static_cast<char>(kTagString));
      out += s;
      break;
    }
    case Type::kBytes: {
      const std::string& s = std::get<Bytes>(v_).data;
      out.reserve(1 + s.size());
      out.push_back(static_cast<char>(kTagBytes));
      out += s;
      break;
    }
    case Type::kJson:
      out.push_back(static_cast<char>(kTagJson));
      encodeJsonText(std::get<Json>(v_), out);
      break;
  }
  return out;
}

Value Value::decode(std::string_view encoded) {
  if (encoded.empty()) corrupt("empty");
  auto tag = static_cast<unsigned char>(encoded.front());
  std::string_view payload = encoded.substr(1);
  auto noPayload = [&] {
    if (!payload.empty()) corrupt("unexpected payload after tag " + std::to_string(tag));
  };
  switch (tag) {
    case kTagNull:
      noPayload();
      return Value();
    case kTagFalse:
      noPayload();
      return Value(false);
    case kTagTrue:
      noPayload();
      return Value(true);
    case kTagInt:
    case kTagDouble: {
      if (payload.size() != 8) corrupt("number payload of " + std::to_string(payload.size()) + " bytes");
      std::uint64_t bits = getLe64(payload);
      if (tag == kTagInt) return Value(static_cast<std::int64_t>(bits));
      return Value(std::bit_cast<double>(bits));
    }
    case kTagString:
      // encode() never writes such a string; one that is here came from elsewhere, and
      // handing it on would put bytes that are not text into a response or a text frame.
      if (!detail::validUtf8(payload)) corrupt("string is not valid UTF-8");
      return Value(std::string(payload));
    case kTagBytes:
      return Value(Bytes{std::string(payload)});
    case kTagJson: {
      // parseJson, not boost::json::parse: it reads doubles back exactly.
      Json j;
      try {
        j = parseJson(payload);
      } catch (const Error& e) {
        corrupt(e.what());  // "invalid JSON: ..."
      }
      // Only arrays and objects are written with this tag; a scalar here still has one
      // sensible reading, so take it rather than lose the value.
      return Value(std::move(j));
    }
    default:
      corrupt("unknown tag " + std::to_string(tag));
  }
}

namespace detail {

std::optional<Value> decodeRepairingText(std::string_view encoded) {
  if (encoded.empty()) return std::nullopt;
  const auto tag = static_cast<unsigned char>(encoded.front());
  if (tag != kTagString && tag != kTagJson) return std::nullopt;
  if (validUtf8(encoded.substr(1))) return std::nullopt;
  std::string repaired(1, encoded.front());
  repaired += toWellFormedUtf8(std::string(encoded.substr(1)));
  try {
    return Value::decode(repaired);
  } catch (const Error&) {
    return std::nullopt;  // damaged beyond its text: the caller reports the original error
  }
}

}  // namespace detail

}  // namespace durable
