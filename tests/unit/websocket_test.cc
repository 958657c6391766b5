// WebSockets in process, over real HTTP and WebSocket connections: durable::testing::Env
// serves the seed's Worker (or a small one of this file) on 127.0.0.1 with the Env's
// runtime, so the tests can count constructions, shorten the hibernation timeout, read the
// partition file and watch eviction.
//
// The seed's ChatRoom is exported as "ROOM" through a subclass that counts its constructions.
// Probe, below, exercises the rest of the hibernation API: tags, attachments, auto-responses,
// the output gate, close codes.
//
// g++ 12: no braced temporaries of classes with std::string members inside a co_await or
// co_return expression; such values are built in named variables first.
#include "integration/websocket_client.h"

#include "seed/app.h"
#include "seed/chat_room.h"
#include "seed/hibernating_room.h"

#include <durable/error.h>
#include <durable/object.h>
#include <durable/testing.h>
#include <durable/value.h>
#include <durable/worker.h>
#include <gtest/gtest.h>

#include "unit/test_support.h"
#include <sqlite3.h>

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using durable::Request;
using durable::Response;
using durable::State;
using durable::Task;
using durable::WebSocket;
using durable::WebSocketMessage;
using durable_it::WsClient;
using durable_it::WsError;
using namespace std::chrono_literals;
namespace dt = durable::testing;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kHost = "127.0.0.1";

// ---------------------------------------------------------------- shared test state

std::atomic<int> g_roomConstructions{0};
std::atomic<int> g_probeConstructions{0};
std::mutex g_mu;
std::vector<std::string> g_events;

void record(std::string line) {
  std::lock_guard lock(g_mu);
  g_events.push_back(std::move(line));
}
std::vector<std::string> events() {
  std::lock_guard lock(g_mu);
  return g_events;
}

// Polls `pred` (state that lives on the runtime's threads) until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
}

// ---------------------------------------------------------------- classes

class CountingRoom : public seed::ChatRoom {
 public:
  CountingRoom(State& state, durable::Env& env) : ChatRoom(state, env) { ++g_roomConstructions; }
};

// Accepts `/websocket?name=N&tags=a,b` with those tags and N as the attachment, answers
// "ping" with "pong" without waking (set in the constructor, as a JS author would), and
// answers commands:
//   whoami            the attachment          tags          getTags(ws), comma-joined
//   count:TAG         getWebSockets(TAG).size(); "count:" counts all
//   ts                getWebSocketAutoResponseTimestamp(ws) or "none"
//   put:KEY           storage.put(KEY, KEY), then "stored KEY" (behind the output gate)
//   close:CODE        ws.close(CODE, "server bye")
//   put-close:KEY     storage.put(KEY, KEY), then ws.close(4000, "stored") (behind the gate too)
//   attach:N          serializeAttachment of an N-byte string: "ok" or "threw"
//   all:TEXT          sends the whole text to every socket
//   anything else     "echo:" + text
class Probe : public durable::DurableObject {
 public:
  Probe(State& state, durable::Env& env) : DurableObject(state, env) {
    ++g_probeConstructions;
    state.setWebSocketAutoResponse("ping", "pong");
  }

  Task<Response> fetch(Request request) override {
    const auto url = request.url();
    if (url.pathname() != "/websocket" || !request.headers().has("Upgrade")) {
      co_return Response("Not found", {.status = 404});
    }
    std::vector<std::string> tags;
    const std::string tagList = url.searchParams().get("tags").value_or("");
    for (std::size_t start = 0; start < tagList.size();) {
      auto comma = tagList.find(',', start);
      if (comma == std::string::npos) comma = tagList.size();
      tags.push_back(tagList.substr(start, comma - start));
      start = comma + 1;
    }
    const std::string name = url.searchParams().get("name").value_or("anon");
    durable::WebSocketPair pair;
    state().acceptWebSocket(pair.server, tags);
    pair.server.serializeAttachment(durable::Value(name));
    Response response(nullptr, {.status = 101, .webSocket = pair.client});
    co_return response;
  }

  Task<void> webSocketMessage(WebSocket ws, WebSocketMessage message) override {
    // Commands may come as binary too: the tests check that only text is auto-answered.
    const std::string text = message.bytes();
    std::string reply;
    if (text == "whoami") {
      reply = ws.deserializeAttachment().as<std::string>();
    } else if (text == "tags") {
      for (const auto& t : state().getTags(ws)) reply += (reply.empty() ? "" : ",") + t;
    } else if (text.rfind("count:", 0) == 0) {
      const std::string tag = text.substr(6);
      auto sockets = tag.empty() ? state().getWebSockets() : state().getWebSockets(tag);
      reply = std::to_string(sockets.size());
    } else if (text == "ts") {
      auto t = state().getWebSocketAutoResponseTimestamp(ws);
      reply = t ? std::to_string(*t) : "none";
    } else if (text.rfind("put:", 0) == 0) {
      const std::string key = text.substr(4);
      const durable::Value value(key);
      co_await storage().put(key, value);
      reply = "stored " + key;
    } else if (text.rfind("put-close:", 0) == 0) {
      const std::string key = text.substr(10);
      const durable::Value value(key);
      co_await storage().put(key, value);
      ws.close(4000, "stored");
      co_return;
    } else if (text.rfind("close:", 0) == 0) {
      ws.close(std::stoi(text.substr(6)), "server bye");
      co_return;
    } else if (text.rfind("all:", 0) == 0) {
      for (auto& socket : state().getWebSockets()) socket.send(text);
      co_return;
    } else if (text.rfind("attach:", 0) == 0) {
      const std::string big(std::stoul(text.substr(7)), 'x');
      try {
        ws.serializeAttachment(durable::Value(big));
        reply = "ok";
      } catch (const durable::Error&) {
        reply = "threw";
      }
    } else {
      reply = "echo:" + text;
    }
    ws.send(reply);
  }

