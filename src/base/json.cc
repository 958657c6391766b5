// durable/json.h: JSON that reads back what it wrote, as JSON.parse and JSON.stringify do.
#include <durable/error.h>
#include <durable/json.h>

#include "base/json_text.h"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/serializer.hpp>
#include <boost/json/value_stack.hpp>

#include <charconv>
#include <cmath>
#include <exception>
#include <string>

namespace durable {

namespace {
bool hasNonFinite(const Json& v) {
  switch (v.kind()) {
    case boost::json::kind::double_:
      return !std::isfinite(v.get_double());
    case boost::json::kind::array:
      for (const Json& e : v.get_array()) {
        if (hasNonFinite(e)) return true;
      }
      return false;
    case boost::json::kind::object:
      for (const auto& e : v.get_object()) {
        if (hasNonFinite(e.value())) return true;
      }
      return false;
    default:
      return false;
  }
}

void nullNonFinite(Json& v) {
  if (v.is_double() && !std::isfinite(v.get_double())) {
    v = nullptr;
  } else if (v.is_array()) {
    for (Json& e : v.get_array()) nullNonFinite(e);
  } else if (v.is_object()) {
    for (auto& e : v.get_object()) nullNonFinite(e.value());
  }
}
}  // namespace

// Boost.JSON writes an infinite or NaN double as Infinity or NaN, which no JSON parser (its
// own included) reads back: a stored value holding one could never be read again. JSON.stringify
// writes null for them, and so do we. (Numbers such as 1e400 parse as Infinity.)
std::string stringify(const Json& v) {
  std::string out;
  detail::appendJson(v, out);
  return out;
}

void detail::appendJson(const Json& v, std::string& out) {
  Json copy;
  const Json* what = &v;
  if (hasNonFinite(v)) {
    copy = v;
    nullNonFinite(copy);
    what = &copy;
  }
  // Through a small buffer into `out`: boost::json::serialize() grows its own string (zeroing
  // what it adds) and the caller copies it again, which costs as much as the writing for a
  // large value.
  char buf[16384];
  boost::json::serializer sr;
  sr.reset(what);
  while (!sr.done()) out.append(sr.read(buf, sizeof buf));
}

namespace {

// Boost.JSON 1.81 converts decimal numbers to double quickly but not exactly: text that the
// serializer wrote for a double can parse back as a neighbouring double, so a stored JSON value
// drifted by one ULP on every read and write. This handler builds the same value as
// boost::json::parse, but converts each double from its text with std::from_chars, which is
// exact, as JSON.parse is.
struct ExactJsonHandler {
  static constexpr std::size_t max_object_size = boost::json::object::max_size();
  static constexpr std::size_t max_array_size = boost::json::array::max_size();
  static constexpr std::size_t max_key_size = boost::json::string::max_size();
  static constexpr std::size_t max_string_size = boost::json::string::max_size();

  boost::json::value_stack st;
  std::string number;  // the current number's text, when it arrives in parts

  explicit ExactJsonHandler(boost::json::storage_ptr sp) : st(std::move(sp)) {}

  using ec_t = boost::system::error_code;
  using sv = boost::json::string_view;
  bool on_document_begin(ec_t&) { return true; }
  bool on_document_end(ec_t&) { return true; }
  bool on_object_begin(ec_t&) { return true; }
  bool on_object_end(std::size_t n, ec_t&) { return st.push_object(n), true; }
  bool on_array_begin(ec_t&) { return true; }
  bool on_array_end(std::size_t n, ec_t&) { return st.push_array(n), true; }
  bool on_key_part(sv s, std::size_t, ec_t&) { return st.push_chars(s), true; }
  bool on_key(sv s, std::size_t, ec_t&) { return st.push_key(s), true; }
  bool on_string_part(sv s, std::size_t, ec_t&) { return st.push_chars(s), true; }
  bool on_string(sv s, std::size_t, ec_t&) { return st.push_string(s), true; }
  bool on_number_part(sv s, ec_t&) { return number.append(s.data(), s.size()), true; }
  bool on_int64(std::int64_t i, sv, ec_t&) { return number.clear(), st.push_int64(i), true; }
  bool on_uint64(std::uint64_t u, sv, ec_t&) { return number.clear(), st.push_uint64(u), true; }
  bool on_double(double d, sv s, ec_t&) {
    number.append(s.data(), s.size());
    double exact = 0;
    const auto [end, err] = std::from_chars(number.data(), number.data() + number.size(), exact);
    // Out of range (1e400) keeps Boost's reading.
    if (err == std::errc() && end == number.data() + number.size()) d = exact;
    number.clear();
    st.push_double(d);
    return true;
  }
  bool on_bool(bool b, ec_t&) { return st.push_bool(b), true; }
  bool on_null(ec_t&) { return st.push_null(), true; }
  bool on_comment_part(sv, ec_t&) { return true; }
  bool on_comment(sv, ec_t&) { return true; }
};

}  // namespace

Json parseJson(std::string_view text) {
  boost::system::error_code ec;
  Json v;
  try {
    boost::json::basic_parser<ExactJsonHandler> p(boost::json::parse_options{}, boost::json::storage_ptr());
    p.handler().st.reset();
    const std::size_t n = p.write_some(false, text.data(), text.size(), ec);
    if (!ec && n < text.size()) ec = boost::json::error::extra_data;
    if (!ec) v = p.handler().st.release();
  } catch (const std::exception& e) {
    // Limits (e.g. nesting depth) may be reported by throwing on some versions.
    throw Error(ErrorCode::kInvalidArgument, std::string("invalid JSON: ") + e.what());
  }
  if (ec) throw Error(ErrorCode::kInvalidArgument, "invalid JSON: " + ec.message());
  return v;
}

}  // namespace durable
