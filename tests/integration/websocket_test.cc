// WebSockets end to end through the real `durable` binary serving the seed app: the chat room
// (join, history, broadcast, leave), persistence of the history across a restart, the
// config's hibernation_timeout_ms and max_websocket_message_bytes, the HibernatingRoom, and a
// SIGTERM with sockets open. The binary runs with two shards whatever the machine, so
// upgrades accepted on one shard are handed to the room's.
#include "integration/server_process.h"
#include "integration/websocket_client.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <iostream>
#include <thread>

namespace durable_it {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

json::object frame(const std::string& text) { return json::parse(text).as_object(); }

std::string str(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string("<missing>");
}

// The next frame of `type`, skipping the others.
json::object next(WsClient& ws, const std::string& type) {
  const auto deadline = Clock::now() + 10s;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) throw std::runtime_error("no " + type + " frame in time");
    auto f = frame(ws.readText(left));
    if (str(f, "type") == type) return f;
  }
}

void sendChat(WsClient& ws, const std::string& content) {
  json::object m{{"type", "message"}, {"content", content}};
  ws.send(json::serialize(m));
}

class WebSocketServerTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> startServer(const std::string& extraConfig = "") {
    ServerProcess::Options o;
    o.persistDir = dir_ / "state";
    o.stderrLog = dir_ / ("server-" + std::to_string(++starts_) + ".log");
    o.extraArgs = {"--shards", "2"};
    if (!extraConfig.empty()) {
      // The seed's config ends with its [durable] table: the keys land there.
      o.config = dir_ / "wrangler.toml";
      writeFile(o.config, readFile(seedConfig()) + "\n" + extraConfig);
    }
    lastLog_ = o.stderrLog;
    return ServerProcess::start(std::move(o));
  }

  std::unique_ptr<WsClient> join(const ServerProcess& s, const std::string& room, const std::string& user,
                                 json::array* history = nullptr) {
    auto ws = WsClient::connect(s.host(), s.port(), "/rooms/" + room + "/websocket?user=" + user);
    auto own = frame(ws->readText());
    EXPECT_EQ(str(own, "type"), "join");
    EXPECT_EQ(str(own, "user"), user);
    auto h = frame(ws->readText());
    EXPECT_EQ(str(h, "type"), "history");
    if (history) *history = h.at("messages").as_array();
    return ws;
  }

  void TearDown() override {
    if (HasFailure() && !lastLog_.empty()) {
      std::cerr << "---- last server stderr (" << lastLog_ << ") ----\n" << readFile(lastLog_) << "----\n";
    }
  }

  TempDir dir_;
  int starts_ = 0;
  fs::path lastLog_;
};

TEST_F(WebSocketServerTest, ChatRoomEndToEndAndItsHistorySurvivesARestart) {
  auto server = startServer();
  json::array history;
  auto ann = join(*server, "main", "ann", &history);
  EXPECT_TRUE(history.empty());
  auto bob = join(*server, "main", "bob");
  auto cid = join(*server, "main", "cid");
  EXPECT_EQ(str(next(*ann, "join"), "user"), "bob");
  for (int i = 0; i < 10; ++i) {
    sendChat(*ann, "a" + std::to_string(i));
    sendChat(*cid, "c" + std::to_string(i));
  }
  std::vector<std::vector<std::string>> seen(3);
  WsClient* clients[] = {ann.get(), bob.get(), cid.get()};
  for (int k = 0; k < 3; ++k) {
    for (int i = 0; i < 20; ++i) {
      auto f = next(*clients[k], "message");
      seen[k].push_back(str(f, "user") + ":" + str(f, "content"));
    }
  }
  EXPECT_EQ(seen[1], seen[0]);
  EXPECT_EQ(seen[2], seen[0]);

  auto page = httpRequest(server->host(), server->port(), "GET", "/rooms/main");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.header("content-type").find("text/html"), std::string::npos);
  auto plain = httpRequest(server->host(), server->port(), "GET", "/rooms/main/websocket?user=x");
  EXPECT_EQ(plain.status, 426);
  EXPECT_EQ(plain.body, "Expected WebSocket");

  bob->close(1000);
  EXPECT_EQ(str(next(*ann, "leave"), "user"), "bob");
  cid->drop();
  EXPECT_EQ(str(next(*ann, "leave"), "user"), "cid");

  // SIGTERM with a socket open: the server exits promptly and the client sees the end.
  const auto before = Clock::now();
  auto st = server->stop(10s);
  EXPECT_TRUE(st.exited && st.code == 0) << st.describe();
  EXPECT_LT(Clock::now() - before, 5s);
  ann->waitClosed(5s);

  server = startServer();
  auto hist = httpRequest(server->host(), server->port(), "GET", "/rooms/main/history");
  ASSERT_EQ(hist.status, 200);
  auto stored = json::parse(hist.body).as_array();
  ASSERT_EQ(stored.size(), 20u);
  for (std::size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(str(stored[i].as_object(), "user") + ":" + str(stored[i].as_object(), "content"), seen[0][i]);
  }
  auto dee = join(*server, "main", "dee", &history);
  EXPECT_EQ(history.size(), 20u);
}