  Task<void> webSocketClose(WebSocket ws, int code, std::string reason, bool wasClean) override {
    record("close " + ws.deserializeAttachment().as<std::string>() + " " + std::to_string(code) + " '" + reason + "' " +
           (wasClean ? "clean" : "unclean"));
    co_return;
  }

  Task<void> webSocketError(WebSocket ws, std::string error) override {
    record("error " + ws.deserializeAttachment().as<std::string>());
    co_return;
  }
};

// Answers every request with a WebSocket, whatever it asked for.
class Eager : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  Task<Response> fetch(Request) override {
    durable::WebSocketPair pair;
    state().acceptWebSocket(pair.server);
    co_return Response(nullptr, {.status = 101, .webSocket = pair.client});
  }
};

durable::Worker probeApp() {
  durable::Worker app;
  // A request of the Worker's own, without "Upgrade: websocket", to an object that answers a
  // WebSocket all the same.
  app.get("/eager/:id", [](durable::Context& c) -> Task<Response> {
    const auto& ns = c.env().ns("EAGER");
    co_return co_await ns.get(ns.idFromName(c.param("id"))).fetch(durable::Request("http://do/"));
  });
  app.get("/probe/:id/websocket", [](durable::Context& c) -> Task<Response> {
    const auto& ns = c.env().ns("PROBE");
    const auto stub = ns.get(ns.idFromName(c.param("id")));
    const std::string target = "http://do/websocket" + c.req().url().search();
    durable::RequestInit init;
    init.headers = c.req().headers();
    durable::Request forwarded(target, std::move(init));
    co_return co_await stub.fetch(std::move(forwarded));
  });
  return app;
}

// ---------------------------------------------------------------- servers

// The seed's app over an Env whose ROOM counts constructions. The Worker is declared before
// the Env so that it outlives the server.
struct ChatServer {
  durable::Worker app = seed::makeApp();
  dt::Env env;
  std::uint16_t port = 0;
  explicit ChatServer(dt::EnvOptions options = {}) : env(std::move(options)) {
    env.exportClass<CountingRoom>("ROOM");
    env.exportClass<seed::HibernatingRoom>("HIBERNATING_ROOM");
    port = env.serve(app);
  }
};

struct ProbeServer {
  durable::Worker app = probeApp();
  dt::Env env;
  std::uint16_t port = 0;
  explicit ProbeServer(dt::EnvOptions options = {}) : env(std::move(options)) {
    env.exportClass<Probe>("PROBE");
    env.exportClass<Eager>("EAGER");
    port = env.serve(app);
  }
  std::unique_ptr<WsClient> connect(const std::string& id, const std::string& name, const std::string& tags = "") {
    return WsClient::connect(kHost, port, "/probe/" + id + "/websocket?name=" + name + "&tags=" + tags);
  }
};

class WebSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_roomConstructions = 0;
    g_probeConstructions = 0;
    std::lock_guard lock(g_mu);
    g_events.clear();
  }
};

// ---------------------------------------------------------------- chat helpers

json::object frame(const std::string& text) {
  auto v = json::parse(text);
  if (!v.is_object()) throw std::runtime_error("not a JSON object: " + text);
  return v.as_object();
}

std::string str(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string("<missing>");
}

struct Member {
  std::string user;
  std::unique_ptr<WsClient> ws;
  json::array history;  // what the history frame carried
};

// Joins `room` as `user` and checks the first two frames: the joiner's own join broadcast,
// then the history.
Member join(std::uint16_t port, const std::string& room, const std::string& user) {
  Member m{user, WsClient::connect(kHost, port, "/rooms/" + room + "/websocket?user=" + user), {}};
  auto first = frame(m.ws->readText());
  EXPECT_EQ(str(first, "type"), "join") << json::serialize(first);
  EXPECT_EQ(str(first, "user"), user);
  EXPECT_TRUE(first.contains("timestamp"));
  auto second = frame(m.ws->readText());
  EXPECT_EQ(str(second, "type"), "history") << json::serialize(second);
  if (auto* h = second.if_contains("messages"); h && h->is_array()) m.history = h->as_array();
  return m;
}

// The next frame of `type`, skipping others (joins and leaves of other members).
json::object next(WsClient& ws, const std::string& type, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) throw std::runtime_error("no " + type + " frame in time");
    auto f = frame(ws.readText(left));
    if (str(f, "type") == type) return f;
  }
}

std::string sendChat(WsClient& ws, const std::string& content) {
  json::object m{{"type", "message"}, {"content", content}};
  std::string text = json::serialize(m);
  ws.send(text);
  return text;
}

// ---------------------------------------------------------------- the chat room

TEST_F(WebSocketTest, JoinGetsItsOwnJoinThenHistory) {
  ChatServer s;
  auto ann = join(s.port, "lobby", "ann");
  EXPECT_TRUE(ann.history.empty());
  sendChat(*ann.ws, "hello");
  auto echoed = next(*ann.ws, "message");
  EXPECT_EQ(str(echoed, "user"), "ann");
  EXPECT_EQ(str(echoed, "content"), "hello");
  EXPECT_TRUE(echoed.at("timestamp").is_int64());

  auto bob = join(s.port, "lobby", "bob");
  ASSERT_EQ(bob.history.size(), 1u);
  EXPECT_EQ(str(bob.history[0].as_object(), "content"), "hello");
  EXPECT_EQ(str(bob.history[0].as_object(), "user"), "ann");
  // The members already there hear of the join.
  auto joined = frame(ann.ws->readText());
  EXPECT_EQ(str(joined, "type"), "join");
  EXPECT_EQ(str(joined, "user"), "bob");
  // Rooms are separate objects.
  auto other = join(s.port, "elsewhere", "cid");
  EXPECT_TRUE(other.history.empty());
  EXPECT_TRUE(ann.ws->drain(50ms).empty());
  EXPECT_EQ(g_roomConstructions, 2);
}

