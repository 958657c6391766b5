#include "net/http_server.h"
#include "net/http_session.h"
#include "net/url_path.h"
#include "net/error_response.h"

#include "net/websocket.h"
#include "base/log.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <sys/resource.h>
#include <sys/socket.h>

#include <cstdio>
#include <optional>
#include <utility>

namespace durable::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

class HttpServer::Listener : public std::enable_shared_from_this<HttpServer::Listener> {
 public:
  Listener(HttpServer& server, SocketShard& shard, asio::io_context& context)
      : server_(server), shard_(shard), context_(context), acceptor_(context), retry_(context), sweep_(context) {}

  std::uint16_t bind(const tcp::endpoint& endpoint) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    int one = 1;
    ::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    acceptor_.bind(endpoint);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    return acceptor_.local_endpoint().port();
  }

  void start() {
    asio::post(context_, [self = shared_from_this()] {
      self->accept();
      self->scheduleSweep();
    });
  }

  void stop() {
    asio::post(context_, [self = shared_from_this()] {
      beast::error_code ec;
      self->acceptor_.close(ec);
      self->retry_.cancel();
      self->sweep_.cancel();
      for (auto& weak : self->sessions_) {
        if (auto s = weak.lock()) s->closeIfIdle();
      }
      self->sessions_.clear();
    });
  }

 private:
  void accept() {
    acceptor_.async_accept(context_, [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
      if (ec) {
        // Out of descriptors or similar: refuse by not accepting for a moment, never spin.
        log("http: accept failed: ", ec.message());
        self->retry_.expires_after(std::chrono::milliseconds(50));
        self->retry_.async_wait([self](beast::error_code e) {
          if (!e) self->accept();
        });
        return;
      }
      beast::error_code ignored;
      if (static_cast<std::size_t>(self->server_.connectionCounter()->load(std::memory_order_relaxed)) >=
          self->server_.maxConnections()) {
        // Refuse, visibly and cheaply: one small write that fits any socket buffer, then close.
        // The bytes of protocolErrorResponse(503, ...), fixed, so that a refusal under a flood
        // of connections builds nothing.
        static constexpr std::string_view kBusy =
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 32\r\n"
            "connection: close\r\n\r\n{\"error\":\"too many connections\"}";
        socket.write_some(asio::buffer(kBusy), ignored);
        socket.close(ignored);
        self->accept();
        return;
      }
      socket.set_option(tcp::no_delay(true), ignored);
      auto session = makeHttpSession(std::move(socket), self->server_, self->shard_);
      self->track(session);
      session->run();
      self->accept();
    });
  }

  // Closes the connections whose reads or writes are late, a few times per timeout.
  void scheduleSweep() {
    const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::min<Clock::duration>(server_.options().readTimeout, kWriteTimeout));
    sweep_.expires_after(std::clamp(timeout / 4, std::chrono::milliseconds(5), std::chrono::milliseconds(1000)));
    sweep_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || !self->acceptor_.is_open()) return;
      const auto now = Clock::now();
      for (auto& weak : self->sessions_) {
        if (auto s = weak.lock()) s->closeIfLate(now);
      }
      self->scheduleSweep();
    });
  }

  // Sessions of this shard, so stop() can close the idle ones and the sweep the late ones;
  // only touched on the shard thread.
  void track(const std::shared_ptr<HttpSession>& session) {
    if (sessions_.size() >= 2 * liveAfterPrune_ + 64) {
      std::erase_if(sessions_, [](const std::weak_ptr<HttpSession>& w) { return w.expired(); });
      liveAfterPrune_ = sessions_.size();
    }
    sessions_.push_back(session);
  }

  HttpServer& server_;
  SocketShard& shard_;
  asio::io_context& context_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_;
  asio::steady_timer sweep_;
  std::vector<std::weak_ptr<HttpSession>> sessions_;
  std::size_t liveAfterPrune_ = 0;
};

namespace {

// The error's own words, without Boost's "[system:98 at /usr/include/boost/...]" suffix.
std::string listenError(const asio::ip::address& address, std::uint16_t port, const beast::error_code& ec) {
  const std::string where =
      (address.is_v6() ? "[" + address.to_string() + "]" : address.to_string()) + ":" + std::to_string(port);
  if (ec == asio::error::address_in_use) return "address " + where + " is already in use (choose another port)";
  if (ec == boost::system::errc::address_not_available) {
    return "cannot listen on " + where + ": not an address of this machine (use 127.0.0.1, 0.0.0.0 or one of its own)";
  }
  if (ec == asio::error::access_denied) return "cannot listen on " + where + ": permission denied (ports below 1024 need privileges)";
  return "cannot listen on " + where + ": " + ec.message();
}

}  // namespace

HttpServer::HttpServer(HttpHost& host, const Worker& worker, HttpOptions options)
    : host_(host), worker_(worker), options_(std::move(options)) {}

HttpServer::~HttpServer() = default;

void HttpServer::start() {
  maxConnections_ = options_.maxConnections;
  if (maxConnections_ == 0) {
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    // Connections (WebSockets included) get three quarters; storage needs a few descriptors per
    // partition, and a refusal one for a moment, so accept never runs out.
    maxConnections_ = std::max<std::size_t>(64, static_cast<std::size_t>(limit.rlim_cur) * 3 / 4);
  }
  auto address = asio::ip::make_address(options_.host);
  std::uint16_t port = options_.port;
  if (port != 0) {
    // SO_REUSEPORT would let us join another process's listeners on this port (same user)
    // and silently split its traffic with it. A bind without SO_REUSEPORT fails while anyone
    // listens there, so try one first.
    try {
      tcp::acceptor probe(host_.shardContext(0));
      probe.open(address.is_v6() ? tcp::v6() : tcp::v4());
      probe.set_option(asio::socket_base::reuse_address(true));
      probe.bind(tcp::endpoint(address, port));
    } catch (const boost::system::system_error& e) {
      throw Error(ErrorCode::kUnavailable, listenError(address, port, e.code()));
    }
  }
  for (unsigned i = 0; i < host_.shardCount(); ++i) {
    auto listener = std::make_shared<Listener>(*this, host_.shard(i), host_.shardContext(i));
    try {
      port = listener->bind(tcp::endpoint(address, port));
    } catch (const boost::system::system_error& e) {
      throw Error(ErrorCode::kUnavailable, listenError(address, port, e.code()));
    }
    listeners_.push_back(std::move(listener));
  }
  port_ = port;
  for (auto& l : listeners_) l->start();
}

void HttpServer::stopAccepting() {
  // Sequentially consistent with requestEnded()'s decrement and load: either it sees the flag
  // and wakes waitIdle(), or waitIdle() sees its decrement.
  stopping_.store(true);
  for (auto& l : listeners_) l->stop();
}

void HttpServer::requestEnded() {
  if (inFlight_.fetch_sub(1) == 1 && stopping_.load()) {
    // Under the mutex, so the wake-up cannot fall between waitIdle()'s check and its wait.
    std::lock_guard lock(idleMutex_);
    idle_.notify_all();
  }
}

bool HttpServer::waitIdle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(idleMutex_);
  return idle_.wait_until(lock, deadline, [this] { return inFlight_.load() == 0; });
}

}  // namespace durable::detail
