// The HTTP front: one acceptor per shard on the same port (SO_REUSEPORT), so the kernel
// spreads connections over the shards and each connection lives on one shard thread for its
// whole life. A request runs the Worker on that thread; requests to objects on other shards
// are posted there by the runtime and answered back here.
#pragma once

#include "net/http_host.h"

#include <durable/object.h>
#include <durable/worker.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

namespace durable::detail {

struct HttpOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8787;
  std::size_t maxBodyBytes = 100 * 1024 * 1024;
  std::size_t maxHeaderBytes = 32 * 1024;
  // A connection that takes longer than this to send a whole request (or, between requests,
  // to start one) is dropped: slow clients cannot hold connections forever.
  std::chrono::milliseconds readTimeout{30000};
  // Connections open at once, WebSockets included (a session hands its place over with the
  // socket); one more is answered 503 and closed. 0: three quarters of the process's
  // descriptor limit, the rest kept for storage and the refusals themselves.
  std::size_t maxConnections = 0;
  // Request bodies in memory over all connections; a request that would pass it gets 503.
  std::size_t maxBodyBytesInMemory = 128 * 1024 * 1024;
  // One log line per request: method, target, status, body bytes, duration.
  bool accessLog = false;
  // Counted in the shard's durable_http_* metrics (the admin listener's requests are not).
  bool countInMetrics = true;
};

class HttpServer {
 public:
  HttpServer(HttpHost& host, const Worker& worker, HttpOptions options);
  ~HttpServer();

  // Binds and starts accepting on every shard. Throws Error (kUnavailable) when it cannot bind.
  void start();
  std::uint16_t port() const { return port_; }
  // Closes the acceptors and idle connections; busy connections finish the request they are
  // serving, answer it with "Connection: close" and close.
  void stopAccepting();
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  // Requests received whose responses are not yet fully written.
  std::int64_t inFlight() const { return inFlight_.load(std::memory_order_relaxed); }
  // After stopAccepting(): waits until no request is in flight, or until `deadline`; false
  // when the deadline came first.
  bool waitIdle(std::chrono::steady_clock::time_point deadline);

  // Internal, for sessions.
  const Worker& worker() const { return worker_; }
  HttpHost& host() { return host_; }
  const HttpOptions& options() const { return options_; }
  // Counts a request in, unless the server is stopping: then waitIdle() may already have found
  // none in flight and returned, and a request started now would outlive the io_contexts.
  // Sequentially consistent with stopAccepting() and waitIdle(): one of the two sees the other.
  bool requestStarted() {
    inFlight_.fetch_add(1);
    if (!stopping_.load()) return true;
    requestEnded();
    return false;
  }
  void requestEnded();
  // Shared with the sessions: a session may outlive the server (its io_context ends later).
  const std::shared_ptr<std::atomic<std::int64_t>>& connectionCounter() { return connections_; }
  std::size_t maxConnections() const { return maxConnections_; }
  const std::shared_ptr<std::atomic<std::int64_t>>& bodyBytesCounter() { return bodyBytes_; }

 private:
  class Listener;
  HttpHost& host_;
  const Worker& worker_;
  HttpOptions options_;
  std::uint16_t port_ = 0;
  std::vector<std::shared_ptr<Listener>> listeners_;
  std::atomic<std::int64_t> inFlight_{0};
  std::atomic<bool> stopping_{false};
  // waitIdle() sleeps here; requestEnded() wakes it when the last request ends while stopping.
  std::mutex idleMutex_;
  std::condition_variable idle_;
  std::shared_ptr<std::atomic<std::int64_t>> connections_ = std::make_shared<std::atomic<std::int64_t>>(0);
  std::size_t maxConnections_ = 0;
  std::shared_ptr<std::atomic<std::int64_t>> bodyBytes_ = std::make_shared<std::atomic<std::int64_t>>(0);
};

}  // namespace durable::detail
