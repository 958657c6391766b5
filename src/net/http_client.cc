#include "net/http_client.h"

#include "net/asio_await.h"

#include <durable/error.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url.hpp>

#include <openssl/ssl.h>

#include <functional>
#include <iterator>
#include <optional>
#include <utility>

namespace durable::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

struct HttpClient::Connection {
  std::string origin;
  bool tls = false;
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<ssl::stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idleSince;

  beast::tcp_stream& tcp() { return tls ? secure->next_layer() : *plain; }
};

namespace {

Error unavailable(const std::string& what) { return Error(ErrorCode::kUnavailable, what); }

bool isIpLiteral(const std::string& host) {
  beast::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// What a TLS failure says: OpenSSL's reason ("certificate verify failed") when there is one.
std::string describeTls(const beast::error_code& ec) {
  if (ec.category() == asio::error::get_ssl_category()) {
    if (const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()))) return reason;
  }
  return ec.message();
}

}  // namespace

HttpClient::HttpClient(asio::io_context& context, HttpClientLimits limits) : context_(context), limits_(limits) {}

HttpClient::~HttpClient() = default;

ssl::context& HttpClient::tlsContext() {
  if (!tls_) {
    auto c = std::make_unique<ssl::context>(ssl::context::tls_client);
    c->set_default_verify_paths();
    c->set_verify_mode(ssl::verify_peer);
    c->set_options(ssl::context::no_sslv2 | ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                   ssl::context::no_tlsv1_1);
    tls_ = std::move(c);
  }
  return *tls_;
}

std::unique_ptr<HttpClient::Connection> HttpClient::takeIdle(const std::string& origin) {
  auto it = idle_.find(origin);
  if (it == idle_.end()) return nullptr;
  const auto now = std::chrono::steady_clock::now();
  std::unique_ptr<Connection> found;
  while (!it->second.empty() && !found) {
    auto c = std::move(it->second.back());
    it->second.pop_back();
    --idleCount_;
    if (now - c->idleSince < limits_.idleTimeout) found = std::move(c);
  }
  if (it->second.empty()) idle_.erase(it);
  return found;
}

void HttpClient::keepIdle(std::unique_ptr<Connection> c) {
  const auto now = std::chrono::steady_clock::now();
  auto& list = idle_[c->origin];
  if (list.size() >= limits_.maxIdlePerOrigin) {
    list.erase(list.begin());
    --idleCount_;
  }
  if (idleCount_ >= limits_.maxIdle) {
    // Full: connections idle too long go first (their servers have likely closed them; takeIdle
    // skips them anyway), then the oldest of all. Only here, not on every request.
    for (auto it = idle_.begin(); it != idle_.end();) {
      auto& other = it->second;
      const auto before = other.size();
      std::erase_if(other, [&](const auto& idle) { return now - idle->idleSince >= limits_.idleTimeout; });
      idleCount_ -= before - other.size();
      it = other.empty() && it->first != c->origin ? idle_.erase(it) : std::next(it);
    }
  }
  if (idleCount_ >= limits_.maxIdle) {
    // The oldest over all origins: each list is oldest first.
    auto oldest = idle_.end();
    for (auto it = idle_.begin(); it != idle_.end(); ++it) {
      if (!it->second.empty() && (oldest == idle_.end() || it->second.front()->idleSince < oldest->second.front()->idleSince)) {
        oldest = it;
      }
    }
    if (oldest != idle_.end()) {
      oldest->second.erase(oldest->second.begin());
      --idleCount_;
      if (oldest->second.empty() && oldest->first != c->origin) idle_.erase(oldest);
    }
  }
  c->idleSince = now;
  idle_[c->origin].push_back(std::move(c));
  ++idleCount_;
}

