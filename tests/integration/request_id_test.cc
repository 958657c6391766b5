// Request ids through the real binary: taken from x-request-id or made, answered in the
// response, carried on stub calls and RPC to the object, printed on every log line the request
// causes (the Worker's and the object's, tagged with the object), and traceparent passed on.
#include "integration/server_process.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace durable_it {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr const char* kTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

class RequestIdTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> start(fs::path config = testServerConfig()) {
    ServerProcess::Options o;
    o.binary = testServerPath();
    o.config = std::move(config);
    o.persistDir = dir_ / "state";
    o.stderrLog = dir_ / "server.log";
    o.extraArgs = {"--shards", "2"};
    return ServerProcess::start(o);
  }

  // The server's log lines that contain `needle`, waiting a little for them to be written.
  static std::vector<std::string> linesWith(const ServerProcess& s, const std::string& needle, std::size_t want = 1) {
    std::vector<std::string> found;
    for (int i = 0; i < 100; ++i) {
      found.clear();
      std::istringstream in(s.stderrText());
      std::string line;
      while (std::getline(in, line)) {
        if (line.find(needle) != std::string::npos) found.push_back(line);
      }
      if (found.size() >= want) break;
      std::this_thread::sleep_for(20ms);
    }
    return found;
  }

  TempDir dir_;
};

TEST_F(RequestIdTest, AnIdIsTakenOrMadeAnsweredAndCarriedToTheObject) {
  auto server = start();
  HttpConnection http("127.0.0.1", server->port());

  auto given = http.request("GET", "/probe/p/whoami", "", {{"x-request-id", "it-1"}});
  ASSERT_EQ(given.status, 200) << given.body;
  EXPECT_EQ(given.header("x-request-id"), "it-1");
  auto seen = json::parse(given.body);
  EXPECT_EQ(seen.at("workerRequestId").as_string(), "it-1");
  EXPECT_EQ(seen.at("requestId").as_string(), "it-1") << "the stub call carried it";
  EXPECT_EQ(seen.at("header").as_string(), "") << "beside the request, not added to its headers";

  auto made = http.get("/probe/p/whoami");
  const std::string id = made.header("x-request-id");
  EXPECT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{32}"))) << id;
  EXPECT_EQ(json::parse(made.body).at("workerRequestId").as_string(), id);
  EXPECT_EQ(json::parse(made.body).at("requestId").as_string(), id);
  EXPECT_NE(http.get("/probe/p/whoami").header("x-request-id"), id) << "each request its own";

  // An id that could not go into a log line or a header unchanged is replaced.
  for (const std::string bad : {std::string("has space"), std::string(65, 'a'), std::string("quote\"")}) {
    auto r = http.request("GET", "/probe/p/whoami", "", {{"x-request-id", bad}});
    EXPECT_TRUE(std::regex_match(r.header("x-request-id"), std::regex("[0-9a-f]{32}"))) << bad;
    EXPECT_EQ(json::parse(r.body).at("requestId").as_string(), r.header("x-request-id"));
  }
  // A stub request that names its own id keeps it.
  auto own = http.request("GET", "/probe/p/whoami-as?as=mine-2", "", {{"x-request-id", "outer-2"}});
  EXPECT_EQ(json::parse(own.body).at("requestId").as_string(), "mine-2");
  EXPECT_EQ(own.header("x-request-id"), "outer-2");
  // Answered on every response, a 404 from the Worker included.
  EXPECT_EQ(http.request("GET", "/no/such/route", "", {{"x-request-id", "lost-1"}}).header("x-request-id"), "lost-1");

  // The object's line names the object and the request.
  auto lines = linesWith(*server, "request=it-1] probe whoami");
  ASSERT_EQ(lines.size(), 1u) << server->stderrText();
  EXPECT_TRUE(std::regex_search(lines[0], std::regex(R"(INFO durable: \[ns=PROBE object=[0-9a-f]{64} request=it-1\] probe whoami$)")))
      << lines[0];
}

