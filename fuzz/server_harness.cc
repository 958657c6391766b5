#include "server_harness.h"

#include "seed/app.h"
#include "seed/chat_room.h"
#include "seed/counter.h"
#include "seed/hibernating_room.h"
#include "seed/rate_limiter.h"
#include "seed/scheduled_task.h"

#include <durable/testing.h>
#include <durable/worker.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace durable_fuzz {

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "server harness: %s (errno %d: %s)\n", what, errno, std::strerror(errno));
  std::abort();
}

// Never destroyed: the server's threads run until the process exits, and libFuzzer's exit
// path must not wait for them. Globals, so LeakSanitizer sees them as reachable.
durable::testing::Env* g_env = nullptr;
durable::Worker* g_worker = nullptr;

std::uint64_t g_runs = 0;
std::uint64_t g_open = 0;

void report() {
  std::fprintf(stderr, "server harness: %llu runs, %llu left open by the server after %lld ms\n",
               static_cast<unsigned long long>(g_runs), static_cast<unsigned long long>(g_open),
               static_cast<long long>(kCloseTimeout.count()));
}

}  // namespace

std::uint16_t serverPort() {
  static const std::uint16_t port = [] {
    durable::testing::EnvOptions options;
    // Throughput over durability: a fuzzer does not need every write on disk, and idle
    // objects should leave memory well within a run.
    options.durability = "relaxed";
    options.idleTimeoutMs = 2000;
    options.hibernationTimeoutMs = 1000;
    options.shards = 2;
    g_env = new durable::testing::Env(options);
    auto* env = g_env;
    env->exportClass<seed::Counter>("COUNTER");
    env->exportClass<seed::RateLimiter>("RATE_LIMITER");
    env->exportClass<seed::ScheduledTask>("TASK");
    env->exportClass<seed::ChatRoom>("ROOM");
    env->exportClass<seed::HibernatingRoom>("HIBERNATING_ROOM");
    g_worker = new durable::Worker(seed::makeApp());
    const std::uint16_t p = env->serve(*g_worker);
    std::atexit(report);
    return p;
  }();
  return port;
}

Connection::Connection(std::uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) die("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("connect to the server");
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{2, 0};  // a write never blocks longer than this
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

Connection::~Connection() {
  linger l{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd_);
}

bool Connection::write(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void Connection::shutdownWrite() { ::shutdown(fd_, SHUT_WR); }

namespace {
// One read with a deadline: >0 bytes read, 0 end of stream or error, -1 timed out.
ssize_t readSome(int fd, char* buf, std::size_t size, Clock::time_point deadline) {
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return -1;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return -1;
    const ssize_t n = ::recv(fd, buf, size, 0);
    if (n < 0 && errno == EINTR) continue;
    return n < 0 ? 0 : n;
  }
}
}  // namespace

bool Connection::readUntil(std::string_view marker, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  char buf[4096];
  while (received.find(marker) == std::string::npos) {
    const ssize_t n = readSome(fd_, buf, sizeof buf, deadline);
    if (n <= 0) return false;
    received.append(buf, static_cast<std::size_t>(n));
  }
  return true;
}

bool Connection::readUntilClosed(std::chrono::milliseconds timeout, std::size_t max) {
  const auto deadline = Clock::now() + timeout;
  char buf[16384];
  while (true) {
    const ssize_t n = readSome(fd_, buf, sizeof buf, deadline);
    if (n < 0) return false;
    if (n == 0) return true;
    if (received.size() < max) received.append(buf, std::min<std::size_t>(static_cast<std::size_t>(n), max - received.size()));
  }
}

void upgradeWebSocket(Connection& c, std::string_view target) {
  std::string request = "GET ";
  request += target;
  request +=
      " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  if (!c.write(request) || !c.readUntil("\r\n\r\n", std::chrono::seconds(10)) ||
      c.received.rfind("HTTP/1.1 101", 0) != 0) {
    std::fprintf(stderr, "server harness: the WebSocket upgrade failed; got: %.300s\n", c.received.c_str());
    std::abort();
  }
  // What follows the headers (nothing, usually) stays in `received`.
  c.received.erase(0, c.received.find("\r\n\r\n") + 4);
}

void requireServerAlive(std::uint16_t port, const char* after) {
  Connection c(port);
  if (!c.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n") ||
      !c.readUntilClosed(std::chrono::seconds(10)) || c.received.rfind("HTTP/1.1 200", 0) != 0) {
    std::fprintf(stderr, "server harness: the server no longer answers GET /health after %s; got: %.200s\n", after,
                 c.received.c_str());
    std::abort();
  }
}

void afterRun(std::uint16_t port, bool closed) {
  ++g_runs;
  if (!closed) ++g_open;
  if (!closed) requireServerAlive(port, "an input whose connection it left open");
  else if (g_runs % 256 == 0) requireServerAlive(port, "the last 256 inputs");
}

}  // namespace durable_fuzz
