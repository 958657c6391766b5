// Request ids: each request gets one, from its x-request-id header when that is a sane token,
// else made here; it is returned in the response's x-request-id, put on the stub calls and RPC
// the request causes, and printed with every log line written on its behalf. A W3C traceparent
// is passed along the same way, untouched.
#pragma once

#include <durable/http.h>
#include <durable/task.h>

#include <optional>
#include <string_view>

namespace durable::detail {

inline constexpr std::string_view kRequestIdHeader = "x-request-id";
inline constexpr std::string_view kTraceparentHeader = "traceparent";

// 1 to 64 characters of [A-Za-z0-9._:/+=@-]: what fits in a log line and a header unescaped.
bool validRequestId(std::string_view id);
// version-traceid-parentid-flags in lowercase hex (55 characters), ids not all zero, version
// not ff.
bool validTraceparent(std::string_view traceparent);

// The tag of a request whose headers carry `id` and `traceparent` (either may be absent): the
// id when valid, else a new one (32 random hex digits); the traceparent when valid.
RequestTag makeRequestTag(std::optional<std::string_view> id, std::optional<std::string_view> traceparent);

// The x-request-id and traceparent of `headers`, found in one pass over its lower-case names;
// a header given more than once is as good as absent (its joined value is no id).
struct TagHeaders {
  std::optional<std::string_view> id, traceparent;
  bool idRepeated = false;
};
TagHeaders findTagHeaders(const Headers& headers);
// The tag of a call to an object: the request's own x-request-id when it has a valid one, else
// `inherited` (the caller's), else a new id; the traceparent likewise.
RequestTag requestTagFor(const Headers& headers, const RequestTag& inherited);

inline std::string_view requestIdOf(const RequestTag& tag) { return {tag.id, tag.idSize}; }
inline std::string_view traceparentOf(const RequestTag& tag) {
  return tag.hasTraceparent ? std::string_view(tag.traceparent, RequestTag::kTraceparent) : std::string_view();
}

}  // namespace durable::detail