TEST_F(RequestIdTest, TraceparentGoesOnThroughTheObjectToTheServicesItCalls) {
  auto server = start();
  HttpConnection http("127.0.0.1", server->port());
  const std::string target = "/probe/p/trace?port=" + std::to_string(server->port());
  auto r = http.request("GET", target, "", {{"x-request-id", "tr-1"}, {"traceparent", kTraceparent}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto echoed = json::parse(r.body);
  EXPECT_EQ(echoed.at("traceparent").as_string(), kTraceparent);
  EXPECT_NE(echoed.at("requestId").as_string(), "tr-1") << "another service's request is its own";
  // A malformed traceparent is not passed on.
  auto bad = http.request("GET", target, "", {{"traceparent", "00-xyz"}});
  EXPECT_EQ(json::parse(bad.body).at("traceparent").as_string(), "");
  auto none = http.get(target);
  EXPECT_EQ(json::parse(none.body).at("traceparent").as_string(), "");
}

TEST_F(RequestIdTest, RpcAndTheWorkerLogUnderTheRequestsId) {
  auto server = start();
  HttpConnection http("127.0.0.1", server->port());
  auto r = http.request("GET", "/probe/p/rpc?text=hello", "", {{"x-request-id", "rpc-7"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(r.header("x-request-id"), "rpc-7");
  auto worker = linesWith(*server, "worker saw /probe/p/rpc");
  ASSERT_EQ(worker.size(), 1u) << server->stderrText();
  EXPECT_NE(worker[0].find("INFO durable: [request=rpc-7] worker saw"), std::string::npos) << worker[0];
  auto object = linesWith(*server, "probe note hello");
  ASSERT_EQ(object.size(), 1u) << server->stderrText();
  EXPECT_TRUE(std::regex_search(object[0], std::regex(R"(\[ns=PROBE object=[0-9a-f]{64} request=rpc-7\] probe note hello$)")))
      << object[0];
  // Lines outside any request carry no tag.
  for (const auto& line : linesWith(*server, "listening on")) EXPECT_EQ(line.find('['), std::string::npos) << line;
}

TEST_F(RequestIdTest, JsonLogLinesCarryTheTagsAsFields) {
  const fs::path config = dir_ / "json.toml";
  {
    std::ifstream in(testServerConfig());
    std::stringstream text;
    text << in.rdbuf();
    std::string toml = text.str();
    const auto table = toml.find("[durable]\n");
    ASSERT_NE(table, std::string::npos);
    toml.insert(table + 10, "log_format = \"json\"\n");
    std::ofstream(config) << toml;
  }
  auto server = start(config);
  HttpConnection http("127.0.0.1", server->port());
  ASSERT_EQ(http.request("GET", "/probe/p/whoami", "", {{"x-request-id", "js-1"}}).status, 200);
  auto lines = linesWith(*server, "probe whoami");
  ASSERT_EQ(lines.size(), 1u) << server->stderrText();
  auto o = json::parse(lines[0]).as_object();
  EXPECT_EQ(o.at("namespace").as_string(), "PROBE");
  EXPECT_EQ(o.at("object").as_string().size(), 64u);
  EXPECT_EQ(o.at("requestId").as_string(), "js-1");
  EXPECT_EQ(o.at("msg").as_string(), "probe whoami");
}


TEST_F(RequestIdTest, AMessageCannotForgeALogLineOfItsOwn) {
  auto server = start();
  HttpConnection http("127.0.0.1", server->port());
  const std::string forged = "2026-12-06T20:00:00.000Z ERROR durable: forged line";
  auto r = http.get("/probe/p/rpc?text=hello%0A" + std::string("2026-12-06T20:00:00.000Z%20ERROR%20durable:%20forged%20line"));
  ASSERT_EQ(r.status, 200);
  auto lines = linesWith(*server, "probe note hello");
  ASSERT_EQ(lines.size(), 1u) << server->stderrText();
  EXPECT_NE(lines[0].find("probe note hello\\n" + forged), std::string::npos) << lines[0];
  for (const auto& line : linesWith(*server, "forged line")) EXPECT_NE(line.rfind(forged, 0), 0u) << line;
}

}  // namespace
}  // namespace durable_it
