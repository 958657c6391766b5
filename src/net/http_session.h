// One HTTP connection on its shard thread, as the Listener sees it (net/http_session.cc).
#pragma once

#include "net/http_server.h"

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>

namespace durable::detail {

// A response the client does not take within this long is abandoned with its connection.
inline constexpr std::chrono::seconds kWriteTimeout{30};

class HttpSession {
 public:
  virtual ~HttpSession() = default;
  // Starts reading the first request.
  virtual void run() = 0;
  // The Listener's sweep: ends a connection whose read or write has taken too long.
  virtual void closeIfLate(std::chrono::steady_clock::time_point now) = 0;
  // On stop: a connection waiting for a request that has not started closes now.
  virtual void closeIfIdle() = 0;
};

std::shared_ptr<HttpSession> makeHttpSession(boost::asio::ip::tcp::socket socket, HttpServer& server, SocketShard& shard);

}  // namespace durable::detail
