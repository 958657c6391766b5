// Memory per idle hibernated WebSocket: opens N sockets to the seed's HibernatingRoom
// (spread over R rooms) on a running `durable`, waits until the rooms have been evicted,
// and reads the server's VmRSS before and after; prints the growth per socket. Then checks
// that every socket is still open: one message per room must reach all of its sockets.
//
//   ws_memory --port 8787 --pid SERVER_PID [--sockets 10000] [--rooms 100] [--settle 3]
//
// Run the server with a short [durable] hibernation_timeout_ms (bench/ws.sh uses 500) so the
// rooms are evicted within --settle seconds. The client needs a descriptor per socket
// (ulimit -n). Not a test: bench/README.md.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  unsigned short port = 8787;
  int pid = 0;
  int sockets = 10000;
  int rooms = 100;
  int warm = 100;
  double settle = 3;
  int parallel = 200;
};

long rssKiB(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  std::cerr << "ws_memory: no VmRSS for pid " << pid << "\n";
  std::exit(1);
}

struct Socket : std::enable_shared_from_this<Socket> {
  explicit Socket(asio::io_context& ioc) : ws(ioc) {}
  websocket::stream<beast::tcp_stream> ws;
  beast::flat_buffer buffer;
  int room = 0;
  bool open = false;
  std::uint64_t received = 0;
};

class Opener {
 public:
  Opener(asio::io_context& ioc, const Options& o) : ioc_(ioc), o_(o) {}

  // Opens `count` sockets to rooms [first, first + rooms) round-robin, `parallel` at a time.
  std::vector<std::shared_ptr<Socket>> open(int count, int firstRoom, int rooms, const std::string& prefix) {
    std::vector<std::shared_ptr<Socket>> out;
    int started = 0, done = 0, failed = 0;
    std::function<void()> startOne = [&] {
      if (started >= count) return;
      auto s = std::make_shared<Socket>(ioc_);
      s->room = firstRoom + started % rooms;
      ++started;
      out.push_back(s);
      auto& t = beast::get_lowest_layer(s->ws);
      t.expires_after(std::chrono::seconds(30));
      t.async_connect(tcp::endpoint(asio::ip::make_address(o_.host), o_.port), [&, s](beast::error_code ec) {
        if (ec) {
          ++failed, ++done;
          if (failed <= 3) std::cerr << "connect: " << ec.message() << "\n";
          return startOne();
        }
        beast::get_lowest_layer(s->ws).expires_never();
        s->ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
        const std::string target = "/hibernating/" + prefix + std::to_string(s->room) + "/websocket";
        s->ws.async_handshake(o_.host + ":" + std::to_string(o_.port), target, [&, s](beast::error_code ec2) {
          ++done;
          if (ec2) {
            if (++failed <= 3) std::cerr << "handshake: " << ec2.message() << "\n";
          } else {
            s->open = true;
            read(s);
          }
          startOne();
        });
      });
    };
    for (int i = 0; i < o_.parallel && i < count; ++i) startOne();
    while (done < count) ioc_.run_one();
    if (failed) {
      std::cerr << "ws_memory: " << failed << " of " << count << " sockets failed to open\n";
      std::exit(1);
    }
    return out;
  }

  static void read(const std::shared_ptr<Socket>& s) {
    s->ws.async_read(s->buffer, [s](beast::error_code ec, std::size_t) {
      if (ec) {
        s->open = false;
        return;
      }
      ++s->received;
      s->buffer.consume(s->buffer.size());
      read(s);
    });
  }

 private:
  asio::io_context& ioc_;
  const Options& o_;
};

void runFor(asio::io_context& ioc, double seconds) {
  ioc.restart();
  ioc.run_for(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(seconds)));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--host") o.host = v;
    else if (a == "--port") o.port = static_cast<unsigned short>(std::stoi(v));
    else if (a == "--pid") o.pid = std::stoi(v);
    else if (a == "--sockets") o.sockets = std::stoi(v);
    else if (a == "--rooms") o.rooms = std::stoi(v);
    else if (a == "--warm") o.warm = std::stoi(v);
    else if (a == "--settle") o.settle = std::stod(v);
    else if (a == "--parallel") o.parallel = std::stoi(v);
    else {
      std::cerr << "usage: ws_memory --port P --pid SERVER_PID [--sockets N] [--rooms R] [--settle S]\n";
      return 2;
    }
  }
  if (o.pid <= 0) {
    std::cerr << "ws_memory: --pid of the server is required\n";
    return 2;
  }
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < static_cast<rlim_t>(o.sockets + o.warm + 64)) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, static_cast<rlim_t>(o.sockets + o.warm + 64));
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  asio::io_context ioc;
  Opener opener(ioc, o);
  // Warm-up: the first sockets pay for what every later one shares (buffers, tables).
  auto warm = opener.open(o.warm, 0, 1, "warm-");
  runFor(ioc, o.settle);
  const long before = rssKiB(o.pid);

  const auto t0 = Clock::now();
  auto sockets = opener.open(o.sockets, 0, o.rooms, "room-");
  const double openSecs = std::chrono::duration<double>(Clock::now() - t0).count();
  const long awake = rssKiB(o.pid);
  runFor(ioc, o.settle);  // the rooms hibernate
  const long after = rssKiB(o.pid);

  std::printf("%d sockets in %d rooms opened in %.1f s; server VmRSS %ld KiB before, %ld KiB just after, %ld KiB "
              "after %.1f s idle\n",
              o.sockets, o.rooms, openSecs, before, awake, after, o.settle);
  std::printf("per idle hibernated socket: %.2f KiB (%.0f bytes)\n", static_cast<double>(after - before) / o.sockets,
              static_cast<double>(after - before) * 1024.0 / o.sockets);

  // Every socket is still open: one message per room reaches all of that room's sockets.
  std::vector<bool> sent(static_cast<std::size_t>(o.rooms), false);
  int pendingWrites = 0;
  std::string text = "still there?";
  for (auto& s : sockets) {
    if (sent[static_cast<std::size_t>(s->room)] || !s->open) continue;
    sent[static_cast<std::size_t>(s->room)] = true;
    ++pendingWrites;
    s->ws.async_write(asio::buffer(text), [&](beast::error_code, std::size_t) { --pendingWrites; });
  }
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  auto delivered = [&] {
    long n = 0;
    for (auto& s : sockets) n += s->received > 0;
    return n;
  };
  ioc.restart();
  while (delivered() < o.sockets && Clock::now() < deadline) ioc.run_one_for(std::chrono::milliseconds(100));
  std::printf("after hibernation, one message per room reached %ld of %d sockets\n", delivered(), o.sockets);
  return delivered() == o.sockets ? 0 : 1;
}
