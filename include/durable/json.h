// durable/json.h: JSON as objects and Workers see it (Boost.JSON values).
#pragma once

#include <boost/json/value.hpp>

#include <string>
#include <string_view>

namespace durable {

using Json = boost::json::value;

// A JSON text of `v`, as JSON.stringify gives it.
std::string stringify(const Json& v);
// Parses JSON text; throws durable::Error(kInvalidArgument) with the parser's message.
Json parseJson(std::string_view text);

}  // namespace durable