TEST_F(WebSocketTest, UserNamesArePercentDecodedAndDefaultToAnonymous) {
  ChatServer s;
  auto m = WsClient::connect(kHost, s.port, "/rooms/r/websocket?user=J%C3%BCrgen%20K");
  EXPECT_EQ(str(frame(m->readText()), "user"), "J\xC3\xBCrgen K");
  auto anon = WsClient::connect(kHost, s.port, "/rooms/r/websocket");
  EXPECT_EQ(str(frame(anon->readText()), "user"), "anonymous");
  // `get("user") || "anonymous"`: empty is falsy.
  auto empty = WsClient::connect(kHost, s.port, "/rooms/r/websocket?user=");
  EXPECT_EQ(str(frame(empty->readText()), "user"), "anonymous");
}

// The seed's Worker already maps an empty user to anonymous; this reaches the room past it,
// so the room's own `get("user") || "anonymous"` is what answers.
TEST_F(WebSocketTest, TheRoomItselfTakesAnEmptyUserAsAnonymous) {
  durable::Worker app;
  app.get("/direct/:id/websocket", [](durable::Context& c) -> durable::Task<durable::Response> {
    const auto& rooms = c.env().ns("ROOM");
    durable::Request forwarded("http://do/websocket" + c.req().url().search(), {.headers = c.req().headers()});
    co_return co_await rooms.getByName(c.param("id")).fetch(std::move(forwarded));
  });
  dt::Env env;
  env.exportClass<seed::ChatRoom>("ROOM");
  const auto port = env.serve(app);
  auto empty = WsClient::connect(kHost, port, "/direct/r/websocket?user=");
  EXPECT_EQ(str(frame(empty->readText()), "user"), "anonymous");
  auto named = WsClient::connect(kHost, port, "/direct/r/websocket?user=zed");
  EXPECT_EQ(str(frame(named->readText()), "user"), "zed");
}

class WebSocketOrderTest : public WebSocketTest, public ::testing::WithParamInterface<unsigned> {};

// Interleaved senders: every member sees the same sequence, each sender's messages in the
// order sent, with the right user; /history and the next joiner's history agree with it.
TEST_P(WebSocketOrderTest, BroadcastsReachEveryMemberInOneTotalOrder) {
  dt::EnvOptions options;
  options.shards = GetParam();
  ChatServer s(options);
  const std::vector<std::string> names{"ann", "bob", "cid", "dee"};
  std::vector<Member> members;
  for (const auto& n : names) members.push_back(join(s.port, "order", n));
  constexpr int kRounds = 30;
  for (int i = 0; i < kRounds; ++i) {
    for (auto& m : members) sendChat(*m.ws, m.user + "-" + std::to_string(i));
  }
  const std::size_t total = kRounds * names.size();
  std::vector<std::vector<std::string>> seen(members.size());
  for (std::size_t k = 0; k < members.size(); ++k) {
    std::int64_t lastTs = 0;
    std::map<std::string, int> nextOf;
    while (seen[k].size() < total) {
      auto f = next(*members[k].ws, "message");
      const std::string user = str(f, "user");
      const std::string content = str(f, "content");
      seen[k].push_back(user + ":" + content);
      // Each sender's messages arrive in its order, under its name.
      EXPECT_EQ(content, user + "-" + std::to_string(nextOf[user]++)) << "member " << members[k].user;
      const std::int64_t ts = f.at("timestamp").as_int64();
      EXPECT_GE(ts, lastTs);
      lastTs = ts;
    }
  }
  for (std::size_t k = 1; k < members.size(); ++k) EXPECT_EQ(seen[k], seen[0]) << members[k].user << " vs ann";

  // GET /rooms/:id/history: the last 100, as stored.
  auto res = durable_it::httpGet(kHost, s.port, "/rooms/order/history");
  ASSERT_EQ(res.status, 200);
  EXPECT_NE(res.headers["content-type"].find("application/json"), std::string::npos);
  auto history = json::parse(res.body).as_array();
  ASSERT_EQ(history.size(), 100u);
  for (std::size_t i = 0; i < 100; ++i) {
    const auto& h = history[i].as_object();
    EXPECT_EQ(str(h, "user") + ":" + str(h, "content"), seen[0][total - 100 + i]);
    EXPECT_EQ(str(h, "type"), "message");
  }
  // A joiner gets the last 50.
  auto late = join(s.port, "order", "eve");
  ASSERT_EQ(late.history.size(), 50u);
  for (std::size_t i = 0; i < 50; ++i) {
    const auto& h = late.history[i].as_object();
    EXPECT_EQ(str(h, "user") + ":" + str(h, "content"), seen[0][total - 50 + i]);
  }
  EXPECT_EQ(g_roomConstructions, 1);
}

INSTANTIATE_TEST_SUITE_P(Shards, WebSocketOrderTest, ::testing::Values(1u, 2u),
                         [](const auto& info) { return std::to_string(info.param) + "shards"; });

