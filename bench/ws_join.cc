// Fairness under a join storm (issue 18, item 5): N WebSockets join one ChatRoom of a running
// `durable` serving the seed app (each join is broadcast to every member, so N joins cost
// N²/2 frames), while a probe asks GET /health on the same server every few milliseconds over
// a new connection. Prints the probe's latency (p50, p99, max) while the joins run, the join
// rate, and the frames the members received against what the seed's broadcasts owe them.
//
//   ws_join --port 8787 [--sockets 3000] [--concurrency 16] [--probe-ms 10] [--room NAME]
//           [--drain-seconds 60]
//
// The members read raw bytes and count frames by their headers (server frames are unmasked):
// a client that parsed every frame with a WebSocket library would be the bottleneck on two
// shared cores. Not a test: bench/README.md.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  unsigned short port = 8787;
  int sockets = 3000;
  int concurrency = 16;
  int probeMs = 10;
  std::string room = "joinstorm";
  double drainSeconds = 60;
};

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
    if (a == "--host") o.host = value();
    else if (a == "--port") o.port = static_cast<unsigned short>(std::stoi(value()));
    else if (a == "--sockets") o.sockets = std::stoi(value());
    else if (a == "--concurrency") o.concurrency = std::stoi(value());
    else if (a == "--probe-ms") o.probeMs = std::stoi(value());
    else if (a == "--room") o.room = value();
    else if (a == "--drain-seconds") o.drainSeconds = std::stod(value());
    else {
      std::cerr << "usage: ws_join --port P [--sockets N] [--concurrency C] [--probe-ms MS] [--room NAME] "
                   "[--drain-seconds S]\n";
      std::exit(2);
    }
  }
  return o;
}

struct Totals {
  std::uint64_t frames = 0;  // complete frames received by all members
  int joined = 0;            // handshakes answered 101
  int failed = 0;
};

// One member: a raw TCP connection that sends the upgrade, checks the 101, then reads and
// counts frames until the end.
class Member : public std::enable_shared_from_this<Member> {
 public:
  Member(asio::io_context& ioc, const Options& o, Totals& totals, int index, std::function<void()> onJoined)
      : socket_(ioc), o_(o), totals_(totals), index_(index), onJoined_(std::move(onJoined)) {}

  void start() {
    socket_.async_connect(tcp::endpoint(asio::ip::make_address(o_.host), o_.port),
                          [self = shared_from_this()](boost::system::error_code ec) {
                            if (ec) return self->fail("connect: " + ec.message());
                            self->socket_.set_option(tcp::no_delay(true));
                            self->request_ = "GET /rooms/" + self->o_.room + "/websocket?user=u" +
                                             std::to_string(self->index_) +
                                             " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: "
                                             "Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                             "Sec-WebSocket-Version: 13\r\n\r\n";
                            asio::async_write(self->socket_, asio::buffer(self->request_),
                                              [self](boost::system::error_code ec, std::size_t) {
                                                if (ec) return self->fail("write: " + ec.message());
                                                self->readHead();
                                              });
                          });
  }

 private:
  void readHead() {
    asio::async_read_until(socket_, asio::dynamic_buffer(head_), "\r\n\r\n",
                           [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                             if (ec) return self->fail("handshake: " + ec.message());
                             if (self->head_.compare(0, 12, "HTTP/1.1 101") != 0) {
                               return self->fail("handshake answered " + self->head_.substr(0, self->head_.find('\r')));
                             }
                             // Bytes past the head are the first frames.
                             self->pending_.assign(self->head_.begin() + static_cast<std::ptrdiff_t>(n),
                                                   self->head_.end());
                             self->head_.clear();
                             self->head_.shrink_to_fit();
                             ++self->totals_.joined;
                             self->count();
                             self->onJoined_();
                             self->readFrames();
                           });
  }

  void readFrames() {
    socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      if (ec) return;  // the end of the run closes every member
      self->pending_.append(self->buf_.data(), n);
      self->count();
      self->readFrames();
    });
  }

  // Counts the complete frames in pending_ and keeps only the unfinished one.
  void count() {
    std::size_t at = 0;
    for (;;) {
      if (pending_.size() - at < 2) break;
      const auto* b = reinterpret_cast<const unsigned char*>(pending_.data() + at);
      const unsigned len7 = b[1] & 0x7f;
      const std::size_t header = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
      if (pending_.size() - at < header) break;
      std::uint64_t len = len7;
      if (len7 >= 126) {
        len = 0;
        for (std::size_t i = 2; i < header; ++i) len = (len << 8) | b[i];
      }
      if (pending_.size() - at < header + len) break;
      at += header + len;
      ++totals_.frames;
    }
    pending_.erase(0, at);
  }

  void fail(const std::string& why) {
    if (totals_.failed++ < 5) std::cerr << "member " << index_ << ": " << why << "\n";
    onJoined_();
  }

  tcp::socket socket_;
  const Options& o_;
  Totals& totals_;
  int index_;
  std::function<void()> onJoined_;
  std::string request_;
  std::string head_;
  std::string pending_;
  std::array<char, 65536> buf_{};
};