Task<std::unique_ptr<HttpClient::Connection>> HttpClient::connect(bool tls, const std::string& host,
                                                                  const std::string& port, Deadline deadline) {
  // Name lookup has no timeout of its own: the deadline cancels it. The timer's handler may
  // run after this frame is gone, so it holds the resolver only weakly.
  auto resolver = std::make_shared<tcp::resolver>(context_);
  asio::steady_timer lookupDeadline(context_, deadline);
  lookupDeadline.async_wait([weak = std::weak_ptr<tcp::resolver>(resolver)](beast::error_code ec) {
    if (auto r = weak.lock(); r && !ec) r->cancel();
  });
  AsioOp<tcp::resolver::results_type> resolve{[&](auto done) {
    resolver->async_resolve(host, port, [done](beast::error_code ec, tcp::resolver::results_type r) { done(ec, r); });
  }};
  auto [rec, endpoints] = co_await resolve;
  lookupDeadline.cancel();
  if (rec == asio::error::operation_aborted) {
    throw unavailable("fetch: looking up " + host + " took longer than " + std::to_string(limits_.timeout.count()) +
                      " ms");
  }
  if (rec) throw unavailable("fetch: cannot resolve host " + host + ": " + rec.message());

  auto c = std::make_unique<Connection>();
  c->tls = tls;
  if (tls) {
    c->secure = std::make_unique<ssl::stream<beast::tcp_stream>>(context_, tlsContext());
  } else {
    c->plain = std::make_unique<beast::tcp_stream>(context_);
  }
  c->tcp().expires_at(deadline);
  AsioOp<tcp::endpoint> connectOp{[&](auto done) {
    c->tcp().async_connect(endpoints, [done](beast::error_code ec, tcp::endpoint e) { done(ec, e); });
  }};
  auto [cec, endpoint] = co_await connectOp;
  if (cec == beast::error::timeout) {
    throw unavailable("fetch: connecting to " + host + ":" + port + " took longer than " +
                      std::to_string(limits_.timeout.count()) + " ms");
  }
  if (cec) throw unavailable("fetch: cannot connect to " + host + ":" + port + ": " + cec.message());
  beast::error_code ignored;
  c->tcp().socket().set_option(tcp::no_delay(true), ignored);

  if (tls) {
    // SNI only for names: RFC 6066 forbids IP literals there.
    if (!isIpLiteral(host)) SSL_set_tlsext_host_name(c->secure->native_handle(), host.c_str());
    c->secure->set_verify_callback(ssl::host_name_verification(host));
    AsioOp<int> handshake{[&](auto done) {
      c->secure->async_handshake(ssl::stream_base::client, [done](beast::error_code ec) { done(ec, 0); });
    }};
    auto [hec, unused] = co_await handshake;
    if (hec == beast::error::timeout) {
      throw unavailable("fetch: the TLS handshake with " + host + ":" + port + " took longer than " +
                        std::to_string(limits_.timeout.count()) + " ms");
    }
    if (hec) throw unavailable("fetch: TLS with " + host + ":" + port + " failed: " + describeTls(hec));
  }
  ++opened_;
  co_return c;
}

Task<Response> HttpClient::exchange(const std::string& method, const URL& url, const Headers& headers,
                                    const std::string* body, Deadline deadline) {
  const bool tls = url.protocol() == "https:";
  const std::string host = url.hostname();
  const std::string port = url.port().empty() ? (tls ? "443" : "80") : url.port();
  const std::string origin = url.protocol() + "//" + host + ":" + port;

  http::request<http::string_body> req;
  req.version(11);
  req.method_string(method);
  req.target(url.pathname() + url.search());
  // Host and the framing are the client's, as in the Fetch standard (forbidden header names).
  for (const auto& [name, value] : headers.entries()) {
    if (name == "host" || name == "content-length" || name == "transfer-encoding" || name == "connection") continue;
    req.insert(name, value);
  }
  req.set(http::field::host, url.host());
  if (req.find(http::field::user_agent) == req.end()) req.set(http::field::user_agent, "durable");
  if (body) {
    req.body() = *body;
    req.content_length(body->size());
  } else if (method == "POST" || method == "PUT" || method == "PATCH") {
    req.content_length(0);
  }
  // Sent again on a new connection only if doing it twice is harmless (RFC 9110's idempotent
  // methods): a kept-alive connection the server closed meanwhile fails before any answer.
  const bool replayable = method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" ||
                          method == "DELETE";
  auto closedWhileIdle = [](const beast::error_code& ec) {
    return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
           ec == asio::error::broken_pipe;
  };

  for (int attempt = 0;; ++attempt) {
    auto c = attempt == 0 ? takeIdle(origin) : nullptr;
    const bool reused = c != nullptr;
    if (!c) {
      c = co_await connect(tls, host, port, deadline);
      c->origin = origin;
    }
    c->tcp().expires_at(deadline);
    AsioOp<std::size_t> write{[&](auto done) {
      auto handler = [done](beast::error_code ec, std::size_t n) { done(ec, n); };
      if (tls) {
        http::async_write(*c->secure, req, handler);
      } else {
        http::async_write(*c->plain, req, handler);
      }
    }};
    auto [wec, written] = co_await write;
    if (wec && reused && replayable && closedWhileIdle(wec)) continue;
    if (wec == beast::error::timeout) {
      throw unavailable("fetch " + url.href() + ": no answer within " + std::to_string(limits_.timeout.count()) + " ms");
    }
    if (wec) throw unavailable("fetch " + url.href() + ": sending the request failed: " + wec.message());

    http::response_parser<http::string_body> parser;
    parser.body_limit(limits_.maxResponseBytes);
    parser.header_limit(64 * 1024);
    if (method == "HEAD") parser.skip(true);
    AsioOp<std::size_t> read{[&](auto done) {
      auto handler = [done](beast::error_code ec, std::size_t n) { done(ec, n); };
      if (tls) {
        http::async_read(*c->secure, c->buffer, parser, handler);
      } else {
        http::async_read(*c->plain, c->buffer, parser, handler);
      }
    }};
    auto [rec, got] = co_await read;
    if (rec && reused && replayable && limits_.replayUnanswered && !parser.got_some() && closedWhileIdle(rec)) continue;
    if (rec == http::error::body_limit) {
      throw Error(ErrorCode::kPayloadTooLarge, "fetch " + url.href() + ": the response is larger than " +
                                                   std::to_string(limits_.maxResponseBytes) + " bytes");
    }
    if (rec == beast::error::timeout) {
      throw unavailable("fetch " + url.href() + ": no answer within " + std::to_string(limits_.timeout.count()) + " ms");
    }
    if (rec) throw unavailable("fetch " + url.href() + ": reading the response failed: " + rec.message());

    auto res = parser.release();
    const bool keepAlive = res.keep_alive();
    const std::string reason(res.reason());
    Response out(std::move(res.body()), {.status = static_cast<int>(res.result_int()), .statusText = reason});
    // The server's headers as it sent them: not the text/plain a Response's body gets by default.
    out.headers().remove("content-type");
    for (const auto& field : res) out.headers().append(field.name_string(), field.value());
    if (keepAlive) {
      c->tcp().expires_never();
      keepIdle(std::move(c));
    }
    co_return out;
  }
}

