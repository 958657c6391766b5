// The admin listener of the real binary: GET /metrics counting real traffic exactly, the admin
// API, where the listener goes (default port, --admin, off) and the token rule.
#include "integration/server_process.h"
#include "integration/websocket_client.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json.hpp>

#include <sstream>
#include <thread>

namespace durable_it {
namespace {

namespace fs = std::filesystem;

// The value of the sample `name{labels}` (labels exactly as the server writes them, "" for
// none), or nullopt when the scrape has no such line.
std::optional<double> sampleOf(const std::string& scrape, const std::string& series) {
  std::istringstream in(scrape);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

double valueOf(const std::string& scrape, const std::string& series) {
  auto v = sampleOf(scrape, series);
  EXPECT_TRUE(v.has_value()) << "no sample " << series << " in:\n" << scrape;
  return v.value_or(-1);
}

class AdminTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> start(std::vector<std::string> extra = {"--shards", "2"},
                                       fs::path config = seedConfig()) {
    ServerProcess::Options o;
    o.persistDir = dir_ / "state";
    o.stderrLog = dir_ / ("server-" + std::to_string(++starts_) + ".log");
    o.config = std::move(config);
    o.extraArgs = std::move(extra);
    return ServerProcess::start(o);
  }

  std::string scrape(const ServerProcess& s) {
    auto r = httpRequest("127.0.0.1", s.adminPort(), "GET", "/metrics");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    return r.body;
  }

  TempDir dir_;
  int starts_ = 0;
};

TEST_F(AdminTest, MetricsCountTheTrafficExactly) {
  auto server = start();
  ASSERT_NE(server->adminPort(), 0);
  ASSERT_NE(server->adminPort(), server->port());

  const std::string before = scrape(*server);
  EXPECT_FALSE(sampleOf(before, R"(durable_http_requests_total{method="POST",status="200"})"));
  EXPECT_EQ(valueOf(before, R"(durable_objects_live{namespace="COUNTER"})"), 0);
  EXPECT_EQ(valueOf(before, "durable_websockets_open"), 0);

  HttpConnection http("127.0.0.1", server->port());
  for (int i = 0; i < 7; ++i) ASSERT_EQ(http.post("/counters/c" + std::to_string(i % 3) + "/increment").status, 200);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(http.get("/no/such/route").status, 404);
  ASSERT_EQ(http.request("DELETE", "/health").status, 404);

  // A request is counted once its response is written, which the client may see first.
  std::string after;
  for (int i = 0; i < 100; ++i) {
    after = scrape(*server);
    if (sampleOf(after, "durable_http_request_duration_seconds_count").value_or(0) >= 11) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(valueOf(after, R"(durable_http_requests_total{method="POST",status="200"})"), 7);
  EXPECT_EQ(valueOf(after, R"(durable_http_requests_total{method="GET",status="404"})"), 3);
  EXPECT_EQ(valueOf(after, R"(durable_http_requests_total{method="DELETE",status="404"})"), 1);
  EXPECT_EQ(valueOf(after, "durable_http_request_duration_seconds_count"), 11);
  EXPECT_EQ(valueOf(after, R"(durable_http_request_duration_seconds_bucket{le="+Inf"})"), 11);
  EXPECT_GT(valueOf(after, "durable_http_request_duration_seconds_sum"), 0);
  EXPECT_EQ(valueOf(after, R"(durable_objects_live{namespace="COUNTER"})"), 3);
  EXPECT_EQ(valueOf(after, R"(durable_object_activations_total{namespace="COUNTER"})"), 3);
  EXPECT_EQ(valueOf(after, R"(durable_object_evictions_total{namespace="COUNTER"})"), 0);
  // Seven increments, each durable before its reply: at least one commit, at most seven,
  // each after one fdatasync at least (durability full).
  const double commits = valueOf(after, "durable_storage_commit_duration_seconds_count");
  EXPECT_GE(commits, 1);
  EXPECT_LE(commits, 7);
  EXPECT_EQ(valueOf(after, "durable_storage_commit_batch_size_count"), commits);
  EXPECT_GE(valueOf(after, "durable_storage_commit_batch_size_sum"), commits);
  EXPECT_GE(valueOf(after, "durable_storage_sync_duration_seconds_count"), 1);

  // The admin listener's own requests are not counted: only the three scrapes happened.
  const std::string again = scrape(*server);
  EXPECT_EQ(valueOf(again, "durable_http_request_duration_seconds_count"), 11);
}

TEST_F(AdminTest, MetricsCountWebSockets) {
  auto server = start();
  {
    auto ann = WsClient::connect("127.0.0.1", server->port(), "/rooms/lobby/websocket?user=ann");
    ann->readText();  // the history frame
    auto bob = WsClient::connect("127.0.0.1", server->port(), "/rooms/lobby/websocket?user=bob");
    bob->readText();
    ann->readText();  // bob joined
    const std::string open = scrape(*server);
    EXPECT_EQ(valueOf(open, "durable_websockets_open"), 2);
    EXPECT_EQ(valueOf(open, R"(durable_objects_live{namespace="ROOM"})"), 1);
    // 101s count as requests.
    EXPECT_EQ(valueOf(open, R"(durable_http_requests_total{method="GET",status="101"})"), 2);

    const double outBefore = valueOf(open, R"(durable_websocket_messages_total{direction="out"})");
    ann->send(R"({"type":"message","content":"hi"})");
    // The broadcast reaches both members (the sender too); frames read so far may be older ones.
    std::string sent;
    for (int i = 0; i < 100; ++i) {
      sent = scrape(*server);
      if (sampleOf(sent, R"(durable_websocket_messages_total{direction="out"})").value_or(0) >= outBefore + 2) break;
      std::this_thread::sleep_for(20ms);
    }
    EXPECT_EQ(valueOf(sent, R"(durable_websocket_messages_total{direction="in"})"), 1);
    EXPECT_EQ(valueOf(sent, R"(durable_websocket_messages_total{direction="out"})"), outBefore + 2);
    ann->close();
    bob->close();
  }
  // The sockets' closes reach the server after the clients' handshakes.
  double open = -1;
  for (int i = 0; i < 100 && open != 0; ++i) {
    open = valueOf(scrape(*server), "durable_websockets_open");
    if (open != 0) std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(open, 0);

}

TEST_F(AdminTest, MetricsCountAlarms) {
  ServerProcess::Options o;
  o.binary = testServerPath();
  o.config = testServerConfig();
  o.persistDir = dir_ / "state";
  o.stderrLog = dir_ / "alarms.log";
  auto server = ServerProcess::start(o);
  HttpConnection http("127.0.0.1", server->port());
  ASSERT_EQ(http.get("/probe/far/set?in=3600000").status, 200);
  ASSERT_EQ(http.get("/probe/near/set?in=50").status, 200);
  // The near one fires, the far one stays pending.
  std::string s;
  for (int i = 0; i < 200; ++i) {
    s = scrape(*server);
    if (sampleOf(s, R"(durable_alarms_fired_total{result="ok"})").value_or(0) >= 1 &&
        sampleOf(s, "durable_alarms_pending").value_or(0) == 1) {
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(valueOf(s, R"(durable_alarms_fired_total{result="ok"})"), 1);
  EXPECT_EQ(valueOf(s, R"(durable_alarms_fired_total{result="error"})"), 0);
  EXPECT_EQ(valueOf(s, "durable_alarms_pending"), 1);
}

TEST_F(AdminTest, NamespacesListTheObjectsWritten) {
  auto server = start();
  HttpConnection http("127.0.0.1", server->port());
  for (const char* name : {"a", "b", "c", "a"}) ASSERT_EQ(http.post(std::string("/counters/") + name + "/increment").status, 200);
  auto r = httpRequest("127.0.0.1", server->adminPort(), "GET", "/admin/namespaces");
  ASSERT_EQ(r.status, 200) << r.body;
  auto list = boost::json::parse(r.body).as_array();
  ASSERT_EQ(list.size(), 6u) << r.body;
  bool sawCounter = false;
  for (const auto& v : list) {
    const auto& o = v.as_object();
    EXPECT_EQ(o.at("backend").as_string(), o.at("class").as_string() == "Notes" ? "sqlite" : "kv");
    if (o.at("binding").as_string() == "COUNTER") {
      sawCounter = true;
      EXPECT_EQ(o.at("class").as_string(), "Counter");
      EXPECT_EQ(o.at("objects").as_int64(), 3);
    } else {
      EXPECT_EQ(o.at("objects").as_int64(), 0) << o.at("binding").as_string();
    }
  }
  EXPECT_TRUE(sawCounter);

  auto missing = httpRequest("127.0.0.1", server->adminPort(), "GET", "/admin/nothing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_TRUE(boost::json::parse(missing.body).as_object().contains("error")) << missing.body;
  // Never on the public listener.
  EXPECT_EQ(http.get("/metrics").status, 404);
}

TEST_F(AdminTest, DefaultPortIsTheMainPortPlusAThousandAndOffTurnsItOff) {
  // A port whose +1000 is free now (a race with other processes is possible but unlikely).
  std::uint16_t port = 0;
  for (int attempt = 0; attempt < 20 && port == 0; ++attempt) {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    const auto p = a.local_endpoint().port();
    if (p > 64000) continue;
    boost::system::error_code ec;
    boost::asio::ip::tcp::acceptor b(io);
    b.open(boost::asio::ip::tcp::v4());
    b.bind({boost::asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(p + 1000)}, ec);
    if (!ec) port = p;
  }
  ASSERT_NE(port, 0);
  ServerProcess::Options o;
  o.persistDir = dir_ / "state";
  o.stderrLog = dir_ / "fixed.log";
  o.extraArgs = {"--listen", "127.0.0.1:" + std::to_string(port)};
  auto server = ServerProcess::start(o);
  EXPECT_EQ(server->port(), port);
  EXPECT_EQ(server->adminPort(), port + 1000);
  EXPECT_EQ(httpRequest("127.0.0.1", server->adminPort(), "GET", "/metrics").status, 200);
  server->stop();

  auto off = start({"--admin", "off"});
  EXPECT_EQ(off->adminPort(), 0);
}

TEST_F(AdminTest, OffLoopbackTheListenerNeedsAToken) {
  auto refused = runBinary({"serve", "--config", seedConfig().string(), "--listen", "127.0.0.1:0", "--persist-to",
                            (dir_ / "refused").string(), "--admin", "0.0.0.0:0"},
                           dir_.path());
  EXPECT_TRUE(refused.status.exited && refused.status.code == 2) << refused.status.describe() << refused.err;
  EXPECT_NE(refused.err.find("admin_token"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("DURABLE_ADMIN_TOKEN"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(dir_ / "refused" / "partitions"));

  // With a token in the config it starts, and every request must carry it.
  std::string config = readFile(seedConfig());
  config += "admin_token = \"s3cret-token-0123456789\"\n";
  writeFile(dir_ / "wrangler.toml", config);
  auto server = start({"--admin", "0.0.0.0:0"}, dir_ / "wrangler.toml");
  auto noToken = httpRequest("127.0.0.1", server->adminPort(), "GET", "/metrics");
  EXPECT_EQ(noToken.status, 401);
  EXPECT_EQ(noToken.header("www-authenticate"), "Bearer");
  EXPECT_TRUE(boost::json::parse(noToken.body).as_object().contains("error")) << noToken.body;

  HttpConnection admin("127.0.0.1", server->adminPort());
  EXPECT_EQ(admin.request("GET", "/metrics", "", {{"Authorization", "Bearer wrong-token-0123456789x"}}).status, 401);
  EXPECT_EQ(admin.request("GET", "/metrics", "", {{"Authorization", "Bearer s3cret-token-0123456789"}}).status, 200);

  // A token too short to be one is refused with the rule.
  writeFile(dir_ / "short.toml", readFile(seedConfig()) + "admin_token = \"short\"\n");
  auto shortToken = runBinary({"serve", "--config", (dir_ / "short.toml").string(), "--listen", "127.0.0.1:0",
                               "--persist-to", (dir_ / "short").string()},
                              dir_.path());
  EXPECT_EQ(shortToken.status.code, 1) << shortToken.err;
  EXPECT_NE(shortToken.err.find("at least 16 characters"), std::string::npos) << shortToken.err;
}

TEST_F(AdminTest, JsonLogsAreOneObjectPerLine) {
  writeFile(dir_ / "json.toml", readFile(seedConfig()) + "log_format = \"json\"\naccess_log = true\n");
  auto server = start({}, dir_ / "json.toml");
  HttpConnection http("127.0.0.1", server->port());
  ASSERT_EQ(http.get("/counters/j").status, 200);
  ASSERT_EQ(http.get("/bad\xff").status, 404);
  server->stop();
  std::istringstream lines(server->stderrText());
  std::string line;
  int access = 0, total = 0;
  while (std::getline(lines, line)) {
    ++total;
    boost::system::error_code ec;
    auto v = boost::json::parse(line, ec);
    ASSERT_FALSE(ec) << "not JSON: " << line;
    const auto& o = v.as_object();
    EXPECT_EQ(o.at("time").as_string().size(), 24u) << line;  // 2026-12-06T16:08:13.123Z
    EXPECT_TRUE(o.at("level").as_string() == "info" || o.at("level").as_string() == "warn") << line;
    if (o.at("msg").as_string().starts_with("access GET /counters/j status=200")) ++access;
  }
  EXPECT_GE(total, 3);
  EXPECT_EQ(access, 1);
}

}  // namespace
}  // namespace durable_it