TEST_F(WebSocketServerTest, ConfiguredHibernationAndMessageLimit) {
  auto server = startServer("hibernation_timeout_ms = 100\nmax_websocket_message_bytes = 1024\n");
  auto ann = join(*server, "cfg", "ann");
  auto bob = join(*server, "cfg", "bob");
  next(*ann, "join");
  // Long enough for the room to be evicted (the eviction sweep runs every second at most).
  std::this_thread::sleep_for(1500ms);
  EXPECT_TRUE(ann->isOpen());
  EXPECT_TRUE(bob->ping());
  sendChat(*bob, "after a nap");
  for (auto* c : {ann.get(), bob.get()}) {
    auto f = next(*c, "message");
    EXPECT_EQ(str(f, "user"), "bob");
    EXPECT_EQ(str(f, "content"), "after a nap");
  }
  sendChat(*bob, std::string(2000, 'x'));
  EXPECT_EQ(bob->waitClosed().code, 1009);
  EXPECT_EQ(str(next(*ann, "leave"), "user"), "bob");
  sendChat(*ann, "ok");
  EXPECT_EQ(str(next(*ann, "message"), "content"), "ok");
}

// Value limits follow the class's backend, as on Cloudflare: the seed's ChatRoom (new_classes,
// key-value backed) keeps its whole history in one value, so once that passes 128 KiB a message
// is refused ("Invalid message") and not broadcast; created by new_sqlite_classes, the room
// takes up to 2 MiB.
TEST_F(WebSocketServerTest, TheValueLimitFollowsTheClassBackend) {
  const std::string content(1000, 'h');
  const auto chat = [&](ServerProcess& server, int messages) {
    auto ann = join(server, "big", "ann");
    for (int i = 0; i < messages; ++i) sendChat(*ann, content);
    // Count the broadcasts until none comes for a second.
    int delivered = 0;
    while (delivered < messages) {
      auto m = ann->read(1000ms);
      if (!m) break;
      if (str(frame(m->data), "type") == "message") ++delivered;
    }
    return delivered;
  };
  {
    auto server = startServer();
    EXPECT_LT(chat(*server, 200), 140);
    EXPECT_NE(readFile(lastLog_).find("Invalid message: Values cannot be larger than 131072 bytes"), std::string::npos);
  }
  std::string config = readFile(seedConfig());
  const std::string kv = "new_classes = [\"ChatRoom\", \"HibernatingRoom\"]";
  ASSERT_NE(config.find(kv), std::string::npos);
  config.replace(config.find(kv), kv.size(), "new_classes = [\"HibernatingRoom\"]\nnew_sqlite_classes = [\"ChatRoom\"]");
  ServerProcess::Options o;
  o.persistDir = dir_ / "sqlite-state";
  o.config = dir_ / "sqlite.toml";
  o.stderrLog = lastLog_ = dir_ / "sqlite.log";
  o.extraArgs = {"--shards", "2"};
  writeFile(o.config, config);
  auto server = ServerProcess::start(std::move(o));
  EXPECT_EQ(chat(*server, 200), 200);
  auto hist = httpRequest(server->host(), server->port(), "GET", "/rooms/big/history");
  ASSERT_EQ(hist.status, 200);
  EXPECT_EQ(json::parse(hist.body).as_array().size(), 100u);
}

TEST_F(WebSocketServerTest, HibernatingRoom) {
  auto server = startServer();
  auto plain = httpRequest(server->host(), server->port(), "GET", "/hibernating/h/websocket");
  EXPECT_EQ(plain.status, 404);
  EXPECT_EQ(plain.body, "Not found");
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(WsClient::connect(server->host(), server->port(), "/hibernating/h/websocket"));
  clients[2]->send("hello all");
  for (auto& c : clients) EXPECT_EQ(c->readText(), "hello all");
  clients[0]->sendRaw(WsClient::invalidFrame());
  EXPECT_EQ(clients[0]->waitClosed().code, 1002);
  clients[1]->send("still");
  for (std::size_t i = 1; i < clients.size(); ++i) EXPECT_EQ(clients[i]->readText(), "still");
  // The server's log names the tag of the sender, as the seed does.
  EXPECT_NE(server->stderrText().find("Message from: [user-123]"), std::string::npos);
}

}  // namespace
}  // namespace durable_it
