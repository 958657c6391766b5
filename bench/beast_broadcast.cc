// The WebSocket fan-out ceiling: a bare Boost.Beast broadcast server, nothing else (no storage,
// no objects, no durability). It accepts a WebSocket upgrade on any path; the path (without its
// query) names the room, and every message received from a socket is written, as text, to every
// socket of that room, the sender included, through a per-socket write queue. That is what the
// seed's HibernatingRoom does (`ws.send(message)` to every socket of the room), so
// `ws_fanout --route hibernating` runs unchanged against both (bench/ws.sh, bench/README.md).
//
//   beast_broadcast [--listen 127.0.0.1:8787] [--threads N] [--mode shards|shared]
//
// --mode shards (default): one io_context per thread, one SO_REUSEPORT acceptor each; after the
//   HTTP upgrade request is read, the connection moves to the thread that owns its room (a hash of
//   the path), so a room and its sockets live on one thread and nothing takes a lock (durable's own
//   design: an object and its sockets on one shard thread).
// --mode shared: one io_context run by N threads, one strand per socket, one mutex per server
//   guarding the rooms; a broadcast dispatches each write to the target socket's strand.
// --threads defaults to the number of cores. A plain HTTP request gets 200 "ok" on /health (so
// scripts can wait for the server) and 404 elsewhere. Prints "listening on HOST:PORT" once ready;
// SIGINT/SIGTERM stop it. Not a test: bench/README.md.
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

using Message = std::shared_ptr<const std::string>;
class Session;

// The rooms of one thread (shards) or of the whole server (shared, then `locking`).
struct Hub {
  bool locking = false;
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<std::shared_ptr<Session>>> rooms;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Hub& hub, std::string room) : ws_(std::move(socket)), hub_(hub), room_(std::move(room)) {
    // As durable configures its server streams (src/net/websocket.cc): no fragmentation, no
    // idle timeout, no pings.
    ws_.auto_fragment(false);
    ws_.read_message_max(32 << 20);
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = std::chrono::seconds(30);
    timeouts.idle_timeout = websocket::stream_base::none();
    timeouts.keep_alive_pings = false;
    ws_.set_option(timeouts);
    ws_.text(true);
  }

  // Runs on the socket's executor.
  void accept(http::request<http::string_body> request) {
    request_ = std::move(request);
    ws_.async_accept(request_, [self = shared_from_this()](beast::error_code ec) {
      self->request_ = {};
      if (ec) return;
      self->join();
      self->read();
    });
  }

  // Queues one message; runs on the socket's executor.
  void deliver(const Message& m) {
    if (closed_) return;
    queue_.push_back(m);
    if (!writing_) write();
  }

 private:
  template <class F>
  void withRoom(F&& f) {
    std::unique_lock lock(hub_.mutex, std::defer_lock);
    if (hub_.locking) lock.lock();
    f(hub_.rooms[room_]);
  }

  void join() {
    withRoom([&](auto& members) { members.push_back(shared_from_this()); });
  }

  void leave() {
    if (closed_) return;
    closed_ = true;
    queue_.clear();
    withRoom([&](auto& members) {
      for (auto& m : members) {
        if (m.get() == this) {
          m = std::move(members.back());
          members.pop_back();
          break;
        }
      }
      if (members.empty()) hub_.rooms.erase(room_);
    });
  }

  void read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->leave();
      self->broadcast();
      self->read();
    });
  }

  void broadcast() {
    auto m = std::make_shared<const std::string>(beast::buffers_to_string(buffer_.data()));
    buffer_.consume(buffer_.size());
    withRoom([&](auto& members) {
      if (!hub_.locking) {
        for (auto& s : members) s->deliver(m);
        return;
      }
      // Each socket's writes on its own strand (inline when that strand is free).
      for (auto& s : members) asio::dispatch(s->ws_.get_executor(), [s, m] { s->deliver(m); });
    });
  }

  void write() {
    writing_ = true;
    ws_.async_write(asio::buffer(*queue_.front()), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->writing_ = false;
      if (ec) return self->leave();
      if (self->closed_) return;
      self->queue_.pop_front();
      if (!self->queue_.empty()) self->write();
    });
  }

  websocket::stream<tcp::socket> ws_;
  Hub& hub_;
  std::string room_;
  http::request<http::string_body> request_;
  beast::flat_buffer buffer_;
  std::deque<Message> queue_;
  bool writing_ = false;
  bool closed_ = false;
};

struct Options {
  std::string host = "127.0.0.1";
  unsigned short port = 8787;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  bool shared = false;
};

class Server;

// Reads the HTTP request of a fresh connection: an upgrade goes to its room's Session, anything
// else gets a tiny answer and is closed.
class Handshake : public std::enable_shared_from_this<Handshake> {
 public:
  Handshake(Server& server, std::size_t from, tcp::socket socket) : server_(server), from_(from), socket_(std::move(socket)) {}
  void run() {
    http::async_read(socket_, buffer_, request_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (!ec) self->onRequest();
    });
  }

 private:
  void onRequest();
  Server& server_;
  std::size_t from_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
};

