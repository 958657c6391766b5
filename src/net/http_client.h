// Outbound HTTP for durable::fetch() (durable/fetch.h): HTTP/1.1 over TCP or TLS on one
// shard's event loop, with the shard's own pool of kept-alive connections, so that no lock
// and no thread is involved. TLS verifies the server's certificate chain against OpenSSL's
// default store (the system's, or SSL_CERT_FILE / SSL_CERT_DIR when set) and its name.
//
// Shard thread only.
#pragma once

#include <durable/http.h>
#include <durable/task.h>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace boost::asio::ssl {
class context;
}

namespace durable::detail {

struct HttpClientLimits {
  // One fetch from start to its last byte: name lookup, connect, TLS and every redirect.
  std::chrono::milliseconds timeout{30000};
  std::size_t maxResponseBytes = 32 * 1024 * 1024;
  int maxRedirects = 20;  // as the Fetch standard
  std::size_t maxIdlePerOrigin = 16;
  std::chrono::milliseconds idleTimeout{30000};  // a kept-alive connection idle this long is closed
  std::size_t maxIdle = 256;  // kept-alive connections over all origins
  // An idempotent request sent on a kept-alive connection that then ended without a byte of
  // answer is sent again on a new one. Off where the receiver may have run it and a second run
  // is not the caller's to allow (cluster forwarding).
  bool replayUnanswered = true;
};

class HttpClient {
 public:
  HttpClient(boost::asio::io_context& context, HttpClientLimits limits);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // The response, after the redirects the request's mode allows. Throws durable::Error:
  // kInvalidArgument for a URL or scheme it cannot fetch; kUnavailable when the host does not
  // resolve, refuses, times out, fails TLS verification or breaks the connection;
  // kPayloadTooLarge for a response past the limit.
  Task<Response> fetch(Request request);

  // Connections made so far (tests: a second request to the same origin reuses the first).
  std::size_t connectionsOpened() const { return opened_; }

  struct Connection;

 private:
  using Deadline = std::chrono::steady_clock::time_point;
  Task<Response> exchange(const std::string& method, const URL& url, const Headers& headers, const std::string* body,
                          Deadline deadline);
  Task<std::unique_ptr<Connection>> connect(bool tls, const std::string& host, const std::string& port,
                                            Deadline deadline);
  std::unique_ptr<Connection> takeIdle(const std::string& origin);
  void keepIdle(std::unique_ptr<Connection> c);
  boost::asio::ssl::context& tlsContext();

  boost::asio::io_context& context_;
  const HttpClientLimits limits_;
  std::unique_ptr<boost::asio::ssl::context> tls_;
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle_;
  std::size_t idleCount_ = 0;
  std::size_t opened_ = 0;
};

}  // namespace durable::detail