TEST_F(WebSocketTest, HistoryKeepsTheLastThousand) {
  ChatServer s;
  auto ann = join(s.port, "long", "ann");
  for (int i = 0; i < 1010; ++i) sendChat(*ann.ws, std::to_string(i));
  for (int i = 0; i < 1010; ++i) EXPECT_EQ(str(next(*ann.ws, "message"), "content"), std::to_string(i));
  auto history = json::parse(durable_it::httpGet(kHost, s.port, "/rooms/long/history").body).as_array();
  ASSERT_EQ(history.size(), 100u);
  EXPECT_EQ(str(history.front().as_object(), "content"), "910");
  EXPECT_EQ(str(history.back().as_object(), "content"), "1009");
  s.env.runInDurableObject<CountingRoom>(s.env.env().ns("ROOM").getByName("long"),
                                         [](CountingRoom&, State& state) -> Task<void> {
                                           auto stored = co_await state.storage().get<json::array>("history");
                                           EXPECT_TRUE(stored.has_value());
                                           if (stored) {
                                             EXPECT_EQ(stored->size(), 1000u);
                                             EXPECT_EQ(stored->front().as_object().at("content"), "10");
                                           }
                                         });
  // An empty room's history is an empty array.
  auto empty = durable_it::httpGet(kHost, s.port, "/rooms/nobody/history");
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(empty.body, "[]");
}

TEST_F(WebSocketTest, LeaveIsBroadcastOnCloseAndOnTcpDrop) {
  ChatServer s;
  auto ann = join(s.port, "leave", "ann");
  auto bob = join(s.port, "leave", "bob");
  auto cid = join(s.port, "leave", "cid");
  bob.ws->close(1000, "bye");
  for (auto* m : {&ann, &cid}) {
    auto f = next(*m->ws, "leave");
    EXPECT_EQ(str(f, "user"), "bob");
  }
  cid.ws->drop();
  auto f = next(*ann.ws, "leave");
  EXPECT_EQ(str(f, "user"), "cid");
  // An RST instead of a FIN: the same.
  auto dee = join(s.port, "leave", "dee");
  EXPECT_EQ(str(next(*ann.ws, "join"), "user"), "dee");
  dee.ws->drop(/*reset=*/true);
  EXPECT_EQ(str(next(*ann.ws, "leave"), "user"), "dee");
  // The room keeps working for who is left.
  sendChat(*ann.ws, "still here");
  EXPECT_EQ(str(next(*ann.ws, "message"), "content"), "still here");
  EXPECT_TRUE(ann.ws->drain(50ms).empty());
}

TEST_F(WebSocketTest, FiftyMembersAllReceiveABroadcast) {
  ChatServer s;
  std::vector<Member> members;
  for (int i = 0; i < 50; ++i) members.push_back(join(s.port, "big", "u" + std::to_string(i)));
  sendChat(*members[17].ws, "to everyone");
  for (auto& m : members) {
    auto f = next(*m.ws, "message");
    EXPECT_EQ(str(f, "user"), "u17") << m.user;
    EXPECT_EQ(str(f, "content"), "to everyone") << m.user;
  }
  // Every member also saw every later join, in order.
  for (auto& m : members) EXPECT_TRUE(m.ws->isOpen());
  EXPECT_EQ(g_roomConstructions, 1);
}

TEST_F(WebSocketTest, InvalidAndOtherFramesAreIgnored) {
  ChatServer s;
  auto ann = join(s.port, "junk", "ann");
  auto bob = join(s.port, "junk", "bob");
  next(*ann.ws, "join");
  ann.ws->send("not json at all");
  ann.ws->send("[1,2,3]");
  ann.ws->send(R"({"type":"typing"})");
  ann.ws->send(R"({"type":"message"})");
  ann.ws->send(R"({"type":"message","content":""})");
  ann.ws->send(R"({"type":"message","content":null})");
  ann.ws->send(R"({"type":"message","content":0})");
  ann.ws->send(R"({"type":"message","content":false})");
  ann.ws->sendBinary(std::string("\x00\xff\x10", 3));
  ann.ws->send("");
  sendChat(*ann.ws, "real");
  // The first frame either member gets afterwards is the real message.
  for (auto* m : {&ann, &bob}) {
    auto f = frame(m->ws->readText());
    EXPECT_EQ(str(f, "type"), "message");
    EXPECT_EQ(str(f, "content"), "real");
  }
  // Non-string content that is truthy is kept as it is, as in JavaScript.
  ann.ws->send(R"({"type":"message","content":42})");
  EXPECT_EQ(json::serialize(frame(bob.ws->readText()).at("content")), "42");
  EXPECT_EQ(json::parse(durable_it::httpGet(kHost, s.port, "/rooms/junk/history").body).as_array().size(), 2u);
}

TEST_F(WebSocketTest, UpgradeIsRequired) {
  ChatServer s;
  auto plain = durable_it::httpGet(kHost, s.port, "/rooms/r/websocket?user=x");
  EXPECT_EQ(plain.status, 426);
  EXPECT_EQ(plain.body, "Expected WebSocket");
  // Through the WebSocket client: the error carries the status.
  try {
    WsClient::Options o;
    o.headers["Upgrade"] = "h2c";
    WsClient::connect(kHost, s.port, "/rooms/r/websocket?user=x", o);
    ADD_FAILURE() << "connected";
  } catch (const WsError& e) {
    EXPECT_NE(e.status, 101) << e.what();
  }
  // The seed compares the header with "websocket" exactly: any other spelling is refused.
  try {
    WsClient::Options o;
    o.headers["Upgrade"] = "WebSocket";
    WsClient::connect(kHost, s.port, "/rooms/r/websocket?user=caps", o);
    ADD_FAILURE() << "connected with Upgrade: WebSocket";
  } catch (const WsError& e) {
    EXPECT_EQ(e.status, 426) << e.what();
    EXPECT_EQ(e.body, "Expected WebSocket");
  }
  // HibernatingRoom answers 404 without an upgrade.
  auto h = durable_it::httpGet(kHost, s.port, "/hibernating/x/websocket");
  EXPECT_EQ(h.status, 404);
  EXPECT_EQ(h.body, "Not found");
  // The chat page.
  auto page = durable_it::httpGet(kHost, s.port, "/rooms/r");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.headers["content-type"].find("text/html"), std::string::npos);
  EXPECT_NE(page.body.find("new WebSocket("), std::string::npos);
}

