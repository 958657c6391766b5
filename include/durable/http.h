// durable/http.h: the Fetch API's value types (Headers, URL, Request, Response).
//
// They behave as in a Worker: header names are case-insensitive, a string body without a
// content-type gets `text/plain;charset=UTF-8`, Response::json() gets `application/json`.
// All are plain values: copyable, movable, safe to hand to another shard by moving.
#pragma once

#include <durable/borrowed.h>
#include <durable/json.h>
#include <durable/websocket.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace durable {

class Headers {
 public:
  Headers() = default;
  Headers(std::initializer_list<std::pair<std::string, std::string>> init);

  // The value of `name`; several values are joined with ", " as in the Fetch API.
  std::optional<std::string> get(std::string_view name) const;
  bool has(std::string_view name) const;
  void set(std::string_view name, std::string_view value);
  void append(std::string_view name, std::string_view value);
  void remove(std::string_view name);

  // Entries in insertion order; names are stored lower-case.
  const std::vector<std::pair<std::string, std::string>>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

// The query of a URL, read as URLSearchParams does (values percent-decoded, '+' is a space,
// bytes that are not UTF-8 become U+FFFD, so names and values are always UTF-8).
class SearchParams {
 public:
  explicit SearchParams(std::string_view query) : query_(query) {}
  std::optional<std::string> get(std::string_view name) const;
  std::vector<std::string> getAll(std::string_view name) const;
  bool has(std::string_view name) const { return get(name).has_value(); }

 private:
  std::string query_;
};

class URL {
 public:
  // Throws durable::Error(kInvalidArgument) for anything that is not an absolute URL.
  explicit URL(std::string_view href);

  std::string href() const { return href_; }
  std::string protocol() const { return std::string(part(scheme_)) + ":"; }  // "http:"
  std::string host() const { return std::string(part(host_)); }             // "example.com:8080"
  std::string hostname() const { return std::string(part(hostname_)); }
  std::string port() const { return std::string(part(port_)); }
  std::string pathname() const;  // percent-encoded, as in JavaScript; "/" at least
  std::string_view pathnameView() const;  // the same without a copy; valid while this URL lives
  std::string search() const;    // "?a=1" or ""
  SearchParams searchParams() const { return SearchParams(part(query_)); }

 private:
  struct Span {
    std::uint32_t at = 0, size = 0;
  };
  std::string_view part(Span s) const { return std::string_view(href_).substr(s.at, s.size); }
  bool parseSimple();

  std::string href_;
  Span scheme_, host_, hostname_, port_, path_, query_;
};

// The headers an init names: a Headers object (copied), or a braced list of up to 8
// name/value pairs, kept here so that a named init outlives the braced list. Borrowed for
// the reason given in durable/borrowed.h.
class HeadersInit {
 public:
  using Pair = std::pair<BorrowedString, BorrowedString>;
  static constexpr std::size_t kMaxPairs = 8;

  HeadersInit() noexcept = default;
  HeadersInit(const Headers& headers) noexcept : headers_(&headers) {}
  HeadersInit(Headers&&) = delete;  // would be destroyed before it is read; name it first
  HeadersInit(const Headers&&) = delete;
  // Throws Error(kInvalidArgument) past kMaxPairs: build a Headers for more.
  HeadersInit(std::initializer_list<Pair> pairs);

  // Appends the named headers to `out`.
  void appendTo(Headers& out) const;

 private:
  const Headers* headers_ = nullptr;
  std::array<Pair, kMaxPairs> pairs_;
  std::size_t count_ = 0;
};

// Written in place as in JavaScript: `Request(url, {.method = "POST", .body = text})`.
struct RequestInit {
  BorrowedString method = "GET";
  HeadersInit headers;
  std::optional<BorrowedString> body;
  // What durable::fetch() does with a redirect (durable/fetch.h): "follow" (up to 20), "manual"
  // (answer it as it is) or "error" (throw). Anything else throws Error(kInvalidArgument).
  BorrowedString redirect = "follow";
};
static_assert(std::is_trivially_destructible_v<RequestInit>, "see durable/borrowed.h");

class Request {
 public:
  Request(std::string url, RequestInit init = {});

  const std::string& method() const { return method_; }
  const std::string& urlString() const { return url_; }
  URL url() const { return URL(url_); }
  Headers& headers() { return headers_; }
  const Headers& headers() const { return headers_; }
  const std::string& text() const { return body_; }
  bool hasBody() const { return has_body_; }
  Json json() const { return parseJson(body_); }
  // "follow", "manual" or "error" (RequestInit::redirect).
  std::string_view redirect() const;

 private:
  std::string method_;
  std::string url_;
  std::uint8_t redirect_ = 0;  // an index into "follow", "manual", "error"
  Headers headers_;
  std::string body_;
  bool has_body_ = false;
};

struct ResponseInit {
  int status = 200;
  BorrowedString statusText;
  HeadersInit headers;
  // With status 101: the client end of a WebSocketPair whose server end the object accepted.
  Borrowed<WebSocket> webSocket;
};
static_assert(std::is_trivially_destructible_v<ResponseInit>, "see durable/borrowed.h");

class Response {
 public:
  // A null body.
  explicit Response(std::nullptr_t = nullptr, ResponseInit init = {});
  // A text body; content-type defaults to text/plain;charset=UTF-8.
  Response(std::string body, ResponseInit init = {});
  Response(const char* body, ResponseInit init = {}) : Response(std::string(body), std::move(init)) {}

  static Response json(const Json& value, ResponseInit init = {});

  int status() const { return status_; }
  bool ok() const { return status_ >= 200 && status_ <= 299; }
  const std::string& statusText() const { return status_text_; }
  Headers& headers() { return headers_; }
  const Headers& headers() const { return headers_; }
  const std::string& text() const { return body_; }
  bool hasBody() const { return has_body_; }
  Json json() const { return parseJson(body_); }
  const WebSocket& webSocket() const { return web_socket_; }

 private:
  int status_;
  std::string status_text_;
  Headers headers_;
  std::string body_;
  bool has_body_ = false;
  WebSocket web_socket_;
};

}  // namespace durable
