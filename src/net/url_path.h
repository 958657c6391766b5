// URL pieces shared by the HTTP server (request-targets, Host) and durable::URL.
#pragma once

#include <string>
#include <string_view>

namespace durable::detail {

// RFC 3986 5.2.4 on a percent-encoded absolute path ("/a/./b/../c" -> "/a/c"), with "%2e"
// counted as a dot, as the URL standard does. A trailing "." or ".." segment leaves its slash.
std::string removeDotSegments(std::string_view path);
// Whether removeDotSegments would change `path`.
bool hasDotSegments(std::string_view path);

// What a Worker's `new URL(request.url)` makes of an origin-form request-target ("/..."), as
// far as routing can tell: bytes a URL may not hold are percent-encoded (a '%' that starts no
// escape included), "." and ".." segments are resolved, a fragment is dropped. Cloudflare
// serves "/a|b", "/%zz" or "/./x" this way; a strict RFC 3986 parser would refuse them.
std::string normalizeTarget(std::string_view target);

// RFC 3986 authority without userinfo: reg-name or IPv4, or an IPv6 literal in brackets, then
// an optional ":port". Empty is allowed (HTTP/1.0 without Host).
bool validAuthority(std::string_view authority);

}  // namespace durable::detail