// As on Cloudflare: an object's WebSocket reaches the client only when the request made to
// the object asked for one. Otherwise the Worker's stub.fetch fails and says why (a cluster
// node could not relay it either, so every node answers the same).
TEST_F(WebSocketTest, AWebSocketAnsweredToARequestThatDidNotAskForOneIsRefused) {
  ProbeServer s;
  try {
    WsClient::connect(kHost, s.port, "/eager/e");
    ADD_FAILURE() << "connected";
  } catch (const WsError& e) {
    EXPECT_NE(e.status, 101) << e.what();
    EXPECT_NE(e.body.find("Upgrade: websocket"), std::string::npos) << e.status << " " << e.body;
  }
}

TEST_F(WebSocketTest, HibernatingRoomBroadcastsToEverySocket) {
  ChatServer s;
  auto a = WsClient::connect(kHost, s.port, "/hibernating/h/websocket");
  auto b = WsClient::connect(kHost, s.port, "/hibernating/h/websocket");
  a->send("one");
  EXPECT_EQ(a->readText(), "one");
  EXPECT_EQ(b->readText(), "one");
  // The seed sends `message` as it came: binary stays binary, byte for byte.
  const std::string bytes("\x00\xff\xfe\x80two", 7);
  b->sendBinary(bytes);
  for (auto* c : {a.get(), b.get()}) {
    auto m = c->read(10s);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->data, bytes);
    EXPECT_TRUE(m->binary);
  }
}

// The object-side API keeps a message's type: text() of a binary message throws (as
// JSON.parse of an ArrayBuffer does), and no text frame that is not UTF-8 can be sent.
TEST(WebSocketMessageTest, TextIsTextAndBytesAreBytes) {
  const WebSocketMessage text{"h\xc3\xa9", false};
  EXPECT_TRUE(text.isText());
  EXPECT_EQ(text.text(), "h\xc3\xa9");
  const WebSocketMessage binary{std::string("\x00\xff", 2), true};
  EXPECT_FALSE(binary.isText());
  EXPECT_EQ(binary.bytes(), std::string("\x00\xff", 2));
  try {
    (void)binary.text();
    ADD_FAILURE() << "text() of a binary message returned";
  } catch (const durable::Error& e) {
    EXPECT_EQ(e.code(), durable::ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("binary"), std::string::npos) << e.what();
  }

  // A socket no object accepted: valid input fails on that; invalid input fails first.
  durable::WebSocketPair pair;
  const auto failure = [](auto&& send) -> std::string {
    try {
      send();
    } catch (const durable::Error& e) {
      return e.what();
    }
    return "no error";
  };
  for (const std::string& bad : {std::string("\x80"), std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
                                std::string("\xf4\x90\x80\x80"), std::string("ab\xe2\x82")}) {
    EXPECT_NE(failure([&] { pair.server.send(bad); }).find("not valid UTF-8"), std::string::npos);
    EXPECT_NE(failure([&] { pair.server.send(WebSocketMessage{bad, false}); }).find("not valid UTF-8"),
              std::string::npos);
    EXPECT_NE(failure([&] { pair.server.close(1000, bad); }).find("not valid UTF-8"), std::string::npos);
    EXPECT_NE(failure([&] { pair.server.send(WebSocketMessage{bad, true}); }).find("no object accepted"),
              std::string::npos);
    EXPECT_NE(failure([&] { pair.server.send(durable::Bytes(bad)); }).find("no object accepted"), std::string::npos);
  }
  for (int code : {999, 1004, 1005, 1006, 1015, 2999, 5000}) {
    EXPECT_NE(failure([&] { pair.server.close(code); }).find("the code must be"), std::string::npos) << code;
  }
  const std::string fourByte("\xf0\x9d\x84\x9e", 4);
  EXPECT_NE(failure([&] { pair.server.send(fourByte); }).find("no object accepted"), std::string::npos);
  EXPECT_NE(failure([&] { pair.server.send(std::string_view()); }).find("no object accepted"), std::string::npos);
  // The seed's webSocketError closes with 1011: a code a server may send.
  for (int code : {1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999}) {
    durable::WebSocketPair fresh;
    EXPECT_EQ(failure([&] { fresh.server.close(code, "Internal error"); }), "no error") << code;
  }
}

// ---------------------------------------------------------------- hibernation

dt::EnvOptions hibernating() {
  dt::EnvOptions o;
  o.hibernationTimeoutMs = 100;  // the idle timeout stays at its 60 s default
  return o;
}

