// Bad input and limits against the real binary: each gets a clear error, loses nothing, and
// leaves the server serving.
#include "integration/server_process.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <vector>

namespace durable_it {
namespace {

// A config: the seed's, plus extra [durable] settings.
std::filesystem::path configWith(const TempDir& dir, const std::string& settings) {
  std::string text = readFile(seedConfig());
  text += "\n" + settings + "\n";
  auto path = dir / "wrangler.toml";
  // [durable] already ends the seed's file: appended keys land in it.
  writeFile(path, text);
  return path;
}

std::unique_ptr<ServerProcess> start(const TempDir& dir, const std::filesystem::path& config) {
  ServerProcess::Options o;
  o.config = config;
  o.persistDir = dir / "state";
  o.stderrLog = dir / "server.log";
  return ServerProcess::start(o);
}

// An idle TCP connection: connected, nothing sent.
int openIdle(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A connection the server has surely accepted: one keep-alive request answered on it, then
// left open and idle.
int openServed(std::uint16_t port) {
  int fd = openIdle(port);
  if (fd < 0) return -1;
  const std::string req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  char buf[512];
  while (got.find("\r\n\r\nok") == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      ::close(fd);
      return -1;
    }
    got.append(buf, static_cast<std::size_t>(n));
  }
  return fd;
}

std::int64_t count(const HttpResponse& r) { return boost::json::parse(r.body).as_object().at("count").as_int64(); }

TEST(LimitsTest, TenThousandIdleConnectionsDoNotDisturbService) {
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  if (files.rlim_cur < 10200 && files.rlim_max >= 10200) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  if (files.rlim_cur < 10200) GTEST_SKIP() << "needs 10,200 descriptors, the limit here is " << files.rlim_cur;
  TempDir dir;
  auto server = start(dir, seedConfig());

  std::vector<int> idle;
  for (int i = 0; i < 10000; ++i) {
    int fd = openIdle(server->port());
    ASSERT_GE(fd, 0) << "connection " << i;
    idle.push_back(fd);
  }
  HttpConnection conn(server->host(), server->port());
  for (int i = 1; i <= 200; ++i) {
    auto r = conn.post("/counters/busy/increment");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(count(r), i);
  }
  EXPECT_EQ(conn.get("/health").body, "ok");
  for (int fd : idle) ::close(fd);
  EXPECT_EQ(server->stop().code, 0);
}

TEST(LimitsTest, ConnectionsPastTheLimitAreRefusedNotCrashed) {
  TempDir dir;
  auto server = start(dir, configWith(dir, "max_connections = 20"));
  std::vector<int> idle;
  for (int i = 0; i < 20; ++i) {
    idle.push_back(openServed(server->port()));
    ASSERT_GE(idle.back(), 0) << "connection " << i;
  }
  // The 21st is answered 503 and closed.
  auto refused = rawExchange(server->host(), server->port(), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = parseResponse(refused.received);
  ASSERT_EQ(r.status, 503);
  EXPECT_EQ(boost::json::parse(r.body).as_object().at("error").as_string(), "too many connections");
  EXPECT_TRUE(refused.peerClosed);
  // Once some leave, service resumes.
  for (int fd : idle) ::close(fd);
  for (int attempt = 0; attempt < 100; ++attempt) {
    try {
      if (httpRequest(server->host(), server->port(), "GET", "/health").status == 200) break;
    } catch (const HttpError&) {
    }
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(httpRequest(server->host(), server->port(), "POST", "/counters/after/increment").body, R"({"count":1})");
  EXPECT_EQ(server->stop().code, 0);
}

TEST(LimitsTest, ClientsThatNeverFinishTheirHeadersAreDropped) {
  TempDir dir;
  auto server = start(dir, configWith(dir, "request_timeout_ms = 500"));
  // Two slowloris connections: one trickles a header byte every 50 ms, forever; one stops
  // halfway through its head.
  int trickler = openIdle(server->port());
  int stalled = openIdle(server->port());
  ASSERT_GE(trickler, 0);
  ASSERT_GE(stalled, 0);
  const std::string head = "GET /health HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(::send(stalled, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  ASSERT_EQ(::send(trickler, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  const auto started = std::chrono::steady_clock::now();
  const auto closedByPeer = [](int fd) {
    char c;
    const ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  };
  bool tricklerDropped = false;
  bool stalledDropped = false;
  std::chrono::milliseconds tricklerAfter{0};
  for (int i = 0; i < 200 && !(tricklerDropped && stalledDropped); ++i) {
    const std::string byte = "X-Slow-" + std::to_string(i % 10) + ": 1\r\n";
    if (!tricklerDropped && ::send(trickler, byte.data(), byte.size(), MSG_NOSIGNAL) < 0) tricklerDropped = true;
    std::this_thread::sleep_for(50ms);
    if (!tricklerDropped && closedByPeer(trickler)) tricklerDropped = true;
    if (tricklerDropped && tricklerAfter.count() == 0) {
      tricklerAfter = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    }
    stalledDropped = stalledDropped || closedByPeer(stalled);
    // Meanwhile everyone else is served.
    if (i % 4 == 0) EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/health").status, 200);
  }
  EXPECT_TRUE(tricklerDropped) << "a client trickling headers was never dropped";
  EXPECT_TRUE(stalledDropped) << "a client that stopped halfway through its head was never dropped";
  // Dropped near the limit, not at the first byte.
  EXPECT_GE(tricklerAfter, 400ms);
  EXPECT_LE(tricklerAfter, 3000ms);
  ::close(trickler);
  ::close(stalled);
  EXPECT_EQ(httpRequest(server->host(), server->port(), "POST", "/counters/slow/increment").body, R"({"count":1})");
  EXPECT_EQ(server->stop().code, 0);
}

TEST(LimitsTest, OversizedBodyGets413AndChangesNothing) {
  TempDir dir;
  auto server = start(dir, configWith(dir, "max_body_bytes = 1024"));
  auto small = httpRequest(server->host(), server->port(), "POST", "/counters/b/increment", std::string(1000, 'x'));
  EXPECT_EQ(small.status, 200);
  std::string big = "POST /counters/b/increment HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x');
  auto r = parseResponse(rawExchange(server->host(), server->port(), big).received);
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(boost::json::parse(r.body).as_object().contains("error"));
  EXPECT_EQ(count(httpRequest(server->host(), server->port(), "GET", "/counters/b")), 1);
  EXPECT_EQ(server->stop().code, 0);
}

TEST(LimitsTest, OversizedHeadersGet431) {
  TempDir dir;
  auto server = start(dir, seedConfig());
  std::string req = "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(40 * 1024, 'a') + "\r\n\r\n";
  auto r = parseResponse(rawExchange(server->host(), server->port(), req).received);
  EXPECT_EQ(r.status, 431);
  EXPECT_TRUE(boost::json::parse(r.body).as_object().contains("error"));
  EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/health").body, "ok");
  EXPECT_EQ(server->stop().code, 0);
}

// Not refused: as in a Worker, each byte that is not UTF-8 decodes to U+FFFD (issue 18).
TEST(LimitsTest, PathParameterThatIsNotUtf8IsServed) {
  TempDir dir;
  auto server = start(dir, seedConfig());
  auto r = httpRequest(server->host(), server->port(), "POST", "/counters/%FF%FE/increment");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(boost::json::parse(r.body).as_object().at("count").as_int64(), 1);
  auto same = httpRequest(server->host(), server->port(), "GET", "/counters/%EF%BF%BD%EF%BF%BD");
  EXPECT_EQ(boost::json::parse(same.body).as_object().at("count").as_int64(), 1);
  EXPECT_EQ(server->stop().code, 0);
}

}  // namespace
}  // namespace durable_it
