#include "base/request_tag.h"

#include <algorithm>
#include <array>
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
  static constexpr auto kAllowed = [] {
    std::array<bool, 256> allowed{};
    for (int c = 0; c < 256; ++c) {
      allowed[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    }
    for (char c : std::string_view("._:/+=@-")) allowed[static_cast<unsigned char>(c)] = true;
    return allowed;
  }();
  if (id.empty() || id.size() > RequestTag::kMaxId) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return kAllowed[static_cast<unsigned char>(c)]; });
}

bool validTraceparent(std::string_view t) {
  if (t.size() != RequestTag::kTraceparent || t[2] != '-' || t[35] != '-' || t[52] != '-') return false;
  const auto version = t.substr(0, 2), trace = t.substr(3, 32), parent = t.substr(36, 16), flags = t.substr(53, 2);
  return lowerHex(version) && version != "ff" && lowerHex(trace) && !allZero(trace) && lowerHex(parent) &&
         !allZero(parent) && lowerHex(flags);
}

TagHeaders findTagHeaders(const Headers& headers) {
  TagHeaders found;
  bool traceRepeated = false;
  for (const auto& [name, value] : headers.entries()) {
    if (name == kRequestIdHeader) {
      found.idRepeated = found.id.has_value();
      found.id = value;
    } else if (name == kTraceparentHeader) {
      traceRepeated = found.traceparent.has_value();
      found.traceparent = value;
    }
  }
  if (found.idRepeated) found.id.reset();
  if (traceRepeated) found.traceparent.reset();
  return found;
}

RequestTag requestTagFor(const Headers& headers, const RequestTag& inherited) {
  const TagHeaders given = findTagHeaders(headers);
  const bool ownId = given.id && validRequestId(*given.id);
  const bool ownTrace = given.traceparent && validTraceparent(*given.traceparent);
  if (!ownId && !ownTrace && inherited.idSize) return inherited;
  RequestTag tag = ownId || !inherited.idSize ? makeRequestTag(given.id, std::nullopt) : inherited;
  if (ownTrace) {
    std::memcpy(tag.traceparent, given.traceparent->data(), RequestTag::kTraceparent);
    tag.hasTraceparent = true;
  }
  return tag;
}

RequestTag makeRequestTag(std::optional<std::string_view> id, std::optional<std::string_view> traceparent) {
  RequestTag tag;
  if (id && validRequestId(*id)) {
    std::memcpy(tag.id, id->data(), id->size());
    tag.idSize = static_cast<std::uint8_t>(id->size());
  } else {
    // Unique enough across servers and restarts to find one request's lines in merged logs;
    // not a secret, so splitmix64 over a random seed (a tenth of mt19937_64's cost) will do.
    thread_local std::uint64_t state = (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
    static constexpr char kDigits[] = "0123456789abcdef";
    for (int half = 0; half < 2; ++half) {
      std::uint64_t bits = (state += 0x9e3779b97f4a7c15ULL);
      bits = (bits ^ (bits >> 30)) * 0xbf58476d1ce4e5b9ULL;
      bits = (bits ^ (bits >> 27)) * 0x94d049bb133111ebULL;
      bits ^= bits >> 31;
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
