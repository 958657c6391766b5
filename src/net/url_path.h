// Path normalization shared by the HTTP server (request-targets) and durable::URL.
#pragma once

#include <string>
#include <string_view>

namespace durable::detail {

// RFC 3986 5.2.4 on a percent-encoded absolute path ("/a/./b/../c" -> "/a/c"), with "%2e"
// counted as a dot, as the URL standard does. A trailing "." or ".." segment leaves its slash.
std::string removeDotSegments(std::string_view path);
// Whether removeDotSegments would change `path`.
bool hasDotSegments(std::string_view path);

}  // namespace durable::detail