TEST_F(WebSocketTest, IdleRoomHibernatesAndWakesWithItsMembersKnown) {
  ChatServer s(hibernating());
  auto ann = join(s.port, "sleepy", "ann");
  auto bob = join(s.port, "sleepy", "bob");
  next(*ann.ws, "join");
  EXPECT_EQ(g_roomConstructions, 1);

  ASSERT_TRUE(eventually([&] { return s.env.liveObjects() == 0; })) << "the room was not evicted";
  EXPECT_TRUE(ann.ws->isOpen());
  EXPECT_TRUE(bob.ws->isOpen());
  EXPECT_TRUE(ann.ws->drain(20ms).empty());

  // A message wakes it: a new instance, which still knows who is who (attachments).
  sendChat(*bob.ws, "awake?");
  for (auto* m : {&ann, &bob}) {
    auto f = next(*m->ws, "message");
    EXPECT_EQ(str(f, "user"), "bob");
    EXPECT_EQ(str(f, "content"), "awake?");
  }
  EXPECT_EQ(g_roomConstructions, 2);
  EXPECT_EQ(s.env.liveObjects(), 1u);

  // Asleep again: a close still reaches a new instance, which broadcasts the leave.
  ASSERT_TRUE(eventually([&] { return s.env.liveObjects() == 0; }));
  bob.ws->close(1000, "");
  auto f = next(*ann.ws, "leave");
  EXPECT_EQ(str(f, "user"), "bob");
  EXPECT_EQ(g_roomConstructions, 3);

  // And a TCP drop while asleep.
  auto cid = join(s.port, "sleepy", "cid");
  EXPECT_EQ(str(next(*ann.ws, "join"), "user"), "cid");
  ASSERT_TRUE(eventually([&] { return s.env.liveObjects() == 0; }));
  const int before = g_roomConstructions;
  cid.ws->drop();
  EXPECT_EQ(str(next(*ann.ws, "leave"), "user"), "cid");
  EXPECT_EQ(g_roomConstructions, before + 1);
  // The history survived too (storage, not memory).
  auto late = join(s.port, "sleepy", "dee");
  ASSERT_EQ(late.history.size(), 1u);
  EXPECT_EQ(str(late.history[0].as_object(), "content"), "awake?");
}

TEST_F(WebSocketTest, AnObjectWithoutSocketsWaitsForTheIdleTimeout) {
  // The short hibernation timeout applies only to objects whose live work is sockets.
  ChatServer s(hibernating());
  EXPECT_EQ(durable_it::httpGet(kHost, s.port, "/rooms/plain/history").status, 200);
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(s.env.liveObjects(), 1u);
}

TEST_F(WebSocketTest, AttachmentsAndTagsSurviveHibernation) {
  ProbeServer s(hibernating());
  auto a = s.connect("p", "alice", "red,all");
  auto b = s.connect("p", "bob", "blue,all");
  auto c = s.connect("p", "carol", "red");
  auto d = s.connect("p", "dave");
  a->send("count:");
  EXPECT_EQ(a->readText(), "4");
  ASSERT_TRUE(eventually([&] { return s.env.liveObjects() == 0; }));
  const int before = g_probeConstructions;
  a->send("whoami");
  EXPECT_EQ(a->readText(), "alice");
  EXPECT_EQ(g_probeConstructions, before + 1);
  b->send("whoami");
  EXPECT_EQ(b->readText(), "bob");
  a->send("tags");
  EXPECT_EQ(a->readText(), "red,all");
  d->send("tags");
  EXPECT_EQ(d->readText(), "");
  a->send("count:red");
  EXPECT_EQ(a->readText(), "2");
  a->send("count:all");
  EXPECT_EQ(a->readText(), "2");
  a->send("count:blue");
  EXPECT_EQ(a->readText(), "1");
  a->send("count:green");
  EXPECT_EQ(a->readText(), "0");
  c->close();
  ASSERT_TRUE(eventually([] { return events().size() == 1; }));
  a->send("count:red");
  EXPECT_EQ(a->readText(), "1");
  a->send("count:");
  EXPECT_EQ(a->readText(), "3");
  // A changed attachment is what the next instance sees; 16 KiB is the limit.
  a->send("attach:16000");
  EXPECT_EQ(a->readText(), "ok");
  a->send("attach:20000");
  EXPECT_EQ(a->readText(), "threw");
  ASSERT_TRUE(eventually([&] { return s.env.liveObjects() == 0; }));
  a->send("whoami");
  EXPECT_EQ(a->readText(), std::string(16000, 'x'));
}

TEST_F(WebSocketTest, AutoResponseAndPingsDoNotWakeTheObject) {
  ProbeServer s(hibernating());
  auto a = s.connect("auto", "alice");
  auto b = s.connect("auto", "bob");
  a->send("ts");
  EXPECT_EQ(a->readText(), "none");
  ASSERT_TRUE(eventually([&] { return s.env.liveObjects() == 0; }));
  const int constructed = g_probeConstructions;
  const auto before = durable::now();
  for (int i = 0; i < 5; ++i) {
    a->send("ping");
    EXPECT_EQ(a->readText(), "pong");
  }
  // Protocol pings too.
  EXPECT_TRUE(a->ping("are you there"));
  EXPECT_TRUE(b->ping());
  const auto after = durable::now();
  EXPECT_EQ(s.env.liveObjects(), 0u);
  EXPECT_EQ(g_probeConstructions, constructed);
  // Only the exact text is auto-answered; the rest reaches the object.
  a->send("ping ");
  EXPECT_EQ(a->readText(), "echo:ping ");
  EXPECT_EQ(g_probeConstructions, constructed + 1);
  a->sendBinary("ping");
  EXPECT_EQ(a->readText(), "echo:ping");
  a->send("ts");
  const std::int64_t ts = std::stoll(a->readText());
  EXPECT_GE(ts, before);
  EXPECT_LE(ts, after);
  // Per socket: bob never sent "ping".
  b->send("ts");
  EXPECT_EQ(b->readText(), "none");
}

// A client frame (masked) with any FIN bit and opcode, in the shortest length form.
std::string maskedFrame(const std::string& payload, std::uint8_t opcode = 0x1, bool fin = true) {
  std::string f(1, static_cast<char>((fin ? 0x80 : 0x00) | opcode));
  const std::uint64_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(0x80 | n);
  } else if (n < 65536) {
    f += static_cast<char>(0x80 | 126);
    for (int i = 1; i >= 0; --i) f += static_cast<char>((n >> (8 * i)) & 0xff);
  } else {
    f += static_cast<char>(0x80 | 127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((n >> (8 * i)) & 0xff);
  }
  const char key[4] = {0x12, 0x34, 0x56, 0x78};
  f.append(key, 4);
  for (std::size_t i = 0; i < n; ++i) f += static_cast<char>(payload[i] ^ key[i % 4]);
  return f;
}