class Server {
 public:
  explicit Server(const Options& o) : o_(o), contexts_(o.shared ? 1 : o.threads), hubs_(contexts_.size()) {
    for (auto& c : contexts_) c = std::make_unique<asio::io_context>(o.shared ? static_cast<int>(o.threads) : 1);
    for (auto& h : hubs_) h = std::make_unique<Hub>();
    hubs_[0]->locking = o.shared;
    const tcp::endpoint endpoint(asio::ip::make_address(o.host), o.port);
    for (auto& c : contexts_) {
      auto& a = acceptors_.emplace_back(std::make_unique<tcp::acceptor>(*c));
      a->open(endpoint.protocol());
      a->set_option(asio::socket_base::reuse_address(true));
      int one = 1;
      ::setsockopt(a->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
      a->bind(tcp::endpoint(endpoint.address(), port_ ? port_ : o.port));
      a->listen(asio::socket_base::max_listen_connections);
      port_ = a->local_endpoint().port();
    }
  }

  int run() {
    for (std::size_t i = 0; i < acceptors_.size(); ++i) accept(i);
    asio::signal_set signals(*contexts_[0], SIGINT, SIGTERM);
    signals.async_wait([this](beast::error_code, int) {
      for (auto& c : contexts_) c->stop();
    });
    std::printf("listening on %s:%u (%u threads, %s)\n", o_.host.c_str(), port_, o_.threads,
                o_.shared ? "one io_context, strands" : "io_context per thread");
    std::fflush(stdout);
    std::vector<std::thread> threads;
    for (unsigned t = 1; t < o_.threads; ++t) threads.emplace_back([this, t] { contexts_[o_.shared ? 0 : t]->run(); });
    contexts_[0]->run();
    for (auto& c : contexts_) c->stop();
    for (auto& t : threads) t.join();
    return 0;
  }

  // Hands an upgraded connection, its request read on thread `from`, to its room's Session.
  // Runs on the socket's executor.
  void upgrade(std::size_t from, tcp::socket socket, http::request<http::string_body> request) {
    std::string target(request.target());
    std::string room = target.substr(0, target.find('?'));
    const std::size_t home = o_.shared ? 0 : std::hash<std::string>{}(room) % contexts_.size();
    if (home == from) {
      std::make_shared<Session>(std::move(socket), *hubs_[home], std::move(room))->accept(std::move(request));
      return;
    }
    // Move the descriptor to the room's thread: release it here, adopt it there.
    const auto protocol = socket.local_endpoint().protocol();
    const int fd = socket.release();
    auto& ctx = *contexts_[home];
    asio::post(ctx, [this, &ctx, home, fd, protocol, room = std::move(room), r = std::move(request)]() mutable {
      tcp::socket moved(ctx, protocol, fd);
      std::make_shared<Session>(std::move(moved), *hubs_[home], std::move(room))->accept(std::move(r));
    });
  }

 private:
  void accept(std::size_t i) {
    auto& ctx = *contexts_[i];
    auto executor = o_.shared ? asio::any_io_executor(asio::make_strand(ctx)) : asio::any_io_executor(ctx.get_executor());
    acceptors_[i]->async_accept(executor, [this, i](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        socket.set_option(tcp::no_delay(true), ec);
        std::make_shared<Handshake>(*this, i, std::move(socket))->run();
      }
      accept(i);
    });
  }

  Options o_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<std::unique_ptr<Hub>> hubs_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  unsigned short port_ = 0;
};

void Handshake::onRequest() {
  if (websocket::is_upgrade(request_)) {
    // The client waits for the 101 before it sends a frame, so nothing is left in buffer_.
    server_.upgrade(from_, std::move(socket_), std::move(request_));
    return;
  }
  const bool health = request_.target() == "/health";
  response_.version(request_.version());
  response_.result(health ? http::status::ok : http::status::not_found);
  response_.body() = health ? "ok" : "Not found";
  response_.keep_alive(false);
  response_.prepare_payload();
  http::async_write(socket_, response_, [self = shared_from_this()](beast::error_code, std::size_t) {
    beast::error_code ignored;
    self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
  });
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--listen") {
      const std::string v = value();
      const auto colon = v.rfind(':');
      if (colon == std::string::npos) {
        std::cerr << "--listen is HOST:PORT\n";
        std::exit(2);
      }
      o.host = v.substr(0, colon);
      o.port = static_cast<unsigned short>(std::stoi(v.substr(colon + 1)));
    } else if (a == "--threads") {
      o.threads = static_cast<unsigned>(std::max(1, std::stoi(value())));
    } else if (a == "--mode") {
      const std::string m = value();
      if (m != "shards" && m != "shared") {
        std::cerr << "--mode is shards or shared\n";
        std::exit(2);
      }
      o.shared = m == "shared";
    } else {
      std::cerr << "usage: beast_broadcast [--listen HOST:PORT] [--threads N] [--mode shards|shared]\n";
      std::exit(2);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Server server(parse(argc, argv));
    return server.run();
  } catch (const std::exception& e) {
    std::cerr << "beast_broadcast: " << e.what() << "\n";
    return 1;
  }
}
