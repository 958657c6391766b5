// durable/http.h: the Fetch API's value types (Headers, URL, Request, Response).
//
// They behave as in a Worker: header names are case-insensitive, a string body without a
// content-type gets `text/plain;charset=UTF-8`, Response::json() gets `application/json`.
// All are plain values: copyable, movable, safe to hand to another shard by moving.
#pragma once

#include <durable/json.h>
#include <durable/websocket.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
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

// The query of a URL, read as URLSearchParams does (values percent-decoded, '+' is a space).
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

// The members are views, copied by the constructor that takes them. That keeps an init
// written in place inside a co_await expression, `co_await stub.fetch(Request(url,
// {.method = "POST"}))`, safe under g++ 12, which relocates such braced temporaries bitwise
// (harmless for views, fatal for a std::string's inline buffer). For the same reason, build
// Headers before the co_await expression rather than with a braced list inside it.
struct RequestInit {
  std::string_view method = "GET";
  Headers headers;
  std::optional<std::string_view> body;
};

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

 private:
  std::string method_;
  std::string url_;
  Headers headers_;
  std::string body_;
  bool has_body_ = false;
};

// Views for the reason given at RequestInit.
struct ResponseInit {
  int status = 200;
  std::string_view statusText;
  Headers headers;
  // With status 101: the client end of a WebSocketPair whose server end the object accepted.
  WebSocket webSocket;
};

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
