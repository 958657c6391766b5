#include "base/request_tag.h"

#include <algorithm>
#include <cstring>
#include <random>

namespace durable::detail {

namespace {

bool lowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool allZero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

}  // namespace

bool validRequestId(std::string_view id) {
  if (id.empty() || id.size() > RequestTag::kMaxId) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::strchr("._:/+=@-", c) != nullptr;
  });
}

bool validTraceparent(std::string_view t) {
  if (t.size() != RequestTag::kTraceparent || t[2] != '-' || t[35] != '-' || t[52] != '-') return false;
  const auto version = t.substr(0, 2), trace = t.substr(3, 32), parent = t.substr(36, 16), flags = t.substr(53, 2);
  return lowerHex(version) && version != "ff" && lowerHex(trace) && !allZero(trace) && lowerHex(parent) &&
         !allZero(parent) && lowerHex(flags);
}

RequestTag makeRequestTag(std::optional<std::string_view> id, std::optional<std::string_view> traceparent) {
  RequestTag tag;
  if (id && validRequestId(*id)) {
    std::memcpy(tag.id, id->data(), id->size());
    tag.idSize = static_cast<std::uint8_t>(id->size());
  } else {
    // Unique enough across servers and restarts to find one request's lines in merged logs.
    thread_local std::mt19937_64 rng{std::random_device{}()};
    static constexpr char kDigits[] = "0123456789abcdef";
    for (int half = 0; half < 2; ++half) {
      std::uint64_t bits = rng();
      for (int i = 0; i < 16; ++i, bits >>= 4) tag.id[half * 16 + i] = kDigits[bits & 15];
    }
    tag.idSize = 32;
  }
  if (traceparent && validTraceparent(*traceparent)) {
    std::memcpy(tag.traceparent, traceparent->data(), RequestTag::kTraceparent);
    tag.hasTraceparent = true;
  }
  return tag;
}

}  // namespace durable::detail
