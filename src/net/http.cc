#include <durable/error.h>
#include <durable/http.h>

#include "net/url_path.h"
#include "base/utf8.h"

#include <boost/url/parse.hpp>

#include <algorithm>
#include <cctype>
#include <exception>

namespace durable {

namespace {

// ASCII only, as header names are; inline arithmetic rather than a call to tolower() per
// character, which was most of what appending a header cost.
char lowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lowerAscii(c);
  return out;
}

// The Fetch API strips leading and trailing HTTP whitespace from header values.
std::string_view trimValue(std::string_view v) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!v.empty() && ws(v.front())) v.remove_prefix(1);
  while (!v.empty() && ws(v.back())) v.remove_suffix(1);
  return v;
}

bool equalsLower(std::string_view stored, std::string_view name) {
  if (stored.size() != name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (stored[i] != lowerAscii(name[i])) return false;
  }
  return true;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding: '+' is a space, bad escapes stay literal, and
// bytes that are not UTF-8 become U+FFFD as in URLSearchParams: a name or value is text that
// may go straight into storage or a text frame, where such bytes have no meaning.
std::string formDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < s.size() && hexValue(s[i + 1]) >= 0 && hexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexValue(s[i + 1]) * 16 + hexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return detail::toWellFormedUtf8(std::move(out));
}

bool isStandardMethod(std::string_view upper) {
  return upper == "GET" || upper == "POST" || upper == "PUT" || upper == "DELETE" || upper == "HEAD" ||
         upper == "OPTIONS" || upper == "PATCH";
}

constexpr std::string_view kTextPlain = "text/plain;charset=UTF-8";

}  // namespace

Headers::Headers(std::initializer_list<std::pair<std::string, std::string>> init) {
  for (const auto& [name, value] : init) append(name, value);
}

std::optional<std::string> Headers::get(std::string_view name) const {
  std::optional<std::string> out;
  for (const auto& [n, v] : entries_) {
    if (!equalsLower(n, name)) continue;
    if (out) {
      *out += ", ";
      *out += v;
    } else {
      out = v;
    }
  }
  return out;
}

bool Headers::has(std::string_view name) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const auto& e) { return equalsLower(e.first, name); });
}

void Headers::set(std::string_view name, std::string_view value) {
  // Keep the position of the first occurrence so iteration order stays stable, as in Fetch.
  std::string key = lower(name);
  auto first = std::find_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e.first == key; });
  if (first == entries_.end()) {
    entries_.emplace_back(std::move(key), std::string(trimValue(value)));
    return;
  }
  first->second = std::string(trimValue(value));
  auto idx = static_cast<std::size_t>(first - entries_.begin());
  entries_.erase(std::remove_if(entries_.begin() + static_cast<std::ptrdiff_t>(idx) + 1, entries_.end(),
                                [&](const auto& e) { return e.first == key; }),
                 entries_.end());
}

void Headers::append(std::string_view name, std::string_view value) {
  entries_.emplace_back(lower(name), std::string(trimValue(value)));
}

void Headers::remove(std::string_view name) {
  std::string key = lower(name);
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e.first == key; }),
                 entries_.end());
}

