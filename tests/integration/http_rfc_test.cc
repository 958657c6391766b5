// HTTP/1.1 message framing as RFC 9112 has it, and the signals that stop the server, through
// the real binary over raw sockets (a client library would not send these requests): a
// request whose end the server cannot find is refused and its connection closed, so nothing
// smuggled after it is ever answered; SIGHUP drains like SIGTERM; WebSockets hear 1001.
#include "integration/server_process.h"
#include "integration/websocket_client.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <sys/mount.h>

#include <fstream>

#include <atomic>
#include <cctype>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace durable_it {
namespace {

using Clock = std::chrono::steady_clock;

class HttpRfcTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> startServer() {
    ServerProcess::Options o;
    o.persistDir = dir_ / "state";
    o.stderrLog = dir_ / ("server-" + std::to_string(++starts_) + ".log");
    o.extraArgs = {"--shards", "2"};
    return ServerProcess::start(std::move(o));
  }

  // How many HTTP responses begin in `raw`: status lines, "HTTP/1.x NNN " (an error message
  // may name the protocol too).
  static int responsesIn(const std::string& raw) {
    int n = 0;
    for (std::size_t at = raw.find("HTTP/1."); at != std::string::npos; at = raw.find("HTTP/1.", at + 1)) {
      const bool statusLine = (at == 0 || raw[at - 1] == '\n') && at + 13 <= raw.size() && raw[at + 8] == ' ' &&
                              std::isdigit(static_cast<unsigned char>(raw[at + 9])) && raw[at + 12] == ' ';
      if (statusLine) ++n;
    }
    return n;
  }

  // Sends `bytes`; expects exactly one response, `status` with a JSON {"error": ...} body, and
  // the connection closed after it: nothing that followed the bad request was answered.
  void expectRefused(ServerProcess& server, const std::string& bytes, int status) {
    SCOPED_TRACE(bytes);
    RawExchange x = rawExchange(server.host(), server.port(), bytes, 5s);
    EXPECT_TRUE(x.peerClosed) << "the connection stayed open after a bad request";
    EXPECT_EQ(responsesIn(x.received), 1) << x.received;
    HttpResponse r = parseResponse(x.received);
    EXPECT_EQ(r.status, status) << x.received;
    boost::system::error_code ec;
    auto v = boost::json::parse(r.body, ec);
    EXPECT_TRUE(!ec && v.is_object() && v.as_object().contains("error")) << r.body;
    EXPECT_EQ(x.received.find("\"count\""), std::string::npos) << "a smuggled request was answered";
  }

  TempDir dir_;
  int starts_ = 0;
};

// The body of each request below is itself a complete request: a server that took the body
// as empty would answer it too (the smuggling shape).
const std::string kSmuggled = "POST /counters/smuggled/increment HTTP/1.1\r\nHost: x\r\n\r\n";

std::string withBody(const std::string& head) {
  return head + "content-length: 0\r\n\r\n" + kSmuggled;
}

