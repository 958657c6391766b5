// UTF-8 validation, for the places where JavaScript would hold text (storage keys, route
// parameters): bytes that are not UTF-8 could never have come from a JS string.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace durable::detail {

inline bool validUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    // Eight ASCII bytes at a time: most text is ASCII, and every stored string is walked.
    while (end - p >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      if (w & 0x8080808080808080) break;
      p += 8;
    }
    if (p == end) break;
    unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n;
    unsigned min;
    unsigned cp;
    if ((c & 0xE0) == 0xC0) {
      n = 1, min = 0x80, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, min = 0x800, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, min = 0x10000, cp = c & 0x07;
    } else {
      return false;
    }
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += n + 1;
  }
  return true;
}

// The WHATWG "UTF-8 decode" that URLSearchParams and decodeURI-style URL parsing use, back to
// UTF-8: each maximal ill-formed subsequence becomes one U+FFFD, so the result is always
// valid UTF-8 and matches what a Worker would see byte for byte.
inline std::string toWellFormedUtf8(std::string s) {
  if (validUtf8(s)) return s;
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size() + 8);
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    int need;
    unsigned char lo = 0x80, hi = 0xBF;  // the range the second byte must fall in
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
    } else {
      out += kReplacement;
      ++i;
      continue;
    }
    std::size_t j = i + 1;
    int seen = 0;
    for (; seen < need && j < n; ++seen, ++j) {
      const unsigned char b = p[j];
      const unsigned char bl = seen == 0 ? lo : 0x80, bh = seen == 0 ? hi : 0xBF;
      if (b < bl || b > bh) break;
    }
    if (seen == need) {
      out.append(std::string_view(s).substr(i, j - i));
    } else {
      // The bytes read so far are one maximal subpart; the one that broke it starts afresh.
      out += kReplacement;
    }
    i = j;
  }
  return out;
}

}  // namespace durable::detail