// GET /health over a new connection; the latency in ms, or a negative figure on failure.
double probeOnce(const Options& o) {
  const auto start = Clock::now();
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(o.port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  double result = -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    static const char kRequest[] = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if (::send(fd, kRequest, sizeof kRequest - 1, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof kRequest - 1)) {
      std::string got;
      char buf[512];
      for (;;) {
        pollfd p{fd, POLLIN, 0};
        // A probe that waits 60 s counts as 60 s: the run is already far past the target.
        if (::poll(&p, 1, 60000) <= 0) break;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
      }
      if (got.compare(0, 12, "HTTP/1.1 200") == 0) {
        result = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      }
    }
  }
  ::close(fd);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  asio::io_context ioc;
  Totals totals;
  std::vector<std::shared_ptr<Member>> members;
  members.reserve(static_cast<std::size_t>(o.sockets));
  int started = 0;
  int answered = 0;
  Clock::time_point joinsDone;
  std::function<void()> next;
  next = [&] {
    if (started >= o.sockets) return;
    auto m = std::make_shared<Member>(ioc, o, totals, started++, [&] {
      if (++answered == o.sockets) joinsDone = Clock::now();
      next();
    });
    members.push_back(m);
    m->start();
  };

  std::atomic<bool> probing{true};
  std::vector<double> probes;
  int probeFailures = 0;
  std::mutex probeMu;
  // The probe runs beside the joins on a thread of its own, as an unrelated client would.
  std::thread probe([&] {
    while (probing.load()) {
      const double ms = probeOnce(o);
      {
        std::lock_guard lock(probeMu);
        if (ms < 0) ++probeFailures;
        else probes.push_back(ms);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(o.probeMs));
    }
  });

  const auto start = Clock::now();
  for (int i = 0; i < o.concurrency; ++i) next();
  // Runs until every join was answered, then lets the frames still owed arrive.
  asio::steady_timer timer(ioc);
  const std::uint64_t expected =
      static_cast<std::uint64_t>(o.sockets) * static_cast<std::uint64_t>(o.sockets + 1) / 2 +
      static_cast<std::uint64_t>(o.sockets);  // joins seen by members, plus one history frame each
  Clock::time_point drainDeadline{};
  std::function<void()> tick;
  tick = [&] {
    timer.expires_after(std::chrono::milliseconds(50));
    timer.async_wait([&](boost::system::error_code) {
      if (answered < o.sockets) return tick();
      if (drainDeadline == Clock::time_point{}) {
        drainDeadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.drainSeconds));
        probing.store(false);  // the latency that matters is while the joins run
      }
      if (totals.frames >= expected || Clock::now() >= drainDeadline) return ioc.stop();
      tick();
    });
  };
  tick();
  ioc.run();
  const auto end = Clock::now();
  probing.store(false);
  probe.join();

  std::sort(probes.begin(), probes.end());
  auto pct = [&](double p) -> double {
    if (probes.empty()) return 0;
    return probes[std::min(probes.size() - 1, static_cast<std::size_t>(p * static_cast<double>(probes.size())))];
  };
  const double joinSecs = std::chrono::duration<double>(joinsDone - start).count();
  const double allSecs = std::chrono::duration<double>(end - start).count();
  std::printf(
      "sockets=%d concurrency=%d: joined %d (failed %d) in %.2f s = %.0f joins/s; /health during the joins: %zu probes, "
      "p50 %.2f ms p99 %.2f ms max %.2f ms, %d failed; frames %llu of %llu owed, all in %.2f s\n",
      o.sockets, o.concurrency, totals.joined, totals.failed, joinSecs, totals.joined / joinSecs, probes.size(),
      pct(0.50), pct(0.99), probes.empty() ? 0.0 : probes.back(), probeFailures,
      static_cast<unsigned long long>(totals.frames), static_cast<unsigned long long>(expected), allSecs);
  return totals.failed == 0 && totals.frames >= expected ? 0 : 1;
}