TEST_F(HttpRfcTest, UnknownTransferCodingsAreRefusedAndNothingAfterThemIsRead) {
  auto server = startServer();
  for (const std::string te : {"gzip", "chunked, identity", "xchunked", "identity", "chunked, gzip"}) {
    expectRefused(*server,
                  "POST /counters/te/increment HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te + "\r\n\r\n" + kSmuggled,
                  501);
  }
  // Two fields, even both "chunked": chunked applied twice, which the parser refuses.
  expectRefused(*server,
                "POST /counters/te/increment HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + kSmuggled,
                400);
  // Chunked with a Content-Length too: which one frames the body is ambiguous.
  {
    RawExchange x = rawExchange(server->host(), server->port(),
                                withBody("POST /counters/te/increment HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"),
                                5s);
    EXPECT_TRUE(x.peerClosed);
    EXPECT_EQ(responsesIn(x.received), 1) << x.received;
    EXPECT_EQ(parseResponse(x.received).status / 100, 4) << x.received;
  }
  // Transfer-Encoding in HTTP/1.0, which has none.
  expectRefused(*server,
                "POST /counters/te/increment HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + kSmuggled, 400);

  // Nothing of it reached an object, and plain chunked still works.
  EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/counters/smuggled").body, R"({"count":0})");
  EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/counters/te").body, R"({"count":0})");
  RawExchange ok = rawExchange(server->host(), server->port(),
                               "POST /counters/te/increment HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n"
                               "Connection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                               5s);
  EXPECT_EQ(parseResponse(ok.received).status, 200) << ok.received;
  EXPECT_EQ(parseResponse(ok.received).body, R"({"count":1})");
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(HttpRfcTest, Http11WithoutHostIsRefused) {
  auto server = startServer();
  expectRefused(*server, "GET /health HTTP/1.1\r\n\r\n" + kSmuggled, 400);
  expectRefused(*server, "GET http://x/health HTTP/1.1\r\n\r\n", 400);
  // HTTP/1.0 had no Host: still served.
  RawExchange old = rawExchange(server->host(), server->port(), "GET /health HTTP/1.0\r\n\r\n", 5s);
  EXPECT_EQ(parseResponse(old.received).status, 200) << old.received;
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(HttpRfcTest, ObsFoldIsRefused) {
  auto server = startServer();
  // A continuation line, with a space and with a tab.
  expectRefused(*server, "GET /health HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n b\r\n\r\n" + kSmuggled, 400);
  expectRefused(*server, "GET /health HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n\tb\r\n\r\n", 400);
  // Whitespace before the first field (RFC 9112 2.2), the same shape.
  expectRefused(*server, "GET /health HTTP/1.1\r\n Host: x\r\n\r\n", 400);
  // A head longer than one read of the server's: the scan resumes across reads.
  {
    std::string padding(20000, 'a');
    expectRefused(*server, "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + padding + "\r\n  folded\r\n\r\n", 400);
  }
  // A value with inner spaces and tabs is not a fold.
  RawExchange ok = rawExchange(server->host(), server->port(),
                               "GET /health HTTP/1.1\r\nHost: x\r\nX-Spaces: a \t b\r\nConnection: close\r\n\r\n", 5s);
  EXPECT_EQ(parseResponse(ok.received).status, 200) << ok.received;
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(HttpRfcTest, AbsoluteFormTargetsAreServedAndTheirAuthorityReplacesHost) {
  auto server = startServer();
  const std::string absolute = "http://example.test:8080/counters/abs/increment?x=1";
  RawExchange x = rawExchange(server->host(), server->port(),
                              "POST " + absolute + " HTTP/1.1\r\nHost: other\r\nContent-Length: 0\r\n"
                              "Connection: close\r\n\r\n",
                              5s);
  HttpResponse r = parseResponse(x.received);
  EXPECT_EQ(r.status, 200) << x.received;
  EXPECT_EQ(r.body, R"({"count":1})");
  // A scheme in any case, https too, and no path at all.
  RawExchange noPath = rawExchange(server->host(), server->port(),
                                   "GET HTTPS://example.test HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5s);
  EXPECT_EQ(parseResponse(noPath.received).status, 404) << noPath.received;  // "/" is no route of the seed
  RawExchange health = rawExchange(server->host(), server->port(),
                                   "GET http://example.test/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5s);
  EXPECT_EQ(parseResponse(health.received).status, 200) << health.received;
  EXPECT_EQ(parseResponse(health.received).body, "ok");
  // An authority that is none: refused, not served under some other host.
  expectRefused(*server, "GET http:///health HTTP/1.1\r\nHost: x\r\n\r\n", 400);
  expectRefused(*server, "GET http://user@evil/health HTTP/1.1\r\nHost: x\r\n\r\n", 400);
  EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/counters/abs").body, R"({"count":1})");
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(HttpRfcTest, AnAbsoluteFormTargetGivesTheWorkerItsAuthorityAsTheUrlsHost) {
  ServerProcess::Options o;
  o.binary = testServerPath();
  o.persistDir = dir_ / "state";
  o.stderrLog = dir_ / "echo.log";
  auto server = ServerProcess::start(std::move(o));
  RawExchange x = rawExchange(server->host(), server->port(),
                              "GET http://Example.TEST:8080/echo/url?q=1 HTTP/1.1\r\nHost: other\r\n"
                              "Connection: close\r\n\r\n",
                              5s);
  HttpResponse r = parseResponse(x.received);
  ASSERT_EQ(r.status, 200) << x.received;
  auto seen = boost::json::parse(r.body).as_object();
  EXPECT_EQ(seen.at("host").as_string(), "example.test:8080") << r.body;
  EXPECT_EQ(seen.at("pathname").as_string(), "/echo/url") << r.body;
  // The same route in origin form keeps the Host header's authority.
  RawExchange origin = rawExchange(server->host(), server->port(),
                                   "GET /echo/url HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n", 5s);
  HttpResponse o2 = parseResponse(origin.received);
  ASSERT_EQ(o2.status, 200) << origin.received;
  EXPECT_EQ(boost::json::parse(o2.body).as_object().at("host").as_string(), "origin.test") << o2.body;
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

// SIGHUP under load: the requests in flight get their answers, then the server exits 0.
TEST_F(HttpRfcTest, SighupDrainsLikeSigterm) {
  auto server = startServer();
  std::atomic<long long> acked{0};
  std::atomic<bool> started{false};
  std::mutex mu;
  std::vector<std::string> unexpected;
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&, t] {
      HttpConnection c(server->host(), server->port(), 20s);
      for (;;) {
        HttpResponse r;
        try {
          r = c.post("/counters/hup-" + std::to_string(t) + "/increment");
        } catch (const HttpError&) {
          return;  // closed while stopping: the request was never taken
        }
        if (r.status != 200) {
          std::lock_guard lock(mu);
          unexpected.push_back(std::to_string(r.status) + " " + r.body);
          return;
        }
        acked.fetch_add(1);
        started = true;
      }
    });
  }
  const auto until = Clock::now() + 10s;
  while (acked.load() < 100 && Clock::now() < until) std::this_thread::sleep_for(5ms);
  ASSERT_GE(acked.load(), 100) << "the load never started";
  const ExitStatus st = server->stop(20s, SIGHUP);
  for (auto& w : workers) w.join();
  EXPECT_EQ(st.describe(), "exit code 0");
  EXPECT_TRUE(unexpected.empty()) << unexpected.front();
  EXPECT_NE(server->stderrText().find("SIGHUP, draining"), std::string::npos) << server->stderrText();

  // Every acknowledged increment is there after a restart.
  auto again = startServer();
  long long stored = 0;
  for (int t = 0; t < 4; ++t) {
    auto r = httpRequest(again->host(), again->port(), "GET", "/counters/hup-" + std::to_string(t));
    stored += boost::json::parse(r.body).as_object().at("count").as_int64();
  }
  EXPECT_GE(stored, acked.load());
  EXPECT_EQ(again->stop().describe(), "exit code 0");
}

// SIGTERM with WebSockets open, on a chat room and on a hibernating room whose instance may be
// gone: each client gets a close frame with 1001 (going away), not a dropped connection.
TEST_F(HttpRfcTest, SigtermClosesWebSocketsWithGoingAway) {
  auto server = startServer();
  auto chat = WsClient::connect(server->host(), server->port(), "/rooms/r/websocket?user=ann");
  auto hib = WsClient::connect(server->host(), server->port(), "/hibernating/h/websocket");
  // Both sockets are open on the server's side: the chat room greets with frames.
  chat->send(R"({"type":"message","content":"hi"})");
  chat->readText(10s);

  ExitStatus st;
  const auto before = Clock::now();
  std::thread stopper([&] { st = server->stop(20s, SIGTERM); });
  const WsClosed a = chat->waitClosed(10s);
  const WsClosed b = hib->waitClosed(10s);
  stopper.join();
  EXPECT_TRUE(a.clean) << a.error;
  EXPECT_EQ(a.code, 1001) << a.reason << a.error;
  EXPECT_TRUE(b.clean) << b.error;
  EXPECT_EQ(b.code, 1001) << b.reason << b.error;
  EXPECT_EQ(st.describe(), "exit code 0");
  // The clients answered the close frame at once: the server did not wait out its bound.
  EXPECT_LT(Clock::now() - before, 5s);
}

// A restart on a full disk: a clear error naming the disk and the remedy, the state as it was,
// and a normal start once space is freed. Needs a small filesystem of its own: a tmpfs, which
// only root may mount (skipped otherwise).
TEST_F(HttpRfcTest, RestartOnAFullDiskSaysWhatToFree) {
  const auto mnt = dir_ / "small";
  std::filesystem::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) GTEST_SKIP() << "cannot mount a tmpfs (not root)";
  struct Unmount {
    std::filesystem::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  ServerProcess::Options o;
  o.persistDir = mnt / "state";
  o.stderrLog = dir_ / "full-1.log";
  auto server = ServerProcess::start(o);
  EXPECT_EQ(server->stop().describe(), "exit code 0");
  const std::string metaBefore = readFile(mnt / "state" / "meta.sqlite");
  {
    std::ofstream fill(mnt / "fill", std::ios::binary);
    const std::string block(4096, 'x');
    while (fill.write(block.data(), static_cast<std::streamsize>(block.size())) && fill.flush()) {
    }
  }
  CommandResult r = runBinary({"serve", "--config", seedConfig().string(), "--persist-to", (mnt / "state").string(),
                               "--listen", "127.0.0.1:0"},
                              dir_.path(), 10s);
  EXPECT_EQ(r.status.describe(), "exit code 1") << r.err;
  EXPECT_NE(r.err.find("meta.sqlite"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("is full"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("free space on it"), std::string::npos) << r.err;
  EXPECT_EQ(readFile(mnt / "state" / "meta.sqlite"), metaBefore) << "the failed start changed the state";

  std::filesystem::remove(mnt / "fill");
  o.stderrLog = dir_ / "full-2.log";
  auto again = ServerProcess::start(o);
  EXPECT_EQ(httpRequest(again->host(), again->port(), "GET", "/health").status, 200);
  EXPECT_EQ(again->stop().describe(), "exit code 0");
}

}  // namespace
}  // namespace durable_it