// The server reads frame by frame (so that an idle socket holds no buffer and, asleep, no
// Beast stream); frames joined in one TCP write, split byte by byte, fragmented, or sent to a
// socket whose object is asleep, must all arrive whole and in order.
TEST_F(WebSocketTest, FramesArriveWholeHoweverTheBytesAreCut) {
  ProbeServer s(hibernating());
  auto a = s.connect("frames", "alice");
  auto b = s.connect("frames", "bob");
  const auto asleep = [&] { return eventually([&] { return s.env.liveObjects() == 0; }); };
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ASSERT_TRUE(asleep());
    // Two messages and a fragmented third, in one write.
    a->sendRaw(maskedFrame("one") + maskedFrame("two") + maskedFrame("thr", 0x1, false) +
               maskedFrame("ee", 0x0, true));
    EXPECT_EQ(a->readText(), "echo:one");
    EXPECT_EQ(a->readText(), "echo:two");
    EXPECT_EQ(a->readText(), "echo:three");
    ASSERT_TRUE(asleep());
    // One byte at a time, headers split too, a ping between two fragments.
    const std::string bytes = maskedFrame("sl", 0x1, false) + maskedFrame("p", 0x9) + maskedFrame("ow", 0x0, true) +
                              maskedFrame(std::string(300, 'm'));
    for (char c : bytes) {
      a->sendRaw(std::string(1, c));
      std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(a->readText(), "echo:slow");
    EXPECT_EQ(a->readText(), "echo:" + std::string(300, 'm'));
    // The 64-bit length form, and its bytes cut at odd places.
    const std::string big = maskedFrame(std::string(70000, 'b')) + maskedFrame("after");
    a->sendRaw(big.substr(0, 5));
    std::this_thread::sleep_for(5ms);
    a->sendRaw(big.substr(5, 40000));
    std::this_thread::sleep_for(5ms);
    a->sendRaw(big.substr(40005));
    EXPECT_EQ(a->readText(), "echo:" + std::string(70000, 'b'));
    EXPECT_EQ(a->readText(), "echo:after");
    // A broadcast from the woken object reaches the socket that stayed asleep.
    ASSERT_TRUE(asleep());
    a->send("all:hello");
    EXPECT_EQ(a->readText(), "all:hello");
    EXPECT_EQ(b->readText(), "all:hello");
  }
  // A close frame to a sleeping socket gets a clean close, and reaches a new instance.
  ASSERT_TRUE(asleep());
  b->close(4002, "bye");
  ASSERT_TRUE(eventually([] { return events().size() == 1; }));
  EXPECT_EQ(events()[0], "close bob 4002 'bye' clean");
  EXPECT_TRUE(a->ping());
}

// ---------------------------------------------------------------- closes, limits, errors

TEST_F(WebSocketTest, CloseCodesReachTheObject) {
  ProbeServer s;
  auto a = s.connect("c", "alice");
  auto b = s.connect("c", "bob");
  auto c = s.connect("c", "carol");
  a->close(4001, "going away");
  ASSERT_TRUE(eventually([] { return events().size() == 1; }));
  b->drop();
  ASSERT_TRUE(eventually([] { return events().size() == 2; }));
  c->close(1000);
  ASSERT_TRUE(eventually([] { return events().size() == 3; }));
  EXPECT_EQ(events(), (std::vector<std::string>{"close alice 4001 'going away' clean", "close bob 1006 '' unclean",
                                                "close carol 1000 '' clean"}));
  // The client got the close frame answered with its code.
  ASSERT_TRUE(a->closed().has_value());
  EXPECT_TRUE(a->closed()->clean) << a->closed()->error;
  EXPECT_EQ(a->closed()->code, 4001);
}

TEST_F(WebSocketTest, ServerCloseReachesTheClient) {
  ProbeServer s;
  auto a = s.connect("sc", "alice");
  auto b = s.connect("sc", "bob");
  a->send("close:4000");
  auto closed = a->waitClosed();
  EXPECT_TRUE(closed.clean);
  EXPECT_EQ(closed.code, 4000);
  EXPECT_EQ(closed.reason, "server bye");
  // Gone from getWebSockets() once the closing handshake completed on the server too.
  EXPECT_TRUE(eventually([&] {
    b->send("count:");
    return b->readText() == "1";
  }));
  // The object closed it itself: no webSocketClose.
  EXPECT_TRUE(events().empty()) << events().front();
}

TEST_F(WebSocketTest, OversizedMessageClosesOnlyThatSocketWith1009) {
  dt::EnvOptions o;
  o.maxWebSocketMessageBytes = 1024;
  ChatServer s(o);
  auto ann = join(s.port, "limits", "ann");
  auto bob = join(s.port, "limits", "bob");
  auto cid = join(s.port, "limits", "cid");
  // Just under the limit goes through.
  sendChat(*bob.ws, std::string(900, 'a'));
  EXPECT_EQ(str(next(*ann.ws, "message"), "content").size(), 900u);
  sendChat(*bob.ws, std::string(2000, 'b'));
  auto closed = bob.ws->waitClosed();
  EXPECT_EQ(closed.code, 1009) << closed.error;
  for (auto* m : {&ann, &cid}) EXPECT_EQ(str(next(*m->ws, "leave"), "user"), "bob");
  sendChat(*ann.ws, "small");
  for (auto* m : {&ann, &cid}) EXPECT_EQ(str(next(*m->ws, "message"), "content"), "small");
  // Nothing of the oversized message reached storage.
  auto history = json::parse(durable_it::httpGet(kHost, s.port, "/rooms/limits/history").body).as_array();
  EXPECT_EQ(history.size(), 2u);
}