Task<Response> HttpClient::fetch(Request request) {
  std::string method = request.method();
  std::string href = request.urlString();
  Headers headers = request.headers();
  std::string body = request.text();
  bool hasBody = request.hasBody();
  // The Fetch standard's TypeErrors, before anything is sent.
  if (method == "CONNECT" || method == "TRACE" || method == "TRACK") {
    throw Error(ErrorCode::kInvalidArgument, "fetch: the method " + method + " cannot be fetched");
  }
  if (hasBody && (method == "GET" || method == "HEAD")) {
    throw Error(ErrorCode::kInvalidArgument, "fetch: a " + method + " request cannot have a body");
  }
  const Deadline deadline = std::chrono::steady_clock::now() + limits_.timeout;
  for (int redirects = 0;; ++redirects) {
    const URL url(href);
    if (url.protocol() != "http:" && url.protocol() != "https:") {
      throw Error(ErrorCode::kInvalidArgument, "fetch: cannot fetch " + href + " (only http: and https: URLs)");
    }
    Response response = co_await exchange(method, url, headers, hasBody ? &body : nullptr, deadline);
    const int status = response.status();
    const bool redirected = status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
    const auto location = redirected ? response.headers().get("location") : std::nullopt;
    if (!location || request.redirect() == "manual") co_return response;
    if (request.redirect() == "error") {
      throw Error(ErrorCode::kUnavailable,
                  "fetch " + href + ": redirected (" + std::to_string(status) + ") while redirect is \"error\"");
    }
    if (redirects >= limits_.maxRedirects) {
      throw Error(ErrorCode::kUnavailable, "fetch " + request.urlString() + ": more than " +
                                               std::to_string(limits_.maxRedirects) + " redirects");
    }
    auto reference = boost::urls::parse_uri_reference(*location);
    if (!reference) throw unavailable("fetch " + href + ": the redirect's Location is not a URL: " + *location);
    boost::urls::url next;
    const auto resolved = boost::urls::resolve(boost::urls::url_view(url.href()), *reference, next);
    if (!resolved) throw unavailable("fetch " + href + ": cannot follow the redirect to " + *location);
    // Credentials do not follow a redirect to another origin (the Fetch standard).
    const URL to(std::string(next.buffer()));
    if (to.protocol() != url.protocol() || to.host() != url.host()) headers.remove("authorization");
    href = std::string(next.buffer());
    // The Fetch standard's rewrite: 303 becomes a GET, and so do 301 and 302 of a POST.
    if ((status == 303 && method != "GET" && method != "HEAD") || ((status == 301 || status == 302) && method == "POST")) {
      method = "GET";
      hasBody = false;
      body.clear();
      headers.remove("content-type");
      headers.remove("content-length");
    }
  }
}

}  // namespace durable::detail