std::vector<std::string> SearchParams::getAll(std::string_view name) const {
  std::vector<std::string> out;
  std::string_view q = query_;
  if (!q.empty() && q.front() == '?') q.remove_prefix(1);
  while (true) {
    auto amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    if (!pair.empty()) {
      auto eq = pair.find('=');
      std::string key = formDecode(pair.substr(0, eq));
      if (key == name) out.push_back(eq == std::string_view::npos ? std::string() : formDecode(pair.substr(eq + 1)));
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return out;
}

std::optional<std::string> SearchParams::get(std::string_view name) const {
  auto all = getAll(name);
  if (all.empty()) return std::nullopt;
  return std::move(all.front());
}

namespace {

bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isHex(char c) { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
// RFC 3986 pchar less pct-encoded: unreserved, sub-delims, ':' and '@'.
bool isPchar(char c) {
  if (isAlpha(c) || isDigit(c)) return true;
  switch (c) {
    case '-': case '.': case '_': case '~': case '!': case '$': case '&': case '\'': case '(': case ')':
    case '*': case '+': case ',': case ';': case '=': case ':': case '@':
      return true;
    default:
      return false;
  }
}

}  // namespace

// Most URLs a Worker sees are plain ("http://do/increment", "http://127.0.0.1:8787/a?b=c"):
// those are split here in one pass. Anything unusual (userinfo, IPv6, fragments, dot
// segments) goes to Boost.URL's full parser.
bool URL::parseSimple() {
  const std::string_view h = href_;
  std::size_t i = 0;
  if (h.empty() || !isAlpha(h[0])) return false;
  while (i < h.size() && (isAlpha(h[i]) || isDigit(h[i]) || h[i] == '+' || h[i] == '-' || h[i] == '.')) ++i;
  if (h.substr(i, 3) != "://") return false;
  scheme_ = {0, static_cast<std::uint32_t>(i)};
  i += 3;
  const std::size_t hostAt = i;
  while (i < h.size() && (isAlpha(h[i]) || isDigit(h[i]) || h[i] == '-' || h[i] == '.')) ++i;
  if (i == hostAt) return false;
  hostname_ = {static_cast<std::uint32_t>(hostAt), static_cast<std::uint32_t>(i - hostAt)};
  port_ = {static_cast<std::uint32_t>(i), 0};
  if (i < h.size() && h[i] == ':') {
    const std::size_t portAt = ++i;
    while (i < h.size() && isDigit(h[i])) ++i;
    if (i - portAt > 5) return false;
    port_ = {static_cast<std::uint32_t>(portAt), static_cast<std::uint32_t>(i - portAt)};
  }
  host_ = {static_cast<std::uint32_t>(hostAt), static_cast<std::uint32_t>(i - hostAt)};
  const std::size_t pathAt = i;
  if (i < h.size() && h[i] != '/' && h[i] != '?') return false;
  std::size_t segment = i;
  for (; i < h.size() && h[i] != '?'; ++i) {
    const char c = h[i];
    if (c == '/') {
      const auto seg = h.substr(segment, i - segment);
      if (detail::hasDotSegments(seg)) return false;
      segment = i;
    } else if (c == '%') {
      if (i + 2 >= h.size() || !isHex(h[i + 1]) || !isHex(h[i + 2])) return false;
    } else if (!isPchar(c)) {
      return false;
    }
  }
  const auto last = h.substr(segment, i - segment);
  if (detail::hasDotSegments(last)) return false;
  path_ = {static_cast<std::uint32_t>(pathAt), static_cast<std::uint32_t>(i - pathAt)};
  query_ = {static_cast<std::uint32_t>(i), 0};
  if (i < h.size()) {
    const std::size_t queryAt = ++i;
    for (; i < h.size(); ++i) {
      const char c = h[i];
      if (c == '%') {
        if (i + 2 >= h.size() || !isHex(h[i + 1]) || !isHex(h[i + 2])) return false;
      } else if (!isPchar(c) && c != '/' && c != '?') {
        return false;
      }
    }
    query_ = {static_cast<std::uint32_t>(queryAt), static_cast<std::uint32_t>(i - queryAt)};
  }
  return true;
}

namespace detail {
namespace {
bool isDotSegment(std::string_view seg) { return seg == "." || seg == "%2e" || seg == "%2E"; }
bool isDotDotSegment(std::string_view seg) {
  if (seg.size() != 2 && seg.size() != 4 && seg.size() != 6) return false;
  std::string l(seg);
  for (char& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return l == ".." || l == ".%2e" || l == "%2e." || l == "%2e%2e";
}
}  // namespace

bool hasDotSegments(std::string_view path) {
  std::size_t at = 0;
  while (at < path.size()) {
    const auto next = path.find('/', at + 1);
    const auto seg = path.substr(at + 1, next == std::string_view::npos ? std::string_view::npos : next - at - 1);
    if (isDotSegment(seg) || isDotDotSegment(seg)) return true;
    if (next == std::string_view::npos) break;
    at = next;
  }
  return false;
}

std::string removeDotSegments(std::string_view path) {
  std::vector<std::string_view> segments;
  std::string_view rest = path.empty() ? path : path.substr(1);
  bool trailingSlash = false;
  while (true) {
    const auto slash = rest.find('/');
    const std::string_view seg = rest.substr(0, slash);
    const bool last = slash == std::string_view::npos;
    if (isDotDotSegment(seg)) {
      if (!segments.empty()) segments.pop_back();
      trailingSlash = last;
    } else if (isDotSegment(seg)) {
      trailingSlash = last;
    } else {
      segments.push_back(seg);
      trailingSlash = false;
    }
    if (last) break;
    rest.remove_prefix(slash + 1);
  }
  std::string out;
  for (auto seg : segments) {
    out += '/';
    out += seg;
  }
  if (out.empty() || trailingSlash) out += '/';
  return out;
}

namespace {
bool startsEscape(std::string_view s, std::size_t i) {
  return s[i] == '%' && i + 2 < s.size() && isHex(s[i + 1]) && isHex(s[i + 2]);
}
bool keptInTarget(std::string_view s, std::size_t i, bool query) {
  return isPchar(s[i]) || s[i] == '/' || (query && s[i] == '?') || startsEscape(s, i);
}
std::string encodeForTarget(std::string_view in, bool query) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (keptInTarget(in, i, query)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}
}  // namespace

std::string normalizeTarget(std::string_view target) {
  target = target.substr(0, target.find('#'));
  const auto queryAt = target.find('?');
  const std::string_view path = target.substr(0, queryAt);
  // Almost every target is already clean: one scan, one copy.
  bool clean = !hasDotSegments(path);
  for (std::size_t i = 0; i < target.size() && clean; ++i) clean = keptInTarget(target, i, i >= path.size());
  if (clean) return std::string(target);
  std::string out = encodeForTarget(path, false);
  if (hasDotSegments(out)) out = removeDotSegments(out);
  if (queryAt != std::string_view::npos) {
    out += '?';
    out += encodeForTarget(target.substr(queryAt + 1), true);
  }
  return out;
}

bool validAuthority(std::string_view h) {
  std::size_t i = 0;
  if (!h.empty() && h.front() == '[') {
    const auto close = h.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (char c : h.substr(1, close - 1)) {
      if (!isHex(c) && c != ':' && c != '.') return false;
    }
    i = close + 1;
  } else {
    // reg-name: unreserved, sub-delims and pct-encoded, which is pchar less ':' and '@'.
    for (; i < h.size() && h[i] != ':'; ++i) {
      if (h[i] == '@' || (!isPchar(h[i]) && h[i] != '%')) return false;
    }
  }
  if (i == h.size()) return true;
  if (h[i] != ':') return false;
  for (char c : h.substr(i + 1)) {
    if (!isDigit(c)) return false;
  }
  return true;
}
}  // namespace detail

URL::URL(std::string_view href) : href_(href) {
  // As the URL standard does for http(s): `new URL("HTTP://Example.COM/").host` is
  // "example.com", however the client spelled it in an absolute-form target or Host.
  auto lowerInPlace = [this](Span s) {
    for (std::uint32_t i = s.at; i < s.at + s.size; ++i) {
      const char c = href_[i];
      if (c >= 'A' && c <= 'Z') href_[i] = static_cast<char>(c - 'A' + 'a');
    }
  };
  if (href_.size() < (1u << 30) && parseSimple()) {
    lowerInPlace(scheme_);
    lowerInPlace(hostname_);
    return;
  }
  auto parsed = boost::urls::parse_uri(boost::core::string_view(href.data(), href.size()));
  if (!parsed) throw Error(ErrorCode::kInvalidArgument, "invalid URL: " + std::string(href));
  const auto& u = *parsed;
  // The parts are views into `href`, and so into href_ at the same offsets.
  auto span = [&](boost::core::string_view part) {
    if (part.empty()) return Span{};
    return Span{static_cast<std::uint32_t>(part.data() - href.data()), static_cast<std::uint32_t>(part.size())};
  };
  // As the URL standard does (`new URL("http://h/a/../b").pathname` is "/b"): the href is
  // rebuilt without them and parsed again.
  if (detail::hasDotSegments(u.encoded_path())) {
    std::string rebuilt(href.substr(0, static_cast<std::size_t>(u.encoded_path().data() - href.data())));
    rebuilt += detail::removeDotSegments(u.encoded_path());
    rebuilt += href.substr(static_cast<std::size_t>(u.encoded_path().data() + u.encoded_path().size() - href.data()));
    *this = URL(rebuilt);
    return;
  }
  scheme_ = span(u.scheme());
  host_ = span(u.encoded_host_and_port());
  hostname_ = span(u.encoded_host());
  port_ = span(u.port());
  path_ = span(u.encoded_path());
  query_ = u.has_query() ? span(u.encoded_query()) : Span{};
  lowerInPlace(scheme_);
  lowerInPlace(hostname_);
}

std::string URL::pathname() const { return std::string(pathnameView()); }

std::string_view URL::pathnameView() const {
  const std::string_view p = part(path_);
  return p.empty() ? std::string_view("/") : p;
}

std::string URL::search() const {
  // As in JavaScript, a bare "?" reads as no query at all.
  if (query_.size == 0) return "";
  std::string out;
  out.reserve(query_.size + 1);
  out += '?';
  out += part(query_);
  return out;
}

HeadersInit::HeadersInit(std::initializer_list<Pair> pairs) : count_(pairs.size()) {
  if (pairs.size() > kMaxPairs) {
    throw Error(ErrorCode::kInvalidArgument, "a braced list of headers holds at most " + std::to_string(kMaxPairs) +
                                                 " pairs; build a durable::Headers for more");
  }
  std::copy(pairs.begin(), pairs.end(), pairs_.begin());
}

void HeadersInit::appendTo(Headers& out) const {
  if (headers_) {
    for (const auto& [name, value] : headers_->entries()) out.append(name, value);
  }
  for (std::size_t i = 0; i < count_; ++i) out.append(pairs_[i].first, pairs_[i].second);
}

namespace {
constexpr std::string_view kRedirectModes[] = {"follow", "manual", "error"};
}

std::string_view Request::redirect() const { return kRedirectModes[redirect_]; }

Request::Request(std::string url, RequestInit init) : method_(init.method.view()), url_(std::move(url)) {
  const std::string_view mode = init.redirect.view();
  if (mode != "follow") {
    if (mode == "manual") {
      redirect_ = 1;
    } else if (mode == "error") {
      redirect_ = 2;
    } else {
      throw Error(ErrorCode::kInvalidArgument,
                  "RequestInit.redirect must be \"follow\", \"manual\" or \"error\", not \"" + std::string(mode) + "\"");
    }
  }
  std::string upper = method_;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (isStandardMethod(upper)) method_ = std::move(upper);
  init.headers.appendTo(headers_);
  if (init.body) {
    body_ = init.body->str();
    has_body_ = true;
    if (!headers_.has("content-type")) headers_.set("content-type", kTextPlain);
  }
}

Response::Response(std::nullptr_t, ResponseInit init)
    : status_(init.status), status_text_(init.statusText.view()) {
  init.headers.appendTo(headers_);
  if (init.webSocket) web_socket_ = *init.webSocket.get();
}

Response::Response(std::string body, ResponseInit init)
    : status_(init.status), status_text_(init.statusText.view()), body_(std::move(body)), has_body_(true) {
  init.headers.appendTo(headers_);
  if (init.webSocket) web_socket_ = *init.webSocket.get();
  if (!headers_.has("content-type")) headers_.set("content-type", kTextPlain);
}

Response Response::json(const Json& value, ResponseInit init) {
  Response response(nullptr, init);
  response.body_ = stringify(value);
  response.has_body_ = true;
  if (!response.headers_.has("content-type")) response.headers_.set("content-type", "application/json");
  return response;
}

}  // namespace durable