TEST_F(WebSocketTest, ProtocolViolationKillsOnlyThatSocket) {
  ProbeServer s;
  auto a = s.connect("pv", "alice");
  auto b = s.connect("pv", "bob");
  b->sendRaw(WsClient::invalidFrame());
  auto closed = b->waitClosed();
  EXPECT_EQ(closed.code, 1002) << closed.error;
  ASSERT_TRUE(eventually([] { return !events().empty(); }));
  EXPECT_EQ(events(), std::vector<std::string>{"error bob"});
  a->send("count:");
  EXPECT_EQ(a->readText(), "1");

  // An unmasked client frame is a violation too; the chat room keeps serving the others.
  ChatServer chat;
  auto ann = join(chat.port, "pv", "ann");
  auto bob = join(chat.port, "pv", "bob");
  bob.ws->sendRaw(std::string("\x81\x02hi", 4));
  EXPECT_EQ(bob.ws->waitClosed().code, 1002);
  sendChat(*ann.ws, "fine");
  EXPECT_EQ(str(next(*ann.ws, "message"), "content"), "fine");
}

// A receiver that stops reading has the server's write to it stuck in flight; when it then
// drops, the end of its connection must not free the frame that write is reading.
TEST_F(WebSocketTest, ADropDuringAStuckWriteHurtsNoOne) {
  ProbeServer s;
  auto a = s.connect("stuck", "alice");
  auto b = s.connect("stuck", "bob");
  const std::string big = "all:" + std::string(64 * 1024, 'z');
  // 7.5 MiB: more than loopback buffers, less than max_websocket_send_queue_bytes (8 MiB).
  for (int i = 0; i < 120; ++i) {
    a->send(big);
    ASSERT_EQ(a->readText().size(), big.size());
  }
  b->drop(/*reset=*/true);
  ASSERT_TRUE(eventually([] { return events().size() == 1; }));
  EXPECT_EQ(events(), std::vector<std::string>{"close bob 1006 '' unclean"});
  a->send("all:after");
  EXPECT_EQ(a->readText(), "all:after");
  a->send("count:");
  EXPECT_EQ(a->readText(), "1");
}

// ---------------------------------------------------------------- the output gate

using durable::test_support::readFromDisk;

TEST_F(WebSocketTest, ASendAfterAWriteLeavesOnlyOnceTheWriteIsDurable) {
  ProbeServer s;
  auto a = s.connect("gate", "alice");
  auto b = s.connect("gate", "bob");
  for (int i = 0; i < 20; ++i) {
    const std::string key = "k" + std::to_string(i);
    a->send("put:" + key);
    ASSERT_EQ(a->readText(), "stored " + key);
    EXPECT_EQ(readFromDisk(s.env, key), durable::Value(key)) << key;
  }
  // The chat room: a broadcast message is in the history on disk when it arrives.
  ChatServer chat;
  auto ann = join(chat.port, "gate", "ann");
  for (int i = 0; i < 10; ++i) {
    sendChat(*ann.ws, "m" + std::to_string(i));
    next(*ann.ws, "message");
    auto stored = readFromDisk(chat.env, "history");
    ASSERT_TRUE(stored.has_value());
    auto history = stored->as<durable::Json>().as_array();
    ASSERT_EQ(history.size(), static_cast<std::size_t>(i + 1));
    EXPECT_EQ(str(history.back().as_object(), "content"), "m" + std::to_string(i));
  }
}

TEST_F(WebSocketTest, AFrameOrACloseAfterAWriteWaitsUntilTheEngineSaysItIsDurable) {
  dt::EnvOptions options;
  options.storageEngine = "memory";
  ProbeServer s(options);
  auto a = s.connect("held", "alice");
  a->send("whoami");
  ASSERT_EQ(a->readText(), "alice");
  // The engine holds its reports: the write is not durable, and nothing behind it leaves.
  s.env.holdCommits();
  a->send("put:k1");
  EXPECT_FALSE(a->read(300ms).has_value()) << "a frame left before its write was durable";
  s.env.releaseCommits();
  EXPECT_EQ(a->readText(), "stored k1");
  // A close is output too.
  s.env.holdCommits();
  a->send("put-close:k2");
  EXPECT_FALSE(a->read(300ms).has_value());
  EXPECT_TRUE(a->isOpen()) << "the close left before its write was durable";
  s.env.releaseCommits();
  auto closed = a->waitClosed();
  EXPECT_EQ(closed.code, 4000);
  EXPECT_EQ(closed.reason, "stored");
}

TEST_F(WebSocketTest, FramesBuiltOnAFailedCommitAreNeverSentAndTheSocketLives) {
  dt::EnvOptions options;
  options.faultInjection = true;
  ProbeServer s(options);
  auto a = s.connect("failing", "alice");
  a->send("whoami");
  ASSERT_EQ(a->readText(), "alice");
  s.env.failStorageWrites(1);
  a->send("put:lost");
  // The reply to put:lost waits for its commit, which fails: it never leaves, nor does any
  // frame sent before the failure is known. The object is reset; its socket stays, and a
  // message after the reset meets a new instance, which answers.
  std::vector<std::string> got;
  EXPECT_TRUE(eventually([&] {
    a->send("whoami");
    auto m = a->read(200ms);
    if (m) got.push_back(m->data);
    return m.has_value();
  }));
  EXPECT_EQ(got, std::vector<std::string>{"alice"});
  EXPECT_FALSE(readFromDisk(s.env, "lost").has_value());
  a->send("put:kept");
  std::string reply;
  while ((reply = a->readText()) == "alice") {
    // a later whoami's answer
  }
  EXPECT_EQ(reply, "stored kept");
  EXPECT_EQ(readFromDisk(s.env, "kept"), durable::Value("kept"));
}

}  // namespace
