// How a route's pattern meets a request's path: what Worker's routing uses, on its own for the
// router's unit tests and fuzz target.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace durable::detail {

// Whether `pattern` matches `path` (a percent-encoded pathname); fills `params` decoded as
// Context::param() gives them (bytes that are not UTF-8 become U+FFFD).
bool matchRoute(std::string_view pattern, std::string_view path,
                std::map<std::string, std::string, std::less<>>* params);

}  // namespace durable::detail
