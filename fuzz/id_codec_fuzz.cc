// idFromString: detail::parseId on arbitrary text, under each jurisdiction restriction.
//
// Input: byte 0 picks the required jurisdiction ("", "eu", "fedramp", or an invalid name);
// the rest is the string handed to parseId. A forged MAC is out of reach of a fuzzer, so each
// input is also used as a name: the ID made from it must parse back to itself, and the same
// text with one digit changed must not parse.
#include "ids/id_codec.h"

#include <durable/error.h>
#include <durable/id.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

const durable::detail::NamespaceKey kKey = [] {
  durable::detail::NamespaceKey k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(i * 7 + 3);
  return k;
}();

constexpr std::string_view kJurisdictions[] = {"", "eu", "fedramp", "mars"};

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant failed: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view required = kJurisdictions[data[0] % 4];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  // 1. Arbitrary text: a valid ID or Error(kInvalidArgument), nothing else.
  try {
    durable::ObjectId id = durable::detail::parseId(kKey, required, text);
    // Accepted: it prints back as the same digits, lowercased.
    std::string lower(text);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    check(id.toString() == lower, "parsed ID does not print as its input");
    check(durable::detail::verifiedUnder(id, kKey), "parsed ID not marked verified");
  } catch (const durable::Error& e) {
    check(e.code() == durable::ErrorCode::kInvalidArgument, "parseId threw another code");
  }

  // 2. The input as a name: make, print, parse back; a changed digit is rejected.
  std::string_view jurisdiction = kJurisdictions[(data[0] >> 2) % 3];
  durable::ObjectId made = durable::detail::makeNamedId(kKey, jurisdiction, text);
  const std::string hex = made.toString();
  check(hex.size() == 64, "ID is not 64 digits");
  const bool allowed = required == "mars" ? false : (required.empty() || required == jurisdiction);
  try {
    durable::ObjectId back = durable::detail::parseId(kKey, required, hex);
    check(allowed, "ID accepted under another jurisdiction");
    check(back == made, "ID does not round-trip");
    check(back.jurisdiction() == jurisdiction, "jurisdiction lost");
  } catch (const durable::Error& e) {
    check(!allowed, "a made ID was rejected");
    check(e.code() == durable::ErrorCode::kInvalidArgument, "parseId threw another code");
  }
  std::string tampered = hex;
  const std::size_t pos = data[size - 1] % 64;
  tampered[pos] = tampered[pos] == '0' ? '1' : '0';
  try {
    durable::detail::parseId(kKey, "", tampered);
    check(false, "a tampered ID was accepted");
  } catch (const durable::Error& e) {
    check(e.code() == durable::ErrorCode::kInvalidArgument, "parseId threw another code");
  }
  return 0;
}
