// Issue 18, item 1, through the real binary serving the seed: `?user=%ff` and one chat message
// once made the room's history answer 500 for good, before and after a restart. The query
// now decodes the byte to U+FFFD, as a Worker's URLSearchParams does, so the room stores,
// sends and serves only text.
#include "integration/server_process.h"
#include "integration/websocket_client.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <boost/json.hpp>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>

namespace durable_it {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

const std::string kFffd = "\xEF\xBF\xBD";

json::object frame(const std::string& text) { return json::parse(text).as_object(); }

std::string str(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string("<missing>");
}

json::object next(WsClient& ws, const std::string& type) {
  const auto deadline = Clock::now() + 10s;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) throw std::runtime_error("no " + type + " frame in time");
    auto f = frame(ws.readText(left));
    if (str(f, "type") == type) return f;
  }
}

class Utf8InputTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> startServer() {
    ServerProcess::Options o;
    o.persistDir = dir_ / "state";
    o.stderrLog = dir_ / ("server-" + std::to_string(++starts_) + ".log");
    o.extraArgs = {"--shards", "2"};
    lastLog_ = o.stderrLog;
    return ServerProcess::start(std::move(o));
  }

  // The room's history over HTTP: 200 with the one message by U+FFFD.
  void expectHistory(const ServerProcess& s) {
    auto hist = httpRequest(s.host(), s.port(), "GET", "/rooms/p/history");
    ASSERT_EQ(hist.status, 200) << hist.body;
    auto messages = json::parse(hist.body).as_array();
    ASSERT_EQ(messages.size(), 1u) << hist.body;
    EXPECT_EQ(str(messages[0].as_object(), "user"), kFffd);
    EXPECT_EQ(str(messages[0].as_object(), "content"), "hello");
  }

  void TearDown() override {
    if (HasFailure() && !lastLog_.empty()) {
      std::cerr << "---- last server stderr (" << lastLog_ << ") ----\n" << readFile(lastLog_) << "----\n";
    }
  }

  TempDir dir_;
  int starts_ = 0;
  std::filesystem::path lastLog_;
};

TEST_F(Utf8InputTest, UserThatIsNotUtf8DoesNotPoisonTheRoom) {
  auto server = startServer();
  {
    // The client library checks that text frames are UTF-8: the join frame arriving at all
    // shows the server sent text.
    auto ws = WsClient::connect(server->host(), server->port(), "/rooms/p/websocket?user=%ff");
    auto own = frame(ws->readText());
    EXPECT_EQ(str(own, "type"), "join");
    EXPECT_EQ(str(own, "user"), kFffd);
    EXPECT_EQ(str(frame(ws->readText()), "type"), "history");
    ws->send(R"({"type":"message","content":"hello"})");
    auto echoed = next(*ws, "message");
    EXPECT_EQ(str(echoed, "user"), kFffd);
    EXPECT_EQ(str(echoed, "content"), "hello");
    expectHistory(*server);
    // A later join is answered, with the stored message in its history.
    auto later = WsClient::connect(server->host(), server->port(), "/rooms/p/websocket?user=ann");
    EXPECT_EQ(str(frame(later->readText()), "user"), "ann");
    auto h = frame(later->readText());
    ASSERT_EQ(str(h, "type"), "history");
    ASSERT_EQ(h.at("messages").as_array().size(), 1u);
    EXPECT_EQ(str(h.at("messages").as_array()[0].as_object(), "user"), kFffd);
    later->close(1000);
    ws->close(1000);
  }
  auto st = server->stop(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe();

  // After a restart the history is read from disk: still 200, still U+FFFD.
  server = startServer();
  expectHistory(*server);
  // Nothing in the log about a value that could not be read.
  EXPECT_EQ(server->stderrText().find("cannot be read"), std::string::npos) << server->stderrText();
}

// Stores what a build before 2026-12-04 stored for `?user=%ff`: every U+FFFD in the room's
// `history` value back to the raw byte 0xFF, in whichever partition file holds it. Returns
// how many rows it changed.
int poisonHistory(const std::filesystem::path& stateDir) {
  int changed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(stateDir / "partitions")) {
    if (entry.path().extension() != ".sqlite") continue;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(entry.path().c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      continue;
    }
    sqlite3_stmt* s = nullptr;
    // replace() on a blob works on its bytes.
    const char* sql = "UPDATE kv SET value = CAST(replace(CAST(value AS TEXT), char(65533), CAST(x'FF' AS TEXT)) AS BLOB) "
                      "WHERE key = CAST('history' AS BLOB)";
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_DONE) {
      changed += sqlite3_changes(db);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
  }
  return changed;
}

TEST_F(Utf8InputTest, ARoomPoisonedByAnOlderBuildAnswersAgain) {
  auto server = startServer();
  {
    auto ws = WsClient::connect(server->host(), server->port(), "/rooms/p/websocket?user=%ff");
    ws->send(R"({"type":"message","content":"hello"})");
    next(*ws, "message");
    ws->close(1000);
  }
  auto st = server->stop(10s);
  ASSERT_TRUE(st.exited && st.code == 0) << st.describe();
  ASSERT_EQ(poisonHistory(dir_ / "state"), 1);

  server = startServer();
  expectHistory(*server);
  auto later = WsClient::connect(server->host(), server->port(), "/rooms/p/websocket?user=ann");
  EXPECT_EQ(str(frame(later->readText()), "user"), "ann");
  auto h = frame(later->readText());
  ASSERT_EQ(str(h, "type"), "history");
  ASSERT_EQ(h.at("messages").as_array().size(), 1u);
  EXPECT_EQ(str(h.at("messages").as_array()[0].as_object(), "user"), kFffd);
  later->close(1000);
  EXPECT_NE(server->stderrText().find("\"history\" holds text that is not UTF-8"), std::string::npos)
      << server->stderrText();
}

}  // namespace
}  // namespace durable_it
